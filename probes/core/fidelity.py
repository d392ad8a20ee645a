"""Gradient fidelity on the 2-D mixtures: D's input gradient measured against the truth.

The AS-GAN paper calls part of D's input gradient "adversarial noise" but never says noise
*relative to what*. On a 2-D Gaussian mixture the data density ``p_data`` is known, so the
direction a generated sample *should* move is known too: the optimal discriminator of the
GAN objective has logit ``D*(x) = log p_data(x) - log p_g(x)`` (Goodfellow et al. 2014,
Prop. 1), and G ascends ``D``, so the ideal direction at a fake ``x`` is

    ideal(x) = grad_x [ log p_data(x) - log p_g(x) ].

Estimator. ``p_g`` is unknown; it is estimated by a Gaussian kernel density estimate (KDE) of
``m`` further samples of G with bandwidth ``h``. A KDE is biased: its expectation is ``p_g``
convolved with ``N(0, h^2 I)``. To compare like with like, ``p_data`` is convolved with the same
kernel, which for an isotropic mixture is exact and analytic (each mode's std becomes
``sqrt(std^2 + h^2)``). The estimated ideal direction is therefore the gradient of the optimal
logit between the two *h-smoothed* distributions,

    ideal_h(x) = grad_x [ log (p_data * K_h)(x) - log p_hat_{g,h}(x) ],

which is exactly zero in expectation when G equals the data (for any ``h``) and tends to
``ideal(x)`` as ``h -> 0``. Both terms are differentiated with autograd (a test checks them
against finite differences).

Bandwidth. ``h`` maximises the log-likelihood of held-out G samples under the KDE of the
others (likelihood cross-validation over a log grid, :func:`select_bandwidth`); Scott's rule
is not used because on a multi-modal mixture it follows the spread of the whole mixture, not
of a mode, and over-smooths by one to two orders of magnitude.

Per fake ``x_i`` with D's logit gradient ``g_i``: ``cos_i = <g_i, ideal_i> / (|g_i| |ideal_i|)``
and the **noise share** ``1 - cos_i^2``, the fraction of the gradient's energy orthogonal to the
ideal direction (0: all of it points along the truth or against it; 1: none). Torch only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

LOG_2PI = math.log(2 * math.pi)


def mixture_log_density(x: torch.Tensor, modes: torch.Tensor, std: float, h: float = 0.0
                        ) -> torch.Tensor:
    """``log p(x)`` ``(N,)`` of the equal-weight isotropic Gaussian mixture with ``modes``
    ``(K, d)`` and per-coordinate ``std``, convolved with ``N(0, h^2 I)`` (``h = 0``: itself).
    ``x`` ``(N, d)`` in data units; float64 inside for accuracy far from the modes."""
    x64, mu = x.double(), modes.to(device=x.device, dtype=torch.float64)
    var = std ** 2 + h ** 2
    d = x.shape[1]
    sq = torch.cdist(x64, mu).square()  # (N, K)
    logk = -0.5 * sq / var - 0.5 * d * (LOG_2PI + math.log(var))
    return (torch.logsumexp(logk, dim=1) - math.log(mu.shape[0])).to(x.dtype)


def kde_log_density(x: torch.Tensor, samples: torch.Tensor, h: float, *, chunk: int = 4096
                    ) -> torch.Tensor:
    """``log p_hat(x)`` ``(N,)``: Gaussian KDE of ``samples`` ``(m, d)`` with bandwidth ``h``
    (per coordinate), at ``x`` ``(N, d)``; float64 inside, chunked over ``samples`` so memory
    stays O(N * chunk). Differentiable in ``x``."""
    if h <= 0:
        raise ValueError(f"bandwidth must be > 0, got {h}")
    x64, s = x.double(), samples.to(device=x.device, dtype=torch.float64)
    d = x.shape[1]
    parts = [torch.logsumexp(-0.5 * torch.cdist(x64, s[i:i + chunk]).square() / h ** 2, dim=1)
             for i in range(0, s.shape[0], chunk)]
    lse = torch.logsumexp(torch.stack(parts, dim=1), dim=1)
    return (lse - math.log(s.shape[0]) - 0.5 * d * (LOG_2PI + 2 * math.log(h))).to(x.dtype)


def select_bandwidth(samples: torch.Tensor, held: torch.Tensor,
                     grid: Sequence[float] | None = None) -> tuple[float, list[dict]]:
    """The ``h`` of ``grid`` (default: 25 values log-spaced over 1e-3..1 times the samples'
    per-coordinate std) maximising the mean held-out log-likelihood of ``held`` under the KDE of
    ``samples``. Returns ``(h, [{"h", "loglik"}...])`` (the whole curve, for the record)."""
    if grid is None:
        scale = float(samples.double().std(dim=0).mean())
        grid = [scale * 10 ** (k / 8) for k in range(-24, 1)]
    curve = [{"h": float(h), "loglik": float(kde_log_density(held, samples, float(h)).mean())}
             for h in grid]
    best = max(curve, key=lambda r: r["loglik"])
    return best["h"], curve


def ideal_direction(x: torch.Tensor, modes: torch.Tensor, std: float, g_samples: torch.Tensor,
                    h: float) -> torch.Tensor:
    """``ideal_h(x)`` ``(N, d)`` of the module docstring: the input gradient of the optimal
    logit between ``p_data * K_h`` and the KDE of ``g_samples`` with bandwidth ``h``."""
    xr = x.detach().double().requires_grad_(True)
    logit = mixture_log_density(xr, modes, std, h) - kde_log_density(xr, g_samples, h)
    (grad,) = torch.autograd.grad(logit.sum(), xr)
    return grad.to(x.dtype)


def fidelity(grad: torch.Tensor, ideal: torch.Tensor, *, tiny: float = 1e-12
             ) -> dict[str, torch.Tensor]:
    """Per-sample agreement of D's input gradients ``grad`` ``(N, d)`` with ``ideal`` ``(N, d)``.

    Returns ``cos`` (in [-1, 1]), ``noise`` (``1 - cos^2``, in [0, 1]), ``grad_norm`` and
    ``ideal_norm``, each ``(N,)``; ``cos`` and ``noise`` are NaN where either vector is zero
    (below ``tiny``): no direction to compare.
    """
    g, t = grad.double().flatten(1), ideal.double().flatten(1)
    gn, tn = g.norm(dim=1), t.norm(dim=1)
    ok = (gn > tiny) & (tn > tiny)
    cos = torch.where(ok, (g * t).sum(dim=1) / (gn * tn).clamp_min(tiny),
                      torch.full_like(gn, float("nan"))).clamp(-1, 1)
    return {"cos": cos, "noise": 1 - cos.square(), "grad_norm": gn, "ideal_norm": tn}
