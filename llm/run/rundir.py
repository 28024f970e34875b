"""A run directory: claimed by one process at a time, never silently reused, written only atomically.

A directory "holds a run" once any of RUN_FILES exists in it. Starting a fresh run there is refused unless
the user resumes it (`ckpt_path=last`) or passes `overwrite=true`, which moves the old run aside into a
sibling folder (never deletes it). A `.lock` file names the process using the directory; a lock left by a
dead process is taken over. The other processes of a distributed run (DDP) join the directory that its rank 0
claimed, without a lock of their own.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llm.errors import RunDirError
from llm.files import write_text_atomic

RUN_FILES = ("config.yaml", "checkpoints", "summary.json", "metrics.csv", "model")
LOCK = ".lock"
FRESH_LOCK_SECONDS = 10.0  # a lock file this young with no pid in it is still being written


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RunDir:
    """The folder a run writes into (cfg.paths.run_dir)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in RUN_FILES)

    @contextmanager
    def claimed(self) -> Iterator[RunDir]:
        """Holds the directory's lock for the duration; a live holder is an error naming its pid."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._take_lock()
        except OSError as e:
            raise RunDirError(
                f"cannot write to run directory {self.path} ({e.strerror or e}); choose a writable "
                "hydra.run.dir=<folder> (or paths.run_dir)"
            ) from e
        try:
            yield self
        finally:
            self._release_lock()

    @contextmanager
    def joined(self) -> Iterator[RunDir]:
        """For a distributed run's other processes: the directory that the run's rank 0 claimed (and holds the
        lock of) is used as it is; no lock is taken and nothing is moved aside."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(
                f"cannot write to run directory {self.path} ({e.strerror or e}); every process of a distributed "
                "run needs it: give hydra.run.dir=<a folder all of them can write>"
            ) from e
        yield self

    def hold(self) -> None:
        """Takes the lock until release() (for a holder that outlives one `with` block: a sweep)."""
        try:
            self._take_lock()
        except OSError as e:
            raise RunDirError(f"cannot write to {self.path} ({e.strerror or e}); choose a writable folder") from e

    def release(self) -> None:
        self._release_lock()

    def _take_lock(self) -> None:
        lock = self.path / LOCK
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(3):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._lock_is_live(lock):
                    raise RunDirError(self._in_use_message(lock)) from None
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as file:
                json.dump(holder, file)
            return
        raise RunDirError(self._in_use_message(lock))

    def _lock_is_live(self, lock: Path) -> bool:
        try:
            holder = json.loads(lock.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except (OSError, ValueError, KeyError, TypeError):
            try:  # half-written by a process that is creating it right now, or garbage left by a crash
                return time.time() - lock.stat().st_mtime < FRESH_LOCK_SECONDS
            except OSError:
                return False
        if host != socket.gethostname():
            return True  # cannot tell whether a process on another machine lives
        return pid != os.getpid() and pid_alive(pid)

    def _in_use_message(self, lock: Path) -> str:
        try:
            holder = json.loads(lock.read_text())
            who = f"process {holder['pid']} on {holder['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "another process"
        return (
            f"run directory {self.path} is in use by {who} (lock file {lock}); wait for that run to end, "
            "or choose another hydra.run.dir"
        )

    def _release_lock(self) -> None:
        lock = self.path / LOCK
        try:
            if json.loads(lock.read_text()).get("pid") == os.getpid():
                lock.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def start_fresh(self, overwrite: bool) -> Path | None:
        """Refuses a directory that holds a run, or with `overwrite` moves that run aside; returns where to."""
        if not self.holds_run():
            return None
        if not overwrite:
            raise RunDirError(
                f"run directory {self.path} already holds a run; resume it with ckpt_path=last, pass "
                "overwrite=true to move the old run aside (nothing is deleted), or choose another hydra.run.dir"
            )
        aside = self.path.with_name(f"{self.path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        while aside.exists():
            aside = aside.with_name(aside.name + "x")
        aside.mkdir()
        for entry in self.path.iterdir():
            if entry.name != LOCK:
                os.replace(entry, aside / entry.name)
        return aside
