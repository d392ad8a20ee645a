"""A small CNN digit classifier: stacked-MNIST mode counting and the feature space for quality.

Trained by our own code (``scripts/train_classifier.py``) on ``mnist10k`` with a fixed, seeded
train / held-out split (:func:`heldout_split`: 9,000 / 1,000), shipped as one safetensors file
(``checkpoints/shipped/classifier/mnist10k-cnn.safetensors``) whose JSON header records the
architecture, the split, the held-out accuracy and the command that made it; the file is listed
in ``checkpoints/MANIFEST.json`` and verified by SHA-256 when loaded.

Inputs are grey digits ``(N, 1, H, W)`` in [-1, 1] (SPEC section 1); 32 px images are resized
to 28 px (bilinear, antialiased) first, exactly as the reals are, so both sides of a comparison
see the same pipeline. The feature space of Frechet distance / KID / PRDC is the penultimate
layer (``FEATURE_DIM`` = 128 ReLU units). There is no BatchNorm or dropout: eval-mode outputs
depend on each image alone, so they do not depend on the batch size.

Only torch (and numpy) are imported here; :func:`load_classifier` reaches for
``asgan_base.manifest`` lazily to find and verify the shipped file.

Examples:
    >>> net, meta = load_classifier()                 # the shipped, manifest-verified file
    >>> digits = predict(net, x)                      # x (N, 1, 28|32, 28|32) in [-1, 1]
    >>> f = features(net, x)                          # (N, 128) float32
    >>> meta["heldout_accuracy"]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# the split is defined once, in trainers.data, so the GAN trainers hold out the same 1,000
# digits; re-exported here for scripts/train_classifier.py and the tests
from probes.io.edge import MNIST10K_SPLIT as SPLIT  # noqa: F401
from probes.io.edge import mnist10k_split as heldout_split  # noqa: F401

SHIPPED = "checkpoints/shipped/classifier/mnist10k-cnn.safetensors"
# the shipped classifier of each dataset that has one: its feature space is where that data's
# Frechet distance is measured (Fashion-MNIST's own, not the digits')
SHIPPED_FOR = {"mnist10k": SHIPPED,
               "fashion-mnist": "checkpoints/shipped/classifier/fashion-mnist-cnn.safetensors"}
FORMAT = "asgan-probe-classifier"
VERSION = 1
FEATURE_DIM = 128
INPUT_SIZE = 28


class DigitCNN(nn.Module):
    """Three 3x3 conv + ReLU + 2x2 max-pool stages (28 -> 14 -> 7 -> 3), a 128-unit ReLU layer
    (the feature space) and a linear 10-way head. ~130k parameters (about 0.5 MB in float32).
    """

    def __init__(self, width: int = 32, feature_dim: int = FEATURE_DIM):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),           # (N, w, 14, 14)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),       # (N, 2w, 7, 7)
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (N, 2w, 3, 3)
            nn.Flatten(), nn.Linear(2 * w * 9, feature_dim), nn.ReLU())          # (N, feature_dim)
        self.head = nn.Linear(feature_dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) in [-1, 1] -> class logits (N, 10)."""
        return self.head(self.body(x))


def build_classifier(**kwargs: Any) -> DigitCNN:
    """A freshly initialised :class:`DigitCNN` (kwargs: ``width``, ``feature_dim``)."""
    return DigitCNN(**kwargs)


def to_input(x: torch.Tensor) -> torch.Tensor:
    """Grey images ``(N, 1, H, W)`` in [-1, 1] -> float32 ``(N, 1, 28, 28)`` (resized when H or W
    differs from 28: bilinear, antialiased). A new tensor; ``x`` is not modified."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"the digit classifier takes grey images (N, 1, H, W); got "
                         f"{tuple(x.shape)}")
    x = x.float()
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False, antialias=True)
    return x


def _onednn_body(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``net.body`` evaluated on oneDNN's blocked tensors (CPU, float32), or None where that
    does not apply (no oneDNN build, parameters not float32 on the CPU, another layer stack).

    The same convolutions as the module's forward (``aten::mkldnn_convolution`` both ways),
    but the activations stay in oneDNN's layout between layers instead of being reordered
    to and from NCHW around every convolution, and the 2x2 max-pools run on that layout:
    2.7x less CPU time per image on the study's 2-core machine (bench/report_cost.py), with
    features equal to those of ``net.body`` bit for bit there (to float round-off wherever
    oneDNN picks other kernels for the two layouts; tests/test_classifier.py checks it).
    Each ReLU + pool pair runs as pool then ReLU, the same numbers exactly (ReLU is monotone,
    so the max of ReLUs is the ReLU of the max) on a quarter of the elements. Weights are
    converted on each call (~130k numbers), so a net changed in place is never stale.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in net.parameters()):
        return None
    layers = list(getattr(net, "body", ()))
    n_conv = (len(layers) - 3) // 3
    expected = [nn.Conv2d, nn.ReLU, nn.MaxPool2d] * n_conv + [nn.Flatten, nn.Linear, nn.ReLU]
    if n_conv < 1 or [type(m) for m in layers] != expected:
        return None
    convs, pools = layers[0:3 * n_conv:3], layers[2:3 * n_conv:3]
    if any(c.groups != 1 or c.padding_mode != "zeros" or isinstance(c.padding, str)
           for c in convs) or any(
            (p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode,
             p.return_indices) not in (((2, 2), (2, 2), 0, 1, False, False),
                                       (2, 2, 0, 1, False, False)) for p in pools):
        return None
    linear = layers[-2]
    weights = [(torch._C._nn.mkldnn_reorder_conv2d_weight(
        c.weight.detach().to_mkldnn(), c.padding, c.stride, c.dilation, c.groups),
        c.bias.detach().to_mkldnn() if c.bias is not None else None, c) for c in convs]

    def body(x: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, 28) -> (N, feature_dim)
        h = x.contiguous().to_mkldnn()
        for w, b, c in weights:
            h = torch.mkldnn_convolution(h, w, b, c.padding, c.stride, c.dilation, c.groups)
            h = torch.relu_(F.max_pool2d(h, 2))  # (N, C, H // 2, W // 2): floors like the pool
        return F.relu(linear(h.to_dense().flatten(1)))  # NCHW flatten, as nn.Flatten

    return body


@torch.no_grad()
def _batched(net: nn.Module, head: bool, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``net.body`` (features) or the whole net (``head``: logits) on ``x`` in batches."""
    # eval mode, no BN/dropout: each output depends on its own image only
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    body = _onednn_body(net)
    if body is None:  # the module's own forward
        fn = net if head else net.body
    else:
        fn = (lambda t: net.head(body(t))) if head else body
    try:
        out = [fn(to_input(x[i:i + batch_size]).to(device)).cpu()
               for i in range(0, len(x), batch_size)]
    finally:
        net.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def features(net: DigitCNN, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Penultimate-layer features.

    Args:
        net: the classifier (its train/eval flag is restored afterwards).
        x: grey images ``(N, 1, H, W)`` in [-1, 1]; H = W = 28 or resized to 28.
        batch_size: images per forward pass (does not change the result).

    Returns:
        float32 ``(N, FEATURE_DIM)`` on the CPU, non-negative (ReLU outputs).
    """
    return _batched(net, False, x, batch_size)


def logits(net: DigitCNN, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Class logits float32 ``(N, 10)`` for grey images ``(N, 1, H, W)`` in [-1, 1]."""
    return _batched(net, True, x, batch_size)


def predict(net: DigitCNN, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Predicted digits int64 ``(N,)`` in 0..9 for grey images ``(N, 1, H, W)`` in [-1, 1]."""
    return logits(net, x, batch_size=batch_size).argmax(dim=1)


def predict_channels(net: DigitCNN, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Classify every channel of ``x`` (N, C, H, W) in [-1, 1] as a grey digit: int64 (N, C).

    Stacked MNIST (C = 3): the mode of a sample is ``100 * d[:, 0] + 10 * d[:, 1] + d[:, 2]``.
    """
    n, c = x.shape[:2]
    flat = x.reshape(n * c, 1, *x.shape[-2:])  # channel-major within each sample
    return predict(net, flat, batch_size=batch_size).reshape(n, c)


def accuracy(net: DigitCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` (N, 1, H, W) whose predicted digit equals ``y`` (N,) (exact: count / N)."""
    return int((predict(net, x) == y.long()).sum()) / len(y)


def _shifted(x: torch.Tensor, shift: int, g: torch.Generator) -> torch.Tensor:
    """Each image translated by a random integer offset in [-shift, shift]^2 (background -1)."""
    if shift == 0:
        return x
    pad = F.pad(x, (shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * shift + 1, (2, len(x)), generator=g).tolist()
    h, w = x.shape[-2:]
    return torch.stack([pad[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(dy, dx))])


def train_classifier(x: torch.Tensor, y: torch.Tensor, *, epochs: int = 12,
                     batch_size: int = 64, lr: float = 1e-3, shift: int = 2, seed: int = 0,
                     width: int = 32,
                     log: Callable[[str], None] | None = None) -> DigitCNN:
    """Train a :class:`DigitCNN` with Adam and a cosine learning-rate decay.

    Args:
        x: float32 ``(N, 1, 28, 28)`` in [-1, 1] (the training images only).
        y: int64 ``(N,)`` digits 0..9.
        epochs: passes over ``x`` (shuffled each epoch from ``seed``).
        batch_size: images per step.
        lr: Adam's initial learning rate (decays to 0 along a cosine).
        shift: random translation of each training image by up to ``shift`` px (augmentation).
        seed: initialisation, shuffling and shifts all derive from it.
        width: channels of the first conv (the others are 2 * width).
        log: called with one line per epoch (loss, training accuracy), or None.

    Returns:
        The trained net, in eval mode.
    """
    torch.manual_seed(seed)
    net = build_classifier(width=width)
    g = torch.Generator().manual_seed(seed + 1)
    steps = epochs * (len(x) // batch_size)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    net.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(x) - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = _shifted(x[idx], shift, g), y[idx]
            out = net(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            seen += len(idx)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / seen:.4f}, "
                f"train accuracy (augmented) {correct / seen:.4f}")
    return net.eval()


def save_classifier(path: str | Path, net: DigitCNN, meta: dict[str, Any]) -> Path:
    """Write ``net`` and ``meta`` (JSON-able) to one safetensors file, atomically."""
    from safetensors.torch import save

    from asgan_base.files import atomic_write_bytes  # the one atomic writer

    body = {"format": FORMAT, "version": VERSION, **meta}
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={FORMAT: json.dumps(body, sort_keys=True)}))
    return Path(path)


def read_classifier(path: str | Path, *, device: str | torch.device = "cpu"
                    ) -> tuple[DigitCNN, dict[str, Any]]:
    """``(net, meta)`` from a classifier file (safetensors: no code runs on load); net in eval.

    Raises:
        ValueError: not a classifier file, or weights that do not fit the architecture.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(FORMAT)
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises several types for foreign/corrupt files
        raise ValueError(f"{path} is not a readable safetensors file ({type(e).__name__})"
                         ) from None
    if raw is None:
        raise ValueError(f"{path} is not an asgan-probe classifier (no {FORMAT} metadata)")
    meta = json.loads(raw)
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: classifier format version {meta.get('version')}, "
                         f"expected {VERSION}")
    net = build_classifier(**meta["arch"]["kwargs"])
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the classifier "
                         f"({str(e).splitlines()[0][:120]})") from None
    return net.to(device).eval(), meta


def load_classifier(path: str | Path | None = None, *, device: str | torch.device = "cpu",
                    data: str = "mnist10k") -> tuple[DigitCNN, dict[str, Any]]:
    """The shipped classifier of ``data`` (``path`` None: :data:`SHIPPED_FOR`, verified against
    ``checkpoints/MANIFEST.json``) or the file at ``path``. Returns ``(net, meta)``;
    ``meta["heldout_accuracy"]`` is the held-out accuracy measured when it was trained,
    ``meta["split"]`` the split.

    Raises:
        asgan_base.errors.UserError: the shipped file is missing or differs from the manifest.
    """
    from_manifest = path is None
    if from_manifest:
        from asgan_base.manifest import shipped

        if data not in SHIPPED_FOR:
            from asgan_base.errors import UserError

            raise UserError(f"no shipped classifier for {data!r} (there is one for "
                            f"{', '.join(SHIPPED_FOR)}); pass --classifier FILE")
        path = shipped(SHIPPED_FOR[data])  # wherever the checkpoints folder is
    net, meta = read_classifier(path, device=device)
    return net, dict(meta, file=str(path), shipped=from_manifest)


def classifier_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """What every count or score made with the classifier reports next to it."""
    data = meta.get("data", {}).get("name", "mnist10k")
    rel = SHIPPED_FOR.get(data, SHIPPED)
    split = meta["split"]
    held = (f"{split['n_heldout']} of {split['n']} mnist10k digits (seeded permutation, seed "
            f"{split['seed']})" if data == "mnist10k" else
            f"the {split['n_heldout']} images of {data}'s official test set")
    return {"file": rel if meta.get("shipped") or meta.get("file", "").endswith(rel)
            else meta.get("file"),
            "data": data,
            "heldout_accuracy": meta.get("heldout_accuracy"),
            "heldout": held,
            "feature_dim": meta.get("feature_dim")}
