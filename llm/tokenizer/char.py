"""Character-level tokenizer: one id per distinct character of the training corpus, in sorted order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from llm.tokenizer.base import TOKENIZERS, Tokenizer, TokenizerError, checked_ids, documents, field

ASCII = [chr(code) for code in range(128)]


class CharTokenizer(Tokenizer):
    """Ids are the positions of characters in the sorted corpus alphabet (as nanoGPT does); no special tokens.

    Policy for unseen text: a character that is not in the vocabulary raises TokenizerError naming it and
    where it is. Retrain on a corpus that contains it, or use tokenizer=byte or tokenizer=bpe, which cover
    every byte and so encode any text.
    """

    kind = "char"

    def __init__(self, symbols: Sequence[str]) -> None:
        if not symbols:
            raise TokenizerError("a char tokenizer needs at least one symbol; train it on a non-empty corpus")
        if any(len(s) != 1 for s in symbols) or len(set(symbols)) != len(symbols):
            raise TokenizerError("char tokenizer symbols must be distinct single characters")
        self.symbols = list(symbols)
        self.stoi = {s: i for i, s in enumerate(self.symbols)}
        self._table: np.ndarray | None = None
        self._ascii_table: bytes | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError as missing:
            char = missing.args[0]
            index = text.index(char)
            raise TokenizerError(
                f"character {char!r} (U+{ord(char):04X}) at index {index} is not in the char tokenizer's "
                f"vocabulary of {self.vocab_size} symbols; retrain it on a corpus that contains this "
                "character, or use tokenizer=byte or tokenizer=bpe, which cover every byte"
            ) from None

    def id_table(self) -> np.ndarray:
        """ids by code point: table[ord(c)] is c's id, -1 for a character outside the vocabulary; the last entry,
        one past the largest code point in the vocabulary, stands for every code point beyond it."""
        if self._table is None:
            points = np.array([ord(s) for s in self.symbols], dtype=np.int64)
            table = np.full(int(points.max()) + 2, -1, dtype=np.int32)
            table[points] = np.arange(len(points), dtype=np.int32)
            self._table = table
        return self._table

    def ascii_table(self) -> bytes | None:
        """A bytes.translate table from ASCII codes to ids, 255 for a code outside the vocabulary; None when the
        vocabulary has more than 255 symbols (an id would not fit in a byte beside that marker)."""
        if self._ascii_table is None and self.vocab_size < 255:
            self._ascii_table = bytes(self.stoi.get(chr(code), 255) for code in range(256))
        return self._ascii_table

    def encode_array(self, text: str) -> np.ndarray:
        """encode(text) as an array: ASCII text through bytes.translate, any other by a lookup of code points."""
        table = self.ascii_table()
        if table is not None and text.isascii():
            translated = text.encode("ascii").translate(table)
            if translated.find(255) >= 0:
                self.encode(text)  # raises the error that names the first character outside the vocabulary
            return np.frombuffer(translated, dtype=np.uint8)
        points = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
        ids = np.take(self.id_table(), points, mode="clip")  # beyond the table: its last entry, -1
        if ids.size and ids.min() < 0:
            self.encode(text)
        return ids

    def byte_lengths(self) -> np.ndarray:
        return np.array([len(s.encode("utf-8", errors="surrogatepass")) for s in self.symbols], dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        symbols = self.symbols
        return "".join(symbols[i] for i in checked_ids(ids, self.vocab_size))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "symbols": "".join(self.symbols)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        return cls(list(field(data, "symbols", str)))


@TOKENIZERS.register("char")
def train_char(texts: Iterable[str]) -> CharTokenizer:
    """One token per character seen in the corpus; unseen characters cannot be encoded."""
    alphabet: set[str] = set()
    for text in documents(texts):
        if text.isascii():  # look for each ASCII character not yet seen: a scan in C each
            alphabet.update(c for c in ASCII if c not in alphabet and c in text)
        else:  # count the code points (numpy) rather than hash every character
            points = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
            alphabet.update(map(chr, np.flatnonzero(np.bincount(points)).tolist()))
    if not alphabet:
        raise TokenizerError("cannot train a char tokenizer on an empty corpus; check the data path and split")
    return CharTokenizer(sorted(alphabet))
