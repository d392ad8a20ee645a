"""What the tensor-file families share: reading a weights file without running it, finding
the discriminator's ``state_dict`` inside, and the ``desc`` facts every reader reports.

:func:`read_object` reads a ``torch.save`` file with ``torch.load(weights_only=True)`` (tensors
and plain containers only), a safetensors file, or a TorchScript archive's tensors
(:mod:`probes.io.torchscript`: its program is never compiled or run). Inside one
:func:`caching` block a file is read once, however many sniffers look at it.

This is an edge module of the readers; torch only.
"""

from __future__ import annotations

import contextlib
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asgan_base.errors import UserError

NESTED_KEYS = ("model_state_dict", "state_dict", "netD", "D", "discriminator", "model")
_CACHE: dict | None = None  # {(path, size, mtime_ns): object} inside a caching() block


class ScriptTensors(dict):
    """The tensors of a TorchScript archive, keyed like a ``state_dict`` (a plain dict that
    remembers where it came from, for ``desc["extra"]["container"]``)."""


@contextlib.contextmanager
def caching() -> Iterator[None]:
    """Read each file at most once inside this block (detection, then the reader)."""
    global _CACHE
    outer, _CACHE = _CACHE, {} if _CACHE is None else _CACHE
    try:
        yield
    finally:
        _CACHE = outer


def check_file(path: str | Path) -> Path:
    """``path`` as a Path if it is a regular file; UserError (missing, folder, pipe) else."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder; pass the weights file inside it")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise UserError(f"{path} is not a regular file")
    return path


def read_object(path: str | Path) -> Any:
    """The top-level object of a ``torch.save`` file (tensors and plain containers only), the
    tensor dict of a safetensors file, or the :class:`ScriptTensors` of a TorchScript archive."""
    path = check_file(path)
    if _CACHE is None:
        return _read_object(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        try:
            _CACHE[key] = _read_object(path)
        except UserError as e:
            _CACHE[key] = e
    if isinstance(_CACHE[key], UserError):
        raise UserError(str(_CACHE[key]))
    return _CACHE[key]


def _read_object(path: Path) -> Any:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, JSON header
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            return load(path.read_bytes())
        except (SafetensorError, ValueError, RuntimeError, OverflowError, MemoryError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"{path} is a corrupt safetensors file ({first[:120]})") from None
        except KeyError as e:
            # the format parser knows more dtypes (F8_E8M0, F4, F6_*) than the torch bridge
            # maps to a torch.dtype; its lookup table is what raises KeyError
            raise UserError(f"{path} holds a tensor of safetensors dtype {str(e)[:40]}, which "
                            "torch cannot represent; re-save the weights as float32") from None
    if head[:2] != b"PK" and head[:1] != b"\x80":  # neither a torch.save zip nor a pickle
        raise UserError(f"{path} is not a readable torch.save or safetensors file")
    if head[:2] == b"PK":
        if _check_zip(path):
            from probes.io.torchscript import read_torchscript_tensors

            tensors, _ = read_torchscript_tensors(path)
            return ScriptTensors(tensors)
    try:
        with warnings.catch_warnings():  # torch warns about plain pickles before refusing them
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any parser failure on an untrusted file is the file's fault
        msg = " ".join(str(e).split())
        if "GLOBAL" in msg or "Unsupported global" in msg or "Unsupported operand" in msg:
            raise UserError(f"{path} holds pickled Python objects (a whole nn.Module?), which "
                            "asgan-probe never unpickles; re-save the weights with "
                            "torch.save(netD.state_dict(), path)") from None
        raise UserError(f"{path} is not a readable torch.save or safetensors file, truncated or "
                        f"corrupt ({type(e).__name__})") from None


def _check_zip(path: Path) -> bool:
    """torch.save writes *stored* (uncompressed) zip entries; torch.load would inflate a
    deflated one in full, so a small crafted file could claim gigabytes (a zip bomb).
    Returns True for a TorchScript archive (a ``code/`` folder or ``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        raise UserError(f"{path} is a corrupt or truncated torch.save zip") from None
    size = path.stat().st_size
    script = any("/code/" in i.filename or i.filename.endswith("constants.pkl") for i in infos)
    for info in infos:
        if script and not (info.filename.endswith("/data.pkl") or "/data/" in info.filename):
            continue  # TorchScript deflates its program, which is never read here
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
            raise UserError(f"{path}: zip entry {info.filename[:60]!r} is compressed or larger "
                            "than the file, which torch.save never writes; refusing it (a zip "
                            "bomb?)")
    return script


def is_tensor_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and all(torch.is_tensor(v) for v in obj.values()))


def state_dict_of(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The discriminator's ``state_dict`` inside a loaded object: the object itself, or one
    nested under a usual key (``model_state_dict`` of mimicry, ``state_dict``, ``netD``...)."""
    if is_tensor_dict(obj):
        sd = obj
    else:
        nested = [k for k in NESTED_KEYS if isinstance(obj, dict) and is_tensor_dict(obj.get(k))]
        if not nested:
            what = (f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict)
                    else type(obj).__name__)
            raise UserError(f"{path} holds {what}, not a discriminator state_dict (expected a "
                            f"dict of tensors, or one under {', '.join(NESTED_KEYS)})")
        sd = obj[nested[0]]
    if all(k.startswith("module.") for k in sd):  # saved from nn.DataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def container(obj: Any) -> str:
    """How the file stored its tensors, for ``desc["extra"]["container"]``."""
    return "torchscript (tensors read, program not run)" if isinstance(obj, ScriptTensors) \
        else "torch.save / safetensors"


def batchnorm_coupling(D: nn.Module) -> list[dict]:
    """``desc["coupling"]`` of a net whose only cross-sample path is BatchNorm."""
    k = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    return [{"kind": "batchnorm", "layers": k}] if k else []


def logits_desc(*, family: str, format: str, D: nn.Module, shape: list[int], upstream: dict,
                extra: dict, why: str) -> dict:
    """The ``desc`` of a net that returns raw logits ``(N,)`` already (our rebuilds of the
    older formats): unconditional, [-1, 1], no randomness, ``squeeze`` (identity)."""
    image = len(shape) == 3
    return {"family": family, "format": format,
            "resolution": int(shape[-1]) if image else None,
            "channels": int(shape[0]) if image else None,
            "conditional": False, "num_classes": None, "label": None,
            "pixel_range": [-1.0, 1.0],
            "output": {"shape": "(N,)", "reduction": "squeeze", "why": why},
            "coupling": batchnorm_coupling(D), "randomness": "none",
            "upstream": upstream, "extra": {"input_shape": list(shape), **extra}}


def no_label(label: int | None, family: str) -> None:
    if label is not None:
        raise UserError(f"--label {label}: a {family} discriminator is unconditional; drop "
                        "--label")


def load_strict(net: nn.Module, sd: dict[str, torch.Tensor], what: str, name: str) -> nn.Module:
    """Load ``sd`` into ``net`` (our rebuild, named ``name`` in messages) only if every tensor
    name and shape fits exactly, each cast to the dtype ``net`` holds; else one-line UserError
    naming the first mismatches. Returns ``net``."""
    ours = net.state_dict()
    if set(sd) != set(ours):
        extra, missing = sorted(set(sd) - set(ours)), sorted(set(ours) - set(sd))
        raise UserError(f"{what}: the tensors do not fit {name} (unexpected {extra[:3]}, "
                        f"missing {missing[:3]})")
    for k, v in ours.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise UserError(f"{what}: {k} has shape {tuple(sd[k].shape)}, {name} needs "
                            f"{tuple(v.shape)}")
    net.load_state_dict({k: sd[k].to(v.dtype) for k, v in ours.items()})
    return net
