"""The one palette and the one way to make a figure, shared by every figure of the probes, the
study and the trainer.

:func:`figure` returns a ``matplotlib.figure.Figure``, never a pyplot figure: pyplot is not
imported and the global backend is not touched, so a notebook's inline backend (or any
backend a user chose) stays as it was. A Figure renders with the Agg canvas when it is saved
(:func:`probes.viz.save_figure`) and, having no pyplot registry entry, needs no ``close``: it
is freed like any object. matplotlib is imported lazily (importing this module costs nothing).
"""

from __future__ import annotations

from typing import Any

# Okabe-Ito, colour-blind safe; in this order, the first colours differ the most
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def blank(figsize: tuple[float, float], dpi: float | None = None):
    """A Figure of ``figsize`` inches at ``dpi`` (None: ``rcParams["figure.dpi"]``), no axes
    (for layouts built with ``fig.add_gridspec``)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi)


def figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float],
           dpi: float | None = None, **subplots: Any):
    """``(fig, axes)``: a Figure of ``figsize`` inches at ``dpi`` and its ``nrows`` x ``ncols``
    axes; ``subplots`` keywords (``squeeze``, ``sharey``, ``gridspec_kw``) go to
    ``Figure.subplots``, so ``axes`` is shaped as ``pyplot.subplots`` would return it."""
    fig = blank(figsize, dpi)
    return fig, fig.subplots(nrows, ncols, **subplots)
