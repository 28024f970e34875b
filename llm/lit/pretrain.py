"""The pretraining LightningModule: a GPT, next-token cross-entropy, an optimizer and an LR schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MeanMetric

from llm.errors import ConfigError
from llm.model import ModelConfig, build_gpt
from llm.objectives import causal_lm_loss

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]
ScheduleFactory = Callable[..., Callable[[int], float]]


class PretrainModule(L.LightningModule):
    """Trains `build_gpt(model_config)`; logs train/val loss, val perplexity and val bits per byte."""

    def __init__(
        self,
        model_config: ModelConfig,
        optimizer: OptimizerFactory,
        scheduler: ScheduleFactory,
        bytes_per_token: float,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.model_config = model_config
        self.model = build_gpt(model_config)
        if compile:
            self.model.compile()
        self.make_optimizer, self.make_schedule = optimizer, scheduler
        self.bytes_per_token = bytes_per_token
        self.val_loss = MeanMetric()

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(idx)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = causal_lm_loss(self.model(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_loss.update(causal_lm_loss(self.model(x), y), weight=y.numel())

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", torch.exp(loss))
        self.log("val/bpb", loss / math.log(2) / self.bytes_per_token)

    def configure_optimizers(self) -> Any:
        total_steps = self.trainer.max_steps
        if total_steps is None or total_steps < 1:
            raise ConfigError("trainer.max_steps must be a positive number of optimizer steps (the schedule needs it)")
        optimizer = self.make_optimizer(self.model)
        schedule = LambdaLR(optimizer, self.make_schedule(total_steps=total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
