"""`train(cfg)`: pretrain a GPT from a composed config and return its final metrics (the plain function
behind `llm train`). Everything the run produces goes into cfg.paths.run_dir; see llm/run/runner.py."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from llm.run.recipes import pretrain
from llm.run.runner import run


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Pretrains as configured; returns the summary written to summary.json."""
    return run(cfg, pretrain, overrides)
