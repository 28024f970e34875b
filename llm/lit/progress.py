"""A progress bar that counts optimizer steps out of trainer.max_steps (Lightning's counts batches of an epoch)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

SHOWN = {"train/loss": "loss {:.4g}", "val/loss": "val {:.4g}", "train/tokens_per_sec": "{:,.0f} tok/s"}


class StepProgressBar(ProgressBar):
    """`train ━━━━━━━━━━ 120/600 steps 0:00:12 0:00:48 loss 1.93 val 2.01 17,800 tok/s`."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._progress: Progress | None = None
        self._task: Any = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        self._progress = Progress(
            TextColumn("train"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=trainer.max_steps, completed=trainer.global_step, metrics=""
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._progress is None:
            return
        metrics = trainer.progress_bar_metrics
        shown = " ".join(form.format(float(metrics[name])) for name, form in SHOWN.items() if name in metrics)
        self._progress.update(self._task, completed=trainer.global_step, metrics=shown)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()
