"""Datasets for training and probing: a registry of small loaders, one uniform ``Dataset`` record.

Every set is a ``Dataset`` whose ``get(idx)`` maps int64 indices ``(B,)`` to float32 samples
``(B, *shape)`` on the CPU, inside ``pixel_range``. Images are ``(C, H, W)`` in [-1, 1]
(SPEC section 1: grey level k maps to ``k / 127.5 - 1``); the 2-D mixtures are ``(2,)`` points in
the plane. In-memory sets keep uint8 and convert one batch at a time; folder sets decode files
lazily in ``get``. Nothing downloads: ``mnist10k`` is embedded (built by
``scripts/build_mnist10k.py``, SHA-256 checked on load), ``digits`` ships with scikit-learn,
``fashion-mnist`` comes from the Debian package or a folder, and the rest from a folder the user
names (``--data-root``). A missing or wrong folder raises ``UserError`` with one line that shows
the expected layout.

The 2-D protocols are those of VEEGAN / PacGAN: ``ring8`` is 8 Gaussians (std 0.01) at angles
2*pi*k/8 on the unit circle, ``grid25`` 25 Gaussians (std 0.05) on {-4, -2, 0, 2, 4}^2.
``stacked-mnist`` (1000 modes) stacks three ``mnist10k`` digits as R, G, B, as in VEEGAN.

One concern per module; this package re-exports their public names, so
``from trainers.data import X`` is the way in:

- :mod:`trainers.data.dataset`: the ``Dataset`` record and the helpers the loaders share;
- :mod:`trainers.data.registry`: ``DATASETS``, :func:`load_dataset`;
- :mod:`trainers.data.splits`: held-out splits (``part``, :func:`mnist10k_split`);
- :mod:`trainers.data.units`: eps units (:func:`eps_units`, :func:`eps_units_of`);
- :mod:`trainers.data.mixtures`: ring8, grid25;
- :mod:`trainers.data.mnist`: mnist10k (the package data ``mnist10k.npz`` beside this file),
  stacked-mnist, digits;
- :mod:`trainers.data.idx`: the IDX reader, Fashion-MNIST;
- :mod:`trainers.data.cifar`: CIFAR-10 and its restricted unpickler;
- :mod:`trainers.data.folders`: image folders, CelebA, LSUN.

A module constant a loader reads (``MNIST10K_PATH``, ``FASHION_DEBIAN_ROOT``) is read from its
own module: to point a loader elsewhere (tests), patch it there, e.g.
``trainers.data.mnist.MNIST10K_PATH``.

Examples:
    >>> ds = load_dataset("mnist10k", resolution=32)
    >>> x = ds.get(torch.arange(64))            # (64, 1, 32, 32) float32 in [-1, 1]
    >>> ring = load_dataset("ring8", seed=0)      # 100,000 points, labels = mode index
"""

from __future__ import annotations

from trainers.data.cifar import CIFAR_LAYOUT, load_cifar10, read_cifar_batch
from trainers.data.dataset import IMAGE_RANGE, Dataset, canonical_name
from trainers.data.folders import (
    CELEBA_CROP,
    CELEBA_LAYOUT,
    IMAGE_SUFFIXES,
    IMAGEFOLDER_LAYOUT,
    LSUN_LAYOUT,
    decode_image,
    load_celeba,
    load_imagefolder,
    load_lsun,
)
from trainers.data.idx import (
    FASHION_DEBIAN_ROOT,
    FASHION_LAYOUT,
    MAX_IDX_BYTES,
    load_fashion_mnist,
    read_idx,
)
from trainers.data.mixtures import grid25_modes, load_grid25, load_ring8, ring8_modes
from trainers.data.mnist import (
    MNIST10K_PATH,
    MNIST10K_SHA256,
    MNIST_CREDIT,
    REBUILD,
    load_digits,
    load_mnist10k,
    load_stacked_mnist,
    read_mnist10k,
)
from trainers.data.registry import DATASETS, dataset_names, load_dataset
from trainers.data.splits import (
    MNIST10K_SPLIT,
    PARTS,
    SPLIT_DATASETS,
    check_part,
    check_split,
    heldout_generator,
    mnist10k_split,
    mnist10k_split_record,
    split_of,
    training_part,
)
from trainers.data.units import (
    EPS_UNITS,
    MIXTURES,
    eps_unit_of_config,
    eps_units,
    eps_units_of,
    resolve_eps_unit,
)

__all__ = [
    "CELEBA_CROP", "CELEBA_LAYOUT", "CIFAR_LAYOUT", "DATASETS", "EPS_UNITS", "FASHION_DEBIAN_ROOT",
    "FASHION_LAYOUT", "IMAGEFOLDER_LAYOUT", "IMAGE_RANGE", "IMAGE_SUFFIXES", "LSUN_LAYOUT",
    "MAX_IDX_BYTES", "MIXTURES", "MNIST10K_PATH", "MNIST10K_SHA256", "MNIST10K_SPLIT",
    "MNIST_CREDIT", "PARTS", "REBUILD", "SPLIT_DATASETS", "Dataset", "canonical_name",
    "check_part", "check_split", "dataset_names", "decode_image", "eps_unit_of_config",
    "eps_units", "eps_units_of",
    "grid25_modes", "heldout_generator", "load_celeba", "load_cifar10", "load_dataset",
    "load_digits", "load_fashion_mnist", "load_grid25", "load_imagefolder", "load_lsun",
    "load_mnist10k", "load_ring8", "load_stacked_mnist", "mnist10k_split",
    "mnist10k_split_record", "read_cifar_batch", "read_idx", "read_mnist10k", "resolve_eps_unit",
    "ring8_modes", "split_of", "training_part",
]
