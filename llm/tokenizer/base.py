"""The interface every tokenizer implements, its error type, and the registry of trainers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from llm.errors import UserError
from llm.registry import Registry

EOT = "<|endoftext|>"


class TokenizerError(UserError, ValueError):
    """A tokenizer that cannot be trained, loaded or applied to a text, with the reason and the way out."""


class Tokenizer(ABC):
    """Text <-> token ids. `kind` is the registry name; `to_dict` and `from_dict` give its JSON form.

    decode skips ids at or above vocab_size (the padding rows of a model whose vocabulary was rounded up)
    and refuses negative ids.
    """

    kind: str
    # whether encoding pieces on several Python threads at once is faster: true where encode runs outside the GIL
    threads_help: bool = False

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """The number of ids this tokenizer can produce (0 .. vocab_size - 1)."""

    @property
    def eot_id(self) -> int | None:
        """The id of the end-of-text special token, or None where there is none."""
        return None

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The token ids of `text`."""

    def encode_array(self, text: str) -> np.ndarray:
        """The ids of `text` as a 1-D integer array, equal to encode(text): what token files are written from.

        Tokenizers override it with a faster path; errors are those of encode.
        """
        return np.asarray(self.encode(text), dtype=np.int64)

    def byte_lengths(self) -> np.ndarray:
        """The UTF-8 bytes each id stands for, by id: the bytes of the text a run of ids came from add up to the
        sum of theirs (a byte-level token that is part of a character counts its own bytes, not those of the
        U+FFFD its decode alone would give; tokenizers where that matters override this)."""
        return np.array([len(self.decode([i]).encode("utf-8")) for i in range(self.vocab_size)], dtype=np.int64)

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """The text of a sequence of token ids."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, {"kind": ..., ...}, that `from_dict` turns back into this tokenizer."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokenizer:
        """The tokenizer described by `data` (as written by `to_dict`); TokenizerError if it is malformed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, eot_id={self.eot_id})"


Trainer = Callable[..., Tokenizer]
TOKENIZERS: Registry[Trainer] = Registry("tokenizer")


def documents(texts: Iterable[str]) -> Iterator[str]:
    """An iterator over `texts`; a bare str is refused, since iterating it would yield single characters."""
    if isinstance(texts, str):
        raise TokenizerError("texts must be an iterable of documents, not a single str; pass [text] instead")
    return iter(texts)


def checked_ids(ids: Sequence[int], vocab_size: int) -> list[int]:
    """`ids` as plain ints with those >= vocab_size dropped; a negative id raises TokenizerError."""
    values = [int(i) for i in ids]
    if values and min(values) < 0:
        raise TokenizerError(f"cannot decode negative token id {min(values)}; ids run from 0 to {vocab_size - 1}")
    return [i for i in values if i < vocab_size]


def field(data: dict[str, Any], key: str, kind: type) -> Any:
    """data[key], checked to be of type `kind`; TokenizerError names the missing or mistyped field."""
    if key not in data:
        raise TokenizerError(f"{data.get('kind')} tokenizer data has no field '{key}'")
    value = data[key]
    if not isinstance(value, kind):
        raise TokenizerError(
            f"{data.get('kind')} tokenizer field '{key}' should be a {kind.__name__}, not {type(value).__name__}"
        )
    return value
