"""Figures of the study that no single probe owns: the eps sweep (paper Fig. 3 analogue), a
metric-per-arm plot with every seed shown beside the arm mean, and sample grids of several
generators.

Each arm has a handful of seeds (3 in the shipped study), so the figures show the seeds
themselves (seaborn strip / scatter plots) and the mean with its Student-t 95% interval over
seeds (:func:`probes.core.stats.mean_ci`, the interval of the claims table); a box plot of 3
points would draw quartiles that do not exist. Figures are ``matplotlib.figure.Figure``
objects drawn with an explicit ``ax``: pyplot is never imported, so the global backend (a
notebook's inline one) is left alone (:mod:`asgan_base.figures`). matplotlib and seaborn are
imported lazily; colours are Okabe-Ito (colour-blind safe). Files are written atomically.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from asgan_base.eps import named
from asgan_base.figures import PALETTE, figure, save_figure


def _row(ncols: int, width: float, height: float):
    """``(fig, axes)``: a Figure of one row of ``ncols`` panels, each ``width`` x ``height``
    inches, at 130 dpi; ``axes`` is 1-D."""
    fig, axes = figure(1, ncols, figsize=(width * ncols, height), dpi=130, squeeze=False)
    return fig, axes[0]


def _save(fig, path: str | Path) -> Path:
    """``fig`` written to ``path`` atomically (a bad path is a one-line UserError); the one
    exit of this module's figures, which tests/test_viz_study.py wraps to inspect them."""
    return save_figure(fig, path)


def _ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% t-interval over seeds, NaN values dropped (NaN interval for n < 2)."""
    from probes.core.stats import mean_ci

    return mean_ci([v for v in values if not math.isnan(v)])


def _ci_bounds(values) -> tuple[float, float]:
    """seaborn's ``errorbar`` callable: a vector of seed values -> its 95% t-interval."""
    c = _ci(list(values))
    return c["lo"], c["hi"]


def _long(table: Mapping[str, Mapping[int, Mapping]], metric: str, arms: Sequence[str],
          x: Mapping[str, float] | None = None) -> dict[str, list]:
    """Long-form columns ``arm``, ``seed``, ``value`` (and ``x``, the arm's position when
    given) of one metric; NaN values are left out."""
    rows = [(arm, s, float(m[metric])) for arm in arms for s, m in sorted(table[arm].items())
            if not math.isnan(float(m[metric]))]
    out = {"arm": [r[0] for r in rows], "seed": [r[1] for r in rows],
           "value": [r[2] for r in rows]}
    if x is not None:
        out["x"] = [x[r[0]] for r in rows]
    return out


# the eps unit of an arm's number (``asgan-eps0.5``: 0.5/255, 0.5 std or 0.5/255 of the old 2-D
# plotting box), for the axis label and the values' labels (asgan_base.eps)
EPS_UNITS = {name: named(name) for name in ("pixel", "mode-std", "box")}


def plot_eps_sweep(panels: Sequence[tuple], path: str | Path, *, baseline: str | None = None,
                   ablation: Sequence[str] = (), title: str | None = None) -> Path:
    """Metric vs eps for AS-GAN arms, with the baseline and the ablation arms beside them:
    every seed as a faint dot, means with their 95% t-intervals over seeds (band for the
    curve and the baseline, bar for an ablation arm).

    Args:
        panels: ``(metric, axis label, table, eps)`` per panel; ``table`` is ``{arm: {seed:
            metrics}}`` (:func:`probes.study.arms.collect`), ``eps`` ``{arm: (eps, unit)}``
            places arms on the x axis (a study's plan says which arms and at what eps:
            :func:`probes.study.report.report_spec`; ``unit`` a key of :data:`EPS_UNITS`,
            the eps an arm trains with in that unit: images x 1/255). Arms of ``eps`` not in
            ``ablation`` form the curve (eps 0: D updated twice); ``baseline`` is a
            horizontal band; ``ablation`` arms are separate markers at their eps. Arms of
            ``table`` in none of these are not drawn.
        path: PNG to write.
    """
    import seaborn as sns

    fig, axes = _row(len(panels), 4.6, 3.6)
    for ax, (metric, label, table, eps_of) in zip(axes, panels):
        units = {u for _, u in eps_of.values()}
        eps_unit = EPS_UNITS[units.pop() if len(units) == 1 else "pixel"]
        eps = {arm: e for arm, (e, _) in eps_of.items() if arm in table and arm not in ablation}
        curve = _long(table, metric, sorted(eps, key=eps.get), x=eps)
        if curve["value"]:
            sns.scatterplot(data=curve, x="x", y="value", color=PALETTE[0], alpha=0.35,
                            s=14, linewidth=0, legend=False, ax=ax)
            sns.lineplot(data=curve, x="x", y="value", estimator="mean",
                         errorbar=_ci_bounds, marker="o", markersize=5, color=PALETTE[0],
                         err_kws={"alpha": 0.15, "linewidth": 0},
                         label="AS-GAN (eps 0 = D updated twice), mean, 95% CI", ax=ax)
        if baseline is not None and baseline in table:
            c = _ci([m[metric] for m in table[baseline].values()])
            ax.axhline(c["mean"], color=PALETTE[1], lw=1.4, label="baseline, mean, 95% CI")
            if not math.isnan(c["lo"]):
                ax.axhspan(c["lo"], c["hi"], color=PALETTE[1], alpha=0.15, lw=0)
        for arm in table:
            if arm in ablation and arm in eps_of:
                c = _ci([v[metric] for v in table[arm].values()])
                err = [[c["mean"] - c["lo"]], [c["hi"] - c["mean"]]]
                ax.errorbar([eps_of[arm][0]], [c["mean"]],
                            yerr=None if math.isnan(c["lo"]) else err, fmt="s",
                            color=PALETTE[2], ms=6, capsize=3,
                            label="gaussian sign noise, eps "
                                  f"{eps_unit.label(eps_unit.from_number(eps_of[arm][0]))}")
        ax.set_xlabel(eps_unit.axis)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94) if title else None)
    return _save(fig, path)


@contextlib.contextmanager
def _seeded_jitter(seed: int) -> Iterator[None]:
    """seaborn draws strip-plot jitter from numpy's and Python's global RNGs: seed them for the
    plot (the same figure on every run, so a regenerated report is the same) and restore
    their state afterwards (a caller's random stream is not consumed)."""
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002  (seaborn reads the legacy global RNG)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


def plot_arms(table: Mapping[str, Mapping[int, Mapping]], metrics: Sequence[tuple[str, str]],
              path: str | Path, *, order: Sequence[str] | None = None) -> Path:
    """One panel per ``(metric, label)``: each arm's seeds as dots (a seaborn strip plot;
    colour = seed, the same in every arm, which is the pairing the claims table uses) and,
    beside them, the arm mean with its 95% t-interval over seeds (black)."""
    import seaborn as sns

    arms = [a for a in (order or sorted(table)) if a in table]
    seeds = sorted({s for a in arms for s in table[a]})
    colours = {s: PALETTE[(j + 3) % len(PALETTE)] for j, s in enumerate(seeds)}
    fig, axes = _row(len(metrics), 3.3, 3.4)
    for k, (ax, (metric, label)) in enumerate(zip(axes, metrics)):
        with _seeded_jitter(k):
            sns.stripplot(data=_long(table, metric, arms), x="arm", y="value", hue="seed",
                          order=arms, hue_order=seeds, palette=colours, jitter=0.12, size=3.5,
                          alpha=0.85, legend="full" if k == 0 else False, ax=ax)
        for i, arm in enumerate(arms):  # the mean beside the seeds, not over them
            c = _ci([m[metric] for m in table[arm].values()])
            err = None if math.isnan(c["lo"]) else [[c["mean"] - c["lo"]], [c["hi"] - c["mean"]]]
            ax.errorbar([i + 0.3], [c["mean"]], yerr=err, fmt="D", color="black", ms=3.5,
                        capsize=2, lw=0.9, label="mean, 95% CI" if i == 0 else None)
        ax.set_xticks(range(len(arms)), arms, rotation=55, ha="right", fontsize=7)
        ax.set_xlim(-0.5, len(arms) - 0.2)
        ax.set_xlabel("")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        if k == 0:
            ax.legend(fontsize=7, title="seed", title_fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


MAX_WIDTH_PX = 1600  # a figure readable at page width: panels wrap into rows beyond this


def _grid(n: int, width: float, height: float, *, dpi: int = 130):
    """``(fig, axes)``: ``n`` panels of ``width`` x ``height`` inches in rows of at most
    ``MAX_WIDTH_PX // (width * dpi)`` columns (so the figure is at most 1,600 px wide);
    ``axes`` is 1-D, unused panels switched off."""
    ncols = max(1, min(n, int(MAX_WIDTH_PX // (width * dpi))))
    nrows = math.ceil(n / ncols)
    fig, axes = figure(nrows, ncols, figsize=(width * ncols, height * nrows), dpi=dpi,
                       squeeze=False)
    flat = list(axes.reshape(-1))
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def plot_sample_grids(grids: Sequence[tuple[str, torch.Tensor]], path: str | Path, *,
                      pixel_range: tuple[float, float] = (-1.0, 1.0), nrow: int = 8) -> Path:
    """Sample grids of several generators, ``(label, images (N, C, H, W) in pixel_range)``,
    wrapped into rows so the figure is at most :data:`MAX_WIDTH_PX` wide (4 panels a row)."""
    from torchvision.utils import make_grid

    lo, hi = pixel_range
    tiles = [make_grid(((x - lo) / (hi - lo)).clamp(0, 1), nrow=nrow, padding=1, pad_value=1)
             for _, x in grids]
    width = 3.0  # inches per panel; the height follows the grid's aspect (no empty margins)
    height = width * tiles[0].shape[1] / tiles[0].shape[2] + 0.35
    fig, axes = _grid(len(grids), width, height)
    for ax, (label, _), g in zip(axes, grids, tiles):
        ax.imshow(g.permute(1, 2, 0).numpy())
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def _band(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step (axis 1): mean and 95% t-interval over the seeds (axis 0) with a number there
    (NaN: a run with no number at that step is left out; NaN band below 2 seeds)."""
    from probes.core.stats import mean_ci

    cis = [mean_ci(col[np.isfinite(col)]) for col in diffs.T]
    return tuple(np.asarray([c[k] for c in cis]) for k in ("mean", "lo", "hi"))


def _curve_array(by_seed: Mapping[int, Mapping[int, float | None]], seeds: Sequence[int],
                 steps: Sequence[int]) -> np.ndarray:
    """``(len(seeds), len(steps))`` FD values, NaN where a run has no number."""
    return np.asarray([[np.nan if by_seed[s].get(t) is None else by_seed[s][t] for t in steps]
                       for s in seeds], dtype=np.float64)


def plot_fd_curves(curves: Mapping[str, Mapping[str, Mapping[int, Mapping[int, float]]]],
                   path: str | Path, *, baseline: str, arms: Sequence[str],
                   metric: str = "FD") -> Path:
    """FD against iteration (the paper's Fig. 4 analogue), one column per setting.

    ``curves``: ``{setting: {arm: {seed: {step: value or None}}}}``. Top row: every seed of
    every arm as a thin line (a cross where a run stopped early), the arm's median over the
    runs with a number at that step bold. Bottom row: the paired
    difference ``arm - baseline`` on the seeds both have, mean with its 95% t band over
    seeds (seeds with a missing value at a step are left out at that step)."""
    groups = list(curves)
    fig, axes = figure(2, len(groups), figsize=(3.6 * len(groups), 5.6), dpi=110,
                       squeeze=False, sharex="col")
    for j, g in enumerate(groups):
        top, bottom = axes[0][j], axes[1][j]
        steps = sorted({t for by_seed in curves[g].values() for c in by_seed.values()
                        for t in c})
        for k, arm in enumerate([a for a in arms if a in curves[g]]):
            colour = PALETTE[k % len(PALETTE)]
            seeds = sorted(curves[g][arm])
            y = _curve_array(curves[g][arm], seeds, steps)
            top.plot(steps, y.T, color=colour, lw=0.5, alpha=0.35)
            with np.errstate(all="ignore"):
                top.plot(steps, np.nanmedian(y, axis=0), color=colour, lw=2,
                         label=f"{arm} ({len(seeds)} runs)")
            stop = [(steps[int(np.flatnonzero(np.isfinite(r))[-1])], r[np.isfinite(r)][-1])
                    for r in y if np.isfinite(r).any() and not np.isfinite(r[-1])]
            if stop:  # runs that stopped (non-finite) end with a cross
                top.scatter(*zip(*stop), marker="x", color=colour, s=25, zorder=3)
            if arm == baseline or baseline not in curves[g]:
                continue
            both = sorted(set(seeds) & set(curves[g][baseline]))
            if not both:  # no seed-paired runs yet (a study still training)
                continue
            d = _curve_array(curves[g][arm], both, steps) - _curve_array(
                curves[g][baseline], both, steps)
            mean, lo, hi = _band(d)
            bottom.plot(steps, mean, color=colour, lw=1.5, label=f"{arm} - {baseline} "
                        f"(up to {len(both)} pairs)")
            bottom.fill_between(steps, lo, hi, color=colour, alpha=0.2)
        top.set_title(g, fontsize=9)
        top.set_yscale("log")
        top.set_ylabel(metric, fontsize=8)
        bottom.axhline(0, color="black", lw=0.7)
        bottom.set_ylabel(f"paired {metric} difference", fontsize=8)
        bottom.set_xlabel("iteration", fontsize=8)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:  # an empty panel gets no (warning) legend
                ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def plot_claim(a: Mapping, b: Mapping, path: str | Path, *, label: str, names: tuple[str, str],
               title: str = "", interval: tuple[float, float] | None = None) -> Path:
    """A claim's own metric: left, each unit's value under arm ``a`` and arm ``b`` joined by a
    line (the pairing); right, the paired differences ``a - b`` as dots with their mean and
    95% interval: ``interval`` (the claims table's, e.g. a bootstrap one that stays in range)
    or a t-interval. ``a``, ``b``: ``{unit: value}`` (a unit is a seed, or (setting, seed))."""
    units = sorted(set(a) & set(b), key=str)
    x, y = np.asarray([a[u] for u in units]), np.asarray([b[u] for u in units])
    fig, (left, right) = _row(2, 3.4, 3.4)
    for xi, yi in zip(x, y):
        left.plot([0, 1], [yi, xi], color="0.6", lw=0.7, marker="o", ms=3)
    left.set_xticks([0, 1], [names[1], names[0]], fontsize=8)
    left.set_xlim(-0.4, 1.4)
    left.set_ylabel(label, fontsize=8)
    d = x - y
    rng = np.random.default_rng(0)  # fixed jitter: the same figure every time
    right.scatter(rng.uniform(-0.08, 0.08, d.size), d, s=10, color=PALETTE[1])
    c = _ci(list(d))
    if interval is not None:
        c.update(lo=interval[0], hi=interval[1])
    err = None if math.isnan(c["lo"]) else [[c["mean"] - c["lo"]], [c["hi"] - c["mean"]]]
    right.errorbar([0.25], [c["mean"]], yerr=err, fmt="D", color="black", capsize=3,
                   label="mean, 95% CI")
    right.axhline(0, color="black", lw=0.7)
    right.set_xticks([])
    right.set_xlim(-0.4, 0.6)
    right.set_ylabel(f"{names[0]} - {names[1]} ({len(units)} pairs)", fontsize=8)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
