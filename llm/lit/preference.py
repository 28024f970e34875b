"""Preference optimisation (DPO and its variants): a policy trained on chosen/rejected pairs against a
frozen reference whose log-probabilities are computed once (llm/run/reference.py) and passed in.

Logged under these names, each training step's own value, and with a `val/` prefix the mean over validation:
train/loss (val/loss), rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies,
logps/chosen, logps/rejected, and kl/chosen: the mean of log π(y|x) − log π_ref(y|x) over the chosen
responses, an estimate of the policy's KL from the reference on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from llm.errors import ConfigError
from llm.lit.base import OptimizerFactory, ScheduleFactory, TrainModule
from llm.model import GPT
from llm.objectives import IGNORE_INDEX, PairLogps, PreferenceObjective, sequence_logprobs

METRICS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "kl/chosen",
)


def pair_logps(
    model: GPT, batch: dict[str, Tensor], logprobs: Callable[[Tensor, Tensor, Tensor], Tensor] = sequence_logprobs
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Summed response log-probs and response lengths of chosen (rows :B) and rejected (rows B:), in one pass;
    `logprobs` is sequence_logprobs, or the objective's compiled copy of it."""
    targets = batch["targets"]
    mask = targets != IGNORE_INDEX
    logps = logprobs(model(batch["input_ids"]), targets, mask)  # (2B,)
    lengths = mask.sum(dim=-1).float()
    b = len(batch["index"])
    return logps[:b], logps[b:], lengths[:b], lengths[b:]


class PreferenceModule(TrainModule):
    """`reference` maps split ("train"/"val") to (N, 2) reference log-probs (chosen, rejected) by pair index."""

    def __init__(
        self,
        model: GPT,
        objective: Any,
        optimizer: OptimizerFactory,
        scheduler: ScheduleFactory,
        *,
        reference: dict[str, Tensor] | None = None,
        nonfinite: str = "stop",
        seed: int = 0,
        weights: Mapping[str, Tensor] | None = None,
    ) -> None:
        super().__init__(model, optimizer, scheduler, nonfinite=nonfinite, seed=seed, weights=weights)
        if not isinstance(objective, PreferenceObjective):
            raise ConfigError(
                f"llm dpo needs a preference objective, got {type(objective).__name__}; use objective=dpo, ipo, "
                "cdpo, hinge or simpo"
            )
        if reference is None and not objective.reference_free:
            raise ConfigError(f"objective {objective.name} needs the reference's log-probabilities; none were given")
        self.objective = objective
        for split, logps in (reference or {}).items():
            self.register_buffer(f"reference_{split}", logps, persistent=False)  # not saved: rebuilt from cache
        self.metrics = nn.ModuleDict({f"val_{i}": MeanMetric() for i in range(len(METRICS))})

    def step(self, batch: dict[str, Tensor], split: str) -> tuple[Tensor, dict[str, Tensor]]:
        chosen, rejected, chosen_tokens, rejected_tokens = pair_logps(self.model, batch, self.objective.logprobs)
        ref = getattr(self, f"reference_{split}", None)
        pairs = ref[batch["index"]] if ref is not None else None  # (B, 2)
        logps = PairLogps(
            chosen,
            rejected,
            chosen_tokens,
            rejected_tokens,
            None if pairs is None else pairs[:, 0],
            None if pairs is None else pairs[:, 1],
        )
        out = self.objective(logps)
        loss = out.losses.mean()
        values = {
            "loss": loss.detach(),
            "rewards/chosen": out.chosen_rewards.mean(),
            "rewards/rejected": out.rejected_rewards.mean(),
            "rewards/margins": (out.chosen_rewards - out.rejected_rewards).mean(),
            "rewards/accuracies": (out.chosen_rewards > out.rejected_rewards).float().mean(),
            "logps/chosen": chosen.detach().mean(),
            "logps/rejected": rejected.detach().mean(),
        }
        if pairs is not None:
            values["kl/chosen"] = (chosen.detach() - pairs[:, 0]).mean()
        return loss, values

    def log_values(self, values: dict[str, Tensor], split: str, batch_size: int) -> None:
        """A training step's values as they are (`log_step`); validation's averaged over its batches."""
        for i, name in enumerate(METRICS):
            if name not in values:
                continue
            show = name == "loss"
            if split == "train":
                self.log_step("train/loss" if show else name, values[name], prog_bar=show, batch_size=batch_size)
                continue
            metric = self.metrics[f"val_{i}"]
            assert isinstance(metric, MeanMetric)
            metric(values[name])
            self.log(f"val/{name}", metric, on_step=False, on_epoch=True, prog_bar=show, batch_size=batch_size)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        loss, values = self.step(batch, "train")
        if self.finite_or_skip(loss) is None:
            return None
        self.log_values(values, "train", len(batch["index"]))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        with torch.no_grad():
            _, values = self.step(batch, "val")
        self.log_values(values, "val", len(batch["index"]))
