"""Structure measures: analytic cases (known maps on known images), scale invariance, and the
scikit-image pieces they are built on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.filters import sobel

from probes.core.structure import (
    CONFOUND_CHECKS,
    DEFINITIONS,
    EVIDENCE,
    hf_reference,
    hf_share,
    structure,
)

H = 16


def _digit(n=1, c=1):
    """A bar 'stroke' (rows 4-11, cols 6-9) on a black background, in [-1, 1]."""
    x = -torch.ones(n, c, H, H, dtype=torch.float64)
    x[:, :, 4:12, 6:10] = 1.0
    return x


def _fg_mask():
    m = torch.zeros(H, H, dtype=torch.bool)
    m[4:12, 6:10] = True
    return m


def test_every_measure_is_classified_and_defined():
    assert set(EVIDENCE) | set(CONFOUND_CHECKS) == set(DEFINITIONS)
    assert not set(EVIDENCE) & set(CONFOUND_CHECKS)
    assert "edge_corr" in CONFOUND_CHECKS


# --------------------------------------------------------------------------- analytic
def test_gradient_on_the_stroke_only():
    x = _digit()
    g = torch.zeros_like(x)
    g[0, 0][_fg_mask()] = torch.linspace(-1, 1, 32, dtype=torch.float64)
    s = structure(g, x)
    area = 32 / H ** 2
    assert s["fg_share"].item() == pytest.approx(1.0)
    assert s["fg_area"].item() == pytest.approx(area)
    assert s["fg_lift"].item() == pytest.approx(1 / area)


def test_even_gradient_has_share_equal_to_area_and_no_lift():
    x = _digit()
    g = torch.full_like(x, -0.3)
    s = structure(g, x)
    assert s["fg_share"].item() == pytest.approx(s["fg_area"].item())
    assert s["fg_lift"].item() == pytest.approx(1.0)
    assert s["hf_share"].item() == pytest.approx(0.0, abs=1e-12)  # DC only
    assert math.isnan(s["ssim"].item())  # a constant map has no structure to compare


def test_gradient_equal_to_the_image_is_aligned():
    x = _digit()
    x01 = (x + 1) / 2
    for sign in (1.0, -1.0):  # |<x, g>|: the sign of the gradient does not matter
        s = structure(sign * 5.0 * x01, x)
        assert s["alignment"].item() == pytest.approx(1.0)
        assert s["ssim"].item() == pytest.approx(1.0)  # the map *is* the image
    orth = torch.zeros_like(x)
    orth[0, 0, 0, 0] = 1.0  # background only: orthogonal to the ink
    assert structure(orth, x)["alignment"].item() == pytest.approx(0.0)


def test_gradient_equal_to_the_edge_map_has_edge_corr_one():
    x = _digit()
    edges = torch.from_numpy(sobel(((x[0, 0] + 1) / 2).numpy()))
    g = edges.view(1, 1, H, H) * torch.tensor([1.0, -1.0]).repeat(H * H // 2).view(1, 1, H, H)
    assert structure(g, x)["edge_corr"].item() == pytest.approx(1.0)


@pytest.mark.parametrize("pattern,expected", [
    ("checkerboard", 1.0),  # all energy at (0.5, 0.5) cycles/pixel
    ("constant", 0.0),  # all energy at DC
    ("slow-cosine", 0.0),  # one cycle per image: 1/16 cycles/pixel
], ids=lambda p: str(p))
def test_hf_share_analytic(pattern, expected):
    i, j = np.meshgrid(np.arange(H), np.arange(H), indexing="ij")
    g = {"checkerboard": (-1.0) ** (i + j), "constant": np.ones((H, H)),
         "slow-cosine": np.cos(2 * np.pi * i / H)}[pattern]
    assert hf_share(torch.from_numpy(g).view(1, 1, H, H)).item() == pytest.approx(expected,
                                                                                   abs=1e-12)


def test_hf_share_of_white_noise_is_the_reference():
    g = torch.randn(400, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ref = hf_reference(28, 28)
    assert ref == pytest.approx(1 - math.pi * 0.25 ** 2, abs=0.02)  # area beyond the circle
    assert hf_share(g).mean().item() == pytest.approx(ref, abs=0.005)
    smooth = torch.nn.functional.avg_pool2d(g, 3, 1, 1)  # blurring removes high frequencies
    assert hf_share(smooth).mean().item() < ref / 2


# ---------------------------------------------------------------- contracts
@pytest.mark.parametrize("scale", [1e-5, 0.3, 7.0])
def test_scale_invariance(scale):
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, H, H, generator=gen, dtype=torch.float64) * 2 - 1
    g = torch.randn(4, 3, H, H, generator=gen, dtype=torch.float64)
    a, b = structure(g, x), structure(scale * g, x)
    for k in DEFINITIONS:
        assert torch.allclose(a[k], b[k], rtol=1e-9, atol=1e-12, equal_nan=True), k


def test_pixel_range_is_respected():
    x = _digit()
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = structure(g, x)
    b = structure(g, (x + 1) * 127.5, pixel_range=(0.0, 255.0))  # the same image in 0..255
    for k in DEFINITIONS:
        assert torch.allclose(a[k], b[k], equal_nan=True), k


def test_per_image_results_do_not_depend_on_the_batch():
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(6, 1, H, H, generator=gen) * 2 - 1
    g = torch.randn(6, 1, H, H, generator=gen)
    whole = structure(g, x)
    parts = [structure(g[i:i + 2], x[i:i + 2]) for i in range(0, 6, 2)]
    for k in DEFINITIONS:
        assert torch.allclose(whole[k], torch.cat([p[k] for p in parts]), equal_nan=True), k


def test_small_images_and_bad_shapes():
    x = torch.rand(2, 1, 5, 5) * 2 - 1  # smaller than SSIM's default 7x7 window
    g = torch.randn(2, 1, 5, 5)
    assert torch.isfinite(structure(g, x)["ssim"]).all()
    with pytest.raises(ValueError, match="images"):
        structure(torch.randn(3, 2), torch.randn(3, 2))
