"""The benchmark harness (analytic cases) and a smoke run of every ``bench`` script.

No timing assertions: the smoke runs check that each script runs with ``--quick``, prints one
JSON line with its ratio keys, and (where the bench checks correctness) that the check holds.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench._common import interleave, pair_ratio, per_rep, quartiles, render_table

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ harness, analytic
@pytest.mark.parametrize("values,expected", [
    ([2.0], (2.0, 2.0, 2.0)),
    ([1.0, 3.0], (2.0, 1.5, 2.5)),
    ([4.0, 1.0, 3.0, 2.0, 5.0], (3.0, 2.0, 4.0)),
], ids=["one", "two", "five-unsorted"])
def test_quartiles(values, expected):
    q = quartiles(values)
    assert (q["median"], q["q1"], q["q3"]) == pytest.approx(expected)


def test_pair_ratio_is_per_repetition_not_ratio_of_medians():
    # load doubles in rep 2 for both cases: per-pair ratios stay 1.5, which medians would not show
    a, b = [3.0, 6.0, 3.0], [2.0, 4.0, 2.0]
    r = pair_ratio(a, b)
    assert r["per_rep"] == [1.5, 1.5, 1.5] and r["median"] == pytest.approx(1.5)
    eff = per_rep(lambda x, y: (x - y) / y, a, b)
    assert eff["median"] == pytest.approx(0.5)


def test_interleave_alternates_order_and_counts_calls():
    order: list[str] = []
    cases = {k: (lambda k=k: order.append(k)) for k in "abc"}
    times = interleave(cases, reps=3, warmup=1, inner={"a": 2, "b": 1, "c": 1})
    warm, timed = order[:4], order[4:]
    assert warm == ["a", "a", "b", "c"]
    # rep 0 forward, rep 1 reversed, rep 2 forward: a linear drift in load cancels
    assert timed == ["a", "a", "b", "c", "c", "b", "a", "a", "a", "a", "b", "c"]
    assert set(times) == {"wall", "cpu"}
    assert all(len(v) == 3 and all(t >= 0 for t in v) for v in times["wall"].values())


def test_render_table_pads_columns():
    lines = render_table([["a", "bb"], ["ccc", "d"]]).splitlines()
    assert lines == ["| a   | bb |", "|-----|----|", "| ccc | d  |"]


def test_overhead_times_the_trainers_own_train_step(monkeypatch):
    # the bench's docstring says it measures the code that trains: its iteration is the
    # function the loop calls, not a retyped copy (a spy counts the calls into the real one)
    import bench.asgan_overhead as ov
    import trainers.loop
    import trainers.steps

    assert ov.train_step is trainers.steps.train_step is trainers.loop.train_step
    calls = []

    def spy(*args, **kwargs):
        calls.append((kwargs["cfg"].trainer, kwargs["cfg"].second_step))
        return trainers.steps.train_step(*args, **kwargs)

    monkeypatch.setattr(ov, "train_step", spy)
    shape, overrides = ov.MODELS["mlp"]
    cases = ov.build_cases(shape, dict(overrides, **ov.QUICK["mlp"]), eps=1 / 255,
                           diagnose=False)
    for name in ("baseline", "asgan real+fake", "asgan real"):
        cases[name]()
    assert calls == [("baseline", "real+fake"), ("asgan", "real+fake"), ("asgan", "real")]


def test_probe_memory_says_clearly_when_the_verb_is_missing(monkeypatch, capsys):
    import bench.probe_memory as pm

    monkeypatch.setattr(pm, "verb_available", lambda: False)
    assert pm.main(["--quick"]) == 1
    captured = capsys.readouterr()
    rec = json.loads(captured.out.strip().splitlines()[-1])
    assert rec["status"] == "unavailable" and "gradients" in rec["reason"]
    assert "no 'gradients' verb" in captured.err


# ------------------------------------------------------------------ smoke: each script
def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_overhead(rec: dict, rc: int) -> None:
    assert rc == 0
    assert set(rec["results"]) == {"dcgan32-rgb", "dcgan32-grey", "resnet32", "mlp"}
    for r in rec["results"].values():
        for policy in ("real+fake", "real"):
            assert _finite_positive(r["ratio"][policy]["median"])
            assert _finite_positive(r["floor_ratio"][policy]["median"])
            assert math.isfinite(r["floor_efficiency"][policy]["median"])
        assert {"baseline", "asgan real+fake", "floor real+fake"} <= set(r["median_s"])
    assert set(rec["targets"]) == {"dcgan32-rgb real+fake floor_efficiency <=",
                                   "dcgan32-rgb real ratio <="}


def _check_tax(rec: dict, rc: int) -> None:
    assert rc == 0
    for clock in ("wall", "cpu"):
        # these ratios divide a difference of two runs' times (long - short, 6 iterations
        # apart in --quick): on a busy machine the difference can be <= 0, so only their
        # presence and finiteness are the script's contract, not their sign
        for key in ("ratio", "bookkeeping_ratio", "bare_ratio"):
            assert math.isfinite(rec["results"][clock][key]["median"])
        assert _finite_positive(rec["results"][clock]["hand_s_per_iter"]["median"])
    assert "trainer tax <" in rec["targets"]


def _check_attacks(rec: dict, rc: int) -> None:
    assert rc == 0
    assert rec["d_unchanged"] is True  # every implementation saw the same eval-mode D
    for attack, impls in rec["agreement"].items():
        assert impls["moved_share"] > 0.5, attack  # the attacks did something...
        assert impls["mean_logit_shift"] < 0, attack  # ...toward "fake", as asked
        for name, a in impls.items():
            if isinstance(a, dict):
                assert a["agree"], (attack, name, a)
    sp = rec["results"]["wall"]["speedup"]
    assert set(sp) == {"fgsm", "bim3"}
    for impls in sp.values():
        assert {"torchattacks", "foolbox", "foolbox frozen", "ours channels_last"} == set(impls)
        assert all(_finite_positive(q["median"]) for q in impls.values())


def _check_memory(rec: dict, rc: int) -> None:
    if rec["status"] == "unavailable":  # the gradients verb has not landed: said clearly
        assert rc == 1 and "gradients" in rec["reason"]
        return
    assert rc == 0 and rec["status"] == "ok", rec.get("reason")
    assert _finite_positive(rec["results"]["ratio_large_small"])
    assert set(rec["results"]["peak_rss_mib"]) == {"n=20", "n=200"}


def _check_coupling(rec: dict, rc: int) -> None:
    assert rc == 0
    for pop in ("real", "fake"):  # the DCGAN D: BatchNorm found, removed by frozen mode
        c = rec["coupling"][pop]
        assert c["causes"] == [{"kind": "batchnorm", "layers": 2}] and c["per_sample"]
        assert c["batch_view"]["coupled"] and c["mode"] == "frozen"
    share = rec["results"]["wall"]["checks_share"]["median"]
    assert _finite_positive(share) and share < 1  # a part of the run it belongs to


SCRIPTS = {"asgan_overhead": _check_overhead, "trainer_tax": _check_tax,
           "attack_throughput": _check_attacks, "probe_memory": _check_memory,
           "coupling_cost": _check_coupling}


@pytest.mark.parametrize("name", list(SCRIPTS), ids=list(SCRIPTS))
def test_bench_script_runs_quick_and_prints_json(name, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", "--quick", "--threads", "1",
                           "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, f"no JSON line on stdout; stderr:\n{proc.stderr[-2000:]}"
    rec = json.loads(lines[-1])
    assert rec["bench"] == name
    assert rec["machine"]["torch_threads"] == 1
    assert json.loads(out.read_text()) == rec  # --out holds the same object
    assert "|" in proc.stderr  # the human table
    SCRIPTS[name](rec, proc.returncode)
