"""Model directories: round trip, and clear errors for missing files or mismatched config and weights."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from llm.export import ModelDirError, load_model_dir, save_model_dir
from llm.export.model_dir import SavedWeights
from llm.model import ModelConfig, Part, build_gpt
from llm.model.gpt import is_empty, materialize
from llm.tokenizer import train_tokenizer


def saved(tmp_path: Path, **shape) -> Path:
    tokenizer = train_tokenizer("char", ["hello world\n"])
    config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16, **shape)
    return save_model_dir(tmp_path / "model", build_gpt(config), tokenizer)


def test_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    tokenizer = train_tokenizer("char", ["hello world\n"])
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=8,
        n_layer=1,
        n_head=2,
        n_embd=16,
        position=Part("rope", {"theta": 500.0}),
        tie_weights=True,
    )
    model = build_gpt(config).eval()
    save_model_dir(tmp_path / "model", model, tokenizer)
    loaded, loaded_tokenizer = load_model_dir(tmp_path / "model")
    assert loaded.config == config
    x = torch.tensor([tokenizer.encode("hello")])
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.head.weight is loaded.token_embedding.weight
    assert loaded_tokenizer.encode("world") == tokenizer.encode("world")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


@pytest.mark.parametrize("tie", [True, False])
def test_an_empty_load_is_checked_now_and_filled_later_with_the_SavedWeights(tmp_path: Path, tie: bool) -> None:
    directory = saved(tmp_path, tie_weights=tie)
    whole, _ = load_model_dir(directory)
    empty, _ = load_model_dir(directory, empty=True)
    assert is_empty(empty)
    materialize(empty, torch.device("cpu"), weights=SavedWeights(directory))
    assert (empty.head.weight is empty.token_embedding.weight) == tie
    expected = whole.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in empty.state_dict().items())
    with pytest.raises(ModelDirError, match="does not match config.json"):
        load_model_dir(with_model_setting(directory, "n_embd", 32), empty=True)  # checked without loading


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    directory = saved(tmp_path)
    (directory / "tokenizer.json").unlink()
    with pytest.raises(ModelDirError, match="lacks tokenizer.json; point model="):
        load_model_dir(directory)


def with_model_setting(directory: Path, key: str, value: object) -> Path:
    """The model directory with one setting of config.json's model section changed."""
    config = json.loads((directory / "config.json").read_text())
    config["model"][key] = value
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("n_embd", 32, "does not match config.json"), ("n_layers", 3, "unknown model setting")],
)
def test_config_that_disagrees_with_the_weights_or_the_schema(tmp_path: Path, key: str, value: int, message: str):
    directory = with_model_setting(saved(tmp_path), key, value)
    with pytest.raises(ModelDirError, match=message):
        load_model_dir(directory)


@pytest.mark.parametrize(
    ("key", "value", "names"),
    [
        ("n_layer", 2, r"\(12 missing weights, e\.g\. blocks\.1\.attn\.proj\.bias\)"),
        ("n_layer", 0.5, None),  # not a model at all: ModelConfig refuses it (another message)
        ("bias", False, r"\(\d+ unexpected weights, e\.g\. blocks\.0\.attn\.proj\.bias\)"),
        ("n_embd", 32, r"\(\d+ weights of another shape, e\.g\. [a-z_.0-9]+\)"),
    ],
)
def test_weights_of_another_model_are_one_short_line(tmp_path: Path, key: str, value: object, names: str | None):
    directory = with_model_setting(saved(tmp_path), key, value)
    with pytest.raises(ModelDirError) as raised:
        load_model_dir(directory)
    message = str(raised.value)
    assert "\n" not in message and len(message) < 400, message
    if names is not None:
        assert "model.safetensors does not match config.json" in message
        assert re.search(names, message), message


def with_config_field(directory: Path, key: str, value: object) -> Path:
    """The model directory with one top-level field of config.json changed (None: removed)."""
    config = json.loads((directory / "config.json").read_text())
    if value is None:
        del config[key]
    else:
        config[key] = value
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize(
    ("key", "value", "found"),
    [
        ("format", "other.gpt", "format='other.gpt', version=1"),
        ("version", 2, "format='llm.gpt', version=2"),
        ("model", None, "format='llm.gpt', version=1"),
    ],
    ids=["format", "version", "no-model"],
)
def test_config_of_another_format_or_version(tmp_path: Path, key: str, value: object, found: str) -> None:
    """A config.json of another format or version, or without a model section, names what it found and the fix."""
    directory = with_config_field(saved(tmp_path), key, value)
    with pytest.raises(ModelDirError, match=r"config.json is not an llm.gpt v1 config") as raised:
        load_model_dir(directory)
    assert f"({found}); re-export the model" in str(raised.value)


def test_config_that_is_not_json(tmp_path: Path) -> None:
    """A config.json that does not parse is named, with the fix."""
    directory = saved(tmp_path)
    (directory / "config.json").write_text('{"format": "llm.gpt", "version": 1,')
    with pytest.raises(ModelDirError, match=r"config.json is not valid JSON \(.*\); re-export the model"):
        load_model_dir(directory)


def test_tokenizer_larger_than_the_config_vocabulary(tmp_path: Path) -> None:
    """'hello world\\n' has 9 distinct characters; a config.json saying vocab_size=8 cannot hold the tokenizer's ids."""
    directory = with_model_setting(saved(tmp_path), "vocab_size", 8)
    with pytest.raises(ModelDirError) as raised:
        load_model_dir(directory)
    message = str(raised.value)
    assert "tokenizer has 9 tokens but config.json says vocab_size=8" in message
    assert "the files come from different models" in message


def test_a_smaller_tokenizer_than_the_vocabulary_loads(tmp_path: Path) -> None:
    """A tokenizer with fewer ids than vocab_size (a padded vocabulary) is fine: 9 ids in a vocabulary of 16."""
    tokenizer = train_tokenizer("char", ["hello world\n"])
    config = ModelConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16)
    directory = save_model_dir(tmp_path / "model", build_gpt(config), tokenizer)
    model, loaded = load_model_dir(directory)
    assert (model.config.vocab_size, loaded.vocab_size) == (16, 9)
