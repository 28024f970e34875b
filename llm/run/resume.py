"""Resuming a run: find and check its checkpoint, and start from the run's own saved config.

On a resume the saved `config.yaml` wins: settings the user did not name take the saved value, so
`llm train hydra.run.dir=DIR ckpt_path=last` resumes whatever that run was, for as many steps as it had.
Settings in RESUMABLE (how long to train, logging, checkpointing, samples) change when the user names
them; naming any other setting with a value different from the saved one is an error listing the keys. A
setting the saved run lacks (added to the framework since) takes the given value when the user names its group
(`trainer=ddp`), so that resuming with the command that started the run keeps working after an upgrade.
Where the run's files go follows the directory it is resumed in.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from llm.errors import CheckpointError, ConfigError

# keys (or key prefixes ending in ".") that may differ between a run and its resume
RESUMABLE = (
    "ckpt_path",
    "overwrite",
    "nonfinite",
    "paths.cache_dir",
    "logger.",
    "callbacks.",
    "checkpoint.",
    "samples.",
    "eval.",
    "data.num_workers",
    "threads",
    "trainer.max_steps",
    "budget.",
    "trainer.val_check_interval",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
)
GLOBAL_GROUPS = ("experiment",)  # override sets that may touch any key
ABSENT = object()


def resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def override_key(override: str) -> str:
    """`+model.n_layer=2` -> `model.n_layer`; `model/attention=manual` -> `model.attention`."""
    return override.lstrip("~+").split("=", 1)[0].replace("/", ".")


def named_by(key: str, overrides: list[str]) -> bool:
    for override in overrides:
        name = override_key(override)
        if name in GLOBAL_GROUPS or key == name or key.startswith(name + "."):
            return True
    return False


def named_itself(key: str, overrides: list[str] | None) -> bool:
    """`key` is named on its own (`+trainer.x=1`), not only through a group or parent (`trainer=ddp`); a call
    from Python (None) names every key."""
    return overrides is None or any(override_key(override) == key for override in overrides)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf values by dotted key; lists and empty mappings are leaves."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key in sorted(flat):
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(flat[key], dict) and isinstance(node.get(leaf), dict):
            continue  # an empty mapping under which deeper keys were already set
        node[leaf] = flat[key]
    return root


def follows_the_run(key: str) -> bool:
    """Settings that say where this run is now (its folder may have moved), not how it trains."""
    return key in ("ckpt_path", "overwrite", "paths.run_dir", "trainer.default_root_dir") or key.endswith(
        (".dirpath", ".save_dir")
    )


def literal(value: Any) -> Any:
    """A resolved string value as OmegaConf must hold it to read it back as the same text."""
    return value.replace("${", "\\${") if isinstance(value, str) else value


def resume_config(saved_path: Path, given: DictConfig, overrides: list[str] | None) -> DictConfig:
    """The saved config, with the RESUMABLE settings the user named taken from `given`.

    `overrides` are the user's command-line overrides; None (a call from Python) treats every setting of
    `given` as named, so outside RESUMABLE it must match the saved config.
    """
    saved = flatten(OmegaConf.to_container(load_saved_config(saved_path), resolve=False))  # written resolved
    wanted = flatten(OmegaConf.to_container(given, resolve=True))
    merged, conflicts = {}, []
    for key in sorted(saved.keys() | wanted.keys()):
        before, after = saved.get(key, ABSENT), wanted.get(key, ABSENT)
        named = overrides is None or named_by(key, overrides)
        if before == after or follows_the_run(key) or (named and resumable(key)):
            value = after
        elif named and before is ABSENT and not named_itself(key, overrides):
            value = after  # named through its group (trainer=ddp), and added to the group since the run was saved
        elif named:
            conflicts.append(f"{key} (saved {show(before)}, given {show(after)})")
            continue
        else:
            value = before
        if value is not ABSENT:
            merged[key] = literal(value)
    if conflicts:
        raise ConfigError(
            f"a resume continues the run saved in {saved_path}, but these settings differ from it and cannot "
            f"change on a resume: {'; '.join(conflicts)}. Drop them from the command line to resume, or start a "
            "new run in another hydra.run.dir (what may change: " + ", ".join(RESUMABLE) + ")"
        )
    return OmegaConf.create(unflatten(merged))


def load_saved_config(path: Path) -> DictConfig:
    """A run's config.yaml: plain YAML only (OmegaConf's loader builds no Python objects from tags)."""
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(
            f"{path} is not a plain YAML config ({str(e).splitlines()[0]}); it was not written by llm train: restore "
            "it, or start a new run in another hydra.run.dir"
        ) from e
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} holds no mapping of settings; restore it, or start a new run elsewhere")
    return cfg


def show(value: Any) -> str:
    return "nothing" if value is ABSENT else repr(value)


def find_checkpoint(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """`last` means the run directory's checkpoints/last.ckpt; anything else is a path to a .ckpt file."""
    if ckpt_path in (None, ""):
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(str(ckpt_path))
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; ckpt_path=last resumes the run whose directory is given by "
            "hydra.run.dir=<that run's directory>, and ckpt_path=<file> needs an existing .ckpt file"
        )
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Loads a Lightning checkpoint with weights_only=True: plain tensors and containers, never code."""
    try:
        # torch warns (two lines on stderr) about a file it did not write, e.g. "Detected pickle protocol 4",
        # before refusing it below, where the refusal is the whole message: its warnings are held back, and
        # shown only when the checkpoint loads
        with warnings.catch_warnings(record=True) as held:
            warnings.simplefilter("always")
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap can only be used" not in str(e):
                    raise
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # torch's legacy format
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it holds Python objects other than tensors and plain data, which could "
            "run code when loaded; llm never writes such checkpoints, so do not trust this file"
        ) from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({str(e).strip().splitlines()[0][:200]}); resume from "
            "another checkpoint (ckpt_path=<file>) or start the run again"
        ) from e
    for warning in held:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    missing = [
        key
        for key in ("state_dict", "global_step", "loops")
        if not isinstance(checkpoint, dict) or key not in checkpoint
    ]
    if missing:
        raise CheckpointError(
            f"{path} is not a training checkpoint (it lacks {', '.join(missing)}); give a checkpoints/*.ckpt "
            "file written by llm train"
        )
    return checkpoint


def check_fits(checkpoint: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> None:
    """The checkpoint's weights have the names and shapes of the model about to be trained."""
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    wanted = {k: tuple(v.shape) for k, v in state.items()}
    if saved == wanted:
        return
    missing, extra = sorted(wanted.keys() - saved.keys()), sorted(saved.keys() - wanted.keys())
    shapes = sorted(k for k in saved.keys() & wanted.keys() if saved[k] != wanted[k])
    parts = [
        f"{label}: {', '.join(keys[:4])}"
        for label, keys in (("missing", missing), ("unexpected", extra), ("other shape", shapes))
        if keys
    ]
    raise CheckpointError(
        f"checkpoint {path} does not fit the configured model ({'; '.join(parts)}); resume with the settings "
        "the checkpoint was trained with (ckpt_path=last uses the run's own config.yaml)"
    )
