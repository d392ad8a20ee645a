"""Every number of the study report is the number the matching CLI verb prints.

For one shipped checkpoint of each kind, each metric the report tabulates (quality, gradient
sparsity and structure on reals and fakes, FGSM flip rates, 2-D coverage, stacked-MNIST modes)
is computed once through ``asgan-probe <verb>`` and once through the report's path
(:mod:`probes.study.arms`), with the same settings, and must agree. The report's arm tables and
claims are means and paired differences of these per-checkpoint numbers (checked below for the
arm tables; the claims arithmetic in tests/test_claims.py).
"""

from __future__ import annotations

import json
import math

import pytest

from probes.cli import main
from probes.study import arms as study
from probes.study.arms import GRAD_KEYS
from tests.conftest import run_cli

N_QUALITY, N_GRAD, N_ATTACK = 300, 32, 48


@pytest.fixture(scope="module")
def image_ckpt():
    plan = study.shipped_plan()  # the arm the report draws beside the baseline
    return study.shipped_runs("mnist10k", plan)[plan.data["report"]["main"]][0]


@pytest.fixture(scope="module")
def report_numbers(image_ckpt):
    return study.image_metrics(image_ckpt, n_quality=N_QUALITY, n_grad=N_GRAD,
                               n_attack=N_ATTACK)


def _cli(argv, capsys, tmp_path) -> dict:
    out = tmp_path / "out.json"
    code, _, err = run_cli(main, [*argv, "--out", str(out)], capsys)
    assert code == 0, err
    return json.loads(out.read_text())


def test_quality_numbers(image_ckpt, report_numbers, capsys, tmp_path):
    res = _cli(["quality", str(image_ckpt), "--n", str(N_QUALITY), "--seed", "0"], capsys,
               tmp_path)
    s = res["results"][0]["scores"]["classifier"]
    assert report_numbers["fd"] == pytest.approx(s["frechet"], rel=1e-12)
    assert report_numbers["kid"] == pytest.approx(s["kid"]["mean"], rel=1e-12)
    for k in ("precision", "recall", "density", "coverage"):
        assert report_numbers[k] == pytest.approx(s["prdc"][k], rel=1e-12), k


@pytest.mark.parametrize("population", ["real", "fake"])
def test_gradient_numbers(image_ckpt, report_numbers, population, capsys, tmp_path):
    res = _cli(["gradients", str(image_ckpt), "--n", str(N_GRAD), "--population", population,
                "--boot", "0"], capsys, tmp_path)
    (row,) = res["checkpoints"]
    assert row["mode"] == report_numbers["mode"] == "frozen"
    for k in GRAD_KEYS:
        assert report_numbers[f"{k}_{population}"] == pytest.approx(
            row["measures"][k]["mean"], rel=1e-9, abs=1e-12), k


def test_robustness_numbers(image_ckpt, report_numbers, capsys, tmp_path):
    res = _cli(["attack", str(image_ckpt), "--population", "real", "--method", "fgsm",
                "--eps", "1/255,2/255", "--n", str(N_ATTACK), "--no-progress"], capsys, tmp_path)
    flips = {round(r["eps_255"]): r["flip_rate"] for r in res["records"]}
    assert report_numbers["flip_real_1"] == flips[1]
    assert report_numbers["flip_real_2"] == flips[2]


@pytest.mark.parametrize("group", ["ring8", "grid25"])
def test_mixture_numbers(group, capsys, tmp_path):
    path = study.shipped_runs(group)["baseline"][0]
    ours = study.mixture_metrics(path, n=2500)
    (r,) = _cli(["coverage", str(path), "--n", "2500"], capsys, tmp_path)["results"]
    assert ours["modes"] == r["modes_captured"]
    assert ours["high_quality_pct"] == r["high_quality_pct"]
    assert ours["reverse_kl"] == r["reverse_kl"] or (
        math.isnan(ours["reverse_kl"]) and r["reverse_kl"] is None)


def test_stacked_numbers(capsys, tmp_path):
    path = study.shipped_runs("stacked-mnist")["baseline"][0]
    ours = study.stacked_metrics(path, n=2000)
    (r,) = _cli(["coverage", str(path), "--n", "2000"], capsys, tmp_path)["results"]
    assert ours["modes"] == r["modes_captured"] and ours["kl"] == r["kl"]


def test_arm_tables_are_seed_means_of_these_numbers():
    from probes.study.report import arms_markdown

    table = {"a": {0: {"fd": 1.0, "mode": "frozen"}, 1: {"fd": 2.0, "mode": "frozen"},
                   2: {"fd": 4.5, "mode": "frozen"}},
             "b": {0: {"fd": 3.0, "mode": "eval"}, 1: {"fd": 3.0, "mode": "eval"}}}
    lines = arms_markdown(table, ["fd"], ["a", "b"])
    assert lines[2].startswith("| a | 2.5 ± ") and lines[2].endswith("| frozen |")
    assert lines[3].startswith("| b | 3 ± 0 |") and lines[3].endswith("| eval |")
    assert any("different BatchNorm modes" in line for line in lines)  # the note
