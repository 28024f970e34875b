"""The pretraining LightningModule: a GPT, next-token cross-entropy, an optimizer and an LR schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MeanMetric

from llm.errors import ConfigError, UserError
from llm.model import ModelConfig, build_gpt
from llm.objectives import causal_lm_loss

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]
ScheduleFactory = Callable[..., Callable[[int], float]]


class NonFiniteError(UserError):
    """A loss or gradient became NaN or infinite and the run was set to stop (nonfinite=stop)."""


class PretrainModule(L.LightningModule):
    """Trains `build_gpt(model_config)`; logs train/val loss, val perplexity and val bits per byte."""

    def __init__(
        self,
        model_config: ModelConfig,
        optimizer: OptimizerFactory,
        scheduler: ScheduleFactory,
        bytes_per_token: float,
        compile: bool = False,
        nonfinite: str = "stop",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.model_config = model_config
        self.model = build_gpt(model_config)
        if compile:
            self.model.compile()
        self.make_optimizer, self.make_schedule = optimizer, scheduler
        self.bytes_per_token = bytes_per_token
        self.val_loss = MeanMetric()
        self.nonfinite, self.skipped_steps = nonfinite, 0
        self.seed, self._micro_batch, self._seen_step = seed, 0, -1

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(idx)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seeds torch from (seed, rank, step, micro-batch): dropout is the same whether or not a run resumed."""
        step = self.trainer.global_step
        self._micro_batch = self._micro_batch + 1 if step == self._seen_step else 0
        self._seen_step = step
        entropy = [self.seed, self.trainer.global_rank, step, self._micro_batch]
        torch.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        loss = causal_lm_loss(self.model(x), y)
        if not torch.isfinite(loss):
            self.non_finite("loss", float(loss.detach()))
            return None
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.float().norm() for g in grads]).sum()):
            self.non_finite("gradient norm", float("nan"))
            for p in self.parameters():
                p.grad = None  # an optimizer skips parameters without a gradient: the step changes nothing

    def non_finite(self, what: str, value: float) -> None:
        """Stops the run (the last checkpoint stays as it was) or counts the step as skipped."""
        step = self.trainer.global_step
        if self.nonfinite == "stop":
            raise NonFiniteError(
                f"non-finite {what} ({value}) at step {step}; the run stopped and checkpoints/last.ckpt keeps the "
                "last good state. Lower optim.lr, set trainer.gradient_clip_val, or pass nonfinite=skip to skip "
                "such steps, then resume with ckpt_path=last"
            )
        self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_steps = int(checkpoint.get("skipped_steps", 0))
        # The schedule is rebuilt from the config, so a resume with more trainer.max_steps stretches it;
        # LambdaLR would otherwise restore the old total_steps from its saved state.
        for state in checkpoint.get("lr_schedulers", []):
            if "lr_lambdas" in state:
                state["lr_lambdas"] = [None] * len(state["lr_lambdas"])

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
