"""Mode coverage (PacGAN / VEEGAN metrics): analytic cases, the true mixtures, an oracle loop
written after PacGAN's MetricLogger, contracts, and the published reference tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probes.core import coverage
from probes.core.coverage import (
    HQ_TRUE_MIXTURE,
    mixture_coverage,
    mode_kl,
    nearest_mode,
    stacked_coverage,
    stacked_modes,
)
from probes.measures import references
from trainers.data import grid25_modes, load_dataset, ring8_modes

MIXTURES = {"ring8": (ring8_modes, 0.01), "grid25": (grid25_modes, 0.05)}


# ----------------------------------------------------------------------------- analytic


def test_the_eight_ring_modes_are_distinct_and_evenly_spaced():
    modes = ring8_modes()
    assert modes.shape == (8, 2)
    d = torch.cdist(modes, modes) + torch.eye(8) * 10
    # neighbours 2*pi/8 apart on the unit circle: chord 2 sin(pi/8) = 0.765; the linspace(0,
    # 2*pi, 8) bug would put modes 0 and 7 on one point (distance 0)
    assert d.min() == pytest.approx(2 * math.sin(math.pi / 8), abs=1e-12)
    assert torch.allclose(modes.norm(dim=1), torch.ones(8, dtype=torch.float64))
    angles = torch.atan2(modes[:, 1], modes[:, 0]) % (2 * math.pi)
    assert torch.allclose(angles, 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8)
    assert len({tuple(np.round(m, 9)) for m in modes.numpy()}) == 8


def test_grid25_modes_are_the_pacgan_grid():
    modes = grid25_modes()
    assert {tuple(m) for m in modes.tolist()} == {(a, b) for a in range(-4, 5, 2)
                                                  for b in range(-4, 5, 2)}


@pytest.mark.parametrize("counts,n_modes,expected", [
    ([5, 5, 5, 5], None, 0.0),
    ([7, 0, 0, 0], None, math.log(4)),
    ([3, 3, 0, 0], None, math.log(2)),
    ([1], 1000, math.log(1000)),
    ([2, 1, 1], None, 0.5 * math.log(1.5) + 0.5 * math.log(0.75)),
    ([0, 0, 0], None, None),
], ids=["uniform", "one-mode", "half", "one-of-1000", "uneven", "empty"])
def test_mode_kl_is_kl_to_uniform_with_empty_modes_adding_zero(counts, n_modes, expected):
    got = mode_kl(counts, n_modes)
    assert (got is None) if expected is None else got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", list(MIXTURES))
def test_all_samples_at_one_mode_score_one_mode(name):
    modes_fn, std = MIXTURES[name]
    modes = modes_fn()
    x = modes[3].repeat(500, 1) + 0.5 * std * torch.randn(500, 2, dtype=torch.float64,
                                                         generator=torch.Generator().manual_seed(0))
    r = mixture_coverage(x, modes, std)
    assert r["modes_captured"] == 1 and r["counts"][3] > 0
    assert r["reverse_kl"] == pytest.approx(math.log(len(modes)))
    assert r["high_quality"] > 0.9


@pytest.mark.parametrize("radius_std,is_hq", [(2.999, True), (3.0, False), (3.001, False),
                                              (0.0, True)],
                         ids=["inside", "on-boundary", "outside", "centre"])
def test_three_std_rule_is_strict(radius_std, is_hq):
    modes, std = ring8_modes(), 0.01
    x = modes[:1] + torch.tensor([[0.0, radius_std * std]], dtype=torch.float64)
    r = mixture_coverage(x, modes, std)
    assert r["high_quality"] == float(is_hq) and r["modes_captured"] == int(is_hq)


def test_points_off_every_mode_are_low_quality_and_kl_is_undefined():
    r = mixture_coverage(torch.zeros(100, 2), ring8_modes(), 0.01)  # the ring's centre
    assert r["high_quality"] == 0 and r["modes_captured"] == 0 and r["reverse_kl"] is None
    assert sum(r["assigned"]) == 100 and sum(r["counts"]) == 0


def test_stacked_coverage_analytic():
    one = stacked_coverage(torch.tensor([[1, 2, 3]] * 50))
    assert one["modes_captured"] == 1 and one["counts"][123] == 50
    assert one["kl"] == pytest.approx(math.log(1000))
    every = torch.cartesian_prod(*[torch.arange(10)] * 3)  # all 1000 triples once
    r = stacked_coverage(every)
    assert r["modes_captured"] == 1000 and r["kl"] == pytest.approx(0.0, abs=1e-12)
    assert stacked_modes(torch.tensor([[9, 0, 7]])).item() == 907


# ----------------------------------------------------------------------------- true mixtures


@pytest.mark.parametrize("name", list(MIXTURES))
def test_true_mixture_scores_every_mode_and_989_permille_high_quality(name):
    modes_fn, std = MIXTURES[name]
    ds = load_dataset(name, seed=0)
    r = mixture_coverage(ds.get(torch.arange(2500)), modes_fn(), std)  # the protocol's 2,500
    assert r["modes_captured"] == len(modes_fn())
    sd = math.sqrt(HQ_TRUE_MIXTURE * (1 - HQ_TRUE_MIXTURE) / 2500)
    assert abs(r["high_quality"] - HQ_TRUE_MIXTURE) < 4 * sd
    assert r["reverse_kl"] < 0.02  # sampling noise only: about (K - 1) / (2 n)
    big = mixture_coverage(ds.get(torch.arange(100_000)), modes_fn(), std)
    assert big["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.002)


# ----------------------------------------------------------------------------- oracle


def _pacgan_loop(x: np.ndarray, modes: np.ndarray, std: float) -> np.ndarray:
    """PacGAN's MetricLogger, loop for loop: Mahalanobis distance with diagonal variances."""
    counts = np.zeros(len(modes))
    for point in x:
        best, best_j = 1e7, -1
        for j, m in enumerate(modes):
            dis = math.sqrt(np.sum((point - m) ** 2 / np.array([std ** 2, std ** 2])))
            if dis < best:
                best, best_j = dis, j
        if best < 3:
            counts[best_j] += 1
    return counts


@pytest.mark.parametrize("name", list(MIXTURES))
def test_matches_pacgan_metric_loop(name):
    modes_fn, std = MIXTURES[name]
    modes = modes_fn()
    g = torch.Generator().manual_seed(1)
    # points spread from 0 to ~6 std around random modes: both sides of the boundary
    x = modes[torch.randint(len(modes), (400,), generator=g)] \
        + 2.5 * std * torch.randn(400, 2, dtype=torch.float64, generator=g)
    counts = _pacgan_loop(x.numpy(), modes.numpy(), std)
    r = mixture_coverage(x, modes, std)
    assert r["counts"] == counts.astype(int).tolist()
    assert r["modes_captured"] == int((counts > 0).sum())
    assert r["high_quality"] == pytest.approx(counts.sum() / 400)
    p = counts / counts.sum()
    entropy = -sum(q * math.log(q) for q in p if q > 0)
    assert r["reverse_kl"] == pytest.approx(math.log(len(modes)) - entropy)


# ----------------------------------------------------------------------------- contracts


def test_order_dtype_and_input_are_left_alone():
    modes, std = grid25_modes(), 0.05
    x = load_dataset("grid25", seed=3).get(torch.arange(1000))
    before = x.clone()
    a = mixture_coverage(x, modes, std)
    b = mixture_coverage(x[torch.randperm(1000, generator=torch.Generator().manual_seed(0))],
                         modes, std)
    c = mixture_coverage(x.double(), modes, std)
    assert a == b == c
    assert torch.equal(x, before)


def test_nearest_mode_shapes_and_ties():
    idx, dist = nearest_mode(torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert idx.tolist() == [0] and dist.tolist() == [0.5]  # a tie goes to the lower index
    with pytest.raises(ValueError):
        nearest_mode(torch.zeros(3, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError):
        mixture_coverage(torch.zeros(3, 2), torch.zeros(2, 2), std=0.0)


# ----------------------------------------------------------------------------- references


def test_published_tables_hold_the_reference_numbers():
    ring = {t["name"]: t["rows"] for t in references.tables_for("ring8")}
    assert ring["PacGAN Table 1"]["GAN"] == {"modes": [6.3, 0.5], "high_quality_pct": [98.2, 0.2],
                                             "reverse_kl": [0.45, 0.09]}
    assert ring["VEEGAN Table 1"]["VEEGAN"]["high_quality_pct"] == [52.9, None]
    grid = {t["name"]: t["rows"] for t in references.tables_for("grid25")}
    assert grid["PacGAN Table 1"]["PacGAN4"]["modes"] == [24.8, 0.2]
    stacked = [t["name"] for t in references.tables_for("stacked-mnist")]
    assert stacked == ["VEEGAN Table 2", "PacGAN Table 2", "PacGAN Table 3 (D = 1/4 G)",
                       "PacGAN Table 3 (D = 1/2 G)"]
    assert references.tables_for("mnist10k") == []


def test_side_by_side_states_the_protocol_differences():
    md = references.side_by_side("ring8", [{"label": "mine", "modes_captured": 8,
                                            "high_quality_pct": 97.0, "reverse_kl": 0.01}])
    assert "| ours | mine | 8 | 97.0 | 0.01 |" in md
    assert "| PacGAN Table 1 | GAN | 6.3 +- 0.5 | 98.2 +- 0.2 | 0.45 +- 0.09 |" in md
    assert "Protocol differences" in md and "10 (PacGAN)" in md
    md = references.side_by_side("stacked-mnist", [{"label": "m", "modes_captured": 12,
                                                    "kl": 4.0, "classifier_accuracy": 0.981}])
    assert "98.1 %" in md and "10k" in md


def test_the_stated_protocols_are_the_ones_computed():
    """Every coverage result carries PROTOCOL_2D or PROTOCOL_STACKED (asgan-probe coverage's
    ``protocol``): each must say what the code does, so a change of the rule fails here: the
    strict < 3 std radius (a point at exactly 3 std is not high quality), a mode captured by
    one high-quality point, the KL in nats with empty modes adding 0, 1000 digit triples."""
    assert f"< {coverage.N_STD:g} std" in coverage.PROTOCOL_2D
    assert ">= 1 high-quality sample" in coverage.PROTOCOL_2D
    assert "empty modes contributing 0" in coverage.PROTOCOL_2D
    modes = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    x = torch.tensor([[1.5, 0.0], [4.0, 1.4999]])  # std 0.5: exactly 3 std, just inside
    r = coverage.mixture_coverage(x, modes, 0.5)
    assert (r["counts"], r["modes_captured"], r["high_quality"]) == ([0, 1], 1, 0.5)
    assert r["reverse_kl"] == pytest.approx(math.log(2))  # (0, 1) vs uniform of 2, nats
    assert f"({coverage.STACKED_MODES})" in coverage.PROTOCOL_STACKED
    assert "empty modes contributing 0" in coverage.PROTOCOL_STACKED
    digits = torch.tensor([[1, 2, 3], [1, 2, 3]])
    s = coverage.stacked_coverage(digits)
    assert (s["modes_total"], s["modes_captured"]) == (1000, 1)
    assert s["kl"] == pytest.approx(math.log(1000))  # all mass on one of 1000 modes, nats
