"""Token files built from a corpus and a tokenizer, cached on disk by a fingerprint of both.

cache_dir/tokens/<fingerprint>/ holds train.bin and val.bin (flat np.memmap token ids), tokenizer.json and
meta.json. The folder is built under a temporary name and renamed into place, so a half-built cache is never
read: a folder whose meta.json is missing or disagrees with its files is rebuilt. The split is nanoGPT's:
the first 1 - val_fraction of the tokens train, the rest validate. In a distributed run one process per
machine builds it (prepare_token_splits) while the others wait for it (wait_for_token_splits).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm.data.corpora import Corpus, CorpusError
from llm.data.encode import encode_all
from llm.tokenizer import Tokenizer, load_tokenizer, save_tokenizer, train_tokenizer

FORMAT_VERSION = 3
READ_BLOCK = 1 << 22  # ids read from a token file at a time
COPY_BLOCK = 1 << 24  # bytes copied at a time
WAIT_SECONDS = 4 * 3600.0  # how long a run's other processes wait for the one building the cache


@dataclass(frozen=True)
class TokenSplits:
    """Training and validation token ids, the tokenizer that made them, and the bytes they stand for."""

    directory: Path
    tokenizer: Tokenizer
    train: np.memmap
    val: np.memmap
    train_bytes: int
    val_bytes: int
    fingerprint: str

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per validation token: turns nats per token into bits per byte."""
        return self.val_bytes / len(self.val)


def corpus_hash(corpus: Corpus) -> tuple[str, int]:
    """A sha256 of the corpus's documents (streamed) and their total UTF-8 size in bytes."""
    digest, size = hashlib.sha256(), 0
    for document in corpus.documents():
        encoded = document.encode("utf-8", errors="surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
        size += len(encoded)
    return digest.hexdigest(), size


def canonical_json(value: Any) -> str:
    """`value` as JSON with sorted keys and no spaces, so equal configs give equal strings."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise CorpusError(
            f"the tokenizer config {value!r} is not plain JSON data ({e}); use numbers and strings"
        ) from e


def fingerprint(corpus_digest: str, tokenizer: Mapping[str, Any], val_fraction: float) -> str:
    """The cache key of a token build: format version, corpus content, tokenizer config and split."""
    key = {"format": FORMAT_VERSION, "corpus": corpus_digest, "tokenizer": dict(tokenizer), "val": val_fraction}
    return hashlib.sha256(canonical_json(key).encode()).hexdigest()[:32]


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every id (ids run up to vocab_size - 1)."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def token_blocks(path: Path, dtype: np.dtype, block: int = READ_BLOCK) -> Iterator[np.ndarray]:
    """A token file's ids, `block` at a time, read (not mapped: a mapping's pages would count in the RSS)."""
    with path.open("rb") as f:
        while (ids := np.fromfile(f, dtype=dtype, count=block)).size:
            yield ids


def token_file_bytes(tokenizer: Tokenizer, blocks: Iterable[np.ndarray]) -> int:
    """UTF-8 bytes of the text that the blocks of ids stand for (Tokenizer.byte_lengths), a block at a time."""
    lengths = tokenizer.byte_lengths()
    if lengths.min() == lengths.max():  # every id the same size (an ASCII char vocabulary): count, do not look up
        return int(lengths[0]) * sum(len(ids) for ids in blocks)
    return sum(int(np.take(lengths, ids).sum()) for ids in blocks)


META_KEYS = ("fingerprint", "dtype", "train_tokens", "val_tokens", "train_bytes", "val_bytes", "sha256")
TOKEN_FILES = ("train.bin", "val.bin", "tokenizer.json")


def files_sha256(directory: Path) -> dict[str, str]:
    """sha256 of each token file and the tokenizer, so a cache whose bytes changed is rebuilt, not read."""
    sums = {}
    for name in TOKEN_FILES:
        digest = hashlib.sha256()
        with (directory / name).open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        sums[name] = digest.hexdigest()
    return sums


def read_meta(directory: Path, key: str) -> dict[str, Any] | None:
    """meta.json of a finished build of `key`, or None when the folder is missing, partial or inconsistent."""
    try:
        meta = json.loads((directory / "meta.json").read_text())
        itemsize = np.dtype(meta["dtype"]).itemsize
        sizes = {name: (directory / f"{name}.bin").stat().st_size for name in ("train", "val")}
        complete = (
            all(k in meta for k in META_KEYS)
            and meta["fingerprint"] == key
            and (directory / "tokenizer.json").is_file()
            and all(sizes[name] == meta[f"{name}_tokens"] * itemsize > 0 for name in sizes)
            and meta["sha256"] == files_sha256(directory)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if complete else None


def load_splits(directory: Path, meta: dict[str, Any]) -> TokenSplits:
    dtype = np.dtype(meta["dtype"])
    return TokenSplits(
        directory=directory,
        tokenizer=load_tokenizer(directory / "tokenizer.json"),
        train=np.memmap(directory / "train.bin", dtype=dtype, mode="r"),
        val=np.memmap(directory / "val.bin", dtype=dtype, mode="r"),
        train_bytes=meta["train_bytes"],
        val_bytes=meta["val_bytes"],
        fingerprint=meta["fingerprint"],
    )


def split_file(all_tokens: Path, directory: Path, n_val_bytes: int) -> None:
    """Moves the last n_val_bytes of all_tokens into val.bin; the rest becomes train.bin (copied in blocks)."""
    n_train_bytes = all_tokens.stat().st_size - n_val_bytes
    with all_tokens.open("r+b") as f:
        f.seek(n_train_bytes)
        with (directory / "val.bin").open("wb") as val:
            shutil.copyfileobj(f, val, COPY_BLOCK)
        f.truncate(n_train_bytes)
    os.replace(all_tokens, directory / "train.bin")


def build(
    corpus: Corpus,
    tokenizer_config: Mapping[str, Any],
    val_fraction: float,
    directory: Path,
    key: str,
    threads: int | None = None,
) -> None:
    """Trains the tokenizer, encodes the corpus and writes the splits and meta.json (last) into `directory`.

    Every step streams: the corpus in pieces, the token files in blocks; nothing holds the corpus or a split whole.
    """
    options = {k: v for k, v in tokenizer_config.items() if k != "name"}
    tokenizer = train_tokenizer(str(tokenizer_config["name"]), corpus.documents(), **options)
    dtype = token_dtype(tokenizer.vocab_size)
    total, total_bytes = encode_all(corpus, tokenizer, directory / "all.bin", dtype, threads)
    if total < 2:
        raise CorpusError(
            f"{corpus.describe()} encodes to {total} token(s), too few to split into training and validation; "
            "use a corpus with more text"
        )
    n_val = min(total - 1, max(1, round(total * val_fraction)))  # both splits keep at least one token
    split_file(directory / "all.bin", directory, n_val * dtype.itemsize)
    save_tokenizer(tokenizer, directory / "tokenizer.json")
    val_bytes = token_file_bytes(tokenizer, token_blocks(directory / "val.bin", dtype))
    meta = {
        "fingerprint": key,
        "dtype": dtype.name,
        "train_tokens": total - n_val,
        "val_tokens": n_val,
        "train_bytes": total_bytes - val_bytes,
        "val_bytes": val_bytes,
        "corpus": corpus.describe(),
        "tokenizer": dict(tokenizer_config),
        "val_fraction": val_fraction,
        "sha256": files_sha256(directory),
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def cache_location(
    corpus: Corpus, tokenizer: Mapping[str, Any], val_fraction: float, cache_dir: str | Path
) -> tuple[str, Path]:
    """The cache key of this corpus and tokenizer and the folder its build lives in (reads the corpus once)."""
    if not 0.0 < val_fraction < 1.0:
        raise CorpusError(f"data.val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if "name" not in tokenizer:
        raise CorpusError(f"the tokenizer config {dict(tokenizer)} has no 'name'; use tokenizer=char, bpe or byte")
    digest, size = corpus_hash(corpus)
    if size == 0:
        raise CorpusError(
            f"{corpus.describe()} holds no text; point data.path (or data.corpus) at files that contain text"
        )
    key = fingerprint(digest, tokenizer, val_fraction)
    return key, Path(cache_dir) / "tokens" / key


def prepare_token_splits(
    corpus: Corpus,
    tokenizer: Mapping[str, Any],
    val_fraction: float,
    cache_dir: str | Path,
    threads: int | None = None,
) -> TokenSplits:
    """Token splits for this corpus and tokenizer, from the cache when both are unchanged, else built.

    The corpus is read once to fingerprint it; a build reads it twice more (to train, then to encode, on
    `threads` threads: None for llm.data.encode.tokenize_threads(tokenizer)).
    """
    key, directory = cache_location(corpus, tokenizer, val_fraction, cache_dir)
    meta = read_meta(directory, key)
    if meta is not None:
        return load_splits(directory, meta)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=directory.parent))
    except OSError as e:
        raise CorpusError(
            f"cannot write the token cache in {directory.parent} ({e.strerror or e}); set paths.cache_dir=<a "
            "writable folder> (or the LLM_CACHE_DIR environment variable)"
        ) from e
    staging.chmod(0o755)  # mkdtemp makes it private; the finished cache should read like any other folder
    try:
        build(corpus, tokenizer, val_fraction, staging, key, threads)
        if directory.exists() and read_meta(directory, key) is None:  # left by an interrupted build
            shutil.rmtree(directory)
        try:
            os.replace(staging, directory)
        except OSError:  # another process finished the same build first: use its copy
            if read_meta(directory, key) is None:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    meta = read_meta(directory, key)
    if meta is None:
        raise CorpusError(f"the token cache {directory} was changed while it was being built; run again")
    return load_splits(directory, meta)


def wait_for_token_splits(
    corpus: Corpus,
    tokenizer: Mapping[str, Any],
    val_fraction: float,
    cache_dir: str | Path,
    *,
    timeout: float = WAIT_SECONDS,
    poll: float = 1.0,
) -> TokenSplits:
    """The token splits another process of the same run builds (the first one on this machine): waits for the
    finished cache to appear and loads it, building nothing. A folder appears only once its build is complete."""
    key, directory = cache_location(corpus, tokenizer, val_fraction, cache_dir)
    deadline = time.monotonic() + timeout
    while True:
        meta = read_meta(directory, key) if (directory / "meta.json").is_file() else None
        if meta is not None:
            return load_splits(directory, meta)
        if time.monotonic() > deadline:
            raise CorpusError(
                f"the token cache {directory} did not appear within {timeout:.0f} s; the run's first process on "
                "this machine (local rank 0) builds it: see its output for why it did not, or build the cache "
                "first with a one-process run of the same data and tokenizer settings"
            )
        time.sleep(poll)
