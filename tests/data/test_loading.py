"""Batches are page-locked exactly when the trainer trains on a CUDA GPU (tests/test_gpu.py checks the GPU side)."""

from __future__ import annotations

import lightning as L

from llm.data.loading import pin_memory


def test_no_pinning_without_a_trainer_or_on_the_cpu() -> None:
    assert pin_memory(None) is False
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    assert pin_memory(trainer) is False
