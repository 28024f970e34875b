"""Byte-level tokenizer: the UTF-8 bytes of the text are the ids, plus one end-of-text token."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from llm.tokenizer.base import EOT, TOKENIZERS, Tokenizer, TokenizerError, checked_ids, documents


class ByteTokenizer(Tokenizer):
    """Ids 0..255 are UTF-8 bytes and 256 is "<|endoftext|>"; any text encodes, nothing is learned.

    decode skips ids >= 256 (end-of-text included) and decodes with errors="replace": a byte sequence that
    is not valid UTF-8 (a model's output cut mid-character, say) becomes U+FFFD rather than an error.
    """

    kind = "byte"

    @property
    def vocab_size(self) -> int:
        return 257

    @property
    def eot_id(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        try:
            return list(text.encode("utf-8"))
        except UnicodeEncodeError as err:
            char = text[err.start]
            raise TokenizerError(
                f"character {char!r} (U+{ord(char):04X}) at index {err.start} cannot be encoded as UTF-8 "
                "(a lone surrogate); read the corpus with errors='replace' or clean it"
            ) from None

    def encode_array(self, text: str) -> np.ndarray:
        try:
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        except UnicodeEncodeError:
            return np.asarray(self.encode(text), dtype=np.uint8)  # raises encode's error, naming the character

    def byte_lengths(self) -> np.ndarray:
        return np.array([1] * 256 + [0], dtype=np.int64)  # end-of-text decodes to nothing

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(checked_ids(ids, 256)).decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "eot": EOT}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ByteTokenizer:
        return cls()


@TOKENIZERS.register("byte")
def train_byte(texts: Iterable[str]) -> ByteTokenizer:
    """The 256 byte values plus end-of-text; needs no training, so `texts` is not read."""
    documents(texts)
    return ByteTokenizer()
