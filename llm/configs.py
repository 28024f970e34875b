"""Where the Hydra configs are, from a checkout (./conf) or an installed wheel (llm/conf), and composing them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf


def run_name(override_dirname: str) -> str:
    """Hydra's `key=value,...` of a multirun's swept overrides as one folder name (a group's `/` becomes `.`).

    Registered as the `llm_run_name` resolver here, where every verb's process (and a launcher's workers)
    imports it, for `hydra.sweep.subdir` in conf/hydra/default.yaml."""
    name = override_dirname.replace("/", ".") or "run"
    if len(name) > 200:  # a file name has at most 255 bytes: keep a readable start and a digest of the rest
        name = f"{name[:150]}...{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return name


if not OmegaConf.has_resolver("llm_run_name"):
    OmegaConf.register_new_resolver("llm_run_name", run_name)


def config_dir() -> Path:
    """The folder holding train.yaml and the config groups."""
    packaged = Path(__file__).parent / "conf"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).parent.parent / "conf"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"no Hydra configs found at {packaged} or {checkout}; reinstall the llm package")


def compose_config(name: str, overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """Composes a primary config (train, sample, ...) with overrides, outside a Hydra app (tests, notebooks)."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=overrides or [], return_hydra_config=return_hydra_config)
