"""Callbacks that measure a run: tokens seen and training throughput (validation time excluded)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class Throughput(L.Callback):
    """Counts training tokens and the wall time spent in training steps; survives a resume."""

    def __init__(self) -> None:
        self.tokens_seen = 0
        self.train_seconds = 0.0
        self._started: float | None = None

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens_seen / self.train_seconds if self.train_seconds > 0 else 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._started is not None:
            self.train_seconds += time.perf_counter() - self._started
        inputs = batch["input_ids"] if isinstance(batch, dict) else batch[0]
        self.tokens_seen += inputs.numel() * trainer.world_size
        pl_module.log("train/tokens_per_sec", self.tokens_per_sec, prog_bar=True)

    def state_dict(self) -> dict[str, Any]:
        return {"tokens_seen": self.tokens_seen, "train_seconds": self.train_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tokens_seen = int(state_dict["tokens_seen"])
        self.train_seconds = float(state_dict["train_seconds"])
