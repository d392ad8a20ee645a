"""Generators and discriminators, built from a name plus JSON-able keyword arguments.

Three families (SPEC section 3): ``dcgan`` (Radford et al. 2016; layer for layer the
pytorch/examples DCGAN, generalised to 28/32/64 px), ``resnet`` (Gulrajani et al. 2017 and
Miyato et al. 2018, laid out like the SNGAN CIFAR and 64 px networks) and ``mlp`` for the 2-D
mixtures of PacGAN/VEEGAN. ``G(z)`` maps ``(N, z_dim)`` to images ``(N, C, H, W)`` in [-1, 1]
(tanh) or, for ``mlp``, to raw 2-D points. ``D(x)`` returns **raw logits of shape (N,)**: no
sigmoid anywhere, losses use softplus. A net is described by a spec
``{"arch": ..., "role": "G" | "D", "kwargs": {...}}``, which is what checkpoints store, and
``build_net(spec)`` rebuilds exactly the same parameter and buffer names and shapes.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from asgan_base.errors import UserError

RESOLUTIONS = {"dcgan": (28, 32, 64), "resnet": (32, 64)}  # square images only


def default_width(arch: str, resolution: int | None = None) -> int:
    """Arch default width: dcgan 64 (ngf = ndf), resnet 128 at 32 px / 64 at 64 px, mlp 256."""
    if arch == "resnet":
        return 64 if resolution == 64 else 128  # 64 px widths run 8w..w: 512 channels at 4x4
    return {"dcgan": 64, "mlp": 256}[arch]


class ToLogits(nn.Module):
    """(N, 1, 1, 1) or (N, 1) -> (N,); fails loudly on anything but one logit per sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0])  # (N,)


def _check_resolution(arch: str, resolution: int) -> None:
    if resolution not in RESOLUTIONS[arch]:
        raise UserError(f"{arch} supports resolutions {list(RESOLUTIONS[arch])}, not "
                        f"{resolution!r}: resize the data or pick another arch")


def _with_spectral_norm(net: nn.Module) -> nn.Module:
    """Wrap every conv/linear weight of ``net`` in place (Miyato et al.). Call it after init:
    registration runs power iterations on the current weight (state-dict keys become
    ``parametrizations.weight.{original,0._u,0._v}``)."""
    for m in list(net.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _spectral_norm(m)
    return net


# ---------------------------------------------------------------- dcgan (Radford et al.)
def _dcgan_init(net: nn.Module) -> nn.Module:
    # Radford et al.: weights from N(0, 0.02), BN gamma from N(1, 0.02), biases 0.
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return net


def _dcgan_levels(resolution: int) -> tuple[int, int]:
    """(base, n): the 4x4 (7x7 at 28 px) base side and the number of stride-2 steps from it."""
    base = 7 if resolution == 28 else 4
    return base, int(math.log2(resolution // base))


def dcgan_G(*, z_dim: int = 100, channels: int = 3, resolution: int = 32,
            width: int = 64) -> nn.Module:
    """DCGAN generator: z (N, z_dim) -> images (N, channels, resolution, resolution) in [-1, 1].

    A ConvTranspose from 1x1 to base x base (4, or 7 at 28 px) with width * 2**(n-1) channels,
    n - 1 stride-2 ConvTranspose + BN + ReLU blocks halving them, a last stride-2
    ConvTranspose to ``channels`` and tanh. Convs have no bias (BN or tanh follows, as in
    pytorch/examples). 32 px, width 64: the classic DCGAN-32 G (z -> 256 -> 128 -> 64 -> C).
    """
    _check_resolution("dcgan", resolution)
    base, n = _dcgan_levels(resolution)
    ch = width * 2 ** (n - 1)
    layers: list[nn.Module] = [nn.Unflatten(1, (z_dim, 1, 1)),  # (N, z_dim, 1, 1)
                               nn.ConvTranspose2d(z_dim, ch, base, 1, 0, bias=False),  # (N,ch,b,b)
                               nn.BatchNorm2d(ch), nn.ReLU()]
    for _ in range(n - 1):  # each block: side x2, channels / 2
        layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(ch // 2), nn.ReLU()]
        ch //= 2
    layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]  # (N, C, H, W)
    return _dcgan_init(nn.Sequential(*layers))


def dcgan_D(*, channels: int = 3, resolution: int = 32, width: int = 64,
            spectral_norm: bool = False) -> nn.Module:
    """DCGAN discriminator: images (N, channels, resolution, resolution) -> raw logits (N,).

    n stride-2 4x4 convs doubling the channels from ``width``, LeakyReLU(0.2), BatchNorm in
    all but the first, then a base x base conv to one logit. 32 px, width 64, RGB: the classic
    DCGAN-32 D (3 -> 64 -> 128 -> 256 -> 1, no biases, 663,296 parameters).
    ``spectral_norm=True`` wraps every conv with spectral norm and, as SNGAN does, **drops the
    BatchNorm layers**; the convs then carry biases since no BN shift stands in for them.
    """
    _check_resolution("dcgan", resolution)
    base, n = _dcgan_levels(resolution)
    use_bn = not spectral_norm
    layers: list[nn.Module] = []
    ch_in, ch = channels, width
    for i in range(n):  # each conv: side / 2
        layers.append(nn.Conv2d(ch_in, ch, 4, 2, 1, bias=not use_bn))
        if use_bn and i > 0:  # Radford et al.: no BN on D's input layer
            layers.append(nn.BatchNorm2d(ch))
        layers.append(nn.LeakyReLU(0.2))
        ch_in, ch = ch, ch * 2
    layers += [nn.Conv2d(ch_in, 1, base, 1, 0, bias=not use_bn), ToLogits()]  # (N,1,1,1)->(N,)
    net = _dcgan_init(nn.Sequential(*layers))
    return _with_spectral_norm(net) if spectral_norm else net


# ------------------------------------------- resnet (Gulrajani et al. / Miyato et al.)
def _xavier(conv: nn.Module, gain: float = 1.0) -> nn.Module:
    # SNGAN: Glorot-uniform, gain sqrt(2) on residual-path 3x3 convs, 1 elsewhere; bias 0.
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


class UpBlock(nn.Module):
    """G block (N, c_in, s, s) -> (N, c_out, 2s, 2s): [BN, ReLU, upsample, conv3x3, BN, ReLU,
    conv3x3] + [upsample, conv1x1]. The SNGAN and WGAN-GP code learn the shortcut whenever a
    block resamples, not only when channels change, so every up-block has one."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = _xavier(nn.Conv2d(c_in, c_out, 3, 1, 1), math.sqrt(2))
        self.conv2 = _xavier(nn.Conv2d(c_out, c_out, 3, 1, 1), math.sqrt(2))
        self.shortcut = _xavier(nn.Conv2d(c_in, c_out, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")  # (N, c_in, 2s, 2s)
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))  # (N, c_out, 2s, 2s)
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DownBlock(nn.Module):
    """D block (N, c_in, s, s) -> (N, c_out, s/2 or s, ...), no BatchNorm (SNGAN). ``first``:
    SNGAN's optimized block, no ReLU before conv1 (it would clip the raw image) and the
    shortcut pools before its 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, *, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = _xavier(nn.Conv2d(c_in, c_out, 3, 1, 1), math.sqrt(2))
        self.conv2 = _xavier(nn.Conv2d(c_out, c_out, 3, 1, 1), math.sqrt(2))
        learn_sc = down or c_in != c_out
        self.shortcut = _xavier(nn.Conv2d(c_in, c_out, 1, 1, 0)) if learn_sc else nn.Identity()

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self._pool(self.conv2(F.relu(self.conv1(h))))  # (N, c_out, s', s')
        sc = self.shortcut(self._pool(x)) if self.first else self._pool(self.shortcut(x))
        return h + sc


def _resnet_widths(resolution: int, width: int) -> list[int]:
    """Channels from the 4x4 end: 32 px keeps ``width`` throughout (SNGAN CIFAR); 64 px uses
    8w, 8w, 4w, 2w, w (WGAN-GP's 64 px ResNet)."""
    return [width] * 4 if resolution == 32 else [8 * width, 8 * width, 4 * width, 2 * width, width]


class ResNetG(nn.Module):
    """z (N, z_dim) -> Linear to (N, c0, 4, 4) -> up-blocks -> BN, ReLU, conv3x3, tanh."""

    def __init__(self, z_dim: int, channels: int, resolution: int, width: int):
        super().__init__()
        chs = _resnet_widths(resolution, width)
        self.c0 = chs[0]
        self.linear = _xavier(nn.Linear(z_dim, 4 * 4 * chs[0]))
        self.blocks = nn.Sequential(*[UpBlock(a, b) for a, b in zip(chs[:-1], chs[1:])])
        self.bn = nn.BatchNorm2d(chs[-1])
        self.conv_out = _xavier(nn.Conv2d(chs[-1], channels, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self.c0, 4, 4)  # (N, c0, 4, 4)
        h = self.blocks(h)  # (N, w, H, W)
        return torch.tanh(self.conv_out(F.relu(self.bn(h))))  # (N, C, H, W) in [-1, 1]


class ResNetD(nn.Module):
    """x (N, C, H, W) -> optimized block, down-blocks -> ReLU, sum over H, W, Linear -> (N,)."""

    def __init__(self, channels: int, resolution: int, width: int):
        super().__init__()
        if resolution == 32:  # SNGAN CIFAR: 32 -> 16 -> 8, then two blocks at 8x8
            chs, downs = [width] * 4, [True, True, False, False]
        else:  # 64 -> 32 -> 16 -> 8 -> 4, channels w -> 8w
            chs, downs = [width, 2 * width, 4 * width, 8 * width], [True] * 4
        ins = [channels] + chs[:-1]
        self.blocks = nn.Sequential(*[DownBlock(a, b, down=d, first=i == 0)
                                      for i, (a, b, d) in enumerate(zip(ins, chs, downs))])
        self.linear = _xavier(nn.Linear(chs[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # (N, c): global *sum* pooling, as SNGAN
        return self.linear(h).squeeze(1)  # (N,)


def resnet_G(*, z_dim: int = 128, channels: int = 3, resolution: int = 32,
             width: int | None = None) -> nn.Module:
    """ResNet generator: z (N, z_dim) -> images (N, channels, res, res) in [-1, 1]. 3 up-blocks
    at 32 px (all ``width`` channels), 4 at 64 px (8w -> w; width None = 64 there)."""
    _check_resolution("resnet", resolution)
    return ResNetG(z_dim, channels, resolution, width or default_width("resnet", resolution))


def resnet_D(*, channels: int = 3, resolution: int = 32, width: int | None = None,
             spectral_norm: bool = False) -> nn.Module:
    """ResNet discriminator: images (N, channels, res, res) -> raw logits (N,). No BatchNorm;
    4 blocks; ``spectral_norm=True`` wraps every conv and the final Linear, as SNGAN does."""
    _check_resolution("resnet", resolution)
    net = ResNetD(channels, resolution, width or default_width("resnet", resolution))
    return _with_spectral_norm(net) if spectral_norm else net


# ------------------------------------------------------------- mlp (2-D mixtures)
# Width 256 x 3 hidden layers: in 3k non-saturating steps (Adam 1e-3, batch 256, one seed)
# it covered grid25's 25 modes (73% of samples within 3 std); width 128 covered 20 (33%).
def _mlp(d_in: int, d_out: int, width: int, depth: int, act: Callable[[], nn.Module]):
    layers: list[nn.Module] = []
    for i in range(depth):  # depth hidden layers of `width` units
        layers += [nn.Linear(d_in if i == 0 else width, width), act()]
    layers.append(nn.Linear(width if depth else d_in, d_out))
    return nn.Sequential(*layers)  # PyTorch's default (Kaiming-uniform) init: fine for MLPs


def mlp_G(*, z_dim: int = 2, dim: int = 2, width: int = 256, depth: int = 3) -> nn.Module:
    """MLP generator: z (N, z_dim) -> points (N, dim), raw (no tanh: grid25 spans [-4, 4])."""
    return _mlp(z_dim, dim, width, depth, lambda: nn.ReLU())


def mlp_D(*, dim: int = 2, width: int = 256, depth: int = 3,
          spectral_norm: bool = False) -> nn.Module:
    """MLP discriminator: points (N, dim) -> raw logits (N,); LeakyReLU(0.2), no BatchNorm."""
    net = _mlp(dim, 1, width, depth, lambda: nn.LeakyReLU(0.2))
    net = _with_spectral_norm(net) if spectral_norm else net
    return nn.Sequential(net, ToLogits())  # (N, 1) -> (N,)


# ----------------------------------------------------------------------- registry
ARCHS: dict[str, dict[str, Callable[..., nn.Module]]] = {
    "dcgan": {"G": dcgan_G, "D": dcgan_D},
    "resnet": {"G": resnet_G, "D": resnet_D},
    "mlp": {"G": mlp_G, "D": mlp_D},
}


def build_net(spec: dict) -> nn.Module:
    """Build the net a spec describes; the same spec always gives the same names and shapes.

    Args:
        spec: ``{"arch": name in ARCHS, "role": "G" or "D", "kwargs": {plain JSON values}}``,
            as made by :func:`net_specs` and stored in checkpoints.

    Returns:
        A freshly initialised ``nn.Module`` (in train mode; deterministic given the seed).

    Examples:
        >>> g_spec, d_spec = net_specs("dcgan", shape=(1, 28, 28), z_dim=64, width=16)
        >>> build_net(d_spec)(torch.zeros(5, 1, 28, 28)).shape
        torch.Size([5])
    """
    if not (isinstance(spec, dict) and set(spec) == {"arch", "role", "kwargs"}
            and isinstance(spec["kwargs"], dict)):
        raise UserError(f"a net spec is a dict with keys arch, role, kwargs (a dict); got "
                        f"{spec!r:.100}")
    arch, role, kwargs = spec["arch"], spec["role"], spec["kwargs"]
    if arch not in ARCHS:
        raise UserError(f"unknown arch {arch!r}: choose one of {sorted(ARCHS)}")
    if role not in ARCHS[arch]:
        raise UserError(f"unknown role {role!r}: choose one of {sorted(ARCHS[arch])}")
    factory = ARCHS[arch][role]
    valid = sorted(inspect.signature(factory).parameters)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise UserError(f"{arch} {role} takes no argument(s) {unknown}: valid ones are {valid}")
    # Checkpoints store the spec as JSON: tensors or numpy scalars would not survive.
    bad = {k: v for k, v in kwargs.items() if not isinstance(v, (type(None), bool, int, str))
           or (type(v) is int and v < (0 if k == "depth" else 1))}
    if bad:
        raise UserError(f"{arch} {role} kwargs {bad!r:.100} must be plain values, sizes >= 1")
    return factory(**kwargs)


def config_specs(cfg, shape: tuple[int, ...]) -> tuple[dict, dict]:
    """The (G spec, D spec) a training config builds on data of per-sample ``shape``: every
    net option of the config in one call, so the trainer, its preflight and a study sizing a
    run's weights cannot pass different subsets of them."""
    return net_specs(cfg.arch, shape=tuple(shape), z_dim=cfg.z_dim, width=cfg.width,
                     d_spectral_norm=cfg.d_spectral_norm, d_width=cfg.d_width)


def net_specs(arch: str, *, shape: tuple[int, ...], z_dim: int, width: int | None = None,
              d_spectral_norm: bool = False, d_width: int | None = None) -> tuple[dict, dict]:
    """The (G spec, D spec) pair for data of per-sample ``shape``.

    Args:
        arch: a key of ``ARCHS``.
        shape: one sample's shape, ``(C, H, W)`` with H == W for image archs, ``(dim,)`` for mlp.
        z_dim: latent size; G takes z of shape (N, z_dim).
        width: base channels/units; None is :func:`default_width` (dcgan 64, resnet 128 at
            32 px and 64 at 64 px, mlp 256). The resolved value is recorded in the specs.
        d_spectral_norm: wrap D's conv/linear weights in spectral norm (dcgan drops D's BN).
        d_width: D's base width when it differs from G's (a stronger or weaker D); None is
            ``width``.

    Returns:
        Two JSON-able dicts for :func:`build_net`.
    """
    if arch not in ARCHS:
        raise UserError(f"unknown arch {arch!r}: choose one of {sorted(ARCHS)}")
    shape = tuple(int(s) for s in shape)  # numpy ints are not JSON-able: specs must be
    if arch == "mlp":
        if len(shape) != 1:
            raise UserError(f"mlp expects points of shape (dim,), got {shape}: use an image arch")
        w = int(width or default_width(arch))
        g = {"z_dim": int(z_dim), "dim": shape[0], "width": w}
        d = {"dim": shape[0], "width": int(d_width or w)}
    else:
        if len(shape) != 3 or shape[1] != shape[2]:
            raise UserError(f"{arch} expects square images (C, H, H), got {shape}: "
                            "crop/resize the data or use arch mlp for points")
        c, res = shape[0], shape[1]
        _check_resolution(arch, res)
        w = int(width or default_width(arch, res))
        g = {"z_dim": int(z_dim), "channels": c, "resolution": res, "width": w}
        d = {"channels": c, "resolution": res, "width": int(d_width or w)}
    d["spectral_norm"] = bool(d_spectral_norm)
    # Record every argument, defaults included: old checkpoints must not follow new defaults.
    specs = []
    for role, kw in (("G", g), ("D", d)):
        params = inspect.signature(ARCHS[arch][role]).parameters
        specs.append({"arch": arch, "role": role,
                      "kwargs": {**{k: p.default for k, p in params.items()}, **kw}})
    return specs[0], specs[1]
