"""The IDX file format (plain or gzip, bounded reads) and Fashion-MNIST, read from the Debian
package's folder or a folder the user names."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from asgan_base.errors import UserError
from trainers.data.dataset import Dataset, _check_resolution, _existing_dir, _image_dataset

FASHION_DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist

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
