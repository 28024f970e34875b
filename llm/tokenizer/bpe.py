"""Byte-level BPE trained with `tokenizers`; all 256 bytes are in its alphabet, so any text encodes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from llm.tokenizer.base import EOT, TOKENIZERS, Tokenizer, TokenizerError, checked_ids, documents, field
from llm.tokenizer.cuts import ANY_CUT

CHUNK_CHARS = 1 << 14


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """`text` cut into pieces of about `size` characters at safe cuts (llm/tokenizer/cuts.py), for parallel encoding.

    Each piece encodes to the ids the whole text has there, so the pieces' ids joined are the text's ids.
    """
    pieces, start = [], 0
    while len(text) - start > size:
        cut = ANY_CUT.search(text, start + size)
        if cut is None:
            break
        pieces.append(text[start : cut.start()])
        start = cut.start()
    pieces.append(text[start:])
    return pieces


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2's scheme) with "<|endoftext|>" as its special token; decode is exact.

    A literal "<|endoftext|>" in a text encodes to eot_id and decodes back to the same string.
    """

    kind = "bpe"
    threads_help = True  # the Rust encoder releases the GIL

    def __init__(self, hf: HFTokenizer) -> None:
        eot = hf.token_to_id(EOT)
        if eot is None:
            raise TokenizerError(f"bpe tokenizer has no '{EOT}' token; retrain it with train_tokenizer('bpe', ...)")
        self.hf, self._eot_id = hf, eot

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def eot_id(self) -> int:
        return self._eot_id

    def encode(self, text: str) -> list[int]:
        try:
            if len(text) <= CHUNK_CHARS:
                return self.hf.encode(text).ids
            return [i for encoding in self.hf.encode_batch_fast(chunks(text)) for i in encoding.ids]
        except TypeError as err:  # what `tokenizers` raises for a str it cannot take, e.g. a lone surrogate
            raise TokenizerError(f"bpe cannot encode this text ({err}); it must be a str of valid Unicode") from None

    def byte_lengths(self) -> np.ndarray:
        added = self.hf.get_added_tokens_decoder()
        names = [self.hf.id_to_token(i) or "" for i in range(self.vocab_size)]
        # a byte-level BPE token is written with one character per byte; added tokens decode to their text
        return np.array(
            [len(name.encode("utf-8")) if i in added else len(name) for i, name in enumerate(names)], dtype=np.int64
        )

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(checked_ids(ids, self.vocab_size), skip_special_tokens=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokenizer": json.loads(self.hf.to_str())}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        embedded = field(data, "tokenizer", dict)
        try:
            hf = HFTokenizer.from_str(json.dumps(embedded))
        except Exception as err:  # the library raises a bare Exception for a malformed tokenizer
            raise TokenizerError(f"bpe tokenizer data is not a valid `tokenizers` tokenizer: {err}") from None
        return cls(hf)


def whole_number(option: str, value: object, example: str) -> None:
    """A numeric tokenizer option is a whole number >= 0 (a value such as 'abc' from the command line is not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TokenizerError(f"tokenizer.{option} must be a whole number, got {value!r}; {example}")


@TOKENIZERS.register("bpe")
def train_bpe(texts: Iterable[str], *, vocab_size: int = 1024, min_frequency: int = 2) -> BPETokenizer:
    """Byte-level BPE learned from the corpus (`tokenizers`); vocab_size counts bytes, merges and specials."""
    smallest = 256 + 1  # every byte, plus end-of-text
    whole_number("vocab_size", vocab_size, f"e.g. tokenizer.vocab_size=1024 (at least {smallest})")
    whole_number("min_frequency", min_frequency, "e.g. tokenizer.min_frequency=2 (merge pairs seen at least twice)")
    if vocab_size < smallest:
        raise TokenizerError(
            f"bpe vocab_size={vocab_size} is too small: it must be at least {smallest} "
            "(256 bytes + 1 special token); raise tokenizer.vocab_size"
        )
    seen = [0]

    def counted(items: Iterator[str]) -> Iterator[str]:
        for text in items:
            seen[0] += len(text)
            yield text

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(counted(documents(texts)), trainer=trainer)
    if seen[0] == 0:
        raise TokenizerError("cannot train a bpe tokenizer on an empty corpus; check the data path and split")
    trained = hf.get_vocab_size(with_added_tokens=True)
    if trained < vocab_size:
        raise TokenizerError(
            f"tokenizer.vocab_size={vocab_size} is more than this corpus supports: bpe training found only "
            f"{trained} tokens (bytes, merges seen at least min_frequency={min_frequency} times, and specials); "
            f"set tokenizer.vocab_size={trained} or lower, or use a larger corpus"
        )
    return BPETokenizer(hf)
