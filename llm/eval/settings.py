"""The settings of `llm eval`, checked before the model is loaded; each mistake is one ConfigError naming the
setting, the value given and the way out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llm.errors import ConfigError
from llm.export.model_dir import ModelDirError
from llm.infer.settings import (
    check_device,
    check_model,
    check_seed,
    check_temperature,
    check_top_k,
    is_int,
    show,
)

TEXT_SOURCES = ("validation", "file", "none")


def check_model_dir(cfg: DictConfig) -> Path:
    """model= names a folder that holds a tokenizer (without one, no text can be scored or bytes counted)."""
    path = check_model(cfg, "llm eval", "llm eval model=runs/shakespeare/model")
    if not (path / "tokenizer.json").is_file():
        raise ModelDirError(
            f"model directory {path} has no tokenizer.json: llm eval needs the model's tokenizer to turn text into "
            "tokens and to count bytes; point model= at the model/ folder of a finished run, or copy that run's "
            "model/tokenizer.json into it"
        )
    return path


def optional_count(key: str, value: Any, minimum: int, meaning: str) -> int | None:
    if value is not None and (not is_int(value) or value < minimum):
        raise ConfigError(f"{key}={show(value)} must be an integer >= {minimum} ({meaning}), or null")
    return value


def count(key: str, value: Any, meaning: str, example: int) -> int:
    if not is_int(value) or value < 1:
        raise ConfigError(f"{key}={show(value)} must be an integer >= 1 ({meaning}), e.g. {key}={example}")
    return int(value)


def check_scoring(cfg: DictConfig) -> None:
    count("batch_size", cfg.batch_size, "windows scored in one forward pass", 8)
    optional_count("window", cfg.window, 1, "tokens the model sees at a time; null: its whole context")
    optional_count("stride", cfg.stride, 1, "targets each window adds; null: the window, non-overlapping")
    optional_count("max_tokens", cfg.max_tokens, 2, "score only the first N tokens of the text; null: all")


def check_text(node: Any) -> None:
    source = node.get("source") if isinstance(node, DictConfig) else None
    if source not in TEXT_SOURCES:
        raise ConfigError(f"text.source={show(source)} is not a text source; choose text=validation|file|none")
    path = node.get("path")
    if source == "file" and (not isinstance(path, str) or not path):
        raise ConfigError("text=file scores a whole file: give text.path=<a UTF-8 text file>")
    data = node.get("data")
    if source == "validation" and data is not None and not isinstance(data, str):
        raise ConfigError(f"text.data={show(data)} must be the name of a corpus config (e.g. text.data=text), or null")


def check_samples(node: Any) -> None:
    if not isinstance(node, DictConfig):
        raise ConfigError("samples must hold prompts, max_new_tokens, temperature, top_k and seed")
    prompts = node.get("prompts")
    items = list(prompts) if OmegaConf.is_list(prompts) else None
    if items is None or any(not isinstance(p, str) for p in items):
        raise ConfigError(
            f"samples.prompts={show(prompts)} must be a list of texts, e.g. 'samples.prompts=[ROMEO:,JULIET:]' "
            "(an empty text starts from end-of-text or a newline); [] for no samples"
        )
    count("samples.max_new_tokens", node.get("max_new_tokens"), "tokens generated for each prompt", 100)
    check_temperature(node.get("temperature"))
    check_top_k(node.get("top_k"))
    check_seed(node.get("seed"))


def check_out(value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"out={show(value)} must be a folder to write eval.json and eval.md into, or null")


def check_eval_settings(cfg: DictConfig) -> Path:
    """Every setting that needs no model; returns the model directory."""
    model_dir = check_model_dir(cfg)
    check_device(cfg.device, verb="llm eval")
    check_scoring(cfg)
    check_text(cfg.text)
    check_samples(cfg.samples)
    check_out(cfg.out)
    return model_dir


def out_dir(cfg: DictConfig, model_dir: Path) -> Path:
    """out=, or <the model directory's parent>/eval: <run dir>/eval for <run dir>/model."""
    return Path(cfg.out) if cfg.out is not None else model_dir.resolve().parent / "eval"
