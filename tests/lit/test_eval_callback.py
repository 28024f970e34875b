"""The evaluation during training (llm/lit/eval_callback.py): eval/* rows in metrics.csv at the right steps."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from llm.configs import compose_config
from llm.errors import ConfigError
from llm.run.checks import check_run_config
from llm.run.resume import resumable
from llm.train import train
from tests.conftest import tiny_corpus_text, tiny_overrides


def eval_rows(run: Path) -> dict[int, dict[str, float]]:
    """The eval/* metrics of metrics.csv by step; a step logged twice fails the test."""
    rows: dict[int, dict[str, float]] = {}
    with (run / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row.get("eval/bits_per_byte"):
                step = int(row["step"])
                assert step not in rows, f"step {step} logged twice"
                rows[step] = {k: float(v) for k, v in row.items() if k.startswith("eval/") and v}
    return rows


def test_training_logs_an_evaluation_every_n_optimizer_steps(tmp_path: Path, corpus_file: Path) -> None:
    """Every 5 optimizer steps of 12 (2 micro-batches each): after steps 5 and 10, logged on the rows of those
    steps' train/loss (4 and 9), as validation is; log_every_n_steps (10) does not hold them back."""
    overrides = tiny_overrides(tmp_path, corpus_file, steps=12)
    extra = ["eval.every_n_steps=5", "eval.max_tokens=200", "eval.stride=8", "trainer.accumulate_grad_batches=2"]
    train(compose_config("train", [*overrides, *extra]))
    rows = eval_rows(tmp_path / "run")
    assert sorted(rows) == [4, 9]
    for metrics in rows.values():
        assert set(metrics) == {"eval/loss", "eval/perplexity", "eval/bits_per_byte"}
        assert metrics["eval/perplexity"] == pytest.approx(math.exp(metrics["eval/loss"]), rel=1e-5)
        # an ASCII corpus and a char tokenizer: one byte a token, so bits per byte = nats per token / ln 2
        assert metrics["eval/bits_per_byte"] == pytest.approx(metrics["eval/loss"] / math.log(2), rel=1e-5)
    assert rows[9]["eval/loss"] < rows[4]["eval/loss"] < math.log(len(set(corpus_file.read_text())))


def test_an_evaluation_file_is_scored_instead_of_the_validation_split(tmp_path: Path, corpus_file: Path) -> None:
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(tiny_corpus_text(20))
    overrides = tiny_overrides(tmp_path, corpus_file, steps=4)
    train(compose_config("train", [*overrides, "eval.every_n_steps=2", f"eval.path={held_out}"]))
    assert sorted(eval_rows(tmp_path / "run")) == [1, 3]


def test_off_by_default(tmp_path: Path, corpus_file: Path) -> None:
    cfg = compose_config("train", tiny_overrides(tmp_path, corpus_file))
    assert cfg.eval.every_n_steps is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.every_n_steps=0", "eval.every_n_steps must be a whole number >= 1 or null, got 0"),
        ("eval.max_tokens=1", "eval.max_tokens must be a whole number >= 2 or null, got 1"),
        ("eval.path=/nonexistent/held_out.txt", "eval.path='/nonexistent/held_out.txt' is not a file"),
    ],
)
def test_eval_settings_are_checked_before_anything_runs(
    tmp_path: Path, corpus_file: Path, override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_run_config(compose_config("train", [*tiny_overrides(tmp_path, corpus_file), override]))


def test_a_text_shorter_than_a_window_stops_before_training(tmp_path: Path, corpus_file: Path) -> None:
    from llm.data.corpora import CorpusError

    overrides = tiny_overrides(tmp_path, corpus_file, steps=4)
    with pytest.raises(CorpusError, match=r"is 10 tokens long, shorter than one window of 16 tokens \+ 1"):
        train(compose_config("train", [*overrides, "eval.every_n_steps=2", "eval.max_tokens=10"]))
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_eval_settings_may_change_on_a_resume() -> None:
    assert resumable("eval.every_n_steps") and resumable("eval.path")
