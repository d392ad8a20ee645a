"""asgan-study's per-run results (issue 23, item 4): numbers per snapshot measured by the
sitting, weights shipped only for ``ship_weights_seeds``, a non-finite stop recorded as an
outcome, ``asgan-study verify`` (retrain, compare the final weights' SHA-256), and the plan
checks of these keys. Smoke-sized: ring8, width 64 (16 for the diverging arm), 300 iterations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import asgan_base.manifest as manifest
from asgan_base.errors import UserError
from probes.study import engine, snapshots
from probes.study.cli import main
from probes.study.plan import load_plan
from trainers.checkpoint import list_snapshots, read_checkpoint, tensor_digest

ROOT = Path(__file__).resolve().parents[1]

# seed 3 at width 16 and lr 5e3 diverges at step 7 (found by trying seeds 0-3), after its
# step-5 snapshot
PLAN = """\
[study]
name = "smoke3"
raw = "runs/smoke3"
ship = "checkpoints/shipped/smoke3"
budget_mb = 1.0

[groups.ring8]
preset = "ring8-mlp"
measure = "mixture"
s_per_it = 0.005
measure_every = 100
final_metrics = ["fidelity_cos", "fidelity_noise"]
ship_weights_seeds = [0]
nonfinite = "outcome"
options = {width = "64", steps = "300", split = "train", snapshot-every = "100", \
keep-snapshots = "0", sample-every = "0", log-every = "50", tensorboard = "false"}

[groups.ring8.arms]
baseline = {cost = 1.0, options = {trainer = "baseline"}}
hot = {cost = 1.0, options = {trainer = "baseline", lr-g = "5e3", lr-d = "5e3", \
width = "16", snapshot-every = "5", log-every = "5"}}

[[tiers]]
name = "main"
runs = [{group = "ring8", arms = ["baseline"], seeds = [0, 1]},
        {group = "ring8", arms = ["hot"], seeds = [3]}]
"""


def _plan(tmp_path: Path, text: str = PLAN) -> Path:
    (tmp_path / "plan.toml").write_text(text)
    return tmp_path / "plan.toml"


def test_the_plan_says_what_ships_and_lists_the_keys(tmp_path, capsys):
    plan = load_plan(_plan(tmp_path))
    b0, b1, hot = plan.runs()
    assert [plan.ships_weights(r) for r in (b0, b1, hot)] == [True, False, False]
    assert all(plan.has_results(r) for r in (b0, b1, hot))
    assert plan.shipped_steps(b0) == [300] and plan.shipped_steps(b1) == []
    assert plan.measure_metrics(b0) == ["modes", "high_quality_pct", "reverse_kl"]
    assert plan.final_metrics(b0) == ["fidelity_cos", "fidelity_noise"]  # at the end only
    assert engine.ship_rels(plan, b1) == ["checkpoints/shipped/smoke3/ring8/baseline/seed1/"
                                          "results.json"]
    assert engine.weight_rels(plan, b0) == ["checkpoints/shipped/smoke3/ring8/baseline/seed0/"
                                            "ckpt-000300.safetensors"]
    # size model: a numbers-only run ships its log, config and results (6 log lines, 4 rows)
    assert engine.est_bytes(plan, b1) == engine.RECORD_BYTES + 6 * engine.LOG_LINE_BYTES + \
        4 * engine.ROW_BYTES
    assert engine.est_bytes(plan, b0) > 5000 + engine.est_bytes(plan, b1)
    g = json.loads(plan.plan_json())["groups"]["ring8"]
    assert (g["measure_every"], g["ship_weights_seeds"], g["nonfinite"]) == (100, [0],
                                                                            "outcome")
    engine.print_table(plan)
    out = capsys.readouterr().out
    assert "ring8/baseline/seed0" in out and "[weights]" in out and "[numbers]" in out
    assert "ships: weights for 1 run(s); for the other 2" in out
    # the shipped study's plan has none of this: no run gets a results file
    v2 = load_plan(ROOT / "studies" / "v2.toml", ROOT, check_configs=False)
    assert not any(v2.has_results(r) for r in v2.runs())
    assert all(engine.ship_rels(v2, r) == engine.weight_rels(v2, r) for r in v2.runs())


@pytest.mark.parametrize("old,new,key,msg", [
    ('snapshot-every = "100"', 'snapshot-every = "30"', "options",
     "snapshot-every '30' must divide measure_every 100"),
    ('snapshot-every = "5"', 'snapshot-every = "7"', "hot",
     "snapshot-every '7' must divide measure_every 100"),
    ('keep-snapshots = "0"', 'keep-snapshots = "1"', "options",
     "keep-snapshots '1': with measure_every"),
    ('lr-d = "5e3",', 'lr-d = "5e3", keep-snapshots = "2",', "hot", "keep-snapshots '2'"),
    ("measure_every = 100", "measure_every = 0", "measure_every", "integer >= 1"),
    ("measure_every = 100", 'measure_every = 100\nmeasure_metrics = ["fd"]', "measure_metrics",
     "measure_metrics must list distinct numbers of measure 'mixture'"),
    ('final_metrics = ["fidelity_cos", "fidelity_noise"]', 'final_metrics = ["fd"]',
     "final_metrics", "final_metrics must list distinct numbers of measure 'mixture'"),
    ("measure_every = 100\n", "", "final_metrics", "final_metrics needs measure_every"),
    ('nonfinite = "outcome"', 'nonfinite = "ignore"', "nonfinite",
     "nonfinite must be one of error, outcome"),
    ("ship_weights_seeds = [0]", 'ship_weights_seeds = "all"', "ship_weights_seeds",
     "must list distinct seeds"),
    ("cost = 1.0, options = {trainer = \"baseline\", lr",
     "cost = 1.0, ship_weights_seeds = [-1], options = {trainer = \"baseline\", lr", "hot",
     "must list distinct seeds"),
])
def test_bad_result_keys_fail_in_one_line_at_their_line(tmp_path, old, new, key, msg):
    assert old in PLAN
    path = _plan(tmp_path, PLAN.replace(old, new, 1))
    with pytest.raises(UserError) as e:
        load_plan(path)
    text = str(e.value)
    assert msg in text and "\n" not in text
    line = int(text.split(f"{path}:")[1].split(":")[0])
    assert key in path.read_text().splitlines()[line - 1]


def test_an_evolution_run_must_ship_its_snapshots(tmp_path):
    path = _plan(tmp_path, PLAN + '\n[[evolution]]\ngroup = "ring8"\narm = "baseline"\n'
                 'seed = 1\nevery = 10\n')
    with pytest.raises(UserError, match="add seed 1 to its ship_weights_seeds"):
        load_plan(path)


def _check_measured_run(plan, r, entries, ship) -> dict:
    """One finished run of the smoke sitting: its numbers, hashes and manifest entry;
    returns its numbers at the final step 300."""
    res = json.loads((plan.root / engine.results_rel(plan, r)).read_text())
    raw = plan.root / plan.raw_dir(r)
    # measured, the raw run keeps its last snapshot only (as keep-snapshots 1 would)
    assert [p.name for p in list_snapshots(raw)] == ["ckpt-000300.safetensors"]
    final = raw / "ckpt-000300.safetensors"
    # the numbers are probes.measures.coverage's (the report's mixture numbers; NaN: null)
    from probes.study.arms import mixture_metrics

    want = mixture_metrics(final, n=2500, seed=0)
    # and the final step only, asgan-probe fidelity's mean cosine and noise share
    from probes.measures.fidelity import fidelity_sweep

    (fid,) = fidelity_sweep([str(final)], seed=0)["checkpoints"]
    want.update(fidelity_cos=fid["summary"]["cos"]["mean"],
                fidelity_noise=fid["summary"]["noise"]["mean"])
    assert res["numbers"]["300"] == {k: None if v != v else v for k, v in want.items()}
    assert "fidelity_cos" not in res["numbers"]["200"]
    assert -1 <= want["fidelity_cos"] <= 1 and 0 <= want["fidelity_noise"] <= 1
    assert sorted(res["numbers"]) == ["100", "200", "300"] and res["outcome"] == "finished"
    tensors, _ = read_checkpoint(final)
    digest = tensor_digest({k: v for k, v in tensors.items() if k[:2] in ("G.", "D.")})
    e = entries[engine.results_rel(plan, r)]
    assert res["weights_sha256"] == e["weights_sha256"] == digest
    assert (e["outcome"], e["steps"], e["seed"], e["weights_shipped"]) == (
        "finished", 300, r.seed, r.seed == 0)
    assert (ship / r.name / "stats.jsonl").stat().st_size < 5000
    return res["numbers"]["300"]


@pytest.mark.slow
def test_a_sitting_records_numbers_ships_a_subset_and_keeps_a_nonfinite_outcome(tmp_path,
                                                                                 capsys,
                                                                                 monkeypatch):
    path = _plan(tmp_path)
    measure = snapshots.numbers

    def numbers_before_weights(snap, *args, **kwargs):
        # a run is measured before any of its weights ship: a sitting stopped while measuring
        # (minutes) leaves no weights without their manifest entries
        run = snap.parent.relative_to(tmp_path / "runs/smoke3")
        assert not list((tmp_path / "checkpoints/shipped/smoke3" / run).glob("*.safetensors"))
        return measure(snap, *args, **kwargs)

    monkeypatch.setattr(snapshots, "numbers", numbers_before_weights)
    assert main(["run", str(path), "--jobs", "2", "--nice", "0"]) == 0
    assert '"nonfinite": 1' in capsys.readouterr().out
    plan = engine.load(path)
    b0, b1, hot = plan.runs()
    entries = manifest.read_manifest(plan.manifest)
    assert manifest.verify(plan.manifest) == []
    ship = plan.root / plan.ship
    assert sorted(p.relative_to(ship).as_posix() for p in ship.rglob("*.safetensors")) == [
        "ring8/baseline/seed0/ckpt-000300.safetensors"]  # weights for seed 0 only
    finals = [_check_measured_run(plan, r, entries, ship) for r in (b0, b1)]
    # each run measured on its own weights (the coverage shares at step 300 can be all zero:
    # seed 1 had 1.0 % high-quality points on an AVX2 CPU, 0.0 % on an AVX512 one)
    assert finals[0]["fidelity_cos"] != finals[1]["fidelity_cos"]
    # the diverged run: an outcome, its last good snapshot's numbers and hash, no weights
    res = json.loads((plan.root / engine.results_rel(plan, hot)).read_text())
    assert (res["outcome"], res["final_step"], sorted(res["numbers"])) == ("nonfinite", 5, ["5"])
    assert "training diverged: non-finite values at step 7" in res["stopped"]
    assert res["numbers"]["5"]["reverse_kl"] is None  # NaN in the measure: strict JSON
    assert entries[engine.results_rel(plan, hot)]["outcome"] == "nonfinite"
    # nothing is retried: every run is shipped
    assert main(["run", str(path)]) == 0
    assert '"skipped": 3' in capsys.readouterr().out
    # verify: identical; a tampered record differs and exits 1
    assert main(["verify", str(path), b1.name]) == 0
    assert f"{b1.name}: identical" in capsys.readouterr().out
    mf = json.loads(plan.manifest.read_text())
    for e in mf["files"]:
        if e["path"] == engine.results_rel(plan, b1):
            e["weights_sha256"] = "0" * 64
    plan.manifest.write_text(json.dumps(mf, indent=2) + "\n")
    assert main(["run", str(path), "--verify", b1.name]) == 1
    assert f"{b1.name}: differs" in capsys.readouterr().out


@pytest.mark.slow
def test_verify_a_nonfinite_run_and_a_run_without_a_results_file(tmp_path, capsys):
    """The diverged run diverges again at the same step with the same last good weights; a
    plain run (the example plan's kind: weights only) is compared through its shipped float16
    copy."""
    text = PLAN.replace('[{group = "ring8", arms = ["baseline"], seeds = [0, 1]},\n        ',
                        "[")
    path = _plan(tmp_path, text.replace('\n[[tiers]]', '\n[dropped]\n"ring8/baseline" = "t"'
                                        '\n\n[[tiers]]'))
    assert main(["run", str(path), "--nice", "0"]) == 0
    assert main(["verify", str(path), "ring8/hot/seed3"]) == 0
    assert "ring8/hot/seed3: identical" in capsys.readouterr().out
    plain = tmp_path / "plain"
    plain.mkdir()
    p2 = _plan(plain, PLAN.split("[groups.ring8]")[0] + """\
[groups.ring8]
preset = "ring8-mlp"
measure = "mixture"
s_per_it = 0.005
options = {width = "16", steps = "20", split = "train", snapshot-every = "10", \
keep-snapshots = "1", sample-every = "0", log-every = "10", tensorboard = "false"}
arms = {baseline = {cost = 1.0}}

[[tiers]]
name = "m"
runs = [{group = "ring8", arms = ["baseline"], seeds = [2]}]
""")
    assert main(["run", str(p2), "--nice", "0"]) == 0
    assert main(["verify", str(p2), "ring8/baseline/seed2"]) == 0
    out = capsys.readouterr().out
    assert "identical (the shipped float16 copy's tensor digest" in out
    with pytest.raises(UserError, match="not a run of"):
        engine.find_run(engine.load(p2), "ring8/baseline/seed9")


def test_snapshot_fd_is_the_quality_measurements(tmp_path):
    """An image snapshot's FD and PRDC are ``asgan-probe quality``'s at n 2,000, seed 0 (a
    shipped v2 checkpoint, read only); its classes count is the classifier's."""
    from probes.measures.quality import quality

    ck = ROOT / "checkpoints/shipped/v2/mnist10k/baseline/seed1/ckpt-003500.safetensors"
    if not ck.is_file():
        pytest.skip(f"{ck} is not in this checkout")
    got = snapshots.numbers(ck, "image", ["fd", "precision", "classes"])
    (row,) = quality([str(ck)], n=2000, seed=0)["results"]
    q = row["scores"]["classifier"]
    assert got["fd"] == pytest.approx(q["frechet"], rel=1e-9)
    assert got["precision"] == pytest.approx(q["prdc"]["precision"], rel=1e-9)
    assert got["classes"] in range(0, 11) and got["classes"] >= 9  # a trained v2 baseline
