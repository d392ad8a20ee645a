"""Figures of the probes and the study, made by :func:`probes.viz.style.figure` (a
``matplotlib.figure.Figure``: the global backend is never changed) in the colours of
:data:`probes.viz.style.PALETTE`. Every figure reaches disk through :func:`save_figure`:
rendered in memory, then written atomically (temp file, fsync, rename), so a killed run or
two runs writing one path never leave a torn image."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Write matplotlib figure ``fig`` to ``path`` atomically; returns the path.

    The format follows the suffix (``.png``, ``.pdf``, ``.svg``; none: PNG); ``savefig``
    keywords (``dpi``, ``bbox_inches``) go to ``Figure.savefig``. A bad path is a one-line
    UserError (:func:`trainers.checkpoint.atomic_write_bytes`). The figure stays open.
    """
    from trainers.checkpoint import atomic_write_bytes

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
