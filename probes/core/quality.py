"""Sample quality in a feature space: Frechet distance, KID and precision/recall/density/coverage.

All three compare a set of real features with a set of generated features, ``(N, d)`` each
(the digit classifier's penultimate layer, Inception's pool3, or the raw 2-D coordinates):

- **Frechet distance** (Heusel et al. 2017, FID's formula, as pytorch-fid's
  ``calculate_frechet_distance``): ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``
  with unbiased (ddof = 1) covariances. ``tr((S1 S2)^(1/2))`` is computed from eigenvalues,
  without ``scipy.linalg.sqrtm``: S1 S2 has the eigenvalues of the symmetric PSD matrix
  ``M = S1^(1/2) S2 S1^(1/2)``, so the trace of the principal square root is
  ``sum(sqrt(eig(M)))`` (negative round-off eigenvalues clipped to 0). A test checks it
  against the scipy formula.
- **KID** (Binkowski et al. 2018, as torch-fidelity): the unbiased estimator of MMD^2 with the
  polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over ``subsets`` random subsets of
  ``subset_size`` points from each side (drawn without replacement, seeded); reported as mean
  and standard deviation (ddof = 0) over subsets. It can be negative: it is unbiased.
- **PRDC** (Naeem et al. 2020, as the authors' ``prdc`` package): k-NN balls (radius = distance
  to the k-th nearest *other* point of the same set, k = 5) and strict ``<`` comparisons.
  precision = share of fakes inside some real ball; recall = share of reals inside some fake
  ball; density = mean over fakes of (number of real balls containing it) / k; coverage =
  share of reals whose ball holds at least one fake.

Distances are computed in float64 in chunks, so memory stays bounded and results do not depend
on the chunk size. Pure torch + numpy.

Examples:
    >>> fd = frechet_distance(f_real, f_fake)                 # (N, d), (M, d)
    >>> kid(f_real, f_fake, subsets=100, subset_size=1000, seed=0)   # {"mean", "std", ...}
    >>> prdc(f_real, f_fake, k=5)         # {"precision", "recall", "density", "coverage"}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _f64(x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    x = x.detach().to("cpu", torch.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, d), got shape {tuple(x.shape)}")
    return x


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dims differ: {a.shape[1]} vs {b.shape[1]}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("features contain NaN or inf")


# ----------------------------------------------------------------------------- Frechet


def feature_stats(f) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and unbiased covariance ``(d, d)`` (ddof = 1, as ``np.cov``), float64."""
    f = _f64(f)
    if len(f) < 2:
        raise ValueError("need at least 2 feature vectors for a covariance")
    mu = f.mean(0)
    c = f - mu
    return mu.numpy(), (c.T @ c / (len(f) - 1)).numpy()


def _sym_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """``tr((S1 S2)^(1/2))`` for symmetric PSD ``S1``, ``S2`` ``(d, d)``: eigenvalues of
    ``S1^(1/2) S2 S1^(1/2)`` (similar to S1 S2, but symmetric), clipped at 0, square-rooted,
    summed. Equals ``np.trace(scipy.linalg.sqrtm(S1 @ S2)).real`` up to round-off."""
    r = _sym_sqrt(np.asarray(s1, dtype=np.float64))
    m = r @ np.asarray(s2, dtype=np.float64) @ r
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance_from_stats(mu1, s1, mu2, s2) -> float:
    """Frechet distance between N(mu1, S1) and N(mu2, S2): ``|mu1-mu2|^2 + tr(S1 + S2) -
    2 tr((S1 S2)^(1/2))``; float >= 0 up to round-off (feature units squared)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(s1).astype(np.float64), np.atleast_2d(s2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shape mismatch: mu {mu1.shape}/{mu2.shape}, S {s1.shape}/{s2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2))


def frechet_distance(f_real, f_fake) -> float:
    """Frechet distance between two feature sets ``(N, d)`` and ``(M, d)`` (N, M >= 2).

    Examples:
        >>> frechet_distance(f, f)      # ~0 (round-off only)
    """
    a, b = _f64(f_real), _f64(f_fake)
    _check_pair(a, b)
    return frechet_distance_from_stats(*feature_stats(a), *feature_stats(b))


# ----------------------------------------------------------------------------- KID


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, *, degree: int = 3,
                      gamma: float | None = None, coef0: float = 1.0) -> torch.Tensor:
    """``(gamma x.y + coef0)^degree`` for all pairs: ``(N, d), (M, d) -> (N, M)``;
    ``gamma`` None is 1/d (KID's kernel)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(x, y, **kernel: Any) -> float:
    """The unbiased MMD^2 estimate between samples ``x`` (m, d) and ``y`` (n, d):
    mean of k(x_i, x_j) over i != j, plus the same for y, minus 2 * mean of k(x_i, y_j) over
    all pairs (torch-fidelity's ``mmd_est='unbiased'``). Kernel options: see
    :func:`polynomial_kernel`."""
    x, y = _f64(x), _f64(y)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("need at least 2 samples on each side")
    kxx, kyy = polynomial_kernel(x, x, **kernel), polynomial_kernel(y, y, **kernel)
    kxy = polynomial_kernel(x, y, **kernel)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.mean())


FULL_KERNEL_MAX = 16_000_000  # kernel entries (float64: 128 MB) below which KID precomputes


def kid(f_real, f_fake, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
        degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> dict[str, Any]:
    """Kernel Inception Distance in any feature space (unbiased MMD^2, polynomial kernel).

    Args:
        f_real: real features ``(N, d)``.
        f_fake: generated features ``(M, d)``.
        subsets: number of random subset pairs.
        subset_size: points per side in each subset; lowered to min(N, M) when larger
            (the value used is returned).
        seed: seeds the subset choice (numpy ``default_rng``).
        degree, gamma, coef0: the kernel ``(gamma x.y + coef0)^degree``; gamma None = 1/d.

    Returns:
        ``{"mean", "std" (ddof 0, over subsets), "subsets", "subset_size"}``.
    """
    a, b = _f64(f_real), _f64(f_fake)
    _check_pair(a, b)
    size = min(subset_size, len(a), len(b))
    if size < 2 or subsets < 1:
        raise ValueError(f"KID needs subsets >= 1 and >= 2 points per side (got {size})")
    rng = np.random.default_rng(seed)
    kernel = dict(degree=degree, gamma=gamma, coef0=coef0)
    picks = [(rng.choice(len(a), size, replace=False), rng.choice(len(b), size, replace=False))
             for _ in range(subsets)]
    if len(a) ** 2 + len(b) ** 2 + len(a) * len(b) > FULL_KERNEL_MAX:
        values = [mmd2_unbiased(a[torch.from_numpy(ia)], b[torch.from_numpy(ib)], **kernel)
                  for ia, ib in picks]
    else:
        # few points (the study's 2,000): each subset's kernel sums are quadratic forms of the
        # full kernels, computed once, with the subsets' 0/1 indicator vectors: s' K s sums a
        # sub-block (10x faster at 100 subsets of 1,000; equal to float round-off)
        sa = torch.zeros(subsets, len(a), dtype=torch.float64)
        sb = torch.zeros(subsets, len(b), dtype=torch.float64)
        for s, (ia, ib) in enumerate(picks):
            sa[s, torch.from_numpy(ia)] = 1.0
            sb[s, torch.from_numpy(ib)] = 1.0
        kaa, kbb = polynomial_kernel(a, a, **kernel), polynomial_kernel(b, b, **kernel)
        kab = polynomial_kernel(a, b, **kernel)
        pairs = size * (size - 1)
        xx = ((sa @ kaa) * sa).sum(1) - sa @ kaa.diagonal()
        yy = ((sb @ kbb) * sb).sum(1) - sb @ kbb.diagonal()
        xy = ((sa @ kab) * sb).sum(1)
        values = (xx / pairs + yy / pairs - 2 * xy / size ** 2).tolist()
    v = np.asarray(values)
    return {"mean": float(v.mean()), "std": float(v.std()), "subsets": int(subsets),
            "subset_size": int(size)}


# ----------------------------------------------------------------------------- PRDC


def knn_radii(f, k: int = 5, *, chunk: int = 1024) -> torch.Tensor:
    """Distance of every point to its k-th nearest *other* point of the same set: the
    (k+1)-th smallest distance in its row of the self-distance matrix (self = 0 is first),
    as the ``prdc`` package. ``(N, d) -> float64 (N,)``; needs N > k."""
    f = _f64(f)
    if not 0 < k < len(f):
        raise ValueError(f"k must be in 1..N-1 (N = {len(f)}), got {k}")
    out = [torch.cdist(f[i:i + chunk], f).kthvalue(k + 1, dim=1).values
           for i in range(0, len(f), chunk)]
    return torch.cat(out)


def prdc(f_real, f_fake, *, k: int = 5, chunk: int = 1024) -> dict[str, Any]:
    """Precision, recall, density and coverage (Naeem et al. 2020).

    Args:
        f_real: real features ``(N, d)``, N > k.
        f_fake: generated features ``(M, d)``, M > k.
        k: nearest-neighbour count for the ball radii (5 in the paper).
        chunk: fakes per distance block (memory only; results do not depend on it).

    Returns:
        ``{"precision", "recall", "coverage"}`` in [0, 1], ``"density"`` >= 0 (1 when fakes
        look like reals), and ``"k"``.
    """
    real, fake = _f64(f_real), _f64(f_fake)
    _check_pair(real, fake)
    r_real, r_fake = knn_radii(real, k, chunk=chunk), knn_radii(fake, k, chunk=chunk)
    inside = torch.zeros(len(fake), dtype=torch.float64)  # real balls holding each fake
    nearest_fake = torch.full((len(real),), float("inf"), dtype=torch.float64)
    recalled = torch.zeros(len(real), dtype=torch.bool)
    for i in range(0, len(fake), chunk):
        d = torch.cdist(fake[i:i + chunk], real)  # (c, N)
        inside[i:i + chunk] = (d < r_real[None, :]).sum(1).double()
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
        recalled |= (d < r_fake[i:i + chunk, None]).any(0)
    return {"precision": float((inside > 0).double().mean()),
            "recall": float(recalled.double().mean()),
            "density": float(inside.mean() / k),
            "coverage": float((nearest_fake < r_real).double().mean()), "k": int(k)}


def quality_scores(f_real, f_fake, *, k: int = 5, kid_subsets: int = 100,
                   kid_subset_size: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Frechet distance, KID and PRDC of one pair of feature sets, as one JSON-able dict:
    ``{"frechet", "kid": {...}, "prdc": {...}, "n_real", "n_fake", "dim"}``."""
    a, b = _f64(f_real), _f64(f_fake)
    return {"n_real": len(a), "n_fake": len(b), "dim": int(a.shape[1]),
            "frechet": frechet_distance(a, b),
            "kid": kid(a, b, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed),
            "prdc": prdc(a, b, k=k)}
