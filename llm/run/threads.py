"""How many CPU threads a run uses. Torch starts one per core in every process, so processes that share a
machine spin against each other. `threads=null` gives each process its share of the cores: a run of a parallel
multirun (hydra/launcher=parallel) takes cores / n_jobs, and each of the trainer.devices processes of a
distributed run (trainer=ddp) cores / devices. `threads=N` sets it by hand (for runs started independently,
give each its share).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig

from llm.errors import ConfigError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def concurrent_jobs() -> int:
    """n_jobs of the launcher running this run (1 outside a parallel multirun)."""
    if not HydraConfig.initialized():
        return 1
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    return n_jobs if isinstance(n_jobs, int) and n_jobs > 1 else 1


def counted_devices(devices: Any, accelerator: Any) -> int:
    """The number of devices Lightning's `devices` setting asks for on one machine: a count, a list or a
    "0,1" string of indices, or all of them (-1, "auto": the GPUs of a GPU run, else one CPU process)."""
    if isinstance(devices, ListConfig | list | tuple):
        return max(1, len(devices))
    if isinstance(devices, str):
        text = devices.strip()
        if "," in text:
            return max(1, len([index for index in text.split(",") if index.strip()]))
        if text.isdigit() and int(text) >= 1:
            return int(text)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        return devices
    gpus = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 0
    return max(1, gpus)


def local_processes(trainer: DictConfig | None) -> int:
    """How many training processes the trainer config starts on this machine (one a device)."""
    if trainer is None:
        return 1
    return counted_devices(trainer.get("devices", 1), trainer.get("accelerator", "auto"))


def use_threads(setting: int | None, processes: int = 1) -> int:
    """Applies `threads` (null: this process's share of the cores, shared with the other `processes` of its
    run and the other jobs of a parallel multirun) to torch and to the OpenMP/MKL variables that data-loading
    workers inherit; returns the count in use."""
    if setting is not None and (isinstance(setting, bool) or not isinstance(setting, int) or setting < 1):
        raise ConfigError(
            f"threads must be a whole number >= 1 or null (this run's share of the cores), got {setting!r}"
        )
    sharers = concurrent_jobs() * max(1, processes)
    count = setting if setting is not None else (max(1, (os.cpu_count() or 1) // sharers) if sharers > 1 else None)
    if count is not None:
        torch.set_num_threads(count)
        for name in THREAD_VARIABLES:
            os.environ[name] = str(count)
    return torch.get_num_threads()
