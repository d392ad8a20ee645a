"""The discriminator contract of SPEC section 1 for any module: one raw logit per sample.

Other people's discriminators keep their own output: ``(N, 1)`` (StyleGAN, StudioGAN), a patch
map ``(N, 1, h, w)`` (PatchGAN), a per-pixel map ``(N, 1, H, W)`` (BasicSR's U-Net D), a dict.
A probe needs ``(N,)``, so the output is reduced by a *declared* rule, recorded in every result:

- ``squeeze``: ``(N,)`` or ``(N, 1)`` as is;
- ``mean``: the mean over every non-batch position of a map, which is what those models'
  losses average (a per-sample number: sample i's logit reads only row i);
- ``key:<k>``: the entry ``k`` of a dict output, then ``squeeze`` or ``mean`` by its shape.

Any ``nn.Module`` a researcher holds is brought under the contract by :func:`wrap` (the
Python entry point is ``probes.discriminator``), which declares and records, once:

- the input: ``pixel_range`` and ``shape`` of one sample;
- the reduction: declared, or ``auto`` (read off one probe forward: ``(N,)``/``(N, 1)`` ->
  ``squeeze``; a map ``(N, h, w)``/``(N, 1, h, w, ...)`` -> ``mean``; anything else, dicts
  included, must be declared);
- a bound class for a conditional D (:func:`bind_label`): ``label_as="onehot"`` calls
  ``net(x, c)`` with ``c`` the one-hot ``(N, num_classes)`` row of ``label`` (StyleGAN, R3GAN),
  ``"index"`` with ``c`` the ``(N,)`` long class ids (StudioGAN), or a callable
  ``f(net, x) -> output`` for any other calling convention;
- randomness: ``forward`` is called twice on one probe batch; when the outputs differ every
  later forward runs under a forked RNG seeded with ``seed`` (the caller's RNG is untouched),
  so the same input always gives the same logit;
- float32: a module holding another floating dtype is probed as a float32 copy (the original
  is untouched); its dtype is recorded.

Torch only.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

REDUCTIONS = ("squeeze", "mean")
LABEL_AS = ("onehot", "index")
PROBE_N = 8  # rows of the probe batch that reads the output shape and tests for randomness


def check_reduction(reduction: str) -> str:
    """``reduction`` itself when valid, else ValueError naming the valid rules."""
    base = reduction.split(":", 1)[0]
    if reduction in REDUCTIONS or (base == "key" and len(reduction) > 4):
        return reduction
    raise ValueError(f"reduction must be one of {REDUCTIONS} or 'key:<name>', got {reduction!r}")


def reduce_output(y, reduction: str) -> torch.Tensor:
    """D's raw output ``y`` -> logits ``(N,)`` by ``reduction`` (module docstring)."""
    check_reduction(reduction)
    if reduction.startswith("key:"):
        key = reduction[4:]
        if not isinstance(y, dict) or key not in y:
            raise ValueError(f"D's output has no key {key!r}")
        y = y[key]
        reduction = "squeeze" if y.dim() <= 2 and (y.dim() == 1 or y.shape[1] == 1) else "mean"
    if not torch.is_tensor(y):
        raise ValueError(f"D returned {type(y).__name__}, not a tensor: declare a key:<name>")
    if reduction == "squeeze":
        if y.dim() == 1:
            return y
        if y.dim() == 2 and y.shape[1] == 1:
            return y[:, 0]
        raise ValueError(f"cannot squeeze D's output of shape {tuple(y.shape)} to (N,): "
                         "declare reduction='mean' for patch or pixel maps")
    return y.reshape(y.shape[0], -1).mean(dim=1)


class Reduced(nn.Module):
    """``net`` with its output reduced to ``(N,)`` logits by ``reduction`` (module docstring).

    ``net`` is a registered submodule, so ``.eval()``, ``.to()``, ``.modules()`` (BatchNorm,
    minibatch-stddev discovery) and copies see through the wrapper.
    """

    def __init__(self, net: nn.Module, reduction: str) -> None:
        super().__init__()
        self.net = net
        self.reduction = check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reduce_output(self.net(x), self.reduction)


# --------------------------------------------------------------------- any module, declared
def infer_reduction(y: Any) -> tuple[str, str]:
    """``(reduction, why)`` for D's raw output ``y`` on a probe batch (module docstring);
    ValueError when the output is not one of the shapes ``auto`` maps."""
    if isinstance(y, dict):
        raise ValueError(f"D returns a dict with keys {sorted(map(str, y))}: declare "
                         "reduction='key:<name>'")
    if not torch.is_tensor(y):
        raise ValueError(f"D returns {type(y).__name__}, not a tensor: declare a reduction or "
                         "wrap D so that it returns its logits")
    if y.dim() == 1 or (y.dim() == 2 and y.shape[1] == 1):
        return "squeeze", "one logit per sample"
    if y.dim() == 3 or (y.dim() >= 4 and y.shape[1] == 1):
        return "mean", (f"a map {shape_text(y)}: the mean over positions, as patch and pixel "
                        "losses average it")
    raise ValueError(f"D returns shape {shape_text(y)}, which is not one logit or one map per "
                     "sample: declare reduction='squeeze', 'mean' or 'key:<name>'")


def shape_text(y: Any) -> str:
    """``"(N, 1, 8, 8)"`` for a tensor (the batch dimension named N), the type otherwise;
    a dict as ``{key: shape}``."""
    if isinstance(y, dict):
        return "{" + ", ".join(f"{k}: {shape_text(v)}" for k, v in y.items()) + "}"
    if not torch.is_tensor(y):
        return type(y).__name__
    return "(" + ", ".join(["N", *map(str, y.shape[1:])]) + ")"


def bind_label(label: int | None, label_as: str | Callable | None,
               num_classes: int | None) -> Callable[[nn.Module, torch.Tensor], Any]:
    """``call(net, x)``: how D is called with ``label`` bound for every sample (module
    docstring). ``label`` None and ``label_as`` not callable: ``net(x)``."""
    if callable(label_as):
        return label_as
    if label is None:
        if label_as not in (None, "onehot"):  # "onehot" is the default: no label, no binding
            raise ValueError(f"label_as={label_as!r} needs a label (the class to bind)")
        return _plain
    if label_as not in LABEL_AS:
        raise ValueError(f"label_as must be one of {LABEL_AS} or a callable f(net, x), got "
                         f"{label_as!r}")
    label = int(label)
    if num_classes is None and label_as == "onehot":
        raise ValueError("label_as='onehot' needs num_classes (the length of D's c vector)")
    if label < 0 or (num_classes is not None and label >= num_classes):
        raise ValueError(f"label {label} is out of range for {num_classes} classes")
    if label_as == "onehot":
        return _OneHot(label, int(num_classes))
    return _Index(label)


def _plain(net: nn.Module, x: torch.Tensor) -> Any:
    return net(x)


class _OneHot:
    """``net(x, c)``, ``c`` the one-hot row of ``label`` for every sample (float, x's device)."""

    def __init__(self, label: int, num_classes: int) -> None:
        self.label, self.num_classes = label, num_classes

    def __call__(self, net: nn.Module, x: torch.Tensor) -> Any:
        c = torch.zeros(x.shape[0], self.num_classes, dtype=x.dtype, device=x.device)
        c[:, self.label] = 1
        return net(x, c)


class _Index:
    """``net(x, y)``, ``y`` the class id ``label`` for every sample (long, x's device)."""

    def __init__(self, label: int) -> None:
        self.label = label

    def __call__(self, net: nn.Module, x: torch.Tensor) -> Any:
        return net(x, torch.full((x.shape[0],), self.label, dtype=torch.long, device=x.device))


class Contracted(nn.Module):
    """A module under the contract: ``forward(x)`` -> logits ``(N,)``.

    ``net`` is called by ``call`` (label binding), under a forked RNG seeded with ``seed``
    when ``seed`` is not None, and its output reduced by ``reduction``. ``net`` is a
    registered submodule, so mode switches, copies and layer discovery (BatchNorm,
    minibatch-stddev) see through the wrapper.
    """

    def __init__(self, net: nn.Module, reduction: str, *,
                 call: Callable[[nn.Module, torch.Tensor], Any] = _plain,
                 seed: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.reduction = check_reduction(reduction)
        self.call = call
        self.seed = seed

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, seed={self.seed}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with seeded(self.seed, x.device):
            y = self.call(self.net, x)
        return reduce_output(y, self.reduction)


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device):
    """Run the block under a forked RNG (CPU, and ``device`` when it is a GPU) seeded with
    ``seed``; the caller's RNG state is restored afterwards. ``seed`` None: no change."""
    if seed is None:
        yield
        return
    gpu = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if gpu else []):
        torch.random.default_generator.manual_seed(seed)
        if gpu:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def float_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of the module's first floating parameter or buffer (None: it has none)."""
    for t in [*module.parameters(), *module.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return None


def wrap(module: nn.Module, *, shape: tuple[int, ...], pixel_range: tuple[float, float] = (
        -1.0, 1.0), reduction: str = "auto", label: int | None = None,
         label_as: str | Callable | None = "onehot", num_classes: int | None = None,
         seed: int = 0) -> tuple[Contracted, dict[str, Any]]:
    """Any module as a contract discriminator: ``(D, facts)``.

    Args:
        module: the user's D; never modified (a float32 copy is probed when it holds another
            floating dtype; otherwise D wraps the module itself, and every probe enters and
            restores it, SPEC section 1).
        shape: one sample's shape, e.g. ``(3, 32, 32)``.
        pixel_range: ``(lo, hi)`` of the inputs D was trained on.
        reduction: ``"auto"``, ``"squeeze"``, ``"mean"`` or ``"key:<k>"`` (module docstring).
        label, label_as, num_classes: the class bound for every sample of a conditional D
            (:func:`bind_label`).
        seed: the seed of every forward, used only when ``forward`` draws random numbers.

    Returns:
        ``D`` (:class:`Contracted`, on the module's device) and JSON-able facts: ``output``
        ``{"shape", "reduction", "why"}``, ``dtype`` (the module's own), ``float32`` (``"as
        is"`` or ``"a float32 copy"``), ``conditional``, ``label``, ``label_as``,
        ``num_classes``, ``randomness`` (``"none"`` or what is done about it), ``seed``
        (None unless used), ``pixel_range``, ``shape``.
    """
    lo, hi, shape = _check_wrap_args(module, pixel_range, shape)
    dtype = float_dtype(module)
    net = module if dtype in (None, torch.float32) else copy.deepcopy(module).float()
    call = bind_label(label, label_as, num_classes)
    device = _device(net)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(PROBE_N, *shape, generator=g) * (hi - lo) + lo).to(device)
    probe = Contracted(net, "squeeze", call=call)
    y1, y2 = _probe_twice(net, call, x, pixel_range)
    random = not _same(y1, y2)
    reduction, why = _resolve_reduction(y1, reduction)
    probe.reduction = reduction
    if random:
        probe.seed = seed
    conditional = label is not None or callable(label_as)
    facts = {
        "output": {"shape": shape_text(y1), "reduction": reduction, "why": why},
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "float32": "as is" if net is module else "a float32 copy",
        "conditional": conditional,
        "label": None if label is None else int(label),
        "label_as": ("callable" if callable(label_as) else label_as) if conditional else None,
        "num_classes": num_classes,
        "randomness": (f"forward draws random numbers: every forward runs under a forked RNG "
                       f"seeded with {seed}") if random else "none",
        "seed": seed if random else None,
        "pixel_range": [lo, hi], "shape": list(shape),
    }
    return probe, facts


def _check_wrap_args(module: Any, pixel_range: tuple[float, float], shape: tuple[int, ...]
                     ) -> tuple[float, float, tuple[int, ...]]:
    """``(lo, hi, shape)`` as floats and ints after checking :func:`wrap`'s arguments."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"a discriminator must be a torch.nn.Module, got {type(module).__name__}")
    lo, hi = (float(v) for v in pixel_range)
    if not hi > lo:
        raise ValueError(f"pixel_range must have hi > lo, got {pixel_range}")
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"shape must be one sample's positive sizes, e.g. (3, 32, 32), got "
                         f"{shape}")
    return lo, hi, shape


def _probe_twice(net: nn.Module, call: Callable, x: torch.Tensor,
                 pixel_range: tuple[float, float]) -> tuple[Any, Any]:
    """Two forwards of ``net`` on the probe batch ``x`` ``(PROBE_N, ...)``, net entered and
    restored, the global RNG forked (a differing pair = a forward that draws random numbers);
    a failure of the user's module becomes a one-line ValueError."""
    device = x.device
    with _entered(net), torch.no_grad(), torch.random.fork_rng(
            devices=[device] if device.type == "cuda" else []):
        try:
            return call(net, x), call(net, x)
        except Exception as e:  # the user's module, the user's error: one line, its type
            msg = " ".join(str(e).split())[:200]
            raise ValueError(f"D failed on a probe batch of shape {tuple(x.shape)} in "
                             f"{pixel_range}: {type(e).__name__}: {msg} (check shape, label "
                             f"and label_as)") from None


def _resolve_reduction(y: Any, reduction: str) -> tuple[str, str]:
    """``(reduction, why)`` for output ``y``: inferred when ``"auto"``, else checked now
    (``why = "declared"``) so a bad one fails here, not in the middle of a probe."""
    if reduction == "auto":
        return infer_reduction(y)
    check_reduction(reduction)
    reduce_output(y, reduction)
    return reduction, "declared"


def _same(a: Any, b: Any) -> bool:
    if torch.is_tensor(a) and torch.is_tensor(b):
        return a.shape == b.shape and bool(torch.equal(a, b) or (
            a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
            and torch.equal(a.nan_to_num(), b.nan_to_num())))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return a == b


@contextlib.contextmanager
def _entered(net: nn.Module):
    """``net`` in eval mode, its flags and buffers restored afterwards (the probe forwards
    of :func:`wrap` leave no trace)."""
    from probes.core.modes import restored

    with restored(net):
        net.eval()
        yield


def _device(net: nn.Module) -> torch.device:
    t = next(iter([*net.parameters(), *net.buffers()]), None)
    return t.device if t is not None else torch.device("cpu")
