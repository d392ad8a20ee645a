"""Figures for the gradient probes: ``matplotlib.figure.Figure`` objects
(:mod:`asgan_base.figures`; the global backend is left alone), matplotlib imported lazily,
Okabe-Ito palette.

- :func:`plot_histograms`: paper Fig. 5a, gradient-value histograms of several checkpoints on
  shared bins, density on a log axis by default;
- :func:`plot_maps`: paper Fig. 1, a grid with the inputs in the first row and one row of
  gradient maps per checkpoint (clip to mean +- 3 std, mean |g| over channels;
  :func:`probes.core.gradients.gradient_map`), each map scaled to its own range as in the paper;
- :func:`plot_evolution`: paper Fig. 5b, gradient L1 norm and sparsity against training step,
  one line per run with a bootstrap CI band;
- :func:`plot_saliency`: inputs and attribution maps, one row per method;
- :func:`plot_rows`: the grid underneath, for any mix of image rows and map rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asgan_base.figures import PALETTE, figure, save_figure
from probes.core.gradients import gradient_map

MAP_CMAP = "viridis"  # perceptually uniform, colour-blind safe
MAPS_TITLE = ("input gradients: clip to mean ± 3 std, mean |g| over channels "
              "(each map scaled to its own range; brighter = larger)")
# measure -> (panel title, axis label)
TITLES = {"l1": ("L1 norm of the input gradient", "mean ||g||_1"),
          "hoyer": ("Hoyer sparsity (1 = one-hot)", "mean Hoyer"),
          "gini_hr": ("Gini index (Hurley & Rickard)", "mean Gini"),
          "fg_share": ("foreground share of |g|", "mean foreground share"),
          "hf_share": ("high-frequency energy share", "mean HF share"),
          "kurtosis": ("excess kurtosis", "mean kurtosis")}


def plot_histograms(hists: Sequence[dict[str, Any]], path: str | Path, *,
                    log_density: bool = True, xlabel: str = "input-gradient value",
                    title: str | None = None) -> Path:
    """Overlaid step histograms on shared bins.

    Args:
        hists: one dict per checkpoint: ``label``, ``edges`` ``(bins + 1,)``, ``counts``
            ``(bins,)`` and optionally ``under``/``over`` (values outside the edges, shown in
            the legend as a share). All must share ``edges``.
        path: PNG to write.
        log_density: log-scaled density axis (tails visible), else linear.
        xlabel, title: axis label and title.

    Returns:
        ``path``.
    """
    edges = np.asarray(hists[0]["edges"], float)
    fig, ax = figure(figsize=(5.2, 3.4), dpi=150)
    for i, h in enumerate(hists):
        if not np.allclose(np.asarray(h["edges"], float), edges):
            raise ValueError("histograms must share their bin edges")
        counts = np.asarray(h["counts"], float)
        total = counts.sum() + float(h.get("under", 0)) + float(h.get("over", 0))
        density = counts / max(total, 1.0) / np.diff(edges)
        outside = (float(h.get("under", 0)) + float(h.get("over", 0))) / max(total, 1.0)
        extra = ("" if outside == 0 else ", <0.1% outside the axis" if outside < 1e-3
                 else f", {outside:.1%} outside the axis")
        ax.stairs(density, edges, color=PALETTE[i % len(PALETTE)], lw=1.5,
                  label=f"{h['label']}{extra}")
    if log_density:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density" + (" (log scale)" if log_density else ""))
    ax.set_xlim(edges[0], edges[-1])
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    # below the axes: inside, it would hide the tails that carry the comparison
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    return save_figure(fig, path, bbox_inches="tight")


def _tile(t: np.ndarray, gap: int) -> np.ndarray:
    """``(n, H, W[, 3])`` -> ``(H, n*W + (n-1)*gap[, 3])`` with NaN (blank) gaps."""
    n, h, w = t.shape[:3]
    out = np.full((h, n * w + (n - 1) * gap, *t.shape[3:]), np.nan)
    for j in range(n):
        out[:, j * (w + gap):j * (w + gap) + w] = t[j]
    return out


def _images01(x: torch.Tensor, pixel_range: tuple[float, float]) -> np.ndarray:
    """``(N, C, H, W)`` in ``pixel_range`` -> grey ``(N, H, W)`` or RGB ``(N, H, W, 3)``, [0, 1]."""
    lo, hi = pixel_range
    x01 = ((x.detach().double() - lo) / (hi - lo)).clamp(0, 1).cpu()
    return x01[:, 0].numpy() if x01.shape[1] == 1 else x01[:, :3].permute(0, 2, 3, 1).numpy()


def _scaled(maps: torch.Tensor) -> np.ndarray:
    """Each map min-max scaled to [0, 1] on its own (the paper's per-image display)."""
    m = maps.detach().double().cpu()
    lo = m.flatten(1).min(1).values.view(-1, 1, 1)
    span = m.flatten(1).max(1).values.view(-1, 1, 1) - lo
    return ((m - lo) / torch.where(span > 0, span, torch.ones_like(span))).numpy()


def plot_rows(rows: Sequence[tuple[str, str, torch.Tensor]], path: str | Path, *,
              pixel_range: tuple[float, float] = (-1.0, 1.0), n: int = 8,
              title: str | None = None) -> Path:
    """A grid with one row per ``(label, kind, tensor)``: ``kind`` ``"image"`` shows images
    ``(N, C, H, W)`` in ``pixel_range`` (grey or RGB); ``"map"`` shows non-negative maps
    ``(N, H, W)``, each scaled to its own range (``viridis``, brighter = larger). Each row is
    one tiled picture, so large grids stay cheap to draw."""
    import matplotlib

    n = min([n] + [len(t) for _, _, t in rows])
    h, w = rows[0][2].shape[-2:]
    gap = max(1, w // 14)
    width_in = min(12.0, max(4.0, 0.9 * n)) + 1.6
    row_in = (width_in - 1.6) * h / (n * w + (n - 1) * gap)
    fig, axes = figure(len(rows), 1, figsize=(width_in, row_in * len(rows) + 0.45), dpi=150,
                       squeeze=False)
    for ax, (lab, kind, t) in zip(axes[:, 0], rows):
        if kind == "image":
            tiles = _tile(_images01(t[:n], pixel_range), gap)
            cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")
            ax.imshow(tiles, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        elif kind == "map":
            cmap = matplotlib.colormaps[MAP_CMAP].with_extremes(bad="white")
            ax.imshow(_tile(_scaled(t[:n]), gap), cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest")
        else:
            raise ValueError(f"row kind must be 'image' or 'map', got {kind!r}")
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_ylabel(lab, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3, h_pad=0.2)
    return save_figure(fig, path, bbox_inches="tight")


def plot_maps(x: torch.Tensor, grads: Sequence[tuple[str, torch.Tensor]], path: str | Path, *,
              pixel_range: tuple[float, float] = (-1.0, 1.0), n: int = 8,
              title: str | None = None) -> Path:
    """Paper Fig. 1: inputs, then the gradient map of each checkpoint on those inputs.

    Args:
        x: ``(N, C, H, W)`` inputs in ``pixel_range``.
        grads: ``(label, g)`` pairs, ``g`` of the shape of ``x`` (gradients at ``x``).
        path: PNG to write.
        pixel_range: range of ``x``.
        n: columns (images) shown.
        title: figure title (default: the recipe).

    Returns:
        ``path``.
    """
    rows = [("input", "image", x[:n])] + [(lab, "map", gradient_map(g[:n])) for lab, g in grads]
    return plot_rows(rows, path, pixel_range=pixel_range, n=n, title=title or MAPS_TITLE)


def plot_saliency(x: torch.Tensor, attrs: Sequence[tuple[str, torch.Tensor]], path: str | Path,
                  *, pixel_range: tuple[float, float] = (-1.0, 1.0), n: int = 16,
                  title: str | None = None) -> Path:
    """Inputs and, per method, ``|attribution|`` maps with the Fig. 1 recipe."""
    rows = [("input", "image", x[:n])] + [(lab, "map", gradient_map(a[:n])) for lab, a in attrs]
    title = title or ("attributions of D's raw logit: clip to mean ± 3 std, mean |a| over "
                      "channels (each map scaled to its own range; brighter = larger)")
    return plot_rows(rows, path, pixel_range=pixel_range, n=n, title=title)


def plot_evolution(evos: Sequence[dict[str, Any]], path: str | Path, *,
                   measures: Sequence[str] = ("l1", "hoyer", "gini_hr", "fg_share")) -> Path:
    """Paper Fig. 5b: per-snapshot mean (line) and bootstrap CI (band) of each measure.

    Args:
        evos: :func:`probes.measures.evolution.evolution` results (one per run).
        path: PNG to write.
        measures: keys to plot, one panel each (those absent from the results are skipped).

    Returns:
        ``path``.
    """
    from matplotlib.ticker import MaxNLocator

    present = [m for m in measures
               if any(m in s["measures"] for e in evos for s in e["snapshots"])]
    ncols = min(2, len(present))
    nrows = -(-len(present) // ncols)
    fig, axes = figure(nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows + 0.5), dpi=150,
                       squeeze=False)
    for ax in axes.ravel()[len(present):]:
        ax.set_visible(False)
    for ax, key in zip(axes.ravel(), present):
        for i, evo in enumerate(evos):
            rows = [s for s in evo["snapshots"] if key in s["measures"]]
            steps = [s["step"] for s in rows]
            mean = np.array([s["measures"][key]["mean"] for s in rows])
            lo = np.array([s["measures"][key]["ci_low"] for s in rows])
            hi = np.array([s["measures"][key]["ci_high"] for s in rows])
            colour = PALETTE[i % len(PALETTE)]
            ax.plot(steps, mean, color=colour, marker="o", ms=3, lw=1.5, label=evo["label"])
            ax.fill_between(steps, lo, hi, color=colour, alpha=0.2, lw=0)
        title, ylabel = TITLES.get(key, (key, key))
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="best")
    pop = evos[0].get("population", "real")
    fig.suptitle(f"D's input gradient ({evos[0].get('wrt', 'logit')}) on {evos[0]['n']} fixed "
                 f"{pop} inputs: mean and 95% bootstrap CI", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, bbox_inches="tight")
