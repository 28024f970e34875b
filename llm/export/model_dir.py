"""A model directory describes itself and loads without Hydra:

    model.safetensors   the weights, under the names documented in llm/model/gpt.py
    config.json         {"format": "llm.gpt", "version": 1, "model": <ModelConfig as a dict>}
    tokenizer.json      the tokenizer (llm.tokenizer's format)

It is written into a temporary folder and renamed into place, so a half-written one never exists.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_model

from llm.errors import UserError
from llm.model import GPT, ModelConfig, ModelConfigError, build_gpt
from llm.model.gpt import materialize
from llm.model.init import weight_names
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


def load_model_dir(
    directory: str | Path, device: str | torch.device = "cpu", *, empty: bool = False
) -> tuple[GPT, Tokenizer]:
    """Builds the model from config.json, checks that model.safetensors holds exactly its weights, loads them,
    and loads the tokenizer. With `empty`, the checked network stays on the meta device, for a trainer to load
    in configure_model (`SavedWeights(directory)`), each process only its shard under FSDP."""
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
    model = build_gpt(config, empty=True)
    check_weights(directory, model)
    if not empty:
        materialize(model, torch.device(device), weights=SavedWeights(directory))
    return model.eval(), tokenizer


def saved_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Each weight's name and shape, from model.safetensors' header (no weight is read)."""
    try:
        with safe_open(directory / "model.safetensors", framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118 (not a dict)
    except SafetensorError as e:
        raise ModelDirError(
            f"{directory / 'model.safetensors'} is truncated or not a safetensors file ({e}); re-export the model "
            "directory (a finished run writes it to <run dir>/model)"
        ) from e


def check_weights(directory: Path, model: GPT) -> None:
    """model.safetensors has a tensor of the right shape for every weight of `model` (a tied weight under either
    of its names) and nothing else; else one short line on what differs."""
    saved, wanted = saved_shapes(directory), {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [names[0] for names, _ in weight_names(model) if not set(names) & saved.keys()]
    unexpected = saved.keys() - wanted.keys()
    shapes = [name for name in saved.keys() & wanted.keys() if saved[name] != wanted[name]]
    mismatch = "; ".join(
        f"{len(names)} {before}weight{'s' if len(names) > 1 else ''}{after}, e.g. {sorted(names)[0]}"
        for before, after, names in (
            ("missing ", "", missing),
            ("unexpected ", "", unexpected),
            ("", " of another shape", shapes),
        )
        if names
    )
    if mismatch:
        raise ModelDirError(
            f"{directory}: model.safetensors does not match config.json ({mismatch}); "
            "the files come from different models: re-export them together"
        )


class SavedWeights(Mapping[str, torch.Tensor]):
    """model.safetensors as a mapping of weight name to whole tensor, each read from the file only when asked for
    (a tied weight is saved under one of its two names)."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "model.safetensors"
        with safe_open(self.path, framework="pt") as f:
            self.names = set(f.keys())

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.names:
            raise KeyError(f"{self.path} has no weight {name}")
        with safe_open(self.path, framework="pt") as f:
            return f.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)
