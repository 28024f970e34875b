"""Normalisation layers, built as NORMS.build(name, dim, bias, **options)."""

from __future__ import annotations

from torch import nn

from llm.registry import Registry

NORMS: Registry = Registry("norm")


@NORMS.register("layernorm")
def layernorm(dim: int, bias: bool, *, eps: float = 1e-5) -> nn.Module:
    """LayerNorm: (x - mean) / sqrt(var + eps) * weight (+ bias when model.bias)."""
    return nn.LayerNorm(dim, eps=eps, bias=bias)


@NORMS.register("rmsnorm")
def rmsnorm(dim: int, bias: bool, *, eps: float = 1e-6) -> nn.Module:
    """RMSNorm: x / sqrt(mean(x²) + eps) * weight; no centring and never a bias."""
    return nn.RMSNorm(dim, eps=eps)
