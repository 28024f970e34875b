"""The model's description: a frozen dataclass that names every component and shape.

It is what `config.json` in a model directory holds, so a model loads without Hydra.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from llm.errors import UserError


class ModelConfigError(UserError, ValueError):
    """A model description that cannot be built; the message says what to change."""


@dataclass(frozen=True)
class Part:
    """One interchangeable component: its registry name and its own options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, what: str) -> Part:
        """From `{"name": ..., **options}` (a Hydra node or a config.json entry) or a bare name."""
        if isinstance(value, Part):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            options = {k: v for k, v in value.items() if k != "name"}
            return cls(value["name"], options)
        raise ModelConfigError(f"model.{what} must be a name or a mapping with a 'name' key, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of a GPT and the components it is assembled from."""

    vocab_size: int
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_kv_head: int | None = None
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    position: Part = Part("learned")
    attention: Part = Part("fused")
    norm: Part = Part("layernorm")
    mlp: Part = Part("gelu")
    block: Part = Part("pre")

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if self.n_kv_head is not None and (isinstance(self.n_kv_head, bool) or not isinstance(self.n_kv_head, int)):
            raise ModelConfigError(
                f"model.n_kv_head must be a positive integer that divides model.n_head, or null for as many as "
                f"model.n_head, got {self.n_kv_head!r}"
            )
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ModelConfigError(
                    f"model.{name} must be true or false, got {getattr(self, name)!r}; "
                    f"write model.{name}=true or model.{name}=false"
                )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise ModelConfigError(
                f"model.dropout must be a number in [0, 1), got {self.dropout!r}; e.g. model.dropout=0.1 (0: none)"
            )
        if self.n_embd % self.n_head:
            raise ModelConfigError(
                f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}; "
                "choose n_embd as a multiple of n_head "
                f"(e.g. n_embd={self.n_head * max(1, self.n_embd // self.n_head)})"
            )
        kv = self.kv_heads
        if kv < 1 or self.n_head % kv:
            raise ModelConfigError(
                f"model.n_head={self.n_head} is not divisible by model.n_kv_head={self.n_kv_head}; "
                "n_kv_head must divide n_head (n_kv_head=1 is multi-query, n_kv_head=n_head is multi-head)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ModelConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Part) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Strict: an unknown key is an error, never silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelConfigError(f"unknown model setting(s) {unknown}; valid settings are: {sorted(known)}")
        parts = {"position", "attention", "norm", "mlp", "block"}
        values = {k: Part.parse(v, k) if k in parts else v for k, v in data.items()}
        return cls(**values)  # type: ignore[arg-type]
