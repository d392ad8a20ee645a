"""PyTorch-StudioGAN discriminator checkpoints, rebuilt in our own code.

StudioGAN (``POSTECH-CVLab/PyTorch-StudioGAN``) saves D as ``model=D-best-weights-step=N.pth``
/ ``model=D-current-weights-step=N.pth``: ``torch.save`` (zip) of a dict ``{"state_dict",
"optimizer", "seed", "run_name", "step", "epoch", "topk", "aa_p", "best_step", "best_fid",
"best_fid_ckpt", "lecam_emas"}`` (``worker.save``). The file holds no config, so the net is
inferred from the ``state_dict`` keys and shapes:

- **architecture**: ``deep_conv`` (DCGAN: ``blocks.i.0.conv0/conv1`` + ``conv1``) or
  ``resnet`` / ``big_resnet`` (SNGAN, BigGAN: ``blocks.0.0`` an optimised block
  ``conv2d0/1/2``, residual blocks after it). The two ResNet modules hold identical D code, so
  they are one case here. The resolution follows from the number of residual blocks (4, 5, 6,
  7, 8 -> 32, 64, 128, 256, 512 px) and with it upstream's downsampling table (32 px: the
  first two blocks; else all but the last). ``big_resnet_deep_*`` and StyleGAN backbones are
  refused.
- **widths** from the weights; **spectral norm** from ``weight_orig/_u/_v``; **BatchNorm**
  from ``bn*`` running statistics; **self-attention** (SAGAN, BigGAN's ``attn_d_loc``) from a
  block holding ``sigma``.
- **conditioning** (``d_cond_mtd``): ``W/O`` (no ``embedding``/``linear2``); ``PD``
  (projection: ``embedding`` of ``(num_classes, F)``, the logit gets ``<embed(y), h>``);
  ``AC`` / ``2C`` / ``D2DCE`` (a ``linear2`` classifier or embedding head beside an
  adversarial ``linear1`` that never reads the class: the adversarial logit is unconditional
  here and the extra heads, like InfoGAN's Q heads and TAC's ``*_mi``, are recorded in
  ``extra`` and dropped; ``extra.head_classes`` counts the class head's rows, which ADC
  doubles). ``2C`` and ``D2DCE`` share one D and are reported as ``2C/D2DCE``.
  ``MH`` / ``MD`` (``linear1`` with several outputs) are refused: the file cannot tell them
  apart and their logit is not one number per image.

The rebuilt D (:class:`StudioGANDiscriminator`) computes upstream's eval-mode forward:

- **spectral norm**: torch's ``spectral_norm`` hook in eval mode does no power iteration; it
  divides ``weight_orig`` by ``sigma = u . (W_mat v)`` with the *stored* ``u`` and ``v``
  (``W_mat`` = weight reshaped to ``(out, -1)``; every StudioGAN D layer normalises dim 0).
  That division is done once on load, the same ops in the same order, and the result is a
  plain weight: no buffers a probe could move.
- **BatchNorm**: ``nn.BatchNorm2d`` with the stored running statistics, ``eps=1e-4`` and
  ``momentum=0.1`` (``utils.ops.batchnorm_2d``'s constants; the file stores no eps). In train
  mode it uses batch statistics like upstream (the probe modes rely on this).
- **activation**: ReLU, StudioGAN's default and the value of every non-StyleGAN config it
  ships (the file does not record ``d_act_fn``).
- upstream's ``nn.ReLU(inplace=True)`` in a ResNet block without BatchNorm also rectifies the
  block's input *before* the shortcut reads it (``x0 = x; x = relu_(x)``); with BatchNorm the
  shortcut reads the raw input. Both are reproduced.
- **output**: upstream returns a dict; its adversarial logit ``adv_output =
  squeeze(linear1(h))`` (+ ``sum(embed(y) * h, 1)`` for ``PD``), ``h`` the spatial sum of the
  last features. Ours returns that ``(N,)`` tensor (upstream squeezes a batch of one to a
  0-d tensor; ours stays ``(1,)``); reduction ``squeeze``.
- a conditional (``PD``) D binds the class id ``label`` for every sample.

Inputs are images ``(N, 3, H, W)`` in [-1, 1] (StudioGAN normalises with mean 0.5, std 0.5).
Loading never runs the file's code: the zip's pickle goes through
:func:`probes.io.safe_pickle.load_torch_zip` (tensors, plain values, numpy scalars; no stubs),
because ``torch.load(weights_only=True)`` refuses the ``numpy.float64`` StudioGAN stores as
``best_fid``. Torch only.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asgan_base.errors import UserError
from probes.io import safe_pickle

NAMES: tuple[str, ...] = ("studiogan",)
FORMAT = ("PyTorch-StudioGAN model=D-{best,current}-weights-step=N.pth: torch.save zip of "
          "{state_dict, optimizer, step, best_fid, ...}")
CHECKED = ("restricted unpickling (no globals beyond tensors/containers/numpy scalars); "
           "architecture, widths, spectral norm, BatchNorm, attention and class head "
           "inferred from keys and shapes; every tensor used, shapes checked")
COUPLING = ("BatchNorm (DCGAN, non-SN ResNets): frozen; spectral-norm D's have none "
            "(u, v folded into the weights)")
STUBS: tuple[str, ...] = ()

REPO = "POSTECH-CVLab/PyTorch-StudioGAN"
BN_EPS = 1e-4      # utils.ops.batchnorm_2d
BN_MOMENTUM = 0.1
_RES_BY_BLOCKS = {4: 32, 5: 64, 6: 128, 7: 256, 8: 512}  # resnet.py's d_*_dims_collection
_SNIFF_LIMIT = 64 << 20  # bytes of data.pkl read by sniff (the pickle holds no tensor data)
_IGNORED_HEADS = ("linear2.", "embedding.", "linear_mi.", "embedding_mi.",
                  "info_discrete_linear.", "info_conti_mu_linear.", "info_conti_var_linear.")


# ---- our layers (names mirror upstream's state_dict keys so the folded dict loads strictly)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class _ConvBlock(nn.Module):
    """deep_conv's DiscBlock: conv3x3 -> [BN] -> ReLU -> conv4x4 stride 2 -> [BN] -> ReLU;
    ``(N, cin, H, W)`` -> ``(N, cout, H/2, W/2)``."""

    def __init__(self, cin: int, cout: int, bn: bool) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.conv1 = nn.Conv2d(cout, cout, 4, 2, 1)
        self.bn0 = _bn(cout) if bn else None
        self.bn1 = _bn(cout) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv0(x)
        x = F.relu(self.bn0(x) if self.bn0 is not None else x)
        x = self.conv1(x)
        return F.relu(self.bn1(x) if self.bn1 is not None else x)


class _OptBlock(nn.Module):
    """(big_)resnet's DiscOptBlock: ``conv3x3 -> [BN] -> ReLU -> conv3x3 -> avgpool`` plus
    ``avgpool -> [BN] -> conv1x1`` shortcut; halves H, W."""

    def __init__(self, cin: int, cout: int, bn: bool) -> None:
        super().__init__()
        self.conv2d0 = nn.Conv2d(cin, cout, 1)
        self.conv2d1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.conv2d2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn0 = _bn(cin) if bn else None
        self.bn1 = _bn(cout) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2d1(x)
        h = F.relu(self.bn1(h) if self.bn1 is not None else h)
        h = F.avg_pool2d(self.conv2d2(h), 2)
        x0 = F.avg_pool2d(x, 2)
        if self.bn0 is not None:
            x0 = self.bn0(x0)
        return h + self.conv2d0(x0)


class _ResBlock(nn.Module):
    """(big_)resnet's DiscBlock (pre-activation; 1x1 shortcut when widths differ or it
    downsamples). Without BatchNorm the shortcut reads the *rectified* input, as upstream's
    in-place ReLU makes it do; with BatchNorm it reads the raw input."""

    def __init__(self, cin: int, cout: int, down: bool, bn: bool, shortcut: bool) -> None:
        super().__init__()
        self.down = down
        self.conv2d0 = nn.Conv2d(cin, cout, 1) if shortcut else None
        self.bn0 = _bn(cin) if bn and shortcut else None
        self.conv2d1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.conv2d2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn1 = _bn(cin) if bn else None
        self.bn2 = _bn(cout) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn1 is None:
            x = x0 = F.relu(x)
        else:
            x0, x = x, F.relu(self.bn1(x))
        h = self.conv2d1(x)
        h = self.conv2d2(F.relu(self.bn2(h) if self.bn2 is not None else h))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.conv2d0 is not None:
            x0 = self.conv2d0(self.bn0(x0) if self.bn0 is not None else x0)
            if self.down:
                x0 = F.avg_pool2d(x0, 2)
        return h + x0


class _SelfAttention(nn.Module):
    """SAGAN self-attention of utils.ops.SelfAttention (discriminator side): 1x1 convs without
    bias to C/8 (theta, phi) and C/2 (g) channels, phi and g max-pooled 2x2, softmax over the
    pooled positions, ``x + sigma * conv1x1_attn(.)``; shape preserved (H, W even)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1x1_theta = nn.Conv2d(c, c // 8, 1, bias=False)
        self.conv1x1_phi = nn.Conv2d(c, c // 8, 1, bias=False)
        self.conv1x1_g = nn.Conv2d(c, c // 2, 1, bias=False)
        self.conv1x1_attn = nn.Conv2d(c // 2, c, 1, bias=False)
        self.sigma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, ch, h, w = x.shape
        theta = self.conv1x1_theta(x).view(-1, ch // 8, h * w)
        phi = F.max_pool2d(self.conv1x1_phi(x), 2).view(-1, ch // 8, h * w // 4)
        attn = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
        g = F.max_pool2d(self.conv1x1_g(x), 2).view(-1, ch // 2, h * w // 4)
        attn_g = torch.bmm(g, attn.permute(0, 2, 1)).view(-1, ch // 2, h, w)
        return x + self.sigma * self.conv1x1_attn(attn_g)


class StudioGANDiscriminator(nn.Module):
    """A StudioGAN ``deep_conv`` / ``resnet`` / ``big_resnet`` discriminator.

    ``forward(x)``: ``x`` ``(N, channels, H, W)`` in [-1, 1] -> upstream's ``adv_output``
    ``(N,)``, raw logits. ``blocks`` is upstream's ``ModuleList`` of one-module lists;
    ``conv1``/``bn1`` exist for ``deep_conv`` only; ``embedding`` (projection, ``PD``) is read
    at the bound class ``label`` for every sample.
    """

    def __init__(self, blocks: list[nn.Module], features: int, *, top_conv: tuple | None,
                 top_bn: bool, num_classes: int | None, label: int | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.ModuleList([b]) for b in blocks])
        self.conv1 = nn.Conv2d(top_conv[0], top_conv[1], 3, 1, 1) if top_conv else None
        self.bn1 = _bn(top_conv[1]) if top_conv and top_bn else None
        self.linear1 = nn.Linear(features, 1)
        self.embedding = nn.Embedding(num_classes, features) if num_classes else None
        self.label = label

    def extra_repr(self) -> str:
        return f"label={self.label}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for (block,) in self.blocks:
            h = block(h)
        if self.conv1 is not None:
            h = self.conv1(h)
            if self.bn1 is not None:
                h = self.bn1(h)
        h = torch.sum(F.relu(h), dim=[2, 3])
        out = self.linear1(h)[:, 0]
        if self.embedding is not None:
            e = self.embedding.weight[self.label].expand(h.shape[0], -1)
            out = out + torch.sum(torch.mul(e, h), 1)
        return out


# ---- reading


def sniff(path: Path) -> str | None:
    """``"studiogan"`` when ``path`` is a torch zip whose pickle names a ``state_dict`` with
    ``blocks.0.0.`` and ``linear1.`` tensors next to StudioGAN's bookkeeping (``best_fid``,
    ``best_step``); reads only the pickle's bytes, unpickles nothing; None otherwise."""
    data = safe_pickle.zip_pickle_bytes(path, _SNIFF_LIMIT)
    if data is None:  # not a zip, unreadable, truncated, too large: not ours
        return None
    marks = (b"state_dict", b"best_fid", b"best_step", b"blocks.0.0.", b"linear1.")
    return "studiogan" if all(m in data for m in marks) else None


def _load(path: Path) -> dict:
    what = str(path)
    if not path.is_file():
        raise UserError(f"{what}: no such file")
    if not safe_pickle.is_torch_zip(path):
        try:
            with path.open("rb") as f:
                head = f.read(4)
        except OSError:
            head = b""
        if head.startswith(b"PK"):
            raise UserError(f"{what}: a damaged or truncated zip file; copy the checkpoint "
                            "again")
        raise UserError(f"{what}: not a StudioGAN checkpoint (expected a torch.save zip file "
                        "model=D-*-weights-step=N.pth; legacy pre-1.6 torch files: re-save "
                        "with torch >= 1.6)")
    with warnings.catch_warnings():  # TypedStorage deprecation, from rebuilding storages
        warnings.simplefilter("ignore", UserWarning)
        obj = safe_pickle.load_torch_zip(path, what=what)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise UserError(f"{what}: not a StudioGAN D checkpoint (no 'state_dict' dict)")
    sd = obj["state_dict"]
    bad = [k for k, v in sd.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        raise UserError(f"{what}: state_dict entry {bad[0]!r} is not a named tensor")
    return obj


def _fold_spectral_norm(sd: dict[str, torch.Tensor], what: str) -> tuple[dict, int]:
    """``weight_orig/_u/_v`` triples -> ``weight = weight_orig / (u . W_mat v)`` (torch's
    eval-mode spectral norm, stored u and v, no power iteration); other tensors as float32.
    Returns the plain dict and the number of layers folded."""
    out: dict[str, torch.Tensor] = {}
    n = 0
    for k, v in sd.items():
        if k.endswith(("weight_u", "weight_v")):
            if k[:-1] + "orig" not in sd:
                raise UserError(f"{what}: {k} without its weight_orig")
            continue
        if not k.endswith("weight_orig"):
            out[k] = v.float() if v.is_floating_point() else v
            continue
        p = k[: -len("weight_orig")]
        if f"{p}weight_u" not in sd or f"{p}weight_v" not in sd:
            raise UserError(f"{what}: {k} without its spectral-norm vectors {p}weight_u/_v")
        w = v.float()
        u, vv = sd[f"{p}weight_u"].float(), sd[f"{p}weight_v"].float()
        w_mat = w.reshape(w.shape[0], -1)
        if u.shape != (w_mat.shape[0],) or vv.shape != (w_mat.shape[1],):
            raise UserError(f"{what}: {p}weight_u/_v of shapes {tuple(u.shape)}, "
                            f"{tuple(vv.shape)} do not fit {k} {tuple(w.shape)}")
        sigma = torch.dot(u, torch.mv(w_mat, vv))
        out[f"{p}weight"] = w / sigma
        n += 1
    return out, n


def _shape(sd: dict, key: str, what: str) -> tuple[int, ...]:
    if key not in sd:
        raise UserError(f"{what}: StudioGAN D without {key}; the weights do not fit a "
                        "deep_conv/resnet/big_resnet discriminator")
    return tuple(sd[key].shape)


def _infer(sd: dict[str, torch.Tensor], what: str) -> dict[str, Any]:
    """The architecture facts of a folded state_dict (see the module docstring)."""
    idx = sorted({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.0\.", k))})
    if not idx or idx != list(range(len(idx))):
        raise UserError(f"{what}: no StudioGAN blocks.<i>.0.* tensors (blocks {idx[:8]}); "
                        "not a deep_conv/resnet/big_resnet D (big_resnet_deep and StyleGAN "
                        "backbones are not supported)")
    bn = any(k.endswith("running_mean") for k in sd)
    kinds = _block_kinds(sd, idx, what)
    main = [k for k in kinds if k[0] != "attn"]
    if all(k[0] == "conv" for k in main):
        arch = "deep_conv"
    elif all(k[0] == "res" for k in main):
        arch = "resnet"
    else:
        raise UserError(f"{what}: blocks mix deep_conv and resnet layouts; not a StudioGAN D")
    w1 = _shape(sd, "linear1.weight", what)
    if w1[0] != 1:
        raise UserError(f"{what}: linear1 has {w1[0]} outputs: a multi-hinge (MH) or "
                        "multi-discriminator (MD) head, whose logit is not one number per "
                        "image; only W/O, PD, AC, 2C and D2DCE heads are supported")
    features = w1[1]
    cond, num_classes, classes, heads = _heads(sd, features, what)
    spec: dict[str, Any] = {"arch": arch, "kinds": kinds, "bn": bn, "features": features,
                            "d_cond_mtd": cond, "num_classes": num_classes,
                            "classes": classes, "ignored_heads": heads}
    spec.update(_layout(sd, arch, len(main), what))
    spec["channels"] = main[0][1]
    return spec


def _block_kinds(sd: dict[str, torch.Tensor], idx: list[int], what: str) -> list[tuple]:
    """Each ``blocks.<i>.0`` as ``("attn", C)``, ``("conv", C_in, C_out)`` or ``("res",
    C_in, C_out, has a 1x1 skip conv)``, told apart by the tensor names each kind holds."""
    kinds: list[tuple] = []
    for i in idx:
        p = f"blocks.{i}.0."
        if f"{p}sigma" in sd:
            kinds.append(("attn", _shape(sd, f"{p}conv1x1_theta.weight", what)[1]))
        elif f"{p}conv0.weight" in sd and f"{p}conv2d1.weight" not in sd:
            o, c = _shape(sd, f"{p}conv0.weight", what)[:2]
            kinds.append(("conv", c, o))
        elif f"{p}conv2d1.weight" in sd:
            o, c = _shape(sd, f"{p}conv2d1.weight", what)[:2]
            kinds.append(("res", c, o, f"{p}conv2d0.weight" in sd))
        else:
            raise UserError(f"{what}: block {i} is none of StudioGAN's D blocks (deep_conv "
                            "DiscBlock, resnet DiscOptBlock/DiscBlock, SelfAttention)")
    return kinds


def _heads(sd: dict[str, torch.Tensor], features: int, what: str
           ) -> tuple[str, int | None, int | None, list[str]]:
    """The conditioning read off the extra heads: ``(d_cond_mtd, num_classes of a projection
    D else None, classes any head has, the heads the adversarial logit does not use)``."""
    heads = sorted({k.split(".")[0] for k in sd if k.startswith(_IGNORED_HEADS)})
    if "linear2" in heads:
        cond = "2C/D2DCE" if "embedding" in heads else "AC"
        classes = _shape(sd, "linear2.weight", what)[0] if cond == "AC" else \
            _shape(sd, "embedding.weight", what)[0]
        return cond, None, classes, heads
    if "embedding" in heads:
        num_classes, dim = _shape(sd, "embedding.weight", what)
        if dim != features:
            raise UserError(f"{what}: projection embedding of width {dim} does not fit "
                            f"linear1's {features} features")
        heads.remove("embedding")  # a projection D's embedding is part of its logit
        return "PD", num_classes, num_classes, heads
    return "W/O", None, None, heads


def _layout(sd: dict[str, torch.Tensor], arch: str, n: int, what: str) -> dict[str, Any]:
    """``resolution``, ``down`` (resnet: which main blocks halve) and ``top`` (deep_conv: the
    last conv's (in, out) channels) of an ``arch`` D with ``n`` main blocks."""
    if arch == "resnet":
        if n not in _RES_BY_BLOCKS:
            raise UserError(f"{what}: a resnet D with {n} blocks; StudioGAN's have 4-8 "
                            "(32-512 px)")
        return {"resolution": _RES_BY_BLOCKS[n],
                "down": [True, True, False, False] if n == 4 else [True] * (n - 1) + [False],
                "top": None}
    # deep_conv sums its last features over positions: any size works; StudioGAN uses it
    # for 32 px (CIFAR10) only
    return {"resolution": 32, "top": _shape(sd, "conv1.weight", what)[1::-1]}


def _build(spec: dict, label: int | None) -> StudioGANDiscriminator:
    blocks: list[nn.Module] = []
    j = 0
    for k in spec["kinds"]:
        if k[0] == "attn":
            blocks.append(_SelfAttention(k[1]))
        elif k[0] == "conv":
            blocks.append(_ConvBlock(k[1], k[2], spec["bn"]))
        else:
            if j == 0:
                blocks.append(_OptBlock(k[1], k[2], spec["bn"]))
            else:
                blocks.append(_ResBlock(k[1], k[2], spec["down"][j], spec["bn"], k[3]))
            j += 1
    return StudioGANDiscriminator(blocks, spec["features"], top_conv=spec["top"],
                                  top_bn=spec["bn"], num_classes=spec["num_classes"],
                                  label=label)


def _check_label(spec: dict, label: int | None, what: str) -> int | None:
    n = spec["num_classes"]
    if n is None:
        if label is not None:
            raise UserError(f"{what}: this StudioGAN D is unconditional (d_cond_mtd "
                            f"{spec['d_cond_mtd']}: its adversarial logit takes no class); "
                            "drop the label")
        return None
    if label is None:
        raise UserError(f"{what}: this StudioGAN D is class-conditional (projection head, "
                        f"{n} classes): give the class to bind, label=K with 0 <= K < {n}")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n:
        raise UserError(f"{what}: label {label!r} is out of range: this D has {n} classes "
                        f"(0 <= K < {n})")
    return int(label)


def _plain(v: Any) -> Any:
    """A bookkeeping value as JSON (numpy/torch scalars -> float/int; others -> str)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)[:200]
    return f if math.isfinite(f) else str(f)


def read(path: Path, *, label: int | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the StudioGAN discriminator in ``path`` (module docstring).

    Returns ``(D, desc)``: D on the CPU, float32, eval mode, parameters not requiring grad;
    ``D(x)`` takes ``x`` ``(N, 3, H, W)`` in [-1, 1] and returns upstream's ``adv_output``
    ``(N,)``. ``label``: the class id bound for every sample, required by (and only by)
    projection (``PD``) D's. UserError (one line) for a file that is not a readable StudioGAN
    D, weights that do not fit, or a missing, extra or out-of-range label.
    """
    path = Path(path)
    what = str(path)
    obj = _load(path)
    sd, n_sn = _fold_spectral_norm(obj["state_dict"], what)
    spec = _infer(sd, what)
    label = _check_label(spec, label, what)
    D = _build(spec, label)
    used = {k: v for k, v in sd.items() if not k.startswith(tuple(
        f"{h}." for h in spec["ignored_heads"]))}
    try:
        D.load_state_dict(used, strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:300]
        raise UserError(f"{what}: the weights do not fit the inferred StudioGAN "
                        f"{spec['arch']} D ({first})") from None
    D = D.float().eval()
    D.requires_grad_(False)
    return D, _describe(spec, D, obj, n_sn=n_sn, label=label, name=path.name)


def _describe(spec: dict, D: nn.Module, obj: dict, *, n_sn: int, label: int | None,
              name: str) -> dict:
    """The family description (FAMILIES.md) of the rebuilt ``D`` from file ``name``."""
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    # upstream's attn_d_loc: attention after the k-th (1-based) main block
    attn = [sum(k[0] != "attn" for k in spec["kinds"][:i])
            for i, k in enumerate(spec["kinds"]) if k[0] == "attn"]
    m = re.search(r"model=D-(best|current)-weights-step=(\d+)", name)
    return {
        "family": "studiogan",
        "format": FORMAT,
        "resolution": spec["resolution"],
        "channels": spec["channels"],
        "conditional": spec["num_classes"] is not None,
        "num_classes": spec["num_classes"],
        "label": label,
        "pixel_range": [-1.0, 1.0],
        "output": {"shape": "(N,)", "reduction": "squeeze",
                   "why": "upstream D returns a dict; its adversarial logit adv_output "
                          "(squeeze(linear1(h)), + <embed(y), h> for PD) is one number per "
                          "image"},
        "coupling": [{"kind": "batchnorm", "layers": n_bn}] if n_bn else [],
        "randomness": "none",
        "upstream": {
            "repo": REPO,
            "class": ("src/models/deep_conv.py:Discriminator" if spec["arch"] == "deep_conv"
                      else "src/models/resnet.py|big_resnet.py:Discriminator"),
            "init_kwargs": {  # inferred from the tensors: the file records no config
                "img_size": spec["resolution"], "apply_d_sn": n_sn > 0,
                "apply_attn": bool(attn),
                "attn_d_loc": attn or ["N/A"],
                "d_cond_mtd": spec["d_cond_mtd"],
                "num_classes": spec["num_classes"],  # PD only: an AC/2C head's rows are
                # 2 x num_classes under ADC, which the tensors cannot tell (extra.head_classes)
                "d_conv_dim": (None if spec["arch"] == "deep_conv" else
                               spec["kinds"][0][2] // (2 if spec["resolution"] == 32 else 1)),
            },
        },
        "extra": {
            "architecture": spec["arch"],
            "inferred_from": "state_dict keys and shapes (the file holds no config)",
            "spectral_norm_layers": n_sn,
            "spectral_norm": "folded on load: W = W_orig / (u . W_mat v), stored u and v "
                             "(upstream eval forward, no power iteration)" if n_sn else None,
            "batchnorm_eps": BN_EPS if n_bn else None,
            "activation": "ReLU (StudioGAN's default; the file does not record d_act_fn)",
            "d_cond_mtd": spec["d_cond_mtd"],
            "ignored_heads": spec["ignored_heads"],
            "head_classes": spec["classes"],
            "which": m.group(1) if m else None,
            **{k: _plain(obj.get(k)) for k in ("step", "epoch", "best_step", "best_fid",
                                               "run_name", "seed")},
        },
    }
