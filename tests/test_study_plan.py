"""Study plans (probes.study.plan): the shipped study's plan file reproduces every shipped run
(name, command, paths, PLAN.json) exactly, and bad plans fail in one line naming the line."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from asgan_base.errors import UserError
from asgan_base.manifest import read_manifest
from probes.study.plan import load_plan
from trainers.checkpoint import snapshot_name

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "studies" / "v2.toml"


def test_the_shipped_plan_regenerates_every_shipped_run_and_plan_json():
    plan = load_plan(SHIPPED, ROOT)
    entries = read_manifest(ROOT / "checkpoints" / "MANIFEST.json")
    runs = plan.runs()
    assert len(runs) == len({r.name for r in runs}) == 133
    ours = {e["path"] for e in entries.values() if e.get("study") == plan.name}
    listed = set()
    for r in runs:
        for step in plan.shipped_steps(r):
            rel = f"{plan.ship}/{r.name}/{snapshot_name(step)}"
            e = entries[rel]  # the shipped path, as the plan names it
            assert e["command"] == shlex.join(plan.command(r)), r.name
            assert (e["group"], e["arm"], e["seed"], e["tier"], e["steps"]) == (
                r.group, r.arm, r.seed, r.tier, step)
            listed.add(rel)
    assert ours - listed == {f"{plan.ship}/PLAN.json"}
    assert (ROOT / plan.ship / "PLAN.json").read_text() == plan.plan_json()
    # the work order: the primary claims' arms first, seed-major; the droppable arms last
    claims = plan.claims()
    primary = {(c["group"], a) for c in claims["claims"] if c["kind"] == "primary"
               for a in (c["a"], c["b"])}
    first = [(r.group, r.arm) in primary for r in runs]
    assert all(first[:sum(first)]) and not any(first[sum(first):])
    assert {r.seed for r in runs[:len(primary)]} == {0}
    assert {(r.group, r.arm) for r in runs if r.tier == runs[-1].tier} == {
        ("mnist10k", "asgan-eps1"), ("mnist10k", "r1")}
    # each claim is judged on the seeds the plan gives both its arms
    p1 = next(c for c in claims["claims"] if c["id"] == "P1")
    assert p1["seeds"] == list(range(8))


def test_the_cost_model_is_the_pilots():
    plan = load_plan(SHIPPED, ROOT)
    runs = plan.runs()
    base = next(r for r in runs if r.group == "mnist10k" and r.arm == "baseline" and r.seed)
    assert plan.est_seconds(base) == pytest.approx(502.0)
    assert plan.est_seconds(next(r for r in runs if r.arm == "r1-twice")) == pytest.approx(
        2.9 * 502.0)
    evo = next(r for r in runs if plan.evolution_every(r))
    assert plan.shipped_steps(evo) == [700, 1400, 2100, 2800, 3500]


GOOD = '''\
[study]
name = "mine"
raw = "runs/mine"
ship = "checkpoints/shipped/mine"

[groups.toy]
preset = "smoke"
measure = "mixture"
s_per_it = 0.01
options = {steps = "20", split = "train"}

[groups.toy.arms]
base = {cost = 1.0, options = {trainer = "baseline"}}
adv = {cost = 1.5, options = {trainer = "asgan", eps = "0.5"}}

[[tiers]]
name = "only"
runs = [{group = "toy", arms = ["base", "adv"], seeds = 3}]

[claims]
alpha = 0.05

[[claim]]
id = "P1"
kind = "primary"
group = "toy"
metric = "modes"
a = "adv"
b = "base"
expect = "higher"
seeds = [0, 1, 2]
rationale = "more modes"
'''


@pytest.mark.parametrize("old, new, at, message", [
    ('split = "train"}', 'split = "train", warp = "9"}', "warp", "unknown config key 'warp'"),
    ('seeds = 3}]', 'seeds = 3}]\n[groups.toy.arms.lonely]\ncost = 1.0', "lonely",
     "toy/lonely has no seeds"),
    ('metric = "modes"', 'metric = "fd"', 'metric = "fd"', "metric 'fd' is not measured"),
    ('a = "adv"', 'a = "advv"', 'a = "advv"', "arm 'advv' is not planned"),
    ('seeds = [0, 1, 2]', 'seeds = [0, 1, 5]', "[0, 1, 5]", "seeds [5] are not planned"),
    ('measure = "mixture"', 'measure = "fid"', "fid", "measure must be one of"),
    ('s_per_it = 0.01', 's_per_it = 0.01\nflavour = 1', "flavour", "unknown key 'flavour'"),
    ('eps = "0.5"', 'eps = 0.5', "eps = 0.5", "options are text"),
    ('name = "only"', 'name = "only"\nname = "twice"', 'name = "twice"', "not TOML"),
])
def test_bad_plans_fail_in_one_line_naming_the_line(tmp_path, old, new, at, message):
    assert old in GOOD
    f = tmp_path / "plan.toml"
    f.write_text(GOOD.replace(old, new, 1))
    before = f.read_bytes()
    with pytest.raises(UserError) as e:
        load_plan(f)
    text = str(e.value)
    assert "\n" not in text and message in text, text
    line = int(text.removeprefix(f"{f}:").split(":")[0])
    assert at in f.read_text().splitlines()[line - 1], (line, text)
    assert f.read_bytes() == before


def test_a_good_plan_loads(tmp_path):
    f = tmp_path / "plan.toml"
    f.write_text(GOOD)
    plan = load_plan(f)
    assert [r.name for r in plan.runs()] == [f"toy/{a}/seed{s}" for s in range(3)
                                             for a in ("base", "adv")]
    assert plan.command(plan.runs()[1]) == [
        "asgan-train", "--preset", "smoke", "--seed", "0", "--steps", "20", "--split", "train",
        "--trainer", "asgan", "--eps", "0.5", "--out", "runs/mine/toy/adv/seed0",
        "--no-progress"]
    assert plan.claims()["claims"][0]["seeds"] == [0, 1, 2]


def test_the_plan_measures_and_judges_as_the_shipped_report(tmp_path):
    """A few shipped runs measured through the plan (asgan-study measure) and through
    probes.study.arms.collect (the notebooks' path): the same numbers, and the claims on
    them the same statistics (claims judged on the plan's registered seed lists vs on every
    seed present with the plan's counts)."""
    from probes.study import arms as study
    from probes.study import engine
    from probes.study.claims import evaluate_claims, load_claims

    plan = load_plan(SHIPPED, ROOT)
    runs = [r for r in plan.runs() if r.group == "ring8" and r.seed < 3
            and r.arm in ("baseline", "asgan-eps0.5")]
    ours = engine.measure(plan, tmp_path, n_mixture=400, runs=runs, say=lambda m: None)
    theirs = {"ring8": study.collect("ring8", arms=("baseline", "asgan-eps0.5"),
                                     seeds=(0, 1, 2), n=400, plan=plan)}
    assert ours == theirs
    reg = {"primary_allowed": True}
    planned = plan.planned_seeds()
    old = evaluate_claims(theirs, load_claims(), reg, planned)
    new = evaluate_claims(ours, plan.claims(), reg, None)
    pick = ("id", "n", "n_planned", "mean_a", "mean_b", "diff", "lo", "hi", "p", "agree")
    for kind in ("primary", "exploratory"):  # as text: NaN (not measured) equals NaN
        assert repr([{k: r[k] for k in pick} for r in old[kind]]) == \
            repr([{k: r[k] for k in pick} for r in new[kind]])
    e = [r for r in new["exploratory"] if r["group"] == "ring8"]
    assert e and all(r["n"] == 3 and r["n_planned"] == 10 for r in e)


def test_the_size_model_matches_a_real_export(tmp_path):
    import torch

    from probes.study.engine import est_bytes
    from trainers.checkpoint import export_snapshot, save_checkpoint
    from trainers.data import load_dataset
    from trainers.loop import build_models

    plan = load_plan(SHIPPED, ROOT)
    runs = plan.runs()
    base = next(r for r in runs if r.group == "mnist10k" and r.arm == "baseline" and r.seed)
    evo = next(r for r in runs if plan.evolution_every(r))
    assert est_bytes(plan, evo) == len(plan.shipped_steps(evo)) * est_bytes(plan, base)
    for run in (base, next(r for r in runs if r.arm == "sn"),
                next(r for r in runs if r.group == "grid25")):
        cfg = plan.config(run)
        ds = load_dataset(cfg.data, resolution=cfg.resolution, n=256)
        G, D, _, _, g_spec, d_spec = build_models(cfg, ds, torch.device("cpu"))
        raw = save_checkpoint(tmp_path / "raw.safetensors", G=G, D=D,
                              meta={"g_spec": g_spec, "d_spec": d_spec, "step": 0,
                                    "config": cfg.to_dict()})
        half = export_snapshot(raw, tmp_path / "half.safetensors", half=True)
        header = 8 + int.from_bytes(half.read_bytes()[:8], "little")
        assert est_bytes(plan, run, header=0) == half.stat().st_size - header, run


def test_the_measure_cache_holds_for_one_code_version(tmp_path, monkeypatch):
    """``asgan-study measure``'s cache is reused while the code, classifiers and torch are
    the same (a second call measures nothing) and dropped when the measuring code changes
    (the fingerprint covers every source file: a copy of the trainers gives the same one, an
    edit another)."""
    import shutil

    import probes.io.edge as edge
    from probes.study import arms, engine

    plan = load_plan(SHIPPED, ROOT)
    (run,) = [r for r in plan.runs() if r.name == "ring8/baseline/seed0"]
    said = []
    first = engine.measure(plan, tmp_path, n_mixture=200, runs=[run], say=said.append)
    assert said == ["measuring ring8/baseline/seed0"]
    monkeypatch.setitem(arms.MEASURES, "mixture", lambda *a, **k: pytest.fail("re-measured"))
    assert engine.measure(plan, tmp_path, n_mixture=200, runs=[run], say=said.append) == first

    fp = engine.measure_fingerprint()
    copy = tmp_path / "code" / "trainers"
    shutil.copytree(edge.TRAINERS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(edge, "TRAINERS_DIR", copy)
    assert engine.measure_fingerprint() == fp
    with (copy / "nets.py").open("a") as f:
        f.write("\n# an edit\n")
    assert engine.measure_fingerprint() != fp
    with pytest.raises(pytest.fail.Exception, match="re-measured"):
        engine.measure(plan, tmp_path, n_mixture=200, runs=[run], say=said.append)
