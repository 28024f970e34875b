"""Up-front checks of a composed training config, so a bad setting fails before anything is written or trained.

Each message names the setting, the value given, and what to give instead.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import re
from pathlib import Path
from typing import Any, get_args

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

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


def need_bool(cfg: DictConfig, key: str, *, optional: bool = False) -> None:
    """A switch is a real boolean: `overwrite=no` is the text 'no', which Python would take as true."""
    value = value_of(cfg, key)
    if value is ABSENT or (optional and value is None):
        return
    if not isinstance(value, bool):
        none = " (or null)" if optional else ""
        raise ConfigError(f"{key} must be true or false{none}, got {value!r}; write {key}=true or {key}=false")


# what the user sets for a setting that is only interpolated from another one (conf/data/text.yaml)
HINTS = {
    "data.path": "data.path=<a file, or a glob such as 'books/*.txt'>",
    "model_dir": "model=<a model directory: the model/ folder of a finished run>",
}
SHOWN_AS = {"model_dir": "model", "reference_dir": "reference"}  # what the user types for llm sft and llm dpo


def missing_settings(node: Any, path: str = "") -> list[str]:
    """The keys whose value is `???` (mandatory, not given), found without resolving any interpolation, so
    `${hydra:...}` and the like are never evaluated (there is no Hydra app when a config is composed in Python)."""
    if isinstance(node, DictConfig):
        if node._is_missing() or node._is_none() or node._is_interpolation():
            return [path] if node._is_missing() and path else []
        keys: list[Any] = list(node.keys())
    elif isinstance(node, ListConfig):
        if node._is_missing() or node._is_none() or node._is_interpolation():
            return [path] if node._is_missing() and path else []
        keys = list(range(len(node)))
    else:
        return []
    found = []
    for key in keys:
        child = node._get_node(key)
        name = f"{path}.{key}" if path else str(key)
        if isinstance(child, DictConfig | ListConfig):
            found += missing_settings(child, name)
        elif child is not None and child._is_missing():
            found.append(name)
    return found


def check_no_missing(cfg: DictConfig) -> None:
    """Every mandatory setting (`???` in the config) was given a value."""
    missing = missing_settings(cfg)
    if missing:
        key, shown = missing[0], [SHOWN_AS.get(k, k) for k in missing]
        others = f" (nor has {', '.join(shown[1:])})" if len(missing) > 1 else ""
        raise ConfigError(f"{shown[0]} has no value{others}; give {HINTS.get(key, f'{shown[0]}=...')}")


def check_switches(cfg: DictConfig) -> None:
    """On/off settings are true or false, not text that merely looks like an answer."""
    for key in ("overwrite", "trainer.enable_progress_bar", "trainer.enable_model_summary"):
        need_bool(cfg, key)
    need_bool(cfg, "compile", optional=True)  # null: decided by the accelerator (llm.run.recipes.compiles)


def lightning_precisions() -> list[str | int]:
    """The values the Lightning Trainer takes for `precision` (from its own type, so they follow the version)."""
    from lightning.fabric.connector import _PRECISION_INPUT

    values: list[str | int] = []
    for literal in get_args(_PRECISION_INPUT):
        values += [v for v in get_args(literal) if v not in values]
    return values


def accelerator_available(name: str) -> bool:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    if name == "gpu":  # Lightning's "gpu" is CUDA or Apple's MPS, whichever is there
        return any(AcceleratorRegistry[n]["accelerator"].is_available() for n in ("cuda", "mps"))
    return bool(AcceleratorRegistry[name]["accelerator"].is_available())


def no_device(name: str) -> str:
    if name in ("cuda", "gpu"):
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
        return f"PyTorch finds no GPU on this machine (torch {torch.__version__}, built with {build})"
    return f"Lightning finds no {name} device on this machine"


DEVICE_STRING = re.compile(r"\s*(-1|\d+(\s*,\s*\d+)*\s*,?)\s*")  # Lightning's "2" (a count) or "0,1" (indices)


def devices_ok(value: Any) -> bool:
    if value == "auto":
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1 or value == -1
    if isinstance(value, str):
        return bool(DEVICE_STRING.fullmatch(value)) and value.strip() not in ("0", "0,")
    if isinstance(value, ListConfig | list | tuple):
        items = list(value)
        return (
            bool(items)
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items)
            and len(set(items)) == len(items)
        )
    return False


def check_trainer(cfg: DictConfig) -> None:
    """trainer.precision, trainer.accelerator and trainer.devices are values the Lightning Trainer takes, and the
    accelerator is on this machine: found out now, not when the Trainer is built after the data is prepared."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    precision = value_of(cfg, "trainer.precision")
    if precision is not ABSENT and precision is not None:
        accepted = lightning_precisions()
        if isinstance(precision, bool) or precision not in accepted:
            shown = sorted(dict.fromkeys(map(str, accepted)), key=lambda v: "-" not in v)  # full names first
            raise ConfigError(
                f"trainer.precision={precision!r} is not a precision Lightning takes; choose one of: "
                f"{', '.join(shown)} (e.g. trainer.precision=32-true, or bf16-mixed on a recent GPU)"
            )
    accelerator = value_of(cfg, "trainer.accelerator")
    if accelerator not in (ABSENT, "auto") and not isinstance(accelerator, DictConfig):  # a node builds its own
        known = sorted({*AcceleratorRegistry.available_accelerators(), "gpu"})
        if not isinstance(accelerator, str) or accelerator not in known:
            raise ConfigError(
                f"trainer.accelerator={accelerator!r} is not an accelerator Lightning knows; choose one of: "
                f"auto, {', '.join(known)}"
            )
        if not accelerator_available(accelerator):
            raise ConfigError(
                f"trainer.accelerator={accelerator}: {no_device(accelerator)}; use trainer.accelerator=cpu, or "
                "trainer.accelerator=auto to use whatever this machine has"
            )
    devices = value_of(cfg, "trainer.devices")
    if devices is not ABSENT and not devices_ok(devices):
        given = OmegaConf.to_container(devices) if isinstance(devices, ListConfig) else devices
        raise ConfigError(
            f"trainer.devices={given!r} is not a number of devices Lightning takes; give a whole number >= 1 "
            "(e.g. trainer.devices=1), -1 for all of them, auto, or a list of device indices such as [0, 1]"
        )
    if accelerator in ("cuda", "gpu") and torch.cuda.is_available() and isinstance(devices, int):
        count = torch.cuda.device_count()
        if devices > count:
            raise ConfigError(
                f"trainer.devices={devices} but this machine has {count} CUDA GPU(s); "
                f"set trainer.devices={count} or lower"
            )


def strategy_name(cfg: DictConfig) -> str:
    """trainer.strategy as a lower-case name: "ddp", "fsdp", ... or the class a `_target_` node builds."""
    strategy = value_of(cfg, "trainer.strategy")
    if isinstance(strategy, DictConfig):
        return str(strategy.get("_target_", "")).rsplit(".", 1)[-1].lower()
    return "auto" if strategy in (ABSENT, None) else str(strategy).lower()


def check_distributed(cfg: DictConfig) -> None:
    """trainer.num_nodes is a count; fully sharded training goes through trainer=fsdp (FSDP2), which shards and
    gathers the network: Lightning's first FSDP strategy would leave each process saving its own shard."""
    need_int(cfg, "trainer.num_nodes", 1)
    name = strategy_name(cfg)
    if "fsdp" in name and name != "fsdp2strategy":
        raise ConfigError(
            f"trainer.strategy={name} is Lightning's first FSDP, which this framework does not shard or gather; "
            "use trainer=fsdp (FSDP2: llm.lit.sharding.FSDP2Strategy), on GPUs or CPUs"
        )


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
    need_number(cfg, "data.corpus.chunk_mb", 0, above=True)
    need_number(cfg, "optim.lr", 0, above=True)
    need_number(cfg, "optim.adamw_lr", 0, above=True)  # optim=muon's rates, absent elsewhere
    need_number(cfg, "optim.embedding_lr", 0, above=True, optional=True)
    need_number(cfg, "optim.weight_decay", 0)
    need_int(cfg, "checkpoint.every_n_steps", 1, optional=True)
    need_number(cfg, "checkpoint.every_minutes", 0, above=True, optional=True)
    need_choice(cfg, "nonfinite", ("stop", "skip"))
    for name in ("tokens", "flops", "seconds"):
        need_number(cfg, f"budget.{name}", 0, above=True, optional=True)
    need_int(cfg, "samples.num", 0)
    need_int(cfg, "samples.max_new_tokens", 1)
    need_number(cfg, "samples.temperature", 0)
    need_int(cfg, "samples.top_k", 1, optional=True)
    need_int(cfg, "eval.every_n_steps", 1, optional=True)
    need_int(cfg, "eval.max_tokens", 2, optional=True)
    need_int(cfg, "eval.window", 1, optional=True)
    need_int(cfg, "eval.stride", 1, optional=True)
    need_int(cfg, "eval.batch_size", 1)


def check_eval(cfg: DictConfig) -> None:
    """eval.path, when given, is a file: found out now, not after the data is prepared."""
    path = value_of(cfg, "eval.path")
    if path not in (ABSENT, None) and (not isinstance(path, str) or not Path(path).expanduser().is_file()):
        raise ConfigError(
            f"eval.path={path!r} is not a file (looked from {Path.cwd()}); give eval.path=<a UTF-8 text file> to "
            "score during training, or eval.path=null for the validation split"
        )


def check_schedule(cfg: DictConfig) -> None:
    """Builds the LR schedule for trainer.max_steps, which checks warmup against the run length."""
    if "scheduler" in cfg:
        instantiate(cfg.scheduler)(total_steps=cfg.trainer.max_steps)


def quietly_get_object(name: str) -> Any:
    """hydra.utils.get_object without the lines it logs to stderr when `name` is not importable (the error we
    raise says it in one line)."""
    log = logging.getLogger("hydra.utils")
    disabled, log.disabled = log.disabled, True
    try:
        return get_object(name)
    finally:
        log.disabled = disabled


def check_targets(node: Any, path: str) -> None:
    """Every `_target_` node names something importable, and each of its keys is a parameter it takes."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        target_name = node._target_
        try:
            target = quietly_get_object(target_name)
        except Exception as e:
            cause = " ".join(str(e).split())
            raise ConfigError(f"{path}._target_={target_name!r} names nothing importable ({cause})") from e
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
    """All checks that need no data: mandatory values, numbers, switches, the trainer's devices and strategy,
    the schedule, and the settings of every instantiated class."""
    check_no_missing(cfg)
    check_numbers(cfg)
    check_switches(cfg)
    check_eval(cfg)
    check_distributed(cfg)
    check_trainer(cfg)
    check_schedule(cfg)
    for group in ("trainer", "optim", "scheduler", "logger", "callbacks", "data"):
        if group in cfg:
            check_targets(cfg[group], group)
