"""`make dpo-demo` in its quick form: the pipeline runs end to end and writes results.json in the promised shape."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "experiments" / "dpo" / "demo.py"


def test_the_quick_demo_writes_results_of_the_promised_shape(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("dpo_demo", DEMO)
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.main(tmp_path, "quick")
    results = json.loads((tmp_path / "results.json").read_text())
    assert isinstance(results["task"], str)
    assert [(r["objective"], r["seed"]) for r in results["runs"]] == [("dpo", 0), ("ipo", 0)]
    for r in results["runs"]:
        assert set(r["before"]) == {"correct_rate", "pref_accuracy"}
        assert set(r["after"]) == {"correct_rate", "pref_accuracy", "kl"}
        assert all(0.0 <= r[when][k] <= 1.0 for when in ("before", "after") for k in ("correct_rate", "pref_accuracy"))
