"""Smoke run of ``bench/report_cost.py`` (no timing assertions): it runs with ``--quick``,
finds the old and new classifier paths giving the same numbers, and projects from the plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_plan_counts_are_the_complete_shipped_study():
    from bench.report_cost import plan_counts, plan_file

    counts = plan_counts()
    assert set(counts) == {"mnist10k", "stacked-mnist", "ring8", "grid25"}
    if not json.loads(plan_file().read_text())["dropped"]:  # checkpoints/README.md's plan, whole
        assert counts == {"mnist10k": 57, "stacked-mnist": 16, "ring8": 30, "grid25": 30}


def test_report_cost_quick_runs_and_old_equals_new(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "bench.report_cost", "--quick", "--threads",
                           "1", "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, f"no JSON line on stdout; stderr:\n{proc.stderr[-2000:]}"
    rec = json.loads(lines[-1])
    assert proc.returncode == 0, rec["same_numbers"]
    assert rec["bench"] == "report_cost" and json.loads(out.read_text()) == rec
    assert rec["same_numbers"]["classifier"]["digits_identical"]
    assert all(rec["same_numbers"]["metrics_equal"].values())
    proj = rec["results"]["projection"]
    assert proj["two_cores_s"] == proj["one_core_s"] / 2 > 0
    assert set(rec["results"]["ratio_old_new"]["wall"]) == {
        "classifier", "mnist10k", "stacked-mnist", "ring8", "grid25"}
