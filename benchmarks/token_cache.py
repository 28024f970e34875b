"""Tokenization throughput (MB/s of UTF-8 text, tokens/s) of the char, byte and BPE tokenizers on one corpus.

    python benchmarks/token_cache.py --generate-mb 20                 # a generated corpus of 20 MB (a smoke check)
    python benchmarks/token_cache.py --path big.txt --threads 1,auto  # your own text file

For each tokenizer: `build` is the whole cached build a first `llm train` runs (fingerprint the corpus, train the
tokenizer, encode, split, checksums) into a fresh cache; then the encoding alone (llm.data.encode.encode_all) is
timed once per thread count. One JSON row per tokenizer and thread count is printed and appended to
runs/bench/tokenize.json. MB are 10^6 bytes of the corpus's UTF-8 text.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import tokenizers

from llm.data.corpora import DEFAULT_CHUNK_MB, TextCorpus
from llm.data.encode import encode_all, tokenize_threads
from llm.data.tokens import prepare_token_splits, token_dtype
from llm.files import write_text_atomic

CONFIGS = {"char": {"name": "char"}, "byte": {"name": "byte"}, "bpe": {"name": "bpe", "vocab_size": 1024}}
BLOCK_CHARS = 4 << 20


def generated_block(seed: int) -> str:
    """About BLOCK_CHARS characters of prose-like lines: Zipf-distributed words made of syllables, some accented."""
    rng = random.Random(seed)
    syllables = ["ka", "to", "ri", "men", "sa", "lo", "qua", "ve", "dé", "ür", "ion", "th", "er", "an", "ß", "ño"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(5000)]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    lines, count = [], 0
    while count < BLOCK_CHARS:
        line = " ".join(rng.choices(words, weights, k=rng.randint(4, 25))).capitalize() + rng.choice(".,;!?") + "\n"
        lines.append(line)
        count += len(line)
    return "".join(lines)


def write_generated(path: Path, megabytes: float, seed: int = 0) -> None:
    """`megabytes` MB of text: one generated block, rotated by a random offset each time it is written again."""
    block, rng = generated_block(seed), random.Random(seed)
    size = 0
    with path.open("w", encoding="utf-8") as f:
        while size < megabytes * 1e6:
            k = block.index("\n", rng.randrange(len(block) - 1)) + 1 if size else 0
            piece = block[k:] + block[:k]
            f.write(piece)
            size += len(piece.encode())


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def bench(name: str, corpus: TextCorpus, size: int, thread_options: list[str], work: Path) -> list[dict[str, Any]]:
    """The rows of one tokenizer: its whole build once, then its encoding at each thread count."""
    cache = work / f"cache-{name}"
    splits, build_seconds = timed(lambda: prepare_token_splits(corpus, CONFIGS[name], 0.1, cache))
    tokenizer = splits.tokenizer
    rows = []
    counts = dict.fromkeys(
        tokenize_threads(tokenizer) if option == "auto" else int(option) for option in thread_options
    )
    dtype = token_dtype(tokenizer.vocab_size)
    for threads in counts:
        (tokens, _), seconds = timed(partial(encode_all, corpus, tokenizer, work / "tokens.bin", dtype, threads))
        rows.append(
            {
                "name": name,
                "threads": threads,
                "mb_per_sec": round(size / 1e6 / seconds, 2),
                "tokens_per_sec": round(tokens / seconds),
                "corpus_mb": round(size / 1e6, 1),
                "tokens": tokens,
                "seconds": round(seconds, 2),
                "build_seconds": round(build_seconds, 2),
                "build_mb_per_sec": round(size / 1e6 / build_seconds, 2),
            }
        )
    shutil.rmtree(cache, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--path", type=Path, help="a UTF-8 text file to tokenize")
    source.add_argument("--generate-mb", type=float, default=20.0, help="else: generate a corpus of this many MB")
    parser.add_argument("--tokenizers", default="char,byte,bpe", help="comma-separated: char, byte, bpe")
    parser.add_argument("--threads", default="1,auto", help="comma-separated thread counts; auto: the default")
    parser.add_argument("--chunk-mb", type=float, default=DEFAULT_CHUNK_MB, help="data.corpus.chunk_mb")
    parser.add_argument("--work", type=Path, default=None, help="a folder for the corpus and caches (default: tmp)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/tokenize.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tokenize-bench-", dir=args.work))
    try:
        path = args.path
        if path is None:
            path = work / "generated.txt"
            write_generated(path, args.generate_mb)
        corpus = TextCorpus(path=str(path), chunk_mb=args.chunk_mb)
        size = path.stat().st_size
        common = {
            "date": time.strftime("%Y-%m-%d"),
            "corpus": str(args.path) if args.path else f"generated {args.generate_mb:g} MB",
            "chunk_mb": args.chunk_mb,
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "tokenizers_version": tokenizers.__version__,
        }
        rows = []
        for name in args.tokenizers.split(","):
            for row in bench(name, corpus, size, args.threads.split(","), work):
                row = {
                    **row,
                    **common,
                    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(args.out.read_text()) if args.out.is_file() else []
    write_text_atomic(args.out, json.dumps([*earlier, *rows], indent=1) + "\n")


if __name__ == "__main__":
    main()
