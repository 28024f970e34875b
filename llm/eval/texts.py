"""The text an evaluation scores, as token ids of the model's tokenizer, and a description of where it came from.

- `validation`: the validation split of a corpus config, cut exactly as `llm train` cuts it (the same function,
  llm.data.tokens.prepare_token_splits, and its cache). The corpus and the tokenizer config that define the cut are
  those of the run the model came from (`<run dir>/config.yaml`, beside `<run dir>/model`), unless `data=` names
  another corpus config of conf/data (with `path=` for those that read files). When the split's tokenizer is the
  model's own (the run's own corpus), its tokens are scored as they are; otherwise the split is decoded to text and
  encoded with the model's tokenizer. Without a run config the split is cut with a char tokenizer (at a character).
- `file`: a whole separate UTF-8 file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from llm.configs import config_dir
from llm.data.corpora import CorpusError
from llm.data.tokens import TokenSplits, prepare_token_splits
from llm.errors import ConfigError
from llm.tokenizer import Tokenizer, TokenizerError

SPLIT_TOKENIZER_FALLBACK = {"name": "char"}


@dataclass(frozen=True)
class EvalText:
    """Token ids of the model's tokenizer, and what they are (for eval.json)."""

    ids: np.ndarray
    about: dict[str, Any]


def limited(text: EvalText, max_tokens: int | None) -> EvalText:
    """The first max_tokens tokens of `text` (all of them for None)."""
    if max_tokens is None or len(text.ids) <= max_tokens:
        return text
    return EvalText(text.ids[:max_tokens], {**text.about, "max_tokens": max_tokens})


def read_utf8(path: Path, setting: str) -> str:
    """A whole file as text; ConfigError for a missing or unreadable file or one that is not UTF-8."""
    fix = f"give {setting}=<a UTF-8 text file>"
    if path.is_dir():
        raise ConfigError(f"{setting}={path} is a directory, not a file; {fix}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{setting}={path}: no such file (looked from {Path.cwd()}); {fix}") from None
    except OSError as e:
        raise ConfigError(f"{setting}={path} cannot be read ({e.strerror or e}); {fix}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{setting}={path} is not UTF-8 at byte {e.start}; convert it to UTF-8") from None


def encoded(tokenizer: Tokenizer, text: str, what: str) -> np.ndarray:
    try:
        return np.asarray(tokenizer.encode(text), dtype=np.int64)
    except TokenizerError as e:
        raise TokenizerError(f"{what} cannot be encoded with the model's tokenizer: {e}") from None


def file_text(path: str, tokenizer: Tokenizer) -> EvalText:
    """A whole UTF-8 file, encoded with the model's tokenizer."""
    file = Path(path).expanduser()
    text = read_utf8(file, "text.path")
    if not text:
        raise CorpusError(f"text.path={path} is empty; give a file that holds text to score")
    ids = encoded(tokenizer, text, f"text.path={path}")
    return EvalText(ids, {"source": "file", "path": str(file.resolve()), "text_tokens": len(ids)})


def run_config(model_dir: Path) -> DictConfig | None:
    """The config.yaml of the run that wrote `model_dir` (<run dir>/model), or None when there is none."""
    from llm.run.resume import load_saved_config

    path = model_dir.resolve().parent / "config.yaml"
    return load_saved_config(path) if path.is_file() else None


def data_option(name: str, path: str | None, cache_dir: str) -> DictConfig:
    """The corpus config conf/data/<name>.yaml, with data.path set when given, resolved."""
    folder = config_dir() / "data"
    options = sorted(p.stem for p in folder.glob("*.yaml"))
    if name not in options:
        raise ConfigError(f"text.data={name!r} is not a corpus config; choose one of: {', '.join(options)}")
    data = OmegaConf.load(folder / f"{name}.yaml")
    assert isinstance(data, DictConfig)
    if path is not None:
        if "path" not in data.keys():
            raise ConfigError(f"text.data={name} reads no files, so it takes no text.path; leave text.path out")
        data.path = path
    if "path" in data.keys() and OmegaConf.is_missing(data, "path"):
        raise ConfigError(f"text.data={name} needs the files to read: give text.path=<a file, or a glob>")
    root = OmegaConf.create({"paths": {"cache_dir": cache_dir}, "data": data})
    resolved = OmegaConf.to_container(root, resolve=True)
    return OmegaConf.create(resolved)["data"]  # type: ignore[index]


def default_cache_dir(run: DictConfig | None) -> str:
    """The run's token cache, or LLM_CACHE_DIR, or ~/.cache/llm."""
    saved = OmegaConf.select(run, "paths.cache_dir") if run is not None else None
    if isinstance(saved, str) and saved:
        return saved
    return str(OmegaConf.load(config_dir() / "paths" / "default.yaml").cache_dir)  # resolves ${oc.env:...}


def validation_splits(
    model_dir: Path, data: str | None, path: str | None, cache_dir: str | None
) -> tuple[TokenSplits, str, float]:
    """The token splits of the corpus (the run's, or conf/data/<data>), their corpus's description and
    val_fraction."""
    run = run_config(model_dir)
    cache = cache_dir or default_cache_dir(run)
    if data is None:
        if path is not None:
            raise ConfigError("text.path needs text.data=<a corpus config, e.g. text> to say how to read it")
        if run is None or OmegaConf.select(run, "data.corpus._target_") is None:
            where = model_dir.resolve().parent / "config.yaml"
            found = "holds no pretraining corpus (data.corpus)" if run is not None else "does not exist"
            raise ConfigError(
                f"text=validation scores the validation split of the corpus the model was trained on, but {where} "
                f"{found}; name a corpus with text.data=<pystdlib, text, tinyshakespeare or hf> (and text.path=...), "
                "or score a file with text=file text.path=FILE"
            )
        node = run.data
    else:
        node = data_option(data, path, cache)
    split_tokenizer = OmegaConf.select(run, "tokenizer") if run is not None else None
    tokenizer_config = (
        OmegaConf.to_container(split_tokenizer, resolve=True)
        if isinstance(split_tokenizer, DictConfig) and "name" in split_tokenizer
        else SPLIT_TOKENIZER_FALLBACK
    )
    corpus = instantiate(node.corpus)
    val_fraction = float(node.val_fraction)
    splits = prepare_token_splits(corpus, tokenizer_config, val_fraction, cache)  # type: ignore[arg-type]
    return splits, corpus.describe(), val_fraction


def validation_text(
    model_dir: Path, tokenizer: Tokenizer, data: str | None, path: str | None, cache_dir: str | None
) -> EvalText:
    """The validation split of a corpus config as the model's tokens (see the module's docstring)."""
    splits, corpus, val_fraction = validation_splits(model_dir, data, path, cache_dir)
    if splits.tokenizer.to_dict() == tokenizer.to_dict():
        ids = np.asarray(splits.val, dtype=np.int64)
    else:
        ids = encoded(tokenizer, splits.tokenizer.decode(splits.val.tolist()), f"the validation split of {corpus}")
    about = {
        "source": "validation",
        "corpus": corpus,
        "val_fraction": val_fraction,
        "token_cache": str(splits.directory),
        "text_tokens": len(ids),
    }
    return EvalText(ids, about)


def eval_text(node: DictConfig, model_dir: Path, tokenizer: Tokenizer, cache_dir: str | None) -> EvalText | None:
    """The text the `text` settings name (source: validation, file or none), or None for none."""
    source = node.get("source")
    if source == "none":
        return None
    if source == "file":
        return file_text(node.path, tokenizer)
    if source == "validation":
        return validation_text(model_dir, tokenizer, node.get("data"), node.get("path"), cache_dir)
    raise ConfigError(f"text.source={source!r} is not a text source; choose text=validation, text=file or text=none")
