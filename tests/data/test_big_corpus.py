"""A corpus several times larger than the memory `llm train` may use: tokenized and trained on in under 1 GB.

Slow (make test-full): writes LLM_BIG_CORPUS_GB (default 3) GB of text under tmp_path, about twice that in token
files beside it, and runs `llm train data=text tokenizer=char trainer.max_steps=5` in a child process whose peak
resident memory (its maximum RSS, file-mapped pages included) must stay under 1 GiB. Prints the throughput.
LLM_BIG_CORPUS_GB=0.05 checks the test itself in a few seconds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides

RSS_LIMIT_BYTES = 1 << 30
BLOCK_CHARS = 1 << 20

# Runs the command after "--" and prints its exit status and the peak RSS of it and its children, in KiB (Linux).
MEASURE = """
import json, resource, subprocess, sys
status = subprocess.run(sys.argv[sys.argv.index("--") + 1 :]).returncode
print(json.dumps({"returncode": status, "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def write_corpus(path: Path, size: int, seed: int = 0) -> int:
    """About `size` bytes of ASCII lines: one random block of words, written again and again, each time rotated
    to another line and headed by its number, so that no two blocks are the same. Returns the bytes written."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "red", "hat", "big", "old", "sun"]
    lines, count = [], 0
    while count < BLOCK_CHARS:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) + ".\n"
        lines.append(line)
        count += len(line)
    block = "".join(lines)
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line))
    written = 0
    with path.open("w", encoding="ascii") as f:
        for number in range(size // len(block) + 1):
            k = rng.choice(starts)
            piece = f"{number}\n{block[k:]}{block[:k]}"
            f.write(piece)
            written += len(piece)
    return written


@pytest.mark.slow
def test_a_corpus_larger_than_memory_is_tokenized_and_trained_on_in_under_1_gb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gigabytes = float(os.environ.get("LLM_BIG_CORPUS_GB", "3"))
    size = int(gigabytes * 1e9)
    need = 3.5 * size  # the text, uint16 ids (2 bytes a character) and the validation copy made while splitting
    if shutil.disk_usage(tmp_path).free < need:
        pytest.skip(f"needs {need / 1e9:.1f} GB free under {tmp_path}; set LLM_BIG_CORPUS_GB lower or TMPDIR")
    corpus = tmp_path / "big.txt"
    written = write_corpus(corpus, size)
    overrides = [*tiny_overrides(tmp_path, corpus, steps=5), "tokenizer=char", "samples.num=0"]
    command = [sys.executable, "-c", MEASURE, "--", sys.executable, "-m", "llm", "train", *overrides]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3 * 3600)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["returncode"] == 0, done.stderr[-3000:]
    peak = measured["maxrss_kib"] * 1024
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary  # the run finished and wrote its summary
    with capsys.disabled():
        print(
            f"\n{written / 1e9:.2f} GB corpus: `llm train` (fingerprint, tokenizer training, encoding, split, 5 steps) "
            f"took {seconds:.0f} s, {written / 1e6 / seconds:.1f} MB/s end to end; peak RSS {peak / 2**20:.0f} MiB"
        )
    assert peak < RSS_LIMIT_BYTES, f"peak RSS {peak / 2**20:.0f} MiB, over the limit of 1 GiB"
