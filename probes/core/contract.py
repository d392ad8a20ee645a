"""The discriminator contract of SPEC section 1 for any module: one raw logit per sample.

Other people's discriminators keep their own output: ``(N, 1)`` (StyleGAN, StudioGAN), a patch
map ``(N, 1, h, w)`` (PatchGAN), a per-pixel map ``(N, 1, H, W)`` (BasicSR's U-Net D), a dict.
A probe needs ``(N,)``, so the output is reduced by a *declared* rule, recorded in every result:

- ``squeeze``: ``(N,)`` or ``(N, 1)`` as is;
- ``mean``: the mean over every non-batch position of a map, which is what those models'
  losses average (a per-sample number: sample i's logit reads only row i);
- ``key:<k>``: the entry ``k`` of a dict output, then ``squeeze`` or ``mean`` by its shape.

Torch only.
"""

from __future__ import annotations

import torch
from torch import nn

REDUCTIONS = ("squeeze", "mean")


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
