"""Position-wise feed-forward networks: `fc` up, an activation, `proj` down."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from llm.model.config import ModelConfig
from llm.registry import Registry

MLPS: Registry = Registry("mlp")


class MLP(nn.Module):
    """fc (n_embd -> hidden), activation, proj (hidden -> n_embd), dropout."""

    def __init__(self, config: ModelConfig, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.proj.is_residual_projection = True  # type: ignore[assignment]
        self.dropout = nn.Dropout(config.dropout)

    def activation(self, h: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(self.activation(self.fc(x))))


@MLPS.register("gelu")
class GeluMLP(MLP):
    """GPT-2's MLP: GELU (tanh approximation) with a hidden size of `hidden_mult` × n_embd."""

    def __init__(self, config: ModelConfig, *, hidden_mult: int = 4) -> None:
        super().__init__(config, hidden_mult * config.n_embd)

    def activation(self, h: Tensor) -> Tensor:
        return F.gelu(h, approximate="tanh")


@MLPS.register("relu")
class ReluMLP(MLP):
    """The original Transformer's MLP: ReLU, hidden size `hidden_mult` × n_embd."""

    def __init__(self, config: ModelConfig, *, hidden_mult: int = 4) -> None:
        super().__init__(config, hidden_mult * config.n_embd)

    def activation(self, h: Tensor) -> Tensor:
        return F.relu(h)


@MLPS.register("relu2")
class Relu2MLP(MLP):
    """Squared ReLU (So et al., 2021; modded-nanogpt): relu(h)²."""

    def __init__(self, config: ModelConfig, *, hidden_mult: int = 4) -> None:
        super().__init__(config, hidden_mult * config.n_embd)

    def activation(self, h: Tensor) -> Tensor:
        return F.relu(h).square()


def swiglu_hidden(n_embd: int, multiple_of: int) -> int:
    """Llama's sizing: two thirds of 4·n_embd, rounded up to a multiple of `multiple_of`."""
    hidden = int(2 * 4 * n_embd / 3)
    return multiple_of * -(-hidden // multiple_of)


@MLPS.register("swiglu")
class SwiGLU(MLP):
    """SwiGLU (Shazeer, 2020): silu(x·W_gate) * (x·W_up), then proj. `fc` holds [gate; up] stacked."""

    def __init__(self, config: ModelConfig, *, multiple_of: int = 64) -> None:
        hidden = swiglu_hidden(config.n_embd, multiple_of)
        super().__init__(config, 2 * hidden)
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.proj.is_residual_projection = True  # type: ignore[assignment]

    def activation(self, h: Tensor) -> Tensor:
        gate, up = h.chunk(2, dim=-1)
        return F.silu(gate) * up
