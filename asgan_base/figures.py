"""The one palette and the one way to make a figure, shared by every figure of the probes, the
study and the trainer.

:func:`figure` returns a ``matplotlib.figure.Figure``, never a pyplot figure: pyplot is not
imported and the global backend is not touched, so a notebook's inline backend (or any
backend a user chose) stays as it was. A Figure renders with the Agg canvas when it is saved
(:func:`save_figure`) and, having no pyplot registry entry, needs no ``close``: it
is freed like any object. matplotlib is imported lazily (importing this module costs nothing).
"""

from __future__ import annotations

import io
from pathlib import Path
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


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Write matplotlib figure ``fig`` to ``path`` atomically; returns the path.

    The format follows the suffix (``.png``, ``.pdf``, ``.svg``; none: PNG); ``savefig``
    keywords (``dpi``, ``bbox_inches``) go to ``Figure.savefig``. A bad path is a one-line
    UserError (:func:`asgan_base.files.atomic_write_bytes`). The figure stays open.
    """
    from asgan_base.files import atomic_write_bytes  # lazy: figures import nothing heavy

    path = Path(path)
    atomic_write_bytes(path, figure_bytes(fig, path.suffix.lstrip(".").lower() or "png",
                                          **savefig))
    return path


def figure_bytes(fig: Any, fmt: str = "png", **savefig: Any) -> bytes:
    """Matplotlib figure ``fig`` rendered in memory as ``fmt`` (``png``, ``pdf``, ``svg``), for
    a caller that writes the bytes itself (the trainer's sample files); ``savefig`` keywords
    go to ``Figure.savefig``."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **savefig)
    return buf.getvalue()
