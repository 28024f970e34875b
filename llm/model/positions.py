"""Positional components. Each acts through one interface with three hooks, all at explicit positions:

- `embed(x, pos)`: added to token embeddings (sinusoidal, learned);
- `rotate(q, k, pos)`: applied to queries and keys inside attention (rope);
- `score_bias(q_pos, k_pos)`: added to attention scores (alibi).

The hooks a component does not use are the identity (or no bias). `pos` is a (B, T) (or (1, T)) long tensor
holding each token's own position, per row: a cached decoding step at position t is embedded at t, and the
rows of a left-padded batch count from 0 at their first real token. `pos=None` means 0 .. T-1 for every row,
training's case, and keeps its fast path (precomputed tables sliced). Given positions, sinusoids and rotary
angles are computed from them (the same float64 formula as the tables, so the same values): no branch on the
positions' values, so an inference step traces into one graph whatever the positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from llm.model.config import ModelConfig, ModelConfigError
from llm.registry import Registry

POSITIONS: Registry = Registry("position")


class Position(nn.Module):
    """Base class: no positional information at all."""

    max_positions: int | None = None  # the longest sequence it can encode; None for unbounded

    def embed(self, x: Tensor, pos: Tensor | None = None) -> Tensor:  # (B, T, C) -> (B, T, C)
        return x

    def rotate(self, q: Tensor, k: Tensor, pos: Tensor | None = None) -> tuple[Tensor, Tensor]:  # (B, H, T, hs)
        return q, k

    def score_bias(self, q_pos: Tensor, k_pos: Tensor) -> Tensor | None:  # None or (B, H, T_q, T_k)
        """q_pos (B, T_q) and k_pos (B, T_k) are the positions of queries and keys."""
        return None

    @property
    def biases_scores(self) -> bool:
        """Whether this component overrides score_bias (else training's attention skips building positions)."""
        return type(self).score_bias is not Position.score_bias


def positions_or_arange(pos: Tensor | None, t: int, device: torch.device) -> Tensor:
    """`pos` itself, or 0 .. t-1 as a (1, t) tensor."""
    return torch.arange(t, device=device)[None] if pos is None else pos


@POSITIONS.register("none")
class NoPosition(Position):
    """No positional signal: causal attention alone must tell order apart (NoPE)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()


def sinusoidal_table(positions: Tensor, dim: int) -> Tensor:
    """PE(p, 2i) = sin(p / 10000^(2i/dim)), PE(p, 2i+1) = cos(p / 10000^(2i/dim)); shape (len(positions), dim)."""
    two_i = torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device)
    angles = positions.to(torch.float64)[:, None] / torch.pow(10000.0, two_i / dim)[None, :]
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2).float()  # sin, cos interleaved


@POSITIONS.register("sinusoidal")
class Sinusoidal(Position):
    """Fixed sines and cosines added to the token embeddings (Vaswani et al., 2017)."""

    table: Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.n_embd % 2:
            raise ModelConfigError(
                f"sinusoidal positions need an even model.n_embd, got {config.n_embd}; "
                "use an even width or another position (learned, rope, alibi, none)"
            )
        self.dim = config.n_embd
        self.register_buffer("table", sinusoidal_table(torch.arange(config.block_size), self.dim), persistent=False)

    def reset_buffers(self) -> None:
        """Computes the table again where it lies (after the network was created on the meta device)."""
        self.table = sinusoidal_table(torch.arange(self.table.size(0), device="cpu"), self.dim).to(self.table.device)

    def embed(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        t = x.size(1)
        if pos is None and t <= self.table.size(0):
            pe = self.table[:t]
        else:  # sinusoids extrapolate past the precomputed table
            pos = positions_or_arange(pos, t, x.device)
            pe = sinusoidal_table(pos.flatten(), self.dim).view(*pos.shape, self.dim)  # (B, T, C)
        return x + pe.to(x.dtype)


@POSITIONS.register("learned")
class Learned(Position):
    """A trained table of one vector per position, added to the token embeddings (GPT-2)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.max_positions = config.block_size
        self.table = nn.Embedding(config.block_size, config.n_embd)

    def embed(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        t, n = x.size(1), self.table.num_embeddings
        if torch.jit.is_tracing():  # a traced graph has no room for the check
            return x + self.table(positions_or_arange(pos, t, x.device))
        first, last = (0, t - 1) if pos is None else (int(pos.min()), int(pos.max()))
        if last >= n:
            raise ValueError(
                f"positions {first}..{last} do not fit the learned position table of {n} positions; "
                f"shorten the input to at most {n} tokens"
            )
        if pos is None:
            return x + self.table.weight[:t]
        return x + self.table(pos)


def rope_angles(positions: Tensor, head_dim: int, theta: float) -> Tensor:
    """Angle p * theta^(-2i/head_dim) for each position p and pair i; shape (len(positions), head_dim // 2)."""
    inv_freq = torch.pow(theta, -torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    return positions.to(torch.float64)[:, None] * inv_freq[None, :]


def apply_rotation(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotates pairs (x[i], x[i + hs/2]) by the given angles (the 'rotate half' layout of Llama)."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


@POSITIONS.register("rope")
class Rotary(Position):
    """Rotary position embedding (Su et al., 2021): q and k rotated by position-dependent angles."""

    cos: Tensor
    sin: Tensor

    def __init__(self, config: ModelConfig, *, theta: float = 10000.0) -> None:
        super().__init__()
        if config.head_dim % 2:
            raise ModelConfigError(
                f"rope needs an even head size, got n_embd/n_head = "
                f"{config.n_embd}/{config.n_head} = {config.head_dim}; "
                "change n_embd or n_head so that their quotient is even"
            )
        self.head_dim, self.theta = config.head_dim, float(theta)
        angles = rope_angles(torch.arange(config.block_size), self.head_dim, self.theta)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def reset_buffers(self) -> None:
        """Computes the tables again where they lie (after the network was created on the meta device)."""
        angles = rope_angles(torch.arange(self.cos.size(0), device="cpu"), self.head_dim, self.theta)
        self.cos, self.sin = angles.cos().float().to(self.cos.device), angles.sin().float().to(self.sin.device)

    def in_table(self, pos: Tensor) -> bool:
        """Whether every position has a row in the precomputed tables (the same values the formula gives). Never
        while tracing: an exported graph computes the angles, so it holds for any position."""
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        return not tracing and int(pos.max()) < self.cos.size(0)

    def rotate(self, q: Tensor, k: Tensor, pos: Tensor | None = None) -> tuple[Tensor, Tensor]:
        t = q.size(-2)
        if pos is None and t <= self.cos.size(0):
            cos, sin = self.cos[:t], self.sin[:t]  # (T, hs/2): training's path
        elif pos is not None and self.in_table(pos):  # a decoding step: the table's rows at these positions
            cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # (B, 1, T, hs/2): every head
        else:  # also past the precomputed table
            pos = positions_or_arange(pos, t, q.device)
            angles = rope_angles(pos.flatten(), self.head_dim, self.theta).view(*pos.shape, -1)  # (B, T, hs/2)
            cos, sin = angles.cos().float()[:, None], angles.sin().float()[:, None]  # (B, 1, T, hs/2): every head
        return apply_rotation(q, cos.to(q.dtype), sin.to(q.dtype)), apply_rotation(k, cos.to(k.dtype), sin.to(k.dtype))


def alibi_slopes(n_head: int) -> Tensor:
    """Head slopes of ALiBi (Press et al., 2022): 2^(-8i/n) for n a power of two, interleaved otherwise."""

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * i / n) for i in range(1, n + 1)]

    closest = 2 ** math.floor(math.log2(n_head))
    slopes = power_of_two(closest)
    if closest < n_head:
        slopes += power_of_two(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(slopes)


@POSITIONS.register("alibi")
class ALiBi(Position):
    """Attention with linear biases: score(i, j) gets -slope_h * (i - j); no embedding is added."""

    slopes: Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(config.n_head), persistent=False)

    def reset_buffers(self) -> None:
        """Computes the slopes again where they lie (after the network was created on the meta device)."""
        with torch.device("cpu"):
            self.slopes = alibi_slopes(self.slopes.numel()).to(self.slopes.device)

    def score_bias(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        distance = (q_pos[:, :, None] - k_pos[:, None, :]).clamp(min=0).float()  # future keys are masked anyway
        return -self.slopes[None, :, None, None] * distance[:, None]  # (B, H, T_q, T_k)
