"""Two `llm train` runs started independently on one machine: how much of a lone run's tokens/s each keeps.

    python benchmarks/shared_machine.py --corpus ../shared/data/tinyshakespeare.txt --steps 200

For each setting (the default threads with OpenMP's waiting policy as llm sets it, the same with spinning threads
(OMP_WAIT_POLICY=ACTIVE, OpenMP's own default), and threads=1), runs one training alone, then two at once, and
reads tokens/s from each run's summary.json. Prints a table and writes runs/bench/shared_machine.json (one row per
run: name, tokens_per_sec, ms_per_step, share of the lone run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {
    "default": ([], {}),
    "spinning threads (OMP_WAIT_POLICY=ACTIVE)": ([], {"OMP_WAIT_POLICY": "ACTIVE"}),
    "threads=1": (["threads=1"], {}),
}


def command(corpus: Path, steps: int, run_dir: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "llm", "train", "experiment=shakespeare_char", f"data.path={corpus}",
        f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}", "samples.num=0",
        "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip


def train_together(corpus: Path, steps: int, root: Path, extra: list[str], env: dict, count: int) -> list[dict]:
    """Starts `count` trainings at once and returns their summary.json contents."""
    dirs = [root / f"run{i}" for i in range(count)]
    full_env = {**os.environ, **env, "LLM_CACHE_DIR": str(root.parent / "cache")}
    procs = [subprocess.Popen(command(corpus, steps, d, extra), env=full_env, stdout=subprocess.DEVNULL) for d in dirs]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a training failed: {' '.join(command(corpus, steps, dirs[0], extra))}")
    return [json.loads((d / "summary.json").read_text()) for d in dirs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("../shared/data/tinyshakespeare.txt"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/shared_machine.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        train_together(args.corpus, 2, Path(tmp) / "warm", ["scheduler.warmup_steps=1"], {}, 1)  # token cache
        for n, (name, (extra, env)) in enumerate(SETTINGS.items()):
            alone = train_together(args.corpus, args.steps, Path(tmp) / f"s{n}" / "alone", extra, env, 1)[0]
            rows.append(row(f"{name}: alone", alone, alone))
            for i, s in enumerate(train_together(args.corpus, args.steps, Path(tmp) / f"s{n}" / "two", extra, env, 2)):
                rows.append(row(f"{name}: one of two ({i})", s, alone))
    print(f"| {'setting':<52} | tokens/s | share of alone |")
    for r in rows:
        print(f"| {r['name']:<52} | {r['tokens_per_sec']:8,.0f} | {r['share_of_alone']:14.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


def row(name: str, summary: dict, alone: dict) -> dict:
    return {
        "name": name,
        "tokens_per_sec": summary["tokens_per_sec"],
        "ms_per_step": 1000 * summary["wall_seconds"] / summary["steps"],
        "share_of_alone": summary["tokens_per_sec"] / alone["tokens_per_sec"],
        "threads": summary.get("threads"),
    }


if __name__ == "__main__":
    main()
