"""Data throughput, in one process: training and encoding each tokenizer (char, byte, bpe) on the same text, and
reading random training windows from a memory-mapped token file as `llm train` reads them.

    python benchmarks/data_io.py                  # tiny Shakespeare beside the checkout, else a generated corpus
    python benchmarks/data_io.py --data notes.txt --batch 12 64
    python benchmarks/data_io.py --quick          # a smoke run: 100 KB of text, few batches

Rows (each figure the median of --repeats repeats, with the smallest and largest):
  tokenizer <name> train   training the tokenizer on the text (conf/tokenizer/<name>.yaml's options): MB/s of text
  tokenizer <name> encode  encoding the text with it: MB/s of text and tokens/s
  read windows batch <B>   batches of B random windows of block_size + 1 tokens (llm.data.pretrain.RandomWindows)
                           from the char token file of the text: MB/s read, windows/s, tokens/s, ms per batch
  read loader batch <B>    the same batches through PretrainDataModule's DataLoader (what the trainer iterates)
The token file is small enough to sit in the page cache: reads come from memory, not the disk. Prints a table
and writes the rows (name, tokens_per_sec, ms_per_step: ms per batch for reads, null for tokenizers, ...) to
runs/bench/data.json.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import command_line, peak_rss_mb, pick_data, print_table, spread, write_rows
from omegaconf import OmegaConf

from llm.configs import compose_config
from llm.data.corpora import TextCorpus
from llm.data.pretrain import PretrainDataModule, RandomWindows
from llm.tokenizer import Tokenizer, TokenizerError, train_tokenizer

TOKENIZERS = ("char", "byte", "bpe")
MB = 1e6


def tokenizer_options(name: str) -> dict[str, Any]:
    """The options `llm train tokenizer=<name>` trains the tokenizer with (conf/tokenizer/<name>.yaml)."""
    node = OmegaConf.to_container(compose_config("train", [f"tokenizer={name}"]).tokenizer, resolve=True)
    assert isinstance(node, dict)
    return {str(k): v for k, v in node.items() if k != "name"}


def timed(run: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Seconds of each of `repeats` runs (after one untimed run) and the last run's result."""
    out = run()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - started)
    return seconds, out


def rate_row(name: str, seconds: list[float], amount: float, unit: str, **extra: Any) -> dict[str, Any]:
    """`amount` of `unit` per second for each repeat: the median with min and max, as `<unit>_per_sec`."""
    figures = spread([amount / s for s in seconds])
    return {
        "name": name,
        f"{unit}_per_sec": figures["tokens_per_sec"],
        f"{unit}_per_sec_min": figures["tokens_per_sec_min"],
        f"{unit}_per_sec_max": figures["tokens_per_sec_max"],
        "repeats": len(seconds),
        **extra,
    }


def tokenizer_rows(text: str, repeats: int) -> list[dict[str, Any]]:
    """A training and an encoding row for each tokenizer, on the same text."""
    size = len(text.encode("utf-8"))
    rows = []
    for name in TOKENIZERS:
        options = tokenizer_options(name)
        try:
            seconds, tokenizer = timed(functools.partial(train_tokenizer, name, [text], **options), repeats)
        except TokenizerError as e:  # e.g. a text too small for bpe's vocabulary size
            rows += [skipped(f"tokenizer {name} {what}", str(e)) for what in ("train", "encode")]
            continue
        rows.append(
            {
                **rate_row(f"tokenizer {name} train", seconds, size / MB, "mb", text_mb=size / MB),
                "tokens_per_sec": None,
                "ms_per_step": None,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
        rows.append(encoding_row(name, tokenizer, text, repeats))
    return rows


def skipped(name: str, reason: str) -> dict[str, Any]:
    return {"name": name, "tokens_per_sec": None, "ms_per_step": None, "skipped": reason}


def encoding_row(name: str, tokenizer: Tokenizer, text: str, repeats: int) -> dict[str, Any]:
    size = len(text.encode("utf-8"))
    seconds, ids = timed(lambda: tokenizer.encode(text), repeats)
    tokens = spread([len(ids) / s for s in seconds])
    return {
        **rate_row(f"tokenizer {name} encode", seconds, size / MB, "mb", text_mb=size / MB),
        **tokens,
        "ms_per_step": None,
        "tokens": len(ids),
        "vocab_size": tokenizer.vocab_size,
        "peak_rss_mb": peak_rss_mb(),
    }


def read_row(
    name: str, batches: Callable[[], Iterator[Any]], n: int, batch: int, block: int, itemsize: int, repeats: int
) -> dict[str, Any]:
    """`n` batches from a fresh `batches()` iterator per repeat: windows/s, MB/s read, tokens/s, ms per batch."""

    def read() -> None:
        it = batches()
        for _ in range(n):
            next(it)

    seconds, _ = timed(read, repeats)
    windows = n * batch
    tokens = spread([windows * block / s for s in seconds])
    median = statistics.median(seconds)
    return {
        **rate_row(name, seconds, windows, "windows"),
        **tokens,
        "mb_per_sec": windows * (block + 1) * itemsize / MB / median,
        "ms_per_step": 1000 * median / n,
        "batches": n,
        "batch": batch,
        "block_size": block,
        "peak_rss_mb": peak_rss_mb(),
    }


def loader_batches(module: PretrainDataModule) -> Callable[[], Iterator[Any]]:
    """A fresh iterator over the module's training DataLoader, as the trainer starts one."""
    return lambda: iter(module.train_dataloader())


def token_rows(data: Path, folder: Path, sizes: list[int], block: int, n: int, repeats: int) -> list[dict]:
    """Reads of the char token file of `data`: direct from RandomWindows, and through the DataLoader."""
    rows = []
    for batch in sizes:
        module = PretrainDataModule(
            corpus=TextCorpus(path=str(data)),
            tokenizer={"name": "char"},
            block_size=block,
            batch_size=batch,
            val_fraction=0.1,
            val_batches=1,
            cache_dir=folder,
        )
        train = module.splits.train
        path, dtype = Path(str(train.filename)), str(train.dtype)
        windows = RandomWindows(path, dtype, block, batch, seed=0, rank=0, start=0)
        itemsize = train.dtype.itemsize
        rows.append(
            read_row(
                f"read windows batch {batch}", functools.partial(iter, windows), n, batch, block, itemsize, repeats
            )
        )
        rows.append(read_row(f"read loader batch {batch}", loader_batches(module), n, batch, block, itemsize, repeats))
    return rows


COLUMNS = {
    "name": ("row", "<26"),
    "mb_per_sec": ("MB/s", ",.2f"),
    "tokens_per_sec": ("tokens/s", ",.0f"),
    "tokens_per_sec_min": ("min", ",.0f"),
    "tokens_per_sec_max": ("max", ",.0f"),
    "windows_per_sec": ("windows/s", ",.0f"),
    "ms_per_step": ("ms/batch", ".3f"),
    "peak_rss_mb": ("peak RSS MB", ",.0f"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="a text file (default: tiny Shakespeare, if found)")
    parser.add_argument("--batch", type=int, nargs="+", default=[12], help="windows per batch")
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=5000, help="batches read a repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: the first 100 KB, 100 batches")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/data.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llm-bench-data-") as folder:
        data, data_name = pick_data(args.data, Path(folder))
        text = data.read_text(encoding="utf-8")
        if args.quick:
            text, args.batches, data_name = text[:100_000], 100, f"first 100 KB of {data_name}"
            data = Path(folder) / "quick.txt"
            data.write_text(text, encoding="utf-8")
        print(f"data: {data_name}, {len(text.encode('utf-8')) / MB:.2f} MB, median of {args.repeats}")
        rows = tokenizer_rows(text, args.repeats)
        rows += token_rows(data, Path(folder), args.batch, args.block_size, args.batches, args.repeats)
    for row in rows:
        row.update(data=data_name, command=command_line())
    print_table(rows, COLUMNS)
    write_rows(args.out, rows)


if __name__ == "__main__":
    main()
