"""Study v3's analysis (probes/study/analysis.py) and its tests in probes/core/stats.py, each
against an oracle: scipy's exact binomial test and interval, a hand-computed trapezoid, a
brute-force enumeration of sign patterns, Holm's worked example."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binomtest

from probes.core import stats
from probes.study import analysis

RULE = {"fd_max": 157.6, "min_classes": 9, "nonfinite": True}
ANALYSIS = {"fd_fill": 1000.0, "fd_threshold": 60.0, "iters_ceiling": 4000,
            "collapse": RULE, "spread": "range", "bootstrap_seed": 0}


@pytest.mark.parametrize("a,b", [
    ([1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 0, 0]),      # 5 vs 0 discordant
    ([1, 0, 1, 0, 1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0, 1, 1, 1, 0]),  # 4 vs 2
    (list(np.random.default_rng(3).random(15) < 0.6), list(np.random.default_rng(4).random(
        15) < 0.2))])
def test_mcnemar_is_scipys_exact_binomial_on_the_discordant_pairs(a, b):
    m = stats.mcnemar_exact(a, b)
    n10 = sum(x and not y for x, y in zip(a, b))
    n01 = sum(y and not x for x, y in zip(a, b))
    assert (m["n10"], m["n01"]) == (n10, n01)
    assert m["p"] == pytest.approx(binomtest(n10, n10 + n01, 0.5).pvalue, abs=1e-12)
    assert m["diff"] == pytest.approx((sum(a) - sum(b)) / len(a))


def test_mcnemar_without_discordant_pairs_is_p_one():
    assert stats.mcnemar_exact([1, 0, 1], [1, 0, 1])["p"] == 1.0
    # 5 of 5 discordant one way: 2 * 2^-5
    assert stats.mcnemar_exact([1] * 5, [0] * 5)["p"] == pytest.approx(0.0625)


@pytest.mark.parametrize("k,n", [(0, 15), (3, 15), (15, 15), (7, 32), (1, 1)])
def test_clopper_pearson_is_scipys_exact_interval_and_stays_in_range(k, n):
    lo, hi = stats.clopper_pearson(k, n)
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-10)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_bootstrap_interval_of_a_bounded_difference_stays_in_range_and_is_seeded():
    d = [1.0, 1.0, 1.0, 0.0, 1.0]  # collapse differences in [-1, 1]
    lo, hi = stats.paired_bootstrap_ci(d, lo_bound=-1, hi_bound=1, seed=0)
    assert -1 <= lo <= np.mean(d) <= hi <= 1
    assert (lo, hi) == stats.paired_bootstrap_ci(d, lo_bound=-1, hi_bound=1, seed=0)
    # the t-interval of the same numbers leaves the range: why bounded metrics bootstrap
    assert stats.mean_ci(d)["hi"] > 1


def _brute_tost(d, margin):
    """TOST by enumerating all 2^n sign patterns of each shifted set directly."""
    def p_ge(x):
        obs = sum(x)
        return np.mean([sum(s * abs(v) for s, v in zip(sg, x)) >= obs - 1e-9
                        for sg in itertools.product((1, -1), repeat=len(x))])
    lower = p_ge([v + margin for v in d])
    upper = p_ge([-(v - margin) for v in d])
    return max(lower, upper)


@pytest.mark.parametrize("d,margin", [([0.5, -1.0, 0.3, 1.2, -0.4, 0.1], 2.0),
                                      ([0.5, -1.0, 0.3, 1.2, -0.4, 0.1], 0.5),
                                      ([3.0, 2.5, 4.1, 3.3, 2.9], 1.0)])
def test_tost_is_the_larger_of_two_exact_one_sided_tests(d, margin):
    t = stats.tost_sign_flip(d, margin)
    assert t["p"] == pytest.approx(_brute_tost(d, margin))


def test_tost_shows_equivalence_only_inside_the_margin():
    d = [0.1, -0.2, 0.05, 0.15, -0.1, 0.0, 0.2, -0.05]
    assert stats.tost_sign_flip(d, 1.0)["p"] == pytest.approx(2 ** -8)  # every pair inside
    assert stats.tost_sign_flip([x + 3 for x in d], 1.0)["p"] == 1.0  # every pair beyond
    with pytest.raises(ValueError):
        stats.tost_sign_flip(d, 0.0)


def test_two_sided_holm_family_is_holms_worked_example_with_directions():
    # Holm's step-down on p = (0.01, 0.04, 0.03, 0.005) at alpha 0.05 rejects the 1st and 4th
    # (0.005 * 4 = 0.02, 0.01 * 3 = 0.03, then 0.03 * 2 = 0.06 > 0.05: stop)
    v = stats.two_sided_verdicts([0.01, 0.04, 0.03, 0.005], [-1, -1, 1, 1],
                                 ["lower", "lower", "lower", "lower"])
    assert [r["p_holm"] for r in v] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [r["verdict"] for r in v] == ["held", "inconclusive", "inconclusive", "opposite"]
    v = stats.two_sided_verdicts([math.nan, 0.01], [0, 1], ["lower", "higher"])
    assert [r["verdict"] for r in v] == ["not measured", "held"]
    assert v[1]["p_holm"] == pytest.approx(0.02)  # the unmeasured claim still counts in m


def test_fd_auc_is_the_hand_computed_trapezoid():
    curve = {500: 200.0, 1000: 100.0, 1500: 60.0, 2000: 50.0}
    # (500 (200 + 100) / 2 + 500 (100 + 60) / 2 + 500 (60 + 50) / 2) / 1500 = 95
    assert analysis.fd_auc(curve, [500, 1000, 1500, 2000], fill=1e3) == pytest.approx(95.0)
    # a run stopped after 1000: the missing steps count as the fill value
    short = {500: 200.0, 1000: 100.0}
    # (500 * 150 + 500 * 550 + 500 * 1000) / 1500 = 566.67
    assert analysis.fd_auc(short, [500, 1000, 1500, 2000], 1e3) == pytest.approx(1700 / 3)
    # uneven last interval (3,500 steps measured every 1,000: 1000, 2000, 3000, 3500)
    assert analysis.planned_steps(3500, 1000) == [1000, 2000, 3000, 3500]
    c = {1000: 90.0, 2000: 70.0, 3000: 50.0, 3500: 40.0}
    want = (1000 * 80 + 1000 * 60 + 500 * 45) / 2500
    assert analysis.fd_auc(c, [1000, 2000, 3000, 3500], 1e3) == pytest.approx(want)


def test_iterations_to_threshold_and_right_censoring():
    c = {500: 200.0, 1000: 59.0, 1500: 61.0, 2000: 40.0}
    assert analysis.iters_to(c, 60.0, 4000) == 1000
    assert analysis.iters_to(c, 40.0, 4000) == 2000   # <= is reached
    assert analysis.iters_to(c, 30.0, 4000) == 4000   # never: the registered ceiling
    assert analysis.iters_to({500: None, 1000: 20.0}, 60.0, 4000) == 1000


@pytest.mark.parametrize("outcome,fd,classes,want", [
    ("finished", 157.6, 9, False),    # at the limits: not collapsed
    ("finished", 157.7, 10, True),    # FD over 2 x 78.8
    ("finished", 40.0, 8, True),      # fewer than 9 classes
    ("nonfinite", 40.0, 10, True),    # stopped on a non-finite loss
    ("finished", None, 10, True)])    # no finite final FD
def test_collapse_rule(outcome, fd, classes, want):
    assert analysis.is_collapsed(outcome, fd, classes, RULE) is want


def test_spread_across_settings():
    assert analysis.spread([40.0, 55.0, 47.0]) == 15.0
    assert analysis.spread([40.0, 55.0, 47.0], "sd") == pytest.approx(np.std([40, 55, 47],
                                                                             ddof=1))


def _result(fds, outcome="finished", classes=10):
    nums = {str(s): {"fd": v, "classes": classes} for s, v in fds.items()}
    return {"numbers": nums, "final_step": max(fds), "outcome": outcome}


def test_run_metrics_of_a_results_file():
    m = analysis.run_metrics(_result({500: 200.0, 1000: 100.0, 1500: 60.0, 2000: 50.0}),
                             ANALYSIS, steps=2000, every=500)
    assert m == {"fd_final": 50.0, "classes_final": 10.0, "fd_auc": pytest.approx(95.0),
                 "iters_to_fd": 1500.0, "collapsed": 0.0}
    stopped = analysis.run_metrics(_result({500: 200.0}, "nonfinite"), ANALYSIS,
                                   steps=2000, every=500)
    assert stopped["collapsed"] == 1.0 and stopped["fd_final"] == 1000.0
    assert stopped["iters_to_fd"] == 4000.0
    # a run as long as the ceiling has no iters_to_fd ('never reached' would be ambiguous)
    long = analysis.run_metrics(_result({2000: 70.0, 4000: 50.0}), ANALYSIS, steps=4000,
                                every=2000)
    assert np.isnan(long["iters_to_fd"]) and long["fd_final"] == 50.0


def test_one_sided_family_of_derived_metrics_is_v2s_rule():
    """``family = "one-sided"`` gives the Holm p and verdicts of v2's
    probes.core.stats.primary_verdicts on the same differences."""
    rng = np.random.default_rng(1)
    tables = {"g": {arm: {s: {"fd_final": float(v), "fd_auc": float(w)}
                          for s, v, w in zip(range(10), rng.normal(mu, 3, 10),
                                             rng.normal(mu * 2, 5, 10))}
                    for arm, mu in (("a", 32.0), ("b", 40.0))}}
    claims = {"alpha": 0.05, "claims": [
        {"id": f"P{i}", "kind": "primary", "group": "g", "metric": m, "a": "a", "b": "b",
         "expect": e, "seeds": list(range(10))}
        for i, (m, e) in enumerate([("fd_final", "lower"), ("fd_auc", "higher")])]}
    ev = analysis.evaluate(tables, claims, ANALYSIS, {"primary_allowed": True})
    diffs = [[tables["g"]["a"][s][m] - tables["g"]["b"][s][m] for s in range(10)]
             for m in ("fd_final", "fd_auc")]
    want = stats.primary_verdicts(diffs, ["lower", "higher"])
    assert [r["p_holm"] for r in ev["primary"]] == pytest.approx([w["p_holm"] for w in want])
    assert [r["verdict"] for r in ev["primary"]] == [w["verdict"] for w in want]
    assert {w["verdict"] for w in want} == {"held", "opposite"}
