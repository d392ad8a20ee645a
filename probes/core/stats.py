"""Seed-paired statistics for the claims tables: t-intervals and ``d_z`` to describe a
difference, an exact sign-flip test and Holm's adjustment to decide one.

Arms are paired by seed (same initialisation, data order and latents), so the comparison of
arm A with arm B is the mean of the per-seed differences ``d_s = A_s - B_s``.

- **Description**: mean difference with a Student-t 95% interval over seeds and Cohen's
  ``d_z`` (mean / sd of the differences). The t-interval assumes normal differences, which a
  handful of seeds cannot check.
- **Decision** (:func:`primary_verdicts`): the exact paired sign-flip (permutation) test. Under
  "no effect" each ``d_s`` is as likely to be ``+|d_s|`` as ``-|d_s|``; the p-value is the
  share of all ``2^n`` sign patterns whose sum is at least the observed one. It assumes only
  that symmetry, but it is discrete: one-sided it cannot go below ``2^-n`` (1/32 at 5 seeds,
  1/256 at 8), two-sided ``2^(1-n)``. Across a family of primary claims the p-values are
  Holm-adjusted (familywise error at most ``alpha`` under any dependence between claims).
- **Zero variance** (all differences equal, e.g. a saturated mode count): the interval has
  zero width and says nothing about the spread between seeds; the verdict is "inconclusive".
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

    Returns mean difference with its t-interval, Cohen's ``d_z``, the per-seed differences, how
    many of them are positive, whether they all are equal (``zero_variance``) and the exact
    sign-flip p-values of ``A - B`` (:func:`sign_flip_p`): ``p_greater``, ``p_less``,
    ``p_two_sided`` (NaN beyond :data:`EXACT_MAX_PAIRS` seeds).
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("no seed in common between the two arms")
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    out = mean_ci(diffs, level)
    sd = out["sd"]
    out["zero_variance"] = zero_variance(diffs)
    out["d_z"] = out["mean"] / sd if sd > 0 and not out["zero_variance"] else math.nan
    out["diffs"] = dict(zip(seeds, diffs))
    out["positive"] = sum(d > 0 for d in diffs)
    for alt in ALTERNATIVES:  # beyond EXACT_MAX_PAIRS seeds the t-interval has to do
        out[f"p_{alt.replace('-', '_')}"] = (float(sign_flip_p(diffs, alt))
                                             if len(diffs) <= EXACT_MAX_PAIRS else math.nan)
    return out


def verdict(diff: Mapping[str, float], expect: str) -> str:
    """``held`` / ``opposite`` / ``inconclusive`` for a claimed sign of ``A - B``.

    ``expect`` is ``"lower"`` (A below B, e.g. FD) or ``"higher"`` (e.g. sparsity). This is the
    *descriptive* verdict of one t-interval, uncorrected for multiplicity: a claim holds when
    the whole interval lies on the claimed side of 0, it is ``opposite`` when the whole interval
    lies on the other side; otherwise, and when the interval has zero width (all differences
    equal: zero variance), the seeds cannot tell. Registered primary claims are decided by
    :func:`primary_verdicts` instead.
    """
    _check_expect(expect)
    lo, hi = diff["lo"], diff["hi"]
    if math.isnan(lo) or math.isnan(hi) or not hi > lo:
        return "inconclusive"
    below, above = hi < 0, lo > 0
    if (expect == "lower" and below) or (expect == "higher" and above):
        return "held"
    if (expect == "lower" and above) or (expect == "higher" and below):
        return "opposite"
    return "inconclusive"


ALTERNATIVES = ("greater", "less", "two-sided")
EXACT_MAX_PAIRS = 40  # 2 x 2^20 half-sums (see _count_at_least): exact, ~0.1 s a row up to here
_DIRECT_MAX_PAIRS = 16  # enumerate all 2^n patterns as one matrix up to here (8 MiB per row)


def _check_expect(expect: str) -> None:
    if expect not in ("lower", "higher"):
        raise ValueError(f"expect must be 'lower' or 'higher', got {expect!r}")


def zero_variance(diffs: Sequence[float]) -> bool:
    """True when all differences are equal (to 1e-12 of their size), including all zero.

    Such differences give a zero-width t-interval and no information on how seeds spread, so
    no verdict can rest on them.
    """
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    if d.size == 0 or np.isnan(d).any():
        return False
    return bool(np.ptp(d) <= 1e-12 * np.abs(d).max())


def _patterns(n: int) -> np.ndarray:
    """All ``2^n`` sign patterns ``(2^n, n)`` of +-1 (row k: the bits of k)."""
    bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    return (2 * bits - 1).astype(np.float64)


def _count_at_least(absd: np.ndarray, t: np.ndarray, *,
                    direct_max: int = _DIRECT_MAX_PAIRS) -> np.ndarray:
    """How many of the ``2^n`` signed sums ``sum_i s_i |d_i|`` are ``>= t``, exactly.

    ``absd`` is ``(rows, n)``, ``t`` is ``(rows,)``. Up to ``direct_max`` pairs every pattern
    is enumerated at once (vectorised over rows); beyond, the sums of the two halves are
    enumerated separately and matched by binary search ("meet in the middle"), which stays
    exact with ``2 x 2^(n/2)`` memory instead of ``2^n``.
    """
    rows, n = absd.shape
    if n <= direct_max:
        sums = absd @ _patterns(n).T  # (rows, 2^n)
        return (sums >= t[:, None]).sum(axis=1)
    h = n // 2
    out = np.empty(rows, dtype=np.int64)
    for r in range(rows):
        left = absd[r, :h] @ _patterns(h).T  # (2^h,)
        right = np.sort(absd[r, h:] @ _patterns(n - h).T)  # (2^(n-h),)
        # a + b >= t  <=>  b >= t - a: the right sums from searchsorted(t - a) on qualify
        out[r] = (right.size - np.searchsorted(right, t[r] - left, side="left")).sum()
    return out


def sign_flip_p(diffs, alternative: str = "greater"):
    """Exact paired sign-flip (permutation) p-value of the mean of ``diffs``.

    Every one of the ``2^n`` patterns of signs on ``|d_i|`` is equally likely under the null
    (differences symmetric about 0: no effect), so the p-value is the share of patterns whose
    sum is at least as extreme as the observed sum ``sum_i d_i``. The observed pattern is one
    of them, so one-sided ``p >= 2^-n`` (1/32 at 5 pairs), two-sided ``p >= 2^(1-n)``. Sums
    within 1e-12 of ``sum |d_i|`` of the observed one count as ties (as extreme). Matches
    ``scipy.stats.permutation_test(..., permutation_type="samples", n_resamples=inf)``.

    Args:
        diffs: per-pair differences ``(n,)`` or a batch of them ``(..., n)``; 1 <= n <= 30.
        alternative: ``"greater"`` (mean > 0), ``"less"`` (mean < 0) or ``"two-sided"``
            (``min(1, 2 min(p_greater, p_less))``, which for this symmetric null is the share
            of patterns with ``|sum| >=`` the observed ``|sum|``).

    Returns:
        float for ``(n,)`` input, else an array of shape ``(...)``; NaN where a row has NaN.

    Examples:
        >>> sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0])   # all positive: the floor 2^-5
        0.03125
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim == 0 or d.shape[-1] == 0:
        raise ValueError("sign_flip_p needs at least one difference")
    n = d.shape[-1]
    if n > EXACT_MAX_PAIRS:
        raise ValueError(f"exact sign-flip test enumerates at most {EXACT_MAX_PAIRS} pairs, "
                         f"got {n}")
    flat = d.reshape(-1, n)
    bad = np.isnan(flat).any(axis=1)
    flat = np.where(bad[:, None], 0.0, flat)
    absd = np.abs(flat)
    obs = flat.sum(axis=1)
    tol = 1e-12 * absd.sum(axis=1)
    total = 2.0 ** n
    # the null is symmetric (pattern <-> its negation), so #{S <= s} = #{S >= -s}
    p_greater = _count_at_least(absd, obs - tol) / total
    p_less = _count_at_least(absd, -obs - tol) / total
    p = {"greater": p_greater, "less": p_less,
         "two-sided": np.minimum(1.0, 2 * np.minimum(p_greater, p_less))}[alternative]
    p = np.where(bad, np.nan, p)
    return float(p[0]) if d.ndim == 1 else p.reshape(d.shape[:-1])


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family (same order as given).

    Sorted ascending, ``p_(j)`` (j = 1..m) becomes ``max_{k <= j} min(1, (m - k + 1) p_(k))``:
    a claim is rejected at level ``alpha`` when its adjusted p is ``<= alpha``, which keeps
    the chance of any false rejection in the family at most ``alpha``. The adjusted values are
    monotone in the raw ones. A NaN (claim not measured) still counts in ``m`` and is ordered
    as p = 1, so dropping a claim cannot make the others easier to pass; it stays NaN.

    Examples:
        >>> holm([0.01, 0.04, 0.03, 0.005]).tolist()
        [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    m = p.size
    if m == 0:
        return p.copy()
    nan = np.isnan(p)
    filled = np.where(nan, 1.0, p)
    if (filled < 0).any() or (filled > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(filled, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * filled[order])
    out = np.empty(m)
    out[order] = np.minimum(1.0, stepped)
    out[nan] = np.nan
    return out


def primary_verdicts(diffs: Sequence[Sequence[float] | None], expects: Sequence[str], *,
                     alpha: float = 0.05) -> list[dict]:
    """Verdicts of one family of primary claims, each a set of seed-paired differences.

    **The verdict rests on the exact one-sided sign-flip test** (:func:`sign_flip_p`) in the
    registered direction, Holm-adjusted across the family (:func:`holm`); the t-interval and
    ``d_z`` describe the difference but decide nothing. A claim is

    - ``held`` when its Holm-adjusted p in the registered direction is ``<= alpha``;
    - ``opposite`` when the Holm-adjusted p of the reverse direction (the same family tested
      the other way) is ``<= alpha``;
    - ``inconclusive`` otherwise, and always when its differences have zero variance or there
      are fewer than 2 of them; such a claim enters Holm as p = 1 (it counts in ``m`` but
      lends no rejection to the others);
    - ``not measured`` when ``diffs`` is None or empty (also p = 1 in the family).

    With ``n`` pairs nothing can be held unless ``2^-n <= alpha / m`` (the first Holm step):
    with 6 claims at alpha 0.05, 7 pairs at the very least, 8 to leave room for one seed
    against the grain.

    Args:
        diffs: per claim, its differences ``A_s - B_s`` over seeds (any length, 2..30), or None.
        expects: per claim, ``"lower"`` (A - B < 0 claimed) or ``"higher"``.
        alpha: familywise error level.

    Returns:
        per claim ``{"n", "p" (one-sided exact, registered direction), "p_holm", "p_reverse",
        "p_reverse_holm", "zero_variance", "verdict"}``.
    """
    if len(diffs) != len(expects):
        raise ValueError(f"{len(diffs)} sets of differences for {len(expects)} claims")
    rows = []
    for d, expect in zip(diffs, expects):
        _check_expect(expect)
        d = None if d is None else np.asarray(d, dtype=np.float64).reshape(-1)
        if d is None or d.size == 0:
            rows.append({"n": 0, "p": math.nan, "p_reverse": math.nan, "zero_variance": False,
                         "judged": False, "verdict": "not measured"})
            continue
        sign = -1.0 if expect == "lower" else 1.0  # test sign * d > 0
        zv = zero_variance(d)
        rows.append({"n": int(d.size), "p": float(sign_flip_p(sign * d, "greater")),
                     "p_reverse": float(sign_flip_p(sign * d, "less")), "zero_variance": zv,
                     "judged": d.size >= 2 and not zv and not np.isnan(d).any(),
                     "verdict": "inconclusive"})
    for key in ("p", "p_reverse"):
        adjusted = holm([r[key] if r["judged"] else 1.0 for r in rows])
        for r, q in zip(rows, adjusted):
            r[f"{key}_holm"] = float(q) if r["judged"] else math.nan
    for r in rows:
        if r.pop("judged"):
            if r["p_holm"] <= alpha:
                r["verdict"] = "held"
            elif r["p_reverse_holm"] <= alpha:
                r["verdict"] = "opposite"
    return rows


def sign_flip_power(effect: float, sd: float, n: int, *, alpha: float = 0.05,
                    alternative: str = "greater", sims: int = 2000, seed: int = 0) -> float:
    """Power of the exact one-sample sign-flip test (:func:`sign_flip_p`) by simulation.

    The ``n`` paired differences are drawn ``N(effect, sd^2)`` (the t-test's model; the
    sign-flip test itself assumes only symmetry under the null); the power is the share of
    ``sims`` simulated studies with ``p <= alpha``. For a claim at Holm's first step among
    ``m`` primaries pass ``alpha / m`` (the smallest p must clear it; later steps are easier,
    so this is the conservative size for the claim tested first). The simulation's standard
    error is ``sqrt(power (1 - power) / sims)`` (0.009 at power 0.8 and 2,000 sims).

    Args:
        effect: the true mean difference, in the metric's units and the direction tested
            (positive for ``"greater"``).
        sd: the standard deviation of a pair's difference (e.g. from a pilot or an earlier
            study), same units.
        n: pairs (seeds), ``1 <= n <= EXACT_MAX_PAIRS``.
        alpha, alternative: as in :func:`sign_flip_p`.
        sims, seed: simulated studies and their numpy seed (reproducible).
    """
    if sd <= 0 or sims < 1:
        raise ValueError(f"need sd > 0 and sims >= 1, got sd={sd}, sims={sims}")
    d = np.random.default_rng(seed).normal(effect, sd, size=(sims, n))
    return float((sign_flip_p(d, alternative) <= alpha + 1e-12).mean())


def pairs_for_power(effect: float, sd: float, *, power: float = 0.8, alpha: float = 0.05,
                    alternative: str = "greater", sims: int = 2000, seed: int = 0,
                    n_max: int = EXACT_MAX_PAIRS) -> dict[str, float]:
    """The smallest number of pairs whose simulated :func:`sign_flip_power` reaches
    ``power``, searched upwards from 2 (every n simulated with the same ``seed``).

    Returns ``{"n", "power"}`` (``n`` is NaN when even ``n_max`` pairs fall short), plus
    ``"normal_n"``, the normal-approximation answer ``((z_(1-alpha) + z_power) sd /
    effect)^2`` for comparison (the exact test, discrete and distribution-free, needs a pair
    or two more).
    """
    from scipy.stats import norm

    normal = ((norm.ppf(1 - alpha) + norm.ppf(power)) * sd / effect) ** 2
    for n in range(2, n_max + 1):
        pw = sign_flip_power(effect, sd, n, alpha=alpha, alternative=alternative, sims=sims,
                             seed=seed)
        if pw >= power:
            return {"n": n, "power": pw, "normal_n": float(normal)}
    return {"n": math.nan, "power": pw, "normal_n": float(normal)}


# ---- v3: paired binary outcomes, equivalence, one two-sided family, bounded intervals


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float]:
    """Exact two-sided McNemar test of paired binary outcomes ``a_s``, ``b_s`` (e.g.
    "collapsed" of arm A and arm B on the same seed and setting).

    Only the discordant pairs inform: ``n10`` (A yes, B no) and ``n01`` (A no, B yes). Under
    "no effect" each discordant pair is ``n10`` with probability 1/2, so the p-value is the
    exact two-sided binomial p of ``n10`` in ``n10 + n01`` trials at 1/2 (as
    ``scipy.stats.binomtest(n10, n10 + n01, 0.5).pvalue``: ``min(1, 2 P(X <= min))`` for this
    symmetric null); 1 with no discordant pair. The effect is ``(n10 - n01) / n``: the
    difference of the two proportions (A's rate minus B's), in [-1, 1].

    Returns ``{"n", "n10", "n01", "rate_a", "rate_b", "diff", "p"}``.
    """
    if len(a) != len(b) or not len(a):
        raise ValueError(f"need paired outcomes of equal length >= 1, got {len(a)}, {len(b)}")
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n10, n01, n = int((x & ~y).sum()), int((~x & y).sum()), int(x.size)
    k, m = min(n10, n01), n10 + n01
    p = 1.0 if m == 0 else min(1.0, 2 * math.fsum(math.comb(m, i) for i in range(k + 1))
                                 / 2.0 ** m)
    return {"n": n, "n10": n10, "n01": n01, "rate_a": float(x.mean()),
            "rate_b": float(y.mean()), "diff": (n10 - n01) / n, "p": p}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion ``k / n``: always inside [0, 1],
    ``lo = 0`` at ``k = 0`` and ``hi = 1`` at ``k = n``; coverage at least ``level``.

    ``lo`` is the ``(1 - level) / 2`` quantile of Beta(k, n - k + 1), ``hi`` the
    ``(1 + level) / 2`` quantile of Beta(k + 1, n - k) (scipy, imported lazily); ``(nan,
    nan)`` for ``n = 0``.
    """
    from scipy.stats import beta

    if n == 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    tail = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k))
    return lo, hi


def paired_bootstrap_ci(diffs: Sequence[float], *, level: float = 0.95, lo_bound: float =
                        -math.inf, hi_bound: float = math.inf, resamples: int = 10_000,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences (seeds resampled with
    replacement, numpy generator ``seed``: reproducible). A mean of values in ``[lo_bound,
    hi_bound]`` stays there, so the interval of a bounded metric (a difference of shares,
    a class count) stays in range, unlike a t-interval."""
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    if d.size < 2:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(max(lo, lo_bound)), float(min(hi, hi_bound))


def tost_sign_flip(diffs: Sequence[float], margin: float) -> dict[str, float]:
    """Equivalence of two paired arms within ``+-margin`` (TOST, two one-sided tests), each
    an exact sign-flip test (:func:`sign_flip_p`) of the shifted differences: ``d + margin``
    greater than 0 and ``d - margin`` less than 0. ``p = max`` of the two: equivalence is
    shown at level alpha when ``p <= alpha`` (the ``1 - 2 alpha`` interval lies inside the
    margin). The margin is registered in advance; no equivalence is stated without it.

    Returns ``{"p_lower", "p_upper", "p"}``."""
    if not margin > 0:
        raise ValueError(f"an equivalence margin must be > 0, got {margin!r}")
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    lower = float(sign_flip_p(d + margin, "greater"))
    upper = float(sign_flip_p(d - margin, "less"))
    return {"p_lower": lower, "p_upper": upper, "p": max(lower, upper)}


def two_sided_verdicts(pvalues: Sequence[float], signs: Sequence[float], expects:
                       Sequence[str], *, alpha: float = 0.05) -> list[dict]:
    """Verdicts of ONE two-sided Holm family (a plan's ``family = "two-sided"``; the default
    is :func:`primary_verdicts`' one-sided "held" family plus its reverse family).

    Each claim brings its two-sided p (NaN: not measured, counted as p = 1) and the sign of
    its estimate (A - B). All are Holm-adjusted together (:func:`holm`); a claim whose Holm p
    is ``<= alpha`` is ``held`` when its sign is the registered one and ``opposite`` when it is
    not, else ``inconclusive``. Holm on two-sided p with the direction read from the sign
    keeps the chance of any false rejection, in either direction, at most ``alpha`` for
    these tests (Holm's directional extension; Shaffer 1980 for independent tests).

    Returns per claim ``{"p", "p_holm", "verdict"}``."""
    if not len(pvalues) == len(signs) == len(expects):
        raise ValueError("one p-value, sign and expectation per claim")
    adj = holm([1.0 if math.isnan(p) else p for p in pvalues])
    rows = []
    for p, s, e, q in zip(pvalues, signs, expects, adj):
        _check_expect(e)
        v = "not measured" if math.isnan(p) else "inconclusive"
        if not math.isnan(p) and q <= alpha and s != 0:
            v = "held" if (s < 0) == (e == "lower") else "opposite"
        rows.append({"p": p, "p_holm": math.nan if math.isnan(p) else float(q), "verdict": v})
    return rows
