"""A model directory describes itself and loads without Hydra:

    model.safetensors   the weights, under the names documented in llm/model/gpt.py
    config.json         {"format": "llm.gpt", "version": 1, "model": <ModelConfig as a dict>}
    tokenizer.json      the tokenizer (llm.tokenizer's format)

It is written into a temporary folder and renamed into place, so a half-written one never exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from llm.errors import UserError
from llm.model import GPT, ModelConfig, ModelConfigError, build_gpt
from llm.tokenizer import Tokenizer, TokenizerError, load_tokenizer, save_tokenizer

FORMAT, VERSION = "llm.gpt", 1
FILES = ("model.safetensors", "config.json", "tokenizer.json")


class ModelDirError(UserError, ValueError):
    """A model directory that is missing files or whose files disagree."""


def save_model_dir(directory: str | Path, model: GPT, tokenizer: Tokenizer) -> Path:
    """Writes weights, config and tokenizer; replaces an existing directory only once all is written."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        save_model(model, str(staging / "model.safetensors"))
        config = {"format": FORMAT, "version": VERSION, "model": model.config.to_dict()}
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_tokenizer(tokenizer, staging / "tokenizer.json")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def read_model_config(directory: Path) -> ModelConfig:
    try:
        data = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{directory / 'config.json'} is not valid JSON ({e}); re-export the model") from e
    if not isinstance(data, dict):
        raise ModelDirError(f"{directory / 'config.json'} holds no JSON object; re-export the model")
    if data.get("format") != FORMAT or data.get("version") != VERSION or "model" not in data:
        raise ModelDirError(
            f"{directory / 'config.json'} is not an {FORMAT} v{VERSION} config "
            f"(format={data.get('format')!r}, version={data.get('version')!r}); re-export the model"
        )
    try:
        return ModelConfig.from_dict(data["model"])
    except (ModelConfigError, TypeError) as e:
        raise ModelDirError(f"{directory / 'config.json'} describes no valid model: {e}") from e


def load_model_dir(directory: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer]:
    """Builds the model from config.json, loads its weights strictly, and loads its tokenizer."""
    directory = Path(directory)
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise ModelDirError(
            f"model directory {directory} lacks {', '.join(missing)}; point model= at the model/ folder "
            "of a finished run (it holds model.safetensors, config.json and tokenizer.json)"
        )
    config = read_model_config(directory)
    try:
        tokenizer = load_tokenizer(directory / "tokenizer.json")
    except TokenizerError as e:
        raise ModelDirError(str(e)) from e
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelDirError(
            f"{directory}: tokenizer has {tokenizer.vocab_size} tokens but config.json says vocab_size="
            f"{config.vocab_size}; the files come from different models"
        )
    model = build_gpt(config)
    mismatch = ""
    try:
        missing, unexpected = load_model(model, str(directory / "model.safetensors"), strict=False, device=str(device))
        mismatch = "; ".join(
            f"{len(names)} {what} weight{'s' if len(names) > 1 else ''}, e.g. {sorted(names)[0]}"
            for what, names in (("missing", missing), ("unexpected", unexpected))
            if names
        )
    except SafetensorError as e:
        raise ModelDirError(
            f"{directory / 'model.safetensors'} is truncated or not a safetensors file ({e}); re-export the model "
            "directory (a finished run writes it to <run dir>/model)"
        ) from e
    except (RuntimeError, KeyError, ValueError) as e:
        mismatch = other_shapes(str(e))
    if mismatch:
        raise ModelDirError(
            f"{directory}: model.safetensors does not match config.json ({mismatch}); "
            "the files come from different models: re-export them together"
        )
    return model.to(device).eval(), tokenizer


def other_shapes(error: str) -> str:
    """One short line from PyTorch's load_state_dict error: how many weights have another shape, and the first."""
    shapes = re.findall(r"size mismatch for ([^:\s]+):", error)
    if shapes:
        return f"{len(shapes)} weight{'s' if len(shapes) > 1 else ''} of another shape, e.g. {shapes[0]}"
    text = " ".join(error.split())
    return text if len(text) <= 200 else text[:199] + "…"
