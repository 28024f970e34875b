"""Norms and MLPs against their direct formulas; SwiGLU's hidden size follows Llama's rounding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llm.model import ModelConfig
from llm.model.mlp import MLPS, swiglu_hidden
from llm.model.norm import NORMS


def config(n_embd: int = 12, bias: bool = True) -> ModelConfig:
    return ModelConfig(vocab_size=5, n_head=2, n_embd=n_embd, bias=bias)


def test_rmsnorm_formula() -> None:
    norm = NORMS.build("rmsnorm", 6, True, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0, 3.0, 0.0]))
    x = torch.tensor([[1.0, -2.0, 3.0, 0.0, 2.0, -4.0]])  # mean of squares: (1+4+9+0+4+16)/6 = 34/6
    rms = math.sqrt(34 / 6 + 1e-6)
    expected = torch.tensor([[1 / rms, -4 / rms, 1.5 / rms, 0.0, 6 / rms, 0.0]])
    torch.testing.assert_close(norm(x), expected)
    assert [n for n, _ in norm.named_parameters()] == ["weight"]  # never a bias, whatever model.bias says


def test_layernorm_formula_and_bias_switch() -> None:
    norm = NORMS.build("layernorm", 4, True, eps=1e-5)
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]])  # mean 3, variance (4+1+0+9)/4 = 3.5
    expected = (x - 3.0) / math.sqrt(3.5 + 1e-5)
    torch.testing.assert_close(norm(x), expected)
    assert {n for n, _ in norm.named_parameters()} == {"weight", "bias"}
    assert [n for n, _ in NORMS.build("layernorm", 4, False).named_parameters()] == ["weight"]


@pytest.mark.parametrize(
    "n_embd,multiple_of,hidden",
    [
        (256, 64, 704),  # 8·256/3 = 682.67 -> 682 -> up to 11·64
        (128, 64, 384),  # 341.33 -> 341 -> 6·64
        (96, 64, 256),  # exactly 256: already a multiple
        (4096, 256, 11008),  # Llama-7B: 10922.67 -> 10922 -> 43·256
        (12, 1, 32),
    ],
)
def test_swiglu_hidden_rounding(n_embd: int, multiple_of: int, hidden: int) -> None:
    assert swiglu_hidden(n_embd, multiple_of) == hidden


def test_swiglu_formula_and_shapes() -> None:
    torch.manual_seed(0)
    mlp = MLPS.build("swiglu", config(n_embd=12), multiple_of=8)  # 8·12/3 = 32 -> 32
    assert mlp.fc.weight.shape == (2 * 32, 12) and mlp.proj.weight.shape == (12, 32)
    for p in mlp.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(3, 12)
    w_gate, w_up = mlp.fc.weight[:32], mlp.fc.weight[32:]
    b_gate, b_up = mlp.fc.bias[:32], mlp.fc.bias[32:]
    gate = x @ w_gate.T + b_gate
    hidden = gate * torch.sigmoid(gate) * (x @ w_up.T + b_up)  # silu(g) = g·σ(g)
    torch.testing.assert_close(mlp(x), hidden @ mlp.proj.weight.T + mlp.proj.bias)


@pytest.mark.parametrize(
    "name,activation",
    [
        ("relu", lambda h: h.clamp(min=0)),
        ("relu2", lambda h: h.clamp(min=0) ** 2),
        ("gelu", lambda h: 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))),
    ],
)
def test_pointwise_mlps(name: str, activation) -> None:
    torch.manual_seed(0)
    mlp = MLPS.build(name, config(n_embd=8), hidden_mult=3)
    assert mlp.fc.weight.shape == (24, 8) and mlp.proj.weight.shape == (8, 24)
    x = torch.randn(4, 8)
    expected = activation(x @ mlp.fc.weight.T + mlp.fc.bias) @ mlp.proj.weight.T + mlp.proj.bias
    torch.testing.assert_close(mlp(x), expected)


def test_mlps_without_bias() -> None:
    for name in MLPS.names():
        mlp = MLPS.build(name, config(n_embd=8, bias=False))
        assert all(not n.endswith("bias") for n, _ in mlp.named_parameters()), name
        assert F.mse_loss(mlp(torch.zeros(2, 8)), torch.zeros(2, 8)) == 0  # no bias: zero in, zero out
