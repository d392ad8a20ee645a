"""Self-describing, safe checkpoints (SPEC section 5).

One ``.safetensors`` file per snapshot. Tensors are named ``G.<param>``, ``D.<param>`` and,
for resumable snapshots, ``opt_G.<i>.<key>`` / ``opt_D.<i>.<key>``; everything else (the
architecture specs, the full config, the step, the pixel range, optimizer hyper-parameters, a
SHA-256 of the tensors) is one JSON object in the safetensors header. safetensors has no code
path that runs code from a file, so a crafted checkpoint cannot execute anything; a truncated,
edited or foreign file gives a :class:`UserError` naming the problem.

Writes are atomic: a temp file in the same folder, fsync, ``os.replace``. A crash leaves the
previous snapshot and at most a ``.tmp-*`` file that readers ignore.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asgan_base.errors import UserError
from asgan_base.files import atomic_write_bytes

FORMAT = "asgan-probe-checkpoint"
VERSION = 1
SUFFIX = ".safetensors"
MAX_HEADER = 50 * 2**20  # bytes; real headers are a few kB


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors``, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _optim_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer state_dict into tensors and a JSON-able remainder."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optim_state(prefix: str, tensors: dict, info: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            idx, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for name, value in info.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(path: str | Path, *, G: nn.Module, D: nn.Module, meta: dict[str, Any],
                    opt_G: torch.optim.Optimizer | None = None,
                    opt_D: torch.optim.Optimizer | None = None) -> Path:
    """Write one snapshot atomically. ``meta`` must be JSON-able and hold ``g_spec``/``d_spec``.

    Returns the path written.
    """
    from safetensors.torch import save

    tensors = {f"G.{k}": v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    tensors.update({f"D.{k}": v.detach().cpu().contiguous() for k, v in D.state_dict().items()})
    meta = dict(meta)
    meta.update(format=FORMAT, version=VERSION)
    for prefix, opt in (("opt_G", opt_G), ("opt_D", opt_D)):
        if opt is not None:
            t, info = _optim_tensors(prefix, opt)
            tensors.update(t)
            meta[prefix] = info
    meta["sha256"] = tensor_digest(tensors)
    data = save(tensors, metadata={"asgan_probe": json.dumps(meta, sort_keys=True)})
    atomic_write_bytes(path, data)
    return Path(path)


def _sniff(path: Path) -> None:
    """Reject what is plainly not one of our files before any parser sees it."""
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder; pass a ckpt-<step>{SUFFIX} file inside it")
    if not path.is_file():  # a FIFO would block the read forever, /dev/zero never ends
        raise UserError(f"{path} is not a regular file (a pipe or device?); pass a checkpoint")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        raise UserError(f"{path} is not a checkpoint: only {size} bytes (truncated?)")
    header_len = int.from_bytes(head[:8], "little")
    # safetensors first: its 8-byte length may well start with 0x80, a pickle's first byte
    if head[8:9] != b"{" or header_len > MAX_HEADER:
        if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
            raise UserError(f"{path} is a torch.save/pickle file, not an asgan-probe checkpoint;"
                            " for a foreign discriminator use asgan-probe's --format option")
        raise UserError(f"{path} is not an asgan-probe checkpoint (no safetensors header)")
    if 8 + header_len > size:
        raise UserError(f"{path} is truncated: header says {header_len} bytes, file has {size}")


def read_checkpoint(path: str | Path, *, verify: bool = True
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Low-level reader: all tensors (CPU) and the meta dict. Never unpickles anything."""
    from safetensors.torch import load

    path = Path(path)
    _sniff(path)
    try:
        tensors = load(path.read_bytes())
    except Exception as e:  # any failure of the parser on an untrusted file is the file's fault
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} is corrupt or truncated ({first[:120]})") from None
    meta = _read_meta(path)
    if verify and meta.get("sha256") != tensor_digest(tensors):
        raise UserError(f"{path} failed its checksum: the tensors were changed or damaged "
                        "after writing; use an earlier snapshot")
    return tensors, meta


def _read_meta(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("asgan_probe")
    except Exception as e:  # the header was already parsed once: any failure means corrupt
        raise UserError(f"{path} has an unreadable header ({type(e).__name__})") from None
    if raw is None:
        raise UserError(f"{path} is a safetensors file but not an asgan-probe checkpoint "
                        "(no asgan_probe metadata); for a plain state_dict use --format")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise UserError(f"{path} has corrupt metadata (invalid JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path} is not an asgan-probe checkpoint (format tag missing)")
    if meta.get("version") != VERSION:
        raise UserError(f"{path} has format version {str(meta.get('version'))[:20]}; this "
                        f"asgan-probe reads version {VERSION}: upgrade asgan-probe")
    for key in ("g_spec", "d_spec", "step"):
        if key not in meta:
            raise UserError(f"{path} metadata lacks {key!r}: not a complete checkpoint")
    _check_meta_types(meta, path)
    return meta


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_meta_types(meta: dict[str, Any], path: Path) -> None:
    """The fields readers use have the types they expect (an edited header may say anything)."""
    problems = []
    if not isinstance(meta["step"], int) or isinstance(meta["step"], bool) or meta["step"] < 0:
        problems.append("step is not a non-negative integer")
    for key in ("g_spec", "d_spec"):
        spec = meta[key]
        if not (isinstance(spec, dict) and isinstance(spec.get("kwargs"), dict)
                and isinstance(spec.get("arch"), str) and isinstance(spec.get("role"), str)):
            problems.append(f"{key} is not an architecture spec")
    pr = meta.get("pixel_range", [-1.0, 1.0])
    if not (isinstance(pr, list) and len(pr) == 2 and all(map(_is_number, pr)) and pr[0] < pr[1]):
        problems.append("pixel_range is not [lo, hi] with lo < hi")
    for key in ("config", "data"):
        if not isinstance(meta.get(key, {}), dict):
            problems.append(f"{key} is not an object")
    data = meta.get("data", {})
    shape = data.get("shape", [1]) if isinstance(data, dict) else [1]
    if not (isinstance(shape, list) and all(isinstance(n, int) and 0 < n < 2**16 for n in shape)):
        problems.append("data.shape is not a list of sizes")
    if problems:
        raise UserError(f"{path} has inconsistent metadata ({'; '.join(problems)}): edited or "
                        "damaged; use another snapshot")


def _split(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _load_module(spec: dict, state: dict[str, torch.Tensor], path: Path, role: str) -> nn.Module:
    """Build the net ``spec`` names and load ``state`` into it, allocating nothing the file
    does not justify: the spec is first built on the meta device (no memory) and its tensor
    names, shapes and dtypes must match the file's exactly."""
    from trainers.nets import build_net

    if not isinstance(spec, dict):
        raise UserError(f"{path}: {role} spec is not an object")
    _check_sizes(spec, state, path, role)
    try:
        expected = _expected_tensors(json.dumps(spec, sort_keys=True))
    except UserError as e:
        raise UserError(f"{path}: {role} spec: {e}") from None
    except Exception as e:  # a hostile spec may make a constructor fail in any way
        raise UserError(f"{path}: {role} spec {str(spec)[:80]} cannot be built "
                        f"({type(e).__name__})") from None
    found = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()), key=str)[0]
        raise UserError(f"{path}: {role} weights do not fit its architecture (first mismatch: "
                        f"{diff[0]} {diff[1][0]} {str(diff[1][1]).replace('torch.', '')})")
    net = build_net(spec)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise UserError(f"{path}: {role} weights do not fit its architecture ({first[:120]})"
                        ) from None
    return net


@functools.lru_cache(maxsize=64)
def _expected_tensors(spec_json: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{name: (shape, dtype)}`` of the state dict the spec builds, from a build on the meta
    device (no memory; cached: spectral norm's power iterations are slow on meta tensors)."""
    from trainers.nets import build_net

    with torch.device("meta"):
        skeleton = build_net(json.loads(spec_json))
    return {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}


def _check_sizes(spec: dict, state: dict[str, torch.Tensor], path: Path, role: str) -> None:
    """Integer kwargs (widths, depth...) can be no larger than the weights in the file imply:
    a net with width w has at least w parameters, one with depth d at least d tensors. This
    bounds the time and memory of even the meta-device build."""
    numel = sum(t.numel() for t in state.values())
    for key, value in spec.get("kwargs", {}).items():
        if isinstance(value, int) and not isinstance(value, bool):
            limit = len(state) if key == "depth" else max(numel, 1)
            if value > limit:
                raise UserError(f"{path}: {role} spec says {key}={value}, more than its "
                                f"{len(state)} tensors ({numel} values) can hold: edited or "
                                "damaged")


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """The one reader: ``(G, D, meta)`` from a snapshot, both nets in eval mode on ``device``.

    ``meta`` holds ``config`` (the full training config), ``step``, ``pixel_range``,
    ``data`` (name and per-sample shape), ``g_spec``/``d_spec``, ``sha256`` and run facts.
    A file exported with float16 weights (:func:`export_snapshot`, ``meta["stored_dtype"]``
    "float16") is read back as float32 nets: every probe computes in float32 on the stored
    (float16-rounded) weights.

    Examples:
        >>> G, D, meta = load_checkpoint("runs/a1/ckpt-002000.safetensors")
        >>> logits = D(x)  # (N,) raw logits
    """
    path = Path(path)
    tensors, meta = _as_float32(*read_checkpoint(path), path)
    G = _load_module(meta["g_spec"], _split(tensors, "G"), path, "G")
    D = _load_module(meta["d_spec"], _split(tensors, "D"), path, "D")
    return G.to(device).eval(), D.to(device).eval(), meta


# exported copies (shipped checkpoints) may store the big float32 tensors as float16
STORED_DTYPES = ("float32", "float16")
HALF_MIN_NUMEL = 1024  # conv / linear weights; BatchNorm, biases and SN vectors stay float32


def _as_float32(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Upcast the float16 tensors of a file whose meta says ``stored_dtype: float16``; a
    float16 tensor in any other file is left alone (and refused by the architecture check)."""
    stored = meta.get("stored_dtype", "float32")
    if stored not in STORED_DTYPES:
        raise UserError(f"{path}: stored_dtype {str(stored)[:20]!r} is not one of "
                        f"{', '.join(STORED_DTYPES)}: edited, or written by a newer asgan-probe")
    if stored == "float16":
        tensors = {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}
    return tensors, meta


def export_snapshot(src: str | Path, dest: str | Path, *, half: bool = False,
                    facts: dict[str, Any] | None = None) -> Path:
    """Write a shippable copy of the snapshot ``src`` to ``dest`` (atomically).

    The copy keeps G, D and the meta (config, specs, step, units, ...) and drops the optimizer
    state, so it loads with :func:`load_checkpoint` but cannot be resumed. With ``half`` the
    float32 tensors of at least :data:`HALF_MIN_NUMEL` values (conv and linear weights) are
    stored as float16, about halving the file; smaller ones (BatchNorm parameters and running
    statistics, biases, spectral-norm vectors) stay float32, where rounding would matter most
    for the least space. The meta records ``stored_dtype`` ("float16" or "float32") so a
    report can say which weights it measured. ``facts`` are added to the meta.

    Raises:
        UserError: ``src`` is not a readable snapshot, or a weight overflows float16.
    """
    from safetensors.torch import save

    src = Path(src)
    tensors, meta = read_checkpoint(src)
    tensors, meta = _as_float32(tensors, meta, src)
    keep = {k: v for k, v in tensors.items() if k.startswith(("G.", "D."))}
    for role in ("G", "D"):  # the copy must load: check the weights fit their specs first
        _load_module(meta[f"{role.lower()}_spec"], _split(keep, role), src, role)
    if half:
        for name, t in keep.items():
            if t.dtype == torch.float32 and t.numel() >= HALF_MIN_NUMEL:
                h = t.half()
                if not torch.isfinite(h).all():
                    raise UserError(f"{src}: {name} does not fit float16 (|w| > 65504); "
                                    "export it as float32")
                keep[name] = h
    meta = {k: v for k, v in meta.items() if k not in ("opt_G", "opt_D", "sha256")}
    meta.update(facts or {})
    meta.update(format=FORMAT, version=VERSION,
                stored_dtype="float16" if half else "float32")
    if half:
        meta["stored_float16"] = (f"float32 tensors of >= {HALF_MIN_NUMEL} values (conv and "
                                  "linear weights) as float16; the rest float32")
    meta["sha256"] = tensor_digest(keep)
    atomic_write_bytes(dest, save(keep, metadata={"asgan_probe": json.dumps(meta,
                                                                             sort_keys=True)}))
    return Path(dest)


def optimizer_states(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path
                     ) -> dict[str, dict]:
    """The optimizer state dicts from what :func:`read_checkpoint` returned."""
    out = {}
    for prefix in ("opt_G", "opt_D"):
        if prefix not in meta:
            raise UserError(f"{path} holds no optimizer state; it cannot be resumed")
        try:
            out[prefix] = _optim_state(prefix, tensors, meta[prefix])
            _check_param_groups(out[prefix]["param_groups"])
        except (AttributeError, KeyError, TypeError, ValueError):
            raise UserError(f"{path}: malformed {prefix} optimizer state") from None
    return out


def _check_param_groups(groups: Any) -> None:
    """ValueError unless ``groups`` looks like Adam's: a list of dicts with integer ``params``
    and numeric hyper-parameters (an optimizer would only fail later, mid-training)."""
    if not isinstance(groups, list) or not groups:
        raise ValueError("param_groups")
    for g in groups:
        if not (isinstance(g, dict) and isinstance(g.get("params"), list)
                and all(isinstance(i, int) for i in g["params"])):
            raise ValueError("params")
        for key in ("lr", "eps", "weight_decay"):
            if key in g and not _is_number(g[key]):
                raise ValueError(key)
        if "betas" in g and not (isinstance(g["betas"], list) and len(g["betas"]) == 2
                                 and all(map(_is_number, g["betas"]))):
            raise ValueError("betas")


def snapshot_name(step: int) -> str:
    return f"ckpt-{step:06d}{SUFFIX}"


def list_snapshots(run_dir: str | Path) -> list[Path]:
    """Complete snapshots of a run, oldest first (temp files of interrupted writes excluded)."""
    run_dir = Path(run_dir)
    found = [p for p in run_dir.glob(f"ckpt-*{SUFFIX}") if p.stem[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.stem[5:]))
