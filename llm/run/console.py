"""What a run shows on the console (its own progress, summary and errors) and what goes to train.log.

Python logging of a run, Lightning's included, goes to <run dir>/train.log only. Third-party tips and
warnings that say nothing about the user's run are dropped.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# messages from other packages that are about those packages, not about the run
NOISE = (
    r".*litlogger.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*does not have many workers.*",
    r".*GPU available but not used.*",
    r".*You're resuming from a checkpoint that ended before the epoch ended.*",
    r".*`training_step` returned `None`.*",
)
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


class DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def silence_third_party_warnings() -> None:
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)


@contextmanager
def logging_to(log_file: Path | None) -> Iterator[None]:
    """Sends Python logging (Lightning's too) to `log_file` instead of the console while the run lasts. None, for
    the other processes of a distributed run (the run has one train.log, rank 0's): their Lightning messages
    below warnings, which repeat rank 0's, are dropped."""
    silence_third_party_warnings()
    if log_file is None:
        with quiet_lightning():
            yield
        return
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    handler.addFilter(DropNoise())
    root = logging.getLogger()
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in LIGHTNING_LOGGERS
    }
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [
            h for h in logger.handlers if not isinstance(h, logging.StreamHandler) or isinstance(h, logging.FileHandler)
        ]
        logger.propagate = True
    old_level, consoles = root.level, [h for h in root.handlers if type(h) is logging.StreamHandler]
    for console in consoles:  # Hydra's own console handler: the run's log lines belong in train.log
        root.removeHandler(console)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for console in consoles:
            root.addHandler(console)
        root.setLevel(old_level)
        handler.close()
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning logs only warnings and errors while the block lasts."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
