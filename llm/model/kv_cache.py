"""The inference interface's plain-tensor state: a key/value cache and where the new tokens sit.

Both are dataclasses of tensors only, so a forward that takes and returns them can be traced and exported
(`KVCache.tensors()` / `KVCache.from_tensors()` flatten and rebuild it).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

LayerKV = tuple[Tensor, Tensor]  # keys, values: (B, n_kv_head, S, head_dim) each, keys after rotation (rope)


@dataclass(frozen=True)
class Step:
    """What attention needs at inference: the positions of the new tokens (queries), the positions of every key
    they may see (the cached ones, then the new ones) and which keys are real tokens rather than padding."""

    pos: Tensor  # (B, T) long
    key_pos: Tensor  # (B, S + T) long
    key_mask: Tensor | None  # (B, S + T) bool, True for a real token; None: no padding


@dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer for the S tokens seen so far, with their positions and padding mask.

    n_kv_head heads are kept (grouped-query attention caches the shared heads, not n_head)."""

    layers: tuple[LayerKV, ...]
    pos: Tensor  # (B, S) long: the position of each cached token
    mask: Tensor  # (B, S) bool: True for a real token, False for left padding

    @property
    def length(self) -> int:
        return self.pos.size(1)

    def tensors(self) -> tuple[Tensor, ...]:
        """pos, mask, then k and v of each layer: the flat form an exported graph takes and returns."""
        return (self.pos, self.mask, *(t for kv in self.layers for t in kv))

    @staticmethod
    def from_tensors(tensors: tuple[Tensor, ...] | list[Tensor]) -> KVCache:
        pos, mask, *rest = tensors
        return KVCache(tuple((rest[i], rest[i + 1]) for i in range(0, len(rest), 2)), pos, mask)
