"""Where a text may be cut so that its pieces, tokenized one by one, give the ids of the whole text.

Char and byte tokenizers give the same ids however a text is cut. Byte-level BPE does too, as long as no cut
falls inside one of its pre-tokens, the words its pre-tokenizer (GPT-2's pattern) splits a text into before
merging: no merge crosses a pre-token's edge. Two kinds of cut are safe, with X and Y any non-whitespace
characters (whitespace as Python's str.isspace and `re` see it, a superset of the pattern's \\s):

- after a newline that stands alone between two such characters: "X\\n|Y". The pattern makes "\\n" a pre-token of
  its own there, whole text or not ("\\r\\n", or a newline next to spaces, can join a longer whitespace run);
- before a single space between two such characters: "X| Y". " Y..." starts a pre-token in both cases.

A literal "<|endoftext|>" holds no whitespace, so no safe cut splits it. Text without such places (a long run
of characters with no space or newline, such as Chinese or Japanese prose) can only be cut anywhere, and BPE ids
near such a cut may then differ from those of the whole text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

NEWLINE_CUT = re.compile(r"(?<=\S\n)(?=\S)")
SPACE_CUT = re.compile(r"(?<=\S)(?= \S)")
ANY_CUT = re.compile(f"{NEWLINE_CUT.pattern}|{SPACE_CUT.pattern}")
SEARCH_SPANS = (1 << 12, 1 << 16)  # look near the end first: most texts have a safe cut close by


def last_match(pattern: re.Pattern[str], text: str, low: int, end: int) -> int | None:
    """The last position p with low <= p <= end where `pattern` matches `text` (it may look one past `end`)."""
    last = None
    for match in pattern.finditer(text, low, min(len(text), end + 2)):
        if match.start() <= end:
            last = match.start()
    return last


def safe_cut(text: str, start: int, end: int) -> int | None:
    """The last safe cut p of `text` with start < p <= end (a newline before a space nearby), or None."""
    for span in (*SEARCH_SPANS, end - start):
        low = max(start + 1, end - span)
        for pattern in (NEWLINE_CUT, SPACE_CUT):
            found = last_match(pattern, text, low, end)
            if found is not None:
                return found
        if low == start + 1:
            break
    return None


def text_pieces(blocks: Iterable[str], size: int) -> Iterator[str]:
    """The text of `blocks`, joined and cut again into pieces of at most `size` characters at safe cuts.

    Where `size` characters hold no safe cut, the piece is cut at `size`. Holds at most `size` characters plus
    one block in memory.
    """
    if size < 1:
        raise ValueError(f"pieces must hold at least one character, got size={size}")
    held: list[str] = []
    count = 0
    for block in blocks:
        held.append(block)
        count += len(block)
        if count <= size:
            continue
        text, start = "".join(held), 0
        while len(text) - start > size:
            cut = safe_cut(text, start, start + size) or start + size
            yield text[start:cut]
            start = cut
        held, count = [text[start:]], len(text) - start
    rest = "".join(held)
    if rest:
        yield rest
