"""What every data module's loaders share."""

from __future__ import annotations

from typing import Any


def pin_memory(trainer: Any) -> bool:
    """Page-locked batches when the trainer's device is a CUDA GPU: Lightning then copies each batch to the GPU without
    blocking, overlapping the copy with compute. False without a trainer or on other devices."""
    strategy = getattr(trainer, "strategy", None)
    device = getattr(strategy, "root_device", None)
    return getattr(device, "type", None) == "cuda"
