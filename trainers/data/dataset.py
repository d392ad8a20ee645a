"""The ``Dataset`` record every loader returns, and the helpers the loaders share (argument
checks, uint8 image getters, a file's SHA-256, the data-root check, registry name spelling)."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from asgan_base.errors import UserError

IMAGE_RANGE = (-1.0, 1.0)


@dataclass(frozen=True)
class Dataset:
    """One dataset, as the trainers and probes see it.

    Attributes:
        name: registry name.
        shape: per-sample shape: ``(C, H, W)`` for images, ``(2,)`` for 2-D mixtures.
        pixel_range: ``(lo, hi)`` holding every sample: (-1, 1) for images, a box around the
            data for the 2-D mixtures (a plotting and clipping box only: their eps is in
            mode-std units, :func:`eps_units`).
        n: number of samples; valid indices are ``0..n-1``.
        get: int64 indices ``(B,)`` -> float32 ``(B, *shape)`` in ``pixel_range``, on the CPU,
            a fresh tensor each call.
        labels: int64 ``(n,)`` (digit, class, 100*r+10*g+b triple code or mode index), or None.
        info: JSON-able provenance: source, credit / licence, protocol; 2-D: "modes", "std";
            a train / held-out part: "part" and "split" (:func:`load_dataset`, ``part``).
    """

    name: str
    shape: tuple[int, ...]
    pixel_range: tuple[float, float]
    n: int
    get: Callable[[torch.Tensor], torch.Tensor]
    labels: torch.Tensor | None
    info: dict




def _is_int(value) -> bool:
    # numpy integers count (configs and sweeps produce them); bools do not
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_n(name: str, n: int | None, available: int | None = None) -> None:
    if n is None:
        return
    if not _is_int(n) or n < 1:
        raise UserError(f"{name}: n={n!r} is not a positive integer; pass n >= 1 or None")
    if available is not None and n > available:
        raise UserError(f"{name}: n={n} asks for more than the {available} samples it has; "
                        f"pass n <= {available}")


def _check_resolution(name: str, resolution: int | None, default: int | None) -> int | None:
    """Resolve ``resolution`` against a set's native/default size (None stays None if native)."""
    if resolution is None:
        return default
    if not _is_int(resolution) or resolution < 1:
        raise UserError(f"{name}: resolution={resolution!r} is not a positive integer "
                        "(pixels per side, e.g. 32)")
    return int(resolution)


def _no_root(name: str, root) -> None:
    # a silently ignored --data-root would make a user think their files were used
    if root is not None:
        raise UserError(f"{name} is built in and takes no data root (got {root}); "
                        "drop --data-root or use imagefolder for your own images")


def _index(idx) -> torch.Tensor:
    return torch.as_tensor(idx, dtype=torch.long).reshape(-1)


def _uint8_getter(images: torch.Tensor, resolution: int | None, levels: float = 255.0):
    """Batch getter for uint8 images ``(N, C, H, W)`` with grey levels 0..``levels``.

    Returns float32 ``(B, C, r, r)`` in [-1, 1]; resized (bilinear, antialiased) only when
    ``resolution`` differs from the stored size.
    """
    resize = resolution is not None and tuple(images.shape[-2:]) != (resolution, resolution)

    def get(idx: torch.Tensor) -> torch.Tensor:
        x = images[_index(idx)].float() / (levels / 2) - 1.0  # (B, C, H, W); 255 -> /127.5
        if resize:
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear",
                              antialias=True, align_corners=False)
            x = x.clamp_(*IMAGE_RANGE)  # float round-off only: the filter weights are >= 0
        return x

    return get


def _image_dataset(name, images, labels, *, resolution, n, info, levels=255.0) -> Dataset:
    """Wrap uint8 ``(N, C, H, W)`` images (and int labels ``(N,)`` or None) as a Dataset."""
    _check_n(name, n, len(images))
    if n is not None:
        images = images[:n]
        labels = None if labels is None else labels[:n]
    size = images.shape[-1] if resolution is None else resolution
    info = {**info, "native_resolution": list(images.shape[-2:]), "resolution": size}
    return Dataset(
        name=name,
        shape=(images.shape[1], size, size) if resolution else tuple(images.shape[1:]),
        pixel_range=IMAGE_RANGE,
        n=len(images),
        get=_uint8_getter(images, resolution, levels),
        labels=None if labels is None else labels.long(),
        info=info,
    )


def _existing_dir(name: str, root, layout: str) -> Path:
    """``root`` as a Path, or a UserError naming the expected layout."""
    if root is None:
        raise UserError(f"{name}: no data root given; expected {layout}; pass --data-root")
    path = Path(os.path.expanduser(os.fspath(root)))
    if not path.is_dir():
        raise UserError(f"{name}: {path} is not a folder; expected {layout}; pass --data-root")
    return path



def canonical_name(name) -> str:
    """A dataset name as the registry spells it (case and ``_``/``-`` forgiven)."""
    return str(name).strip().lower().replace("_", "-")
