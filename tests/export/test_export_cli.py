"""`llm export` through the CLI, in this process: both formats, overwrite, --help."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import llm.cli
from llm.export import save_model_dir
from llm.model import ModelConfig, Part, build_gpt
from llm.tokenizer import train_tokenizer

transformers = pytest.importorskip("transformers")


def llm_export(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # llm.cli.main replaces it
    try:
        llm.cli.main(["export", *args])
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    tokenizer = train_tokenizer("byte", ["x"])
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=16,
        n_layer=2,
        n_head=4,
        n_embd=32,
        n_kv_head=2,
        bias=False,
        tie_weights=False,
        position=Part("rope"),
        norm=Part("rmsnorm"),
        mlp=Part("swiglu", {"multiple_of": 16}),
    )
    torch.manual_seed(0)
    return save_model_dir(tmp_path / "runs, one" / "model", build_gpt(config), tokenizer)  # a comma in the path


def test_export_hf_then_overwrite(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "hf"
    assert llm_export([f"model={model_dir}", "format=hf", f"out={out}"], monkeypatch) == 0
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert type(hf_model).__name__ == "LlamaForCausalLM" and hf_model.config.num_key_value_heads == 2
    assert llm_export([f"model={model_dir}", "format=hf", f"out={out}"], monkeypatch) == 2  # out holds files
    (out / "stale.txt").write_text("from before")
    assert llm_export([f"model={model_dir}", "format=hf", f"out={out}", "overwrite=true"], monkeypatch) == 0
    assert not (out / "stale.txt").exists()


def test_export_onnx(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    assert llm_export([f"model={model_dir}", "format=onnx", f"out={out}"], monkeypatch) == 0
    assert (out / "model.onnx").is_file() and f"wrote {out} (onnx)" in capsys.readouterr().out


def test_help_says_what_the_verb_writes(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert llm_export(["--help"], monkeypatch) == 0
    head = capsys.readouterr().out.split("== Config ==")[0]
    assert head.startswith("llm export:")
    for text in ("format=hf", "format=onnx", "overwrite=B", "pip install 'llm[export]'"):
        assert text in head, text
