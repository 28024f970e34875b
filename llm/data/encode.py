"""A corpus streamed through a tokenizer into one flat token file, its pieces encoded on parallel threads.

Where a tokenizer encodes outside the GIL (Tokenizer.threads_help: the Rust BPE, which also spreads each piece
over its own threads), pieces are encoded by a pool of threads while the main thread reads and decodes the next
ones. Results are written in corpus order, so the file is byte for byte the one a single thread writes, and at
most a few pieces per thread are in flight, so memory stays bounded whatever the corpus size. Char and byte
encoding (numpy and bytes.translate, under the GIL) run in the calling thread: threads only slow them down.
LLM_TOKENIZE_THREADS sets the number of threads for every tokenizer (1: none); by default a tokenizer that
threads help gets the CPUs this process may use, at most MAX_THREADS.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from llm.data.corpora import Corpus, CorpusError
from llm.tokenizer import Tokenizer

MAX_THREADS = 8
AHEAD_PER_THREAD = 2  # pieces submitted per thread before the oldest result is waited for
THREADS_ENV = "LLM_TOKENIZE_THREADS"

Item = TypeVar("Item")
Result = TypeVar("Result")


def tokenize_threads(tokenizer: Tokenizer) -> int:
    """Threads to encode with: $LLM_TOKENIZE_THREADS, else the CPUs this process may use (at most MAX_THREADS)
    where threads help this tokenizer, else 1."""
    setting = os.environ.get(THREADS_ENV)
    if setting is None:
        if not tokenizer.threads_help:
            return 1
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(MAX_THREADS, cpus))
    if not setting.strip().isdigit() or int(setting) < 1:
        raise CorpusError(f"{THREADS_ENV}={setting!r} must be a whole number >= 1 (1: no threads); unset it for auto")
    return int(setting)


def ordered_map(fn: Callable[[Item], Result], items: Iterable[Item], threads: int) -> Iterator[Result]:
    """fn over items on `threads` threads, results in the order of `items`; an error surfaces at its item."""
    if threads <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="tokenize")
    pending: deque[Future[Result]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= threads * AHEAD_PER_THREAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def encode_piece(tokenizer: Tokenizer, dtype: np.dtype, text: str) -> tuple[np.ndarray, int]:
    """The ids of one piece in the token file's dtype, and the piece's size in UTF-8 bytes."""
    ids = tokenizer.encode_array(text).astype(dtype, copy=False)
    size = len(text) if text.isascii() else len(text.encode("utf-8", errors="surrogatepass"))
    return ids, size


def encode_all(
    corpus: Corpus, tokenizer: Tokenizer, out: Path, dtype: np.dtype, threads: int | None = None
) -> tuple[int, int]:
    """Streams the corpus through the tokenizer into one flat token file; returns (tokens, UTF-8 bytes).

    threads: None for tokenize_threads(tokenizer); any number gives the same file."""
    count = size = 0
    encode = partial(encode_piece, tokenizer, dtype)
    with out.open("wb") as f:
        for ids, piece_bytes in ordered_map(encode, corpus.documents(), threads or tokenize_threads(tokenizer)):
            ids.tofile(f)
            count += len(ids)
            size += piece_bytes
    return count, size
