"""Reading pickled checkpoints without running them.

StyleGAN2-ADA / StyleGAN3 / R3GAN snapshots are plain pickles of whole modules (NVlabs' even
carry the networks' source and ``exec`` it on load), and old Lightning ``*.ckpt`` files pickle
callback objects, so ``pickle.load`` / ``torch.load(weights_only=False)`` would run whatever a
file says. Here a pickle is read by an unpickler that never imports a module and never calls
anything but the few pure constructors below:

- **allowed globals** (:data:`ALLOWED`): plain containers, torch tensors, parameters, storages,
  dtypes, sizes and devices, numpy arrays and scalars of plain dtypes, ``_codecs.encode`` (how
  protocol 2 stores ``bytes``). Their implementations are ours or numpy's/torch's pure
  constructors; ``torch.storage._load_from_bytes`` (a plain pickle of a tensor) is read with
  ``torch.load(weights_only=True)``.
- **inert records** (:class:`Stub`): a global the caller names as expected (a family's module
  classes, ``torch_utils.persistence._reconstruct_persistent_obj``, an ``nn.Module`` subclass)
  becomes a ``Stub`` that only *records* what the pickle says: its global name, the arguments it
  would have been called with (``args``) and the state it would have been given (``state``).
  Nothing of the named class is imported or run; the caller rebuilds the net in our own code
  from the recorded tensors and constructor arguments.
- **anything else** is refused: :class:`UserError`, one line naming the global the file would
  have imported or called (``posix.system`` for a classic ``__reduce__`` payload).

:func:`scan_globals` lists every global a plain ``pickle.load`` / ``torch.load`` of a file
would import or call, without unpickling (``asgan-probe info`` prints it). torch's zip format
(``torch.save`` since 1.6; Lightning checkpoints) is read from its ``data.pkl`` and storage
records; the legacy pickle format inside ``_load_from_bytes`` goes through
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asgan_base.errors import UserError

PICKLE_OPS_LIMIT = 50_000_000  # opcodes scanned before giving up (a file is not a pickle bomb)


class Stub:
    """An inert record of an object a pickle would have built (see the module docstring).

    ``global_name`` is the ``module.qualname`` the pickle named; ``args`` the positional
    arguments of the call or ``__new__`` it asked for; ``state`` what ``BUILD`` would have
    passed to ``__setstate__`` (usually the instance ``__dict__``: for an ``nn.Module`` the
    ``_parameters``, ``_buffers`` and ``_modules`` dicts); ``items`` / ``list`` what
    ``SETITEMS`` / ``APPENDS`` added. A stub never calls anything.
    """

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        obj.items, obj.list = {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:  # REDUCE: cls(*args) after __new__ recorded them already
            self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.list.append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.list.extend(values)

    def __repr__(self) -> str:
        return f"<stub {self.global_name}>"

    # convenience for readers: the recorded instance dict (BUILD state, or its first part)
    @property
    def dict(self) -> dict[str, Any]:
        s = self.state
        if isinstance(s, tuple) and s and isinstance(s[0], dict):  # (dict, slotstate)
            s = s[0]
        return s if isinstance(s, dict) else {}


def _stub_class(name: str) -> type[Stub]:
    return type(name.rsplit(".", 1)[-1], (Stub,), {"global_name": name})


# ---- the allowed constructors


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    # torch's pickles hold TypedStorage: read its bytes and dtype through the private fields,
    # as torch's own loader does (its public dtype/device warn "TypedStorage is deprecated",
    # which would reach the user's terminal)
    typed = hasattr(storage, "_untyped_storage")
    untyped = storage._untyped_storage if typed else storage
    dtype = storage._dtype if typed else storage.dtype
    t = torch.empty((0,), dtype=dtype, device=untyped.device)
    t.set_(untyped, offset, size, stride)
    return t


def _rebuild_tensor(storage, offset, size, stride):
    return _rebuild_tensor_v2(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, state=None):
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _rebuild_from_type_v2(func, new_type, args, state):
    t = func(*args)
    if new_type is torch.nn.Parameter:
        return torch.nn.Parameter(t, requires_grad=t.requires_grad)
    if new_type is torch.Tensor:
        return t
    kind = getattr(new_type, "global_name", new_type)
    raise UserError(f"refusing to load: a tensor of type {kind} (only torch.Tensor and "
                    "nn.Parameter are read)")


def _load_from_bytes(b: bytes):
    # a tensor pickled with plain pickle: torch's legacy format inside, read as weights only
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    if not isinstance(obj, str):
        raise UserError("refusing to load: _codecs.encode of a non-string")
    return obj.encode(encoding, errors)


def _np_reconstruct(cls, shape, dtype):
    if cls is not np.ndarray:
        raise UserError(f"refusing to load: numpy _reconstruct of {cls!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _np_dtype(*args):
    return np.dtype(*args)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UserError("refusing to load: a numpy scalar of an object dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


_STORAGE_DTYPES = {  # the legacy typed-storage globals of torch files, by the dtype they hold
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool}


class _StorageType:
    """What a pickle's ``torch.FloatStorage``-style global stands for: only its dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


ALLOWED: dict[str, Any] = {
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set, "builtins.frozenset": frozenset, "builtins.slice": slice,
    "builtins.complex": complex, "builtins.bytearray": bytearray, "builtins.range": range,
    "__builtin__.set": set,
    "_codecs.encode": _codecs_encode,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.storage._load_from_bytes": _load_from_bytes,
    "torch.nn.parameter.Parameter": torch.nn.Parameter,
    "torch.Tensor": torch.Tensor,
    "torch.Size": torch.Size,
    "torch.device": torch.device,
    "numpy.core.multiarray._reconstruct": _np_reconstruct,
    "numpy._core.multiarray._reconstruct": _np_reconstruct,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": _np_dtype,
    "numpy.core.multiarray.scalar": _np_scalar,
    "numpy._core.multiarray.scalar": _np_scalar,
}
ALLOWED = {k: v for k, v in ALLOWED.items() if v is not None}


def _allowed(name: str) -> Any:
    if name in ALLOWED:
        return ALLOWED[name]
    module, _, attr = name.rpartition(".")
    if module == "torch" and isinstance(getattr(torch, attr, None), torch.dtype):
        return getattr(torch, attr)
    if module == "torch" and attr in _STORAGE_DTYPES:
        return _StorageType(_STORAGE_DTYPES[attr])
    return None


def _matches(name: str, patterns: Iterable[str]) -> bool:
    """``patterns``: exact ``module.name`` strings, or prefixes ending in ``.`` / ``*``."""
    for p in patterns:
        if p.endswith("*") and name.startswith(p[:-1]):
            return True
        if p.endswith(".") and name.startswith(p):
            return True
        if name == p:
            return True
    return False


class _Restricted(pickle.Unpickler):
    def __init__(self, f, *, stubs: Iterable[str], what: str,
                 persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(f, encoding="latin1")
        self._stubs = tuple(stubs)
        self._what = what
        self._classes: dict[str, type[Stub]] = {}
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        obj = _allowed(full)
        if obj is not None:
            return obj
        if _matches(full, self._stubs):
            if full not in self._classes:
                self._classes[full] = _stub_class(full)
            return self._classes[full]
        raise UserError(f"{self._what}: refusing to load: its pickle imports {full}, which is "
                        "not part of this format (a plain pickle.load/torch.load would run it); "
                        "nothing was executed")

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UserError(f"{self._what}: refusing to load: a persistent id in a plain pickle")
        return self._persistent(pid)


def _fail(what: str, err: BaseException) -> UserError:
    return UserError(f"{what}: not a readable pickle ({type(err).__name__}: "
                     f"{str(err).splitlines()[0][:120] if str(err) else 'truncated'})")


def load_pickle(data: bytes, *, stubs: Iterable[str] = (), what: str = "file") -> Any:
    """Unpickle ``data`` with only :data:`ALLOWED` globals and inert :class:`Stub` records for
    globals matching ``stubs`` (exact names or prefixes ending in ``.`` or ``*``); anything
    else raises :class:`UserError` naming it. ``what`` names the file in messages."""
    try:
        return _Restricted(io.BytesIO(data), stubs=stubs, what=what).load()
    except UserError:
        raise
    except (RecursionError, MemoryError) as err:
        raise _fail(what, err) from None
    except Exception as err:  # a malformed stream: pickle raises many kinds
        raise _fail(what, err) from None


def is_torch_zip(path: str | Path) -> bool:
    """True for ``torch.save``'s zip format (a zip holding ``<prefix>/data.pkl``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/data.pkl") or n == "data.pkl" for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _zip_parts(zf: zipfile.ZipFile, what: str) -> tuple[str, bytes]:
    names = [n for n in zf.namelist() if n.endswith("data.pkl")]
    if len(names) != 1:
        raise UserError(f"{what}: not a torch.save zip file (expected one data.pkl, found "
                        f"{len(names)})")
    prefix = names[0][: -len("data.pkl")]
    order = prefix + "byteorder"
    if order in zf.namelist() and zf.read(order).strip() not in (b"little", b""):
        raise UserError(f"{what}: a big-endian torch file; re-save it on a little-endian machine")
    return prefix, zf.read(names[0])


def zip_pickle_bytes(path: str | Path, limit: int | None = None) -> bytes | None:
    """The ``data.pkl`` bytes of a ``torch.save`` zip (for a sniffer to look at, unpickled),
    or None: not such a zip, damaged, or its pickle larger than ``limit`` bytes. Never
    raises."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i for i in zf.infolist() if i.filename.endswith("data.pkl")]
            if len(names) != 1 or (limit is not None and names[0].file_size > limit):
                return None
            return zf.read(names[0])
    except Exception:  # noqa: BLE001 - not a zip, unreadable, truncated: nothing to sniff
        return None


def load_torch_zip(path: str | Path, *, stubs: Iterable[str] = (), what: str | None = None
                   ) -> Any:
    """Read a ``torch.save`` zip file as :func:`load_pickle` reads a pickle: tensors and plain
    values, inert stubs for the ``stubs`` globals, a one-line refusal for anything else. Its
    storages are read from the archive's records (little-endian only), on the CPU."""
    what = what or str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise _fail(what, err) from None
    with zf:
        try:
            prefix, data = _zip_parts(zf, what)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:  # damaged archive
            raise _fail(what, err) from None
        cache: dict[str, Any] = {}

        def persistent_load(pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise UserError(f"{what}: refusing to load: unknown persistent id {pid!r:.60}")
            _, stype, key, _location, numel = pid
            dtype = getattr(stype, "dtype", None)
            if not isinstance(dtype, torch.dtype):
                raise UserError(f"{what}: refusing to load: storage of type {stype!r:.60}")
            if key not in cache:
                try:
                    raw = zf.read(f"{prefix}data/{key}")
                except KeyError:
                    raise UserError(f"{what}: truncated: storage record {key} is missing") \
                        from None
                n = torch.empty((), dtype=dtype).element_size() * int(numel)
                if len(raw) != n:
                    raise UserError(f"{what}: storage {key} holds {len(raw)} bytes, expected {n}")
                buf = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else \
                    torch.empty(0, dtype=torch.uint8)
                cache[key] = torch.storage.TypedStorage(
                    wrap_storage=buf.untyped_storage(), dtype=dtype, _internal=True)
            return cache[key]

        try:
            return _Restricted(io.BytesIO(data), stubs=stubs, what=what,
                               persistent_load=persistent_load).load()
        except UserError:
            raise
        except Exception as err:
            raise _fail(what, err) from None


def read_any(path: str | Path, *, stubs: Iterable[str] = (), what: str | None = None) -> Any:
    """:func:`load_torch_zip` for zip files, :func:`load_pickle` for anything else."""
    what = what or str(path)
    if is_torch_zip(path):
        return load_torch_zip(path, stubs=stubs, what=what)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"{what}: cannot read ({err.strerror})") from None
    return load_pickle(data, stubs=stubs, what=what)


# ---- what a plain load would import (no unpickling)


def _globals_in(data: bytes) -> list[str]:
    found: list[str] = []
    memo: dict[int, Any] = {}
    strings: list[Any] = []  # the last values pushed that might be STACK_GLOBAL's operands
    try:
        for n, (op, arg, _pos) in enumerate(pickletools.genops(data)):
            if n > PICKLE_OPS_LIMIT:
                break
            name = op.name
            if name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", ".", 1))
                strings.append(None)
            elif name == "STACK_GLOBAL":
                mod, qual = (strings[-2:] + [None, None])[:2] if len(strings) >= 2 else (None,
                                                                                        None)
                found.append(f"{mod}.{qual}" if isinstance(mod, str) and isinstance(qual, str)
                             else "<computed global>")
                strings.append(None)
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                          "SHORT_BINSTRING", "BINSTRING", "STRING"):
                strings.append(arg if isinstance(arg, str) else str(arg))
            elif name == "MEMOIZE":
                memo[len(memo)] = strings[-1] if strings else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = strings[-1] if strings else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                strings.append(memo.get(int(arg)))
            else:
                strings.append(None)
            if len(strings) > 64:
                del strings[:-8]
    except Exception:  # a malformed tail: report what was seen before it
        found.append("<unreadable rest of pickle>")
    return found


def scan_globals(path: str | Path) -> list[str]:
    """Every ``module.name`` that a plain ``pickle.load`` / ``torch.load(weights_only=False)``
    of ``path`` would import (and call, for functions), in order of first appearance, without
    unpickling anything. Zip files are scanned through their ``data.pkl``; a file that is
    neither a pickle nor a torch zip gives ``[]``."""
    try:
        if is_torch_zip(path):
            with zipfile.ZipFile(path) as zf:
                _, data = _zip_parts(zf, str(path))
        else:
            data = Path(path).read_bytes()
    except (OSError, UserError, zipfile.BadZipFile, zlib.error, EOFError):
        return []
    if not data or data[0] != 0x80 and not data[:1].isalpha() and data[:1] not in b"(]}":
        return []
    return list(dict.fromkeys(_globals_in(data)))


def unexpected_globals(path: str | Path, *, stubs: Iterable[str] = ()) -> list[str]:
    """The globals of :func:`scan_globals` that are neither allowed nor expected stubs."""
    stubs = tuple(stubs)
    return [g for g in scan_globals(path) if _allowed(g) is None and not _matches(g, stubs)]
