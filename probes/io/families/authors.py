"""The AS-GAN authors' discriminators, rebuilt from their saved ``netD`` state_dicts
(``--format authors``, and ``authors-dcgan``).

The public AS-GAN repository (``CirclePassFilter/AS_GAN``) trains with one of twelve model
files under ``model/`` and saves ``torch.save(netD.state_dict())``. These nets are written
here from the layer facts of those files (types, order, kernels, channels, state_dict names
and shapes); none of their code is used. Every net returns **raw logits (N,)**: where the
authors' forward ends in ``nn.Sigmoid`` the sigmoid is left out, so ``sigmoid(D(x))`` is
their output. BatchNorm and spectral norm are kept.

Families (``FAMILIES``; input (N, C, R, R) in [-1, 1], the authors normalise with mean 0.5,
std 0.5; C = 3 in their files):

- ``DCGAN_32`` / ``DCGAN_64`` / ``DCGAN_128``: ``main`` = 4x4 stride-2 pad-1 conv (no
  bias), LeakyReLU(0.2), then [conv, BatchNorm, LeakyReLU] x 2 / 3 / 4 doubling the channels,
  then a 4x4 valid conv to one channel and a sigmoid. R = 32 / 64 / 128 (the last conv needs
  a 4x4 map). First width 128 / 128 / 64.
- ``DCGAN_32_sn`` / ``DCGAN_64_sn``: the same with torch's spectral norm on every conv and
  the BatchNorm layers kept.
- ``resnet32`` / ``resnet64``: SNGAN-style ResNet, 4 / 5 blocks that all halve the side
  (``block1`` is the "optimized" block: conv, ReLU, conv, pool + pool, 1x1 conv; later
  blocks: ReLU, conv (in -> in), ReLU, conv (in -> out), pool + 1x1 conv, pool), channels
  doubling from 96 / 64, then ReLU, a *sum* over H and W, ``l6`` Linear to one logit and a
  sigmoid. R = 32 / 64 (the sum pool accepts any side divisible by 16 / 32, but the
  magnitude of the logit scales with the area).
- ``resnet32_same`` / ``resnet64_same``: the same with every block 256 channels wide.
- ``resnet32_same_sn`` / ``resnet64_same_sn`` (the training script's default): the ``same``
  nets with spectral norm on every conv and on ``l6``.
- ``resnet32_sn``: like ``resnet32_same_sn`` but 64 channels wide and with **no sigmoid**
  (its forward returns ``l6``'s output). Its tensors differ from ``resnet32_same_sn``'s only
  in width, so an inferred family is named from the width (64 -> ``resnet32_sn``); the logits
  are the same function either way.

Spectral norm is ``torch.nn.utils.spectral_norm`` (hook style): tensors ``weight_orig``,
``weight_u`` and ``weight_v`` per layer. D's weight is ``weight_orig / sigma`` with
``sigma = u . (W v)``, W the weight flattened to (out, -1), from the *stored* u and v: the
eval-mode maths of torch, with no power iteration (D is probed here, never trained). Files
from torch <= 1.0 store the normalised ``weight`` and no ``weight_v``; a v that reproduces
that weight is derived on load. BatchNorm files from torch 0.4.0 lack
``num_batches_tracked``; it is set to 0 (only training with ``momentum=None`` reads it).

``authors-dcgan`` (kept for files it read before): ``netD`` of a pytorch/examples-style DCGAN
script (the authors' script builds on it): ``torch.save(netD.state_dict())`` with keys
``main.<i>.*``, stride-2 4x4 convs without bias, BatchNorm from the second conv,
LeakyReLU(0.2), a last conv to one channel and an ``nn.Sigmoid`` head. Layer for layer this
is our ``dcgan`` discriminator (28/32/64 px, any width and channel count), which has no
sigmoid: the sigmoid is stripped and D returns the logits. ``authors`` reads the same files
with their own names (and 128 px, spectral norm); ``auto`` prefers it, falling back to
``authors-dcgan`` for the layouts only it reads (28 px, one channel).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from asgan_base.errors import UserError
from probes.io.families._common import container, logits_desc, no_label, read_object, state_dict_of

NAMES = ("authors", "authors-dcgan")
FORMAT = ("torch.save(netD.state_dict()) of the AS-GAN authors' twelve model files / a "
          "pytorch/examples DCGAN netD")
CHECKED = ("tensors only (weights_only / safetensors); family inferred from names and shapes, "
           "every shape checked before a net is built; sigmoid stripped")
COUPLING = "BatchNorm (DCGAN families): frozen clean-reference statistics; none (ResNets)"
STUBS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """One authors' model file. ``depth``: DCGAN: stride-2 convs; ResNet: blocks."""

    kind: str  # "dcgan" or "resnet"
    depth: int
    same: bool  # ResNet: every block ``width`` wide (else the channels double per block)
    sn: bool  # spectral norm on every conv / linear
    sigmoid: bool  # the authors' forward ends in a sigmoid (stripped here)
    resolution: int  # the input side the file is made for
    width: int  # the authors' default first width (ndf / num_features)


FAMILIES: dict[str, Family] = {
    "DCGAN_32": Family("dcgan", 3, False, False, True, 32, 128),
    "DCGAN_64": Family("dcgan", 4, False, False, True, 64, 128),
    "DCGAN_128": Family("dcgan", 5, False, False, True, 128, 64),
    "DCGAN_32_sn": Family("dcgan", 3, False, True, True, 32, 128),
    "DCGAN_64_sn": Family("dcgan", 4, False, True, True, 64, 128),
    "resnet32": Family("resnet", 4, False, False, True, 32, 96),
    "resnet64": Family("resnet", 5, False, False, True, 64, 64),
    "resnet32_same": Family("resnet", 4, True, False, True, 32, 256),
    "resnet64_same": Family("resnet", 5, True, False, True, 64, 256),
    "resnet32_sn": Family("resnet", 4, True, True, False, 32, 64),
    "resnet32_same_sn": Family("resnet", 4, True, True, True, 32, 256),
    "resnet64_same_sn": Family("resnet", 5, True, True, True, 64, 256),
}
SUPPORTED = "supported families: " + ", ".join(FAMILIES)


# ----------------------------------------------------------------------------- layers
class SpectralNormed(nn.Module):
    """A conv (4-D weight) or linear (2-D weight) layer holding torch's hook-style
    spectral-norm tensors: ``weight_orig`` (out, ...), ``weight_u`` (out,), ``weight_v``
    (prod of the rest,), optional ``bias`` (out,). Forward uses ``weight_orig / sigma``."""

    def __init__(self, shape: tuple[int, ...], *, bias: bool, stride: int = 1,
                 padding: int = 0):
        super().__init__()
        self.stride, self.padding = stride, padding
        w = torch.empty(shape)
        nn.init.normal_(w, 0.0, 0.02)
        self.weight_orig = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None
        # a valid pair until the file's vectors replace it: v = W^T u / |W^T u|
        u = F.normalize(torch.ones(shape[0]), dim=0)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", F.normalize(w.flatten(1).t() @ u, dim=0))

    def weight(self) -> torch.Tensor:
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, torch.mv(w.flatten(1), self.weight_v))  # scalar
        return w / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_orig.dim() == 2:
            return F.linear(x, self.weight(), self.bias)
        return F.conv2d(x, self.weight(), self.bias, self.stride, self.padding)


def _conv(c_in: int, c_out: int, k: int, stride: int, pad: int, *, bias: bool, sn: bool):
    if sn:
        return SpectralNormed((c_out, c_in, k, k), bias=bias, stride=stride, padding=pad)
    return nn.Conv2d(c_in, c_out, k, stride, pad, bias=bias)


# ----------------------------------------------------------------------------- DCGAN
class AuthorsDCGAN(nn.Module):
    """x (N, C, R, R) -> logits (N,); ``main`` indices as in the authors' Sequential (conv
    0, LeakyReLU 1, then conv/BN/LeakyReLU triples, the last conv at 3 * depth - 1; their
    sigmoid after it has no tensors, so leaving it out keeps every name)."""

    def __init__(self, channels: int, width: int, depth: int, sn: bool):
        super().__init__()
        layers: list[nn.Module] = [_conv(channels, width, 4, 2, 1, bias=False, sn=sn),
                                   nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(depth - 1):  # each: side / 2, channels x 2
            layers += [_conv(ch, 2 * ch, 4, 2, 1, bias=False, sn=sn), nn.BatchNorm2d(2 * ch),
                       nn.LeakyReLU(0.2)]
            ch *= 2
        layers.append(_conv(ch, 1, 4, 1, 0, bias=False, sn=sn))  # (N, 1, 1, 1) at 4x4
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.main(x)  # (N, 1, 1, 1)
        if h.shape[1:] != (1, 1, 1):
            raise ValueError(f"this DCGAN D takes {4 * 2 ** (len(self.main) // 3)} px inputs; "
                             f"got {tuple(x.shape[-2:])}")
        return h.reshape(x.shape[0])


# ----------------------------------------------------------------------------- ResNet
class Block(nn.Module):
    """(N, c_in, s, s) -> (N, c_out, s/2, s/2). ``first`` (the authors' optimized block):
    c1: c_in -> c_out, no ReLU on the raw image, shortcut pools before c_sc. Otherwise c1
    keeps c_in channels, c2 maps to c_out, both after a ReLU; the shortcut pools after c_sc."""

    def __init__(self, c_in: int, c_out: int, *, first: bool, sn: bool):
        super().__init__()
        self.first = first
        hidden = c_out if first else c_in
        self.c1 = _conv(c_in, hidden, 3, 1, 1, bias=True, sn=sn)
        self.c2 = _conv(hidden, c_out, 3, 1, 1, bias=True, sn=sn)
        self.c_sc = _conv(c_in, c_out, 1, 1, 0, bias=True, sn=sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.c2(F.relu(self.c1(h))), 2)
        sc = self.c_sc(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(self.c_sc(x), 2)
        return h + sc


class AuthorsResNet(nn.Module):
    """x (N, C, H, W) -> ``block1..depth`` -> ReLU, sum over H, W -> ``l6`` -> logits (N,)."""

    def __init__(self, channels: int, width: int, depth: int, same: bool, sn: bool):
        super().__init__()
        chs = [width if same else width * 2 ** i for i in range(depth)]
        for i, (c_in, c_out) in enumerate(zip([channels] + chs[:-1], chs)):
            setattr(self, f"block{i + 1}", Block(c_in, c_out, first=i == 0, sn=sn))
        self.depth = depth
        self.l6 = SpectralNormed((1, chs[-1]), bias=True) if sn else nn.Linear(chs[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(self.depth):
            h = getattr(self, f"block{i + 1}")(h)
        h = F.relu(h).sum(dim=(2, 3))  # (N, c): sum, not mean, pooling
        return self.l6(h).reshape(x.shape[0])  # (N, 1) -> (N,)


def build(family: str, *, channels: int = 3, width: int | None = None) -> nn.Module:
    """An authors' discriminator (random weights) with their state_dict names and shapes.

    Args:
        family: a key of ``FAMILIES`` (a model file name; ``model/`` and ``.py`` are ignored).
        channels: input channels C (3 in the authors' files).
        width: first width (ndf / num_features); None = the family's default.

    Returns:
        ``nn.Module`` mapping (N, C, R, R) in [-1, 1] to raw logits (N,).

    Examples:
        >>> D = build("resnet32_sn", width=8)
        >>> D(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    name = family_name(family)
    f = FAMILIES[name]
    w = f.width if width is None else int(width)
    if f.kind == "dcgan":
        return AuthorsDCGAN(channels, w, f.depth, f.sn)
    return AuthorsResNet(channels, w, f.depth, f.same, f.sn)


def family_name(name: str) -> str:
    """The ``FAMILIES`` key for a family or model-file name (case and ``model/...py``
    ignored); UserError naming the families otherwise."""
    stem = re.sub(r"\.py$", "", str(name).replace("\\", "/").rsplit("/", 1)[-1])
    for key in FAMILIES:
        if key.lower() == stem.lower():
            return key
    raise UserError(f"unknown authors' family {name!r}; {SUPPORTED}")


# ----------------------------------------------------------------------------- inference
def _weight(sd: dict, prefix: str) -> torch.Tensor | None:
    return sd.get(f"{prefix}.weight_orig", sd.get(f"{prefix}.weight"))


def infer(sd: dict[str, torch.Tensor]) -> tuple[str, int, int]:
    """``(family, channels, width)`` from tensor names and shapes; UserError (one line,
    naming the families) for anything that is not one of the authors' layouts."""
    keys = list(sd)
    sn = any(k.endswith(".weight_orig") for k in keys)
    if keys and all(k.startswith("main.") for k in keys):
        convs = sorted(int(m.group(1)) for k in keys
                       if (m := re.fullmatch(r"main\.(\d+)\.weight(?:_orig)?", k))
                       and sd[k].dim() == 4)
        depth = len(convs) - 1  # stride-2 convs before the last
        if convs != [0] + [3 * i + 2 for i in range(depth)]:
            raise UserError(f"a main.* Sequential whose convs sit at {convs[:8]}, not the "
                            f"authors' DCGAN layout; {SUPPORTED}")
        kind, first = "dcgan", sd.get("main.0.weight_orig", sd.get("main.0.weight"))
    elif any(re.match(r"block\d+\.", k) for k in keys) and any(k.startswith("l6.") for k in keys):
        blocks = {int(m.group(1)) for k in keys if (m := re.match(r"block(\d+)\.", k))}
        depth = len(blocks)
        if blocks != set(range(1, depth + 1)):
            raise UserError(f"ResNet blocks numbered {sorted(blocks)[:8]}, not block1..; "
                            f"{SUPPORTED}")
        kind, first = "resnet", _weight(sd, "block1.c1")
    else:
        raise UserError(f"not one of the AS-GAN authors' discriminators (keys {keys[:3]}...); "
                        f"{SUPPORTED}")
    if first is None or first.dim() != 4:
        raise UserError(f"no 4-D first conv weight found; {SUPPORTED}")
    channels, width = int(first.shape[1]), int(first.shape[0])
    same = kind == "resnet" and all(
        (w := _weight(sd, f"block{i}.c2")) is not None and w.dim() == 4
        and int(w.shape[0]) == width for i in range(1, depth + 1))
    fits = [n for n, f in FAMILIES.items()
            if (f.kind, f.depth, f.sn, f.same) == (kind, depth, sn, same)]
    if len(fits) > 1:  # resnet32_sn / resnet32_same_sn: told apart by width alone
        fits = [n for n in fits if FAMILIES[n].width == width] or [
            n for n in fits if FAMILIES[n].sigmoid]
    if not fits:
        what = (f"{kind} with {depth} {'convs' if kind == 'dcgan' else 'blocks'}"
                f"{', spectral norm' if sn else ''}{', constant width' if same else ''}")
        raise UserError(f"a {what}: no authors' model file has that layout; {SUPPORTED}")
    return fits[0], channels, width


# ----------------------------------------------------------------------------- loading
def _upgrade(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dicts of older torch releases in today's names (module docstring)."""
    sd = dict(sd)
    for k in [k for k in sd if k.endswith(".weight_orig")]:
        p = k[: -len("weight_orig")]
        if (f"{p}weight_v" not in sd and f"{p}weight" in sd and f"{p}weight_u" in sd
                and sd[k].dim() >= 2 and sd[f"{p}weight"].shape == sd[k].shape
                and sd[f"{p}weight_u"].shape == sd[k].shape[:1]):
            # torch <= 1.0: `weight` = weight_orig / sigma. Any v with u . (W v) = sigma gives
            # that weight back; v along W^T u is the one that needs no solve.
            w_orig, w, u = sd[k].float(), sd.pop(f"{p}weight").float(), sd[f"{p}weight_u"].float()
            sigma = w_orig.norm() / w.norm()
            wt_u = w_orig.flatten(1).t() @ u  # (in*k*k,)
            sd[f"{p}weight_v"] = wt_u * (sigma / wt_u.dot(wt_u))
    for k in [k for k in sd if k.endswith(".running_mean")]:
        nbt = k[: -len("running_mean")] + "num_batches_tracked"
        if nbt not in sd:
            sd[nbt] = torch.tensor(0, dtype=torch.long)
    return sd


def load(sd: dict[str, torch.Tensor], source: str, family: str | None = None
         ) -> tuple[nn.Module, dict]:
    """``(D, spec)`` for an authors' ``netD`` state_dict; D in eval mode, returning logits.

    Args:
        sd: the tensors (a ``module.`` prefix already removed).
        source: the file, for error messages.
        family: a ``FAMILIES`` key or model-file name; None = inferred from ``sd``.

    Returns:
        D and its spec ``{"arch": "authors", "role": "D", "kwargs": {"family", "channels",
        "width", "resolution", "spectral_norm", "batchnorm", "sigmoid"}}``; ``sigmoid`` says
        whether the authors' forward applied one (stripped here).
    """
    sd = _upgrade(sd)
    name, channels, width = infer(sd) if family is None else (family_name(family), None, None)
    if family is not None:  # the named layout, widths from the first conv
        first = _weight(sd, "main.0" if FAMILIES[name].kind == "dcgan" else "block1.c1")
        if first is None or first.dim() != 4:
            raise UserError(f"{source}: no first conv weight of a {name} D "
                            f"({'main.0' if FAMILIES[name].kind == 'dcgan' else 'block1.c1'})")
        channels, width = int(first.shape[1]), int(first.shape[0])
    if channels < 1 or width < 1:
        raise UserError(f"{source}: a first conv of shape {width}x{channels}; not a {name} D")
    # shapes first, on the meta device: a net is only allocated once the file's own tensors
    # (whose size torch.load has checked) say it is that big
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in build(name, channels=channels,
                                                    width=width).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    if want != got:
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        wrong = [f"{k} {got[k]} (want {want[k]})" for k in want if k in got and got[k] != want[k]]
        why = "; ".join(f"{what}: {', '.join(map(str, items[:3]))}" for what, items in
                        (("missing", missing), ("unexpected", extra), ("shapes", wrong)) if items)
        raise UserError(f"{source}: the weights do not fit the authors' {name} D "
                        f"(width {width}, {channels} channels; {why[:240]})")
    D = build(name, channels=channels, width=width)
    try:
        D.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # shapes fit, so a dtype torch cannot copy
        msg = " ".join(str(e).split())
        raise UserError(f"{source}: the weights do not load into the authors' {name} D "
                        f"({msg[:200]})") from None
    f = FAMILIES[name]
    spec = {"arch": "authors", "role": "D", "kwargs": {
        "family": name, "channels": channels, "width": width, "resolution": f.resolution,
        "spectral_norm": f.sn, "batchnorm": f.kind == "dcgan", "sigmoid": f.sigmoid}}
    return D.eval(), spec


def n_tensors(family: str) -> int:
    """How many tensors the family's state_dict holds (BatchNorm buffers included)."""
    with torch.device("meta"):
        return len(build(family, width=1).state_dict())


# ----------------------------------------------------------------------------- the family
def _dcgan_examples(sd: dict, path: Path) -> tuple[nn.Module, dict]:
    """A pytorch/examples-style DCGAN netD (``main.*``), rebuilt as our dcgan D."""
    from probes.io.families.ours import _build, _dcgan_spec

    if not sd or not all(k.startswith("main.") for k in sd):
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
    return _build(spec, sd, path, "a pytorch/examples DCGAN netD"), spec


def sniff(path: Path) -> str | None:
    """``"authors"`` for one of the twelve families, ``"authors-dcgan"`` for a
    pytorch/examples DCGAN netD that only that format reads; None otherwise."""
    try:
        sd = state_dict_of(read_object(path), path)
    except Exception:  # noqa: BLE001 - a sniffer answers None for anything else
        return None
    for name, fn in (("authors", lambda: load(sd, str(path))),
                     ("authors-dcgan", lambda: _dcgan_examples(sd, path))):
        try:
            fn()
            return name
        except Exception:  # noqa: BLE001
            continue
    return None


def read(path: Path, *, label: int | None = None, format: str | None = "authors",
         arch: str | None = None) -> tuple[nn.Module, dict]:
    """``(D, desc)`` for an authors' ``netD`` file; ``format`` ``"authors"`` (``arch``: a
    family or model-file name, default inferred) or ``"authors-dcgan"``."""
    no_label(label, "AS-GAN authors'")
    obj = read_object(path)
    sd = state_dict_of(obj, path)
    if format == "authors-dcgan":
        if arch is not None:
            raise UserError("--arch applies to --format state-dict and authors only, not "
                            "authors-dcgan")
        D, spec = _dcgan_examples(sd, path)
        shape = [spec["kwargs"]["channels"], spec["kwargs"]["resolution"],
                 spec["kwargs"]["resolution"]]
        upstream = {"repo": "pytorch/examples (dcgan)", "class": "netD",
                    "init_kwargs": dict(spec["kwargs"])}
    else:
        D, spec = load(sd, str(path), family=arch)
        kw = spec["kwargs"]
        shape = [kw["channels"], kw["resolution"], kw["resolution"]]
        upstream = {"repo": "CirclePassFilter/AS_GAN", "class": f"model/{kw['family']}.py",
                    "init_kwargs": {"family": kw["family"], "width": kw["width"]}}
    why = ("their forward ends in a sigmoid; its input, the logit (N,), is returned"
           if format == "authors-dcgan" or spec["kwargs"].get("sigmoid") else
           "their forward returns the logit (N,)")
    desc = logits_desc(family="as-gan-authors", format=FORMAT, D=D, shape=shape,
                       upstream=upstream, extra={"spec": spec, "container": container(obj)},
                       why=why)
    return D.eval(), desc

