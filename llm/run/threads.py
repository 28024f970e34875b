"""How many CPU threads a run uses. Torch starts one per core in every process, so runs that share a
machine spin against each other; a run of a parallel multirun (hydra/launcher=parallel) therefore takes
cores / n_jobs threads, and `threads=N` sets it by hand (for runs started independently, give each its share).
"""

from __future__ import annotations

import os

import torch
from hydra.core.hydra_config import HydraConfig

from llm.errors import ConfigError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def concurrent_jobs() -> int:
    """n_jobs of the launcher running this run (1 outside a parallel multirun)."""
    if not HydraConfig.initialized():
        return 1
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    return n_jobs if isinstance(n_jobs, int) and n_jobs > 1 else 1


def use_threads(setting: int | None) -> int:
    """Applies `threads` (null: this run's share of the cores) to torch and to the OpenMP/MKL variables that
    data-loading workers inherit; returns the count in use."""
    if setting is not None and (isinstance(setting, bool) or not isinstance(setting, int) or setting < 1):
        raise ConfigError(
            f"threads must be a whole number >= 1 or null (this run's share of the cores), got {setting!r}"
        )
    jobs = concurrent_jobs()
    count = setting if setting is not None else (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)
    if count is not None:
        torch.set_num_threads(count)
        for name in THREAD_VARIABLES:
            os.environ[name] = str(count)
    return torch.get_num_threads()
