"""Compute budgets: a run stops at whichever comes first of trainer.max_steps, a token budget, a FLOP budget
(training FLOPs per token × tokens) or a training-time budget, so an ablation can compare variants at equal
compute rather than equal steps. Counted across resumes (the Throughput callback keeps tokens and seconds)."""

from __future__ import annotations

from typing import Any

import lightning as L

from llm.errors import ConfigError
from llm.lit.callbacks import Throughput


class Budget(L.Callback):
    """Sets trainer.should_stop once a budget is spent; `stopped_by` says what ended the run."""

    def __init__(
        self,
        throughput: Throughput,
        flops_per_token: float,
        *,
        tokens: int | None = None,
        flops: float | None = None,
        seconds: float | None = None,
    ) -> None:
        for name, value in (("tokens", tokens), ("flops", flops), ("seconds", seconds)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                raise ConfigError(f"budget.{name} must be a positive number or null, got {value!r}")
        self.throughput, self.flops_per_token = throughput, flops_per_token
        self.limits = {"tokens": tokens, "flops": flops, "seconds": seconds}
        self.stopped_by = "max_steps"

    def spent(self) -> dict[str, float]:
        tokens = self.throughput.tokens_seen
        return {"tokens": tokens, "flops": tokens * self.flops_per_token, "seconds": self.throughput.train_seconds}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step == getattr(self, "_checked_step", None):
            return  # mid-accumulation: a budget ends a run only at an optimizer step
        self._checked_step = trainer.global_step
        spent = self.spent()
        over = [name for name, limit in self.limits.items() if limit is not None and spent[name] >= limit]
        # every process stops at the same step (each times itself): the first one over a budget stops them all
        if any(v is not None for v in self.limits.values()) and trainer.strategy.reduce_boolean_decision(
            bool(over), all=False
        ):
            self.stopped_by, trainer.should_stop = over[0] if over else "seconds", True
