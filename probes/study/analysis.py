"""Study v3's analysis: per-run numbers derived from a run's per-snapshot record (its results
file, :mod:`probes.study.snapshots`), and the registered claim tests on them.

A plan opts in with an ``[analysis]`` table (:mod:`probes.study.plan`); every threshold below
is a value of that table, none lives in code.

**Derived metrics** of one run (:func:`run_metrics`), from ``numbers = {step: {metric:
value}}`` and ``outcome`` of its results file:

- ``fd_final``, ``classes_final``: the numbers at the final (or last good) step.
- ``fd_auc``: the area under FD against iteration over the planned measured steps (every
  ``measure_every`` iterations and the last), by the trapezoid rule, divided by the span
  (last step - first step): a mean FD over training, in FD units; lower = converged sooner
  and/or better. A step with no number (after a non-finite stop, or an FD that was not
  finite) counts as ``fd_fill`` (registered, at least the largest FD any run may show), so a
  run that stops early is never rewarded for its short curve.
- ``iters_to_fd``: the first measured iteration with ``FD <= fd_threshold``; a run that never
  gets there is right-censored and set to ``iters_ceiling`` (registered, larger than the
  planned steps of the groups it is claimed on; a run of ``steps >= iters_ceiling`` has
  none: NaN). The paired sign-flip test of the differences stays exact: the same rule
  (``min(true time, ceiling)``) is applied to both arms, so under "no effect" (the arms
  exchangeable within a seed) the recorded differences are still symmetric about 0. A pair
  with one censored run keeps the true sign of its difference with a magnitude no larger
  than the truth; a pair with both censored is a 0 (no information). Censoring thus shrinks
  differences toward 0 in both directions: it costs power, it never manufactures a sign.
- ``collapsed`` (1 or 0): the run stopped on a non-finite loss (``collapse.nonfinite``), or
  its final FD exceeds ``collapse.fd_max``, or fewer than ``collapse.min_classes`` classes
  hold at least the snapshot rule's 1 % share among its 2,000 fakes (``classes_final``).
- ``fd_spread`` (per seed, across the settings a claim names in ``groups``: the same seed
  trained under each setting is one unit): ``max - min`` of ``fd_final`` (``spread =
  "range"``) or its sample sd (``"sd"``); a collapsed (non-finite) run's FD counts as
  ``fd_fill``.
- A mixture group's final numbers (:func:`final_numbers`): its snapshot metrics
  (``modes``, ``high_quality_pct``, ``reverse_kl``, ``fidelity_cos``, ``fidelity_noise``) at
  the final step.

**Pooled settings** (a claim's ``groups``): the unit is still the **seed**. The runs of one
seed under two settings share their initial weights and data order, so they are not
independent pairs; a claim pooling settings takes, per seed, the mean of the metric over the
settings (for ``collapsed``: the share of the settings under which the run collapsed, in
[0, 1]) on the seeds trained under every one of them, and tests those per-seed values (a
McNemar test, one binary outcome per unit, cannot pool settings; the plan refuses it).

**Tests** of a claim (``test`` key; :mod:`probes.core.stats`): ``sign-flip`` (exact paired
sign-flip on ``a - b``), ``mcnemar`` (exact McNemar on a binary metric), ``tost``
(equivalence within the claim's registered ``margin``: the only way an equivalence is
stated). Family (``[claims] family``): ``two-sided`` (one Holm family over the two-sided p
of every primary claim, direction from the estimate's sign; :func:`probes.core.stats.
two_sided_verdicts`) or ``one-sided`` (the default rule: a one-sided family in the registered
direction and its reverse). Intervals: a t-interval for unbounded metrics (FD, FD-AUC,
iterations); a seeded paired bootstrap clipped to the metric's range for bounded ones
(classes, collapse rates); Clopper-Pearson for a single arm's collapse rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DERIVED = ("fd_final", "classes_final", "fd_auc", "iters_to_fd", "collapsed", "fd_spread")
# bounded metrics: the range of one run's value (a paired difference lies in +-width)
BOUNDS = {"classes_final": (0.0, 10.0), "collapsed": (0.0, 1.0)}
# gradient fidelity of a 2-D group (probes.measures.fidelity: mean cosine to the ideal
# direction, mean share of the gradient's energy orthogonal to it), a registered claim's metric
FIDELITY = ("fidelity_cos", "fidelity_noise")


def _curve(numbers: Mapping[str, Mapping[str, Any]], metric: str) -> dict[int, float | None]:
    """``{step: value}`` of ``metric`` (None where missing or not finite), steps ascending."""
    out = {}
    for s, row in sorted(numbers.items(), key=lambda kv: int(kv[0])):
        v = row.get(metric)
        out[int(s)] = float(v) if v is not None and math.isfinite(float(v)) else None
    return out


def planned_steps(steps: int, every: int) -> list[int]:
    """The steps a run of ``steps`` iterations is measured at (every ``every``, and the last)."""
    return sorted({*range(every, steps + 1, every), steps})


def fd_auc(curve: Mapping[int, float | None], steps: Sequence[int], fill: float) -> float:
    """Mean FD over ``steps`` (ascending, >= 2): trapezoid area of FD against iteration over
    the span ``steps[-1] - steps[0]``, divided by that span; a step missing from ``curve`` or
    None there counts as ``fill``. Units: FD."""
    if len(steps) < 2:
        raise ValueError(f"FD-AUC needs at least 2 measured steps, got {list(steps)}")
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray([fill if curve.get(s) is None else curve[s] for s in steps])
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    return area / float(x[-1] - x[0])


def iters_to(curve: Mapping[int, float | None], threshold: float, ceiling: int) -> int:
    """First step of ``curve`` with a value ``<= threshold``; ``ceiling`` when none (censored)."""
    for s in sorted(curve):
        if curve[s] is not None and curve[s] <= threshold:
            return int(s)
    return int(ceiling)


def is_collapsed(outcome: str, fd: float | None, classes: float | None,
                 rule: Mapping[str, Any]) -> bool:
    """The collapse rule (module docstring) on a run's outcome and final numbers; a missing
    final FD (non-finite) counts as collapsed."""
    if outcome == "nonfinite" and rule.get("nonfinite", True):
        return True
    if fd is None or fd > float(rule["fd_max"]):
        return True
    return classes is not None and classes < int(rule["min_classes"])


def spread(values: Sequence[float], how: str = "range") -> float:
    """``max - min`` (``"range"``) or sample sd (``"sd"``) of one seed's values across
    settings (>= 2)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        raise ValueError("a spread needs the seed under at least 2 settings")
    if how == "range":
        return float(v.max() - v.min())
    if how == "sd":
        return float(v.std(ddof=1))
    raise ValueError(f"spread must be 'range' or 'sd', got {how!r}")


def run_metrics(result: Mapping[str, Any], analysis: Mapping[str, Any], *, steps: int,
                every: int) -> dict[str, float]:
    """The derived metrics (module docstring) of one run's results file ``result``, measured
    every ``every`` of its ``steps`` planned iterations."""
    fd = _curve(result["numbers"], "fd")
    last = str(result["final_step"])
    final = result["numbers"].get(last, {})
    nonfinite = result.get("outcome") == "nonfinite"
    fd_final = None if nonfinite else final.get("fd")
    classes = final.get("classes")
    fill = float(analysis["fd_fill"])
    out = {"fd_final": fill if fd_final is None else float(fd_final),
           "classes_final": math.nan if classes is None else float(classes),
           "fd_auc": fd_auc(fd, planned_steps(steps, every), fill),
           "iters_to_fd": float(iters_to(fd, float(analysis["fd_threshold"]),
                                         int(analysis["iters_ceiling"])))
           if steps < int(analysis["iters_ceiling"]) else math.nan,
           "collapsed": float(is_collapsed(result.get("outcome", "finished"), fd_final,
                                           classes, analysis["collapse"]))}
    return out


def final_numbers(result: Mapping[str, Any]) -> dict[str, float]:
    """A (mixture) run's snapshot numbers at its final step, ``{metric: value}`` (NaN where
    the measure gave none)."""
    final = result["numbers"].get(str(result["final_step"]), {})
    return {m: math.nan if v is None else float(v) for m, v in final.items()}


# ---- claims on derived metrics


def claim_groups(claim: Mapping[str, Any]) -> list[str]:
    """The settings (groups) a claim pools (``groups``) or its one ``group``."""
    return list(claim["groups"]) if claim.get("groups") else [claim["group"]]


def unit_values(tables: Mapping, claim: Mapping[str, Any], arm: str,
                analysis: Mapping[str, Any]) -> dict[Any, float]:
    """``{seed: value}`` of ``arm`` for ``claim``, on the claim's registered seeds only.

    The unit is a seed (module docstring, pooled settings): for one group the seed's value;
    for several, the mean of the metric over the claim's groups, and for ``fd_spread`` the
    spread of ``fd_final`` across them, on the seeds with a value under every one of them."""
    groups, keep, metric = claim_groups(claim), set(claim["seeds"]), claim["metric"]
    if metric == "fd_spread":
        metric = "fd_final"
    by_group = {g: {s: float(m[metric]) for s, m in tables.get(g, {}).get(arm, {}).items()
                    if s in keep and metric in m and not math.isnan(m[metric])}
                for g in groups}
    seeds = sorted(set.intersection(*(set(v) for v in by_group.values())))
    if claim["metric"] == "fd_spread":
        how = analysis.get("spread", "range")
        return {s: spread([by_group[g][s] for g in groups], how) for s in seeds}
    return {s: float(np.mean([by_group[g][s] for g in groups])) for s in seeds}


def _interval(diffs: np.ndarray, metric: str, seed: int) -> tuple[float, float]:
    from probes.core.stats import mean_ci, paired_bootstrap_ci

    if metric in BOUNDS:
        lo, hi = BOUNDS[metric]
        return paired_bootstrap_ci(diffs, lo_bound=lo - hi, hi_bound=hi - lo, seed=seed)
    ci = mean_ci(diffs)
    return ci["lo"], ci["hi"]


def claim_numbers(a: Mapping[Any, float], b: Mapping[Any, float], claim: Mapping[str, Any],
               *, seed: int = 0) -> dict[str, Any]:
    """Numbers of one claim from its arms' unit values: ``n`` (pairs), ``mean_a``,
    ``mean_b``, ``diff`` (mean of ``a - b``), ``lo``, ``hi`` (95% interval, module
    docstring), ``p`` (two-sided for sign-flip and McNemar, the TOST p for tost),
    ``p_one`` / ``p_rev`` (one-sided in the registered direction / the other; NaN for
    tost), ``sign`` (of ``diff``)."""
    from probes.core.stats import mcnemar_exact, sign_flip_p, tost_sign_flip

    units = sorted(set(a) & set(b), key=str)
    row = {"n": len(units), "mean_a": math.nan, "mean_b": math.nan, "diff": math.nan,
           "lo": math.nan, "hi": math.nan, "p": math.nan, "p_one": math.nan, "p_rev": math.nan,
           "sign": 0.0}
    if not units:
        return row
    x, y = (np.asarray([v[u] for u in units]) for v in (a, b))
    d = x - y
    row.update(mean_a=float(x.mean()), mean_b=float(y.mean()), diff=float(d.mean()),
               sign=float(np.sign(d.mean())))
    row["lo"], row["hi"] = _interval(d, claim["metric"], seed)
    test = claim.get("test", "sign-flip")
    if test == "mcnemar":
        m = mcnemar_exact(x > 0.5, y > 0.5)
        row.update(p=m["p"], n10=m["n10"], n01=m["n01"])
    elif test == "tost":
        row["p"] = tost_sign_flip(d, float(claim["margin"]))["p"] if len(d) >= 1 else math.nan
        return row
    else:
        row["p"] = float(sign_flip_p(d, "two-sided"))
    alt = "less" if claim["expect"] == "lower" else "greater"
    rev = "greater" if alt == "less" else "less"
    row["p_one"], row["p_rev"] = (_one_sided(d, x, y, test, t) for t in (alt, rev))
    return row


def _one_sided(d: np.ndarray, x: np.ndarray, y: np.ndarray, test: str, alt: str) -> float:
    from probes.core.stats import sign_flip_p

    if test != "mcnemar":
        return float(sign_flip_p(d, alt))
    from scipy.stats import binomtest

    n10, n01 = int(((x > 0.5) & (y <= 0.5)).sum()), int(((x <= 0.5) & (y > 0.5)).sum())
    if n10 + n01 == 0:
        return 1.0
    return float(binomtest(n10, n10 + n01, 0.5, alternative=alt).pvalue)


def family_verdicts(rows: list[dict], *, family: str, alpha: float) -> None:
    """Set ``p_holm`` and ``verdict`` of the primary ``rows`` (one family, in place).

    ``two-sided``: every primary's p (two-sided, or TOST's) in one Holm family; a sign-flip
    or McNemar claim is ``held`` / ``opposite`` by the sign of its estimate
    (:func:`probes.core.stats.two_sided_verdicts`), a TOST claim ``equivalent`` or ``not
    shown``. ``one-sided``: the default rule, Holm over the one-sided p in the registered
    direction (``held``), and separately the reverse direction (``opposite``)."""
    from probes.core.stats import holm, two_sided_verdicts

    if family == "two-sided":
        vs = two_sided_verdicts([r["p"] for r in rows], [r["sign"] for r in rows],
                                [r.get("expect", "lower") if r["test"] != "tost" else "lower"
                                 for r in rows], alpha=alpha)
        for r, v in zip(rows, vs):
            r["p_holm"], r["verdict"] = v["p_holm"], v["verdict"]
            if r["test"] == "tost" and v["verdict"] != "not measured":
                r["verdict"] = "equivalent" if v["p_holm"] <= alpha else "not shown"
        return
    fwd = holm([1.0 if math.isnan(r["p_one"]) else r["p_one"] for r in rows])
    rev = holm([1.0 if math.isnan(r["p_rev"]) else r["p_rev"] for r in rows])
    for r, q, q_rev in zip(rows, fwd, rev):
        r["p_holm"] = float(q)
        r["verdict"] = ("not measured" if not r["n"] else "held" if q <= alpha
                        else "opposite" if q_rev <= alpha else "inconclusive")


def evaluate(tables: Mapping, claims: Mapping[str, Any], analysis: Mapping[str, Any],
             registration: Mapping[str, Any]) -> dict[str, list[dict]]:
    """Every claim's numbers (:func:`claim_numbers`) and the primary family's verdicts.

    ``tables``: ``{group: {arm: {seed: derived metrics}}}`` (:func:`run_metrics`);
    ``claims``: a plan's claims (:meth:`probes.study.plan.Plan.claims`, with ``family``);
    verdicts are ``not judged`` unless ``registration["primary_allowed"]``, and ``pending``
    while a primary claim has fewer pairs than its registered seeds give it.

    Returns ``{"primary", "secondary", "exploratory"}`` lists of rows in plan order."""
    rows = []
    for c in claims["claims"]:
        a = unit_values(tables, c, c["a"], analysis)
        b = unit_values(tables, c, c["b"], analysis)
        r = dict(c, test=c.get("test", "sign-flip"),
                 **claim_numbers(a, b, c, seed=int(analysis.get("bootstrap_seed", 0))))
        r["n_planned"] = len(c["seeds"])
        rows.append(r)
    prim = [r for r in rows if r["kind"] == "primary"]
    family_verdicts(prim, family=claims.get("family", "one-sided"), alpha=claims["alpha"])
    pending = any(r["n"] < r["n_planned"] for r in prim)
    for r in prim:
        if not registration.get("primary_allowed"):
            r["verdict"] = "not judged"
        elif pending:
            r["verdict"] = "pending"
    return {k: [r for r in rows if r["kind"] == k]
            for k in ("primary", "secondary", "exploratory")}
