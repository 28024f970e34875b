"""Whole commands, end to end: nanoGPT's CPU recipe on tiny Shakespeare against `llm train experiment=...`, one after
another in this sitting, each timed from start to exit (imports, data, training, every validation, checkpoints).

    python benchmarks/recipe.py --nanogpt ~/src/nanoGPT                     # nanoGPT's recipe, then ours, 3 each
    python benchmarks/recipe.py --nanogpt ~/src/nanoGPT --experiments shakespeare_char shakespeare_speedrun
    python benchmarks/recipe.py --experiments shakespeare_speedrun --seeds 1 2 3 --extra trainer.max_time=...

--nanogpt is a checkout of https://github.com/karpathy/nanoGPT (this script never downloads it). Its recipe is the
command its README gives for a CPU:
    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 --log_interval=1
      --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
      --dropout=0.0
run in a scratch folder holding its train.py, model.py, configurator.py and config/, and the data its
data/shakespeare_char/prepare.py would write (first 90% of the text to train.bin, the rest to val.bin, uint16
character ids, meta.pkl), made here from the local file instead of downloaded. Its val loss is the last
"step N: ... val loss X" line (the mean of 20 batches of 12).

Ours: `python -m llm train experiment=<name> data.path=<text> seed=<seed>` (plus --extra overrides); its val loss is
summary.json's final `val_loss` (the mean over the experiment's validation batches).

Each row: name, seed, wall_s, val_loss, tokens_per_sec (the command's training tokens over its wall time), the
command; then per name the median wall time and val loss with their spread, and each name's speed over nanoGPT's
(median wall time of nanoGPT / median of the name). Rows go to runs/bench/recipe.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import SHAKESPEARE, command_line, print_table, write_rows

NANOGPT_FLAGS = (
    "--device=cpu --compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 "
    "--n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0"
).split()
NANOGPT_TOKENS = 2000 * 12 * 64
VAL_LINE = re.compile(r"step (\d+): train loss ([0-9.]+), val loss ([0-9.]+)")


def nanogpt_folder(checkout: Path, text: Path, scratch: Path) -> Path:
    """A scratch folder nanoGPT's train.py runs in: its code, its config, and the char data prepared locally."""
    folder = scratch / "nanogpt"
    folder.mkdir()
    for name in ("train.py", "model.py", "configurator.py"):
        if not (checkout / name).is_file():
            raise SystemExit(f"--nanogpt {checkout}: no {name} there; pass a checkout of karpathy/nanoGPT")
        shutil.copy(checkout / name, folder / name)
    shutil.copytree(checkout / "config", folder / "config", dirs_exist_ok=True)
    data = folder / "data" / "shakespeare_char"
    data.mkdir(parents=True, exist_ok=True)
    content = text.read_text()
    chars = sorted(set(content))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([stoi[ch] for ch in content], dtype=np.uint16)
    cut = int(len(ids) * 0.9)
    ids[:cut].tofile(data / "train.bin")
    ids[cut:].tofile(data / "val.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    with open(data / "meta.pkl", "wb") as handle:
        pickle.dump(meta, handle)
    return folder


def timed(argv: list[str], cwd: Path, log: Path) -> tuple[float, str]:
    """Run `argv` in `cwd`, its output to `log`; the wall time and the output. A failure stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - started
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({done.returncode}); its output is in {log}")
    return wall, done.stdout + done.stderr


def run_nanogpt(folder: Path, seed: int, logs: Path) -> dict[str, Any]:
    """nanoGPT's recipe once (it seeds itself with 1337; `seed` only numbers the repeat)."""
    argv = [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_FLAGS]
    wall, output = timed(argv, folder, logs / f"nanogpt-{seed}.log")
    steps = VAL_LINE.findall(output)
    if not steps:
        raise SystemExit(f"nanoGPT printed no 'step N: train loss ..., val loss ...' line; see {logs}")
    return row("nanogpt", seed, wall, float(steps[-1][2]), NANOGPT_TOKENS, shlex.join(["python", *argv[1:]]))


def run_ours(experiment: str, text: Path, seed: int, extra: list[str], scratch: Path, logs: Path) -> dict[str, Any]:
    """`llm train experiment=<experiment>` once, in a fresh run directory."""
    run_dir = scratch / f"{experiment}-{seed}"
    overrides = [f"experiment={experiment}", f"data.path={text}", f"seed={seed}", f"hydra.run.dir={run_dir}", *extra]
    argv = [sys.executable, "-m", "llm", "train", *overrides]
    wall, _ = timed(argv, Path.cwd(), logs / f"{experiment}-{seed}.log")
    summary = json.loads((run_dir / "summary.json").read_text())
    tokens = summary["tokens_seen"]
    name = experiment + (" " + " ".join(extra) if extra else "")
    return row(name, seed, wall, float(summary["val_loss"]), tokens, shlex.join(["llm", "train", *overrides]))


def row(name: str, seed: int, wall: float, val_loss: float, tokens: int, command: str) -> dict[str, Any]:
    return {
        "name": name,
        "seed": seed,
        "wall_s": wall,
        "val_loss": val_loss,
        "tokens_per_sec": tokens / wall,
        "command": command,
    }


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per name: the median wall time and val loss with their smallest and largest, and speed over nanoGPT."""
    names = list(dict.fromkeys(r["name"] for r in rows))
    out = []
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        walls, losses = [r["wall_s"] for r in mine], [r["val_loss"] for r in mine]
        out.append(
            {
                "name": f"median {name}",
                "runs": len(mine),
                "wall_s": statistics.median(walls),
                "wall_s_min": min(walls),
                "wall_s_max": max(walls),
                "val_loss": statistics.median(losses),
                "val_loss_min": min(losses),
                "val_loss_max": max(losses),
            }
        )
    base = next((m for m in out if m["name"] == "median nanogpt"), None)
    for m in out:
        m["speed_vs_nanogpt"] = base["wall_s"] / m["wall_s"] if base else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, help="a checkout of karpathy/nanoGPT; left out, nanoGPT is not run")
    parser.add_argument("--experiments", nargs="*", default=["shakespeare_char"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--extra", nargs="*", default=[], help="Hydra overrides added to every `llm train`")
    parser.add_argument("--data", type=Path, default=SHAKESPEARE, help="tiny Shakespeare (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/recipe.json"))
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"no {args.data}: pass --data tinyshakespeare.txt")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recipe-") as tmp:
        scratch, logs = Path(tmp), args.out.parent / "recipe-logs"
        logs.mkdir(parents=True, exist_ok=True)
        folder = nanogpt_folder(args.nanogpt.expanduser(), args.data, scratch) if args.nanogpt else None
        for seed in args.seeds:
            if folder is not None:
                rows.append(run_nanogpt(folder, seed, logs))
                print(json.dumps(rows[-1]), flush=True)
            for experiment in args.experiments:
                rows.append(run_ours(experiment, args.data.resolve(), seed, args.extra, scratch, logs))
                print(json.dumps(rows[-1]), flush=True)
    rows += medians(rows)
    for r in rows:
        r["command_line"] = command_line()
    columns = {
        "name": ("name", "s"),
        "seed": ("seed", "d"),
        "wall_s": ("wall s", ".1f"),
        "wall_s_min": ("min", ".1f"),
        "wall_s_max": ("max", ".1f"),
        "val_loss": ("val loss", ".4f"),
        "val_loss_min": ("min", ".4f"),
        "val_loss_max": ("max", ".4f"),
        "speed_vs_nanogpt": ("× nanoGPT", ".2f"),
    }
    print_table(rows, columns)
    write_rows(args.out, rows)


if __name__ == "__main__":
    main()
