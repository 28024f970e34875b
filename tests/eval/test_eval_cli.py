"""`llm eval` as a user runs it, in this process: eval.json and eval.md beside the model, the printed tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import llm.cli
from llm.configs import compose_config
from llm.data.tokens import prepare_token_splits
from llm.eval.perplexity import score_tokens
from llm.export import load_model_dir
from llm.train import train
from tests.conftest import tiny_corpus_text, tiny_overrides


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run (4 steps, char tokenizer, block_size 16) with its token cache beside it."""
    root = tmp_path_factory.mktemp("eval")
    (root / "corpus.txt").write_text(tiny_corpus_text())
    train(compose_config("train", [*tiny_overrides(root, root / "corpus.txt", steps=4), "samples.num=0"]))
    return root / "run"


def llm_eval(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Runs `llm eval ARGS`: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # llm.cli.main replaces it
    capsys.readouterr()
    code = 0
    try:
        llm.cli.main(["eval", *args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_the_validation_split_of_the_run_by_default(
    finished_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The split llm train validated on, token for token, scored in windows of block_size; written to <run>/eval."""
    code, out, err = llm_eval(capsys, monkeypatch, f"model={finished_run / 'model'}", "samples.max_new_tokens=8")
    assert code == 0, err
    results = json.loads((finished_run / "eval" / "eval.json").read_text())
    meta = json.loads(next((finished_run.parent / "cache" / "tokens").glob("*/meta.json")).read_text())
    text, metrics = results["text"], results["text"]["metrics"]
    assert text["source"] == "validation" and text["text_tokens"] == meta["val_tokens"]
    assert metrics["tokens"] == meta["val_tokens"] - 1 and metrics["bytes"] == meta["val_bytes"] - 1  # ASCII, char
    assert (metrics["window"], metrics["stride"], metrics["block_size"]) == (16, 16, 16)

    model, tokenizer = load_model_dir(finished_run / "model")
    corpus = compose_config("train", tiny_overrides(finished_run.parent, finished_run.parent / "corpus.txt"))
    from hydra.utils import instantiate

    splits = prepare_token_splits(instantiate(corpus.data.corpus), {"name": "char"}, 0.1, finished_run.parent / "cache")
    expected = score_tokens(model, tokenizer, np.asarray(splits.val))
    assert metrics["loss"] == pytest.approx(expected.loss, rel=1e-6)
    assert metrics["bits_per_byte"] == pytest.approx(expected.bits_per_byte, rel=1e-6)

    assert [s["prompt"] for s in results["samples"]] == [""]
    markdown = (finished_run / "eval" / "eval.md").read_text()
    assert "| bits per byte | " in markdown and "## Samples" in markdown
    assert "bits per byte" in out and "eval.json" in out


def test_a_whole_file_with_sliding_windows(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    held_out = tmp_path / "held out, v2.txt"
    held_out.write_text(tiny_corpus_text(30))
    args = [
        f"model={finished_run / 'model'}",
        "text=file",
        f"text.path={held_out}",
        "window=8",
        "stride=3",
        "max_tokens=100",
        f"out={tmp_path / 'out'}",
        "samples.prompts=[the,'a cat']",
        "samples.max_new_tokens=5",
    ]
    code, out, err = llm_eval(capsys, monkeypatch, *args)
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "eval.json").read_text())
    text, metrics = results["text"], results["text"]["metrics"]
    assert text["source"] == "file" and text["path"] == str(held_out.resolve()) and text["max_tokens"] == 100
    assert (metrics["tokens"], metrics["bytes"], metrics["window"], metrics["stride"]) == (99, 99, 8, 3)
    assert metrics["windows"] == 1 + -(-(99 - 8) // 3)
    model, tokenizer = load_model_dir(finished_run / "model")
    ids = np.asarray(tokenizer.encode(held_out.read_text())[:100])
    assert metrics["nats"] == pytest.approx(score_tokens(model, tokenizer, ids, window=8, stride=3).nats, rel=1e-6)
    assert [s["prompt"] for s in results["samples"]] == ["the", "a cat"]
    assert all(len(s["text"]) == 5 for s in results["samples"])  # a char model: one character a token
    again = llm_eval(capsys, monkeypatch, *args)
    assert again[0] == 0 and json.loads((tmp_path / "out" / "eval.json").read_text()) == results  # seeded


def test_the_validation_split_of_another_corpus_config(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.txt"
    other.write_text(tiny_corpus_text(60)[::-1])  # the same characters, another text
    args = [f"model={finished_run / 'model'}", "text.data=text", f"text.path={other}", f"cache_dir={tmp_path / 'c'}"]
    code, _, err = llm_eval(capsys, monkeypatch, *args, "samples.prompts=[]", f"out={tmp_path / 'out'}")
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert "samples" not in results
    n_val = round(len(other.read_text()) * 0.1)  # cut as llm train cuts it: the last tenth of the char tokens
    assert results["text"]["corpus"] == f"text corpus {other}"
    assert results["text"]["metrics"]["tokens"] == n_val - 1


def test_sections_that_are_off_are_left_out(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [f"model={finished_run / 'model'}", "text=none", "samples.prompts=[]", f"out={tmp_path}"]
    code, _, err = llm_eval(capsys, monkeypatch, *args)
    assert code == 0, err
    assert json.loads((tmp_path / "eval.json").read_text()) == {"model": str((finished_run / "model").resolve())}


def test_help_names_the_settings(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = llm_eval(capsys, monkeypatch, "--help")
    assert code == 0
    assert "llm eval: evaluate a model directory" in out and "text: file, none, validation" in out


def test_markdown_cells_keep_pipes_and_line_breaks_in_one_row() -> None:
    from llm.eval.sections import markdown_table

    table = markdown_table(["prompt", "continuation"], [["a|b", "one\ntwo\r\nthree"]])
    assert table.splitlines()[-1] == "| a\\|b | one<br>two<br>three |"
