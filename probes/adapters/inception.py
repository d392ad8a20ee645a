"""Inception FID features, only from a weights file the user supplies (nothing downloads).

Two public formats are accepted, given by ``--inception-weights PATH`` or the environment
variable ``ASGAN_PROBE_INCEPTION``:

1. **pytorch-fid's state dict** ``pt_inception-2015-12-05-6726825d.pth`` (the TF FID
   Inception ported to PyTorch). Read with ``torch.load(weights_only=True)``, which only
   rebuilds tensors and containers (no code runs), into :func:`build_fid_inception`: torchvision's
   ``Inception3`` (1008 classes, no aux head) with pytorch-fid's patched blocks: Mixed_5b-d and
   6b-e and 7b average-pool without counting the zero padding (TensorFlow's behaviour), Mixed_7c
   max-pools its pool branch. Features: bilinear resize to 299 x 299 (``align_corners=False``)
   of images in [0, 1], scaled to [-1, 1], pool3 (2048-d) as pytorch-fid's ``InceptionV3``
   with ``dims=2048``. The parameter names and shapes are those of pytorch-fid's model (a test
   checks them against torchvision's ``inception_v3(num_classes=1008, aux_logits=False)``,
   which pytorch-fid patches), but we could not run the real weights here (no download), so
   agreement with pytorch-fid's numbers is by construction, not measured.
2. **TorchScript FID Inception** (NVlabs' ``inception-2015-12-05.pt``, used by stylegan2-ada
   and clean-fid): ``torch.jit.load``, called as ``model(x, return_features=True)`` on images
   in [0, 255], here already resized to 299 x 299 (bilinear) by us; the model normalises
   internally.

Trust model: a state dict loaded with ``weights_only=True`` cannot run code. A TorchScript
archive is not unpickled as Python objects either (its constants go through a restricted
unpickler), but it *is a program*: its TorchScript graph runs when features are computed and
may call any operator registered with torch. Load TorchScript files only from a source you
trust (compare the SHA-256 we record in the output with the publisher's).

Grey images are repeated to three channels. Generated images are used as floats, not
quantised to 8 bits as image-file pipelines do: a small, systematic protocol difference.

Examples:
    >>> path = weights_path("~/weights/pt_inception-2015-12-05-6726825d.pth")
    >>> model = load_inception(path)
    >>> f = inception_features(model, x)       # x (N, 1|3, H, W) in [-1, 1] -> (N, 2048)
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainers.errors import UserError

ENV_VAR = "ASGAN_PROBE_INCEPTION"
FORMATS = ("pytorch-fid-state-dict", "torchscript")
SIZE = 299
EXPECTED = ("pytorch-fid's pt_inception-2015-12-05-6726825d.pth (a state dict) or the "
            "TorchScript inception-2015-12-05.pt (NVlabs / clean-fid)")


# ----------------------------------------------------------------------------- FID Inception


def _fid_blocks():
    """pytorch-fid's patched Inception blocks, as subclasses of torchvision's (lazy import)."""
    from torchvision.models import inception as tv

    def avg_no_pad(x):  # TensorFlow's average pool ignores the padded zeros
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    def max_pool(x):
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)

    class FIDInceptionA(tv.InceptionA):
        def _forward(self, x):
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return [self.branch1x1(x), b5, b3, self.branch_pool(avg_no_pad(x))]

    class FIDInceptionC(tv.InceptionC):
        def _forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                         self.branch7x7dbl_4, self.branch7x7dbl_5):
                d = conv(d)
            return [self.branch1x1(x), b7, d, self.branch_pool(avg_no_pad(x))]

    class FIDInceptionE(tv.InceptionE):
        # Mixed_7b: average pool without padding; Mixed_7c: max pool (as the TF graph has it)
        def __init__(self, in_channels, pool):
            super().__init__(in_channels)
            self.pool_fn = pool

        def _forward(self, x):
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            return [self.branch1x1(x), b3, d, self.branch_pool(self.pool_fn(x))]

    def inception_e(in_channels, conv_block=None):
        return FIDInceptionE(in_channels, avg_no_pad if in_channels == 1280 else max_pool)

    return tv, FIDInceptionA, FIDInceptionC, inception_e


def build_fid_inception() -> nn.Module:
    """The FID Inception v3 (pytorch-fid's structure), randomly initialised, in eval mode.

    Its ``state_dict`` keys and shapes are those of pytorch-fid's weights file.
    """
    tv, block_a, block_c, block_e = _fid_blocks()
    blocks = [tv.BasicConv2d, block_a, tv.InceptionB, block_c, tv.InceptionD, block_e,
              tv.InceptionAux]
    return tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False,
                         inception_blocks=blocks).eval()


def fid_pool3(net: nn.Module, x01: torch.Tensor) -> torch.Tensor:
    """pool3 features ``(N, 2048)`` of images ``x01`` (N, 3, H, W) in [0, 1], as pytorch-fid:
    bilinear resize to 299, scale to [-1, 1], the Inception trunk, global average pool."""
    x = F.interpolate(x01, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                 "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                 "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b",
                 "Mixed_7c", "avgpool"):
        x = getattr(net, name)(x)
    return torch.flatten(x, 1)


# ----------------------------------------------------------------------------- loading


@dataclass
class InceptionModel:
    """A loaded feature network: ``format`` in :data:`FORMATS`, the module, and provenance."""

    format: str
    net: Any
    info: dict = field(default_factory=dict)


def weights_path(arg: str | os.PathLike | None) -> Path | None:
    """The weights file from ``arg`` (``--inception-weights``) or ``$ASGAN_PROBE_INCEPTION``;
    None when neither is set. UserError if the named file does not exist."""
    raw = arg if arg else os.environ.get(ENV_VAR)
    if not raw:
        return None
    path = Path(os.path.expanduser(os.fspath(raw)))
    source = "--inception-weights" if arg else f"${ENV_VAR}"
    if not path.is_file():
        raise UserError(f"Inception weights {path} (from {source}) not found; give a local "
                        f"copy of {EXPECTED}; nothing is downloaded")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def detect_format(path: Path) -> str:
    """``torchscript`` for a TorchScript archive (a zip with a ``code/`` folder), else
    ``pytorch-fid-state-dict`` (a torch.save file, zip or legacy)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any("/code/" in n or n.startswith("code/") for n in z.namelist()):
                return "torchscript"
    return "pytorch-fid-state-dict"


def _check_state_dict(state: Any, net: nn.Module, path: Path) -> None:
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{path} holds no plain state dict of tensors; expected {EXPECTED}")
    fc = state.get("fc.weight")
    if (fc is not None and fc.shape[0] == 1000) or any(k.startswith("AuxLogits") for k in state):
        raise UserError(f"{path} looks like torchvision's ImageNet Inception (1000 classes, "
                        "aux head), not the FID Inception: its FID would not be comparable; "
                        f"give {EXPECTED}")
    own = net.state_dict()
    # BatchNorm's step counter is unused in eval mode; files saved by old torch lack it
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise UserError(f"{path} does not fit the FID Inception (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}); expected "
                        f"{EXPECTED}")


def load_inception(path: str | os.PathLike, *, device: str | torch.device = "cpu"
                   ) -> InceptionModel:
    """Load an FID Inception from a local file (see the module docstring for formats and trust).

    Args:
        path: the weights file.
        device: where the network runs.

    Returns:
        An :class:`InceptionModel`; ``info`` holds the format, file, SHA-256 and, for a file
        named like ``pt_inception-...-<8 hex>.pth``, whether the hash prefix matches the name.

    Raises:
        UserError: unreadable file, a pickle that is not plain tensors, or foreign weights.
    """
    path = Path(path)
    fmt = detect_format(path)
    sha = _sha256(path)
    info: dict[str, Any] = {"format": fmt, "file": str(path), "sha256": sha}
    named = re.search(r"-([0-9a-f]{8})\.pth?$", path.name)
    if named:  # torch hub convention: the name carries the first 8 hex digits of the SHA-256
        info["sha256_matches_name"] = sha.startswith(named.group(1))
    if fmt == "torchscript":
        try:
            net = torch.jit.load(str(path), map_location=device).eval()
        except Exception as e:  # torch raises RuntimeError and friends for foreign archives
            raise UserError(f"{path} is not a loadable TorchScript model "
                            f"({type(e).__name__}); expected {EXPECTED}") from None
        return InceptionModel(fmt, net, info)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-bearing pickles, others for garbage
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"{path} cannot be read as weights only ({first}); expected "
                        f"{EXPECTED}") from None
    net = build_fid_inception()
    _check_state_dict(state, net, path)
    net.load_state_dict(state, strict=False)  # strict up to num_batches_tracked (checked above)
    return InceptionModel(fmt, net.to(device).eval(), info)


@torch.no_grad()
def inception_features(model: InceptionModel, x: torch.Tensor, *, batch_size: int = 50,
                       device: str | torch.device = "cpu") -> torch.Tensor:
    """Inception features of images.

    Args:
        model: from :func:`load_inception`.
        x: images ``(N, 1 or 3, H, W)`` in [-1, 1]; grey is repeated to RGB.
        batch_size: images per forward pass (does not change the result).
        device: where to run (the model's device).

    Returns:
        float32 ``(N, D)`` on the CPU (D = 2048 for the real networks).
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"Inception features need images (N, 1|3, H, W); got {tuple(x.shape)}")
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device).float()
        xb = xb.expand(-1, 3, -1, -1) if xb.shape[1] == 1 else xb
        x01 = ((xb + 1) / 2).clamp(0, 1)
        if model.format == "torchscript":
            x299 = F.interpolate(x01, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
            f = model.net(x299 * 255, return_features=True)
        else:
            f = fid_pool3(model.net, x01)
        out.append(f.reshape(len(xb), -1).float().cpu())
    return torch.cat(out)
