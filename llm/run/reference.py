"""The reference model's log-probabilities of every preference pair, computed once and cached on disk.

The cache key covers the encoded preference data (file bytes, tokenizer, truncation settings, split), the
reference's weights (sha256 of its model.safetensors) and this format's version, so any change rebuilds
and a later run or seed with the same three reuses the file without even loading the reference model.
Files are safetensors written under a temporary name and renamed: nothing half-written is ever read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from llm.data.preference import PreferenceDataModule
from llm.export import load_model_dir
from llm.lit.preference import pair_logps
from llm.model import GPT

log = logging.getLogger(__name__)
CACHE_VERSION = 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(data: PreferenceDataModule, model_dir: Path, cache_dir: Path) -> Path:
    key = f"{CACHE_VERSION}:{data.fingerprint}:{file_sha256(model_dir / 'model.safetensors')}"
    return cache_dir / "reference" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.safetensors"


@torch.no_grad()
def compute(reference: GPT, data: PreferenceDataModule) -> dict[str, Tensor]:
    """(N, 2) log-probs (chosen, rejected) of each split's pairs under the frozen reference, by pair index."""
    reference.eval().requires_grad_(False)
    out = {}
    for split, pairs in (("train", data.train_pairs), ("val", data.val_pairs)):
        rows = torch.empty(len(pairs), 2)
        for batch in data.ordered_dataloader(pairs):
            chosen, rejected, _, _ = pair_logps(reference, batch)
            rows[batch["index"]] = torch.stack([chosen, rejected], dim=1)
        out[split] = rows
    return out


def read_cache(path: Path, data: PreferenceDataModule) -> dict[str, Tensor] | None:
    """The cached log-probs, or None when the file is missing, damaged or of other splits."""
    try:
        cached = load_file(path)
    except (OSError, SafetensorError):
        return None
    sizes = {"train": len(data.train_pairs), "val": len(data.val_pairs)}
    if set(cached) != set(sizes) or any(tuple(cached[s].shape) != (n, 2) for s, n in sizes.items()):
        return None
    return cached


def reference_logps(data: PreferenceDataModule, model_dir: str | Path, cache_dir: str | Path) -> dict[str, Tensor]:
    """From the cache when it holds this data and reference; else computed with a frozen copy and stored."""
    model_dir = Path(model_dir)
    path = cache_path(data, model_dir, Path(cache_dir))
    cached = read_cache(path, data)
    if cached is not None:
        log.info("reference log-probs: from the cache %s (the reference model is not loaded)", path)
        return cached
    reference, _ = load_model_dir(model_dir)
    computed = compute(reference, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in computed.items()}, str(temp))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    log.info("reference log-probs: computed with the frozen reference and cached in %s", path)
    return computed
