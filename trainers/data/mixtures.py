"""The 2-D Gaussian mixtures of VEEGAN / PacGAN: ``ring8`` (8 modes, std 0.01, on the unit
circle) and ``grid25`` (25 modes, std 0.05, on {-4, -2, 0, 2, 4}^2), as fixed sample sets."""

from __future__ import annotations

import math

import torch

from asgan_base.errors import UserError
from trainers.data.dataset import Dataset, _check_n, _index, _no_root
from trainers.data.splits import _sha256_tensor, heldout_generator


def _mixture_points(modes: torch.Tensor, std: float, n: int, g: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels int64 (n,), points float32 (n, 2)): a mode index, then mode + std * N(0, I)."""
    labels = torch.randint(len(modes), (n,), generator=g)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return labels, (modes[labels] + std * noise).float()


def _mixture(name: str, modes: torch.Tensor, std: float, box: float, *, root, resolution,
             seed: int, n: int | None, protocol: str, part: str = "all") -> Dataset:
    """A fixed sample set of an isotropic Gaussian mixture with equal weights.

    ``modes`` (K, 2) float64; ``n`` points (default 100,000) drawn from a generator seeded by
    ``seed``: labels = mode index, samples = mode + std * N(0, I). A mixture is sampled, not
    split: ``part="all"`` and ``"train"`` are the same points, ``"heldout"`` is as many fresh
    points drawn from a different seed stream (:func:`heldout_generator`).
    """
    _no_root(name, root)
    if resolution is not None:
        raise UserError(f"{name} is 2-D data; resolution does not apply (drop --resolution)")
    _check_n(name, n)
    n = 100_000 if n is None else n
    labels, points = _mixture_points(modes, std, n, torch.Generator().manual_seed(seed))
    info = {"source": "synthetic", "protocol": protocol, "modes": modes.tolist(),
            "std": std, "seed": seed}
    if part != "all":
        held_labels, held = _mixture_points(modes, std, n, heldout_generator(seed))
        if part == "heldout":
            labels, points = held_labels, held
        info.update(part=part, split={
            "name": "fresh-samples", "dataset": name, "kind": "sampled", "seed": seed,
            "n_train": n, "n_heldout": n,
            "rule": f"sampled, not split: train = the {n} points drawn from "
                    f"torch.Generator().manual_seed(seed); held-out = {n} fresh points drawn "
                    "the same way from heldout_generator(seed), a different seed stream",
            "heldout_sha256": _sha256_tensor(held),
            "heldout_sha256_of": "the held-out points, float32 (n, 2), C order"})
    return Dataset(
        name=name,
        shape=(2,),
        pixel_range=(-box, box),
        n=n,
        get=lambda idx: points[_index(idx)],
        labels=labels,
        info=info,
    )


def ring8_modes() -> torch.Tensor:
    """(8, 2) float64: (cos 2*pi*k/8, sin 2*pi*k/8), k = 0..7 (eight distinct modes)."""
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def grid25_modes() -> torch.Tensor:
    """(25, 2) float64: {-4, -2, 0, 2, 4}^2, row-major (x outer, y inner)."""
    axis = torch.arange(-4.0, 5.0, 2.0, dtype=torch.float64)
    return torch.cartesian_prod(axis, axis)


def load_ring8(*, root=None, resolution=None, seed=0, n=None, part="all") -> Dataset:
    """8 Gaussians, std 0.01, on the unit circle; box (-1.5, 1.5). Labels: mode index k."""
    return _mixture("ring8", ring8_modes(), 0.01, 1.5, root=root, resolution=resolution,
                    seed=seed, n=n, part=part,
                    protocol="8 modes at angle 2*pi*k/8 on radius 1, std 0.01")


def load_grid25(*, root=None, resolution=None, seed=0, n=None, part="all") -> Dataset:
    """25 Gaussians, std 0.05, on {-4,-2,0,2,4}^2; box (-5, 5). Labels: mode index (5*i + j)."""
    return _mixture("grid25", grid25_modes(), 0.05, 5.0, root=root, resolution=resolution,
                    seed=seed, n=n, part=part, protocol="25 modes on {-4,-2,0,2,4}^2, std 0.05")
