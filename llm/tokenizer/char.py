"""Character-level tokenizer: one id per distinct character of the training corpus, in sorted order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from llm.tokenizer.base import TOKENIZERS, Tokenizer, TokenizerError, checked_ids, documents, field


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
        alphabet.update(text)
    if not alphabet:
        raise TokenizerError("cannot train a char tokenizer on an empty corpus; check the data path and split")
    return CharTokenizer(sorted(alphabet))
