"""StyleGAN2-ADA and StyleGAN3 snapshot pickles (NVlabs), read without running their code.

Format: ``network-snapshot-*.pkl`` is ``pickle.dump`` of a dict ``{G, D, G_ema, augment_pipe,
training_set_kwargs}``; every network is pickled through ``torch_utils.persistence`` as
``_reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src, class_name,
state}``: ``module_src`` is the *source of the whole Python module* defining the class, which
upstream ``exec``s on load, and ``state`` the instance ``__dict__`` (``_parameters``,
``_buffers``, ``_modules`` of nested records, plain attributes such as ``weight_gain``, and
``_init_kwargs``, the constructor's arguments). Official release pickles have the same layout.

Here the file is read by :mod:`probes.io.safe_pickle` with the globals in :data:`STUBS` as
inert records (anything else is refused, naming it); ``module_src`` is never executed: its
sha256 is compared with the upstream releases in :data:`KNOWN_SOURCES` and reported. D is
rebuilt in plain torch from the recorded state: every tensor (weights, biases, each layer's
own ``resample_filter`` buffer: never the constant ``[1, 3, 3, 1]``) and every recorded scalar
(``weight_gain``, ``act_gain``, ``conv_clamp``, ``bias_gain``: the equalized-learning-rate
gains are the ones upstream multiplies by). Both repositories' discriminator is the same
StyleGAN2 D (SG3 trains it from ``training/networks_stylegan2.py``): ``orig`` / ``skip`` /
``resnet`` blocks of FromRGB + 3x3 conv + 3x3 conv with FIR-filtered 2x downsampling, then the
4x4 epilogue (minibatch-stddev as :class:`probes.core.coupling.MinibatchStd`, 3x3 conv, fc,
out) and, for a conditional D (``c_dim > 0``), the mapping network's ``cmap`` projection:
``out(x) . cmap / sqrt(cmap_dim)``.

Upstream semantics rebuilt (``torch_utils/ops``, CPU reference paths):

- ``bias_act``: ``x + b``, the activation (``lrelu`` slope 0.2), times ``act_gain * gain`` when
  that is not 1, clamped to ``+-conv_clamp * gain``.
- ``upfirdn2d`` (no upsampling here): pad (negative = crop), convolve with the *flipped*
  filter (true convolution; a 2-D filter, or a separable 1-D one row then column), keep every
  ``down``-th pixel. ``conv2d_resample`` with ``down=2``: FIR-pad then a strided conv (3x3), or
  FIR-downsample then the 1x1 conv (resnet skip); ``downsample2d`` for ``skip`` images.
- ``MinibatchStdLayer``: groups ``G = min(group_size, N)`` strided over the batch (see
  :mod:`probes.core.coupling`); this is the one cross-sample path in the net.

Float16 blocks (``num_fp16_res``) run in float32 here, as upstream does on the CPU (StyleGAN3)
or with ``force_fp32=True``; on CUDA upstream would run them in float16.

D's output is upstream's ``(N, 1)`` (one logit per image, read as is by its softplus loss):
reduction ``squeeze``. A conditional D is bound to one class: ``c`` is its one-hot for every
sample. Torch only; no other file of the package is needed beyond ``safe_pickle``,
``coupling`` and ``asgan_base.errors``.
"""

from __future__ import annotations

import hashlib
import math
import operator
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asgan_base.errors import UserError
from probes.core.coupling import MinibatchStd
from probes.io.safe_pickle import Stub, read_any

NAMES = ("stylegan2-ada", "stylegan3")
FORMAT = ("NVlabs network-snapshot-*.pkl: pickled dict {G, D, G_ema, augment_pipe, "
          "training_set_kwargs}, networks as torch_utils.persistence records with embedded source")
CHECKED = ("only tensors, containers and persistence/EasyDict records are unpickled; embedded "
           "source hashed, never run; every D tensor shape-checked against its neighbours")
COUPLING = ("minibatch-stddev (group size and channels from the file): rebuilt as MinibatchStd, "
            "per-sample mode completes each group with clean references")
STUBS = (
    "torch_utils.persistence._reconstruct_persistent_obj",  # every network record
    "dnnlib.util.EasyDict", "dnnlib.EasyDict",  # the *_kwargs dicts (a dict subclass)
    "torch.nn.modules.",  # plain torch modules, should a network hold one
)
_RECONSTRUCT = STUBS[0]

# sha256 of module_src (the module's text as inspect.getsource gives it: UTF-8, no BOM) ->
# (family, where it comes from). The files have one version each in their repositories'
# history (stylegan2-ada-pytorch's only change, 583f2bd, removed a BOM, which getsource drops).
KNOWN_SOURCES = {
    "53b4e1ec457171d4e2c1454d48013765ab626141c35cdd383b020950effe11a5":
        ("stylegan2-ada", "NVlabs/stylegan2-ada-pytorch@d72cc7d training/networks.py"),
    "b6f14e8fa2a95de4d38218fef31380c6a70de770f585107e209ff83075c307ef":
        ("stylegan3", "NVlabs/stylegan3@c233a91 training/networks_stylegan2.py"),
    "06082fb3e8929e477f58fb8bc78e7ecb9a9209eb01444272d1d153c85a6a89f7":
        ("stylegan3", "NVlabs/stylegan3@c233a91 training/networks_stylegan3.py"),
}
REPOS = {"stylegan2-ada": ("NVlabs/stylegan2-ada-pytorch", "training.networks"),
         "stylegan3": ("NVlabs/stylegan3", "training.networks_stylegan2")}
PIXEL_RANGE = (-1.0, 1.0)
SNIFF_BYTES = 1 << 20  # the persistence global is among a snapshot's first opcodes

# bias_act's activations: function and default gain (torch_utils/ops/bias_act.py)
_SQRT2 = float(np.sqrt(2))
ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, _SQRT2),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), _SQRT2),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
    "elu": (F.elu, 1.0),
    "selu": (F.selu, 1.0),
    "softplus": (F.softplus, 1.0),
    "swish": (lambda x: torch.sigmoid(x) * x, _SQRT2),
}
SKIP_GAIN = float(np.sqrt(0.5))  # resnet blocks: skip and main path each scaled by sqrt(1/2)


# ----------------------------------------------------------------------------- the layers
def _bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str, gain: float,
              clamp: float | None) -> torch.Tensor:
    """Upstream ``bias_act`` on dim 1: ``clamp(act(x + b) * gain, +-clamp)``."""
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.dim() - 2))
    x = ACTIVATIONS[act][0](x)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _filter_size(f: torch.Tensor) -> tuple[int, int]:
    """(width, height) of a FIR filter: 2-D ``[fh, fw]`` or separable 1-D ``[taps]``."""
    return (int(f.shape[-1]), int(f.shape[0])) if f.dim() == 2 else (f.numel(), f.numel())


def fir_down(x: torch.Tensor, f: torch.Tensor, down: int, pad: tuple[int, int, int, int]
             ) -> torch.Tensor:
    """Upstream ``upfirdn2d(x, f, down=down, padding=pad)`` with ``up=1``, ``gain=1``:
    pad ``[x0, x1, y0, y1]`` (negative crops), convolve every channel with the flipped filter,
    keep every ``down``-th pixel (as a strided convolution: the same sums)."""
    n, c, h, w = x.shape
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    f = f.to(x.dtype).flip(list(range(f.dim())))
    if f.dim() == 2:
        return F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c, stride=down)
    k = f[None, None].expand(c, 1, f.numel())
    x = F.conv2d(x, k.unsqueeze(2), groups=c, stride=(1, down))
    return F.conv2d(x, k.unsqueeze(3), groups=c, stride=(down, 1))


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """Upstream ``upfirdn2d.downsample2d`` (padding centred on the filter)."""
    fw, fh = _filter_size(f)
    return fir_down(x, f, down, ((fw - down + 1) // 2, (fw - down) // 2,
                                 (fh - down + 1) // 2, (fh - down) // 2))


def _frozen(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t.detach().float().clone(), requires_grad=False)


class Conv(nn.Module):
    """Upstream ``Conv2dLayer`` (no upsampling): ``bias_act(conv2d_resample(x, w * weight_gain,
    resample_filter, down), b, act, act_gain * gain, conv_clamp * gain)``.
    ``(N, I, H, W)`` -> ``(N, O, H / down, W / down)``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None,
                 resample_filter: torch.Tensor, *, weight_gain: float, activation: str,
                 act_gain: float, conv_clamp: float | None, down: int, padding: int) -> None:
        super().__init__()
        self.weight = _frozen(weight)
        self.bias = _frozen(bias)
        self.register_buffer("resample_filter", resample_filter.detach().float().clone())
        self.weight_gain, self.activation, self.act_gain = weight_gain, activation, act_gain
        self.conv_clamp, self.down, self.padding = conv_clamp, down, padding

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return (f"{i}->{o}, k={k}, down={self.down}, act={self.activation}, "
                f"clamp={self.conv_clamp}")

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        k = w.shape[-1]
        p = self.padding
        if self.down > 1:  # conv2d_resample's padding for the FIR filter
            fw, fh = _filter_size(self.resample_filter)
            d = self.down
            pad = (p + (fw - d + 1) // 2, p + (fw - d) // 2, p + (fh - d + 1) // 2,
                   p + (fh - d) // 2)
            if k == 1:  # downsample first, then the 1x1 conv
                x = F.conv2d(fir_down(x, self.resample_filter, d, pad), w)
            else:  # FIR (pad and filter), then the strided conv
                x = F.conv2d(fir_down(x, self.resample_filter, 1, pad), w, stride=d)
        else:
            x = F.conv2d(x, w, padding=p)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return _bias_act(x, self.bias, self.activation, self.act_gain * gain, clamp)


class Dense(nn.Module):
    """Upstream ``FullyConnectedLayer``: ``x @ (w * weight_gain).T + b * bias_gain``, then the
    activation with its default gain. ``(N, I)`` -> ``(N, O)``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, *, weight_gain: float,
                 bias_gain: float, activation: str) -> None:
        super().__init__()
        self.weight = _frozen(weight)
        self.bias = _frozen(bias)
        self.weight_gain, self.bias_gain, self.activation = weight_gain, bias_gain, activation

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}->{o}, act={self.activation}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return _bias_act(x.matmul(w.t()), b, self.activation, ACTIVATIONS[self.activation][1],
                         None)


class Block(nn.Module):
    """Upstream ``DiscriminatorBlock``: ``(x, img)`` at resolution r -> at r / 2.
    ``orig``: conv0, conv1 (FromRGB on the first block); ``skip``: FromRGB of the downsampled
    image added at every block; ``resnet``: ``skip(x) * sqrt(1/2) + conv1(conv0(x)) *
    sqrt(1/2)`` (gains folded into the layers' gain, as upstream)."""

    def __init__(self, architecture: str, first: bool, layers: dict[str, Conv],
                 resample_filter: torch.Tensor) -> None:
        super().__init__()
        self.architecture, self.first = architecture, first
        for name, layer in layers.items():
            setattr(self, name, layer)
        self.register_buffer("resample_filter", resample_filter.detach().float().clone())

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None):
        if self.first or self.architecture == "skip":
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" \
                else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=SKIP_GAIN)
            x = self.conv1(self.conv0(x), gain=SKIP_GAIN)
            return y + x, img
        return self.conv1(self.conv0(x)), img


class Epilogue(nn.Module):
    """Upstream ``DiscriminatorEpilogue`` at 4x4: [FromRGB (skip)], minibatch-stddev, 3x3
    conv, fc over the flattened map, out; with ``cmap`` ``(N, cmap_dim)`` the projection
    ``sum(out * cmap) / sqrt(cmap_dim)``. Returns ``(N, 1)``."""

    def __init__(self, architecture: str, mbstd: MinibatchStd | None, layers: dict[str, Any],
                 cmap_dim: int) -> None:
        super().__init__()
        self.architecture, self.cmap_dim = architecture, cmap_dim
        self.mbstd = mbstd
        for name, layer in layers.items():
            setattr(self, name, layer)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None,
                cmap: torch.Tensor | None) -> torch.Tensor:
        if self.architecture == "skip":
            x = x + self.fromrgb(img)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Mapping(nn.Module):
    """Upstream ``MappingNetwork`` as a conditional D uses it (no latent z, no w_avg):
    ``c (N, c_dim)`` -> ``embed`` -> normalise the second moment -> ``fc0..`` -> ``cmap``."""

    def __init__(self, embed: Dense, fcs: list[Dense]) -> None:
        super().__init__()
        self.embed = embed
        self.fcs = nn.ModuleList(fcs)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        x = self.embed(c)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for fc in self.fcs:
            x = fc(x)
        return x


class StyleGANDiscriminator(nn.Module):
    """The rebuilt D: ``x (N, C, R, R)`` in [-1, 1] -> upstream's ``(N, 1)`` logits; a
    conditional D uses the one-hot ``c`` of its bound ``label`` for every sample."""

    def __init__(self, blocks: dict[int, Block], epilogue: Epilogue, mapping: Mapping | None,
                 *, resolution: int, channels: int, c_dim: int, label: int | None) -> None:
        super().__init__()
        self.resolution, self.channels, self.c_dim, self.label = resolution, channels, c_dim, \
            label
        self.block_resolutions = sorted(blocks, reverse=True)
        for res, block in blocks.items():
            setattr(self, f"b{res}", block)
        self.b4 = epilogue
        self.mapping = mapping
        c = torch.zeros(1, c_dim)
        if label is not None:
            c[0, label] = 1
        self.register_buffer("c", c)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, channels={self.channels}, label={self.label}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, self.resolution,
                                                   self.resolution):
            raise ValueError(f"StyleGAN D takes (N, {self.channels}, {self.resolution}, "
                             f"{self.resolution}) images, got {tuple(x.shape)}")
        h, img = None, x
        for res in self.block_resolutions:
            h, img = getattr(self, f"b{res}")(h, img)
        cmap = None
        if self.mapping is not None:  # the same class for every sample: map it once
            cmap = self.mapping(self.c.to(x.dtype)).expand(x.shape[0], -1)
        return self.b4(h, img, cmap)


# ----------------------------------------------------------------------------- the records
def _is_record(obj: Any) -> bool:
    return isinstance(obj, Stub) and obj.global_name == _RECONSTRUCT and len(obj.args) == 1 \
        and isinstance(obj.args[0], dict)


def _meta(obj: Any, where: str, what: str) -> dict:
    if not _is_record(obj):
        raise UserError(f"{what}: {where} is not a torch_utils.persistence record "
                        f"({type(obj).__name__}); not a StyleGAN2-ADA/StyleGAN3 snapshot")
    meta = obj.args[0]
    if meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise UserError(f"{what}: {where} is a persistence record of type "
                        f"{meta.get('type')!r} without a state dict; not a network")
    return meta


class _Rec:
    """One network record: its class name, state, tensors and child records."""

    def __init__(self, obj: Any, where: str, what: str) -> None:
        meta = _meta(obj, where, what)
        self.where, self.what = where, what
        self.class_name = str(meta.get("class_name"))
        self.src = meta.get("module_src")
        self.version = meta.get("version")
        self.state = meta["state"]
        self.tensors: dict[str, torch.Tensor | None] = {}
        for key in ("_parameters", "_buffers"):
            d = self.state.get(key) or {}
            if not isinstance(d, dict):
                raise UserError(f"{what}: {where}.{key} is not a dict")
            self.tensors.update(d)
        self.children = self.state.get("_modules") or {}
        if not isinstance(self.children, dict):
            raise UserError(f"{what}: {where}._modules is not a dict")

    def child(self, name: str, cls: str | tuple[str, ...]) -> _Rec:
        obj = self.children.get(name)
        rec = _Rec(obj, f"{self.where}.{name}", self.what)
        if rec.class_name not in ((cls,) if isinstance(cls, str) else cls):
            raise UserError(f"{self.what}: {rec.where} is a {rec.class_name}, expected {cls}")
        return rec

    def has(self, name: str) -> bool:
        return self.children.get(name) is not None

    def tensor(self, name: str, ndim: int | tuple[int, ...], *, optional: bool = False
               ) -> torch.Tensor | None:
        t = self.tensors.get(name)
        if t is None and optional:
            return None
        ok = (ndim,) if isinstance(ndim, int) else ndim
        if not torch.is_tensor(t) or t.dim() not in ok or not t.is_floating_point():
            raise UserError(f"{self.what}: {self.where}.{name} is missing or not a "
                            f"{'/'.join(map(str, ok))}-d float tensor")
        return t

    def value(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        v = self.state.get(name, default)
        if v is ... or (v is None and default is ...):
            raise UserError(f"{self.what}: {self.where} records no {name}")
        if isinstance(v, np.generic):
            v = v.item()
        if v is not None and not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
            raise UserError(f"{self.what}: {self.where}.{name} is {v!r:.40}, not a "
                            f"{getattr(kind, '__name__', kind)}")
        return v


def _num(rec: _Rec, name: str, default: Any = ...) -> float | None:
    v = rec.value(name, (int, float), default)
    return None if v is None else float(v)


def _filter(rec: _Rec) -> torch.Tensor:
    f = rec.tensor("resample_filter", (1, 2))
    if f.numel() == 0 or f.dim() == 2 and f.shape[0] != f.shape[1]:
        raise UserError(f"{rec.what}: {rec.where}.resample_filter has shape {tuple(f.shape)}; "
                        "expected [taps] or a square [taps, taps]")
    return f


def _conv(rec: _Rec, c_in: int, *, k: int | None = None) -> Conv:
    w = rec.tensor("weight", 4)
    o, i, kh, kw = w.shape
    if i != c_in or kh != kw or (k is not None and kh != k):
        raise UserError(f"{rec.what}: weights don't fit: {rec.where}.weight is "
                        f"{tuple(w.shape)}, expected ({o}, {c_in}, {k or kh}, {k or kw})")
    b = rec.tensor("bias", 1, optional=True)
    if b is not None and b.shape != (o,):
        raise UserError(f"{rec.what}: weights don't fit: {rec.where}.bias is {tuple(b.shape)},"
                        f" expected ({o},)")
    f = _filter(rec)
    act = rec.value("activation", str)
    if act not in ACTIVATIONS:
        raise UserError(f"{rec.what}: {rec.where} uses activation {act!r}; known: "
                        f"{', '.join(ACTIVATIONS)}")
    if rec.value("up", int, 1) != 1:
        raise UserError(f"{rec.what}: {rec.where} upsamples; a StyleGAN D never does")
    down = rec.value("down", int, 1)
    pad = rec.value("padding", int, kh // 2)
    if down < 1 or pad < 0:
        raise UserError(f"{rec.what}: {rec.where} records down={down}, padding={pad}")
    return Conv(w, b, f, weight_gain=_num(rec, "weight_gain"), activation=act,
                act_gain=_num(rec, "act_gain"), conv_clamp=_num(rec, "conv_clamp", None),
                down=down, padding=pad)


def _dense(rec: _Rec, c_in: int) -> Dense:
    w = rec.tensor("weight", 2)
    if w.shape[1] != c_in:
        raise UserError(f"{rec.what}: weights don't fit: {rec.where}.weight is "
                        f"{tuple(w.shape)}, expected ({w.shape[0]}, {c_in})")
    b = rec.tensor("bias", 1, optional=True)
    if b is not None and b.shape != (w.shape[0],):
        raise UserError(f"{rec.what}: weights don't fit: {rec.where}.bias is {tuple(b.shape)}")
    act = rec.value("activation", str)
    if act not in ACTIVATIONS:
        raise UserError(f"{rec.what}: {rec.where} uses activation {act!r}")
    return Dense(w, b, weight_gain=_num(rec, "weight_gain"), bias_gain=_num(rec, "bias_gain"),
                 activation=act)


def plain(v: Any, depth: int = 0) -> Any:
    """A recorded value as JSON-able plain data (EasyDict records become dicts)."""
    if depth > 20:
        return "..."
    if isinstance(v, Stub):
        if v.global_name.endswith("EasyDict"):
            return {str(k): plain(x, depth + 1) for k, x in {**v.dict, **v.items}.items()}
        return f"<{v.global_name}>"
    if isinstance(v, dict):
        return {str(k): plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x, depth + 1) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if torch.is_tensor(v):
        return f"<tensor {tuple(v.shape)}>"
    return repr(v)[:80]


# ----------------------------------------------------------------------------- identity
def source_identity(src: Any) -> tuple[str | None, str, str | None]:
    """``(family or None, description, sha256)`` of an embedded ``module_src``: a known
    upstream release, or ``"differs; not run"``."""
    if not isinstance(src, str):
        return None, "no embedded source", None
    sha = hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest()
    if sha in KNOWN_SOURCES:
        fam, where = KNOWN_SOURCES[sha]
        return fam, f"matches {where}; not run", sha
    return None, "differs from every known upstream release; not run", sha


def _family(D: _Rec, top: Any) -> tuple[str, str]:
    """``(family, how it was told)``: the D source's hash, else SG3-only names in a source,
    else SG3-only attributes in the records (its networks_stylegan2 layers record
    ``in_features`` / ``in_channels``; its G may be a StyleGAN3 ``SynthesisInput`` net)."""
    fam, _, _ = source_identity(D.src)
    if fam:
        return fam, "D's embedded source (sha256)"
    srcs = [D.src]
    if isinstance(top, dict) and _is_record(top.get("G")):
        srcs.append(top["G"].args[0].get("module_src"))
        fam, _, _ = source_identity(srcs[-1])
        if fam:
            return fam, "G's embedded source (sha256)"
    for s in srcs:
        if isinstance(s, str) and ("update_emas" in s or "class SynthesisInput" in s):
            return "stylegan3", "names only StyleGAN3's code uses, in the embedded source"
        if isinstance(s, str) and "skip_w_avg_update" in s:
            return "stylegan2-ada", "names only StyleGAN2-ADA's code uses, in the source"
    seen = 0
    stack = [top.get("G"), top.get("D")] if isinstance(top, dict) else [top]
    while stack and seen < 10_000:
        obj = stack.pop()
        seen += 1
        if not _is_record(obj):
            continue
        meta = obj.args[0]
        st = meta.get("state") or {}
        if meta.get("class_name") == "SynthesisInput":
            return "stylegan3", "G's StyleGAN3 layers (SynthesisInput)"
        if meta.get("class_name") in ("FullyConnectedLayer", "Conv2dLayer") and \
                ("in_features" in st or "in_channels" in st):
            return "stylegan3", "layer attributes only StyleGAN3's networks_stylegan2 records"
        stack.extend((st.get("_modules") or {}).values())
    return "stylegan2-ada", "layer attributes of StyleGAN2-ADA's networks.py"


# ----------------------------------------------------------------------------- reading
def _load(path: Path, what: str) -> Any:
    with warnings.catch_warnings():  # torch's TypedStorage deprecation, from the tensor records
        warnings.simplefilter("ignore", UserWarning)
        return read_any(path, stubs=STUBS, what=what)


def _d_record(top: Any, what: str) -> Any:
    if isinstance(top, dict):
        if "D" not in top:
            raise UserError(f"{what}: a pickled dict without a 'D' network (keys: "
                            f"{', '.join(map(str, list(top)[:8]))}); not a StyleGAN snapshot")
        return top["D"]
    return top  # a pickle of D alone


def sniff(path: Path) -> str | None:
    """``"stylegan2-ada"`` / ``"stylegan3"`` for a snapshot whose D is a StyleGAN2 D (a
    persistence record of class ``Discriminator`` with a ``DiscriminatorEpilogue``), else
    None. Reads nothing past the header unless the persistence global is there; never runs
    anything; never raises."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
        if len(head) < 2 or head[0] != 0x80 or b"_reconstruct_persistent_obj" not in head:
            return None
        top = _load(Path(path), str(path))
        D = _Rec(_d_record(top, str(path)), "D", str(path))
        if D.class_name != "Discriminator" or not _is_record(D.children.get("b4")) or \
                D.children["b4"].args[0].get("class_name") != "DiscriminatorEpilogue":
            return None
        return _family(D, top)[0]
    except Exception:  # sniffing never raises: anything unreadable is not ours
        return None


def _rebuild(D: _Rec, label: int | None) -> tuple[StyleGANDiscriminator, dict]:
    """D's records as our :class:`StyleGANDiscriminator` (eval, no grads) and its facts."""
    what = D.what
    c_dim = D.value("c_dim", int)
    res = D.value("img_resolution", int)
    ch = D.value("img_channels", int)
    if res < 4 or res & (res - 1) or ch < 1 or c_dim < 0:
        raise UserError(f"{what}: D records img_resolution={res}, img_channels={ch}, "
                        f"c_dim={c_dim}; expected a power of two >= 4 and positive channels")
    blocks, c_prev, arch, fp16 = _read_blocks(D, res, ch)
    ea, mbstd, layers, cmap_dim, (group, nstd) = _read_epilogue(D, arch, c_prev, ch)
    mapping = _read_mapping(D, c_dim, cmap_dim, layers["out"].weight.shape[0])
    _check_label(what, c_dim, label)
    net = StyleGANDiscriminator(blocks, Epilogue(ea, mbstd, layers, cmap_dim if c_dim else 0),
                                mapping, resolution=res, channels=ch, c_dim=c_dim, label=label)
    facts = {"architecture": ea, "c_dim": c_dim, "resolution": res, "channels": ch,
             "mbstd": (group, nstd), "fp16": fp16, "cmap_dim": cmap_dim if c_dim else 0}
    return net.eval().requires_grad_(False), facts


def _read_blocks(D: _Rec, res: int, ch: int
                 ) -> tuple[dict[int, Block], int | None, str | None, list[int]]:
    """The blocks ``b{res}`` .. ``b8``: ``(blocks by resolution, channels out of the last,
    their one architecture, the resolutions recorded as float16)``; ``(…, None, None, [])``
    for a 4x4 D, which has none."""
    blocks: dict[int, Block] = {}
    c_prev, arch = None, None
    fp16 = []
    for r in [2 ** i for i in range(int(math.log2(res)), 2, -1)]:
        b = D.child(f"b{r}", "DiscriminatorBlock")
        a = b.value("architecture", str)
        if a not in ("orig", "skip", "resnet") or (arch is not None and a != arch):
            raise UserError(f"{D.what}: {b.where} has architecture {a!r}")
        arch = a
        if b.value("use_fp16", bool, False):
            fp16.append(r)
        blocks[r] = _read_block(b, a, ch, c_prev)
        c_prev = blocks[r].conv1.weight.shape[0]
    return blocks, c_prev, arch, fp16


def _read_block(b: _Rec, a: str, ch: int, c_prev: int | None) -> Block:
    """One ``DiscriminatorBlock`` of architecture ``a`` taking ``c_prev`` channels (None:
    the first block, which reads the image of ``ch`` channels)."""
    what = b.what
    first = c_prev is None
    layers: dict[str, Conv] = {}
    if first or a == "skip":
        layers["fromrgb"] = _conv(b.child("fromrgb", "Conv2dLayer"), ch, k=1)
        tmp = layers["fromrgb"].weight.shape[0]
        if not first and tmp != c_prev:
            raise UserError(f"{what}: weights don't fit: {b.where}.fromrgb gives {tmp} "
                            f"channels, the block takes {c_prev}")
    else:
        tmp = c_prev
    layers["conv0"] = _conv(b.child("conv0", "Conv2dLayer"), tmp, k=3)
    layers["conv1"] = _conv(b.child("conv1", "Conv2dLayer"), layers["conv0"].weight.shape[0],
                            k=3)
    if layers["conv1"].down != 2:
        raise UserError(f"{what}: {b.where}.conv1 downsamples by "
                        f"{layers['conv1'].down}, expected 2")
    if a == "resnet":
        layers["skip"] = _conv(b.child("skip", "Conv2dLayer"), tmp, k=1)
        if layers["skip"].weight.shape[0] != layers["conv1"].weight.shape[0]:
            raise UserError(f"{what}: weights don't fit: {b.where}.skip and conv1 differ "
                            "in output channels")
    return Block(a, first, layers, _filter(b))


def _read_epilogue(D: _Rec, arch: str | None, c_prev: int | None, ch: int
                   ) -> tuple[str, MinibatchStd | None, dict[str, Any], int,
                              tuple[int | None, int]]:
    """``D.b4`` (``DiscriminatorEpilogue``) after blocks of architecture ``arch`` giving
    ``c_prev`` channels: ``(architecture, mbstd, layers, cmap_dim, (group_size,
    num_channels))``, ``nstd`` 0 without a minibatch-stddev layer."""
    what = D.what
    e = D.child("b4", "DiscriminatorEpilogue")
    ea = e.value("architecture", str)
    if arch is not None and ea != arch:
        raise UserError(f"{what}: D.b4 has architecture {ea!r}, its blocks {arch!r}")
    c4 = e.value("in_channels", int)
    if c_prev is not None and c4 != c_prev:
        raise UserError(f"{what}: weights don't fit: D.b4 takes {c4} channels, the last block "
                        f"gives {c_prev}")
    cmap_dim = e.value("cmap_dim", int)
    layers: dict[str, Any] = {}
    if ea == "skip":
        layers["fromrgb"] = _conv(e.child("fromrgb", "Conv2dLayer"), ch, k=1)
    mbstd, group, nstd = None, None, 0
    if e.has("mbstd"):
        m = e.child("mbstd", "MinibatchStdLayer")
        group, nstd = m.value("group_size", int, None), m.value("num_channels", int)
        if nstd < 1 or c4 % nstd or (group is not None and group < 1):
            raise UserError(f"{what}: D.b4.mbstd has group_size={group}, "
                            f"num_channels={nstd} for {c4} channels")
        mbstd = MinibatchStd(group, nstd)
    layers["conv"] = _conv(e.child("conv", "Conv2dLayer"), c4 + nstd, k=3)
    layers["fc"] = _dense(e.child("fc", "FullyConnectedLayer"), layers["conv"].weight.shape[0]
                          * 16)
    layers["out"] = _dense(e.child("out", "FullyConnectedLayer"), layers["fc"].weight.shape[0])
    return ea, mbstd, layers, cmap_dim, (group, nstd)


def _read_mapping(D: _Rec, c_dim: int, cmap_dim: int, n_out: int) -> Mapping | None:
    """``D.mapping`` of a conditional D (``c_dim`` > 0) into ``cmap_dim`` = the epilogue's
    ``n_out`` outputs; None for an unconditional D, whose epilogue must give one logit."""
    what = D.what
    if c_dim == 0:
        if n_out != 1:
            raise UserError(f"{what}: weights don't fit: unconditional D.b4.out gives {n_out}")
        return None
    if cmap_dim != n_out:
        raise UserError(f"{what}: weights don't fit: D.b4.out gives {n_out}, cmap_dim is "
                        f"{cmap_dim}")
    mp = D.child("mapping", "MappingNetwork")
    if mp.value("z_dim", int, 0) != 0 or mp.value("c_dim", int) != c_dim:
        raise UserError(f"{what}: D.mapping takes z_dim={mp.value('z_dim', int, 0)}, "
                        f"c_dim={mp.value('c_dim', int)}; expected 0 and {c_dim}")
    embed = _dense(mp.child("embed", "FullyConnectedLayer"), c_dim)
    fcs, width = [], embed.weight.shape[0]
    for i in range(mp.value("num_layers", int)):
        fcs.append(_dense(mp.child(f"fc{i}", "FullyConnectedLayer"), width))
        width = fcs[-1].weight.shape[0]
    if width != cmap_dim:
        raise UserError(f"{what}: weights don't fit: D.mapping gives {width}, cmap_dim is "
                        f"{cmap_dim}")
    return Mapping(embed, fcs)


def _check_label(what: str, c_dim: int, label: int | None) -> None:
    """A class label exactly when the D is conditional, and one of its ``c_dim`` classes."""
    if c_dim == 0 and label is not None:
        raise UserError(f"{what}: this D is unconditional; drop the class label ({label})")
    if c_dim > 0 and label is None:
        raise UserError(f"{what}: this D is conditional on {c_dim} classes; pass the class to "
                        f"bind with a label in 0..{c_dim - 1}")
    if c_dim > 0 and not (isinstance(label, int) and 0 <= label < c_dim):
        raise UserError(f"{what}: label {label!r} is out of range; this D has classes "
                        f"0..{c_dim - 1}")


def read(path: Path, *, label: int | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the snapshot's D in our code (module docstring). Returns ``(D, desc)``: D on
    the CPU, float32, eval mode, no parameter requiring grad, ``D(x)`` for ``x (N, C, R, R)``
    in [-1, 1] giving upstream's ``(N, 1)``; ``desc`` as ``FAMILIES.md`` lists it. UserError
    (one line) for a file that is not such a snapshot, carries a global outside
    :data:`STUBS`, has weights that don't fit, or a label that does not fit the D."""
    path = Path(path)
    what = str(path)
    if not path.is_file():
        raise UserError(f"{what}: not a file")
    top = _load(path, what)
    D = _Rec(_d_record(top, what), "D", what)
    if D.class_name != "Discriminator":
        raise UserError(f"{what}: D is a {D.class_name}, not a StyleGAN2-ADA/StyleGAN3 "
                        "Discriminator")
    if label is not None:
        if isinstance(label, bool) or not hasattr(label, "__index__"):
            raise UserError(f"{what}: label must be an integer class, got {label!r:.40}")
        label = operator.index(label)
    try:
        return _describe(top, D, label, what)
    except UserError:
        raise
    except Exception as err:  # a record of the wrong kind somewhere: say so, in one line
        raise UserError(f"{what}: malformed StyleGAN snapshot ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:100] if str(err) else 'no detail'})") from None


def _describe(top: Any, D: _Rec, label: int | None, what: str) -> tuple[nn.Module, dict]:
    net, facts = _rebuild(D, label)
    family, how = _family(D, top)
    _, src_note, sha = source_identity(D.src)
    repo, module = REPOS[family]
    g_class = None
    if isinstance(top, dict) and _is_record(top.get("G")):
        g_meta = top["G"].args[0]
        _, g_note, _ = source_identity(g_meta.get("module_src"))
        g_class = f"{g_meta.get('class_name')} ({g_note})"
    group, nstd = facts["mbstd"]
    desc = {
        "family": family,
        "format": FORMAT,
        "resolution": facts["resolution"],
        "channels": facts["channels"],
        "conditional": facts["c_dim"] > 0,
        "num_classes": facts["c_dim"] or None,
        "label": label,
        "pixel_range": list(PIXEL_RANGE),
        "output": {"shape": "(N, 1)", "reduction": "squeeze",
                   "why": "one logit per image, which its softplus loss reads as is"},
        "coupling": [{"kind": "minibatch-stddev", "group_size": group, "num_channels": nstd}]
        if nstd else [],
        "randomness": "none",
        "upstream": {"repo": repo, "class": f"{module}.Discriminator",
                     "init_kwargs": plain(D.state.get("_init_kwargs", {}))},
        "extra": {
            "module_src_sha256": sha,
            "module_src": src_note,
            "family_from": how,
            "architecture": facts["architecture"],
            "cmap_dim": facts["cmap_dim"],
            "fp16_resolutions": facts["fp16"],
            "fp16_note": "float16 blocks run in float32 here (upstream: float16 on CUDA, "
                         "float32 on the CPU or with force_fp32)" if facts["fp16"] else None,
            "snapshot_keys": sorted(map(str, top)) if isinstance(top, dict) else [],
            "generator": g_class,
            "persistence_version": plain(D.version),
        },
    }
    return net, desc
