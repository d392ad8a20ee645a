"""Sparsity measures: analytic cases, numpy/scipy and Quantus oracles, summaries, streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from probes.core.sparsity import SCALE_INVARIANT, compare, sparsity, summarize

N = 64  # entries per vector in the analytic cases


def _one_hot(n=N, at=5):
    v = torch.zeros(1, n, dtype=torch.float64)
    v[0, at] = -3.0  # the sign must not matter
    return v


# --------------------------------------------------------------------------- analytic
ANALYTIC = [
    # (name, vector, key, expected)
    ("one-hot hoyer", _one_hot(), "hoyer", 1.0),
    ("one-hot gini is 1-1/n (Hurley-Rickard raw)", _one_hot(), "gini_hr", 1 - 1 / N),
    ("one-hot l1/l2", _one_hot(), "l1_l2", 1.0),
    ("one-hot entropy", _one_hot(), "entropy", 0.0),
    ("one-hot support", _one_hot(), "eff_support", 1 / N),
    ("one-hot top 1%", _one_hot(), "top_mass_1pct", 1.0),
    ("constant hoyer", torch.full((1, N), 0.7, dtype=torch.float64), "hoyer", 0.0),
    ("constant gini", torch.full((1, N), 0.7, dtype=torch.float64), "gini_hr", 0.0),
    ("constant l1/l2", torch.full((1, N), 0.7, dtype=torch.float64), "l1_l2", math.sqrt(N)),
    ("constant entropy", torch.full((1, N), 0.7, dtype=torch.float64), "entropy", math.log(N)),
    ("constant support", torch.full((1, N), 0.7, dtype=torch.float64), "eff_support", 1.0),
    ("constant top 10%", torch.full((1, N), 0.7, dtype=torch.float64), "top_mass_10pct",
     math.ceil(0.1 * N) / N),
    ("+-1 signs count as constant magnitude",
     torch.tensor([[1.0, -1.0] * (N // 2)], dtype=torch.float64), "hoyer", 0.0),
    # half the entries zero, the rest equal: gini = 1/2, l1/l2 = sqrt(n/2)
    ("half support gini", torch.tensor([[0.0] * (N // 2) + [2.0] * (N // 2)]), "gini_hr", 0.5),
    ("half support l1/l2", torch.tensor([[0.0] * (N // 2) + [2.0] * (N // 2)]), "l1_l2",
     math.sqrt(N / 2)),
    ("symmetric two-point kurtosis", torch.tensor([[1.0, -1.0] * (N // 2)]), "kurtosis", -2.0),
]


@pytest.mark.parametrize("v,key,expected", [a[1:] for a in ANALYTIC], ids=[a[0] for a in ANALYTIC])
def test_analytic_values(v, key, expected):
    assert sparsity(v)[key].item() == pytest.approx(expected, abs=1e-12)


def test_image_shaped_input_is_flattened_per_sample():
    g = torch.zeros(3, 2, 4, 4)
    g[0, 1, 2, 3] = 1.0
    g[1] = 1.0
    g[2, :, 0, 0] = 5.0
    s = sparsity(g)
    assert s["hoyer"].tolist() == pytest.approx([1.0, 0.0, (math.sqrt(32) - math.sqrt(2))
                                                 / (math.sqrt(32) - 1)])


def test_zero_gradient_is_nan_not_a_number():
    s = sparsity(torch.zeros(2, 10))
    assert s["l1"].tolist() == [0.0, 0.0]
    for key in SCALE_INVARIANT:
        assert torch.isnan(s[key]).all(), key


@pytest.mark.parametrize("scale", [1e-6, 0.5, 3.0, -2.0, 1e5], ids=lambda s: f"x{s:g}")
def test_scale_invariance(scale):
    g = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(0)).double() ** 3
    a, b = sparsity(g), sparsity(scale * g)
    for key in SCALE_INVARIANT + ("top_mass_1pct", "top_mass_10pct"):
        assert torch.allclose(a[key], b[key], rtol=1e-9, atol=1e-12), key
    assert torch.allclose(b["l1"], abs(scale) * a["l1"])
    assert torch.allclose(b["l2"], abs(scale) * a["l2"])


def test_sparser_vectors_score_sparser():
    gen = torch.Generator().manual_seed(3)
    dense = torch.randn(20, 256, generator=gen, dtype=torch.float64)
    sparse = dense * (torch.rand(20, 256, generator=gen, dtype=torch.float64) < 0.05)
    sd, ss = sparsity(dense), sparsity(sparse)
    assert (ss["hoyer"] > sd["hoyer"]).all() and (ss["gini_hr"] > sd["gini_hr"]).all()
    assert (ss["entropy"] < sd["entropy"]).all() and (ss["kurtosis"] > sd["kurtosis"]).all()


# ------------------------------------------------------------------------- oracles
def _numpy_reference(v: np.ndarray) -> dict[str, float]:
    """Textbook formulas, written independently of probes.core.sparsity."""
    n, c = v.size, np.abs(v)
    l1, l2 = c.sum(), np.sqrt((v ** 2).sum())
    # Hurley & Rickard (2009) eq. for the Gini index, sorted ascending, 1-based k
    cs = np.sort(c)
    gini = 1 - 2 * np.sum(cs / l1 * (n - np.arange(1, n + 1) + 0.5) / n)
    k = math.ceil(0.1 * n)
    return {"l1": l1, "l2": l2, "l1_l2": l1 / l2,
            "hoyer": (np.sqrt(n) - l1 / l2) / (np.sqrt(n) - 1), "gini_hr": gini,
            "kurtosis": scipy.stats.kurtosis(v, fisher=True, bias=True),
            "entropy": scipy.stats.entropy(c / l1),
            "top_mass_10pct": np.sort(c)[-k:].sum() / l1}


@pytest.mark.parametrize("dist", ["normal", "laplace", "cauchy-ish", "sparse"])
def test_against_numpy_scipy(dist):
    rng = np.random.default_rng(7)
    draws = {"normal": lambda: rng.normal(size=(6, 300)),
             "laplace": lambda: rng.laplace(size=(6, 300)),
             "cauchy-ish": lambda: rng.standard_t(2, size=(6, 300)),
             "sparse": lambda: rng.normal(size=(6, 300)) * (rng.random((6, 300)) < 0.1)}
    g = draws[dist]()
    ours = sparsity(torch.from_numpy(g))
    for i, row in enumerate(g):
        for key, want in _numpy_reference(row).items():
            assert ours[key][i].item() == pytest.approx(want, rel=1e-9, abs=1e-12), key


def test_against_quantus_sparseness_and_complexity():
    """Quantus 0.6.0: Sparseness is the Gini index of |a| (it adds 1e-7 to every entry),
    Complexity the entropy of |a| / sum |a|. Called on precomputed attributions (a_batch)."""
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(11)
    a = rng.laplace(size=(5, 1, 12, 12))
    a[2] *= rng.random((1, 12, 12)) < 0.05  # one very sparse map
    x = rng.random((5, 1, 12, 12))
    y = np.zeros(5, dtype=int)
    kw = dict(abs=True, normalise=False, disable_warnings=True, display_progressbar=False)
    q_gini = quantus.Sparseness(**kw)(model=None, x_batch=x, y_batch=y, a_batch=a.copy())
    q_ent = quantus.Complexity(**kw)(model=None, x_batch=x, y_batch=y, a_batch=a.copy())
    ours = sparsity(torch.from_numpy(a))
    # Quantus' +1e-7 offset moves a Gini of entries of size ~1 by < 1e-6
    assert ours["gini_hr"].numpy() == pytest.approx(np.array(q_gini), abs=1e-5)
    assert ours["entropy"].numpy() == pytest.approx(np.array(q_ent), abs=1e-9)


# ----------------------------------------------------------------------- summaries
def test_summary_is_seeded_and_brackets_the_mean():
    v = torch.randn(400, generator=torch.Generator().manual_seed(0)).double() + 2
    a = summarize({"m": v}, n_boot=500, seed=1)["m"]
    b = summarize({"m": v}, n_boot=500, seed=1)["m"]
    c = summarize({"m": v}, n_boot=500, seed=2)["m"]
    assert a == b and a != c
    assert a["ci_low"] < a["mean"] < a["ci_high"]
    assert a["mean"] == pytest.approx(v.mean().item())
    # the percentile CI of a mean is about +-1.96 standard errors
    se = v.std().item() / math.sqrt(len(v))
    assert a["ci_high"] - a["ci_low"] == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_summary_skips_nan_and_counts():
    s = summarize({"m": [1.0, float("nan"), 3.0], "z": [float("nan")] * 2}, n_boot=50)
    assert s["m"]["n"] == 2 and s["m"]["mean"] == 2.0
    assert s["z"]["n"] == 0 and math.isnan(s["z"]["mean"])


def test_summary_of_one_key_does_not_depend_on_the_others():
    v = np.arange(50.0)
    alone = summarize({"a": v}, n_boot=200, seed=0)["a"]
    with_other = summarize({"b": v[::-1], "a": v}, n_boot=200, seed=0)["a"]
    assert alone == with_other


def test_paired_compare():
    gen = np.random.default_rng(0)
    a = gen.normal(size=300)
    b = a - 0.5 + 0.01 * gen.normal(size=300)
    out = compare({"m": a}, {"m": b}, n_boot=300)["m"]
    assert out["diff"] == pytest.approx(0.5, abs=0.01)
    assert out["ci_low"] > 0.49 and out["ci_high"] < 0.51  # pairing removes the spread of a
    assert out["share_a_gt_b"] == 1.0
    with pytest.raises(ValueError, match="equal lengths"):
        compare({"m": a}, {"m": b[:10]})
