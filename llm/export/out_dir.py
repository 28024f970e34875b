"""The folder an export writes: checked before any work, filled in a staging folder beside it and renamed into
place, so that a half-written export never exists under its name."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from llm.export.errors import ExportError


def check_out_dir(out: Path, overwrite: bool, source: Path) -> None:
    """Refuses a file, a folder that holds files (unless overwrite), and a folder inside or around the model
    directory `source` that the export reads from."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"out={out} is a file; give out=<a new or empty folder>")
    target, model = out.resolve(), source.resolve()
    if target == model or model in target.parents or target in model.parents:
        raise ExportError(
            f"out={out} would put the export inside or around the model directory {source}; choose a folder outside it"
        )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(
            f"out={out} already holds files; choose a new or empty folder, or pass overwrite=true to replace it"
        )


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ordinary_permissions(folder: Path) -> None:
    """The folder and what it holds readable as the umask allows: mkdtemp's folder is private, and so are some
    files that libraries write through temporary files."""
    umask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def write_out_dir(out: Path, fill: Callable[[Path], None]) -> Path:
    """Calls fill(staging folder), then replaces `out` with it; on any error nothing of it is left."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    except OSError as e:
        raise ExportError(f"cannot write out={out} ({e.strerror or e}); choose a folder you can write to") from None
    try:
        fill(staging)
        ordinary_permissions(staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
