"""Figure for ``asgan-probe attack``: flip rate against eps, one line per checkpoint.

One panel per population (reals attacked toward "fake", fakes toward "real"); colour = the
checkpoint (or the source -> target pair of a transfer), line style = the method. Points whose
clean accuracy is below 0.5 are drawn as crosses: their flip rate covers a minority of the
samples. eps is drawn in the unit the checkpoints record (:mod:`asgan_base.eps`: grey levels
for pixel units, a mode's std on the 2-D mixtures); checkpoints of different units need
separate figures. The figure is a ``matplotlib.figure.Figure``
(:func:`asgan_base.figures.figure`): the global backend is left alone; matplotlib is imported
lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asgan_base.eps import EpsUnit, named
from asgan_base.errors import UserError
from asgan_base.figures import PALETTE, figure, save_figure

TITLES = {"real": "reals pushed toward \"fake\"", "fake": "fakes pushed toward \"real\""}
STYLES = ("-", "--", ":", "-.")


def _series(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in records:
        source = r.get("label", r.get("checkpoint", "D"))
        target = r.get("evaluated_on_label", source)
        out.setdefault((source, target, r["method"]), []).append(r)
    return out


def _unit(records: list[dict[str, Any]]) -> EpsUnit:
    """The one eps unit of ``records`` (their ``eps_unit``; pixel units when absent, as
    :func:`probes.core.sweep.attack_sweep` records come)."""
    units = {(u.name, u.box): u for u in (
        EpsUnit.from_dict(r["eps_unit"]) if isinstance(r.get("eps_unit"), dict)
        else named("pixel") for r in records)}
    if len(units) > 1:
        raise UserError("these attack records mix eps units ("
                        + ", ".join(sorted(u.name + (" of the box" if u.box else "")
                                           for u in units.values()))
                        + "); plot the checkpoints of each unit in a figure of their own")
    return next(iter(units.values()), named("pixel"))


def plot_flip_curves(records: list[dict[str, Any]], out: str | Path, *,
                     title: str | None = None) -> Path:
    """Write the flip-rate-vs-eps figure of sweep records to ``out`` (PNG/PDF/SVG).

    Args:
        records: records of :func:`probes.core.sweep.attack_sweep`, with ``label`` (and, for
            transfers, ``evaluated_on_label``) added by the caller, as the CLI does; their
            ``eps_unit`` (:func:`probes.measures.attack.attack` adds it) sets the eps axis
            (pixel units without it). One unit per figure (UserError otherwise).
        out: figure path; parent folders are created.
        title: optional suptitle.

    Returns:
        The path written.
    """
    unit = _unit(records)
    pops = [p for p in ("real", "fake") if any(r["population"] == p for r in records)]
    series = _series(records)
    fig, axes = figure(1, len(pops), figsize=(4.6 * len(pops), 3.6), squeeze=False,
                       sharey=True)
    warned = False
    for ax, pop in zip(axes[0], pops):
        warned = _draw_panel(ax, pop, series, unit) or warned
    axes[0][0].set_ylabel("flip rate (of samples D got right)")
    handles, labels = _legend_entries(axes[0], warned)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    # the legend goes below the panels; bbox_inches="tight" grows the canvas to hold it
    ncol = 1 if max(map(len, labels)) > 45 else min(2 if len(pops) == 1 else 3, len(labels))
    fig.legend(handles, labels, loc="upper center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    return save_figure(fig, out, dpi=150, bbox_inches="tight")


def _draw_panel(ax: Any, pop: str, series: dict[tuple[str, str, str], list[dict]],
                unit: EpsUnit) -> bool:
    """One population's panel: flip rate (0-1) against eps in ``unit``, a line per (source,
    target, method); True when a point was crossed out (clean accuracy < 0.5)."""
    # colours and styles index the whole series, so a checkpoint keeps its colour in both panels
    pairs = list(dict.fromkeys((s, t) for s, t, _ in series))
    methods = list(dict.fromkeys(m for _, _, m in series))
    warned = False
    for (source, target, method), rows in series.items():
        rows = sorted((r for r in rows if r["population"] == pop), key=lambda r: r["eps"])
        if not rows:
            continue
        color = PALETTE[pairs.index((source, target)) % len(PALETTE)]
        style = STYLES[methods.index(method) % len(STYLES)]
        xs = [unit.number(r["eps"]) for r in rows]
        ys = [float("nan") if r["flip_rate"] is None else r["flip_rate"] for r in rows]
        name = source if source == target else f"{source} \u2192 {target}"
        ax.plot(xs, ys, style, color=color, marker="o", ms=4, lw=1.6,
                label=f"{name} \u00b7 {method}")
        bad = [(x, y) for x, y, r in zip(xs, ys, rows) if r.get("warning")]
        if bad:
            warned = True
            ax.plot(*zip(*bad), "x", color="black", ms=8, mew=1.6, zorder=5)
    ax.set_title(TITLES[pop], fontsize=10)
    ax.set_xlabel(unit.axis)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    return warned


def _legend_entries(axes: Any, warned: bool) -> tuple[list, list[str]]:
    """The panels' legend handles and labels, each label once, plus the cross's entry."""
    from matplotlib.lines import Line2D

    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    if warned:
        handles.append(Line2D([], [], ls="", marker="x", color="black", ms=8, mew=1.6))
        labels.append("clean accuracy < 0.5")
    return handles, labels
