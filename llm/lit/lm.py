"""Language modelling (pretraining and SFT): a network, a `kind = "lm"` objective over (logits, targets)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from llm.errors import ConfigError
from llm.lit.base import OptimizerFactory, ScheduleFactory, TrainModule
from llm.model import GPT
from llm.objectives import IGNORE_INDEX, LanguageModeling


class LMModule(TrainModule):
    """Logs train/loss and val/loss (nats per target token), with val/ppl, and val/bpb when bytes are known."""

    def __init__(
        self,
        model: GPT,
        objective: Any,
        optimizer: OptimizerFactory,
        scheduler: ScheduleFactory,
        *,
        bytes_per_token: float | None = None,
        nonfinite: str = "stop",
        seed: int = 0,
        weights: Mapping[str, Tensor] | None = None,
    ) -> None:
        super().__init__(model, optimizer, scheduler, nonfinite=nonfinite, seed=seed, weights=weights)
        if not isinstance(objective, LanguageModeling):
            raise ConfigError(
                f"objective {type(objective).__name__} is not a language-modelling objective; use "
                "objective=causal_lm (llm train) or objective=sft (llm sft)"
            )
        self.objective, self.bytes_per_token = objective, bytes_per_token
        self.val_loss = MeanMetric()

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(idx)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        loss = self.finite_or_skip(self.objective(self.model(x), y))
        if loss is not None:
            self.log_step("train/loss", loss, prog_bar=True, sync_dist=True)  # the global batch's
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_loss.update(self.objective(self.model(x), y), weight=(y != IGNORE_INDEX).sum())

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        # the metric already combined every process's batches; sync_dist only says so to Lightning
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/ppl", torch.exp(loss), sync_dist=True)
        if self.bytes_per_token is not None:
            self.log("val/bpb", loss / math.log(2) / self.bytes_per_token, sync_dist=True)
