"""R3GAN snapshot pickles (``brownvc/R3GAN``, "The GAN is dead; long live the GAN!", NeurIPS
2024), read without running any of their code.

**The format**, as upstream's ``training/training_loop.py`` writes it: ``network-snapshot-
<kimg>.pkl`` is a *plain* ``pickle.dump`` (no NVlabs ``torch_utils.persistence`` records, no
embedded source: R3GAN's networks are not persistent classes) of the dict ``{G, D, G_ema,
training_set_kwargs, cur_nimg, D_opt_state, G_opt_state}``. ``D`` is a deep copy in eval mode
(``requires_grad_(False)``, CPU) of ``training.networks.Discriminator``, a wrapper whose
``forward(x, c)`` calls ``self.Model(x, c)``, an ``R3GAN.Networks.Discriminator``. The pickle
records instance dicts (parameters, buffers, submodules, plain attributes), not constructor
arguments, so the architecture is read off the module tree and every stored tensor is used,
the resampling filters included. The globals such a file names (:data:`STUBS`) become inert
records; anything else is refused by :mod:`probes.io.safe_pickle` with one line naming it.

**The net** (``R3GAN/Networks.py``), rebuilt here; input ``(N, 3, R, R)`` in [-1, 1] (the
training loop feeds ``uint8 / 127.5 - 1``), ``S`` stages of widths ``W_0..W_{S-1}``:

- ``ExtractionLayer``: a 1x1 conv ``3 -> W_0``, no bias.
- stage ``s``: ``B_s`` residual blocks, then the transition. Block: ``x + L3(a(L2(a(L1(x)))))``
  with ``L1`` a 1x1 conv ``W -> W*e``, ``L2`` a ``k x k`` grouped conv (``Cardinality``
  groups, padding ``(k-1)//2``), ``L3`` a 1x1 conv back to ``W``; no conv biases, ``a`` is
  ``BiasedActivation`` (a per-channel bias, then LeakyReLU(0.2), gain 1).
- transition of stages ``0..S-2``: ``DownsampleLayer``: the stored FIR ``Kernel`` (built from
  ``ResamplingFilter=[1, 2, 1]`` as a normalised 4x4 outer product, but read as stored) applied
  per channel at stride 2, then a 1x1 conv ``W_s -> W_{s+1}`` where the widths differ. The
  ``...CUDA`` resampler (the default) is ``upfirdn2d.downsample2d``: a true convolution (the
  kernel flipped), zero padding ``((k-1)//2, (k-2)//2)`` per axis; the ``...Reference`` one a
  correlation with padding ``FilterRadius``.
- transition of the last stage: ``DiscriminativeBasis``: a depthwise 4x4 valid conv (4x4 ->
  1x1), then a linear map to 1 (unconditional) or to ``E`` (conditional).
- conditional D (``c_dim`` classes): ``logit = sum_e h_e * (c @ W_emb.T)_e`` with ``c`` the
  one-hot class vector the training loop feeds (``EmbeddingLayer``: a linear map, no bias).
- output ``x.view(N)``: **one logit per image, shape (N,)**; no BatchNorm, no minibatch
  statistic, nothing couples samples; forward draws no random numbers.

Upstream computes the stages listed in ``FP16Stages`` in **bfloat16** (the presets put every
stage but the last there: the stage's recorded ``DataType``). The rebuilt D computes in float32
(the probe contract); ``desc["extra"]["upstream_stage_dtypes"]`` records what upstream uses,
and such a D's logits differ from upstream's by bfloat16 rounding (about 1e-2 relative), while
they match upstream's forward with those stages switched to float32 to 1e-5.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asgan_base.errors import UserError
from probes.io import safe_pickle
from probes.io.families._common import check_file

NAMES: tuple[str, ...] = ("r3gan",)
FORMAT = ("R3GAN network-snapshot-*.pkl: a plain pickle of {G, D, G_ema, ...} module objects "
          "(training.networks.Discriminator around R3GAN.Networks.Discriminator)")
CHECKED = ("only the R3GAN/torch module classes are recorded (never imported or run), any "
           "other global refused; the module tree, every tensor's shape and finiteness, the "
           "stage sizes down to the 4x4 basis, class count against the embedding")
COUPLING = "none: no BatchNorm, no minibatch statistic; each logit reads its own image only"

_NET = "R3GAN.Networks."
_D_WRAPPER = "training.networks.Discriminator"
_D_MODEL = _NET + "Discriminator"
_STAGE = _NET + "DiscriminatorStage"
_BLOCK = _NET + "ResidualBlock"
_CONV = _NET + "Convolution"
_DOWN = _NET + "DownsampleLayer"
_BASIS = _NET + "DiscriminativeBasis"
_ACTS = ("R3GAN.FusedOperators.BiasedActivationCUDA",
         "R3GAN.FusedOperators.BiasedActivationReference")
_DOWNSAMPLERS = ("R3GAN.Resamplers.InterpolativeDownsamplerCUDA",
                 "R3GAN.Resamplers.InterpolativeDownsamplerReference")
_TORCH_CONV = "torch.nn.modules.conv.Conv2d"
_TORCH_LINEAR = "torch.nn.modules.linear.Linear"
_TORCH_LIST = "torch.nn.modules.container.ModuleList"

STUBS: tuple[str, ...] = (
    _D_WRAPPER, "training.networks.Generator",
    _D_MODEL, _STAGE, _BLOCK, _CONV, _DOWN, _BASIS,
    _NET + "Generator", _NET + "GeneratorStage", _NET + "UpsampleLayer",
    _NET + "GenerativeBasis",
    *_ACTS, *_DOWNSAMPLERS,
    "R3GAN.Resamplers.InterpolativeUpsamplerCUDA",
    "R3GAN.Resamplers.InterpolativeUpsamplerReference",
    _TORCH_CONV, _TORCH_LINEAR, _TORCH_LIST,
)
_SNIFF_BYTES = 1 << 20  # G's and D's class globals come before their first tensor's bytes
_REPO = "brownvc/R3GAN"


# ----------------------------------------------------------------------------- the net
def _lrelu_bias(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``BiasedActivation``: per-channel bias, LeakyReLU(0.2), gain 1."""
    return F.leaky_relu(x + bias.view(1, -1, 1, 1), 0.2)


class _Block(nn.Module):
    """``ResidualBlock``: ``x + conv3(act(conv2(act(conv1(x)))))``, shapes kept."""

    def __init__(self, w1, b1, w2, b2, w3, groups: int, padding: tuple[int, int, int]) -> None:
        super().__init__()
        self.w1, self.w2, self.w3 = (nn.Parameter(w, requires_grad=False) for w in (w1, w2, w3))
        self.b1, self.b2 = (nn.Parameter(b, requires_grad=False) for b in (b1, b2))
        self.groups, self.padding = groups, padding

    def extra_repr(self) -> str:
        return f"groups={self.groups}, kernel={tuple(self.w2.shape[2:])}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p1, p2, p3 = self.padding
        y = F.conv2d(x, self.w1, padding=p1)
        y = F.conv2d(_lrelu_bias(y, self.b1), self.w2, padding=p2, groups=self.groups)
        y = F.conv2d(_lrelu_bias(y, self.b2), self.w3, padding=p3)
        return x + y


class _Down(nn.Module):
    """``DownsampleLayer``: the stored FIR kernel per channel at stride 2 (``flip``: a true
    convolution, as upfirdn2d; else a correlation), zero padding ``pad`` = (left, right, top,
    bottom), then an optional 1x1 conv to the next width."""

    def __init__(self, kernel: torch.Tensor, flip: bool, pad: tuple[int, int, int, int],
                 proj: torch.Tensor | None, proj_padding: int) -> None:
        super().__init__()
        self.register_buffer("kernel", kernel)
        self.flip, self.pad = flip, pad
        self.proj = None if proj is None else nn.Parameter(proj, requires_grad=False)
        self.proj_padding = proj_padding

    def extra_repr(self) -> str:
        return f"kernel={tuple(self.kernel.shape)}, flip={self.flip}, pad={self.pad}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        f = self.kernel.flip([0, 1]) if self.flip else self.kernel
        x = F.conv2d(F.pad(x, list(self.pad)), f[None, None].expand(c, 1, *f.shape), stride=2,
                     groups=c)
        return x if self.proj is None else F.conv2d(x, self.proj, padding=self.proj_padding)


class _Basis(nn.Module):
    """``DiscriminativeBasis``: a depthwise conv (4x4 -> 1x1), flattened, a linear map."""

    def __init__(self, conv: dict[str, Any], lin_w: torch.Tensor, lin_b: torch.Tensor | None
                 ) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.pop("weight"), requires_grad=False)
        b = conv.pop("bias")
        self.bias = None if b is None else nn.Parameter(b, requires_grad=False)
        self.conv = conv  # stride, padding, dilation, groups as recorded
        self.lin_w = nn.Parameter(lin_w, requires_grad=False)
        self.lin_b = None if lin_b is None else nn.Parameter(lin_b, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, **self.conv)
        return F.linear(x.reshape(x.shape[0], -1), self.lin_w, self.lin_b)


class R3GANDiscriminator(nn.Module):
    """R3GAN's D (module docstring) in float32: ``forward(x)``, ``x`` (N, 3, R, R) in [-1, 1],
    returns upstream's output, logits ``(N,)``; a conditional D scores every image as the class
    bound at load time (one-hot ``c``, as upstream's ``forward(x, c)`` takes it)."""

    def __init__(self, extraction: torch.Tensor, stages: list[nn.Module],
                 embedding: tuple[torch.Tensor, torch.Tensor | None] | None,
                 label: int | None, resolution: int) -> None:
        super().__init__()
        self.extraction = nn.Parameter(extraction, requires_grad=False)
        self.stages = nn.ModuleList(nn.Sequential(*s) for s in stages)
        self.resolution = resolution
        self.emb_w = self.emb_b = None
        self.label = label
        if embedding is not None:
            w, b = embedding
            self.emb_w = nn.Parameter(w, requires_grad=False)
            self.emb_b = None if b is None else nn.Parameter(b, requires_grad=False)
            self.register_buffer("c", F.one_hot(torch.tensor([label]), w.shape[1]).float())

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, label={self.label}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.extraction.shape[1], self.resolution,
                                                   self.resolution):
            raise ValueError(f"R3GAN D takes (N, {self.extraction.shape[1]}, {self.resolution}, "
                             f"{self.resolution}) images, got {tuple(x.shape)}")
        x = F.conv2d(x.to(torch.float32), self.extraction)
        for stage in self.stages:
            x = stage(x)
        if self.emb_w is not None:
            emb = F.linear(self.c.expand(x.shape[0], -1), self.emb_w, self.emb_b)
            x = (x * emb).sum(dim=1, keepdim=True)
        return x.view(x.shape[0])


# ----------------------------------------------------------------------------- reading
def _short(v: Any) -> str:
    """A one-line, short description of a recorded value for an error message."""
    plain = v is None or isinstance(v, (bool, int, float, str, tuple, list))
    text = repr(v) if plain else getattr(v, "global_name", type(v).__name__)
    return " ".join(text.split())[:40]


class _Reader:
    """Walks the recorded module tree of D; every failure is one ``UserError`` line."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, msg: str) -> UserError:
        return UserError(f"{self.what}: not a readable R3GAN snapshot: {msg}")

    def rec(self, obj: Any, names: tuple[str, ...] | str, where: str) -> safe_pickle.Stub:
        names = (names,) if isinstance(names, str) else names
        got = getattr(obj, "global_name", type(obj).__name__)
        if not isinstance(obj, safe_pickle.Stub) or got not in names:
            raise self.fail(f"{where} is {got}, expected {' or '.join(names)}")
        return obj

    def part(self, rec: safe_pickle.Stub, kind: str, name: str, where: str,
             optional: bool = False) -> Any:
        d = rec.dict.get(kind)
        if not isinstance(d, dict):
            raise self.fail(f"{where} has no {kind}")
        if name not in d and not optional:
            raise self.fail(f"{where} has no {kind[1:-1] if kind != '_modules' else 'module'} "
                            f"{name}")
        return d.get(name)

    def mod(self, rec, name, names, where, optional=False):
        sub = self.part(rec, "_modules", name, where, optional)
        return None if sub is None and optional else self.rec(sub, names, f"{where}.{name}")

    def children(self, rec, where) -> list[Any]:
        """The entries ``0..n-1`` of a recorded ``ModuleList``, in order."""
        mods = rec.dict.get("_modules")
        if not isinstance(mods, dict) or not mods:
            raise self.fail(f"{where} is empty")
        if set(mods) != {str(i) for i in range(len(mods))}:
            raise self.fail(f"{where} holds modules {sorted(map(str, mods))[:6]}, not 0..n-1")
        return [mods[str(i)] for i in range(len(mods))]

    def tensor(self, rec, name, where, shape=None, kind="_parameters", optional=False):
        t = self.part(rec, kind, name, where, optional=True)
        if t is None:
            if optional:
                return None
            raise self.fail(f"{where}.{name} is missing")
        if not torch.is_tensor(t) or not t.is_floating_point():
            raise self.fail(f"{where}.{name} is not a floating-point tensor")
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise self.fail(f"{where}.{name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
        t = t.detach().to(torch.float32).clone()
        if not torch.isfinite(t).all():
            raise self.fail(f"{where}.{name} holds NaN or inf")
        return t

    def attr(self, rec, name, where, kind=int):
        v = rec.dict.get(name)
        if kind is tuple:
            ok = isinstance(v, (tuple, list)) and all(type(i) is int for i in v)
            v = tuple(v) if ok else v
        else:
            ok = type(v) is kind
        if not ok:
            raise self.fail(f"{where}.{name} is {_short(v)}, expected {kind.__name__}")
        return v

    def conv(self, rec, where, c_in, c_out=None):
        """``Convolution``: (weight (c_out, c_in/groups, k, k), groups, padding); upstream's
        forward uses only these (stride 1, no bias)."""
        layer = self.mod(rec, "Layer", _TORCH_CONV, where)
        w = self.tensor(layer, "weight", f"{where}.Layer")
        groups = self.attr(layer, "groups", f"{where}.Layer")
        pad = self.attr(layer, "padding", f"{where}.Layer", tuple)
        if (w.dim() != 4 or groups < 1 or w.shape[1] * groups != c_in or w.shape[0] % groups
                or (c_out is not None and w.shape[0] != c_out) or w.shape[2] != w.shape[3]
                or len(pad) != 2 or pad[0] != pad[1] or 2 * pad[0] != w.shape[2] - 1):
            raise self.fail(f"{where}: conv weight {tuple(w.shape)} (groups {groups}, padding "
                            f"{pad}) does not fit {c_in} input channels at constant size")
        return w, groups, pad[0]

    def bias(self, rec, name, where, c):
        act = self.mod(rec, name, _ACTS, where)
        return self.tensor(act, "Bias", f"{where}.{name}", (c,))

    def block(self, rec, where, c):
        w1, _, p1 = self.conv(self.mod(rec, "LinearLayer1", _CONV, where), f"{where}.LinearLayer1",
                              c)
        e = w1.shape[0]
        w2, g, p2 = self.conv(self.mod(rec, "LinearLayer2", _CONV, where), f"{where}.LinearLayer2",
                              e, e)
        w3, _, p3 = self.conv(self.mod(rec, "LinearLayer3", _CONV, where), f"{where}.LinearLayer3",
                              e, c)
        b1 = self.bias(rec, "NonLinearity1", where, e)
        b2 = self.bias(rec, "NonLinearity2", where, e)
        blk = _Block(w1, b1, w2, b2, w3, g, (p1, p2, p3))
        return blk, {"expansion": e // c if e % c == 0 else e / c, "cardinality": g,
                     "kernel": int(w2.shape[2])}

    def down(self, rec, where, c):
        res = self.mod(rec, "Resampler", _DOWNSAMPLERS, where)
        k = self.tensor(res, "Kernel", f"{where}.Resampler", kind="_buffers")
        if k.dim() != 2:
            raise self.fail(f"{where}.Resampler.Kernel has shape {tuple(k.shape)}, expected a "
                            "2-D filter")
        fh, fw = k.shape
        if res.global_name.endswith("CUDA"):  # upfirdn2d.downsample2d(x, Kernel), down = 2
            flip, pad = True, ((fw - 1) // 2, (fw - 2) // 2, (fh - 1) // 2, (fh - 2) // 2)
        else:  # conv2d(x, Kernel, stride=2, padding=FilterRadius)
            r = self.attr(res, "FilterRadius", f"{where}.Resampler")
            flip, pad = False, (r, r, r, r)
        proj, proj_pad, c_out = None, 0, c
        lin = self.mod(rec, "LinearLayer", _CONV, where, optional=True)
        if lin is not None:
            proj, _, proj_pad = self.conv(lin, f"{where}.LinearLayer", c)
            c_out = proj.shape[0]
        return _Down(k, flip, pad, proj, proj_pad), c_out, [fh, fw]

    def basis(self, rec, where, c):
        conv = self.mod(rec, "Basis", _TORCH_CONV, where)
        cw = f"{where}.Basis"
        w = self.tensor(conv, "weight", cw)
        b = self.tensor(conv, "bias", cw, optional=True)
        hyper = {k: self.attr(conv, k, cw, tuple) for k in ("stride", "padding", "dilation")}
        hyper["groups"] = self.attr(conv, "groups", cw)
        if conv.dict.get("padding_mode", "zeros") != "zeros":
            raise self.fail(f"{cw} pads with {_short(conv.dict.get('padding_mode'))}, not zeros")
        if (w.dim() != 4 or w.shape[1] * hyper["groups"] != c or (b is not None and
                                                                   b.shape != (w.shape[0],))):
            raise self.fail(f"{cw}: weight {tuple(w.shape)} does not fit {c} channels")
        lin = self.mod(rec, "LinearLayer", _TORCH_LINEAR, where)
        lw = self.tensor(lin, "weight", f"{where}.LinearLayer")
        lb = self.tensor(lin, "bias", f"{where}.LinearLayer", optional=True)
        if lw.dim() != 2 or lw.shape[1] != w.shape[0] or (lb is not None and
                                                          lb.shape != (lw.shape[0],)):
            raise self.fail(f"{where}.LinearLayer: weight {tuple(lw.shape)} does not fit the "
                            f"basis's {w.shape[0]} features (a 1x1 map)")
        # the input side that the conv takes to 1x1, per axis
        (ph, pw), (dh, dw) = hyper["padding"], hyper["dilation"]
        need = (dh * (w.shape[2] - 1) + 1 - 2 * ph, dw * (w.shape[3] - 1) + 1 - 2 * pw)
        if need[0] != need[1] or need[0] < 1:
            raise self.fail(f"{cw}: a {tuple(w.shape[2:])} kernel takes no square map to 1x1")
        hyper = {k: tuple(v) if isinstance(v, tuple) else v for k, v in hyper.items()}
        return _Basis({"weight": w, "bias": b, **hyper}, lw, lb), int(lw.shape[0]), need[0]


def _find_d(obj: Any, what: str) -> tuple[safe_pickle.Stub, dict[str, Any]]:
    """The ``R3GAN.Networks.Discriminator`` record in a snapshot dict (or a pickled D)."""
    top = obj
    if isinstance(obj, dict):
        if "D" not in obj:
            keys = ", ".join(_short(k) for k in list(obj)[:8])
            raise UserError(f"{what}: an R3GAN snapshot without a discriminator (keys: {keys}); "
                            "pass a network-snapshot file written by training")
        obj = obj["D"]
    name = getattr(obj, "global_name", type(obj).__name__)
    if name == _D_WRAPPER:
        mods = obj.dict.get("_modules") if isinstance(obj, safe_pickle.Stub) else None
        obj = mods.get("Model") if isinstance(mods, dict) else None
        name = getattr(obj, "global_name", type(obj).__name__)
    if name != _D_MODEL or not isinstance(obj, safe_pickle.Stub):
        raise UserError(f"{what}: not a readable R3GAN snapshot: its D is {name}, expected "
                        f"{_D_WRAPPER} around {_D_MODEL}")
    return obj, top if isinstance(top, dict) else {}


def _plain(v: Any) -> Any:
    """``v`` if JSON-able plain data (str/int/float/bool/None, lists and str-keyed dicts)."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(i) for i in v]
    if isinstance(v, dict):
        return {str(k): _plain(i) for k, i in v.items()}
    return repr(v)[:80]


def _default_kernel(filt: list[float]) -> torch.Tensor:
    """Upstream's ``CreateLowpassKernel(filt, Inplace=False)``: outer product of
    ``filt * [1, 1]`` (convolved) with itself, normalised to sum 1 (for ``desc`` only)."""
    k = torch.tensor(filt, dtype=torch.float64)
    k = F.conv1d(F.pad(k, (1, 1))[None, None], torch.ones(1, 1, 2, dtype=torch.float64))[0, 0]
    k = k[:, None] @ k[None, :]
    return (k / k.sum()).float()


def _check_label(label: Any, c_dim: int | None, what: str) -> int | None:
    if c_dim is None:
        if label is not None:
            raise UserError(f"{what}: this R3GAN D is unconditional; drop the class label "
                            f"(got {_short(label)})")
        return None
    if label is None:
        raise UserError(f"{what}: a conditional R3GAN D ({c_dim} classes): give the class to "
                        f"bind to every image (label 0..{c_dim - 1})")
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not (
            0 <= label < c_dim):
        raise UserError(f"{what}: class label {_short(label)} is not a class of this R3GAN D "
                        f"({c_dim} classes): give an integer 0..{c_dim - 1}")
    return int(label)


def read(path: Path, *, label: int | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the D of an R3GAN snapshot ``path`` (module docstring) in our own code.

    Returns ``(D, desc)``: ``D`` a :class:`R3GANDiscriminator` (CPU, float32, eval, no grads
    on its weights) taking ``(N, 3, R, R)`` in [-1, 1] and returning logits ``(N,)``; for a
    conditional D, ``label`` (``0 <= label < c_dim``) is bound to every image as one-hot ``c``.
    ``desc``: the family description of :mod:`probes.io.families` (FAMILIES.md). A file that
    is not an R3GAN snapshot, a code payload, a malformed tree or a label that does not fit
    the D raises a one-line :class:`UserError`; nothing in the file is ever run.
    """
    path = check_file(path)
    what = str(path)
    return build(safe_pickle.read_any(path, stubs=STUBS, what=what), label=label, what=what)


def build(obj: Any, *, label: int | None = None, what: str = "snapshot"
          ) -> tuple[nn.Module, dict]:
    """:func:`read` from the unpickled records ``obj`` (what :func:`safe_pickle.read_any`
    returns for an R3GAN snapshot with :data:`STUBS`): a snapshot dict or a pickled D."""
    d, snap = _find_d(obj, what)
    r = _Reader(what)
    ext = r.mod(d, "ExtractionLayer", _CONV, "D")
    main = r.mod(d, "MainLayers", _TORCH_LIST, "D")
    stage_recs = r.children(main, "D.MainLayers")
    ew, channels = _read_extraction(r, ext)
    f = _read_stages(r, stage_recs, int(ew.shape[0]))
    resolution = f["basis_side"] * 2 ** f["n_down"]
    _check_halving(r, f["stages"], resolution)
    c_dim, embedding = _read_embedding(r, d, f["out_dim"])
    tsk = snap.get("training_set_kwargs") if isinstance(snap.get("training_set_kwargs"),
                                                          dict) else {}
    rec_res = tsk.get("resolution")
    if type(rec_res) is int and rec_res != resolution:
        raise r.fail(f"training_set_kwargs says resolution {rec_res}, D's stages take "
                     f"{resolution}")
    label = _check_label(label, c_dim, what)
    net = R3GANDiscriminator(ew, f["stages"], embedding, label, resolution).eval()
    return net, _describe(f, snap, tsk, channels=channels, c_dim=c_dim, label=label,
                          resolution=resolution)


def _read_extraction(r: _Reader, ext: safe_pickle.Stub) -> tuple[torch.Tensor, int]:
    """``ExtractionLayer``: its 1x1 conv weight ``(W_0, channels, 1, 1)`` and ``channels``."""
    # the input channel count is read off the weight itself: nothing else records it
    ext_layer = r.mod(ext, "Layer", _TORCH_CONV, "D.ExtractionLayer")
    ew = r.tensor(ext_layer, "weight", "D.ExtractionLayer.Layer")
    if ew.dim() != 4:
        raise r.fail(f"D.ExtractionLayer weight has shape {tuple(ew.shape)}")
    channels = int(ew.shape[1])
    ew, _, ep = r.conv(ext, "D.ExtractionLayer", channels)
    if ep:
        raise r.fail("D.ExtractionLayer is not a 1x1 conv")
    return ew, channels


def _read_stages(r: _Reader, stage_recs: list[Any], c: int) -> dict[str, Any]:
    """The ``DiscriminatorStage`` records, ``c`` channels in: rebuilt modules and layer facts."""
    f: dict[str, Any] = {k: [] for k in ("stages", "widths", "blocks_per", "cards",
                                         "expansions", "kernels", "dtypes", "filters")}
    f.update(n_down=0, out_dim=None, basis_side=None)
    last = len(stage_recs) - 1
    for i, srec in enumerate(stage_recs):
        where = f"D.MainLayers.{i}"
        srec = r.rec(srec, _STAGE, where)
        dt = srec.dict.get("DataType", torch.float32)
        f["dtypes"].append(str(dt).replace("torch.", "") if isinstance(dt, torch.dtype)
                           else repr(dt))
        layers = r.mod(srec, "Layers", _TORCH_LIST, where)
        lrecs = r.children(layers, f"{where}.Layers")
        f["widths"].append(c)
        mods, blk_facts = [], []
        for j, lrec in enumerate(lrecs[:-1]):
            blk, facts = r.block(r.rec(lrec, _BLOCK, f"{where}.Layers.{j}"),
                                 f"{where}.Layers.{j}", c)
            mods.append(blk)
            blk_facts.append(facts)
        tw = f"{where}.Layers.{len(lrecs) - 1}"
        if i < last:
            down, c, filt = r.down(r.rec(lrecs[-1], _DOWN, tw), tw, c)
            mods.append(down)
            f["filters"].append(filt)
            f["n_down"] += 1
        else:
            basis, f["out_dim"], f["basis_side"] = r.basis(r.rec(lrecs[-1], _BASIS, tw), tw, c)
            mods.append(basis)
        f["stages"].append(mods)
        f["blocks_per"].append(len(lrecs) - 1)
        f["cards"].append(sorted({b["cardinality"] for b in blk_facts}))
        f["expansions"].extend(b["expansion"] for b in blk_facts)
        f["kernels"].extend(b["kernel"] for b in blk_facts)
    return f


def _check_halving(r: _Reader, stages: list[list[nn.Module]], resolution: int) -> None:
    """Each downsampler must halve its map exactly (else upstream fails too)."""
    side = resolution
    for i, mods in enumerate(stages[:-1]):
        k = mods[-1]
        fh, fw = k.kernel.shape
        out = ((side + k.pad[0] + k.pad[1] - fw) // 2 + 1,
               (side + k.pad[2] + k.pad[3] - fh) // 2 + 1)
        if side % 2 or out != (side // 2, side // 2):
            raise r.fail(f"D.MainLayers.{i}: its filter {fh}x{fw} does not halve a "
                         f"{side}x{side} map")
        side //= 2


def _read_embedding(r: _Reader, d: safe_pickle.Stub, out_dim: int
                    ) -> tuple[int | None, tuple[torch.Tensor, torch.Tensor | None] | None]:
    """``EmbeddingLayer`` (conditional D): ``(c_dim, (weight, bias))``, else ``(None, None)``."""
    emb_rec = r.mod(d, "EmbeddingLayer", _TORCH_LINEAR, "D", optional=True)
    if emb_rec is None:
        if out_dim != 1:
            raise r.fail(f"an unconditional D whose last stage gives {out_dim} outputs, not 1")
        return None, None
    ew_ = r.tensor(emb_rec, "weight", "D.EmbeddingLayer")
    eb_ = r.tensor(emb_rec, "bias", "D.EmbeddingLayer", optional=True)
    if ew_.dim() != 2 or ew_.shape[0] != out_dim or ew_.shape[1] < 1 or (
            eb_ is not None and eb_.shape != (out_dim,)):
        raise r.fail(f"D.EmbeddingLayer weight {tuple(ew_.shape)} does not fit the last "
                     f"stage's {out_dim} outputs")
    return int(ew_.shape[1]), (ew_, eb_)


def _one_or_all(values: list[Any]) -> Any:
    """The single value of ``values`` if they all agree, else the list (upstream's kwargs)."""
    return values[0] if len(set(values)) == 1 else values


def _describe(f: dict[str, Any], snap: dict, tsk: dict, *, channels: int, c_dim: int | None,
              label: int | None, resolution: int) -> dict:
    """The family description (FAMILIES.md) from the stage facts ``f`` of :func:`_read_stages`."""
    stages, dtypes = f["stages"], f["dtypes"]
    default = _default_kernel([1, 2, 1])
    kernels_default = all(
        tuple(m[-1].kernel.shape) == tuple(default.shape)
        and torch.allclose(m[-1].kernel, default, rtol=0, atol=1e-7) for m in stages[:-1])
    bf16 = [i for i, t in enumerate(dtypes) if t != "float32"]
    init_kwargs = {
        "WidthPerStage": f["widths"], "CardinalityPerStage": [cs[0] if len(cs) == 1 else cs
                                                              for cs in f["cards"]],
        "BlocksPerStage": f["blocks_per"],
        "ExpansionFactor": _one_or_all(f["expansions"]),
        "KernelSize": _one_or_all(f["kernels"]),
        "ConditionEmbeddingDimension": f["out_dim"] if c_dim else 0,
        "FP16Stages": bf16, "c_dim": c_dim or 0, "img_resolution": resolution}
    resampler = sorted({m[-1].flip for m in stages[:-1]})
    nimg = snap.get("cur_nimg") if type(snap.get("cur_nimg")) is int else None
    return {
        "family": "r3gan", "format": FORMAT, "resolution": resolution, "channels": channels,
        "conditional": c_dim is not None, "num_classes": c_dim, "label": label,
        "pixel_range": [-1.0, 1.0],
        "output": {"shape": "(N,)", "reduction": "squeeze",
                   "why": "R3GAN's D ends in x.view(N): one logit per image"},
        "coupling": [], "randomness": "none",
        "upstream": {"repo": _REPO, "class": _D_WRAPPER, "init_kwargs": init_kwargs},
        "extra": {
            "init_kwargs_source": "read off the pickled module tree (a plain pickle records "
                                  "no constructor arguments)",
            "embedded_source": "none: a plain pickle of module objects, no persistence records",
            "upstream_stage_dtypes": dtypes,
            "computed_in": "float32",
            "bf16_note": (f"upstream computes stages {bf16} in bfloat16; these logits are the "
                          "float32 forward (differences at bfloat16 precision)") if bf16 else None,
            "resampling_kernels": f["filters"],
            "resampling_kernels_are_default": kernels_default,
            "resampler": ("upfirdn2d (true convolution)" if resampler == [True] else
                          "reference conv2d (correlation)" if resampler == [False] else
                          "mixed" if resampler else None),
            "snapshot_keys": [str(k) for k in snap] if snap else None,
            "step": nimg, "step_unit": "images seen (training_loop's cur_nimg)" if nimg else None,
            "training_set_kwargs": _plain(tsk) if tsk else None,
        },
    }


# ----------------------------------------------------------------------------- sniffing
def _head_globals(path: Path) -> list[str]:
    if safe_pickle.is_torch_zip(path):
        return safe_pickle.scan_globals(path)
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if not head or head[0] != 0x80:  # pickles of protocol 2+ start with PROTO
        return []
    return safe_pickle._globals_in(head)


def sniff(path: Path) -> str | None:
    """``"r3gan"`` if ``path`` is a pickle whose first MiB names R3GAN's network classes
    (``R3GAN.Networks.*``, what ``training_loop.py`` snapshots start with) and no NVlabs
    persistence record; else None. Reads bytes only; never raises."""
    try:
        found = _head_globals(Path(path))
    except Exception:  # noqa: BLE001 - a sniffer answers None for anything unreadable
        return None
    if any(g.startswith("torch_utils.persistence") for g in found):
        return None
    return "r3gan" if any(g.startswith(_NET) for g in found) else None
