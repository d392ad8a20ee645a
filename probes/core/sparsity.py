"""Per-image sparsity of input gradients, and bootstrap summaries over images.

The AS-GAN paper reads its Fig. 5 as "adversarial training makes D's gradient sparser". Here
"sparse" is measured per image on the flattened gradient ``g`` (all channels and pixels,
``n`` entries), with the standard measures surveyed by Hurley & Rickard (2009, "Comparing
measures of sparsity", IEEE Trans. Inf. Theory):

========== ======================================================= ============ ===========
key        definition (c = |g|, p = c / sum c)                     range        scale-inv.
========== ======================================================= ============ ===========
l1         sum |g|                                                 [0, inf)     no (linear)
l2         ||g||_2                                                 [0, inf)     no (linear)
l1_l2      ||g||_1 / ||g||_2 (low = sparse)                        [1, sqrt n]  yes
hoyer      (sqrt n - l1/l2) / (sqrt n - 1) (Hoyer 2004)            [0, 1]       yes
gini_hr    sum_k (2k - n - 1) c_(k) / (n sum c), c_(k) ascending   [0, 1 - 1/n] yes
kurtosis   excess kurtosis m4 / m2^2 - 3 of the signed entries     >= -2        yes
entropy    -sum p log p, nats (Quantus' "Complexity")              [0, log n]   yes
eff_support exp(entropy) / n: share of entries carrying the mass   [1/n, 1]     yes
top_mass_* share of sum c held by the largest ceil(f n) entries    [~f, 1]      yes
========== ======================================================= ============ ===========

``gini_hr`` is Hurley & Rickard's Gini index *as they define it* (= Quantus' Sparseness up
to its 1e-7 offset): a one-hot vector scores ``1 - 1/n``, not 1; multiply by ``n / (n - 1)``
for the normalised form. Hoyer and Gini are 1 (resp. 1 - 1/n) for one-hot and 0 for a vector
of constant magnitude. Kurtosis uses biased moments (``scipy.stats.kurtosis`` defaults).
A zero gradient has no direction: its scale-invariant measures are NaN, and summaries skip
NaNs and report how many values they used.

Computed in float64 with torch only, batched, so it can run as an
:func:`probes.core.gradients.input_gradients` reducer. :func:`summarize` and :func:`compare` give
means with percentile-bootstrap confidence intervals over images (numpy, seeded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

TOP_FRACS = (0.01, 0.1)
DEFINITIONS = {
    "l1": "sum |g| over all entries (gradient units; not scale-invariant)",
    "l2": "Euclidean norm of g (gradient units; not scale-invariant)",
    "l1_l2": "||g||_1 / ||g||_2, in [1, sqrt(n)]; lower = sparser",
    "hoyer": "Hoyer (2004): (sqrt(n) - l1/l2) / (sqrt(n) - 1), in [0, 1]; 1 = one-hot",
    "gini_hr": "Gini index, Hurley & Rickard's raw form: one-hot = 1 - 1/n, constant = 0 "
               "(normalised form = gini_hr * n/(n-1))",
    "kurtosis": "excess kurtosis m4/m2^2 - 3 of the signed entries (biased moments)",
    "entropy": "Shannon entropy (nats) of p = |g| / sum|g|, in [0, log n]; lower = sparser",
    "eff_support": "exp(entropy) / n, in [1/n, 1]: share of entries that carry the mass",
    "top_mass": "top_mass_<k>pct: share of sum|g| held by the largest ceil(k% of n) entries",
}
SCALE_INVARIANT = ("l1_l2", "hoyer", "gini_hr", "kurtosis", "entropy", "eff_support")


def _top_key(frac: float) -> str:
    return f"top_mass_{frac * 100:g}pct".replace(".", "p")


def sparsity(g: torch.Tensor, *, top_fracs: Sequence[float] = TOP_FRACS
             ) -> dict[str, torch.Tensor]:
    """Sparsity measures of each sample's gradient.

    Args:
        g: gradients ``(N, ...)`` of any float dtype; each row (all channels and pixels) is
            one vector of ``n >= 2`` entries.
        top_fracs: fractions ``f`` in (0, 1] for the ``top_mass_*`` keys (0.01 ->
            ``top_mass_1pct``).

    Returns:
        ``{key: (N,) float64 tensor}`` with the keys of the module table. Scale-invariant
        keys are NaN for an all-zero row.

    Examples:
        >>> s = sparsity(torch.eye(4))          # four one-hot rows
        >>> s["hoyer"], s["gini_hr"]            # all 1.0, all 0.75 (= 1 - 1/4)
    """
    v = g.detach().flatten(1).double()  # (N, n)
    n = v.shape[1]
    if n < 2:
        raise ValueError(f"sparsity needs at least 2 entries per sample, got {n}")
    c = v.abs()
    l1, l2 = c.sum(1), v.pow(2).sum(1).sqrt()
    ratio = l1 / l2  # NaN for a zero row (0/0), as intended
    c_sorted = c.sort(1).values
    k = torch.arange(1, n + 1, dtype=torch.float64, device=v.device)
    gini = ((2 * k - n - 1) * c_sorted).sum(1) / (n * l1)
    centred = v - v.mean(1, keepdim=True)
    m2, m4 = centred.pow(2).mean(1), centred.pow(4).mean(1)
    p = c / l1.unsqueeze(1)
    entropy = 0.0 - torch.xlogy(p, p).sum(1)  # 0 log 0 = 0; '0.0 -' avoids a -0.0
    out = {"l1": l1, "l2": l2, "l1_l2": ratio,
           "hoyer": (math.sqrt(n) - ratio) / (math.sqrt(n) - 1), "gini_hr": gini,
           "kurtosis": m4 / m2.pow(2) - 3.0, "entropy": entropy,
           "eff_support": entropy.exp() / n}
    for f in top_fracs:
        if not 0 < f <= 1:
            raise ValueError(f"top_fracs must lie in (0, 1], got {f}")
        top = c_sorted[:, n - max(1, math.ceil(f * n)):]
        out[_top_key(f)] = top.sum(1) / l1
    return out


# ----------------------------------------------------------------- summaries over images
def _as_numpy(v) -> np.ndarray:
    return v.detach().double().cpu().numpy() if torch.is_tensor(v) else np.asarray(v, float)


def _boot_means(v: np.ndarray, n_boot: int, rng: np.random.Generator, chunk: int = 256
                ) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``v``, drawn in chunks so memory
    stays O(chunk * len(v))."""
    out = np.empty(n_boot)
    for s in range(0, n_boot, chunk):
        idx = rng.integers(0, len(v), size=(min(chunk, n_boot - s), len(v)))
        out[s:s + len(idx)] = v[idx].mean(1)
    return out


def summarize(per_image: Mapping[str, object], *, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean, std, median and a percentile-bootstrap CI of the mean, per measure.

    Args:
        per_image: ``{key: (N,) values}`` (tensors or arrays), e.g. :func:`sparsity` output.
        n_boot: bootstrap resamples over images (0 = no CI).
        level: confidence level of the interval.
        seed: seeds the resampling (numpy ``default_rng``); each key gets its own stream
            derived from ``seed`` and the key, so adding a measure does not move the others.

    Returns:
        ``{key: {"mean", "std", "median", "ci_low", "ci_high", "n"}}``; NaNs are skipped and
        ``n`` counts the finite values used (all-NaN gives NaN statistics and n = 0).
    """
    out = {}
    for key, values in per_image.items():
        v = _as_numpy(values).ravel()
        v = v[np.isfinite(v)]
        if len(v) == 0:
            nan = float("nan")
            out[key] = {"mean": nan, "std": nan, "median": nan, "ci_low": nan,
                        "ci_high": nan, "n": 0}
            continue
        row = {"mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v))}
        row["ci_low"], row["ci_high"] = _ci(v, n_boot, level, _rng(seed, key))
        row["n"] = len(v)
        out[key] = row
    return out


def compare(a: Mapping[str, object], b: Mapping[str, object], *, n_boot: int = 1000,
            level: float = 0.95, seed: int = 0) -> dict[str, dict[str, float]]:
    """Paired comparison of two checkpoints measured on the *same* inputs (row i of ``a``
    and of ``b`` are the same image).

    Returns:
        ``{key: {"diff", "ci_low", "ci_high", "share_a_gt_b", "n"}}`` with ``diff`` the mean
        of ``a - b`` over images where both are finite and its paired-bootstrap CI.
    """
    out = {}
    for key in a:
        if key not in b:
            continue
        va, vb = _as_numpy(a[key]).ravel(), _as_numpy(b[key]).ravel()
        if len(va) != len(vb):
            raise ValueError(f"paired comparison needs equal lengths for {key!r}: "
                             f"{len(va)} vs {len(vb)}")
        ok = np.isfinite(va) & np.isfinite(vb)
        d = va[ok] - vb[ok]
        if len(d) == 0:
            continue
        lo, hi = _ci(d, n_boot, level, _rng(seed, key))
        out[key] = {"diff": float(d.mean()), "ci_low": lo, "ci_high": hi,
                    "share_a_gt_b": float((d > 0).mean()), "n": len(d)}
    return out


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed % 2**63, *key.encode()])  # any int seed, per key


def _ci(v: np.ndarray, n_boot: int, level: float, rng: np.random.Generator
        ) -> tuple[float, float]:
    if n_boot <= 0 or len(v) < 2:
        return float("nan"), float("nan")
    means = _boot_means(v, n_boot, rng)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
