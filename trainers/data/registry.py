"""The registry of dataset loaders by name, and :func:`load_dataset`, the one entry point."""

from __future__ import annotations

import os
from collections.abc import Callable

from asgan_base.errors import UserError
from trainers.data.cifar import load_cifar10
from trainers.data.dataset import Dataset, _is_int, canonical_name
from trainers.data.folders import load_celeba, load_imagefolder, load_lsun
from trainers.data.idx import load_fashion_mnist
from trainers.data.mixtures import load_grid25, load_ring8
from trainers.data.mnist import load_digits, load_mnist10k, load_stacked_mnist
from trainers.data.splits import check_part

DATASETS: dict[str, Callable[..., Dataset]] = {
    "ring8": load_ring8,
    "grid25": load_grid25,
    "mnist10k": load_mnist10k,
    "stacked-mnist": load_stacked_mnist,
    "fashion-mnist": load_fashion_mnist,
    "digits": load_digits,
    "cifar10": load_cifar10,
    "celeba": load_celeba,
    "lsun": load_lsun,
    "imagefolder": load_imagefolder,
}


def dataset_names() -> list[str]:
    """The registry's names, in registry order."""
    return list(DATASETS)



def load_dataset(name: str, *, root: str | os.PathLike | None = None,
                 resolution: int | None = None, seed: int = 0, n: int | None = None,
                 part: str = "all") -> Dataset:
    """Load a dataset by registry name.

    Args:
        name: one of ``dataset_names()`` (case and ``_``/``-`` are forgiven).
        root: folder for user data (cifar10, celeba, lsun, imagefolder; optional for
            fashion-mnist); built-in sets refuse one.
        resolution: image side in pixels; resized (bilinear, antialiased) when it differs
            from the native size. None: native, or 64 (folders) / 32 (cifar10).
        seed: for the synthetic sets (ring8, grid25, stacked-mnist): same seed, same data.
        n: first n samples (real data) or the sample count (synthetic sets).
        part: ``"all"`` (default), or the ``"train"`` / ``"heldout"`` part of the fixed split
            of mnist10k, stacked-mnist, ring8 and grid25 (see PARTS; ``info["split"]``
            then describes the split and ``info["part"]`` names the part).

    Returns:
        A ``Dataset``; ``get`` gives float32 ``(B, *shape)`` in ``pixel_range`` on the CPU.

    Raises:
        UserError: unknown name, wrong or missing root, corrupt files, bad arguments.

    Examples:
        >>> ds = load_dataset("cifar10", root="~/data")   # ~/data/cifar-10-batches-py/...
        >>> ds.get(torch.tensor([0, 1])).shape
        torch.Size([2, 3, 32, 32])
    """
    key = canonical_name(name)
    if key not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if not _is_int(seed):
        raise UserError(f"{key}: seed={seed!r} is not an integer")
    check_part(key, part)
    n = int(n) if _is_int(n) else n  # numpy ints become ints; anything else fails in the loader
    by_part = {} if part == "all" else {"part": part}  # loaders without a split take no part
    return DATASETS[key](root=root, resolution=resolution, seed=int(seed), n=n, **by_part)
