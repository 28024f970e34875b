"""What `llm components` shows: every registered component with its config group and options, and the
parameter and FLOP counts of a composed model."""

from __future__ import annotations

import inspect
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llm.model import MODEL_PARTS, build_gpt
from llm.model.config import ModelConfig
from llm.model.counting import count_parameters, training_flops_per_token
from llm.objectives import OBJECTIVES
from llm.registry import Registry
from llm.tokenizer import TOKENIZERS

# config group -> registry whose names are that group's options
REGISTRIES: dict[str, Registry] = {
    **{f"model/{group}": registry for group, registry in MODEL_PARTS.items()},
    "tokenizer": TOKENIZERS,
    "objective": OBJECTIVES,
}


def describe_options(registry: Registry, name: str) -> str:
    parts = []
    for option, default in registry.options(name).items():
        parts.append(option if default is inspect.Parameter.empty else f"{option}={default!r}")
    return ", ".join(parts) or "-"


def component_rows() -> list[tuple[str, str, str, str]]:
    """(config group, name, options with defaults, one-line description) for every registered component."""
    rows = []
    for group, registry in REGISTRIES.items():
        for name in registry.names():
            doc = inspect.getdoc(registry.get(name)) or ""
            rows.append((group, name, describe_options(registry, name), doc.splitlines()[0] if doc else ""))
    return rows


def model_counts(config: ModelConfig) -> dict[str, Any]:
    model = build_gpt(config, empty=True)  # shapes only: no memory, no initialisation
    counts = count_parameters(model)
    return {**counts, "flops_per_token": training_flops_per_token(config)}


def print_components(config: ModelConfig, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="registered components", show_lines=False)
    for column in ("config group", "name", "options", "what"):
        table.add_column(column, overflow="fold")
    for row in component_rows():
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
    counts = Table(title=f"composed model (vocab_size={config.vocab_size}, block_size={config.block_size})")
    counts.add_column("quantity")
    counts.add_column("value", justify="right")
    parts = ", ".join(f"{k}={getattr(config, k).name}" for k in MODEL_PARTS)
    counts.add_row("parts", parts)
    shape = f"n_layer={config.n_layer}, n_head={config.n_head}, n_kv_head={config.kv_heads}, n_embd={config.n_embd}"
    counts.add_row("shape", shape)
    for key, value in model_counts(config).items():
        counts.add_row(key, f"{value:,}")
    console.print(counts)
