"""Seed-paired statistics for the claims table: means with t-intervals, paired differences,
effect sizes and a verdict that says "inconclusive" when the data do.

Arms are paired by seed (same initialisation, data order and latents), so the comparison of
arm A with arm B is the mean of the per-seed differences ``A_s - B_s``, with a Student-t 95%
interval over seeds and Cohen's ``d_z`` (mean difference / sd of differences). With 3 seeds
the t quantile is 4.30: intervals are wide, and the verdict says so rather than guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile (scipy, imported lazily)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean and t-interval of ``values`` (NaN interval for n < 2)."""
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    mean = float(v.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": n}
    sd = float(v.std(ddof=1))
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": n}


def paired(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> dict:
    """Paired comparison of two arms keyed by seed: ``A - B`` over the seeds both have.

    Returns mean difference with its t-interval, Cohen's ``d_z``, the per-seed differences and
    how many of them are positive.
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("no seed in common between the two arms")
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    out = mean_ci(diffs, level)
    sd = out["sd"]
    out["d_z"] = out["mean"] / sd if sd and sd > 0 else math.nan
    out["diffs"] = dict(zip(seeds, diffs))
    out["positive"] = sum(d > 0 for d in diffs)
    return out


def verdict(diff: Mapping[str, float], expect: str) -> str:
    """``held`` / ``opposite`` / ``inconclusive`` for a claimed sign of ``A - B``.

    ``expect`` is ``"lower"`` (A below B, e.g. FD) or ``"higher"`` (e.g. sparsity). A claim
    holds when the whole interval lies on the claimed side of 0; it is ``opposite`` when the
    whole interval lies on the other side; otherwise the seeds cannot tell.
    """
    if expect not in ("lower", "higher"):
        raise ValueError(f"expect must be 'lower' or 'higher', got {expect!r}")
    lo, hi = diff["lo"], diff["hi"]
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    below, above = hi < 0, lo > 0
    if (expect == "lower" and below) or (expect == "higher" and above):
        return "held"
    if (expect == "lower" and above) or (expect == "higher" and below):
        return "opposite"
    return "inconclusive"
