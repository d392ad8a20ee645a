"""Study figures (probes.viz.study): every seed is drawn, the means and 95% t-intervals drawn
beside them are those of probes.core.stats.mean_ci, and the global matplotlib backend is left
alone (Figure objects, seaborn with an explicit ax)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from PIL import Image

from probes.core.stats import mean_ci
from probes.viz import study as V

ARMS = ("baseline", "twice", "asgan-eps0.5", "asgan-eps2", "gaussian-eps2")


@pytest.fixture
def table():
    """``{arm: {seed: {"fd": ..., "modes": ...}}}``, 3 seeds, seeded random values."""
    rng = np.random.default_rng(0)
    return {arm: {s: {"fd": float(10 + i + rng.normal()), "modes": float(rng.integers(15, 25))}
                  for s in range(3)} for i, arm in enumerate(ARMS)}


@pytest.fixture
def drawn(monkeypatch):
    """The Figure each plot function builds (still written to disk by the real ``_save``)."""
    figs = []
    save = V._save
    monkeypatch.setattr(V, "_save", lambda fig, path: figs.append(fig) or save(fig, path))
    return figs


@pytest.fixture
def svg_backend():
    """A backend other than Agg, as a notebook's inline one would be; restored afterwards."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    yield
    matplotlib.use(before)


def test_arms_shows_every_seed_beside_the_mean_and_t_interval(table, drawn, tmp_path,
                                                             svg_backend):
    order = ["baseline", "asgan-eps0.5", "twice"]
    path = V.plot_arms(table, [("fd", "FD"), ("modes", "modes")], tmp_path / "arms.png",
                       order=order)
    assert matplotlib.get_backend() == "svg"  # not switched to Agg behind the caller's back
    assert Image.open(path).size[0] > 500
    ax = drawn[0].axes[0]
    points = sorted(round(float(y), 9) for c in ax.collections if isinstance(c, PathCollection)
                    for y in c.get_offsets()[:, 1])  # the strip plot's dots
    assert points == sorted(round(table[a][s]["fd"], 9) for a in order for s in range(3))
    assert len(ax.containers) == len(order)
    for i, (arm, bar) in enumerate(zip(order, ax.containers)):
        c = mean_ci([m["fd"] for m in table[arm].values()])
        x, y = bar.lines[0].get_data()
        assert x[0] == pytest.approx(i + 0.3) and y[0] == pytest.approx(c["mean"])
        (seg,) = bar.lines[2][0].get_segments()
        assert sorted(seg[:, 1]) == pytest.approx([c["lo"], c["hi"]])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["0", "1", "2"] and "mean, 95% CI" in labels


def test_eps_sweep_curve_is_the_seed_mean_with_the_t_band(table, drawn, tmp_path,
                                                         svg_backend):
    eps = {"twice": 0.0, "asgan-eps0.5": 0.5, "asgan-eps2": 2.0}
    V.plot_eps_sweep([("fd", "FD", table, {a: (e, "pixel") for a, e in eps.items()})],
                     tmp_path / "sweep.png", title="t", baseline="baseline")
    assert matplotlib.get_backend() == "svg"
    ax = drawn[0].axes[0]
    curve = [ln for ln in ax.lines if ln.get_marker() == "o"][0]
    assert list(curve.get_xdata()) == sorted(eps.values())
    cis = [mean_ci([m["fd"] for m in table[a].values()]) for a in sorted(eps, key=eps.get)]
    assert list(curve.get_ydata()) == pytest.approx([c["mean"] for c in cis])
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]  # fill_between
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(min(c["lo"] for c in cis))
    assert ys.max() == pytest.approx(max(c["hi"] for c in cis))


def test_eps_sweep_names_each_panels_eps_unit(table, drawn, tmp_path):
    """The same arm names mean /255 on images and a mode's std on 2-D runs: each panel's
    axis and ablation marker say which (the unit the plan's arms train in)."""
    noisy = dict(table, **{"gaussian-eps0.5": table["asgan-eps0.5"]})

    def eps(unit):
        return {"twice": (0.0, unit), "asgan-eps0.5": (0.5, unit), "gaussian-eps0.5": (0.5, unit)}

    V.plot_eps_sweep([("fd", "FD", noisy, eps(u)) for u in ("pixel", "mode-std", "box")],
                     tmp_path / "sweep.png", baseline="baseline", ablation=["gaussian-eps0.5"])
    axes = drawn[0].axes
    assert [ax.get_xlabel() for ax in axes] == [V.EPS_UNITS[u].axis
                                                for u in ("pixel", "mode-std", "box")]
    assert [ax.get_xlabel() for ax in axes] == [
        "eps (x 1/255, pixel units)", "eps (std of a mode, per coordinate)",
        "eps (x 1/255 of the plotting box: the first study's 2-D unit)"]
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes]
    assert "gaussian sign noise, eps 0.5/255" in legends[0]
    assert "gaussian sign noise, eps 0.5 std" in legends[1]
    assert "gaussian sign noise, eps 0.5/255 of the box" in legends[2]


def test_a_single_seed_draws_no_interval(tmp_path, drawn):
    one = {"baseline": {0: {"fd": 3.0}}, "asgan-eps2": {0: {"fd": 2.0}}}
    assert Path(V.plot_arms(one, [("fd", "FD")], tmp_path / "a.png")).is_file()
    assert all(len(bar.lines[2]) == 0 for bar in drawn[0].axes[0].containers)


def test_fd_curves_pair_seeds_and_draw_a_setting_without_pairs_quietly(tmp_path, drawn):
    """The bottom row is the seed-paired difference's mean over the seeds both arms have (seed
    2 of the AS arm has no baseline partner and is left out); a setting with the baseline only
    (a study still training) draws its runs, an empty difference panel and no warning."""
    import warnings

    base = {s: {100: 10.0 + s, 200: 8.0 + s} for s in range(2)}
    arm = {s: {100: 9.0 + 2 * s, 200: 5.0} for s in range(3)}
    curves = {"a": {"baseline": base, "asgan": arm}, "b": {"baseline": base}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        V.plot_fd_curves(curves, tmp_path / "fd.png", baseline="baseline",
                         arms=["baseline", "asgan"])
    (fig,) = drawn
    top_a, top_b, bottom_a, bottom_b = fig.axes
    (mean,) = [ln for ln in bottom_a.lines if ln.get_label().startswith("asgan - baseline")]
    # pairs (seed 0, 1): step 100: (9-10, 11-11) -> -0.5; step 200: (5-8, 5-9) -> -3.5
    assert np.allclose(mean.get_ydata(), [-0.5, -3.5])
    assert "2 pairs" in mean.get_label()
    assert bottom_b.get_legend() is None and not bottom_b.collections
    assert len(top_b.lines) == 3  # two seeds and their median
