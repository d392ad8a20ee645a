"""L-inf attacks on a GAN discriminator: FGSM (Goodfellow 2015) and BIM (Kurakin 2017).

One loop does both, as in foolbox 3: take the sign of the input gradient, step, project to the
eps ball around the clean input, clip to the pixel range. FGSM is BIM with one step of size eps.

Units (SPEC section 1): ``eps`` is in [0, 1] *pixel units*; in the data's own range
``pixel_range=(lo, hi)`` a step of ``eps`` moves a value by ``eps * (hi - lo)``
(``eps=1/255`` is one 8-bit grey level, 2/255 in [-1, 1] space). :func:`eps_to_abs` is the one
place that conversion happens.

D returns raw logits ``(N,)``. ``toward="fake"`` lowers the logit (reals attacked),
``toward="real"`` raises it (fakes attacked). Attacks take gradients with
``torch.autograd.grad`` and run inside :func:`probe_mode`, so D is left exactly as it was
(train/eval flags, BatchNorm running stats, spectral-norm buffers, parameter ``.grad``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

MODES = ("auto", "eval", "batch")
TOWARD = ("fake", "real")


def eps_to_abs(eps: float, pixel_range: tuple[float, float] = (-1.0, 1.0)) -> float:
    """Convert ``eps`` in [0, 1] pixel units to an absolute step in ``pixel_range`` units."""
    lo, hi = pixel_range
    if not hi > lo:
        raise ValueError(f"pixel_range must have hi > lo, got {pixel_range}")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps is in [0, 1] pixel units (1/255 = one grey level), got {eps}")
    return float(eps) * (hi - lo)


def has_batchnorm(D: nn.Module) -> bool:
    """True when any BatchNorm layer is inside ``D``."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())


def resolve_mode(D: nn.Module, mode: str) -> str:
    """``auto`` -> ``batch`` for BatchNorm discriminators, else ``eval`` (SPEC section 1)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return "batch" if has_batchnorm(D) else "eval"
    return mode


@contextlib.contextmanager
def probe_mode(D: nn.Module, mode: str = "auto") -> Iterator[str]:
    """Run D in ``mode`` and restore it afterwards, bit for bit.

    ``batch`` puts D in train mode so BatchNorm normalises with the statistics of the batch it
    is given (one population, as in GAN training); the running stats and spectral-norm power
    iteration vectors it updates meanwhile are restored on exit, as are the train/eval flags.
    Yields the resolved mode (``"batch"`` or ``"eval"``) for the caller to record.
    """
    resolved = resolve_mode(D, mode)
    flags = [(m, m.training) for m in D.modules()]
    buffers = [(b, b.detach().clone()) for b in D.buffers()]
    D.train(resolved == "batch")
    try:
        yield resolved
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, was_training in flags:
            m.training = was_training


def logit_grad(D: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N,)`` and the gradient of their sum w.r.t. ``x`` (same shape as ``x``).

    Each logit depends only on its own sample (in ``eval`` mode exactly; in ``batch`` mode up
    to the batch statistics), so the gradient of the sum holds every per-sample gradient.
    Parameter ``.grad`` is never touched.
    """
    x = x.detach().requires_grad_(True)
    logits = D(x)
    (g,) = torch.autograd.grad(logits.sum(), x)
    return logits.detach(), g


def _check(eps: float, toward: str, pixel_range: tuple[float, float]) -> float:
    if toward not in TOWARD:
        raise ValueError(f"toward must be one of {TOWARD}, got {toward!r}")
    return eps_to_abs(eps, pixel_range)


def fgsm(
    D: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    toward: str = "fake",
    pixel_range: tuple[float, float] = (-1.0, 1.0),
    grad: torch.Tensor | None = None,
    mode: str = "auto",
) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` that pushes D's logit toward a class.

    Args:
        D: discriminator, ``D(x)`` -> raw logits ``(N,)``.
        x: inputs ``(N, ...)`` in ``pixel_range``; not modified.
        eps: step in [0, 1] pixel units (``1/255`` = one grey level).
        toward: ``"fake"`` lowers the logit (attack reals), ``"real"`` raises it (attack fakes).
        pixel_range: ``(lo, hi)`` of the data; the result is clipped to it.
        grad: optional precomputed gradient w.r.t. ``x`` of a quantity that rises with the
            logits: the logits themselves, or ``-L_D`` (the AS-GAN trainer passes
            ``-dL_D/dx_real`` from its own D backward, so the perturbation costs no extra
            pass). When given, D is not called. Without it the gradient of the logit sum is
            used: it does not saturate for confident samples as the loss gradient does
            (``sigmoid(-d)`` underflows), and in ``eval`` mode it has the same sign.
        mode: ``"auto" | "eval" | "batch"`` (SPEC section 1); ignored when ``grad`` is given.

    Returns:
        ``x_adv`` with the shape and dtype of ``x``, ``|x_adv - x|_inf <= eps * (hi - lo)``,
        inside ``pixel_range``.

    Examples:
        >>> x_adv = fgsm(D, x_real, eps=2 / 255)          # reals pushed toward "fake"
        >>> x_adv = fgsm(D, x_fake, eps=2 / 255, toward="real")
    """
    step = _check(eps, toward, pixel_range)
    if grad is None:
        with probe_mode(D, mode):
            _, grad = logit_grad(D, x)
    sign = grad.sign() if toward == "real" else -grad.sign()
    lo, hi = pixel_range
    return (x.detach() + step * sign).clamp_(lo, hi)


def bim(
    D: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    toward: str = "fake",
    pixel_range: tuple[float, float] = (-1.0, 1.0),
    random_start: bool = False,
    generator: torch.Generator | None = None,
    mode: str = "auto",
) -> torch.Tensor:
    """Basic iterative method: ``steps`` FGSM steps, each projected to the eps ball and range.

    Args:
        D, x, eps, toward, pixel_range, mode: as in :func:`fgsm`.
        steps: number of iterations (>= 1).
        step_size: per-step size in pixel units; default ``eps / steps * 2.5`` capped at
            ``eps`` (Madry et al.'s rule), and exactly ``eps`` when ``steps == 1`` so that
            ``bim(steps=1) == fgsm``.
        random_start: start from a uniform point in the eps ball (PGD) instead of ``x``.
        generator: torch generator for the random start (reproducible results).

    Returns:
        ``x_adv`` as in :func:`fgsm`.
    """
    radius = _check(eps, toward, pixel_range)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if step_size is None:
        step_size = eps if steps == 1 else min(eps, 2.5 * eps / steps)
    alpha = eps_to_abs(step_size, pixel_range)
    lo, hi = pixel_range
    x0 = x.detach()
    x_adv = x0.clone()
    if random_start:
        noise = torch.rand(x0.shape, generator=generator, dtype=x0.dtype, device="cpu")
        x_adv = (x_adv + radius * (2 * noise.to(x0.device) - 1)).clamp_(lo, hi)
    direction = 1.0 if toward == "real" else -1.0
    with probe_mode(D, mode):
        for _ in range(steps):
            _, g = logit_grad(D, x_adv)
            x_adv = x_adv + (direction * alpha) * g.sign()
            # projection order as in foolbox: eps ball first, then the valid range
            x_adv = torch.minimum(torch.maximum(x_adv, x0 - radius), x0 + radius).clamp_(lo, hi)
    return x_adv
