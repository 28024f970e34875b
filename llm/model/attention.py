"""Causal self-attention. `manual` and `fused` share projections, weight layout and masking;
they differ only in how scores become outputs (`attend`).

Options shared by both: grouped-query attention (model.n_kv_head), QK-norm, a sliding window.

Training calls `attn(x, position)`: positions 0 .. T-1, plain causal masking (the fused path is SDPA's
`is_causal`). Inference passes a `Step` (per-row query and key positions, a key padding mask) and the layer's
cached keys and values; the new keys and values are appended and returned. Masking is by position, not by
index: query at position i sees key at position j when j <= i (and i - j < window), and the key is real.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm.model.config import ModelConfig, ModelConfigError
from llm.model.kv_cache import LayerKV, Step
from llm.model.positions import Position
from llm.registry import Registry

ATTENTIONS: Registry = Registry("attention")


def causal_mask(q_pos: Tensor, k_pos: Tensor, window: int | None) -> Tensor:
    """(B, T_q, T_k) booleans, True where the query at position i may attend to the key at position j: j <= i
    and, with a window, i - j < window. q_pos (B, T_q) and k_pos (B, T_k) hold the positions."""
    query_pos, key_pos = q_pos[:, :, None], k_pos[:, None, :]
    allowed = key_pos <= query_pos
    if window is not None:
        allowed = allowed & (query_pos - key_pos < window)  # not in place: exporters have no in-place and
    return allowed


class CausalSelfAttention(nn.Module):
    """Projections q, k, v (one fused `qkv` linear) and the output projection `proj`."""

    def __init__(self, config: ModelConfig, *, qk_norm: bool = False, window: int | None = None) -> None:
        super().__init__()
        if window is not None and not 1 <= window <= config.block_size:
            raise ModelConfigError(
                f"attention window={window} must be between 1 and the context model.block_size={config.block_size}; "
                "lower the window or leave it null for full causal attention"
            )
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        self.window = window
        self.qkv = nn.Linear(config.n_embd, (self.n_head + 2 * self.n_kv_head) * self.head_dim, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.proj.is_residual_projection = True  # type: ignore[assignment]
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else None
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: Tensor, position: Position, step: Step | None = None, past: LayerKV | None = None
    ) -> tuple[Tensor, LayerKV]:
        """(B, T, C) -> (B, T, C), and this layer's keys and values: `past`'s followed by the new ones."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(
            [self.n_head * self.head_dim, self.n_kv_head * self.head_dim, self.n_kv_head * self.head_dim],
            dim=-1,
        )
        q = q.view(b, t, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = position.rotate(q, k, None if step is None else step.pos)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, nkv, S + T, hs)
        if step is not None and self.sees_every_key(position, step, t):  # a decoding step without padding
            y = self.attend(q, k, v, None, causal=False)
        else:
            y = self.attend(q, k, v, self.additive_mask(position, step, t, q))  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(b, t, self.n_head * self.head_dim)
        return self.resid_dropout(self.proj(y)), (k, v)

    def sees_every_key(self, position: Position, step: Step, t: int) -> bool:
        """Whether the new token(s) may see every key: one query, no padding, no window, no score bias. (A traced
        step always passes a padding mask, so its graph never takes this branch.)"""
        return step.key_mask is None and self.window is None and not position.biases_scores and t == 1

    def additive_mask(self, position: Position, step: Step | None, t: int, like: Tensor) -> Tensor | None:
        """Causal, window and padding mask as 0 / -inf plus the position bias: (B or 1, H or 1, T_q, T_k).

        None for training's plain causal attention (no step, no bias, no window): the fused path then uses
        SDPA's is_causal, and `causal` below builds the mask for the manual path."""
        if step is None and self.window is None and not position.biases_scores:
            return None  # training's plain causal attention, without building any positions
        if step is None:
            q_pos = k_pos = torch.arange(t, device=like.device)[None]
            key_mask = None
        else:
            q_pos, k_pos, key_mask = step.pos, step.key_pos, step.key_mask
        bias = position.score_bias(q_pos, k_pos)
        if step is None and bias is None and self.window is None:
            return None
        allowed = causal_mask(q_pos, k_pos, self.window)
        if key_mask is not None:
            allowed = allowed & key_mask[:, None, :]
        mask = torch.zeros(allowed.shape, dtype=like.dtype, device=like.device).masked_fill(~allowed, float("-inf"))
        return mask[:, None] if bias is None else mask[:, None] + bias.to(like.dtype)

    @staticmethod
    def causal(t: int, like: Tensor) -> Tensor:
        """The plain causal mask as 0 / -inf, (t, t)."""
        allowed = torch.ones(t, t, dtype=torch.bool, device=like.device).tril()
        return torch.zeros(t, t, dtype=like.dtype, device=like.device).masked_fill(~allowed, float("-inf"))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool = True) -> Tensor:
        """q (B, nh, T_q, hs), k and v (B, nkv, T_k, hs) -> (B, nh, T_q, hs). mask None: plain causal (T_q = T_k),
        or, with causal=False, every key seen."""
        raise NotImplementedError


@ATTENTIONS.register("manual")
class ManualAttention(CausalSelfAttention):
    """Explicit softmax(q·kᵀ/√d + mask) · v, written out step by step."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool = True) -> Tensor:
        groups = self.n_head // self.n_kv_head
        k = k.repeat_interleave(groups, dim=1)  # (B, nh, T, hs): kv head h serves query heads h*g .. h*g+g-1
        v = v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, T_q, T_k)
        if mask is not None:
            scores = scores + mask
        elif causal:
            scores = scores + self.causal(q.size(-2), scores)
        weights = F.softmax(scores, dim=-1)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        return weights @ v


@ATTENTIONS.register("fused")
class FusedAttention(CausalSelfAttention):
    """torch.nn.functional.scaled_dot_product_attention (flash / memory-efficient kernels where available)."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool = True) -> Tensor:
        dropout = self.dropout if self.training else 0.0
        gqa = self.n_kv_head != self.n_head
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal, enable_gqa=gqa)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)
