"""Pieces the benchmark scripts share: the measured matrix-multiply peak, the median of
repeats with its spread, peak memory, and the JSON rows under runs/bench/.

The scripts import this as `common` (Python puts the script's own folder, benchmarks/, first on the path).
"""

from __future__ import annotations

import json
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm.files import write_text_atomic

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
# tiny Shakespeare's 65 characters, for the corpus generated when the file is absent
CHARACTERS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    """FLOP/s of the best of `repeats` size x size x size products."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def bounded_matmul_peak(device: torch.device, dtype: torch.dtype, max_size: int, seconds: float = 0.2) -> float:
    """The best matmul_peak over sizes 256, 512, ... up to `max_size`, stopping at the first size whose product
    takes longer than `seconds` (so an emulated dtype, such as bf16 on many CPUs, is measured in seconds too)."""
    best, size = 0.0, 256
    while size <= max_size:
        peak = matmul_peak(device, dtype, size, repeats=5)
        best = max(best, peak)
        if 2 * size**3 / peak > seconds:
            break
        size *= 2
    return best


def generated_corpus(path: Path, characters: int = 1_000_000) -> Path:
    """About `characters` of word-like text over CHARACTERS (seeded), for machines without tiny Shakespeare."""
    rng = np.random.default_rng(0)
    letters = np.array(list(CHARACTERS[2:]))
    words = ["".join(rng.choice(letters, size=int(n))) for n in rng.integers(1, 9, size=4000)]
    picks = rng.integers(0, len(words), size=characters // 6)
    lines = [" ".join(words[i] for i in picks[start : start + 10]) for start in range(0, len(picks), 10)]
    path.write_text(CHARACTERS + "\n" + "\n".join(lines) + "\n")
    return path


def pick_data(given: Path | None, folder: Path) -> tuple[Path, str]:
    """The text to train on and how a row names it."""
    if given is not None:
        return given, f"{given.name} (--data)"
    if SHAKESPEARE.is_file():
        return SHAKESPEARE, "tinyshakespeare.txt"
    return generated_corpus(folder / "generated.txt"), "generated corpus (1 MB, 65 characters; no tinyshakespeare.txt)"


def spread(rates: Sequence[float]) -> dict[str, float]:
    """The median of per-repeat rates with the smallest and largest: tokens_per_sec, _min, _max."""
    return {
        "tokens_per_sec": statistics.median(rates),
        "tokens_per_sec_min": min(rates),
        "tokens_per_sec_max": max(rates),
    }


def peak_rss_mb() -> float:
    """The largest resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def command_line() -> str:
    """The command that produced the figures, for each row (a figure is reported with it)."""
    return shlex.join(["python", *sys.argv])


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """The rows as one JSON list, written atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(rows, indent=1) + "\n")
    print(f"wrote {path}")


def fmt(value: Any, spec: str) -> str:
    """`value` formatted with `spec`, or "-" for a missing figure."""
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], columns: dict[str, tuple[str, str]]) -> None:
    """A markdown table: `columns` maps a row key to (title, format spec); a skipped row says why."""
    print("| " + " | ".join(title for title, _ in columns.values()) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [fmt(row.get(key), spec) for key, (_, spec) in columns.items()]
        line = "| " + " | ".join(cells) + " |"
        print(line + (f" skipped: {row['skipped']}" if row.get("skipped") else ""))
