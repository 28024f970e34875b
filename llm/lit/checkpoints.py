"""`checkpoints/last.ckpt`: written every N optimizer steps and/or M minutes and at the end of every run.

Each save goes to a temporary file that is synced and renamed over last.ckpt, so a run killed at any
moment (SIGKILL included) leaves the previous checkpoint or the new one, never half of one. (Randomness
inside training steps, such as dropout, is seeded per step by the module, so it needs no saved RNG state.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L


class LastCheckpoint(L.Callback):
    """Keeps `dirpath/last.ckpt` current; saves only right after an optimizer step."""

    def __init__(self, dirpath: str, every_n_steps: int | None = 100, every_minutes: float | None = None) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps, self.every_minutes = every_n_steps, every_minutes
        self._saved_step = self._seen_step = -1
        self._first_batch = True
        self._saved_at = time.monotonic()

    @property
    def saved_step(self) -> int:
        """The optimizer step of the checkpoint at `path` (this run's last save, or the one it resumed)."""
        return self._saved_step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_batch = True
        self._saved_step = self._seen_step = trainer.global_step
        self._saved_at = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, stepped = trainer.global_step, trainer.global_step != self._seen_step
        self._seen_step = step
        if stepped and self._due_everywhere(trainer, step):  # never in the middle of gradient accumulation
            self.save(trainer)

    def _due_everywhere(self, trainer: L.Trainer, step: int) -> bool:
        """Whether a save is due; by time, each process's own clock counts, so the processes agree first (a
        save is made by all of them together: one saving alone would wait for the others forever)."""
        if self.every_minutes is None:
            return self._due(step)
        return bool(trainer.strategy.reduce_boolean_decision(self._due(step), all=False))

    def _due(self, step: int) -> bool:
        by_steps = self.every_n_steps is not None and step % self.every_n_steps == 0
        by_time = self.every_minutes is not None and time.monotonic() - self._saved_at >= 60 * self.every_minutes
        return by_steps or by_time

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._saved_step:
            self.save(trainer)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._first_batch:
            # Lightning logs a step under its count of batches that stepped, which it restores one off after
            # some checkpoints (taken at the end of a run, or of a finite epoch); align it with the optimizer
            # step, so a resumed run logs its first step under that step's own number.
            trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step
            self._first_batch = False

    def save(self, trainer: L.Trainer) -> None:
        temp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(temp)
        if trainer.is_global_zero:
            with temp.open("rb") as file:
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        self._saved_step, self._saved_at = trainer.global_step, time.monotonic()
