"""Foreign discriminators: weights written by other code, rebuilt as asgan-probe nets.

Supported (``FORMATS``), every one returning ``D(x)`` -> raw logits ``(N,)``:

- ``state-dict``: a plain ``state_dict`` of one of our discriminators (``dcgan``, ``resnet``,
  ``mlp``; with or without spectral norm), saved with ``torch.save`` or as a plain safetensors
  file (an asgan-probe checkpoint's ``D.*`` tensors are accepted too). The architecture is
  inferred from tensor names and shapes, or named with ``arch`` / ``arch_kwargs``.
- ``authors-dcgan``: ``netD`` of a pytorch/examples-style DCGAN script (the AS-GAN authors'
  public script builds on it): ``torch.save(netD.state_dict())`` with keys ``main.<i>.*``,
  stride-2 4x4 convs without bias, BatchNorm from the second conv, LeakyReLU(0.2), a last
  conv to one channel and an ``nn.Sigmoid`` head. Layer for layer this is our ``dcgan``
  discriminator (28/32/64 px, any width and channel count), which has no sigmoid: the
  sigmoid is stripped and D returns its input, the logits.
- ``authors``: ``netD`` of any of the twelve model files of the AS-GAN authors' public
  repository (``DCGAN_32/64/128``, ``DCGAN_32_sn/64_sn``, ``resnet32/64``,
  ``resnet32_same/64_same``, ``resnet32_sn``, ``resnet32_same_sn/64_same_sn``), rebuilt by
  :mod:`probes.io.authors` with their tensor names, BatchNorm and spectral norm kept, sigmoid
  stripped. The family is inferred from the tensors or named with ``arch`` (a family or
  model-file name, e.g. ``resnet64_same_sn``). ``authors-dcgan`` stays for files it read
  before: it rebuilds the same nets as our ``dcgan`` D (no 128 px, no spectral norm).
- ``mimicry``: a torch-mimicry ``netD`` checkpoint ``{'model_state_dict',
  'optimizer_state_dict', 'global_step'}`` of a 32 px ResNet discriminator: SNGAN-32
  (``torch_mimicry.nets.sngan.SNGANDiscriminator32``, spectral norm) or mimicry's DCGAN-32
  (the same ResNet without spectral norm). Layer for layer our ``resnet`` D at 32 px;
  ``block1..4``/``l5`` map to ``blocks.0..3``/``linear`` and torch's old spectral-norm tensors
  (``weight_orig``, ``weight_u``, ``weight_v``) to its parametrization (same eval-mode maths).
  mimicry's 48/64/128 px nets, its custom spectral norm (``sn_u``), and discriminators with
  extra heads (SSGAN, InfoMax-GAN, cGAN-PD) are not supported.

A ``DataParallel`` ``module.`` prefix is removed. Files are read with
``torch.load(weights_only=True)`` or safetensors: nothing is ever unpickled beyond tensors and
plain containers, so a crafted file cannot run code. A whole pickled ``nn.Module``, an unknown
layout or weights that do not fit raise :class:`UserError` with one line naming the problem.

Foreign files carry no generator and no dataset: ``meta`` names neither (pass ``data`` when
drawing reals), ``pixel_range`` defaults to (-1, 1) (mimicry's ``dcgan_cifar`` wants (0, 1)).

This is an edge module: it imports ``trainers.nets`` to rebuild the nets.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.errors import UserError

FORMATS = ("state-dict", "authors", "authors-dcgan", "mimicry")
NESTED_KEYS = ("model_state_dict", "state_dict", "netD", "D", "discriminator", "model")
_SN_OLD = {"weight": "weight", "bias": "bias", "weight_orig": "parametrizations.weight.original",
           "weight_u": "parametrizations.weight.0._u", "weight_v": "parametrizations.weight.0._v"}


# ----------------------------------------------------------------------------- reading
def read_object(path: str | Path) -> Any:
    """The top-level object of a ``torch.save`` file (tensors and plain containers only) or
    the tensor dict of a safetensors file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder; pass the weights file inside it")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise UserError(f"{path} is not a regular file")
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
        _check_zip(path)
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


def _check_zip(path: Path) -> None:
    """torch.save writes *stored* (uncompressed) zip entries; torch.load would inflate a
    deflated one in full, so a small crafted file could claim gigabytes (a zip bomb)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        raise UserError(f"{path} is a corrupt or truncated torch.save zip") from None
    size = path.stat().st_size
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
            raise UserError(f"{path}: zip entry {info.filename[:60]!r} is compressed or larger "
                            "than the file, which torch.save never writes; refusing it (a zip "
                            "bomb?)")


def _is_tensor_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and all(torch.is_tensor(v) for v in obj.values()))


def state_dict_of(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The discriminator's ``state_dict`` inside a loaded object: the object itself, or one
    nested under a usual key (``model_state_dict`` of mimicry, ``state_dict``, ``netD``...)."""
    if _is_tensor_dict(obj):
        sd = obj
    else:
        nested = [k for k in NESTED_KEYS if isinstance(obj, dict) and _is_tensor_dict(obj.get(k))]
        if not nested:
            what = (f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict)
                    else type(obj).__name__)
            raise UserError(f"{path} holds {what}, not a discriminator state_dict (expected a "
                            f"dict of tensors, or one under {', '.join(NESTED_KEYS)})")
        sd = obj[nested[0]]
    if all(k.startswith("module.") for k in sd):  # saved from nn.DataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


# ----------------------------------------------------------------------------- inference
def _weight(sd: dict, prefix: str) -> torch.Tensor | None:
    """A layer's weight, plain or spectral-normalised (parametrization or old hook style)."""
    for name in ("weight", "parametrizations.weight.original", "weight_orig"):
        if f"{prefix}.{name}" in sd:
            return sd[f"{prefix}.{name}"]
    return None


def _has_sn(sd: dict) -> bool:
    return any(".parametrizations.weight." in k or k.startswith("parametrizations.")
               for k in sd)


def _dcgan_spec(sd: dict, prefix: str = "") -> dict:
    """Our dcgan D from a Sequential of numbered layers: channels and width from the first
    conv, resolution from the number of convs and the last conv's kernel (4, or 7 at 28 px)."""
    convs = sorted(int(m.group(1)) for k in sd
                   if (m := re.fullmatch(re.escape(prefix) + r"(\d+)\.(weight|parametrizations"
                                         r"\.weight\.original)", k)) and sd[k].dim() == 4)
    if len(convs) < 2:
        raise UserError("no DCGAN conv stack found (expected numbered 4-D conv weights)")
    first, last = _weight(sd, f"{prefix}{convs[0]}"), _weight(sd, f"{prefix}{convs[-1]}")
    base, n = int(last.shape[-1]), len(convs) - 1
    resolution = base * 2 ** n
    return {"arch": "dcgan", "role": "D", "kwargs": {
        "channels": int(first.shape[1]), "resolution": resolution, "width": int(first.shape[0]),
        "spectral_norm": _has_sn(sd)}}


def _resnet_spec(sd: dict) -> dict:
    w0 = _weight(sd, "blocks.0.conv1")
    w1 = _weight(sd, "blocks.1.conv1")
    if w0 is None or w1 is None:
        raise UserError("no ResNet blocks found (expected blocks.0.conv1, blocks.1.conv1)")
    width = int(w0.shape[0])
    resolution = 32 if int(w1.shape[0]) == width else 64  # 64 px doubles channels per block
    return {"arch": "resnet", "role": "D", "kwargs": {
        "channels": int(w0.shape[1]), "resolution": resolution, "width": width,
        "spectral_norm": _has_sn(sd)}}


def _mlp_spec(sd: dict) -> dict:
    layers = sorted(int(m.group(1)) for k in sd
                    if (m := re.fullmatch(r"0\.(\d+)\.(weight|parametrizations\.weight\.original)",
                                          k)))
    first = _weight(sd, f"0.{layers[0]}")
    return {"arch": "mlp", "role": "D", "kwargs": {
        "dim": int(first.shape[1]), "width": int(first.shape[0]), "depth": len(layers) - 1,
        "spectral_norm": _has_sn(sd)}}


def infer_spec(sd: dict[str, torch.Tensor]) -> dict:
    """The spec (``{"arch", "role": "D", "kwargs"}``) of the asgan-probe D whose state_dict
    this is, from tensor names and shapes; UserError when it fits none of ours."""
    keys = list(sd)
    if any(k.startswith("blocks.") for k in keys):
        return _resnet_spec(sd)
    if keys and all(re.match(r"0\.\d+\.", k) for k in keys):
        return _mlp_spec(sd)
    if keys and all(re.match(r"\d+\.", k) for k in keys):
        return _dcgan_spec(sd)
    raise UserError(f"cannot tell which asgan-probe architecture these weights belong to "
                    f"(keys {keys[:4]}...); name it with --arch and --arch-kwargs")


def _build(spec: dict, sd: dict, path: str | Path, what: str) -> nn.Module:
    from trainers.nets import build_net

    D = build_net(spec)
    try:
        D.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        detail = " ".join(str(e).split())[len(first):][:160]
        raise UserError(f"{path}: the weights do not fit {what} {spec['kwargs']} "
                        f"({first[:80]}{detail})") from None
    return D


# ----------------------------------------------------------------------------- formats
def _from_state_dict(obj: Any, path: Path, arch: str | None, arch_kwargs: dict | None):
    sd = state_dict_of(obj, path)
    if any(k.startswith("D.") for k in sd):  # the D.* tensors of an asgan-probe checkpoint
        sd = {k[2:]: v for k, v in sd.items() if k.startswith("D.")}
    if arch is not None:
        spec = {"arch": arch, "role": "D", "kwargs": dict(arch_kwargs or {})}
    elif arch_kwargs:
        raise UserError("--arch-kwargs needs --arch")
    else:
        spec = infer_spec(sd)
    D = _build(spec, sd, path, f"{spec['arch']} D")
    return D, {"arch": spec["arch"], "role": "D", "kwargs": _full_kwargs(spec)}, None


def _full_kwargs(spec: dict) -> dict:
    """Every argument, defaults included, as our checkpoints record them."""
    import inspect

    from trainers.nets import ARCHS

    params = inspect.signature(ARCHS[spec["arch"]]["D"]).parameters
    return {**{k: p.default for k, p in params.items()}, **spec["kwargs"]}


def _from_authors_dcgan(obj: Any, path: Path, arch: str | None, arch_kwargs: dict | None):
    sd = state_dict_of(obj, path)
    if not all(k.startswith("main.") for k in sd):
        raise UserError(f"{path} is not a pytorch/examples-style DCGAN netD (keys should start "
                        f"with 'main.', got {list(sd)[:3]}...); see --format choices")
    sd = {k[len("main."):]: v for k, v in sd.items()}
    if any(k.endswith(".bias") and sd[k].dim() == 1 and f"{k[:-5]}.running_mean" not in sd
           for k in sd):
        raise UserError(f"{path}: the DCGAN convs carry biases, unlike pytorch/examples' netD; "
                        "not supported")
    spec = _dcgan_spec(sd)
    spec["kwargs"]["spectral_norm"] = False
    if spec["kwargs"]["resolution"] not in (28, 32, 64):
        raise UserError(f"{path}: a DCGAN netD for {spec['kwargs']['resolution']} px; "
                        "supported: 28, 32, 64 px")
    return _build(spec, sd, path, "a pytorch/examples DCGAN netD"), spec, None


_MIMICRY_KEY = re.compile(r"(?:block([1-4])\.(c1|c2|c_sc)|(l5))\."
                          r"(weight|bias|weight_orig|weight_u|weight_v)")


def _from_mimicry(obj: Any, path: Path, arch: str | None, arch_kwargs: dict | None):
    sd = state_dict_of(obj, path)
    step = obj.get("global_step") if isinstance(obj, dict) else None
    if any(k.endswith((".sn_u", ".sn_sigma")) for k in sd):
        raise UserError(f"{path} uses mimicry's custom spectral norm (sn_u buffers); only "
                        "torch's spectral norm (mimicry's default) is supported")
    bad = [k for k in sd if not _MIMICRY_KEY.fullmatch(k)]
    if bad:
        raise UserError(f"{path} is not a mimicry 32 px ResNet discriminator (SNGAN-32 / "
                        f"DCGAN-32): unexpected tensors {bad[:3]} (48/64/128 px nets and extra "
                        "heads are not supported)")
    layer = {"c1": "conv1", "c2": "conv2", "c_sc": "shortcut"}
    ours = {}
    for k, v in sd.items():
        m = _MIMICRY_KEY.fullmatch(k)
        block, conv, l5, param = m.groups()
        prefix = "linear" if l5 else f"blocks.{int(block) - 1}.{layer[conv]}"
        ours[f"{prefix}.{_SN_OLD[param]}"] = v
    w0 = _weight(ours, "blocks.0.conv1")
    if w0 is None:
        raise UserError(f"{path}: no block1.c1 weight; not a mimicry ResNet discriminator")
    spec = {"arch": "resnet", "role": "D", "kwargs": {
        "channels": int(w0.shape[1]), "resolution": 32, "width": int(w0.shape[0]),
        "spectral_norm": any(k.endswith("weight_orig") for k in sd)}}
    step = int(step) if isinstance(step, (int, float)) or torch.is_tensor(step) else None
    return _build(spec, ours, path, "a mimicry 32 px ResNet D (our resnet D)"), spec, step


def _from_authors(obj: Any, path: Path, arch: str | None, arch_kwargs: dict | None):
    from probes.io import authors

    if arch_kwargs:
        raise UserError("--arch-kwargs does not apply to --format authors: the widths are "
                        "read from the weights (name the family with --arch)")
    D, spec = authors.load(state_dict_of(obj, path), str(path), family=arch)
    return D, spec, None


LOADERS = {"state-dict": _from_state_dict, "authors": _from_authors,
           "authors-dcgan": _from_authors_dcgan,
           "mimicry": _from_mimicry}


def _input_shape(spec: dict) -> list[int]:
    kw = spec["kwargs"]
    if spec["arch"] == "mlp":
        return [int(kw["dim"])]
    return [int(kw["channels"]), int(kw["resolution"]), int(kw["resolution"])]


def load_foreign(path: str | Path, *, format: str, arch: str | None = None,
                 arch_kwargs: dict | None = None,
                 pixel_range: tuple[float, float] | None = None,
                 device: str | torch.device = "cpu") -> tuple[None, nn.Module, dict[str, Any]]:
    """``(None, D, meta)`` for a foreign discriminator file; D in eval mode on ``device``.

    Args:
        path: a ``torch.save`` or safetensors file.
        format: one of ``FORMATS`` (module docstring).
        arch, arch_kwargs: for ``state-dict``: our architecture name and its keyword
            arguments (e.g. ``"dcgan", {"channels": 3, "resolution": 32, "width": 64}``);
            for ``authors``: the family (``"resnet64_same_sn"``), no kwargs. None =
            inferred from the tensors.
        pixel_range: the input range D was trained on; default (-1, 1).
        device: where D goes.

    Returns:
        G is None (foreign files carry no generator). ``meta`` holds ``format``, ``source``,
        ``d_spec`` (our spec), ``g_spec`` None, ``pixel_range``, ``data`` (``name`` None,
        ``shape`` of one input), ``config`` {} and ``step`` (mimicry's global step or None).

    Examples:
        >>> _, D, meta = load_foreign("netD_epoch_24.pth", format="authors")
        >>> _, D, meta = load_foreign("netD_100000_steps.pth", format="mimicry")
    """
    if format not in LOADERS:
        raise UserError(f"unknown format {format!r}; valid: asgan, {', '.join(FORMATS)}")
    if arch is not None and format not in ("state-dict", "authors"):
        raise UserError(f"--arch applies to --format state-dict and authors only, not {format}")
    lo, hi = (-1.0, 1.0) if pixel_range is None else (float(pixel_range[0]),
                                                       float(pixel_range[1]))
    if not hi > lo:
        raise UserError(f"pixel range must have hi > lo, got {lo},{hi}")
    path = Path(path)
    D, spec, step = LOADERS[format](read_object(path), path, arch, arch_kwargs)
    meta = {"format": f"foreign:{format}", "source": str(path), "d_spec": spec, "g_spec": None,
            "pixel_range": [lo, hi], "data": {"name": None, "shape": _input_shape(spec)},
            "config": {}, "step": step}
    return None, D.to(device).eval(), meta
