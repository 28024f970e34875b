"""Runs that never lose work: a checkpoint at the end of every run, non-finite steps stopped or skipped,
run directories that are never silently reused, resumes that follow the run's own config, and files
from strangers that are refused without running anything."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from llm.configs import compose_config
from llm.errors import ConfigError, RunDirError
from llm.export import ModelDirError, load_model_dir
from llm.lit.base import NonFiniteError
from llm.tokenizer import TokenizerError
from llm.train import train
from tests.conftest import tiny_overrides


def run_train(tmp_path: Path, corpus: Path, *extra: str, run: str = "run", steps: int = 12, overrides=None) -> dict:
    cfg = compose_config("train", [*tiny_overrides(tmp_path, corpus, run, steps), *extra])
    return train(cfg, overrides)


def step_of(checkpoint: Path) -> int:
    return int(torch.load(checkpoint, weights_only=True)["global_step"])


def nan_at(step: int, where: str, report: Path) -> list[str]:
    return [
        "+callbacks.nan._target_=tests.helpers.NaNAt",
        f"+callbacks.nan.step={step}",
        f"+callbacks.nan.where={where}",
        f"+callbacks.nan.report_dir={report}",
    ]


def test_a_short_run_still_ends_with_a_checkpoint(tmp_path: Path, corpus_file: Path) -> None:
    run_train(tmp_path, corpus_file, "checkpoint.every_n_steps=100", steps=7)
    assert step_of(tmp_path / "run" / "checkpoints" / "last.ckpt") == 7
    assert not (tmp_path / "run" / ".lock").exists()
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path, corpus_file: Path) -> None:
    with pytest.raises(NonFiniteError, match=r"non-finite loss \(nan\) at step 6; .*last.ckpt keeps .*nonfinite=skip"):
        run_train(tmp_path, corpus_file, "checkpoint.every_n_steps=4", *nan_at(6, "loss", tmp_path))
    assert step_of(tmp_path / "run" / "checkpoints" / "last.ckpt") == 4
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / ".lock").exists()


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_skip_leaves_the_weights_unchanged_and_counts_the_step(tmp_path: Path, corpus_file: Path, where: str) -> None:
    summary = run_train(tmp_path, corpus_file, "nonfinite=skip", *nan_at(5, where, tmp_path), steps=10)
    assert json.loads((tmp_path / "nan_probe.json").read_text()) == {"changed": False}
    assert summary["skipped_steps"] == 1 and summary["steps"] == 10
    assert torch.isfinite(torch.tensor(summary["val_loss"]))


def test_a_grad_nan_stops_by_default(tmp_path: Path, corpus_file: Path) -> None:
    with pytest.raises(NonFiniteError, match=r"non-finite gradient norm \(nan\) at step 3"):
        run_train(tmp_path, corpus_file, *nan_at(3, "grad", tmp_path))


def test_a_second_run_into_a_finished_run_is_refused_and_touches_nothing(tmp_path: Path, corpus_file: Path) -> None:
    run_train(tmp_path, corpus_file, steps=5)
    run = tmp_path / "run"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunDirError, match="already holds a run"):
        run_train(tmp_path, corpus_file, "model.n_layer=2", steps=5)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()} == before


def test_overwrite_moves_the_old_run_aside(tmp_path: Path, corpus_file: Path) -> None:
    run_train(tmp_path, corpus_file, steps=5)
    old_summary = (tmp_path / "run" / "summary.json").read_text()
    summary = run_train(tmp_path, corpus_file, "overwrite=true", steps=6)
    assert summary["steps"] == 6
    (aside,) = tmp_path.glob("run.replaced-*")
    assert (aside / "summary.json").read_text() == old_summary
    assert step_of(aside / "checkpoints" / "last.ckpt") == 5


def test_a_bare_resume_continues_the_saved_run(tmp_path: Path, corpus_file: Path) -> None:
    """`llm train hydra.run.dir=DIR ckpt_path=last`: the model settings come from DIR/config.yaml."""
    run_train(tmp_path, corpus_file, "model/attention=manual", "model.n_layer=2", steps=6)
    summary = run_train(
        tmp_path,
        corpus_file,
        "ckpt_path=last",
        "trainer.max_steps=9",
        overrides=["ckpt_path=last", "trainer.max_steps=9"],
    )
    assert summary["steps"] == 9
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["model"]
    assert config["n_layer"] == 2 and config["attention"]["name"] == "manual"


def test_a_refused_resume_rewrites_nothing(tmp_path: Path, corpus_file: Path) -> None:
    run_train(tmp_path, corpus_file, steps=5)
    run = tmp_path / "run"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"model.n_layer \(saved 1, given 2\)"):
        run_train(
            tmp_path, corpus_file, "ckpt_path=last", "model.n_layer=2", overrides=["ckpt_path=last", "model.n_layer=2"]
        )
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()} == before


def final_lr(run: Path) -> float:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["lr_schedulers"][0]["_last_lr"][0]


def test_a_resume_with_more_steps_stretches_the_schedule(tmp_path: Path, corpus_file: Path) -> None:
    run_train(tmp_path, corpus_file, run="long", steps=20)
    run_train(tmp_path, corpus_file, run="short", steps=12)
    extended = ["ckpt_path=last", "trainer.max_steps=20"]
    summary = run_train(tmp_path, corpus_file, *extended, run="short", overrides=extended)
    assert summary["steps"] == 20
    assert final_lr(tmp_path / "short") == pytest.approx(final_lr(tmp_path / "long"), rel=1e-9)


def test_ckpt_path_may_name_a_checkpoint_file(tmp_path: Path, corpus_file: Path) -> None:
    run_train(tmp_path, corpus_file, steps=5)
    saved = tmp_path / "kept.ckpt"
    saved.write_bytes((tmp_path / "run" / "checkpoints" / "last.ckpt").read_bytes())
    resume = [f"ckpt_path={saved}", "trainer.max_steps=8"]
    assert run_train(tmp_path, corpus_file, *resume, overrides=resume)["steps"] == 8


def test_a_planted_pickle_config_yaml_is_refused(tmp_path: Path, corpus_file: Path) -> None:
    run_train(tmp_path, corpus_file, steps=5)
    marker = tmp_path / "pwned"
    (tmp_path / "run" / "config.yaml").write_text(f'seed: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match="is not a plain YAML config"):
        run_train(tmp_path, corpus_file, "ckpt_path=last", overrides=["ckpt_path=last"])
    assert not marker.exists()


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> None:
    with path.open("wb") as f:
        pickle.dump({"weights": RunsCode(marker)}, f)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("model.safetensors", ModelDirError, "is truncated or not a safetensors file"),
        ("tokenizer.json", ModelDirError, "cannot read tokenizer file .*utf-8"),
        ("config.json", ModelDirError, "config.json is not valid JSON"),
    ],
)
def test_a_planted_pickle_in_a_model_directory_never_runs(
    tmp_path: Path, corpus_file: Path, name: str, error: type, message: str
) -> None:
    run_train(tmp_path, corpus_file, steps=3)
    marker = tmp_path / "pwned"
    plant(tmp_path / "run" / "model" / name, marker)
    with pytest.raises(error, match=message):
        load_model_dir(tmp_path / "run" / "model")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["train.bin", "val.bin", "tokenizer.json", "meta.json"])
def test_a_tampered_token_cache_is_rebuilt_not_read(tmp_path: Path, corpus_file: Path, name: str) -> None:
    first = run_train(tmp_path, corpus_file, run="a", steps=3)
    (cache,) = (tmp_path / "cache" / "tokens").iterdir()
    original = (cache / name).read_bytes()
    marker = tmp_path / "pwned"
    if name.endswith(".bin"):  # same size, other bytes: only the checksum can tell
        (cache / name).write_bytes(bytes(reversed(original)))
    else:
        plant(cache / name, marker)
    second = run_train(tmp_path, corpus_file, run="b", steps=3)
    assert (cache / name).read_bytes() == original
    assert second["val_loss"] == pytest.approx(first["val_loss"], rel=1e-6)
    assert not marker.exists()


def test_a_tokenizer_file_that_is_a_pickle_is_refused(tmp_path: Path) -> None:
    from llm.tokenizer import load_tokenizer

    marker = tmp_path / "pwned"
    plant(tmp_path / "tokenizer.json", marker)
    with pytest.raises(TokenizerError, match="is not valid JSON|cannot read"):
        load_tokenizer(tmp_path / "tokenizer.json")
    assert not marker.exists()
