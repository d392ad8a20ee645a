"""Mode coverage: the PacGAN / VEEGAN metrics on 2-D mixtures and stacked MNIST.

**2-D mixtures** (PacGAN, Lin et al. 2018, as in the authors' ``MetricLogger``; VEEGAN uses the
same 3-std rule): each generated point is assigned to its nearest mode; it is *high quality*
when its distance to that mode is strictly below ``n_std`` (3) standard deviations. The
per-mode histogram counts high-quality points only. Then

- ``modes_captured`` = number of modes with at least one high-quality point;
- ``high_quality`` = high-quality points / all points (a fraction in [0, 1]);
- ``reverse_kl`` = KL(p || uniform) = sum_k p_k log(K p_k), where p is the histogram normalised
  over the high-quality points and the sum runs over modes with p_k > 0 (0 log 0 = 0), so empty
  modes add nothing and the value stays finite: it is log K - H(p), 0 for a perfectly even
  histogram and log K when every point sits in one mode. Natural log (nats). With no
  high-quality point at all, p is undefined and ``reverse_kl`` is None.

For an isotropic mixture the true-mixture share of high-quality points is the 2-D Gaussian mass
within 3 std, 1 - exp(-9/2) = 0.98889 (modes far apart, as on ring8 and grid25).

**Stacked MNIST** (VEEGAN / PacGAN): each of the three channels of a sample is classified as a
digit; the mode is the triple (1000 possible). ``modes_captured`` = distinct triples, ``kl`` =
KL(p_gen || uniform over 1000) with p_gen the histogram over all samples, empty modes adding 0,
exactly as PacGAN's ``log_metrics``.

Pure torch + numpy; samples and mode tables come from the caller (see ``trainers.data``:
``ring8_modes()``, ``grid25_modes()``, ``Dataset.info["std"]``).

Examples:
    >>> from trainers.data import ring8_modes
    >>> r = mixture_coverage(x, ring8_modes(), std=0.01)      # x (2500, 2)
    >>> r["modes_captured"], r["high_quality"], r["reverse_kl"]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

N_STD = 3.0
STACKED_MODES = 1000
HQ_TRUE_MIXTURE = 1.0 - math.exp(-N_STD ** 2 / 2)  # 2-D Gaussian mass within 3 std: 0.98889

PROTOCOL_2D = ("PacGAN/VEEGAN: nearest mode per sample; high quality if its distance is < 3 std "
               "of that mode; modes captured = modes with >= 1 high-quality sample; reverse KL = "
               "KL(p || uniform) in nats over the histogram of high-quality samples, empty modes "
               "contributing 0 (PacGAN's code)")
PROTOCOL_STACKED = ("VEEGAN/PacGAN: each RGB channel classified as a digit; mode = digit "
                    "triple (1000); modes = distinct triples among the samples; KL = "
                    "KL(p_gen || uniform over 1000) in nats, empty modes contributing 0")


def _as_float64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64)


def nearest_mode(x: torch.Tensor, modes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and Euclidean distance to the nearest mode of every point.

    Args:
        x: points ``(N, d)``, any float dtype, in the data's own units.
        modes: mode centres ``(K, d)``.

    Returns:
        ``(index int64 (N,), distance float64 (N,))``; ties go to the lower mode index.
    """
    x, modes = _as_float64(x), _as_float64(modes)
    if x.ndim != 2 or modes.ndim != 2 or x.shape[1] != modes.shape[1]:
        raise ValueError(f"need points (N, d) and modes (K, d); got {tuple(x.shape)} and "
                         f"{tuple(modes.shape)}")
    d = torch.cdist(x, modes)  # (N, K); float64 keeps 3-std tests exact at std 0.01
    dist, idx = d.min(dim=1)
    return idx, dist


def mode_kl(counts, n_modes: int | None = None) -> float | None:
    """KL(p || uniform over ``n_modes``) in nats, p = counts / counts.sum().

    Modes with zero count contribute 0 (0 log 0 = 0), so the value is finite: it equals
    log(n_modes) - H(p). Returns None when all counts are 0 (p undefined).

    Args:
        counts: non-negative counts ``(K,)`` (a list, numpy array or tensor).
        n_modes: size of the uniform's support; default ``len(counts)``.
    """
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if (c < 0).any():
        raise ValueError("counts must be non-negative")
    k = len(c) if n_modes is None else int(n_modes)
    total = c.sum()
    if total == 0:
        return None
    p = c[c > 0] / total
    return float(np.sum(p * np.log(p * k)))


def mixture_coverage(x: torch.Tensor, modes: torch.Tensor, std: float, *,
                     n_std: float = N_STD) -> dict[str, Any]:
    """The PacGAN 2-D metrics of generated points ``x`` against an isotropic mixture.

    Args:
        x: generated points ``(N, 2)`` (or ``(N, d)``) in data units.
        modes: the mixture's means ``(K, d)``.
        std: the per-coordinate standard deviation of every component (data units).
        n_std: the high-quality radius in units of ``std`` (3 in PacGAN/VEEGAN).

    Returns:
        ``{"n", "modes_total", "modes_captured", "high_quality" (fraction), "high_quality_pct",
        "reverse_kl" (nats, or None), "counts" (K ints: high-quality points per mode),
        "assigned" (K ints: all points per nearest mode), "n_std", "std"}``.

    Examples:
        >>> r = mixture_coverage(torch.zeros(10, 2), torch.tensor([[0., 0.], [1., 1.]]), 0.1)
        >>> r["modes_captured"], r["high_quality"]
        (1, 1.0)
    """
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    idx, dist = nearest_mode(x, modes)
    k = len(modes)
    good = dist < n_std * std  # strict, as PacGAN's `min_dis < dis_thre`
    counts = torch.bincount(idx[good], minlength=k)
    assigned = torch.bincount(idx, minlength=k)
    n = len(idx)
    hq = float(good.sum()) / n if n else 0.0
    return {"n": n, "modes_total": k, "modes_captured": int((counts > 0).sum()),
            "high_quality": hq, "high_quality_pct": 100.0 * hq,
            "reverse_kl": mode_kl(counts.numpy(), k), "counts": counts.tolist(),
            "assigned": assigned.tolist(), "n_std": float(n_std), "std": float(std)}


def stacked_modes(digits: torch.Tensor) -> torch.Tensor:
    """Digit triples ``(N, 3)`` int (R, G, B) -> mode codes ``100 R + 10 G + B`` int64 (N,)."""
    digits = torch.as_tensor(digits).long()
    if digits.ndim != 2 or digits.shape[1] != 3:
        raise ValueError(f"need digit triples (N, 3), got {tuple(digits.shape)}")
    if digits.numel() and (digits.min() < 0 or digits.max() > 9):
        raise ValueError("digits must be in 0..9")
    return digits @ torch.tensor([100, 10, 1])


def stacked_coverage(digits: torch.Tensor) -> dict[str, Any]:
    """Stacked-MNIST modes and KL from per-channel digit predictions.

    Args:
        digits: int ``(N, 3)``: the predicted digit of the R, G and B channel of each sample.

    Returns:
        ``{"n", "modes_total": 1000, "modes_captured", "kl" (nats; None for N = 0),
        "counts" (1000 ints, index = 100 R + 10 G + B)}``.
    """
    codes = stacked_modes(digits)
    counts = torch.bincount(codes, minlength=STACKED_MODES)
    return {"n": len(codes), "modes_total": STACKED_MODES,
            "modes_captured": int((counts > 0).sum()),
            "kl": mode_kl(counts.numpy(), STACKED_MODES), "counts": counts.tolist()}
