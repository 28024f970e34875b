"""`llm dpo`: the first step is ln 2 with zero rewards, every policy weight moves and the reference's none,
the reference log-probs are cached and reused, a run resumes exactly, and bad inputs are refused."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm.configs import compose_config
from llm.errors import ConfigError
from llm.export import ModelDirError
from llm.run.recipes import dpo
from llm.run.runner import run
from tests.post.conftest import post_overrides


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def series(run_dir: Path, name: str) -> dict[int, float]:
    found: dict[int, float] = {}
    for r in rows(run_dir):
        if r.get(name):
            assert int(r["step"]) not in found, f"{name} logged twice at step {r['step']}"
            found[int(r["step"])] = float(r[name])
    return found


def dpo_run(workdir: Path, base: Path, pairs: Path, name: str, *extra: str, steps: int = 6, overrides=None) -> dict:
    cfg = compose_config("dpo", [*post_overrides(workdir, base, pairs, name, steps), *extra])
    return run(cfg, dpo, overrides)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_first_step_is_ln2_with_zero_rewards_through_the_cli(
    workdir: Path, base_model: Path, pairs_file: Path
) -> None:
    overrides = [o.replace("model_dir=", "model=") for o in post_overrides(workdir, base_model, pairs_file, "first", 1)]
    overrides = [o for o in overrides if not o.startswith("paths.run_dir")] + [f"hydra.run.dir={workdir / 'first'}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "llm", "dpo", *overrides], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    first = next(r for r in rows(workdir / "first") if r.get("train/loss"))
    assert int(first["step"]) == 0
    assert float(first["train/loss"]) == pytest.approx(math.log(2), abs=1e-5)
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl/chosen"):
        assert float(first[name]) == pytest.approx(0.0, abs=1e-5), name
    assert float(first["logps/chosen"]) < 0 and float(first["logps/rejected"]) < 0
    header = rows(workdir / "first")[0].keys()
    for name in ("val/loss", "val/rewards/accuracies", "val/rewards/margins", "val/kl/chosen", "val/logps/chosen"):
        assert name in header, name


def test_every_policy_weight_moves_and_the_reference_stays(workdir: Path, base_model: Path, pairs_file: Path) -> None:
    before = sha(base_model / "model.safetensors")
    dpo_run(workdir, base_model, pairs_file, "moves", "optim.lr=1e-3", steps=8)
    start, end = (
        load_file(base_model / "model.safetensors"),
        load_file(workdir / "moves" / "model" / "model.safetensors"),
    )
    unchanged = [name for name in start if torch.equal(start[name], end[name])]
    assert unchanged == []
    assert sha(base_model / "model.safetensors") == before  # the reference (the base model) is never written
    margins = series(workdir / "moves", "rewards/margins")
    assert margins[0] == pytest.approx(0.0, abs=1e-6) and sum(margins[s] for s in range(4, 8)) > 0  # chosen gains
    info = json.loads((workdir / "moves" / "run_info.json").read_text())
    assert info["reference_model"] == str(base_model.resolve())


def test_the_reference_log_probs_are_cached_and_the_reference_not_loaded_again(
    workdir: Path, base_model: Path, pairs_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dpo_run(workdir, base_model, pairs_file, "cache-a", "paths.cache_dir=" + str(workdir / "refcache"), steps=2)
    (cached,) = (workdir / "refcache" / "reference").iterdir()

    def refuse(*args, **kwargs):
        raise AssertionError("the reference model was loaded although its log-probs are cached")

    monkeypatch.setattr("llm.run.reference.load_model_dir", refuse)
    dpo_run(
        workdir, base_model, pairs_file, "cache-b", "paths.cache_dir=" + str(workdir / "refcache"), "seed=5", steps=2
    )
    assert list((workdir / "refcache" / "reference").iterdir()) == [cached]
    # other truncation settings are another key: the reference is needed again
    with pytest.raises(AssertionError, match="reference model was loaded"):
        dpo_run(
            workdir,
            base_model,
            pairs_file,
            "cache-c",
            "paths.cache_dir=" + str(workdir / "refcache"),
            "data.prompt_budget=3",
            steps=2,
        )


def test_a_dpo_run_resumes_exactly(workdir: Path, base_model: Path, pairs_file: Path) -> None:
    dpo_run(workdir, base_model, pairs_file, "full", steps=10)
    stop = ["+callbacks.stop._target_=tests.helpers.StopAtStep", "+callbacks.stop.step=4"]
    dpo_run(workdir, base_model, pairs_file, "resumed", *stop, steps=10)
    dpo_run(workdir, base_model, pairs_file, "resumed", "ckpt_path=last", steps=10)
    expected, got = series(workdir / "full", "train/loss"), series(workdir / "resumed", "train/loss")
    assert sorted(got) == sorted(expected) == list(range(10))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step


@pytest.mark.slow
def test_a_compiled_dpo_run_follows_the_eager_one(workdir: Path, base_model: Path, pairs_file: Path) -> None:
    """compile=true (the policy and its log-probs compiled) takes the eager run's steps, to float rounding."""
    dpo_run(workdir, base_model, pairs_file, "eager", "compile=false", steps=4)
    dpo_run(workdir, base_model, pairs_file, "compiled", "compile=true", steps=4)
    expected, got = series(workdir / "eager", "train/loss"), series(workdir / "compiled", "train/loss")
    assert sorted(got) == sorted(expected) == list(range(4))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-4), step


@pytest.mark.parametrize("objective", ["ipo", "cdpo", "hinge", "simpo"])
def test_every_objective_trains(workdir: Path, base_model: Path, pairs_file: Path, objective: str) -> None:
    summary = dpo_run(workdir, base_model, pairs_file, f"obj-{objective}", f"objective={objective}", steps=3)
    assert math.isfinite(summary["val_loss"]) and summary["steps"] == 3


def test_beta_must_be_positive(workdir: Path, base_model: Path, pairs_file: Path) -> None:
    with pytest.raises(ConfigError, match="objective.beta must be a positive number, got 0"):
        dpo_run(workdir, base_model, pairs_file, "beta", "objective.beta=0")


def test_a_language_modelling_objective_is_refused(workdir: Path, base_model: Path, pairs_file: Path) -> None:
    with pytest.raises(ConfigError, match="objective=sft is not a preference objective"):
        dpo_run(workdir, base_model, pairs_file, "lm", "objective=sft")


def test_model_must_be_a_model_directory(workdir: Path, base_model: Path, pairs_file: Path) -> None:
    with pytest.raises(ModelDirError, match="lacks model.safetensors"):
        dpo_run(workdir, workdir, pairs_file, "notdir")


def test_a_reference_with_another_tokenizer_is_refused(workdir: Path, base_model: Path, pairs_file: Path) -> None:
    other = workdir / "other-model"
    if not other.exists():
        import shutil

        shutil.copytree(base_model, other)
        tokenizer = json.loads((other / "tokenizer.json").read_text())
        tokenizer["extra"] = 1
        (other / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ConfigError, match="different tokenizers or vocabularies"):
        dpo_run(workdir, base_model, pairs_file, "otherref", f"reference_dir={other}")


def test_a_tiny_model_with_a_64_token_context_trains_on_the_real_hh_pairs(workdir: Path) -> None:
    from llm.export import save_model_dir
    from llm.model import ModelConfig, build_gpt
    from llm.tokenizer import train_tokenizer
    from tests.conftest import SHARED_DATA

    hh = SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"
    if not hh.is_file():
        pytest.skip(f"the HH-RLHF pairs are not at {hh} (they live in ../shared/data beside the repository)")
    tokenizer = train_tokenizer("byte", [])
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)
    model = save_model_dir(workdir / "hh-model", build_gpt(config), tokenizer)
    summary = dpo_run(workdir, model, hh, "hh", "data.batch_size=8", steps=3)
    assert summary["steps"] == 3 and math.isfinite(summary["val_loss"])
    assert summary["val_rewards_accuracies"] >= 0.0
