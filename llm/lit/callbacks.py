"""Callbacks that measure a run: tokens seen and training throughput (validation time excluded)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from llm.lit.base import TrainModule


class Throughput(L.Callback):
    """Counts training tokens and the wall time of training; survives a resume.

    `train_seconds` is the wall time of the training loop: each step (forward, backward, optimizer) and the time
    before it (from the end of the last step, or the start of training, to the start of this one: loading the
    batch, logging, checkpoints), less the time spent validating in between. `compute_seconds` counts the steps
    alone (batch start to batch end), so `tokens_per_sec` is what a run achieves and `tokens_per_sec_compute`
    what it would with data for free.
    """

    def __init__(self) -> None:
        self.tokens_seen = 0
        self.train_seconds = 0.0
        self.compute_seconds = 0.0
        self._step_started: float | None = None
        self._waiting_since: float | None = None  # the end of the last step: the loop waits for the next batch
        self._validating_since: float | None = None
        self._validation_seconds = 0.0  # validation inside the current wait, not counted as waiting

    @property
    def tokens_per_sec(self) -> float:
        """Tokens per second of training wall time, waiting for data included."""
        return self.tokens_seen / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def tokens_per_sec_compute(self) -> float:
        """Tokens per second of the training steps alone (waiting for data left out)."""
        return self.tokens_seen / self.compute_seconds if self.compute_seconds > 0 else 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._waiting_since is None:  # the first epoch: the first batch's loading counts too
            self._start_waiting()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._waiting_since is not None:
            self.train_seconds += max(0.0, now - self._waiting_since - self._validation_seconds)
            self._waiting_since = None
        self._step_started = now

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._step_started is not None:
            step = time.perf_counter() - self._step_started
            self.train_seconds += step
            self.compute_seconds += step
            self._step_started = None
        inputs = batch["input_ids"] if isinstance(batch, dict) else batch[0]
        self.tokens_seen += inputs.numel() * trainer.world_size
        # a TrainModule logs it only at the steps its loggers write; any other module at every step
        log = pl_module.log_step if isinstance(pl_module, TrainModule) else pl_module.log
        log("train/tokens_per_sec", self.tokens_per_sec, prog_bar=True)
        self._start_waiting()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._waiting_since is not None:
            self._validating_since = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validating_since is not None:
            self._validation_seconds += time.perf_counter() - self._validating_since
            self._validating_since = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._waiting_since = None  # after the last step nothing waits for data

    def _start_waiting(self) -> None:
        self._waiting_since, self._validation_seconds = time.perf_counter(), 0.0

    def state_dict(self) -> dict[str, Any]:
        seconds = {"train_seconds": self.train_seconds, "compute_seconds": self.compute_seconds}
        return {"tokens_seen": self.tokens_seen, **seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tokens_seen = int(state_dict["tokens_seen"])
        self.train_seconds = float(state_dict["train_seconds"])
        # a checkpoint from before compute_seconds was kept counted steps alone in train_seconds
        self.compute_seconds = float(state_dict.get("compute_seconds", self.train_seconds))
