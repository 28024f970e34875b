"""Slow: the README's how-tos run as written (paths moved under tmp_path), one after another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]


def llm(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLM_CACHE_DIR": str(cwd / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "llm", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def steps(run: Path) -> int:
    return json.loads((run / "summary.json").read_text())["steps"]


@pytest.mark.slow
def test_train_resume_overwrite_and_sample_as_the_readme_shows(tmp_path: Path) -> None:
    run1 = tmp_path / "run1"
    swap = "model/position=learned model/attention=manual model.n_layer=2 trainer.max_steps=100".split()
    llm("train", *swap, f"hydra.run.dir={run1}", cwd=tmp_path)
    assert steps(run1) == 100
    llm("train", f"hydra.run.dir={run1}", "ckpt_path=last", "trainer.max_steps=200", cwd=tmp_path)
    assert steps(run1) == 200
    llm("train", "model.n_layer=2", "trainer.max_steps=100", f"hydra.run.dir={run1}", "overwrite=true", cwd=tmp_path)
    assert steps(run1) == 100 and len(list(tmp_path.glob("run1.replaced-*"))) == 1
    model = f"model={run1 / 'model'}"
    assert llm("sample", model, "prompt=def f(a, b):", cwd=tmp_path).stdout.startswith("def f(a, b):")
    (tmp_path / "prompt.txt").write_text("class A:\n")
    assert llm("sample", model, "prompt_file=prompt.txt", cwd=tmp_path).stdout.startswith("class A:\n")
    assert llm("sample", model, "prompt=-", cwd=tmp_path, stdin="import").stdout.startswith("import")


@pytest.mark.slow
def test_sft_then_dpo_on_the_hh_pairs_as_the_readme_shows(tmp_path: Path) -> None:
    hh = SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"
    if not hh.is_file():
        pytest.skip(f"the HH-RLHF pairs are not at {hh} (they live in ../shared/data beside the repository)")
    llm("train", "tokenizer=byte", "trainer.max_steps=100", f"hydra.run.dir={tmp_path / 'runs/base'}", cwd=tmp_path)
    rows = [{"prompt": f"User: say {w}\nAssistant: ", "response": w} for w in ("yes", "no", "maybe", "hello") * 10]
    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    llm("sft", "model=runs/base/model", "data.path=examples.jsonl", "hydra.run.dir=runs/sft", cwd=tmp_path)
    assert (tmp_path / "runs/sft/model/chat_template.json").is_file()
    llm("dpo", "model=runs/sft/model", f"data.path={hh}", "objective.beta=0.1", "hydra.run.dir=runs/dpo", cwd=tmp_path)
    summary = json.loads((tmp_path / "runs/dpo/summary.json").read_text())
    assert summary["steps"] == 200 and "val_rewards_accuracies" in summary
