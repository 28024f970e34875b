"""Up-front checks of a composed training config, so a bad setting fails before anything is written or trained.

Each message names the setting, the value given, and what to give instead.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from llm.errors import ConfigError

ABSENT = object()
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def value_of(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=ABSENT)


def need_int(cfg: DictConfig, key: str, minimum: int, *, optional: bool = False) -> None:
    value = value_of(cfg, key)
    if value is ABSENT or (optional and value is None):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        none = " or null" if optional else ""
        raise ConfigError(
            f"{key} must be a whole number >= {minimum}{none}, got {value!r}; e.g. {key}={max(minimum, 1)}"
        )


def need_number(
    cfg: DictConfig,
    key: str,
    minimum: float,
    *,
    above: bool = False,
    below: float | None = None,
    optional: bool = False,
) -> None:
    value = value_of(cfg, key)
    if value is ABSENT or (optional and value is None):
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (value > minimum if above else value >= minimum) and (below is None or value < below)
    if not ok:
        bound = f"> {minimum}" if above else f">= {minimum}"
        if below is not None:
            bound += f" and < {below}"
        none = " (or null)" if optional else ""
        raise ConfigError(f"{key} must be a number {bound}{none}, got {value!r}")


def need_choice(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    value = value_of(cfg, key)
    if value is not ABSENT and value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(choices)}")


def check_numbers(cfg: DictConfig) -> None:
    """Steps, sizes, rates and sampling settings have the right type and range."""
    need_int(cfg, "seed", 0)
    need_int(cfg, "trainer.max_steps", 1)
    need_int(cfg, "trainer.val_check_interval", 1)
    need_int(cfg, "trainer.accumulate_grad_batches", 1)
    need_int(cfg, "trainer.log_every_n_steps", 1)
    need_number(cfg, "trainer.gradient_clip_val", 0, optional=True)
    need_int(cfg, "data.batch_size", 1)
    need_int(cfg, "data.val_batches", 1)
    need_int(cfg, "data.num_workers", 0)
    need_number(cfg, "data.val_fraction", 0, above=True, below=1)
    need_number(cfg, "optim.lr", 0, above=True)
    need_number(cfg, "optim.weight_decay", 0)
    need_int(cfg, "checkpoint.every_n_steps", 1, optional=True)
    need_number(cfg, "checkpoint.every_minutes", 0, above=True, optional=True)
    need_choice(cfg, "nonfinite", ("stop", "skip"))
    need_int(cfg, "samples.num", 0)
    need_int(cfg, "samples.max_new_tokens", 1)
    need_number(cfg, "samples.temperature", 0)
    need_int(cfg, "samples.top_k", 1, optional=True)


def check_schedule(cfg: DictConfig) -> None:
    """Builds the LR schedule for trainer.max_steps, which checks warmup against the run length."""
    if "scheduler" in cfg:
        instantiate(cfg.scheduler)(total_steps=cfg.trainer.max_steps)


def check_targets(node: Any, path: str) -> None:
    """Every `_target_` node names something importable, and each of its keys is a parameter it takes."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        target_name = node._target_
        try:
            target = get_object(target_name)
        except Exception as e:
            raise ConfigError(f"{path}._target_={target_name!r} names nothing importable ({e})") from e
        params = inspect.signature(target).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            for key in map(str, node):
                if key not in HYDRA_KEYS and key not in params:
                    close = difflib.get_close_matches(key, list(params), n=1)
                    names = [p for p in params if p not in ("self", "model")]
                    fix = (
                        f"did you mean {path}.{close[0]}?" if close else "remove it, or use one of: " + ", ".join(names)
                    )
                    raise ConfigError(f"{path}.{key} is not a setting of {target_name}; {fix}")
    for name in map(str, node):
        check_targets(node._get_node(name), f"{path}.{name}" if path else name)


def check_run_config(cfg: DictConfig) -> None:
    """All checks that need no data: numbers, schedule, and the settings of every instantiated class."""
    check_numbers(cfg)
    check_schedule(cfg)
    for group in ("trainer", "optim", "scheduler", "logger", "callbacks", "data"):
        if group in cfg:
            check_targets(cfg[group], group)
