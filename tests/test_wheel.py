"""The built wheel carries its configs: installed into a fresh virtualenv, `llm train` runs from anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import tiny_overrides

REPO = Path(__file__).resolve().parents[1]


def sh(*args: str | Path, cwd: Path, env: dict | None = None) -> str:
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, f"{args}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def test_wheel_installs_and_trains_from_another_directory(tmp_path: Path, corpus_file: Path) -> None:
    pip = [sys.executable, "-m", "pip"]
    sh(*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", REPO, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("llm-*.whl"))
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    sh(*pip, "--python", python, "install", "--no-deps", "-q", wheel, cwd=tmp_path)
    # the fresh environment borrows this one's dependencies (torch, lightning, ...) but not its llm checkout
    site = sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    (Path(site) / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = sh(python, "-c", "import llm.configs as c; print(c.config_dir())", cwd=elsewhere, env=env).strip()
    assert where.startswith(site), where  # configs come from inside the installed package
    overrides = [o for o in tiny_overrides(tmp_path, corpus_file) if not o.startswith("paths.run_dir")]
    sh(venv / "bin" / "llm", "train", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=elsewhere, env=env)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 30
