"""The study layer: claims from paired tables, the shipped groups, and the report end to end."""

from __future__ import annotations

import math
import re

import pytest

from asgan_base.manifest import read_manifest, verify
from probes.study import arms as study


@pytest.fixture(scope="module")
def plan():
    return study.shipped_plan()


def test_each_group_is_read_from_its_plan_with_paired_seeds(plan):
    """Every group of the shipped plan: the final snapshots of the planned runs shipped so
    far, at the plan's iterations, in the plan's ship folder; the report's figure arms
    (``[report]`` baseline and main) at seed 0."""
    entries = read_manifest()
    spec = plan.data["report"]
    for group in plan.groups:
        runs = study.shipped_runs(group, plan)
        progress = study.plan_progress(plan, group, entries)
        assert {a: sorted(r) for a, r in runs.items()} == {
            a: p["shipped"] for a, p in sorted(progress.items()) if p["shipped"]}
        assert 0 in runs[spec["baseline"]] and 0 in runs[spec["main"]]
        steps = int(plan.groups[group]["options"]["steps"])
        for arm, by_seed in runs.items():
            for s, path in by_seed.items():
                assert path.as_posix().endswith(f"{plan.ship}/{group}/{arm}/seed{s}/"
                                                f"ckpt-{steps:06d}.safetensors")
        # this study's entries (a later study may name a group the same: v3's mnist10k)
        rows = [e for e in entries.values() if e.get("group") == group
                and e.get("study") == plan.name]
        assert rows and all(e["command"].startswith("asgan-train ") and e["sha256"]
                            and e["study"] == plan.name for e in rows)


def test_nothing_names_the_study_in_code():
    """The study's name, arms and paths live in its plan file: no module of the toolkit
    names it (the shipped study's plan is found through studies/SHIPPED)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    plan = study.shipped_plan()
    arms = {a for g in plan.groups for a in plan.arms(g)} - {"baseline"}
    hits = []
    for folder in ("probes", "trainers", "scripts", "bench"):
        for f in sorted((root / folder).rglob("*.py")) + sorted((root / folder).rglob("*.sh")):
            text = f.read_text()
            if re.search(rf"\b{re.escape(plan.name)}\b|{re.escape(plan.ship)}", text):
                hits.append(f"{f.relative_to(root)}: {plan.name}")
            if folder != "trainers":  # the trainers' own keys ("r1") are not arm names
                hits += [f"{f.relative_to(root)}: {a}" for a in sorted(arms)
                         if re.search(rf"[\"']{re.escape(a)}[\"']", text)]
    assert hits == []


def test_shipped_folder_is_small_and_verified():
    assert verify() == []
    total = sum(e["bytes"] for e in read_manifest().values())
    # the cap issue 23 sets for everything shipped (v2 58 MB, study v3 plans 27.6 MB more)
    assert total <= 100e6, f"shipped checkpoints are {total / 1e6:.1f} MB"


def test_evolution_pair_has_intermediate_snapshots(plan):
    from trainers.checkpoint import list_snapshots

    for e in plan.data["evolution"]:
        runs = study.shipped_runs(e["group"], plan)
        steps = [int(p.stem[5:]) for p in list_snapshots(study.run_dir(runs[e["arm"]][e["seed"]]))]
        final = int(plan.groups[e["group"]]["options"]["steps"])
        assert steps == list(range(e["every"], final + 1, e["every"]))


def test_metrics_are_reproducible_and_finite(plan):
    path = study.shipped_runs("mnist10k")[plan.data["report"]["main"]][0]
    a = study.image_metrics(path, n_quality=200, n_grad=32, n_attack=32)
    b = study.image_metrics(path, n_quality=200, n_grad=32, n_attack=32)
    assert a == b
    assert a.pop("mode") == "frozen"  # a BatchNorm D: per-sample against a reference group
    assert all(math.isfinite(v) for v in a.values())
    assert 0 <= a["flip_real_1"] <= 1 and 0 < a["hoyer_real"] < 1
    m = study.mixture_metrics(study.shipped_runs("ring8")["baseline"][0])
    assert 1 <= m["modes"] <= 8


@pytest.mark.slow
def test_study_report_regenerates_every_figure(tmp_path):
    from probes.cli import main

    assert main(["report", "--out", str(tmp_path), "--n-quality", "200",
                 "--n-stacked", "2000"]) == 0
    md = (tmp_path / "report.md").read_text()
    for name in ("fig1-maps-real", "fig1-maps-fake", "fig5a-hist-raw", "fig5a-hist-rms",
                 "fig5b-evolution", "attack-curves", "coverage-2d", "eps-sweep",
                 "arms-mnist10k", "samples", "training-curves"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"({name}.png)" in md, name
    from probes.study.claims import load_claims

    claims = load_claims()["claims"]
    assert all(f"| {c['id']} |" in md for c in claims)  # every registered claim has its row
    # the shipped study is complete (test_the_shipped_study_is_complete_and_registered) and
    # its runs were trained under the registered claims file: the primary claims are judged,
    # not pending, and the report says the study is complete
    plan = study.shipped_plan()
    assert re.search(r"\*\*\d of 6 primary claims held\*\*", md)
    assert "The primary verdicts are pending" not in md
    assert f"study {plan.name} is complete: every planned run is trained and measured" in md
    assert "No claim is judged as primary" not in md
    assert "VEEGAN" in md and "PacGAN" in md and "probe mode" in md


def test_the_shipped_study_is_complete_and_registered(plan):
    """What the full report's verdict and "complete" lines rest on, in the shipped data:
    every run the plan names is shipped, so the report judges the primary claims (none
    pending) and calls the study complete; and the runs were trained under the registered
    claims file, so the verdicts count as primary."""
    from probes.study.engine import registration_state
    from probes.study.report import _plan_state, claims_basis

    entries = read_manifest(plan.manifest)
    tables = {}
    for group in plan.groups:
        progress = study.plan_progress(plan, group, entries)
        assert progress and all(p["shipped"] == p["planned"] for p in progress.values()), group
        # the seeds the report would measure: the shipped runs (their numbers do not matter
        # to which runs are planned, measured or judged)
        tables[group] = {a: {s: {} for s in by_seed}
                         for a, by_seed in study.shipped_runs(group, plan).items()}
    basis = claims_basis(tables, plan)
    assert _plan_state(basis).startswith("is complete")
    claims = basis["claims"]["claims"]
    assert all(sorted(tables[c["group"]][arm]) == basis["planned"][(c["group"], arm)]
               for c in claims if c["kind"] == "primary" for arm in (c["a"], c["b"]))
    reg = registration_state(plan, basis["entries"])
    assert reg["primary_allowed"], reg["reason"]


def test_which_runs_line_says_complete_only_when_every_planned_run_is_measured():
    from probes.study.report import _plan_state

    planned = {("mnist10k", "baseline"): [0, 1], ("ring8", "baseline"): [0]}
    full = {"mnist10k": {"baseline": {0: {}, 1: {}}}, "ring8": {"baseline": {0: {}}}}
    assert _plan_state({"planned": planned, "tables": full}).startswith("is complete")
    short = {"mnist10k": {"baseline": {0: {}}}, "ring8": {"baseline": {0: {}}}}
    assert _plan_state({"planned": planned, "tables": short}) == "is being regenerated"
    assert _plan_state({"planned": planned, "tables": {}}) == "is being regenerated"


def test_a_groups_runs_are_the_plans_final_snapshots_in_the_manifest(tmp_path):
    """On a toy plan: a run counts once its planned final snapshot is listed (an evolution
    snapshot or a run cut short does not), and nothing outside the plan is read."""
    from asgan_base.errors import UserError
    from asgan_base.manifest import record
    from probes.study.plan import load_plan
    from tests.test_study_plan import GOOD

    (tmp_path / "plan.toml").write_text(GOOD + '\n[[evolution]]\ngroup = "toy"\narm = "base"\n'
                                        'seed = 0\nevery = 10\n')
    plan = load_plan(tmp_path / "plan.toml")
    listed = {"base/seed0": (10, 20), "base/seed1": (10,), "adv/seed2": (20,),
              "other/seed0": (20,)}  # "other": an arm the plan does not have
    for run, steps in listed.items():
        for k in steps:
            f = tmp_path / plan.ship / "toy" / run / f"ckpt-{k:06d}.safetensors"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(run.encode())
            record(f, command="asgan-train ...", path=plan.manifest, root=plan.root)
    runs = study.shipped_runs("toy", plan)
    assert {a: {s: p.name for s, p in r.items()} for a, r in runs.items()} == {
        "adv": {2: "ckpt-000020.safetensors"}, "base": {0: "ckpt-000020.safetensors"}}
    assert study.plan_progress(plan, "toy") == {
        "base": {"planned": [0, 1, 2], "shipped": [0]},
        "adv": {"planned": [0, 1, 2], "shipped": [2]}}
    with pytest.raises(UserError, match="no shipped checkpoints for group 'nope'"):
        study.shipped_runs("nope", plan)
