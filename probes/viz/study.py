"""Figures of the study that no single probe owns: the eps sweep (paper Fig. 3 analogue), a
metric-per-arm dot plot with seed-level points, and sample grids of several generators.
matplotlib (Agg) is imported lazily; colours are Okabe-Ito (colour-blind safe)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from probes.viz.runs import PALETTE


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _eps_of(arm: str) -> float | None:
    """eps (/255) of an AS-GAN arm name: ``asgan-eps2`` -> 2, ``twice`` -> 0, else None."""
    if arm == "twice":
        return 0.0
    m = re.fullmatch(r"asgan-eps([0-9.]+)", arm)
    return float(m.group(1)) if m else None


def plot_eps_sweep(panels: Sequence[tuple[str, str, Mapping[str, Mapping[int, Mapping]]]],
                   path: str | Path, *, title: str | None = None) -> Path:
    """Metric vs eps (in /255 pixel units) for AS-GAN arms, with the baseline and the
    gaussian ablation beside them.

    Args:
        panels: ``(metric, axis label, table)`` per panel; ``table`` is ``{arm: {seed:
            metrics}}`` (:func:`probes.study.arms.collect`). Arms ``asgan-eps<e>`` and ``twice``
            (eps 0: D updated twice) form the curve; ``baseline`` is a band (mean +- sd over
            seeds), ``gaussian-eps<e>`` a separate marker at its eps.
        path: PNG to write.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), dpi=130,
                             squeeze=False)
    for ax, (metric, label, table) in zip(axes[0], panels):
        pts = sorted((e, arm) for arm in table if (e := _eps_of(arm)) is not None)
        for e, arm in pts:  # seeds as faint dots, means as the line
            vals = [m[metric] for m in table[arm].values()]
            ax.scatter([e] * len(vals), vals, s=12, color=PALETTE[0], alpha=0.35, lw=0)
        means = [_mean([m[metric] for m in table[arm].values()]) for _, arm in pts]
        ax.plot([e for e, _ in pts], means, "-o", color=PALETTE[0], ms=5,
                label="AS-GAN (eps 0 = D updated twice)")
        if "baseline" in table:
            vals = [m[metric] for m in table["baseline"].values()]
            mu, sd = _mean(vals), _sd(vals)
            ax.axhline(mu, color=PALETTE[1], lw=1.4, label="baseline (mean, band = sd)")
            if not math.isnan(sd):
                ax.axhspan(mu - sd, mu + sd, color=PALETTE[1], alpha=0.15, lw=0)
        for arm in table:
            m = re.fullmatch(r"gaussian-eps([0-9.]+)", arm)
            if m:
                vals = [v[metric] for v in table[arm].values()]
                ax.errorbar([float(m.group(1))], [_mean(vals)], yerr=[_sd(vals) or 0],
                            fmt="s", color=PALETTE[2], ms=6, capsize=3,
                            label=f"gaussian sign noise, eps {m.group(1)}/255")
        ax.set_xlabel("eps (x 1/255, pixel units)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94) if title else None)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_arms(table: Mapping[str, Mapping[int, Mapping]], metrics: Sequence[tuple[str, str]],
              path: str | Path, *, order: Sequence[str] | None = None) -> Path:
    """One panel per ``(metric, label)``: each arm's seeds as dots, seed 0..k linked by colour
    across arms (the pairing), and the arm mean as a bar."""
    plt = _plt()
    arms = [a for a in (order or sorted(table)) if a in table]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.4), dpi=130,
                             squeeze=False)
    seeds = sorted({s for a in arms for s in table[a]})
    for ax, (metric, label) in zip(axes[0], metrics):
        for i, arm in enumerate(arms):
            vals = [table[arm][s][metric] for s in seeds if s in table[arm]]
            ax.bar(i, _mean(vals), color="#dddddd", width=0.7)
        for j, s in enumerate(seeds):
            ys = [table[a][s][metric] if s in table[a] else math.nan for a in arms]
            ax.plot(range(len(arms)), ys, "o-", color=PALETTE[(j + 3) % len(PALETTE)], ms=3.5,
                    lw=0.6, alpha=0.8, label=f"seed {s}")
        ax.set_xticks(range(len(arms)), arms, rotation=55, ha="right", fontsize=7)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_sample_grids(grids: Sequence[tuple[str, torch.Tensor]], path: str | Path, *,
                      pixel_range: tuple[float, float] = (-1.0, 1.0), nrow: int = 8) -> Path:
    """Side-by-side sample grids: ``(label, images (N, C, H, W) in pixel_range)``."""
    from torchvision.utils import make_grid

    plt = _plt()
    lo, hi = pixel_range
    tiles = [make_grid(((x - lo) / (hi - lo)).clamp(0, 1), nrow=nrow, padding=1, pad_value=1)
             for _, x in grids]
    width = 3.0  # inches per panel; the height follows the grid's aspect (no empty margins)
    height = width * tiles[0].shape[1] / tiles[0].shape[2] + 0.35
    fig, axes = plt.subplots(1, len(grids), figsize=(width * len(grids), height), dpi=130,
                             squeeze=False)
    for ax, (label, _), g in zip(axes[0], grids, tiles):
        ax.imshow(g.permute(1, 2, 0).numpy())
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _mean(v: Sequence[float]) -> float:
    v = [x for x in v if not math.isnan(x)]
    return sum(v) / len(v) if v else math.nan


def _sd(v: Sequence[float]) -> float:
    v = [x for x in v if not math.isnan(x)]
    if len(v) < 2:
        return math.nan
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
