"""Layers that couple the samples of a batch, written so a probe can decouple them.

BatchNorm in train mode is one such layer (:mod:`probes.core.modes` freezes it). The other one
researchers' discriminators carry is the **minibatch standard deviation** layer of ProGAN /
StyleGAN2-ADA / StyleGAN3 (Karras et al. 2018, 2020): it appends to each sample's feature map
the standard deviation of the features across a *group* of samples, so sample j moves logit i
whenever i and j share a group. Foreign readers rebuild it as :class:`MinibatchStd`, so that
every such layer in any rebuilt D is one recognisable type.

Upstream (batch) behaviour, StyleGAN2-ADA's ``MinibatchStdLayer``: for ``N`` samples the group
size is ``G = min(group_size, N)`` (``N`` must be divisible by it) and the groups are
*strided*: sample ``i`` shares its group with samples ``i + k * N/G`` (``x.reshape(G, -1, ...)``).
Per group and per channel group of ``C/F`` channels, the statistic is the mean over channels
and positions of ``sqrt(var_over_group + 1e-8)`` (the biased variance), appended as ``F``
constant feature maps.

Per-sample behaviour (``reference`` set, the probes' ``frozen`` mode): each sample is scored
inside a group of ``group_size`` made of **itself and ``group_size - 1`` fixed clean reference
samples** (their features at this layer's input, set by :func:`probes.core.modes.frozen_copy`).
The statistic then still reacts to the sample itself, as it does in training (an attacker or G
can move it), but never to another probed sample: each logit depends on its own sample only,
and results are independent of the batch size and order.
"""

from __future__ import annotations

import torch
from torch import nn


class MinibatchStd(nn.Module):
    """Minibatch standard deviation, StyleGAN2-ADA / StyleGAN3 semantics (module docstring).

    Args:
        group_size: samples per group (``None``: the whole batch); 4 in StyleGAN2-ADA's
            default configs, 32 in ``cifar``.
        num_channels: ``F``, the number of appended statistic maps (1 upstream by default).

    Input ``(N, C, H, W)``; output ``(N, C + F, H, W)``. ``reference`` (a buffer, ``None``
    until a probe sets it): ``(group_size - 1, C, H, W)`` clean features that complete each
    sample's group.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels
        self.register_buffer("reference", None)

    def extra_repr(self) -> str:
        mode = "batch" if self.reference is None else f"per-sample ({len(self.reference)} refs)"
        return f"group_size={self.group_size}, num_channels={self.num_channels}, {mode}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        F = self.num_channels
        c = C // F
        if self.reference is None:
            G = min(self.group_size, N) if self.group_size is not None else N
            if N % G:
                raise ValueError(f"minibatch-stddev: batch {N} is not divisible by its group "
                                 f"size {G}")
            y = x.reshape(G, -1, F, c, H, W)
            y = y - y.mean(dim=0)
            y = y.square().mean(dim=0)
            y = (y + 1e-8).sqrt()
            y = y.mean(dim=[2, 3, 4])
            y = y.reshape(-1, F, 1, 1)
            y = y.repeat(G, 1, H, W)
            return torch.cat([x, y], dim=1)
        ref = self.reference.to(dtype=x.dtype)
        grp = torch.cat([x.unsqueeze(1), ref.unsqueeze(0).expand(N, *ref.shape)], dim=1)
        y = grp.reshape(N, grp.shape[1], F, c, H, W)
        y = y - y.mean(dim=1, keepdim=True)
        y = y.square().mean(dim=1)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])  # (N, F)
        y = y.reshape(N, F, 1, 1).expand(N, F, H, W)
        return torch.cat([x, y], dim=1)
