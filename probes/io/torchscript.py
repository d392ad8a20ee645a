"""Read the tensors of a TorchScript archive without loading, compiling or running its program.

A TorchScript ``.pt`` file (``torch.jit.save``) is a zip: ``<name>/code/`` holds the program,
``<name>/data.pkl`` the module tree (each module's attributes, tensors as references to
``<name>/data/<key>``, raw little-endian storage) and ``constants.pkl`` the program's
constants. :func:`read_torchscript_tensors` unpickles only ``data.pkl``, with a loader that
knows five harmless globals (the tensor rebuild function, storage dtypes, ``OrderedDict`` and
TorchScript's int-list builder) and turns every scripted class into a bag of attributes; any
other global is refused. ``torch.jit.load`` would instead compile ``code/`` and its methods
would run when called: that stays an explicit choice of the caller.

Examples:
    >>> tensors, attributes = read_torchscript_tensors("default_1.pt")
    >>> tensors["net.layers.conv.weight"].shape, attributes["net.layers.conv.stride"]
    (torch.Size([32, 3, 3, 3]), 2)
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from asgan_base.errors import UserError

_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64,
                   "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
                   "LongStorage": torch.int64, "IntStorage": torch.int32}


class _Scripted:
    """A scripted module's pickled attributes as plain data (its methods are not loaded)."""

    state: dict = {}

    def __setstate__(self, state):
        self.state = state


def _rebuild_tensor(storage, offset, size, stride, *_):  # requires_grad, hooks: unused
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


class _TensorsOnly(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` into :class:`_Scripted` trees of tensors."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if module.startswith("__torch__."):  # NEWOBJ needs a type: a fresh attribute bag
            return type(name, (_Scripted,), {})
        allowed = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
                   ("collections", "OrderedDict"): dict,
                   ("torch.jit._pickle", "build_intlist"): list}
        if (module, name) in allowed:
            return allowed[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is neither a tensor nor a module")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], torch.dtype) and isinstance(pid[4], int)):
            raise pickle.UnpicklingError(f"unexpected storage reference {pid!r}"[:120])
        _, dtype, key, _location, numel = pid
        entry = self.archive.getinfo(f"{self.prefix}data/{key}")
        # torch.jit.save stores entries uncompressed: a compressed one could be a zip bomb,
        # and checking the declared size first bounds what we read by the file's own size
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size != numel * itemsize:
            raise pickle.UnpicklingError(f"storage {key} is compressed or not {numel} values")
        raw = bytearray(self.archive.read(entry))
        return torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)


def read_torchscript_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor],
                                                                dict[str, Any]]:
    """The tensors and plain attributes of a TorchScript archive, without running it.

    Args:
        path: a ``torch.jit.save`` file.

    Returns:
        ``(tensors, attributes)``, both keyed by dotted module path (``net.layers.conv.weight``,
        ``net.layers.conv.stride``); tensors are CPU copies in their stored dtype, shape and
        layout; attributes are the modules' plain values (ints, lists, bools, None).

    Raises:
        UserError: not a TorchScript archive, or one whose ``data.pkl`` holds anything but
        modules, tensors and plain values.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise UserError(f"{path} is not a TorchScript archive (no <name>/data.pkl)")
            prefix = pkl[0][:-len("data.pkl")]
            root = _TensorsOnly(io.BytesIO(archive.read(pkl[0])), archive, prefix).load()
            tensors: dict[str, torch.Tensor] = {}
            attributes: dict[str, Any] = {}
            _walk(root, "", tensors, attributes)
    except UserError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, ValueError, TypeError,
            AttributeError, RuntimeError, EOFError, RecursionError) as e:
        # a foreign or crafted archive: bad references, wrong argument counts, out-of-bounds
        # strides and over-deep nesting all end here, before any tensor is used
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"{path}: cannot read its tensors without running it "
                        f"({type(e).__name__}: {first})") from None
    return tensors, attributes


def _walk(module: Any, prefix: str, tensors: dict, attributes: dict) -> None:
    if not isinstance(module, _Scripted) or not isinstance(module.state, dict):
        raise TypeError(f"{prefix or 'the root'} is not a scripted module")
    for key, value in module.state.items():
        name = f"{prefix}{key}"
        if isinstance(value, _Scripted):
            _walk(value, name + ".", tensors, attributes)
        elif torch.is_tensor(value):
            tensors[name] = value
        else:
            attributes[name] = value
