"""A tiny pretrained byte-level model directory and small SFT and preference files, made once per module."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from llm.configs import compose_config
from llm.run.runner import run

PAIRS = 60


def arithmetic(seed: int, n: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(f"{a}+{b}=", str(a + b)) for a, b in ((rng.randint(0, 9), rng.randint(0, 9)) for _ in range(n))]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("post")


@pytest.fixture(scope="module")
def base_model(workdir: Path) -> Path:
    """A 1-layer byte-level GPT pretrained for a few steps on arithmetic lines."""
    from llm.run.recipes import pretrain

    corpus = workdir / "corpus.txt"
    corpus.write_text("".join(f"{p}{r}\n" for p, r in arithmetic(0, 400)))
    cfg = compose_config(
        "train",
        [
            "data=text",
            f"data.path={corpus}",
            "tokenizer=byte",
            "model.n_layer=1",
            "model.n_head=2",
            "model.n_embd=32",
            "model.block_size=32",
            "data.batch_size=8",
            "data.val_batches=2",
            "trainer.max_steps=20",
            "trainer.val_check_interval=10",
            "trainer.enable_progress_bar=false",
            "scheduler.warmup_steps=2",
            "samples.num=0",
            f"paths.run_dir={workdir / 'base'}",
            f"paths.cache_dir={workdir / 'cache'}",
        ],
    )
    run(cfg, pretrain)
    return workdir / "base" / "model"


@pytest.fixture(scope="module")
def pairs_file(workdir: Path) -> Path:
    path = workdir / "pairs.jsonl"
    rows = [{"prompt": p, "chosen": r, "rejected": str(int(r) + 1)} for p, r in arithmetic(1, PAIRS)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def sft_file(workdir: Path) -> Path:
    path = workdir / "sft.jsonl"
    rows = [{"prompt": p, "response": r} for p, r in arithmetic(2, 40)]
    rows += [
        {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]}
        for p, r in arithmetic(3, 20)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def post_overrides(workdir: Path, model: Path, data: Path, run_name: str, steps: int = 6) -> list[str]:
    return [
        f"model_dir={model}",
        f"data.path={data}",
        "data.batch_size=4",
        f"trainer.max_steps={steps}",
        "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "scheduler.warmup_steps=0",
        "samples.num=0",
        f"paths.run_dir={workdir / run_name}",
        f"paths.cache_dir={workdir / 'cache'}",
    ]
