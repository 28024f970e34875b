"""The settings of `llm export`, checked before the model is loaded; each mistake is a ConfigError naming the
setting, the value given and the way out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llm.errors import ConfigError
from llm.export.formats import check_format
from llm.infer.settings import model_folder

EXAMPLE = "e.g. llm export model=runs/shakespeare/model format=hf out=exported/shakespeare-hf"


@dataclass(frozen=True)
class ExportSettings:
    model: Path
    format: str
    out: Path
    overwrite: bool


def required(cfg: DictConfig, key: str, what: str) -> Any:
    if OmegaConf.is_missing(cfg, key):
        raise ConfigError(f"llm export needs {key}=<{what}>; {EXAMPLE}")
    return cfg[key]


def checked_format(value: Any) -> str:
    check_format(value)
    return str(value)


def check_out(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"out={value} is not a folder name; give out=<a new or empty folder>")
    return Path(value)


def check_overwrite(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"overwrite must be true or false, got {value!r}; write overwrite=true to replace out")
    return value


def check_export_settings(cfg: DictConfig) -> ExportSettings:
    """The checked settings of a composed export config; ConfigError names the first wrong one."""
    return ExportSettings(
        model=model_folder(required(cfg, "model", "a model directory")),
        format=checked_format(required(cfg, "format", "hf or onnx")),
        out=check_out(required(cfg, "out", "the folder to write")),
        overwrite=check_overwrite(cfg.overwrite),
    )
