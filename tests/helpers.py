"""Test-only pieces that configs refer to by `_target_`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L


class StopAtStep(L.Callback):
    """Ends training after `step` optimizer steps, as an interrupted run would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class RecordTrainingDtypes(L.Callback):
    """Writes to `path` (JSON) the trainer's precision and the dtypes of the LM head's output in training steps.

    The head is a Linear, so under bf16 autocast its output is bfloat16 and without autocast float32.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.dtypes: list[str] = []
        self.in_training_step = False
        self.handle: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.handle = pl_module.model.head.register_forward_hook(self.record)

    def record(self, module: Any, args: Any, output: Any) -> None:
        if self.in_training_step:
            self.dtypes.append(str(output.dtype))

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.in_training_step = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.in_training_step = False

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.handle.remove()
        self.path.write_text(json.dumps({"precision": trainer.precision, "head_dtypes": self.dtypes}))
