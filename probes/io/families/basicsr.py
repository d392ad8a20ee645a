"""BasicSR / Real-ESRGAN: the U-Net D with spectral norm, and ESRGAN's VGG-style D.

Two classes of ``xinntao/BasicSR``'s ``basicsr/archs/discriminator_arch.py``, told apart by
their tensor names: ``UNetDiscriminatorSN`` (``basicsr-unet``, Real-ESRGAN) and
``VGGStyleDiscriminator`` (``basicsr-vgg``, SRGAN / ESRGAN; at the end of this docstring).

**UNetDiscriminatorSN**

Upstream: ``xinntao/BasicSR`` ``basicsr/archs/discriminator_arch.py`` (from BasicSR 1.3.4; the
same class first shipped in ``xinntao/Real-ESRGAN``'s ``realesrgan/archs``). Training saves
``experiments/<name>/models/net_d_<iter>.pth`` = ``torch.save({'params': state_dict})``
(``params_ema`` where an EMA copy is kept; a bare state_dict is accepted too). Layer facts,
rebuilt here in plain torch with the file's names (``conv0`` .. ``conv9``):

- ``conv0``: 3x3 conv ``num_in_ch -> num_feat`` with bias (no spectral norm);
- ``conv1..3``: 4x4 stride-2 pad-1 convs, no bias, channels x2 each (``F -> 2F -> 4F -> 8F``);
- ``conv4..6``: 3x3 convs halving the channels, each after a bilinear x2 upsampling
  (``align_corners=False``); with ``skip_connection`` the outputs of conv4/5/6 get
  ``x2``/``x1``/``x0`` added (the encoder features of the same side);
- ``conv7``, ``conv8``: 3x3 ``F -> F``; ``conv9``: 3x3 ``F -> 1`` with bias (no spectral norm);
- LeakyReLU(0.2) after every conv but conv9. Output: a per-pixel map ``(N, 1, H, W)``.

Spectral norm is torch's hook style (``weight_orig``, ``weight_u``, ``weight_v``; the newer
``parametrizations.weight.original/0._u/0._v`` names are mapped to it): the weight is
``weight_orig / sigma``, ``sigma = u . (W v)`` from the *stored* u and v, the eval-mode maths of
torch, with no power iteration (:class:`probes.io.families.authors.SpectralNormed`).

``num_in_ch`` and ``num_feat`` come from the tensors. ``skip_connection`` has no tensors of its
own, so it is read from the run's BasicSR options file when one sits beside ``models/``
(``experiments/<name>/*.yml`` with ``network_d: {type: UNetDiscriminatorSN, skip_connection:
...}``), else taken from the caller, else ``True``: every Real-ESRGAN option file sets it so.
``extra`` says which source decided.

Images are in **[0, 1]** (BasicSR's data pipeline); the side must be a multiple of 8 with skip
connections (the encoder features are added after x2 upsampling). ``resolution`` is declared
256, Real-ESRGAN's training crop (``gt_size``). Real-ESRGAN's GAN loss averages the per-pixel
map, so the declared reduction is ``mean`` over positions. No BatchNorm, no coupling.

**VGGStyleDiscriminator** (``num_in_ch``, ``num_feat``, ``input_size`` 128 or 256): ``conv0_0``
3x3 with bias, then ``conv<k>_1`` 4x4 stride 2 (k = 0..4, and 5 at 256 px) and ``conv<k>_0``
3x3 (k = 1..4 / 5), no bias, each followed by ``bn<k>_<j>`` (BatchNorm2d, eps 1e-5, the
constructor default) and LeakyReLU(0.2); channels ``F, F, 2F, 2F, 4F, 4F, 8F, 8F, ...``; the
(8F, 4, 4) features flattened into ``linear1`` (-> 100), LeakyReLU(0.2), ``linear2`` (-> 1).
Output ``(N, 1)``: reduction ``squeeze``. It takes exactly ``input_size`` px (inferred from
``conv5_0``'s presence), in [0, 1]. BatchNorm couples samples in train mode (``coupling``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asgan_base.errors import UserError
from probes.io.families._common import load_strict
from probes.io.families.authors import SpectralNormed
from probes.io.safe_pickle import is_torch_zip, load_torch_zip, zip_pickle_bytes

NAMES: tuple[str, ...] = ("basicsr-unet", "basicsr-vgg")
FORMAT = ("BasicSR / Real-ESRGAN net_d_*.pth: torch.save({'params' | 'params_ema': state_dict}) "
          "of UNetDiscriminatorSN or VGGStyleDiscriminator (or a bare state_dict)")
CHECKED = ("tensors and plain containers only; num_in_ch, num_feat (, input_size) from the "
           "tensors, U-Net skip_connection from the run's options file or the caller; loaded "
           "strictly, spectral-norm u, v as stored")
COUPLING = ("U-Net: none (spectral norm with stored u, v); VGG-style: BatchNorm, removed by the "
            "probe modes (frozen clean-group statistics)")
STUBS: tuple[str, ...] = ()

RESOLUTION = 256  # Real-ESRGAN's gt_size; any multiple of 8 works
BN_EPS = 1e-5  # nn.BatchNorm2d's default, which VGGStyleDiscriminator uses; not stored
PARAM_KEYS = ("params", "params_ema")
_SN_NEW = {"parametrizations.weight.original": "weight_orig",
           "parametrizations.weight.0._u": "weight_u",
           "parametrizations.weight.0._v": "weight_v"}
_SNIFF_LOAD_LIMIT = 256 << 20  # bytes


def _act(t: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(t, 0.2)


def _up(t: torch.Tensor) -> torch.Tensor:
    """x2 bilinear upsampling, as upstream (``align_corners=False``)."""
    return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)


class UNetSN(nn.Module):
    """x (N, num_in_ch, H, W) in [0, 1] -> per-pixel logits (N, 1, H, W) (module docstring)."""

    def __init__(self, num_in_ch: int, num_feat: int, skip_connection: bool) -> None:
        super().__init__()
        f = num_feat
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        for i, (c_in, c_out) in enumerate(((f, 2 * f), (2 * f, 4 * f), (4 * f, 8 * f)), 1):
            setattr(self, f"conv{i}", SpectralNormed((c_out, c_in, 4, 4), bias=False, stride=2,
                                                     padding=1))
        for i, (c_in, c_out) in enumerate(((8 * f, 4 * f), (4 * f, 2 * f), (2 * f, f), (f, f),
                                           (f, f)), 4):
            setattr(self, f"conv{i}", SpectralNormed((c_out, c_in, 3, 3), bias=False, stride=1,
                                                     padding=1))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip_connection and (x.shape[-1] % 8 or x.shape[-2] % 8):
            raise UserError(f"a U-Net D with skip connections takes sides that are multiples "
                            f"of 8, got {tuple(x.shape[-2:])}; resize or crop the images")
        act, up = _act, _up
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        h = act(self.conv4(up(x3)))
        if self.skip_connection:
            h = h + x2
        h = act(self.conv5(up(h)))
        if self.skip_connection:
            h = h + x1
        h = act(self.conv6(up(h)))
        if self.skip_connection:
            h = h + x0
        h = act(self.conv8(act(self.conv7(h))))
        return self.conv9(h)


class VGGStyle(nn.Module):
    """x (N, num_in_ch, S, S) in [0, 1], S = ``input_size`` -> logits (N, 1) (docstring)."""

    def __init__(self, num_in_ch: int, num_feat: int, input_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        f = num_feat
        self.conv0_0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.conv0_1 = nn.Conv2d(f, f, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(f, eps=BN_EPS)
        self.blocks = 5 if input_size == 128 else 6
        c = f
        for k in range(1, self.blocks):
            out = f * min(2 ** k, 8)
            setattr(self, f"conv{k}_0", nn.Conv2d(c, out, 3, 1, 1, bias=False))
            setattr(self, f"bn{k}_0", nn.BatchNorm2d(out, eps=BN_EPS))
            setattr(self, f"conv{k}_1", nn.Conv2d(out, out, 4, 2, 1, bias=False))
            setattr(self, f"bn{k}_1", nn.BatchNorm2d(out, eps=BN_EPS))
            c = out
        self.linear1 = nn.Linear(f * 8 * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise UserError(f"this VGG-style D takes {self.input_size} x {self.input_size} "
                            f"images, got {tuple(x.shape[-2:])}; resize them")
        h = _act(self.conv0_0(x))
        h = _act(self.bn0_1(self.conv0_1(h)))
        for k in range(1, self.blocks):
            for j in (0, 1):
                h = _act(getattr(self, f"bn{k}_{j}")(getattr(self, f"conv{k}_{j}")(h)))
        return self.linear2(_act(self.linear1(h.flatten(1))))


# ----------------------------------------------------------------------------- reading
def _state_dict(obj: Any, what: str) -> tuple[dict[str, torch.Tensor], str]:
    """``(the D's tensors with hook-style spectral-norm names, the key they sat under)``."""
    key = "(bare)"
    sd = obj
    if isinstance(obj, dict):
        for k in PARAM_KEYS:
            if isinstance(obj.get(k), dict):
                sd, key = obj[k], k
                break
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise UserError(f"{what}: holds a {type(sd).__name__}, not a BasicSR network file "
                        "({'params': state_dict})")
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not torch.is_tensor(v):
            continue
        k = k[len("module."):] if k.startswith("module.") else k
        for new, old in _SN_NEW.items():
            k = re.sub(rf"\.{re.escape(new)}$", f".{old}", k)
        out[k] = v
    return out, key


def _infer(sd: dict[str, torch.Tensor], what: str) -> dict[str, Any]:
    """``{"kind": "unet" | "vgg", "num_in_ch", "num_feat"[, "input_size"]}`` from the tensor
    names and the first conv (UserError if neither class)."""
    if "conv0.weight" in sd and "conv9.weight" in sd and "conv1.weight_orig" in sd:
        w0, kind = sd["conv0.weight"], "unet"
    elif "conv0_0.weight" in sd and "linear2.weight" in sd:
        w0, kind = sd["conv0_0.weight"], "vgg"
    else:
        raise UserError(f"{what}: neither UNetDiscriminatorSN (conv0, spectral-normed conv1, "
                        "conv9) nor VGGStyleDiscriminator (conv0_0 .. linear2) tensors; not a "
                        "BasicSR discriminator file")
    if w0.dim() != 4 or tuple(w0.shape[2:]) != (3, 3):
        raise UserError(f"{what}: a first conv of shape {tuple(w0.shape)}, not 3x3; not a "
                        "BasicSR discriminator")
    spec: dict[str, Any] = {"kind": kind, "num_in_ch": int(w0.shape[1]),
                            "num_feat": int(w0.shape[0])}
    if kind == "vgg":
        spec["input_size"] = 256 if "conv5_0.weight" in sd else 128
    return spec


def _net(spec: dict[str, Any], skip: bool) -> nn.Module:
    if spec["kind"] == "unet":
        return UNetSN(spec["num_in_ch"], spec["num_feat"], skip)
    return VGGStyle(spec["num_in_ch"], spec["num_feat"], spec["input_size"])


def _build(sd: dict[str, torch.Tensor], spec: dict[str, Any], skip: bool, what: str
           ) -> nn.Module:
    net = _net(spec, skip)
    name = f"{type(net).__name__}({', '.join(f'{k}={v}' for k, v in spec.items() if k != 'kind')})"
    load_strict(net, sd, what, name)
    for key, m in net.named_children():
        if isinstance(m, SpectralNormed):
            with torch.no_grad():  # a check, not a graph (float() of a grad tensor warns)
                sigma = float(torch.dot(m.weight_u, torch.mv(m.weight_orig.flatten(1),
                                                             m.weight_v)))
            if not (abs(sigma) > 0 and sigma == sigma and abs(sigma) != float("inf")):
                raise UserError(f"{what}: {key}'s spectral-norm vectors give sigma = {sigma}; "
                                "the file's u/v are broken")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def _options_skip(path: Path) -> tuple[bool | None, str | None]:
    """``skip_connection`` from the run's options file (``<exp>/*.yml`` beside ``models/``)."""
    try:
        import yaml  # optional: only to read the run's options file
    except ImportError:
        return None, None
    roots = [path.parent.parent] if path.parent.name == "models" else []
    for root in roots + [path.parent]:
        for yml in sorted(root.glob("*.yml"))[:20]:
            try:
                opt = yaml.safe_load(yml.read_text(encoding="utf-8", errors="replace"))
            except (OSError, yaml.YAMLError):
                continue
            net_d = opt.get("network_d") if isinstance(opt, dict) else None
            if isinstance(net_d, dict) and net_d.get("type") == "UNetDiscriminatorSN":
                skip = net_d.get("skip_connection", True)  # the class's default
                if isinstance(skip, bool):
                    return skip, str(yml)
    return None, None


def sniff(path: Path) -> str | None:
    """``"basicsr-unet"`` / ``"basicsr-vgg"`` for a torch zip holding that D's state_dict (as
    is, or under ``params`` / ``params_ema``); else None. Never raises."""
    try:
        path = Path(path)
        data = zip_pickle_bytes(path) if path.is_file() else None
        if data is None:
            return None
        if b"conv0.weight" in data and b"conv9.weight" in data and b"conv1." in data:
            name = NAMES[0]
        elif b"conv0_0.weight" in data and b"linear2.weight" in data:
            name = NAMES[1]
        else:
            return None
        if path.stat().st_size > _SNIFF_LOAD_LIMIT:
            return name
        sd, _ = _state_dict(load_torch_zip(path, stubs=STUBS), str(path))
        _build(sd, _infer(sd, str(path)), True, str(path))
        return name
    except Exception:  # sniff never raises: anything unreadable is not ours
        return None


def read(path: Path, *, label: int | None = None, skip_connection: bool | None = None
         ) -> tuple[nn.Module, dict]:
    """The file's D rebuilt in our code: ``(D, desc)`` (FAMILIES.md). ``D(x)``: x (N, C, H, W)
    in [0, 1] -> the upstream output as is: (N, 1, H, W) for the U-Net D, (N, 1) for the
    VGG-style D. ``skip_connection`` (U-Net only): used when the run's options file does not
    say (module docstring); an options file that disagrees is an error. UserError (one line)
    for a label (both are unconditional), malformed or foreign files."""
    path = Path(path)
    what = str(path)
    if label is not None:
        raise UserError(f"{what}: a BasicSR discriminator is unconditional; drop the label")
    if not path.is_file():
        raise UserError(f"{what}: no such file")
    if not is_torch_zip(path):
        raise UserError(f"{what}: not a torch.save zip file; BasicSR writes net_d_*.pth with "
                        "torch.save (re-save legacy files with a current torch)")
    sd, key = _state_dict(load_torch_zip(path, stubs=STUBS, what=what), what)
    stored_dtype = str(next(iter(sd.values())).dtype).replace("torch.", "") if sd else "?"
    spec = _infer(sd, what)
    c, f = spec["num_in_ch"], spec["num_feat"]
    extra: dict[str, Any] = {"param_key": key, "stored_dtype": stored_dtype}
    if spec["kind"] == "vgg":
        if skip_connection is not None:
            raise UserError(f"{what}: a VGG-style D has no skip connections; drop "
                            "skip_connection")
        net = _build(sd, spec, False, what)
        n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        size = spec["input_size"]
        desc = _desc(NAMES[1], c, size, "(N, 1)", "squeeze",
                     "ESRGAN's GAN loss takes one logit per image",
                     [{"kind": "batchnorm", "layers": n_bn}], "VGGStyleDiscriminator",
                     {"num_in_ch": c, "num_feat": f, "input_size": size})
        extra.update(architecture=f"VGGStyleDiscriminator(num_feat={f}, input_size={size})",
                     batchnorm_eps=BN_EPS, input_side=size)
        desc["extra"] = extra
        return net, desc
    opt_skip, opt_file = _options_skip(path)
    if opt_skip is not None and skip_connection is not None and opt_skip != skip_connection:
        raise UserError(f"{what}: skip_connection={skip_connection} was asked for, but the run's "
                        f"options file {opt_file} says {opt_skip}")
    if opt_skip is not None:
        skip, source = opt_skip, f"options file {opt_file}"
    elif skip_connection is not None:
        skip, source = bool(skip_connection), "caller"
    else:
        skip, source = True, "default (Real-ESRGAN's options; the file has no tensor for it)"
    net = _build(sd, spec, skip, what)
    desc = _desc(NAMES[0], c, RESOLUTION, "(N, 1, H, W)", "mean",
                 "Real-ESRGAN's GAN loss averages the per-pixel map", [], "UNetDiscriminatorSN",
                 {"num_in_ch": c, "num_feat": f, "skip_connection": skip})
    extra.update(architecture=f"UNetDiscriminatorSN(num_feat={f}, skip_connection={skip})",
                 skip_connection_source=source, side_multiple=8,
                 spectral_norm="stored u, v; no power iteration")
    desc["extra"] = extra
    return net, desc


def _desc(family: str, channels: int, resolution: int, shape: str, reduction: str, why: str,
          coupling: list, cls: str, init_kwargs: dict) -> dict[str, Any]:
    return {
        "family": family, "format": FORMAT, "resolution": resolution, "channels": channels,
        "conditional": False, "num_classes": None, "label": None, "pixel_range": [0.0, 1.0],
        "output": {"shape": shape, "reduction": reduction, "why": why},
        "coupling": coupling, "randomness": "none",
        "upstream": {"repo": "xinntao/BasicSR", "class": f"basicsr.archs.discriminator_arch.{cls}",
                     "init_kwargs": init_kwargs},
        "extra": {},
    }
