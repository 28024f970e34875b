"""Tokenizers (char, byte, BPE) behind one interface, trained by name and saved as one JSON format.

Importing this package registers every trainer in TOKENIZERS (explicitly, below).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from llm.files import write_text_atomic
from llm.tokenizer.base import TOKENIZERS, Tokenizer, TokenizerError
from llm.tokenizer.bpe import BPETokenizer
from llm.tokenizer.byte import ByteTokenizer
from llm.tokenizer.char import CharTokenizer

# the "kind" field of a tokenizer file -> the class that reads it
KINDS: dict[str, type[Tokenizer]] = {cls.kind: cls for cls in (BPETokenizer, ByteTokenizer, CharTokenizer)}


def train_tokenizer(name: str, texts: Iterable[str], **options: object) -> Tokenizer:
    """Trains the tokenizer registered as `name` on an iterable of documents; unknown names/options raise."""
    return TOKENIZERS.build(name, texts, **options)


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> Path:
    """Writes `tokenizer` as JSON to `path` atomically: a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(tokenizer.to_dict(), indent=1))
    return path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Reads a tokenizer written by save_tokenizer; a missing or malformed file raises TokenizerError."""
    path = Path(path)
    fix = "point to a tokenizer.json written by save_tokenizer, or train a new tokenizer"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer file {path} does not exist; {fix}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TokenizerError(f"cannot read tokenizer file {path} ({err}); {fix}") from None
    except json.JSONDecodeError as err:
        raise TokenizerError(f"tokenizer file {path} is not valid JSON ({err}); it may be truncated; {fix}") from None
    if not isinstance(data, dict) or "kind" not in data:
        raise TokenizerError(f'tokenizer file {path} has no "kind" field, so it is not a tokenizer; {fix}')
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise TokenizerError(
            f"tokenizer file {path} has unknown kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}; {fix}"
        )
    try:
        return KINDS[kind].from_dict(data)
    except TokenizerError as err:
        raise TokenizerError(f"tokenizer file {path}: {err}; {fix}") from None


__all__ = [
    "KINDS",
    "TOKENIZERS",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "Tokenizer",
    "TokenizerError",
    "load_tokenizer",
    "save_tokenizer",
    "train_tokenizer",
]
