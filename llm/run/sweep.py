"""Sweeps that resume: a run of a multirun whose folder already holds a run is skipped when it finished,
resumed from its last.ckpt when it was interrupted, and started again (the old files moved aside) when it
left no checkpoint. Its settings must equal the saved ones: a changed config is an error naming the keys,
never a silent mix. Each run leaves `.sweep_status` (started, resumed or skipped) for the count at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llm.errors import ConfigError
from llm.run.resume import ABSENT, flatten, follows_the_run, load_saved_config, show
from llm.run.rundir import RunDir

STATUS_FILE = ".sweep_status"


def config_differences(saved_path: Path, given: DictConfig) -> list[str]:
    """`key (saved a, given b)` for each setting of `given` that differs from the saved run (locations aside)."""
    saved = flatten(OmegaConf.to_container(load_saved_config(saved_path), resolve=False))
    wanted = flatten(OmegaConf.to_container(given, resolve=True))
    return [
        f"{key} (saved {show(saved.get(key, ABSENT))}, given {show(wanted.get(key, ABSENT))})"
        for key in sorted(saved.keys() | wanted.keys())
        if saved.get(key, ABSENT) != wanted.get(key, ABSENT) and not follows_the_run(key)
    ]


def continue_run(run_dir: RunDir, cfg: DictConfig) -> tuple[str, dict[str, Any] | None]:
    """What to do with a sweep run whose folder holds a run: ("skipped", its summary), ("resumed", None) with
    cfg.ckpt_path set to last, or ("started", None) after moving the unusable old files aside."""
    saved = run_dir.path / "config.yaml"
    if saved.is_file():
        differences = config_differences(saved, cfg)
        if differences:
            raise ConfigError(
                f"the sweep run in {run_dir.path} was made with other settings: {'; '.join(differences)}. Run the "
                "sweep into another hydra.sweep.dir, or move that run away"
            )
    summary = run_dir.path / "summary.json"
    if summary.is_file():
        return "skipped", json.loads(summary.read_text())
    if (run_dir.checkpoints / "last.ckpt").is_file():
        OmegaConf.update(cfg, "ckpt_path", "last", force_add=True)
        return "resumed", None
    run_dir.start_fresh(overwrite=True)
    return "started", None


def write_status(run_dir: Path, status: str) -> None:
    (run_dir / STATUS_FILE).write_text(status + "\n")


def count_statuses(sweep_dir: Path) -> dict[str, int]:
    counts = {"started": 0, "resumed": 0, "skipped": 0}
    for path in sweep_dir.glob(f"*/{STATUS_FILE}"):
        status = path.read_text().strip()
        counts[status] = counts.get(status, 0) + 1
    return counts
