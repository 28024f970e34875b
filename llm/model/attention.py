"""Causal self-attention. `manual` and `fused` share projections, weight layout and masking;
they differ only in how scores become outputs (`attend`).

Options shared by both: grouped-query attention (model.n_kv_head), QK-norm, a sliding window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm.model.config import ModelConfig, ModelConfigError
from llm.model.positions import Position
from llm.registry import Registry

ATTENTIONS: Registry = Registry("attention")


def causal_mask(t_q: int, t_k: int, window: int | None, device: torch.device) -> Tensor:
    """(t_q, t_k) booleans, True where query i may attend to key j: j <= i and, with a window, i - j < window.

    Queries are the last t_q of the t_k positions (a cached decoding step has t_q < t_k).
    """
    query_pos = torch.arange(t_k - t_q, t_k, device=device)[:, None]
    key_pos = torch.arange(t_k, device=device)[None, :]
    allowed = key_pos <= query_pos
    if window is not None:
        allowed &= query_pos - key_pos < window
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

    def forward(self, x: Tensor, position: Position, offset: int = 0) -> Tensor:
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
        q, k = position.rotate(q, k, offset)
        y = self.attend(q, k, v, position.score_bias(t, t))  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(b, t, self.n_head * self.head_dim)
        return self.resid_dropout(self.proj(y))

    def additive_mask(self, t_q: int, t_k: int, bias: Tensor | None, like: Tensor) -> Tensor:
        """Causal (and window) mask as 0 / -inf, plus the position bias: (H or 1, t_q, t_k)."""
        allowed = causal_mask(t_q, t_k, self.window, like.device)
        mask = torch.zeros(t_q, t_k, dtype=like.dtype, device=like.device).masked_fill(~allowed, float("-inf"))
        return mask[None] if bias is None else mask[None] + bias.to(like.dtype)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError


@ATTENTIONS.register("manual")
class ManualAttention(CausalSelfAttention):
    """Explicit softmax(q·kᵀ/√d + mask) · v, written out step by step."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        groups = self.n_head // self.n_kv_head
        k = k.repeat_interleave(groups, dim=1)  # (B, nh, T, hs): kv head h serves query heads h*g .. h*g+g-1
        v = v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, T, T)
        scores = scores + self.additive_mask(q.size(-2), k.size(-2), bias, scores)
        weights = F.softmax(scores, dim=-1)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        return weights @ v


@ATTENTIONS.register("fused")
class FusedAttention(CausalSelfAttention):
    """torch.nn.functional.scaled_dot_product_attention (flash / memory-efficient kernels where available)."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        dropout = self.dropout if self.training else 0.0
        gqa = self.n_kv_head != self.n_head
        if bias is None and self.window is None and q.size(-2) == k.size(-2):
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, enable_gqa=gqa)
        mask = self.additive_mask(q.size(-2), k.size(-2), bias, q)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)
