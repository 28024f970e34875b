"""Where the Hydra configs are, from a checkout (./conf) or an installed wheel (llm/conf), and composing them."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig


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
