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


@pytest.mark.slow
def test_eval_export_and_serve_as_the_readme_shows(tmp_path: Path) -> None:
    """The quick run of the export how-to, then llm eval, both export formats loaded back, and llm serve answering
    the README's curl request (sent with httpx)."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("transformers")
    steps_ = ["trainer.max_steps=60", "trainer.val_check_interval=30", "hydra.run.dir=runs/quick"]
    llm("train", "experiment=quickstart", *steps_, cwd=tmp_path)
    llm("eval", "model=runs/quick/model", cwd=tmp_path)
    assert "bits_per_byte" in json.dumps(json.loads((tmp_path / "runs/quick/eval/eval.json").read_text()))
    llm("export", "model=runs/quick/model", "format=hf", "out=exported/quick-hf", cwd=tmp_path)
    llm("export", "model=runs/quick/model", "format=onnx", "out=exported/quick-onnx", cwd=tmp_path)
    load = "import transformers as t; print(t.AutoModelForCausalLM.from_pretrained('exported/quick-hf'))"
    out = subprocess.run([sys.executable, "-c", load], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "GPT2LMHeadModel" in out.stdout, out.stderr[-2000:]
    assert (tmp_path / "exported/quick-onnx/model.onnx").is_file()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["model=runs/quick/model", "name=quick", "api_key=sk-local", "port=0"]
    server = subprocess.Popen(
        [sys.executable, "-m", "llm", "serve", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = line.split(" at ")[1].split()[0]  # "serving 'quick' at http://127.0.0.1:PORT/v1 ..."
        body = {"model": "quick", "prompt": "def ", "max_tokens": 20, "temperature": 0.8}
        headers = {"Authorization": "Bearer sk-local"}
        answer = httpx.post(f"{url}/completions", json=body, headers=headers, timeout=120).json()
        assert answer["usage"]["completion_tokens"] >= 1 and answer["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        server.terminate()
        server.wait(timeout=30)
