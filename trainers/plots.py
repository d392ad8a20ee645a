"""Small figure helpers for the trainer: sample grids and 2-D scatters, returned as PNG bytes
(the caller writes them atomically). The scatter is a ``matplotlib.figure.Figure``
(:func:`asgan_base.figures.figure`, the probes' figure helper and palette): training inside a
notebook leaves its matplotlib backend alone. matplotlib is imported lazily."""

from __future__ import annotations

import io

import torch


def grid_png(x: torch.Tensor, pixel_range: tuple[float, float], nrow: int = 8) -> bytes:
    """PNG of an image grid; ``x`` is ``(N, C, H, W)`` in ``pixel_range``."""
    from PIL import Image
    from torchvision.utils import make_grid

    lo, hi = pixel_range
    x = ((x.float() - lo) / (hi - lo)).clamp(0, 1)
    grid = make_grid(x, nrow=nrow, padding=2, pad_value=1.0)  # (3, H', W') in [0, 1]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def scatter_png(points: torch.Tensor, data: torch.Tensor, title: str = "") -> bytes:
    """PNG of generated 2-D points ``(N, 2)`` over data points ``(M, 2)``."""
    from asgan_base.figures import PALETTE, figure, figure_bytes

    fig, ax = figure(figsize=(4, 4), dpi=100)
    ax.scatter(data[:, 0], data[:, 1], s=2, c="#999999", label="data", alpha=0.5)
    ax.scatter(points[:, 0], points[:, 1], s=4, c=PALETTE[0], label="G(z)")
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    return figure_bytes(fig, "png", bbox_inches="tight")
