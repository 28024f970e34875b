"""Token files built from a corpus and a tokenizer, cached on disk by a fingerprint of both.

cache_dir/tokens/<fingerprint>/ holds train.bin and val.bin (flat np.memmap token ids), tokenizer.json and
meta.json. The folder is built under a temporary name and renamed into place, so a half-built cache is never
read: a folder without meta.json does not count.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm.data.corpora import Corpus, CorpusError
from llm.tokenizer import Tokenizer, load_tokenizer, save_tokenizer, train_tokenizer

FORMAT_VERSION = 1
DECODE_CHUNK = 1 << 20


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


def corpus_hash(corpus: Corpus) -> str:
    digest = hashlib.sha256()
    for document in corpus.documents():
        encoded = document.encode("utf-8", errors="surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def fingerprint(corpus: Corpus, tokenizer: Mapping[str, Any], val_fraction: float) -> str:
    key = {"format": FORMAT_VERSION, "corpus": corpus_hash(corpus), "tokenizer": dict(tokenizer), "val": val_fraction}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def decoded_bytes(tokenizer: Tokenizer, tokens: np.ndarray) -> int:
    """UTF-8 bytes of the text that `tokens` decode to, decoded in chunks to bound memory."""
    return sum(
        len(tokenizer.decode(tokens[i : i + DECODE_CHUNK].tolist()).encode("utf-8"))
        for i in range(0, len(tokens), DECODE_CHUNK)
    )


def load_splits(directory: Path) -> TokenSplits:
    meta = json.loads((directory / "meta.json").read_text())
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


def encode_all(corpus: Corpus, tokenizer: Tokenizer, out: Path, dtype: np.dtype) -> tuple[int, int]:
    """Streams the corpus through the tokenizer into one flat token file; returns (tokens, UTF-8 bytes)."""
    count = size = 0
    with out.open("wb") as f:
        for document in corpus.documents():
            ids = np.asarray(tokenizer.encode(document), dtype=dtype)
            ids.tofile(f)
            count += len(ids)
            size += len(document.encode("utf-8"))
    return count, size


def split_file(all_tokens: Path, directory: Path, dtype: np.dtype, n_val: int) -> None:
    """Moves the last n_val tokens of all_tokens into val.bin; the rest becomes train.bin."""
    tokens = np.memmap(all_tokens, dtype=dtype, mode="r")
    n_train = len(tokens) - n_val
    tokens[n_train:].tofile(directory / "val.bin")
    del tokens
    with all_tokens.open("r+b") as f:
        f.truncate(n_train * dtype.itemsize)
    os.replace(all_tokens, directory / "train.bin")


def build(corpus: Corpus, tokenizer_config: Mapping[str, Any], val_fraction: float, directory: Path, key: str) -> None:
    options = {k: v for k, v in tokenizer_config.items() if k != "name"}
    tokenizer = train_tokenizer(str(tokenizer_config["name"]), non_empty(corpus), **options)
    dtype = token_dtype(tokenizer.vocab_size)
    total, total_bytes = encode_all(corpus, tokenizer, directory / "all.bin", dtype)
    if total < 2:
        raise CorpusError(f"{corpus.describe()} has {total} tokens; it needs text to train on")
    n_val = max(1, int(round(total * val_fraction)))
    split_file(directory / "all.bin", directory, dtype, n_val)
    save_tokenizer(tokenizer, directory / "tokenizer.json")
    train = np.memmap(directory / "train.bin", dtype=dtype, mode="r")
    val = np.memmap(directory / "val.bin", dtype=dtype, mode="r")
    val_bytes = decoded_bytes(tokenizer, val)
    meta = {
        "fingerprint": key,
        "dtype": dtype.name,
        "train_tokens": len(train),
        "val_tokens": len(val),
        "train_bytes": total_bytes - val_bytes,
        "val_bytes": val_bytes,
        "corpus": corpus.describe(),
        "tokenizer": dict(tokenizer_config),
        "val_fraction": val_fraction,
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def non_empty(corpus: Corpus) -> Iterator[str]:
    """The corpus's documents, raising a clear error when there is no text at all."""
    empty = True
    for document in corpus.documents():
        if document:
            empty = False
            yield document
    if empty:
        raise CorpusError(f"{corpus.describe()} holds no text; point data.path at files that contain text")


def prepare_token_splits(
    corpus: Corpus, tokenizer: Mapping[str, Any], val_fraction: float, cache_dir: str | Path
) -> TokenSplits:
    """Token splits for this corpus and tokenizer, from the cache when both are unchanged, else built."""
    if not 0.0 < val_fraction < 1.0:
        raise CorpusError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
    if "name" not in tokenizer:
        raise CorpusError(f"the tokenizer config {dict(tokenizer)} has no 'name'; use tokenizer=char, bpe or byte")
    key = fingerprint(corpus, tokenizer, val_fraction)
    directory = Path(cache_dir) / "tokens" / key
    if (directory / "meta.json").is_file():
        return load_splits(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=directory.parent))
    try:
        build(corpus, tokenizer, val_fraction, staging, key)
        if directory.exists():  # an incomplete folder from an interrupted build
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_splits(directory)
