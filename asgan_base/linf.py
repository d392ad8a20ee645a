"""The L-inf step both sides take: AS-GAN's trainer perturbs its reals with it and the probes'
FGSM/BIM attack with it, so training and measuring use one eps conversion and one step.

Units (SPEC section 1): ``eps`` is in the data's eps unit: [0, 1] *pixel units* for images
(``eps=1/255`` is one grey level; in ``pixel_range=(lo, hi)`` a step of ``eps`` moves a value
by ``eps * (hi - lo)``), one mode std on the 2-D mixtures (``scale``, any eps >= 0).
:func:`eps_to_abs` is the one place the conversion happens. D returns raw logits ``(N,)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

TOWARD = ("fake", "real")
Eps = float | torch.Tensor  # one eps for the batch, or per-sample eps (N,)


def eps_to_abs(eps: Eps, pixel_range: tuple[float, float] = (-1.0, 1.0),
               like: torch.Tensor | None = None, scale: float | None = None
               ) -> float | torch.Tensor:
    """Convert ``eps`` in the data's eps unit to an absolute size in ``pixel_range`` units.

    The one place this conversion happens (SPEC section 1): ``eps * scale``, where ``scale``
    is the absolute size of eps = 1: by default ``hi - lo`` (pixel units, eps in [0, 1]); the
    mode std on the 2-D mixtures (mode-std units, any eps >= 0), as a checkpoint records it.

    Args:
        eps: a float, or a tensor ``(N,)`` with one eps per sample of ``like``.
        pixel_range: ``(lo, hi)`` of the data.
        like: the batch ``(N, ...)`` a per-sample eps applies to (required for a tensor eps).
        scale: the data's ``eps_scale``; None = pixel units of ``pixel_range``.

    Returns:
        A float, or ``(N, 1, ..., 1)`` on ``like``'s device and dtype (broadcasts per sample).
    """
    lo, hi = pixel_range
    if not hi > lo:
        raise ValueError(f"pixel_range must have hi > lo, got {pixel_range}")
    if scale is not None and not 0.0 < scale < float("inf"):
        raise ValueError(f"eps scale must be a finite size > 0, got {scale}")
    # pixel units stop at 1 (the full range); other units (a mode's std) have no such bound
    top, unit = (1.0, "[0, 1] pixel units (1/255 = one grey level)") if scale is None else (
        float("inf"), f"units of {scale:g} (eps >= 0)")
    size = (hi - lo) if scale is None else float(scale)
    if not torch.is_tensor(eps):
        if not 0.0 <= eps <= top:
            raise ValueError(f"eps is in {unit}, got {eps}")
        return float(eps) * size
    if like is None or eps.shape != (like.shape[0],):
        n = None if like is None else like.shape[0]
        raise ValueError(f"per-sample eps must have shape ({n},), got {tuple(eps.shape)}")
    if bool(((eps < 0) | (eps > top) | eps.isnan()).any()):  # one sync per call, not per step
        raise ValueError(f"eps is in {unit}; got values outside that range")
    return (eps * size).to(device=like.device, dtype=like.dtype).reshape(
        -1, *([1] * (like.dim() - 1)))


def linf_step(x: torch.Tensor, grad: torch.Tensor, step: float | torch.Tensor,
              lower: float | torch.Tensor, upper: float | torch.Tensor) -> torch.Tensor:
    """``clamp(x + step * sign(grad), lower, upper)``: the one L-inf step.

    Args:
        x: current point ``(N, ...)``; not modified.
        grad: gradient of a quantity that rises with the logit (same shape); not modified.
        step: signed size in absolute units (``direction(toward) * alpha``): a float or
            ``(N, 1, ...)``.
        lower, upper: the projection: floats (the pixel range) or tensors (the eps ball around
            the clean input intersected with the range; one clamp projects onto both, the same
            result as foolbox's ball-then-range projection since min/max are exact).
    """
    return torch.sign(grad).mul_(step).add_(x).clamp_(lower, upper)


def direction(toward: str) -> float:
    """+1 when the attack raises the logit (``toward="real"``), -1 when it lowers it."""
    if toward not in TOWARD:
        raise ValueError(f"toward must be one of {TOWARD}, got {toward!r}")
    return 1.0 if toward == "real" else -1.0


def logit_grad(D: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N,)`` and the gradient of their sum w.r.t. ``x`` (same shape as ``x``).

    On a per-sample model (``frozen`` or ``eval`` mode) each logit depends only on its own
    sample, so the gradient of the sum holds every per-sample gradient exactly; in ``batch``
    mode it also holds BatchNorm's cross-sample terms. Parameter ``.grad`` is never touched.
    """
    with torch.enable_grad():  # works inside a caller's no_grad block too
        x = x.detach()
        if x.dim() == 4 and x.device.type == "cpu":
            # NHWC runs oneDNN's faster conv kernels on CPU: FGSM 1.15-1.3x, BIM-10 1.2-1.4x
            # (bench/attack_throughput.py); D itself is not touched
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        logits = D(x)
        (g,) = torch.autograd.grad(logits.sum(), x)
    return logits.detach(), g.contiguous()


@contextlib.contextmanager
def frozen_params(net: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` on ``net``'s parameters, restoring each flag afterwards: input
    gradients without parameter gradients (foolbox would accumulate into ``.grad``; G's step
    need not pay for D's weight gradients)."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
