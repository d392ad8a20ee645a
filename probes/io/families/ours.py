"""asgan-probe's own discriminators as plain ``state_dict`` files (``--format state-dict``).

A ``state_dict`` of one of our discriminators (``dcgan``, ``resnet``, ``mlp``; with or without
spectral norm), saved with ``torch.save`` or as a plain safetensors file (an asgan-probe
checkpoint's ``D.*`` tensors are accepted too; TorchScript archives of them are read as
tensors, never run). The architecture is inferred from tensor names and shapes, or named with
``arch`` / ``arch_kwargs``. D returns raw logits ``(N,)`` of inputs in [-1, 1].

A ``DataParallel`` ``module.`` prefix is removed. Files are read by
:func:`probes.io.families._common.read_object`: nothing is ever unpickled beyond tensors and
plain containers, so a crafted file cannot run code. A whole pickled ``nn.Module``, an unknown
layout or weights that do not fit raise :class:`UserError` with one line naming the problem.

It rebuilds the nets with ``trainers.nets``, through :mod:`probes.io.edge`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from asgan_base.errors import UserError
from probes.io.families._common import (
    container,
    logits_desc,
    no_label,
    read_object,
    state_dict_of,
)

NAMES = ("state-dict",)
FORMAT = ("a state_dict of an asgan-probe D (dcgan/resnet/mlp), torch.save or safetensors "
          "(TorchScript: tensors only)")
CHECKED = ("tensors only (weights_only / safetensors); architecture inferred from names and "
           "shapes; strict load")
COUPLING = "BatchNorm (dcgan): frozen clean-reference statistics; none otherwise"
STUBS: tuple[str, ...] = ()


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
    from probes.io.edge import build_net

    D = build_net(spec)
    try:
        D.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        detail = " ".join(str(e).split())[len(first):][:160]
        raise UserError(f"{path}: the weights do not fit {what} {spec['kwargs']} "
                        f"({first[:80]}{detail})") from None
    return D


def _full_kwargs(spec: dict) -> dict:
    """Every argument, defaults included, as our checkpoints record them."""
    import inspect

    from probes.io.edge import ARCHS

    params = inspect.signature(ARCHS[spec["arch"]]["D"]).parameters
    return {**{k: p.default for k, p in params.items()}, **spec["kwargs"]}


def _state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    sd = state_dict_of(obj, path)
    if any(k.startswith("D.") for k in sd):  # the D.* tensors of an asgan-probe checkpoint
        sd = {k[2:]: v for k, v in sd.items() if k.startswith("D.")}
    return sd


def input_shape(spec: dict) -> list[int]:
    """One input's shape: ``[dim]`` (mlp) or ``[C, R, R]``."""
    kw = spec["kwargs"]
    if spec["arch"] == "mlp":
        return [int(kw["dim"])]
    return [int(kw["channels"]), int(kw["resolution"]), int(kw["resolution"])]


def sniff(path: Path) -> str | None:
    """``"state-dict"`` when the file's tensors are one of our D's (inferred, shapes fit).
    Not for a file that also holds G tensors: that is an asgan-probe checkpoint whose record
    did not read, for the checkpoint reader to say why (``--format state-dict`` takes its D)."""
    try:
        obj = read_object(path)
        if isinstance(obj, dict) and any(str(k).startswith("G.") for k in obj):
            return None
        sd = _state_dict(obj, path)
        spec = infer_spec(sd)
        _build(spec, sd, path, f"{spec['arch']} D")
        return "state-dict"
    except Exception:  # noqa: BLE001 - a sniffer answers None for anything else
        return None


def read(path: Path, *, label: int | None = None, format: str | None = None,
         arch: str | None = None, arch_kwargs: dict | None = None) -> tuple[nn.Module, dict]:
    """``(D, desc)``: our D rebuilt from the file's tensors (module docstring); ``arch`` and
    ``arch_kwargs`` name the architecture instead of inferring it, e.g. ``"dcgan",
    {"channels": 3, "resolution": 32, "width": 64}``."""
    no_label(label, "state-dict")
    obj = read_object(path)
    sd = _state_dict(obj, path)
    if arch is not None:
        spec = {"arch": arch, "role": "D", "kwargs": dict(arch_kwargs or {})}
    elif arch_kwargs:
        raise UserError("--arch-kwargs needs --arch")
    else:
        spec = infer_spec(sd)
    D = _build(spec, sd, path, f"{spec['arch']} D")
    spec = {"arch": spec["arch"], "role": "D", "kwargs": _full_kwargs(spec)}
    desc = logits_desc(family="asgan-probe", format=FORMAT, D=D, shape=input_shape(spec),
                       upstream={"repo": "asgan-probe", "class": f"trainers.nets ({spec['arch']} "
                                 "D)", "init_kwargs": spec["kwargs"]},
                       extra={"spec": spec, "container": container(obj)},
                       why="our nets return raw logits (N,)")
    return D.eval(), desc
