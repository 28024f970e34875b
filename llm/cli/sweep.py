"""Multiruns (`llm train -m ...`) named by what varies, so the same sweep run again finds the same folders.

Before Hydra runs, the sweep directory is fixed once (its default holds the time), each run's folder is named
by its swept overrides only (`model.position=rope,seed=1`), and `sweep.yaml` lists what varied and the runs.
At the end, a Hydra callback prints how many runs were started, resumed and skipped (llm/run/sweep.py).
"""

from __future__ import annotations

import atexit
import itertools
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from llm.configs import run_name
from llm.files import write_text_atomic
from llm.run.rundir import RunDir
from llm.run.sweep import count_statuses

MULTIRUN_FLAGS = ("-m", "--multirun")


def prepare_sweep(config_dir: Path, config_name: str, args: list[str]) -> list[str]:
    """For a multirun: `args` plus the fixed sweep dir and folder naming; writes sweep.yaml. Else `args`."""
    overrides = [a for a in args if not a.startswith("-")]
    searched = any(o.startswith("hparams_search=") for o in overrides)  # a sweeper that proposes the values
    if not any(a in MULTIRUN_FLAGS for a in args) and not searched:
        return args
    parsed = [o for o in OverridesParser.create().parse_overrides(overrides) if not o.is_hydra_override()]
    varied: dict[str, Any] = {
        str(o.key_or_group): list(o.sweep_string_iterator()) for o in parsed if o.is_sweep_override()
    }
    fixed = sorted({str(o.key_or_group) for o in parsed if not o.is_sweep_override()})
    sweep_dir, searched_params = resolved_sweep(config_dir, config_name, overrides)
    if searched:
        varied.update(searched_params)
        names = None  # chosen by the sweeper as it goes
    elif varied:
        names = [
            run_name(",".join(sorted(f"{k}={v}" for k, v in zip(varied, values, strict=True))))
            for values in itertools.product(*varied.values())
        ]
    else:
        return args
    hold_sweep_dir(sweep_dir)
    listing = {"varied": varied, "runs": names if names is not None else "chosen by the hparams_search sweeper"}
    write_text_atomic(sweep_dir / "sweep.yaml", yaml.safe_dump(listing, sort_keys=False))
    return [
        *args,
        f"hydra.sweep.dir={sweep_dir}",
        f"hydra.job.config.override_dirname.exclude_keys=[{','.join(fixed)}]",
    ]


def hold_sweep_dir(sweep_dir: Path) -> None:
    """Locks the sweep folder for this multirun's process (released when it exits): a second sweep started into
    the same folder is refused before it writes anything there."""
    folder = RunDir(sweep_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.hold()  # refuses a live holder, takes over a dead one's lock
    atexit.register(folder.release)


def resolved_sweep(config_dir: Path, config_name: str, overrides: list[str]) -> tuple[Path, dict[str, str]]:
    """hydra.sweep.dir as given, or its default resolved now, once (it holds the time); and a sweeper's params."""
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        single = [o for o in overrides if "," not in o.split("=", 1)[-1] or o.startswith("hydra.")]
        cfg = compose(config_name, single, return_hydra_config=True)
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    return Path(str(OmegaConf.select(cfg, "hydra.sweep.dir"))).absolute(), {str(k): str(v) for k, v in params.items()}


class SweepCounts(Callback):
    """Prints how many runs of the multirun were started, resumed (from last.ckpt) and skipped (finished)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        counts = count_statuses(Path(str(config.hydra.sweep.dir)))
        if any(counts.values()):
            print(", ".join(f"{n} {status}" for status, n in counts.items()) + f" ({config.hydra.sweep.dir})")
