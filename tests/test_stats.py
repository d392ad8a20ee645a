"""Paired statistics: intervals against scipy, effect sizes, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from probes.core.stats import mean_ci, paired, verdict


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
], ids=["lower-held", "lower-opposite", "straddles", "higher-held", "higher-opposite", "nan"])
def test_verdict(lo, hi, expect, word):
    assert verdict({"lo": lo, "hi": hi}, expect) == word
