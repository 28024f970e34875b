"""Composes a verb's config before Hydra runs it, so that a bad override is one line and exit status 2.

Hydra itself answers a typo'd key, an unknown group option or an override it cannot parse with several
lines and status 1; here each becomes `error: <what is wrong>; <the fix>`.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from llm.cli.errors import one_line

# flags after which Hydra does not run the task (help, printing) or runs many (multirun): left to Hydra
HYDRA_FLAGS = {
    "-h",
    "--help",
    "--hydra-help",
    "-c",
    "--cfg",
    "-i",
    "--info",
    "-sc",
    "--shell-completion",
    "-m",
    "--multirun",
}


def composition_error(config_dir: Path, config_name: str, overrides: list[str]) -> str | None:
    """The one-line message for overrides that do not compose, or None when they do."""
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name, overrides, return_hydra_config=True)
    except MissingConfigException as e:
        group, _, option = (e.missing_cfg_file or "").rpartition("/")
        if e.options:
            return f"unknown option '{option}' for {group}; choose one of: {', '.join(e.options)}"
        return first_line(e)
    except OverrideParseException as e:
        return (
            f"cannot read the override {e.override!r}: numbers, true, false and null are written plainly, and "
            "other values quoted as key='...' (prompt= and prompt_file= take any text as it is)"
        )
    except Exception as e:
        return friendly(first_line(e), config_dir, config_name)
    return run_dir_error(cfg)


def run_dir_error(cfg: DictConfig) -> str | None:
    """Why Hydra could not create hydra.run.dir (a file where a folder must be), or None.

    Hydra makes the run directory before any of llm runs, and fails with a traceback; a single run's directory
    is checked here instead (a sweep's job directories are left to Hydra)."""
    if OmegaConf.select(cfg, "hydra.mode") == RunMode.MULTIRUN:
        return None
    try:
        run_dir = OmegaConf.select(cfg, "hydra.run.dir", throw_on_resolution_failure=True)
    except Exception:  # an interpolation only a running app can resolve: left to Hydra
        return None
    if not isinstance(run_dir, str) or not run_dir:
        return None
    path = Path(run_dir).absolute()
    fix = "choose a writable hydra.run.dir=<folder>"
    for ancestor in (path, *path.parents):
        if not (ancestor.exists() or ancestor.is_symlink()):
            continue
        if not ancestor.is_dir():
            what = "is a file" if ancestor.is_file() else "is not a folder"
            return f"cannot write to run directory {path} ({ancestor} {what}); {fix}"
        if ancestor != path and not os.access(ancestor, os.W_OK | os.X_OK):
            return f"cannot write to run directory {path} (no permission to create folders in {ancestor}); {fix}"
        return None
    return None


def friendly(message: str, config_dir: Path, config_name: str) -> str:
    unknown = re.match(r"Could not override '([^']+)'", message)
    if unknown:
        key = unknown.group(1)
        return f"unknown setting '{key}'{suggestion(key, config_dir, config_name)}; `--cfg job` prints every setting"
    exists = re.match(r"Could not append to config. An item is already at '([^']+)'", message)
    if exists:
        return f"{exists.group(1)} already exists; set it without the +: {exists.group(1)}=<value>"
    ambiguous = re.match(r"Ambiguous value for argument '([^=]+)=(.*)'", message)
    if ambiguous:
        key, value = ambiguous.groups()
        return (
            f"{key}={value} reads as several values; for text write {key}='{value}', for a list {key}=[{value}], "
            "to sweep over them add -m"
        )
    return message


def suggestion(key: str, config_dir: Path, config_name: str) -> str:
    """` (did you mean x.y?)` from the keys beside the typo'd one."""
    parent, _, leaf = key.rpartition(".")
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name, [])
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return ""
    close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1)
    return f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_overrides_or_exit(config_dir: Path, config_name: str, args: list[str]) -> None:
    """Exits with status 2 and one line when `args` do not compose; leaves Hydra's own flags to Hydra."""
    if any(arg.split("=", 1)[0] in HYDRA_FLAGS for arg in args):
        return
    message = composition_error(config_dir, config_name, [a for a in args if not a.startswith("-")])
    if message is not None:
        print(f"error: {one_line(message)}", file=sys.stderr)
        raise SystemExit(2)
