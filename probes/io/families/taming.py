"""taming-transformers / latent-diffusion: the PatchGAN ``NLayerDiscriminator`` of their losses.

Upstream (``CompVis/taming-transformers``, ``taming/modules/discriminator/model.py``; reused
unchanged by ``CompVis/latent-diffusion``'s autoencoder losses): the D lives in the loss module
(``VQLPIPSWithDiscriminator`` / ``LPIPSWithDiscriminator``), so a Lightning checkpoint's
``state_dict`` holds it under ``loss.discriminator.main.*``. Layer facts, rebuilt here in plain
torch (``main`` indices as upstream, so the file's names load as they are):

- ``main.0``: conv ``input_nc -> ndf``, 4x4, stride 2, pad 1, bias; ``main.1`` LeakyReLU(0.2);
- ``n_layers - 1`` blocks: conv 4x4 stride 2 pad 1 (``ndf * min(2^(n-1), 8) -> ndf *
  min(2^n, 8)``), a norm, LeakyReLU(0.2); then one more such block with **stride 1**;
- a last conv ``-> 1``, 4x4, stride 1, pad 1, bias: the patch map ``(N, 1, h, w)``.
- norm: ``nn.BatchNorm2d`` (default; eps 1e-5, the constructor default, which the file does not
  store) and no bias on the convs before it, or with ``use_actnorm`` taming's ``ActNorm``
  (``scale * (x + loc)``, ``loc``/``scale`` (1, C, 1, 1), bias on the convs).

``n_layers``, ``ndf``, ``input_nc`` and the norm are inferred from the tensors; the net is then
loaded strictly, so weights that do not fit are refused. ActNorm initialises ``loc``/``scale``
from data on its first training forward upstream; here the *stored* values (and the stored
``initialized`` flag, reported in ``extra``) are used as they are and never re-initialised.

The D is fully convolutional: any side from ``extra["min_side"]`` up gives a map.
``resolution`` is declared 256, the side the taming / latent-diffusion autoencoders train at.
Images are in [-1, 1] (their data pipelines scale to it). Their losses (hinge / vanilla) average
the map over batch and positions, so the declared reduction is ``mean`` over positions.
BatchNorm couples the samples of a batch in train mode: ``coupling`` lists it and the probe
modes remove it (``frozen``); ActNorm has fixed per-channel affine maths (no coupling).

Containers: a Lightning ``*.ckpt`` (torch zip format) read by
:func:`probes.io.safe_pickle.load_torch_zip` with inert stubs for what Lightning checkpoints
legitimately pickle (:data:`STUBS`: pytorch-lightning 1.0-1.2 keyed ``callbacks`` by the
callback *class*, e.g. ``ModelCheckpoint``; ``hyper_parameters`` may be an omegaconf
``DictConfig`` or an ``argparse.Namespace``); none of those modules is imported, anything else a
pickle names is refused. Any one prefix ending in ``discriminator.`` is accepted (e.g. a
latent-diffusion ``first_stage_model.loss.discriminator.``). A plain ``torch.save`` of the D's
``state_dict`` (keys ``main.*``, optionally under ``state_dict`` or with a ``module.`` prefix)
is read too. Legacy (pre-zip, torch < 1.6) files are refused with a hint to re-save.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asgan_base.errors import UserError
from probes.io.families._common import load_strict
from probes.io.safe_pickle import is_torch_zip, load_torch_zip, read_any, zip_pickle_bytes

NAMES: tuple[str, ...] = ("taming-patchgan",)
FORMAT = ("taming-transformers / latent-diffusion Lightning *.ckpt (NLayerDiscriminator under "
          "loss.discriminator.main.*) or a torch.save state_dict of that D")
CHECKED = ("only tensors, plain containers and inert Lightning/omegaconf records unpickled; "
           "n_layers, ndf, channels, BatchNorm/ActNorm inferred, every tensor loaded strictly")
COUPLING = ("BatchNorm: removed by the probe modes (frozen clean-group statistics); ActNorm: "
            "none (stored loc/scale, never re-initialised)")
STUBS: tuple[str, ...] = (
    "pytorch_lightning.", "lightning.", "lightning_fabric.",  # callbacks, AttributeDict, ...
    "omegaconf.",  # hyper_parameters as a DictConfig
    "typing.Any", "builtins.dict", "__builtin__.dict",  # omegaconf's ContainerMetadata fields
    "collections.defaultdict", "argparse.Namespace",  # old Lightning hparams / loop state
)

RESOLUTION = 256  # what the taming / latent-diffusion autoencoders train at (any side works)
BN_EPS = 1e-5  # nn.BatchNorm2d's default, which NLayerDiscriminator uses; not stored in files
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of torch's pre-1.6 format
_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)main\.(?P<i>\d+)\.(?P<param>[A-Za-z_]+)$")
_SNIFF_LOAD_LIMIT = 64 << 20  # bytes: a bare main.* state_dict is loaded to sniff it below this


# ----------------------------------------------------------------------------- the net
class ActNorm(nn.Module):
    """taming's ActNorm in inference: ``scale * (x + loc)``; ``loc``, ``scale`` (1, C, 1, 1),
    ``initialized`` (uint8 scalar) as stored. x (N, C, H, W) -> same shape. Never initialises
    itself from data (upstream does so on the first forward in train mode only)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x + self.loc)


class PatchGAN(nn.Module):
    """x (N, input_nc, H, W) in [-1, 1] -> patch logits (N, 1, h, w) (module docstring)."""

    def __init__(self, input_nc: int, ndf: int, n_layers: int, norm: str) -> None:
        super().__init__()
        bn = norm == "batchnorm"
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):  # the last of these keeps the side (stride 1)
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1,
                                 bias=not bn),
                       nn.BatchNorm2d(ndf * mult, eps=BN_EPS) if bn else ActNorm(ndf * mult),
                       nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def map_side(side: int, n_layers: int) -> int:
    """The patch map's side for an input side: stride-2 convs floor-halve, the two stride-1
    4x4 pad-1 convs each take one off."""
    for _ in range(n_layers):
        side = (side + 2 - 4) // 2 + 1
    return side - 2


# ----------------------------------------------------------------------------- reading
def _load(path: Path) -> Any:
    what = str(path)
    if not path.is_file():
        raise UserError(f"{what}: no such file")
    if is_torch_zip(path):
        return load_torch_zip(path, stubs=STUBS, what=what)
    obj = read_any(path, stubs=STUBS, what=what)
    if isinstance(obj, int) and obj == _LEGACY_MAGIC:
        raise UserError(f"{what}: torch's legacy (pre-1.6) file format; re-save it with a "
                        "current torch (torch.save) and load that")
    return obj


def _state_dict(obj: Any, what: str) -> tuple[dict[str, torch.Tensor], str, str]:
    """``(D's tensors by name under main., the prefix they had, container)``."""
    container = "state-dict"
    sd = obj
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        sd = obj["state_dict"]
        container = "lightning-ckpt" if "pytorch-lightning_version" in obj or any(
            k in obj for k in ("global_step", "callbacks", "optimizer_states")) else container
    if not isinstance(sd, dict):
        raise UserError(f"{what}: holds a {type(sd).__name__}, not a state_dict or a Lightning "
                        "checkpoint; not a taming / latent-diffusion PatchGAN file")
    found: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = _KEY.match(k) if isinstance(k, str) else None
        if m and torch.is_tensor(v):
            p = m["prefix"]
            if p == "" or p.endswith("discriminator.") or p == "module.":
                found.setdefault(p, {})[k[len(p):]] = v
    if not found:
        raise UserError(f"{what}: no PatchGAN tensors (keys like loss.discriminator.main.0.weight"
                        " or main.0.weight); not a taming / latent-diffusion discriminator file")
    if len(found) > 1:
        raise UserError(f"{what}: several discriminators ({', '.join(sorted(found))}); save the "
                        "one to probe as its own state_dict")
    prefix, tensors = next(iter(found.items()))
    return tensors, prefix, container


def _infer(sd: dict[str, torch.Tensor], what: str) -> dict[str, Any]:
    """``input_nc``, ``ndf``, ``n_layers``, ``norm`` from the tensors (UserError otherwise)."""
    w0 = sd.get("main.0.weight")
    if w0 is None or w0.dim() != 4 or tuple(w0.shape[2:]) != (4, 4) or "main.0.bias" not in sd:
        raise UserError(f"{what}: main.0 is not a 4x4 conv with bias; not a taming PatchGAN")
    idx = {int(k.split(".")[1]) for k in sd}
    bn = sorted(i for i in idx if f"main.{i}.running_mean" in sd)
    an = sorted(i for i in idx if f"main.{i}.loc" in sd)
    if bn and an:
        raise UserError(f"{what}: both BatchNorm and ActNorm layers; not a taming PatchGAN")
    norms = bn or an
    n_layers = len(norms)
    if n_layers < 1 or norms != [3 * (n + 1) for n in range(n_layers)]:
        raise UserError(f"{what}: norm layers at main.{norms[:6]}, not at main.3, 6, ...; "
                        "not a taming PatchGAN")
    return {"input_nc": int(w0.shape[1]), "ndf": int(w0.shape[0]), "n_layers": n_layers,
            "norm": "batchnorm" if bn else "actnorm"}


def _build(sd: dict[str, torch.Tensor], spec: dict[str, Any], what: str) -> PatchGAN:
    net = PatchGAN(spec["input_nc"], spec["ndf"], spec["n_layers"], spec["norm"])
    load_strict(net, sd, what, f"a PatchGAN with {spec}")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def sniff(path: Path) -> str | None:
    """``"taming-patchgan"`` for a Lightning ckpt holding ``*discriminator.main.*`` tensors or a
    bare PatchGAN state_dict (checked by loading it, tensors only, when small); else None."""
    try:
        path = Path(path)
        data = zip_pickle_bytes(path, _SNIFF_LOAD_LIMIT) if path.is_file() else None
        if data is None:
            return None
        if b"discriminator.main.0.weight" in data and b"state_dict" in data:
            return NAMES[0]
        if b"main.0.bias" not in data or path.stat().st_size > _SNIFF_LOAD_LIMIT:
            return None
        sd, _, _ = _state_dict(load_torch_zip(path, stubs=STUBS), str(path))
        _build(sd, _infer(sd, str(path)), str(path))
        return NAMES[0]
    except Exception:  # sniff never raises: anything unreadable is not ours
        return None


def read(path: Path, *, label: int | None = None) -> tuple[nn.Module, dict]:
    """The file's PatchGAN rebuilt in our code: ``(D, desc)`` (FAMILIES.md). ``D(x)``: x (N, C,
    H, W) in [-1, 1] -> (N, 1, h, w) logits as upstream (eval mode: BatchNorm running stats).
    UserError (one line) for a label (the D is unconditional), malformed or foreign files."""
    path = Path(path)
    what = str(path)
    if label is not None:
        raise UserError(f"{what}: a taming PatchGAN is unconditional; drop the label")
    obj = _load(path)
    sd, prefix, container = _state_dict(obj, what)
    stored_dtype = str(next(iter(sd.values())).dtype).replace("torch.", "")
    spec = _infer(sd, what)
    net = _build(sd, spec, what)
    meta = obj if isinstance(obj, dict) and container == "lightning-ckpt" else {}
    version = meta.get("pytorch-lightning_version")
    step = meta.get("global_step")
    n = spec["n_layers"]
    extra: dict[str, Any] = {
        "architecture": f"NLayerDiscriminator(n_layers={n}, ndf={spec['ndf']}, "
                        f"{spec['norm']})",
        "container": container, "prefix": prefix, "norm": spec["norm"],
        "lightning_version": version if isinstance(version, str) else None,
        "global_step": int(step) if isinstance(step, int) else None,
        "stored_dtype": stored_dtype,
        "patch_map_side_at_resolution": map_side(RESOLUTION, n),
        "min_side": next(s for s in range(1, 4096) if map_side(s, n) >= 1),
    }
    if spec["norm"] == "batchnorm":
        extra["batchnorm_eps"] = BN_EPS
    else:
        extra["actnorm_initialized"] = [bool(m.initialized.item()) for m in net.modules()
                                        if isinstance(m, ActNorm)]
    if spec["input_nc"] not in (1, 3):
        extra["note"] = ("input channels other than 1 or 3: a disc_conditional D takes the "
                         "image concatenated with its conditioning channels")
    desc = {
        "family": NAMES[0], "format": FORMAT, "resolution": RESOLUTION,
        "channels": spec["input_nc"], "conditional": False, "num_classes": None, "label": None,
        "pixel_range": [-1.0, 1.0],
        "output": {"shape": "(N, 1, h, w)", "reduction": "mean",
                   "why": "taming's hinge/vanilla D losses average the patch map over positions"},
        "coupling": [{"kind": "batchnorm", "layers": n}] if spec["norm"] == "batchnorm" else [],
        "randomness": "none",
        "upstream": {"repo": "CompVis/taming-transformers",
                     "class": "taming.modules.discriminator.model.NLayerDiscriminator",
                     "init_kwargs": {"input_nc": spec["input_nc"], "ndf": spec["ndf"],
                                     "n_layers": n,
                                     "use_actnorm": spec["norm"] == "actnorm"}},
        "extra": extra,
    }
    return net, desc
