"""Preference objectives (DPO and its variants): losses of a batch of (chosen, rejected) pairs.

Each objective takes the summed log-probabilities of every pair's response tokens under the policy (and, for
all but the reference-free ones, under the frozen reference) and returns a loss per pair and the implicit
rewards. Everything is computed in float32 with log-sigmoid, so large margins neither overflow nor lose
precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from llm.errors import ConfigError
from llm.objectives.causal_lm import OBJECTIVES, sequence_logprobs


@dataclass(frozen=True)
class PairLogps:
    """Summed log-probabilities of each pair's response tokens, and the response lengths."""

    chosen: Tensor  # (B,) policy, summed over the chosen response's tokens
    rejected: Tensor  # (B,)
    chosen_tokens: Tensor  # (B,) number of response tokens (float or int)
    rejected_tokens: Tensor  # (B,)
    ref_chosen: Tensor | None = None  # (B,) the frozen reference; None for reference-free objectives
    ref_rejected: Tensor | None = None


@dataclass(frozen=True)
class PreferenceLoss:
    """Per-pair losses (the training loss is losses.mean()) and the implicit rewards, detached."""

    losses: Tensor  # (B,)
    chosen_rewards: Tensor  # (B,)
    rejected_rewards: Tensor  # (B,)


def check_beta(beta: float) -> float:
    """β as a float; zero, negative, infinite or non-numeric values are a ConfigError naming objective.beta."""
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not math.isfinite(beta) or beta <= 0:
        raise ConfigError(
            f"objective.beta must be a positive number, got {beta!r}; it scales the log-ratio margins "
            "(e.g. objective.beta=0.1 for dpo, objective.beta=2.0 for simpo)"
        )
    return float(beta)


def check_real(name: str, value: float, low: float, high: float, fix: str) -> float:
    """`value` as a float in [low, high); otherwise a ConfigError naming objective.<name> and `fix`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value < high:
        bounds = f"a number in [{low}, {high})" if math.isfinite(high) else f"a finite number >= {low}"
        raise ConfigError(f"objective.{name} must be {bounds}, got {value!r}; {fix}")
    return float(value)


class PreferenceObjective:
    """Base of the preference objectives: checks the inputs, casts them to float32 and calls `losses`."""

    kind = "preference"
    reference_free: bool = False
    name = "preference"
    logprobs = staticmethod(sequence_logprobs)  # the policy's logits -> the summed response log-probs it takes

    def compile(self, mode: str | None = None) -> None:
        """Compiles `logprobs` (`compile=true` does, with the network; `mode` is torch.compile's): one fused pass
        over the logits."""
        self.logprobs = torch.compile(sequence_logprobs, mode=mode)

    def __call__(self, logps: PairLogps) -> PreferenceLoss:
        shape = logps.chosen.shape
        if logps.chosen.dim() != 1:
            raise ValueError(f"{self.name}: log-probabilities must have shape (B,), got {tuple(shape)}")
        tensors = [logps.rejected, logps.chosen_tokens, logps.rejected_tokens]
        if not self.reference_free:
            if logps.ref_chosen is None or logps.ref_rejected is None:
                raise ValueError(
                    f"the {self.name} objective needs the reference model's log-probabilities "
                    "(PairLogps.ref_chosen and ref_rejected); compute them with the frozen reference, "
                    "or use a reference-free objective such as simpo"
                )
            tensors += [logps.ref_chosen, logps.ref_rejected]
        if any(t.shape != shape for t in tensors):
            shapes = [tuple(t.shape) for t in [logps.chosen, *tensors]]
            raise ValueError(f"{self.name}: every PairLogps field must have the same shape (B,), got {shapes}")
        return self.losses(logps)

    def losses(self, logps: PairLogps) -> PreferenceLoss:
        raise NotImplementedError

    def margins(self, logps: PairLogps) -> tuple[Tensor, Tensor, Tensor]:
        """h = (π_c − π_r) − (ref_c − ref_r) and the log-ratios π − ref of chosen and rejected, in float32."""
        assert logps.ref_chosen is not None and logps.ref_rejected is not None
        chosen = logps.chosen.float() - logps.ref_chosen.float()
        rejected = logps.rejected.float() - logps.ref_rejected.float()
        return chosen - rejected, chosen, rejected


class RatioObjective(PreferenceObjective):
    """An objective of the margin h of policy-to-reference log-ratios; its rewards are β·(π − ref)."""

    def __init__(self, *, beta: float = 0.1) -> None:
        self.beta = check_beta(beta)

    def losses(self, logps: PairLogps) -> PreferenceLoss:
        h, chosen, rejected = self.margins(logps)
        return PreferenceLoss(self.loss(h), (self.beta * chosen).detach(), (self.beta * rejected).detach())

    def loss(self, h: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(beta={self.beta})"


@OBJECTIVES.register("dpo")
class DPO(RatioObjective):
    """DPO (Rafailov et al. 2023): −log σ(β·h), h the chosen-minus-rejected margin of log-ratios to the reference."""

    name = "dpo"

    def loss(self, h: Tensor) -> Tensor:
        return -F.logsigmoid(self.beta * h)


@OBJECTIVES.register("ipo")
class IPO(RatioObjective):
    """IPO (Azar et al. 2023): (h − 1/(2β))², a squared loss that pulls the margin to 1/(2β) instead of infinity.

    h is the margin of log-ratios summed over each response's tokens, as in the paper's definition; TRL's
    "ipo" loss averages the log-probabilities per token instead, so its β is not interchangeable with this one.
    """

    name = "ipo"

    def loss(self, h: Tensor) -> Tensor:
        return (h - 1 / (2 * self.beta)) ** 2


@OBJECTIVES.register("cdpo")
class ConservativeDPO(RatioObjective):
    """Conservative DPO: −(1−ε)·log σ(β·h) − ε·log σ(−β·h), DPO with labels flipped with probability ε."""

    name = "cdpo"

    def __init__(self, *, beta: float = 0.1, label_smoothing: float = 0.1) -> None:
        super().__init__(beta=beta)
        fix = "it is the probability that a label is wrong (e.g. objective.label_smoothing=0.1)"
        self.label_smoothing = check_real("label_smoothing", label_smoothing, 0.0, 0.5, fix)

    def loss(self, h: Tensor) -> Tensor:
        eps = self.label_smoothing
        return -(1 - eps) * F.logsigmoid(self.beta * h) - eps * F.logsigmoid(-self.beta * h)

    def __repr__(self) -> str:
        return f"ConservativeDPO(beta={self.beta}, label_smoothing={self.label_smoothing})"


@OBJECTIVES.register("hinge")
class Hinge(RatioObjective):
    """Hinge loss (SLiC): max(0, 1 − β·h); pairs whose scaled margin passes 1 contribute nothing."""

    name = "hinge"

    def loss(self, h: Tensor) -> Tensor:
        return torch.relu(1 - self.beta * h)


@OBJECTIVES.register("simpo")
class SimPO(PreferenceObjective):
    """SimPO (Meng et al. 2024), reference-free: −log σ(β·(π_c/|c| − π_r/|r|) − γ); rewards β·π/|y|.

    π/|y| is a response's log-probability per token. Lengths must be positive (the preference data drops pairs
    with an empty response).
    """

    name = "simpo"
    reference_free = True

    def __init__(self, *, beta: float = 2.0, gamma: float = 0.5) -> None:
        self.beta = check_beta(beta)
        fix = "it is the target reward margin (e.g. objective.gamma=0.5)"
        self.gamma = check_real("gamma", gamma, 0.0, math.inf, fix)

    def losses(self, logps: PairLogps) -> PreferenceLoss:
        chosen = self.beta * logps.chosen.float() / logps.chosen_tokens.float()
        rejected = self.beta * logps.rejected.float() / logps.rejected_tokens.float()
        losses = -F.logsigmoid(chosen - rejected - self.gamma)
        return PreferenceLoss(losses, chosen.detach(), rejected.detach())

    def __repr__(self) -> str:
        return f"SimPO(beta={self.beta}, gamma={self.gamma})"
