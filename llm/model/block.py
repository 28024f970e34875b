"""Transformer blocks: where the norms sit relative to the residual connections."""

from __future__ import annotations

from torch import Tensor, nn

from llm.model.attention import CausalSelfAttention
from llm.model.kv_cache import LayerKV, Step
from llm.model.positions import Position
from llm.registry import Registry

BLOCKS: Registry = Registry("block")


class Block(nn.Module):
    """Attention and MLP sub-layers, each with a residual connection and a norm."""

    def __init__(self, attn: CausalSelfAttention, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = norm1, attn, norm2, mlp

    def forward(
        self, x: Tensor, position: Position, step: Step | None = None, past: LayerKV | None = None
    ) -> tuple[Tensor, LayerKV]:
        """(B, T, C) -> (B, T, C) and the attention's keys and values (see CausalSelfAttention.forward)."""
        raise NotImplementedError


@BLOCKS.register("pre")
class PreNormBlock(Block):
    """x + f(norm(x)) (GPT-2, Llama): the residual stream itself is never normalised."""

    def forward(
        self, x: Tensor, position: Position, step: Step | None = None, past: LayerKV | None = None
    ) -> tuple[Tensor, LayerKV]:
        a, kv = self.attn(self.norm1(x), position, step, past)
        x = x + a
        return x + self.mlp(self.norm2(x)), kv


@BLOCKS.register("post")
class PostNormBlock(Block):
    """norm(x + f(x)): the original Transformer's "Add & Norm"."""

    def forward(
        self, x: Tensor, position: Position, step: Step | None = None, past: LayerKV | None = None
    ) -> tuple[Tensor, LayerKV]:
        a, kv = self.attn(x, position, step, past)
        x = self.norm1(x + a)
        return self.norm2(x + self.mlp(x)), kv
