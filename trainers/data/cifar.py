"""CIFAR-10 (the python version): batch files read by a restricted unpickler that allows
numpy's array reconstruction and nothing else, so a crafted file cannot run code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from asgan_base.errors import UserError
from trainers.data.dataset import (
    Dataset,
    _check_resolution,
    _existing_dir,
    _image_dataset,
    _is_int,
)

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
