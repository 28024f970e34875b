"""Learning-rate schedules: `Schedule(total_steps=N)(step)` multiplies the base lr at a 0-based step.

Hydra builds them with `_partial_: true` and the Lightning module passes `total_steps`; they are small
picklable objects (not lambdas) so that `LambdaLR.state_dict` can save them.

Warmup (every schedule) is nanoGPT's: (step + 1) / (warmup_steps + 1) for step < warmup_steps, so the
first step already moves the weights and the multiplier reaches 1.0 at step == warmup_steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """Linear warmup; subclasses say what follows it in `after_warmup`."""

    warmup_steps: int = 100
    total_steps: int

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not isinstance(self.total_steps, int) or self.total_steps < 1:
            raise ConfigError(
                f"{name} needs total_steps >= 1 (trainer.max_steps), got {self.total_steps!r}; "
                "set trainer.max_steps to the number of optimizer steps"
            )
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(
                f"scheduler.warmup_steps must be a whole number >= 0, got {self.warmup_steps!r}; use 0 for no warmup"
            )
        if self.warmup_steps > self.total_steps:
            raise ConfigError(
                f"scheduler.warmup_steps={self.warmup_steps} exceeds the {self.total_steps} training steps "
                "(trainer.max_steps); lower scheduler.warmup_steps or raise trainer.max_steps"
            )

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return self.after_warmup(step)

    def after_warmup(self, step: int) -> float:
        return 1.0

    def progress(self, step: int, start: int) -> float:
        """Fraction of the way from `start` to `total_steps`, clamped to [0, 1]."""
        return min(1.0, max(0.0, (step - start) / max(1, self.total_steps - start)))


def check_ratio(value: float, key: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"scheduler.{key} must be between 0 and 1 (a fraction of the base lr), got {value}; "
            "e.g. 0.1 ends at a tenth of optim.lr"
        )


@dataclass(frozen=True, kw_only=True)
class Constant(Schedule):
    """Warmup, then the base lr to the end."""


@dataclass(frozen=True, kw_only=True)
class Cosine(Schedule):
    """Warmup, then half a cosine from 1 down to `min_lr_ratio` at `total_steps`, flat after."""

    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ratio(self.min_lr_ratio, "min_lr_ratio")

    def after_warmup(self, step: int) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.progress(step, self.warmup_steps)))  # 1 -> 0
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


@dataclass(frozen=True, kw_only=True)
class Linear(Schedule):
    """Warmup, then a straight line from 1 down to `min_lr_ratio` at `total_steps`, flat after."""

    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ratio(self.min_lr_ratio, "min_lr_ratio")

    def after_warmup(self, step: int) -> float:
        return 1.0 - (1.0 - self.min_lr_ratio) * self.progress(step, self.warmup_steps)


@dataclass(frozen=True, kw_only=True)
class WarmupStableDecay(Schedule):
    """Warmup, the base lr, then a linear decay to `min_lr_ratio` over the last `decay_fraction` of training.

    The stable phase lets one run branch into decays of several lengths (the point of WSD).
    """

    decay_fraction: float = 0.2
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ratio(self.min_lr_ratio, "min_lr_ratio")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ConfigError(
                f"scheduler.decay_fraction must be in (0, 1], the share of training spent decaying, "
                f"got {self.decay_fraction}; e.g. 0.2 decays over the last fifth"
            )
        if self.decay_start < self.warmup_steps:
            raise ConfigError(
                f"scheduler.warmup_steps={self.warmup_steps} overlaps the decay, which starts at step "
                f"{self.decay_start} (decay_fraction={self.decay_fraction} of {self.total_steps} steps); "
                "lower scheduler.warmup_steps or scheduler.decay_fraction"
            )

    @property
    def decay_start(self) -> int:
        """First step of the decay; the last round(decay_fraction · total_steps) steps decay, at least one."""
        return self.total_steps - max(1, round(self.decay_fraction * self.total_steps))

    def after_warmup(self, step: int) -> float:
        return 1.0 - (1.0 - self.min_lr_ratio) * self.progress(step, self.decay_start)
