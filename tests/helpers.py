"""Test-only pieces that configs refer to by `_target_`."""

from __future__ import annotations

from typing import Any

import lightning as L


class StopAtStep(L.Callback):
    """Ends training after `step` optimizer steps, as an interrupted run would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True
