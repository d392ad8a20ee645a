"""Figures of the probes and the study. Every figure reaches disk through :func:`save_figure`:
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
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".").lower() or "png", **savefig)
    atomic_write_bytes(path, buf.getvalue())
    return path
