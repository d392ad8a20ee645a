"""Figures for ``asgan-probe coverage``: 2-D scatters with the modes and their 3-std circles, and
the stacked-MNIST mode histogram. Figures are ``matplotlib.figure.Figure`` objects
(:mod:`asgan_base.figures`): the global backend is left alone; matplotlib is imported lazily;
colours are Okabe-Ito (``asgan_base.figures.PALETTE``), colour-blind safe.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from asgan_base.figures import PALETTE, blank, figure, save_figure

GOOD, BAD = PALETTE[0], PALETTE[1]  # blue: high quality, vermillion: not


def _summary(r: dict[str, Any]) -> str:
    kl = "-" if r.get("reverse_kl") is None else f"{r['reverse_kl']:.2f}"
    return (f"modes {r['modes_captured']}/{r['modes_total']}, "
            f"high quality {r['high_quality_pct']:.1f} %, reverse KL {kl}")


def _mixture_panel(ax, zoom, panel: dict[str, Any]) -> None:
    from matplotlib.patches import Circle

    x = np.asarray(panel["x"], dtype=np.float64)
    modes = np.asarray(panel["modes"], dtype=np.float64)
    r, std = panel["result"], panel["std"]
    radius = r["n_std"] * std
    good = np.linalg.norm(x[:, None, :] - modes[None], axis=2).min(1) < radius
    pad = 0.25 * float(np.ptp(modes, axis=0).max()) if len(modes) > 1 else 1.0
    lo, hi = modes.min(0) - pad, modes.max(0) + pad
    outside = int((~((x >= lo) & (x <= hi)).all(1)).sum())
    for a, s in ((ax, 3), (zoom, 4)):
        a.scatter(x[~good, 0], x[~good, 1], s=s, c=BAD, alpha=0.5, lw=0, rasterized=True)
        a.scatter(x[good, 0], x[good, 1], s=s, c=GOOD, alpha=0.5, lw=0, rasterized=True)
        for m in modes:
            a.add_patch(Circle(m, radius, fill=False, lw=0.8, ec="black"))
        a.set_aspect("equal")
    ax.scatter(modes[:, 0], modes[:, 1], marker="+", s=30, c="black", lw=0.8)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    note = f"\n({outside} points outside the view)" if outside else ""
    ax.set_title(f"{panel['title']}\n{_summary(r)}{note}", fontsize=8)
    # the zoom: the mode with the most high-quality points (else the most assigned points),
    # so the 3-std circle, invisible at full scale on ring8, can be read
    k = int(np.argmax(r["counts"])) if max(r["counts"]) else int(np.argmax(r["assigned"]))
    half = 2.5 * radius
    zoom.set_xlim(modes[k, 0] - half, modes[k, 0] + half)
    zoom.set_ylim(modes[k, 1] - half, modes[k, 1] + half)
    zoom.tick_params(labelsize=6)
    zoom.set_title(f"zoom on mode {k}\n(circle: {r['n_std']:g} std)", fontsize=7)


def plot_mixtures(panels: list[dict[str, Any]], path: str | Path) -> Path:
    """One scatter panel per entry (points coloured by the 3-std rule, modes, circles) with a
    zoom on one mode beside it.

    Args:
        panels: dicts with ``title``, ``x`` (N, 2) points, ``modes`` (K, 2), ``std`` and
            ``result`` (from :func:`probes.core.coverage.mixture_coverage`).
        path: PNG to write.
    """
    from matplotlib.lines import Line2D

    # each dataset (panels' "data" key) starts a new row of up to 3 panels
    groups: dict[Any, list] = {}
    for panel in panels:
        groups.setdefault(panel.get("data"), []).append(panel)
    cols = min(max(len(g) for g in groups.values()), 3)
    places, row = [], 0
    for group in groups.values():
        for i, panel in enumerate(group):
            places.append((panel, row + i // cols, i % cols))
        row += math.ceil(len(group) / cols)
    rows = row
    fig = blank((5.4 * cols, 4.2 * rows + 0.4), dpi=130)
    gs = fig.add_gridspec(rows, 2 * cols, width_ratios=[3.2, 1] * cols)
    for panel, row, col in places:
        ax = fig.add_subplot(gs[row, 2 * col])
        zoom = fig.add_subplot(gs[row, 2 * col + 1].subgridspec(2, 1)[0])
        _mixture_panel(ax, zoom, panel)
    handles = [Line2D([], [], ls="", marker="o", ms=4, color=GOOD,
                      label="sample within 3 std of its nearest mode (high quality)"),
               Line2D([], [], ls="", marker="o", ms=4, color=BAD, label="sample farther away"),
               Line2D([], [], ls="", marker="+", ms=7, color="black",
                      label="mode centre and 3-std circle")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.4 / (4.2 * rows + 0.4), 1, 1))
    return save_figure(fig, path)


def plot_stacked(entries: list[dict[str, Any]], path: str | Path) -> Path:
    """Stacked-MNIST mode histogram: samples per mode, modes sorted by count, one line each.

    Args:
        entries: dicts with ``label`` and ``result`` (from
            :func:`probes.core.coverage.stacked_coverage`, holding 1000 ``counts``); an entry with
            ``reference=True`` (the real data) is drawn dashed.
        path: PNG to write.
    """
    fig, (ax, ax2) = figure(1, 2, figsize=(11, 3.8), dpi=130,
                            gridspec_kw={"width_ratios": [1.6, 1]})
    for i, e in enumerate(entries):
        counts = np.sort(np.asarray(e["result"]["counts"]))[::-1]
        r = e["result"]
        kl = "-" if r["kl"] is None else f"{r['kl']:.2f}"
        label = f"{e['label']}: {r['modes_captured']} modes, KL {kl}"
        style = dict(ls="--", color="black") if e.get("reference") else \
            dict(color=PALETTE[i % len(PALETTE)])
        nz = counts[counts > 0]
        # one step per mode, from rank k to k + 1, and a dot where the line ends (last mode):
        # visible even for a generator that collapsed to one mode
        ranks = np.arange(1, len(nz) + 2)
        line, = ax.step(ranks, np.append(nz, nz[-1]), where="post", lw=1.3, label=label,
                        **style)
        ax.plot([len(nz) + 1], [nz[-1]], marker="o", ms=4, color=line.get_color())
        # mode code = 100 R + 10 G + B: rows of the (10, 100) view are the red digit
        marginal = np.asarray(r["counts"]).reshape(10, 100).sum(1) / max(r["n"], 1)
        ax2.plot(range(10), marginal, marker="o", ms=3, lw=1, **style)
    n = max(e["result"]["n"] for e in entries)
    ax.axhline(n / 1000, color="grey", lw=0.8, ls=":", label=f"uniform ({n / 1000:.3g} per mode)")
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlim(1, 1100)
    ax.set_xlabel("mode rank (modes sorted by sample count); a line ends (dot) at its last "
                  "mode")
    ax.set_ylabel("samples in the mode")
    ax.set_title("stacked MNIST: samples per mode (of 1000)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")  # the lines run from top left to bottom right
    ax.grid(alpha=0.3, which="both")
    ax2.axhline(0.1, color="grey", lw=0.8, ls=":")
    ax2.set_xticks(range(10))
    ax2.set_xlabel("digit in the red channel")
    ax2.set_ylabel("share of samples")
    ax2.set_title("red-channel digit marginal (uniform: 0.1)", fontsize=9)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
