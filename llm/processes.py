"""Which process of a distributed run this one is, read from the variables its launcher set.

For the steps that come before Lightning's Trainer exists (claiming the run directory, building the token
cache) and so cannot ask it. Lightning's own launcher (trainer.devices > 1 on one machine) runs the command the
user typed as rank 0 and starts the other ranks by running that command again with LOCAL_RANK (and NODE_RANK,
WORLD_SIZE) set; torchrun sets RANK and LOCAL_RANK; SLURM sets SLURM_PROCID and SLURM_LOCALID. A process
started alone has none of them, and is rank 0.
"""

from __future__ import annotations

import os

RANK_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK")
LOCAL_RANK_VARIABLES = ("LOCAL_RANK", "SLURM_LOCALID")


def variable(name: str) -> int:
    """The whole number in environment variable `name`; 0 when it is unset or not a number."""
    try:
        return int(os.environ.get(name, "0"))
    except ValueError:
        return 0


def is_rank_zero() -> bool:
    """Whether this is the run's first process (global rank 0): the one that owns its run directory."""
    return all(variable(name) == 0 for name in RANK_VARIABLES)


def local_rank() -> int:
    """This process's index among the run's processes on this machine (0 when started alone)."""
    return next((variable(name) for name in LOCAL_RANK_VARIABLES if name in os.environ), 0)
