"""L-inf attacks on a GAN discriminator: FGSM (Goodfellow 2015) and BIM (Kurakin 2017).

One loop does both, as in foolbox 3: take the sign of the input gradient, step, project to the
eps ball around the clean input, clip to the pixel range. FGSM is BIM with one step of size eps.

Units (SPEC section 1): ``eps`` is in [0, 1] *pixel units*; in the data's own range
``pixel_range=(lo, hi)`` a step of ``eps`` moves a value by ``eps * (hi - lo)``
(``eps=1/255`` is one 8-bit grey level, 2/255 in [-1, 1] space). :func:`eps_to_abs` is the one
place that conversion happens.

``eps`` is one float for the batch or a tensor ``(N,)`` with one eps per sample (the sweep's
minimal-eps bisection uses that). D returns raw logits ``(N,)``. ``toward="fake"`` lowers the
logit (reals attacked), ``toward="real"`` raises it (fakes attacked). Attacks take gradients
with ``torch.autograd.grad`` and run inside :func:`probe_mode`, so D is left exactly as it was
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

    ``batch`` puts D's BatchNorm layers in train mode so they normalise with the statistics
    of the batch they are given (one population, as in GAN training); every other module is in
    eval mode (no dropout, no spectral-norm power iteration). ``eval`` puts all of D in eval
    mode. The running stats updated meanwhile and every other buffer are restored on exit, as
    are the train/eval flags. Yields the resolved mode (``"batch"`` or ``"eval"``) for the
    caller to record.
    """
    resolved = resolve_mode(D, mode)
    flags = [(m, m.training) for m in D.modules()]
    buffers = [(b, b.detach().clone()) for b in D.buffers()]
    D.eval()
    if resolved == "batch":
        # only BatchNorm switches to batch statistics: dropout stays off and spectral norm
        # keeps its stored vectors (no power iteration), so a batch-mode result depends on
        # the batch it is given and on nothing else (not on how many forwards came before)
        for m in D.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
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


Eps = float | torch.Tensor  # one eps for the batch, or per-sample eps (N,)


def default_step_size(eps: Eps, steps: int) -> Eps:
    """BIM's default step in pixel units: ``eps`` for one step (FGSM), else ``2.5 * eps / steps``
    capped at ``eps`` (Madry et al.'s rule). Works on a float or a per-sample tensor."""
    return eps * (1.0 if steps == 1 else min(1.0, 2.5 / steps))


def _as_abs(eps: Eps, pixel_range: tuple[float, float], x: torch.Tensor) -> float | torch.Tensor:
    """``eps`` in pixel units -> absolute size: a float, or ``(N, 1, ..., 1)`` for eps ``(N,)``."""
    if not torch.is_tensor(eps):
        return eps_to_abs(eps, pixel_range)
    lo, hi = pixel_range
    if not hi > lo:
        raise ValueError(f"pixel_range must have hi > lo, got {pixel_range}")
    if eps.shape != (x.shape[0],):
        raise ValueError(f"per-sample eps must have shape ({x.shape[0]},), got {tuple(eps.shape)}")
    if bool(((eps < 0) | (eps > 1) | eps.isnan()).any()):  # one sync per call, not per step
        raise ValueError("eps is in [0, 1] pixel units (1/255 = one grey level); got values "
                         "outside [0, 1]")
    return _per_sample(eps * (hi - lo), x)


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, ..., 1) on x's device and dtype, to broadcast over a sample."""
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def _check(eps: Eps, toward: str, pixel_range: tuple[float, float],
           x: torch.Tensor) -> float | torch.Tensor:
    if toward not in TOWARD:
        raise ValueError(f"toward must be one of {TOWARD}, got {toward!r}")
    return _as_abs(eps, pixel_range, x)


def direction(toward: str) -> float:
    """+1 when the attack raises the logit (``toward="real"``), -1 when it lowers it."""
    return 1.0 if toward == "real" else -1.0


def fgsm(
    D: nn.Module,
    x: torch.Tensor,
    *,
    eps: Eps,
    toward: str = "fake",
    pixel_range: tuple[float, float] = (-1.0, 1.0),
    grad: torch.Tensor | None = None,
    mode: str = "auto",
) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` that pushes D's logit toward a class.

    Args:
        D: discriminator, ``D(x)`` -> raw logits ``(N,)``.
        x: inputs ``(N, ...)`` in ``pixel_range``; not modified.
        eps: step in [0, 1] pixel units (``1/255`` = one grey level): a float, or a float
            tensor ``(N,)`` with one eps per sample.
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
    step = _check(eps, toward, pixel_range, x)
    if grad is None:
        with probe_mode(D, mode):
            _, grad = logit_grad(D, x)
    sign = grad.sign() if toward == "real" else -grad.sign()
    lo, hi = pixel_range
    return (x.detach() + step * sign).clamp_(lo, hi)


def bim_loop(D: nn.Module, x0: torch.Tensor, x: torch.Tensor, *, radius: float | torch.Tensor,
             alpha: float | torch.Tensor, steps: int, toward: str,
             pixel_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The BIM iterations in absolute units, with D already in its probe mode (no checks).

    Args:
        D: discriminator in the mode the caller set (see :func:`probe_mode`).
        x0: clean inputs ``(N, ...)``; the centre of the eps ball.
        x: start point ``(N, ...)`` (``x0``, or a random point of the ball).
        radius, alpha: ball radius and step in ``pixel_range`` units: floats or ``(N, 1, ...)``.
        steps: iterations (>= 1); toward, pixel_range: as in :func:`bim`.

    Returns:
        ``(x_adv, logits at the start point (N,))``; the logits come free with the first
        gradient and are the clean logits when the start is ``x0``.
    """
    lo, hi = pixel_range
    # the eps ball intersected with the valid range, once: one clamp per step projects onto
    # both (same result as foolbox's ball-then-range projection, min/max being exact)
    lower = (x0 - radius).clamp_(lo, hi)
    upper = (x0 + radius).clamp_(lo, hi)
    step = direction(toward) * alpha
    logits0 = None
    for _ in range(steps):
        logits, g = logit_grad(D, x)
        logits0 = logits if logits0 is None else logits0
        x = g.sign_().mul_(step).add_(x).clamp_(lower, upper)  # g is ours: update in place
    return x, logits0


def bim(
    D: nn.Module,
    x: torch.Tensor,
    *,
    eps: Eps,
    steps: int = 10,
    step_size: Eps | None = None,
    toward: str = "fake",
    pixel_range: tuple[float, float] = (-1.0, 1.0),
    random_start: bool = False,
    generator: torch.Generator | None = None,
    mode: str = "auto",
) -> torch.Tensor:
    """Basic iterative method: ``steps`` FGSM steps, each projected to the eps ball and range.

    Args:
        D, x, eps, toward, pixel_range, mode: as in :func:`fgsm` (``eps`` float or ``(N,)``).
        steps: number of iterations (>= 1).
        step_size: per-step size in pixel units (float or ``(N,)``); default
            :func:`default_step_size`: ``eps / steps * 2.5`` capped at ``eps`` (Madry et al.'s
            rule), and exactly ``eps`` when ``steps == 1`` so that ``bim(steps=1) == fgsm``.
        random_start: start from a uniform point in the eps ball (PGD) instead of ``x``.
        generator: torch generator for the random start (reproducible results); the noise is
            drawn on the CPU, so it does not depend on the device.

    Returns:
        ``x_adv`` as in :func:`fgsm`.

    Examples:
        >>> x_adv = bim(D, x_real, eps=4 / 255, steps=10)
        >>> x_adv = bim(D, x_fake, eps=4 / 255, toward="real", random_start=True,
        ...             generator=torch.Generator().manual_seed(0))
    """
    radius = _check(eps, toward, pixel_range, x)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if step_size is None:
        step_size = default_step_size(eps, steps)
    alpha = _as_abs(step_size, pixel_range, x)
    lo, hi = pixel_range
    x0 = x.detach()
    start = x0
    if random_start:
        noise = torch.rand(x0.shape, generator=generator, dtype=x0.dtype, device="cpu")
        start = (x0 + radius * (2 * noise.to(x0.device) - 1)).clamp_(lo, hi)
    with probe_mode(D, mode):
        x_adv, _ = bim_loop(D, x0, start, radius=radius, alpha=alpha, steps=steps,
                            toward=toward, pixel_range=pixel_range)
    return x_adv


ATTACKS = {"fgsm": fgsm, "bim": bim}
