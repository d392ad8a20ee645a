"""Frechet distance, KID and PRDC (analytic cases, scipy / brute-force oracles, contracts) and
the Inception loaders (random networks of the real interfaces; no weights are downloaded)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from payload import Payload as _Payload
from scipy.spatial.distance import cdist

from asgan_base.errors import UserError
from probes.adapters.inception import (
    ENV_VAR,
    build_fid_inception,
    detect_format,
    fid_pool3,
    inception_features,
    load_inception,
    weights_path,
)
from probes.core import quality


def _feats(n, d, seed, shift=0.0, scale=1.0):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, d)) * scale + shift


def _pytorch_fid_formula(a, b):
    """pytorch-fid's calculate_frechet_distance on np.cov statistics (scipy sqrtm)."""
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


# ----------------------------------------------------------------------------- Frechet


@pytest.mark.parametrize("mu1,s1,mu2,s2,expected", [
    ([0, 0, 0], np.eye(3), [1, 2, 2], np.eye(3), 9.0),                  # |mu1 - mu2|^2
    ([0] * 4, 4 * np.eye(4), [0] * 4, np.eye(4), 4 * (2 - 1) ** 2),     # d (sqrt a - sqrt b)^2
    ([1], [[2.0]], [1], [[2.0]], 0.0),
    ([0, 0], np.diag([1.0, 9.0]), [0, 0], np.diag([9.0, 1.0]), 2 * (3 - 1) ** 2),
], ids=["mean-shift", "scale", "identical", "swapped-axes"])
def test_frechet_from_stats_analytic(mu1, s1, mu2, s2, expected):
    assert quality.frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected,
                                                                                 abs=1e-10)


@pytest.mark.parametrize("n1,n2,d,seed", [(300, 400, 16, 0), (500, 200, 64, 1), (50, 60, 8, 2)],
                         ids=["d16", "d64", "small"])
def test_frechet_matches_the_scipy_sqrtm_formula(n1, n2, d, seed):
    a = _feats(n1, d, seed)
    b = _feats(n2, d, seed + 10) @ _feats(d, d, seed + 20) * 0.3 + 0.5
    ours = quality.frechet_distance(a, b)
    assert ours == pytest.approx(_pytorch_fid_formula(a, b), rel=1e-8, abs=1e-8)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert quality.trace_sqrt_product(s1, s2) == pytest.approx(
        np.trace(scipy.linalg.sqrtm(s1 @ s2)).real, rel=1e-8)


def test_frechet_of_a_set_with_itself_is_zero():
    a = _feats(400, 32, 3)
    assert abs(quality.frechet_distance(a, a)) < 1e-9 * np.trace(np.cov(a, rowvar=False))
    assert quality.frechet_distance(torch.tensor(a, dtype=torch.float32), a) < 1e-4


def test_frechet_rank_deficient_covariance():
    a, b = _feats(10, 16, 4), _feats(12, 16, 5)  # fewer samples than dims: singular S
    fd = quality.frechet_distance(a, b)
    assert math.isfinite(fd) and fd > 0


# ----------------------------------------------------------------------------- KID


def test_mmd2_unbiased_matches_a_direct_computation():
    from sklearn.metrics.pairwise import polynomial_kernel

    x, y = _feats(30, 5, 0), _feats(40, 5, 1, shift=0.3)
    kxx, kyy = polynomial_kernel(x, degree=3, coef0=1), polynomial_kernel(y, degree=3, coef0=1)
    kxy = polynomial_kernel(x, y, degree=3, coef0=1)
    expected = ((kxx.sum() - np.trace(kxx)) / (30 * 29) + (kyy.sum() - np.trace(kyy)) / (40 * 39)
                - 2 * kxy.mean())
    assert quality.mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)


def test_kid_is_unbiased_for_one_distribution():
    # 400 independent pairs from N(0, I): the unbiased estimator averages to 0 (within 3
    # standard errors) while the biased V-statistic (diagonals kept) is clearly positive
    g = np.random.default_rng(0)
    est, biased = [], []
    for _ in range(400):
        x, y = g.normal(size=(20, 4)), g.normal(size=(20, 4))
        est.append(quality.mmd2_unbiased(x, y))
        k = quality.polynomial_kernel
        t = [torch.as_tensor(v) for v in (x, y)]
        biased.append(float(k(t[0], t[0]).mean() + k(t[1], t[1]).mean()
                            - 2 * k(t[0], t[1]).mean()))
    se = np.std(est) / math.sqrt(len(est))
    assert abs(np.mean(est)) < 3 * se
    assert np.mean(biased) > 10 * se
    r = quality.kid(_feats(2000, 8, 1), _feats(2000, 8, 2), subsets=20, subset_size=500)
    assert abs(r["mean"]) < 3 * r["std"] and r["std"] > 0


def test_kid_sees_a_shift_and_is_seeded():
    a, b = _feats(1000, 8, 1), _feats(1000, 8, 2, shift=0.5)
    r = quality.kid(a, b, subsets=10, subset_size=200, seed=0)
    assert r["mean"] > 3 * r["std"] > 0
    assert r == quality.kid(a, b, subsets=10, subset_size=200, seed=0)
    assert r != quality.kid(a, b, subsets=10, subset_size=200, seed=1)
    assert quality.kid(a[:50], b, subsets=2, subset_size=1000)["subset_size"] == 50


# ----------------------------------------------------------------------------- PRDC


def _prdc_reference(real, fake, k):
    """The prdc package's compute_prdc, re-typed with scipy's cdist."""
    r_real = np.sort(cdist(real, real), axis=1)[:, k]
    r_fake = np.sort(cdist(fake, fake), axis=1)[:, k]
    d = cdist(real, fake)
    return {"precision": (d < r_real[:, None]).any(0).mean(),
            "recall": (d < r_fake[None, :]).any(1).mean(),
            "density": (1 / k) * (d < r_real[:, None]).sum(0).mean(),
            "coverage": (d.min(1) < r_real).mean()}


@pytest.mark.parametrize("k,shift", [(5, 0.0), (3, 0.7), (10, 0.3)], ids=["k5", "k3", "k10"])
def test_prdc_matches_the_reference_formulae(k, shift):
    real, fake = _feats(200, 5, 0), _feats(150, 5, 1, shift=shift, scale=0.8)
    ours = quality.prdc(real, fake, k=k)
    ref = _prdc_reference(real, fake, k)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_knn_radii_match_sklearn():
    from sklearn.neighbors import NearestNeighbors

    f = _feats(120, 6, 7)
    dist, _ = NearestNeighbors(n_neighbors=6).fit(f).kneighbors(f)  # self + 5 neighbours
    assert np.allclose(quality.knn_radii(f, 5).numpy(), dist[:, 5])


def test_prdc_analytic_extremes():
    a = _feats(100, 4, 0)
    same = quality.prdc(a, a, k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = quality.prdc(a, a + 100.0, k=5)
    assert far["precision"] == far["recall"] == far["density"] == far["coverage"] == 0.0


def test_results_do_not_depend_on_chunk_size():
    real, fake = _feats(300, 5, 0), _feats(250, 5, 1, shift=0.2)
    assert quality.prdc(real, fake, chunk=7) == quality.prdc(real, fake, chunk=4096)


def test_quality_scores_bundle():
    s = quality.quality_scores(_feats(120, 4, 0), _feats(100, 4, 1), kid_subsets=3,
                               kid_subset_size=50)
    assert {"frechet", "kid", "prdc", "n_real", "n_fake", "dim"} <= s.keys()
    assert s["n_real"] == 120 and s["dim"] == 4
    with pytest.raises(ValueError):
        quality.frechet_distance(_feats(10, 3, 0), _feats(10, 4, 0))


# ----------------------------------------------------------------------------- Inception


@pytest.fixture(scope="module")
def fid_net():
    """One randomly initialised FID Inception for the module (building it takes seconds)."""
    torch.manual_seed(0)
    return build_fid_inception()


def test_fid_inception_has_pytorch_fids_parameter_names_and_shapes(fid_net):
    from torchvision.models import inception_v3

    ours = fid_net.state_dict()
    # pytorch-fid builds torchvision's Inception3 (1008 classes, no aux head) and swaps blocks
    # for subclasses: its weights file has exactly these keys and shapes
    tv = inception_v3(weights=None, aux_logits=False, num_classes=1008,
                      init_weights=False).state_dict()
    assert ours.keys() == tv.keys()
    assert all(ours[k].shape == tv[k].shape for k in ours)


def test_fid_blocks_pool_like_tensorflow(fid_net):
    from torchvision.models import inception as tv

    net = fid_net
    a = tv.InceptionA(192, pool_features=32).eval()
    a.load_state_dict(net.Mixed_5b.state_dict())
    x = torch.rand(1, 192, 9, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = net.Mixed_5b(x), a(x)
    pool = slice(224, 256)  # the pool branch's 32 channels
    assert torch.allclose(ours[:, :224], theirs[:, :224])
    # the average pool ignores padding: equal inside, different on the border
    assert torch.allclose(ours[:, pool, 1:-1, 1:-1], theirs[:, pool, 1:-1, 1:-1], atol=1e-6)
    assert not torch.allclose(ours[:, pool, 0], theirs[:, pool, 0])
    e = tv.InceptionE(2048).eval()
    e.load_state_dict(net.Mixed_7c.state_dict())
    x = torch.rand(1, 2048, 5, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = net.Mixed_7c(x), e(x)
    assert torch.allclose(ours[:, :-192], theirs[:, :-192], atol=1e-6)
    assert not torch.allclose(ours[:, -192:, 2, 2], theirs[:, -192:, 2, 2])  # max, not avg


def _images(n=2, c=1, size=28, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_state_dict_path_round_trip(tmp_path, fid_net):
    net = fid_net
    path = tmp_path / "pt_inception-test-00000000.pth"
    torch.save(net.state_dict(), path)
    model = load_inception(path)
    assert model.format == "pytorch-fid-state-dict" and model.info["sha256_matches_name"] is False
    x = _images()
    f = inception_features(model, x, batch_size=1)
    with torch.no_grad():
        expected = fid_pool3(net, ((x.expand(-1, 3, -1, -1) + 1) / 2))
    assert f.shape == (2, 2048) and torch.allclose(f, expected, atol=1e-5)
    # a file from an old torch without BatchNorm step counters loads too
    old = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    assert torch.allclose(inception_features(load_inception(tmp_path / "old.pth"), x), f)


class TinyScripted(torch.nn.Module):
    """The TorchScript FID Inception's interface: images in [0, 255], return_features=True."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 16, 12)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        f = self.proj(torch.nn.functional.adaptive_avg_pool2d((x - 128) / 128, 4).flatten(1))
        return f if return_features else f.sum(1)


def test_torchscript_path_with_a_random_network_of_the_same_interface(tmp_path):
    torch.manual_seed(0)
    module = torch.jit.script(TinyScripted())
    path = tmp_path / "inception-2015-12-05.pt"
    module.save(str(path))
    assert detect_format(path) == "torchscript"
    model = load_inception(path, fmt="torchscript")  # auto would read tensors, never run it
    assert model.info["interface"] == "nvlabs" and model.info["input_range"] == [0.0, 255.0]
    x = _images(3, 3, 32)
    f = inception_features(model, x, batch_size=2)
    x299 = torch.nn.functional.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear",
                                           align_corners=False)
    with torch.no_grad():
        expected = module(x299 * 255, return_features=True)
    assert f.shape == (3, 12) and torch.allclose(f, expected, atol=1e-5)


@pytest.mark.parametrize("make,word", [
    (lambda p: torch.save({"fc.weight": torch.zeros(1000, 2048)}, p), "torchvision"),
    (lambda p: torch.save({"conv.weight": torch.zeros(3)}, p), "does not fit"),
    (lambda p: torch.save([1, 2, 3], p), "no plain state dict"),
    (lambda p: p.write_bytes(b"not a weights file"), "cannot be read"),
], ids=["imagenet-inception", "foreign-keys", "not-a-dict", "garbage"])
def test_foreign_weight_files_get_one_line_errors(tmp_path, make, word):
    path = tmp_path / "w.pth"
    make(path)
    with pytest.raises(UserError, match=word) as err:
        load_inception(path)
    assert "\n" not in str(err.value)


def test_a_code_bearing_pickle_is_refused_without_running(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": _Payload(marker)}))
    with pytest.raises(UserError):
        load_inception(path)
    assert not marker.exists()


def test_weights_path_from_argument_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert weights_path(None) is None
    with pytest.raises(UserError, match="nothing is downloaded"):
        weights_path(tmp_path / "missing.pth")
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    monkeypatch.setenv(ENV_VAR, str(f))
    assert weights_path(None) == f
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone.pth"))
    with pytest.raises(UserError, match=ENV_VAR):
        weights_path(None)


def test_kid_from_the_precomputed_kernel_equals_the_per_subset_estimate(monkeypatch):
    """The fast path (full kernels computed once) gives the per-subset estimates of the
    direct path, subset for subset, to float round-off."""
    a, b = _feats(600, 16, 3), _feats(500, 16, 4) + 0.2
    fast = quality.kid(a, b, subsets=15, subset_size=300, seed=2)
    monkeypatch.setattr(quality, "FULL_KERNEL_MAX", 0)
    slow = quality.kid(a, b, subsets=15, subset_size=300, seed=2)
    assert fast["mean"] == pytest.approx(slow["mean"], rel=1e-9)
    assert fast["std"] == pytest.approx(slow["std"], rel=1e-7)
