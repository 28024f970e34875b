"""Run directories: a live holder keeps others out, a dead one's lock is taken over, a finished run is
never silently reused, and overwrite=true moves the old run aside without deleting anything."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm.errors import RunDirError
from llm.files import write_text_atomic
from llm.run.rundir import LOCK, RunDir


def write_lock(directory: Path, pid: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 0}))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_holder_is_named_and_keeps_others_out(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_lock(tmp_path / "run", sleeper.pid)
        with pytest.raises(RunDirError, match=rf"in use by process {sleeper.pid} on "):
            with RunDir(tmp_path / "run").claimed():
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    assert json.loads((tmp_path / "run" / LOCK).read_text())["pid"] == sleeper.pid  # the holder's lock stays


def test_the_lock_of_a_dead_process_is_taken_over_and_released(tmp_path: Path) -> None:
    write_lock(tmp_path / "run", dead_pid())
    with RunDir(tmp_path / "run").claimed():
        assert json.loads((tmp_path / "run" / LOCK).read_text())["pid"] == os.getpid()
    assert not (tmp_path / "run" / LOCK).exists()


def test_an_unreadable_lock_counts_as_live_only_while_young(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text("")  # being written by a process that just created it
    with pytest.raises(RunDirError, match="in use by another process"):
        with RunDir(run).claimed():
            pass
    old = time.time() - 60
    os.utime(run / LOCK, (old, old))  # left half-written by a crash a minute ago
    with RunDir(run).claimed():
        pass


def test_a_lock_naming_this_very_process_is_stale(tmp_path: Path) -> None:
    # in a container a restarted run can get the pid its killed predecessor had: that lock is not live
    write_lock(tmp_path / "run", os.getpid())
    with RunDir(tmp_path / "run").claimed():
        pass


def test_a_directory_holding_a_run_is_refused_without_overwrite(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.path / "summary.json").write_text("{}")
    with pytest.raises(RunDirError, match="already holds a run; resume it with ckpt_path=last, pass overwrite=true"):
        run.start_fresh(overwrite=False)
    assert (run.path / "summary.json").read_text() == "{}"


def test_overwrite_moves_the_old_run_aside_and_deletes_nothing(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    (run.path / "checkpoints").mkdir(parents=True)
    (run.path / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run.path / "config.yaml").write_text("seed: 1\n")
    with run.claimed():
        aside = run.start_fresh(overwrite=True)
        assert aside is not None and aside.parent == tmp_path and aside.name.startswith("run.replaced-")
        assert (aside / "checkpoints" / "last.ckpt").read_bytes() == b"weights"
        assert (aside / "config.yaml").read_text() == "seed: 1\n"
        assert sorted(p.name for p in run.path.iterdir()) == [LOCK]
        assert not (aside / LOCK).exists()


def test_an_empty_directory_is_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    assert RunDir(tmp_path / "run").start_fresh(overwrite=False) is None


def test_an_unwritable_run_directory_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(
        RunDirError, match=r"cannot write to run directory .*file/run .*choose a writable hydra.run.dir"
    ):
        with RunDir(tmp_path / "file" / "run").claimed():
            pass


def test_atomic_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "a.txt", "one")
    write_text_atomic(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
