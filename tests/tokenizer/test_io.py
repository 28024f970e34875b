"""Saving and loading tokenizers (one JSON format for every kind), and the registry of trainers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from llm.registry import RegistryError
from llm.tokenizer import (
    TOKENIZERS,
    Tokenizer,
    TokenizerError,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "tokenizer"
CORPUS = [
    "Hello, world!\n",
    "  spaces  around\tand\t\ttabs\r\nwindows\n\n\nblank lines ",
    "naïve café, Übermaß, 日本語のテキスト, emoji 🙂👍🏽 👨\u200d👩\u200d👧",
    "the cat sat on the mat. the dog sat on the log.\n" * 50,
]
OPTIONS: dict[str, dict] = {"char": {}, "byte": {}, "bpe": {"vocab_size": 280}}


@pytest.fixture(params=sorted(OPTIONS))
def trained(request: pytest.FixtureRequest) -> Tokenizer:
    return train_tokenizer(request.param, CORPUS, **OPTIONS[request.param])


def test_save_then_load_encodes_identically(trained: Tokenizer, tmp_path: Path) -> None:
    path = save_tokenizer(trained, tmp_path / "sub" / "tokenizer.json")
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == trained.kind
    loaded = load_tokenizer(path)
    assert type(loaded) is type(trained)
    assert (loaded.vocab_size, loaded.eot_id) == (trained.vocab_size, trained.eot_id)
    assert loaded.to_dict() == trained.to_dict()
    for text in CORPUS:
        ids = trained.encode(text)
        assert loaded.encode(text) == ids
        assert loaded.decode(ids) == text


def test_save_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    save_tokenizer(train_tokenizer("char", ["ab"]), path)
    save_tokenizer(train_tokenizer("char", ["xyz"]), path)
    assert load_tokenizer(path).vocab_size == 3
    assert os.listdir(tmp_path) == ["tokenizer.json"]


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tokenizer.json"
    save_tokenizer(train_tokenizer("char", ["ab"]), path)

    def broken_replace(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_tokenizer(train_tokenizer("char", ["xyz"]), path)
    monkeypatch.undo()
    assert load_tokenizer(path).vocab_size == 2
    assert os.listdir(tmp_path) == ["tokenizer.json"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="does not exist") as caught:
        load_tokenizer(tmp_path / "nowhere.json")
    assert "nowhere.json" in str(caught.value) and "save_tokenizer" in str(caught.value)


def test_truncated_file(tmp_path: Path) -> None:
    path = save_tokenizer(train_tokenizer("char", ["abc"]), tmp_path / "tokenizer.json")
    path.write_text(path.read_text(encoding="utf-8")[:-5], encoding="utf-8")
    with pytest.raises(TokenizerError, match="not valid JSON") as caught:
        load_tokenizer(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"kind": "wordpiece"}', "unknown kind 'wordpiece'; known kinds: bpe, byte, char"),
        ('{"kind": ["char"]}', "unknown kind"),
        ('["char"]', 'no "kind" field'),
        ('{"symbols": "abc"}', 'no "kind" field'),
        ('{"kind": "char"}', "no field 'symbols'"),
        ('{"kind": "char", "symbols": 3}', "'symbols' should be a str"),
        ('{"kind": "char", "symbols": "aba"}', "distinct"),
        ('{"kind": "bpe", "tokenizer": {"model": 1}}', "not a valid `tokenizers` tokenizer"),
    ],
)
def test_malformed_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError) as caught:
        load_tokenizer(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_bpe_file_without_end_of_text_is_refused(tmp_path: Path) -> None:
    data = train_tokenizer("bpe", CORPUS, vocab_size=280).to_dict()
    data["tokenizer"]["added_tokens"] = []
    del data["tokenizer"]["model"]["vocab"]["<|endoftext|>"]
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerError, match="no '<|endoftext|>' token"):
        load_tokenizer(path)


def test_tokenizer_error_is_a_value_error() -> None:
    assert issubclass(TokenizerError, ValueError)


def test_registry_refuses_unknown_names_and_options() -> None:
    assert TOKENIZERS.names() == ["bpe", "byte", "char"]
    with pytest.raises(RegistryError, match="unknown tokenizer 'wordpiece'; choose one of: bpe, byte, char"):
        train_tokenizer("wordpiece", CORPUS)
    with pytest.raises(RegistryError, match="no option 'vocab_size'"):
        train_tokenizer("char", CORPUS, vocab_size=100)
    with pytest.raises(RegistryError, match="its options are: vocab_size, min_frequency"):
        train_tokenizer("bpe", CORPUS, merges=100)


@pytest.mark.parametrize("name", ["bpe", "byte", "char"])
def test_config_keys_are_the_trainer_options(name: str) -> None:
    options = dict(OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml")))  # type: ignore[arg-type]
    assert options.pop("name") == name
    assert set(options) <= set(TOKENIZERS.options(name))
    if name == "bpe":  # the default vocabulary needs more text than this corpus has
        options["vocab_size"] = 260
    assert train_tokenizer(name, CORPUS, **options).kind == name
