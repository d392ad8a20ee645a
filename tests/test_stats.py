"""Paired statistics: intervals and exact sign-flip p-values against scipy, Holm by hand,
verdicts, and by simulation the verdict rates under no effect and under a large one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from probes.core.stats import (
    _count_at_least,
    holm,
    mean_ci,
    paired,
    primary_verdicts,
    sign_flip_p,
    verdict,
    zero_variance,
)


def test_mean_ci_matches_scipy_t_interval():
    x = [1.0, 2.5, 2.0, 4.0]
    ours = mean_ci(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert ours["lo"] == pytest.approx(lo) and ours["hi"] == pytest.approx(hi)


def test_single_value_has_no_interval():
    out = mean_ci([3.0])
    assert out["mean"] == 3.0 and math.isnan(out["lo"])


def test_paired_uses_only_common_seeds_and_pairs_them():
    a = {0: 10.0, 1: 20.0, 2: 30.0, 3: 99.0}
    b = {0: 8.1, 1: 18.0, 2: 27.9}
    out = paired(a, b)
    assert out["diffs"] == pytest.approx({0: 1.9, 1: 2.0, 2: 2.1})
    assert out["mean"] == pytest.approx(2.0) and out["positive"] == 3
    assert out["d_z"] == pytest.approx(2.0 / 0.1)
    # pairing removes the large between-seed spread an unpaired test would see
    unpaired = stats.ttest_ind([10, 20, 30], [8.1, 18.0, 27.9]).pvalue
    paired_p = stats.ttest_rel([10, 20, 30], [8.1, 18.0, 27.9]).pvalue
    assert paired_p < 0.05 < unpaired


@pytest.mark.parametrize("lo,hi,expect,word", [
    (-3, -1, "lower", "held"), (1, 3, "lower", "opposite"), (-1, 1, "lower", "inconclusive"),
    (1, 3, "higher", "held"), (-3, -1, "higher", "opposite"), (math.nan, math.nan, "higher",
                                                               "inconclusive"),
    (2, 2, "higher", "inconclusive"),
], ids=["lower-held", "lower-opposite", "straddles", "higher-held", "higher-opposite", "nan",
        "zero-width"])
def test_verdict(lo, hi, expect, word):
    assert verdict({"lo": lo, "hi": hi}, expect) == word


def test_identical_differences_are_inconclusive_never_held():
    a, b = {s: 10.0 + s for s in range(8)}, {s: 9.0 + s for s in range(8)}  # every d = 1
    d = paired(a, b)
    assert d["zero_variance"] and d["lo"] == d["hi"] == pytest.approx(1.0)
    assert math.isnan(d["d_z"])
    assert verdict(d, "higher") == "inconclusive"
    (row,) = primary_verdicts([list(d["diffs"].values())], ["higher"])
    assert row["zero_variance"] and row["verdict"] == "inconclusive"
    assert row["p"] == pytest.approx(2 ** -8)  # the exact p is reported, not used
    assert zero_variance([0.0, 0.0]) and not zero_variance([1.0, 1.0 + 1e-6])


def _scipy_sign_flip(d, alternative):
    d = np.asarray(d)
    res = stats.permutation_test((d, np.zeros_like(d)), lambda x, y, axis: np.mean(x - y, axis),
                                 permutation_type="samples", n_resamples=np.inf,
                                 alternative=alternative, vectorized=True)
    return res.pvalue


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("n", [3, 5, 8, 11])
def test_sign_flip_p_matches_scipy_exact_permutation_test(n, alternative):
    rng = np.random.default_rng(n)
    for shift in (0.0, 0.4, -1.0):
        d = rng.normal(shift, 1.0, n)
        assert sign_flip_p(d, alternative) == pytest.approx(_scipy_sign_flip(d, alternative),
                                                            abs=1e-12)


def test_sign_flip_p_counts_ties_as_extreme():
    d = [1.0, 1.0, 2.0, -1.0]  # integer sums: many patterns tie with the observed 3
    for alt in ("greater", "less", "two-sided"):
        assert sign_flip_p(d, alt) == pytest.approx(_scipy_sign_flip(d, alt))
    # |d| = 1, 1, 2, 1: sum 5 once, 3 by flipping any one of the three 1s: 4 of 16 patterns
    assert sign_flip_p(d, "greater") == pytest.approx(4 / 16)


def test_sign_flip_p_floor_is_two_to_the_minus_n():
    assert sign_flip_p([0.3, 1.0, 2.0, 0.1, 5.0]) == 1 / 32  # 5 seeds: 1/32 at best
    assert sign_flip_p([0.3, 1.0, 2.0, 0.1, 5.0], "two-sided") == 2 / 32
    assert sign_flip_p(-np.arange(1.0, 9.0), "less") == 1 / 256
    # no Holm threshold for 6 claims admits 1/32: five seeds can never hold a primary claim
    rows = primary_verdicts([np.full(5, 3.0) + np.arange(5)] * 6, ["higher"] * 6)
    assert all(r["p"] == 1 / 32 and r["p_holm"] == 6 / 32 for r in rows)
    assert {r["verdict"] for r in rows} == {"inconclusive"}


def test_sign_flip_batches_and_halves_agree_with_direct_enumeration():
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 1.0, (7, 12))
    batch = sign_flip_p(d, "greater")
    assert batch.shape == (7,)
    assert batch == pytest.approx([sign_flip_p(row, "greater") for row in d])
    absd, t = np.abs(d), d.sum(1) - 1e-12 * np.abs(d).sum(1)
    assert (_count_at_least(absd, t, direct_max=0) == _count_at_least(absd, t)).all()
    # beyond 16 pairs sign_flip_p meets in the middle: the same counts as all 2^18 patterns
    d18 = rng.normal(0.5, 1.0, (1, 18))
    absd, t = np.abs(d18), d18.sum(1) - 1e-12 * np.abs(d18).sum(1)
    assert _count_at_least(absd, t) == _count_at_least(absd, t, direct_max=18)
    assert sign_flip_p(d18[0]) == _count_at_least(absd, t, direct_max=18)[0] / 2 ** 18


def test_sign_flip_p_nan_and_errors():
    assert math.isnan(sign_flip_p([1.0, math.nan, 2.0]))
    with pytest.raises(ValueError, match="alternative"):
        sign_flip_p([1.0], "bigger")
    with pytest.raises(ValueError, match="at least one"):
        sign_flip_p([])
    with pytest.raises(ValueError, match="at most 40"):
        sign_flip_p(np.ones(41))




def test_paired_reports_exact_p_values():
    a = {s: float(s) + (0.5 if s != 3 else -0.2) for s in range(6)}
    b = {s: float(s) for s in range(6)}
    d = paired(a, b)
    diffs = np.array(list(d["diffs"].values()))
    assert d["p_greater"] == pytest.approx(_scipy_sign_flip(diffs, "greater"))
    assert d["p_less"] == pytest.approx(_scipy_sign_flip(diffs, "less"))
    assert d["p_two_sided"] == pytest.approx(_scipy_sign_flip(diffs, "two-sided"))
    lo, hi = stats.ttest_rel(list(a.values()), list(b.values())).confidence_interval()
    assert (d["lo"], d["hi"]) == pytest.approx((lo, hi))


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02, 0.02]) == pytest.approx([0.04, 0.04])  # ties
    assert holm([]).size == 0


def test_holm_is_monotone_and_never_below_raw():
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = rng.uniform(0, 0.2, 6)
        q = holm(p)
        order = np.argsort(p)
        assert (np.diff(q[order]) >= -1e-15).all() and (q >= p).all() and (q <= 1).all()


def test_holm_counts_a_missing_claim():
    q = holm([0.01, math.nan])
    assert q[0] == pytest.approx(0.02) and math.isnan(q[1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([1.5])


def test_primary_verdicts_words():
    strong = np.arange(1.0, 9.0)  # 8 seeds, all positive: p = 1/256
    rows = primary_verdicts([strong, -strong, [1.0, -1.0, 0.5, -0.5, 0.2, -0.3, 0.1, -0.1],
                             None, [1.0]], ["higher", "higher", "lower", "higher", "higher"])
    assert [r["verdict"] for r in rows] == ["held", "opposite", "inconclusive", "not measured",
                                            "inconclusive"]
    # five claims in the family; only three judged, but m = 5 for every one of them
    assert rows[0]["p_holm"] == pytest.approx(5 / 256)
    assert rows[1]["p_reverse_holm"] == pytest.approx(5 / 256)
    assert math.isnan(rows[3]["p_holm"]) and math.isnan(rows[4]["p_holm"])
    with pytest.raises(ValueError, match="expect"):
        primary_verdicts([strong], ["up"])


def _family_rates(rng, *, effect, n_seeds, families, m=6):
    """Share of families with any "held", share of claims held, and (for contrast) the share
    of families with any raw one-sided p <= 0.05."""
    any_held = held = any_raw = 0
    for _ in range(families):
        d = rng.normal(effect, 1.0, (m, n_seeds))  # effect in sd of the differences: d_z
        rows = primary_verdicts(list(d), ["higher"] * m)
        k = sum(r["verdict"] == "held" for r in rows)
        any_held += k > 0
        held += k
        any_raw += any(r["p"] <= 0.05 for r in rows)
    return any_held / families, held / (m * families), any_raw / families


def test_simulation_no_effect_holds_at_most_five_percent_of_families():
    families = 4000  # standard error of a 5% rate: 0.34 points
    any_held, _, any_raw = _family_rates(np.random.default_rng(2024), effect=0.0, n_seeds=8,
                                         families=families)
    assert any_held <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / families)
    # the uncorrected test would hold something in about 1 - 0.95^6 = 26% of families
    assert any_raw > 0.2
    # ... and the sign of an effect's direction must matter: a negative effect holds nothing
    neg, _, _ = _family_rates(np.random.default_rng(1), effect=-1.5, n_seeds=8, families=300)
    assert neg == 0.0


def test_simulation_large_effect_with_8_seeds_has_high_power():
    any_held, per_claim, _ = _family_rates(np.random.default_rng(7), effect=1.5, n_seeds=8,
                                           families=500)
    assert per_claim >= 0.9 and any_held >= 0.99
    # with 5 seeds the exact floor 1/32 > 0.05/6: no power at all, whatever the effect
    _, per_claim5, _ = _family_rates(np.random.default_rng(7), effect=5.0, n_seeds=5,
                                     families=100)
    assert per_claim5 == 0.0


def test_sign_flip_p_is_exact_beyond_30_pairs():
    """Equal |d| with k negative: p_greater = sum_{j <= k} C(n, j) / 2^n, analytically; n = 34
    goes through the meet-in-the-middle path beyond the old 30-pair cap."""
    from math import comb

    from probes.core.stats import sign_flip_p

    n = 34
    for k in (0, 5, 12):
        d = [1.0] * (n - k) + [-1.0] * k
        assert sign_flip_p(d, "greater") == pytest.approx(
            sum(comb(n, j) for j in range(k + 1)) / 2 ** n, rel=1e-12)


def test_sign_flip_power_against_the_normal_approximation_and_the_null():
    from scipy.stats import norm

    from probes.core.stats import pairs_for_power, sign_flip_power

    assert sign_flip_power(0.0, 1.0, 12, alpha=0.05, sims=4000, seed=1) <= 0.05 + 3 * 0.0035
    # moderate n: the sign-flip test is about as efficient as the z-test (Pitman efficiency 1)
    z = norm.cdf(0.7 * 16 ** 0.5 - norm.ppf(0.95))
    assert sign_flip_power(0.7, 1.0, 16, sims=2000, seed=2) == pytest.approx(z, abs=0.05)
    # the smallest n reaching the power (same simulation seed at every n); at few pairs the
    # exact test's discreteness (p >= 2^-n) costs pairs the normal approximation does not see
    found = pairs_for_power(1.2, 1.0, alpha=0.01, sims=800, seed=3)
    n = found["n"]
    assert found["normal_n"] <= n and found["power"] >= 0.8
    assert sign_flip_power(1.2, 1.0, n - 1, alpha=0.01, sims=800, seed=3) < 0.8
