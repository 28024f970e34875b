"""Compute budgets end a run at the first of max_steps, tokens, FLOPs or seconds, and say which."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm.configs import compose_config
from llm.errors import ConfigError
from llm.train import train
from tests.conftest import tiny_overrides

TOKENS_PER_STEP = 8 * 16  # data.batch_size x model.block_size of the tiny overrides


def run_train(tmp_path: Path, corpus: Path, *extra: str, run: str = "run") -> dict:
    return train(compose_config("train", [*tiny_overrides(tmp_path, corpus, run, steps=30), *extra]))


def test_max_steps_ends_a_run_without_a_budget(tmp_path: Path, corpus_file: Path) -> None:
    summary = run_train(tmp_path, corpus_file)
    assert (summary["steps"], summary["stopped_by"]) == (30, "max_steps")
    assert summary["flops"] == 30 * TOKENS_PER_STEP * summary["flops_per_token"]


def test_a_token_budget_stops_at_the_step_that_spends_it(tmp_path: Path, corpus_file: Path) -> None:
    summary = run_train(tmp_path, corpus_file, f"budget.tokens={7 * TOKENS_PER_STEP - 1}")
    assert (summary["steps"], summary["stopped_by"], summary["tokens_seen"]) == (7, "tokens", 7 * TOKENS_PER_STEP)


def test_a_flop_budget_counts_flops_per_token(tmp_path: Path, corpus_file: Path) -> None:
    first = run_train(tmp_path, corpus_file, "budget.tokens=1", run="probe")
    flops = 5 * TOKENS_PER_STEP * first["flops_per_token"]
    summary = run_train(tmp_path, corpus_file, f"budget.flops={flops}")
    assert (summary["steps"], summary["stopped_by"]) == (5, "flops")


def test_a_time_budget_stops_early(tmp_path: Path, corpus_file: Path) -> None:
    summary = run_train(tmp_path, corpus_file, "budget.seconds=1e-6")
    assert (summary["steps"], summary["stopped_by"]) == (1, "seconds")


@pytest.mark.parametrize("setting", ["budget.tokens=0", "budget.flops=-5", "budget.seconds=abc"])
def test_a_budget_that_is_not_positive_is_refused(tmp_path: Path, corpus_file: Path, setting: str) -> None:
    with pytest.raises(ConfigError, match=rf"{setting.split('=')[0]} must be a number > 0 \(or null\)"):
        run_train(tmp_path, corpus_file, setting)
