"""Gradient attacks on a GAN discriminator: FGSM (Goodfellow 2015), BIM (Kurakin 2017), PGD-L2.

One loop does the iterative ones, as in foolbox 3 (:func:`iterate`): take the input gradient,
*normalize* it into a step direction, step, *project* to the eps ball around the clean input and
the pixel range. A norm is those two hooks plus a random start (:class:`Norm`): ``LINF``
(sign of the gradient, a box clamp: BIM, and FGSM as its one-step case through
:func:`linf_step`, the step AS-GAN's training perturbation uses too) and ``L2`` (gradient over
its L2 norm, the difference rescaled to the ball: PGD-L2). The attacks by name, with their
defaults, are registered once in :data:`probes.core.sweep.ATTACKS`.

Units (SPEC section 1): ``eps`` is in [0, 1] *pixel units*; in the data's own range
``pixel_range=(lo, hi)`` a step of ``eps`` moves a value by ``eps * (hi - lo)``
(``eps=1/255`` is one grey level, 2/255 in [-1, 1] space). Data with another eps unit (the 2-D
mixtures: one std of a mode) pass its ``eps_scale``, the absolute size of eps = 1 that every
checkpoint records (``trainers.data.eps_units_of``). :func:`eps_to_abs` is the one place that
conversion happens. eps is a radius in the attack's norm: L-inf (FGSM, BIM) bounds every value's
move by ``eps``; L2 (PGD-L2) bounds the Euclidean norm of the whole perturbation, over all
``C*H*W`` values, measured in the same unit: ``||x_adv - x||_2 <= eps * (hi - lo)`` (or
``eps * eps_scale``), i.e. the sweep's ``mean_l2`` (perturbation divided by the unit) is at most
``eps``.

``eps`` is one float for the batch or a tensor ``(N,)`` with one eps per sample (the minimal-eps
bisection uses that). D returns raw logits ``(N,)``. ``toward="fake"`` lowers the logit (reals
attacked), ``toward="real"`` raises it (fakes attacked). Attacks take gradients with
``torch.autograd.grad`` on the model :func:`probes.core.modes.probe_model` yields, so D is left
exactly as it was (train/eval flags, BatchNorm running stats, spectral-norm buffers, ``.grad``).
On a BatchNorm D the default (``auto`` = ``frozen``) holds the statistics of a clean reference
group fixed, so each sample's perturbation and score are its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

# the step and the eps conversion AS-GAN's trainer uses too, defined once in the base and
# part of this module's attack API (TOWARD is re-exported for the adapters)
from asgan_base.linf import TOWARD, Eps, direction, eps_to_abs, linf_step, logit_grad  # noqa: F401
from probes.core.modes import probe_model, reference_group

DEFAULT_GROUP = 64  # reference group when none is given: DCGAN's training batch size


def default_step_size(eps: Eps, steps: int) -> Eps:
    """BIM's default step in pixel units: ``eps`` for one step (FGSM), else ``2.5 * eps / steps``
    capped at ``eps`` (Madry et al.'s rule). Works on a float or a per-sample tensor."""
    return eps * (1.0 if steps == 1 else min(1.0, 2.5 / steps))


def fgsm(
    D: nn.Module,
    x: torch.Tensor,
    *,
    eps: Eps,
    toward: str = "fake",
    pixel_range: tuple[float, float] = (-1.0, 1.0),
    grad: torch.Tensor | None = None,
    mode: str = "auto",
    reference: torch.Tensor | None = None,
    eps_scale: float | None = None,
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
            (``sigmoid(-d)`` underflows), and on a per-sample model it has the same sign.
        mode: ``"auto" | "frozen" | "batch" | "eval"`` (:mod:`probes.core.modes`); ignored
            when ``grad`` is given.
        reference: clean group whose BatchNorm statistics ``frozen`` holds fixed (default:
            the first 64 samples of ``x``).
        eps_scale: absolute size of eps = 1 when the data's eps unit is not pixels (the
            2-D mixtures' mode std, from the checkpoint); see :func:`eps_to_abs`.

    Returns:
        ``x_adv`` with the shape and dtype of ``x``, ``|x_adv - x|_inf <= eps * (hi - lo)``
        (``eps * eps_scale`` when given), inside ``pixel_range``.

    Examples:
        >>> x_adv = fgsm(D, x_real, eps=2 / 255)          # reals pushed toward "fake"
        >>> x_adv = fgsm(D, x_fake, eps=2 / 255, toward="real")
    """
    sign = direction(toward)
    step = eps_to_abs(eps, pixel_range, like=x, scale=eps_scale)
    if grad is None:
        ref = reference_group(x, DEFAULT_GROUP) if reference is None else reference
        with probe_model(D, mode, ref) as (model, _):
            _, grad = logit_grad(model, x)
    lo, hi = pixel_range
    return linf_step(x.detach(), grad, sign * step, lo, hi)


# ----------------------------------------------------------------------------- norms
Radius = float | torch.Tensor  # absolute units: a float, or (N, 1, ..., 1) per sample
Project = Callable[[torch.Tensor], torch.Tensor]


class Norm(NamedTuple):
    """The hooks that make :func:`iterate` an attack in one norm.

    Attributes:
        name: ``"linf"`` or ``"l2"``: the norm eps is a radius in (records say it).
        normalize: ``g (N, ...) -> d``, a *new* tensor: the unit step direction for a gradient
            of a quantity that rises with the logit (the loop scales it in place).
        projector: ``(x0, radius, pixel_range) -> project``, built once per run;
            ``project(x)`` puts ``x`` (a fresh tensor it may overwrite) back into the radius
            ball around ``x0`` and then the range, and returns it.
        noise: ``(shape, generator, dtype) -> u``: a point uniform in the unit ball, one per
            sample (row), drawn on the CPU; the random start is ``x0 + radius * u``, clipped.
    """

    name: str
    normalize: Callable[[torch.Tensor], torch.Tensor]
    projector: Callable[[torch.Tensor, Radius, tuple[float, float]], Project]
    noise: Callable[[torch.Size, torch.Generator | None, torch.dtype], torch.Tensor]


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(N,)`` -> ``(N, 1, ..., 1)`` broadcasting over ``like``'s sample dims."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _linf_projector(x0: torch.Tensor, radius: Radius, pixel_range: tuple[float, float]
                    ) -> Project:
    lo, hi = pixel_range
    # the eps ball intersected with the valid range, once; one clamp projects onto both (the
    # same result as foolbox's ball-then-range projection since min/max are exact)
    lower = (x0 - radius).clamp_(lo, hi)
    upper = (x0 + radius).clamp_(lo, hi)
    return lambda x: x.clamp_(lower, upper)


def _linf_noise(shape: torch.Size, generator: torch.Generator | None, dtype: torch.dtype
                ) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1  # uniform in the cube


def l2_normalize(g: torch.Tensor) -> torch.Tensor:
    """``g / ||g||_2`` per sample (norm floored at 1e-12, as foolbox does): a new tensor."""
    norms = g.flatten(1).norm(dim=1).clamp_min_(1e-12)
    return g * _per_sample(1 / norms, g)


def _l2_projector(x0: torch.Tensor, radius: Radius, pixel_range: tuple[float, float]
                  ) -> Project:
    lo, hi = pixel_range

    def project(x: torch.Tensor) -> torch.Tensor:
        # shrink the difference onto the ball (never stretch it), then clip to the range: the
        # clip only shortens the difference, so the result stays in the ball
        d = x.sub_(x0)
        norms = _per_sample(d.flatten(1).norm(dim=1).clamp_min_(1e-12), d)
        return d.mul_((radius / norms).clamp_(max=1.0)).add_(x0).clamp_(lo, hi)
    return project


def _l2_noise(shape: torch.Size, generator: torch.Generator | None, dtype: torch.dtype
              ) -> torch.Tensor:
    # Voelker et al. 2017: a uniform point of the sphere in n + 2 dimensions, first n
    # coordinates, is uniform in the n-ball
    n = math.prod(shape[1:])
    s = torch.randn(shape[0], n + 2, generator=generator, dtype=dtype)
    return (s / s.norm(dim=1, keepdim=True))[:, :n].reshape(shape)


LINF = Norm("linf", torch.sign, _linf_projector, _linf_noise)
L2 = Norm("l2", l2_normalize, _l2_projector, _l2_noise)
NORMS = {n.name: n for n in (LINF, L2)}


def iterate(D: nn.Module, x0: torch.Tensor, x: torch.Tensor, *, radius: Radius, alpha: Radius,
            steps: int, toward: str, pixel_range: tuple[float, float], norm: Norm = LINF
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The iterations in absolute units, on a model already in its probe mode (no checks):
    ``x <- project(x + direction(toward) * alpha * normalize(grad))``.

    Args:
        D: the model to attack (what :func:`probes.core.modes.probe_model` yields).
        x0: clean inputs ``(N, ...)``; the centre of the eps ball.
        x: start point ``(N, ...)`` (``x0``, or a random point of the ball).
        radius, alpha: ball radius and step in ``pixel_range`` units, in ``norm``: floats or
            ``(N, 1, ...)``.
        steps: iterations (>= 1); toward, pixel_range: as in :func:`pgd`.
        norm: the hooks (:data:`LINF` = BIM, :data:`L2` = PGD-L2).

    Returns:
        ``(x_adv, logits at the start point (N,))``; the logits come free with the first
        gradient and are the clean logits when the start is ``x0``.
    """
    project = norm.projector(x0, radius, pixel_range)
    step = direction(toward) * alpha
    logits0 = None
    for _ in range(steps):
        logits, g = logit_grad(D, x)
        logits0 = logits if logits0 is None else logits0
        x = project(norm.normalize(g).mul_(step).add_(x))
    return x, logits0


def pgd(
    D: nn.Module,
    x: torch.Tensor,
    *,
    eps: Eps,
    norm: str = "linf",
    steps: int = 10,
    step_size: Eps | None = None,
    toward: str = "fake",
    pixel_range: tuple[float, float] = (-1.0, 1.0),
    random_start: bool = False,
    generator: torch.Generator | None = None,
    mode: str = "auto",
    reference: torch.Tensor | None = None,
    eps_scale: float | None = None,
) -> torch.Tensor:
    """Projected gradient steps in ``norm``: BIM for ``"linf"``, PGD-L2 for ``"l2"``.

    Args:
        D, x, eps, toward, pixel_range, mode, reference, eps_scale: as in :func:`fgsm`
            (``eps`` float or ``(N,)``: the radius in ``norm``, in eps units).
        norm: ``"linf"`` or ``"l2"`` (:data:`NORMS`).
        steps: number of iterations (>= 1).
        step_size: per-step length in ``norm`` and eps's unit (float or ``(N,)``); default
            :func:`default_step_size`: ``eps / steps * 2.5`` capped at ``eps`` (Madry et al.'s
            rule), and exactly ``eps`` when ``steps == 1`` so that ``bim(steps=1) == fgsm``.
        random_start: start from a uniform point of the eps ball (in ``norm``) instead of
            ``x``, clipped to the range.
        generator: torch generator for the random start (reproducible results); the noise is
            drawn on the CPU, so it does not depend on the device.

    Returns:
        ``x_adv`` with the shape and dtype of ``x``, inside ``pixel_range`` and within the
        radius ``eps * (hi - lo)`` (``eps * eps_scale``) of ``x`` in ``norm``.
    """
    direction(toward)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
    hooks = NORMS[norm]
    radius = eps_to_abs(eps, pixel_range, like=x, scale=eps_scale)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if step_size is None:
        step_size = default_step_size(eps, steps)
    alpha = eps_to_abs(step_size, pixel_range, like=x, scale=eps_scale)
    lo, hi = pixel_range
    x0 = x.detach()
    start = x0
    if random_start:
        noise = hooks.noise(x0.shape, generator, x0.dtype)
        start = (x0 + radius * noise.to(x0.device)).clamp_(lo, hi)
    ref = reference_group(x0, DEFAULT_GROUP) if reference is None else reference
    with probe_model(D, mode, ref) as (model, _):
        x_adv, _ = iterate(model, x0, start, radius=radius, alpha=alpha, steps=steps,
                           toward=toward, pixel_range=pixel_range, norm=hooks)
    return x_adv


def bim(D: nn.Module, x: torch.Tensor, *, eps: Eps, **kwargs) -> torch.Tensor:
    """Basic iterative method: ``steps`` FGSM steps, each projected to the L-inf eps ball and
    the range (:func:`pgd` with ``norm="linf"``; same keywords).

    Examples:
        >>> x_adv = bim(D, x_real, eps=4 / 255, steps=10)
        >>> x_adv = bim(D, x_fake, eps=4 / 255, toward="real", random_start=True,
        ...             generator=torch.Generator().manual_seed(0))
    """
    return pgd(D, x, eps=eps, norm="linf", **kwargs)


def pgd_l2(D: nn.Module, x: torch.Tensor, *, eps: Eps, **kwargs) -> torch.Tensor:
    """PGD in the L2 norm (Madry et al. 2018; foolbox's ``L2PGD`` on the logit): ``steps``
    steps of length ``step_size`` along ``grad / ||grad||_2``, each projected to the L2 ball
    of radius eps and the range (:func:`pgd` with ``norm="l2"``; same keywords).

    eps and step_size are L2 lengths of the whole perturbation (all ``C*H*W`` values) in eps
    units: ``||x_adv - x||_2 <= eps * (hi - lo)`` in pixel units.

    Examples:
        >>> x_adv = pgd_l2(D, x_real, eps=0.5, steps=10)
    """
    return pgd(D, x, eps=eps, norm="l2", **kwargs)
