"""torch-mimicry's 32 px ResNet discriminators (``--format mimicry``).

A torch-mimicry ``netD`` checkpoint ``{'model_state_dict', 'optimizer_state_dict',
'global_step'}`` (or its bare ``model_state_dict``) of a 32 px ResNet discriminator: SNGAN-32
(``torch_mimicry.nets.sngan.SNGANDiscriminator32``, spectral norm) or mimicry's DCGAN-32 (the
same ResNet without spectral norm). Layer for layer our ``resnet`` D at 32 px:
``block1..4``/``l5`` map to ``blocks.0..3``/``linear`` and torch's old spectral-norm tensors
(``weight_orig``, ``weight_u``, ``weight_v``) to its parametrization (same eval-mode maths).
mimicry's 48/64/128 px nets, its custom spectral norm (``sn_u``), and discriminators with
extra heads (SSGAN, InfoMax-GAN, cGAN-PD) are not supported. Inputs in [-1, 1] (mimicry's
``dcgan_cifar`` wants (0, 1): pass ``pixel_range``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from asgan_base.errors import UserError
from probes.io.families._common import container, logits_desc, no_label, read_object, state_dict_of

NAMES = ("mimicry",)
FORMAT = "torch-mimicry netD checkpoint {model_state_dict, optimizer_state_dict, global_step}"
CHECKED = ("tensors only (weights_only); every tensor name one of SNGAN-32/DCGAN-32's; strict "
           "load into our resnet D")
COUPLING = "none (no BatchNorm, no batch statistics)"
STUBS: tuple[str, ...] = ()

_KEY = re.compile(r"(?:block([1-4])\.(c1|c2|c_sc)|(l5))\."
                  r"(weight|bias|weight_orig|weight_u|weight_v)")
_SN_OLD = {"weight": "weight", "bias": "bias", "weight_orig": "parametrizations.weight.original",
           "weight_u": "parametrizations.weight.0._u", "weight_v": "parametrizations.weight.0._v"}


def _rebuild(obj, path: Path) -> tuple[nn.Module, dict, int | None]:
    from probes.io.families.ours import _build, _weight

    sd = state_dict_of(obj, path)
    step = obj.get("global_step") if isinstance(obj, dict) else None
    if any(k.endswith((".sn_u", ".sn_sigma")) for k in sd):
        raise UserError(f"{path} uses mimicry's custom spectral norm (sn_u buffers); only "
                        "torch's spectral norm (mimicry's default) is supported")
    bad = [k for k in sd if not _KEY.fullmatch(k)]
    if bad:
        raise UserError(f"{path} is not a mimicry 32 px ResNet discriminator (SNGAN-32 / "
                        f"DCGAN-32): unexpected tensors {bad[:3]} (48/64/128 px nets and extra "
                        "heads are not supported)")
    layer = {"c1": "conv1", "c2": "conv2", "c_sc": "shortcut"}
    ours = {}
    for k, v in sd.items():
        block, conv, l5, param = _KEY.fullmatch(k).groups()
        prefix = "linear" if l5 else f"blocks.{int(block) - 1}.{layer[conv]}"
        ours[f"{prefix}.{_SN_OLD[param]}"] = v
    w0 = _weight(ours, "blocks.0.conv1")
    if w0 is None or w0.dim() != 4:
        raise UserError(f"{path}: no 4-D block1.c1 weight; not a mimicry ResNet discriminator")
    spec = {"arch": "resnet", "role": "D", "kwargs": {
        "channels": int(w0.shape[1]), "resolution": 32, "width": int(w0.shape[0]),
        "spectral_norm": any(k.endswith("weight_orig") for k in sd)}}
    step = int(step) if isinstance(step, (int, float)) or (
        torch.is_tensor(step) and step.numel() == 1) else None
    return _build(spec, ours, path, "a mimicry 32 px ResNet D (our resnet D)"), spec, step


def sniff(path: Path) -> str | None:
    """``"mimicry"`` when every tensor is SNGAN-32/DCGAN-32's and they load."""
    try:
        _rebuild(read_object(path), path)
        return "mimicry"
    except Exception:  # noqa: BLE001 - a sniffer answers None for anything else
        return None


def read(path: Path, *, label: int | None = None) -> tuple[nn.Module, dict]:
    """``(D, desc)``: our resnet D with the file's weights; ``desc["extra"]["step"]`` is
    mimicry's ``global_step`` (None when absent)."""
    no_label(label, "torch-mimicry")
    obj = read_object(path)
    D, spec, step = _rebuild(obj, path)
    sn = spec["kwargs"]["spectral_norm"]
    desc = logits_desc(family="torch-mimicry", format=FORMAT, D=D,
                       shape=[spec["kwargs"]["channels"], 32, 32],
                       upstream={"repo": "kwotsin/mimicry", "class":
                                 "torch_mimicry.nets." + ("sngan.SNGANDiscriminator32" if sn
                                                          else "dcgan.DCGANDiscriminator32"),
                                 "init_kwargs": {"ndf": spec["kwargs"]["width"]}},
                       extra={"spec": spec, "step": step, "container": container(obj)},
                       why="its l5 returns (N, 1); reshaped to (N,)")
    return D.eval(), desc
