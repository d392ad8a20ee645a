"""probes.core.attacks: closed forms on a linear D, BIM(1) = FGSM, BIM bit-identical to the
L-inf loop written out (the study's numbers), the eps ball and range in L-inf and L2 (property),
foolbox as the oracle (FGSM, BIM, PGD-L2), the uniform L2-ball start, and the no-trace contract
for BatchNorm and spectral-norm discriminators."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from probes.core.attacks import (
    L2,
    TOWARD,
    bim,
    default_step_size,
    eps_to_abs,
    fgsm,
    logit_grad,
    pgd,
    pgd_l2,
)
from probes.core.modes import probe_model, resolve_mode
from probes.core.sweep import attack_sweep, craft_fgsm, craft_pgd, min_flip_eps
from tests.conftest import BNConvD, LinearD
from trainers.nets import dcgan_D

RANGES = [(-1.0, 1.0), (0.0, 1.0), (0.0, 255.0)]
RANGE_IDS = ["pm1", "unit", "bytes"]
SIGN = {"fake": -1.0, "real": 1.0}


def _uniform(shape, pixel_range, seed=1, margin=0.0):
    """Samples uniform in ``pixel_range`` shrunk by ``margin`` (a fraction of its width)."""
    lo, hi = pixel_range
    u = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    return lo + (hi - lo) * (margin + (1 - 2 * margin) * u)


# ------------------------------------------------------------------------- analytic cases
@pytest.mark.parametrize("pixel_range", RANGES, ids=RANGE_IDS)
@pytest.mark.parametrize("toward", TOWARD)
def test_fgsm_closed_form_on_a_linear_d(toward, pixel_range):
    D, (lo, hi) = LinearD(), pixel_range
    x = _uniform((8, 1, 4, 4), pixel_range)
    eps = 3 / 255
    expected = (x + SIGN[toward] * eps * (hi - lo) * D.w.detach().sign()).clamp(lo, hi)
    assert torch.equal(fgsm(D, x, eps=eps, toward=toward, pixel_range=pixel_range), expected)


@pytest.mark.parametrize("toward", TOWARD)
def test_fgsm_per_sample_eps_closed_form(toward):
    D = LinearD()
    x = _uniform((8, 1, 4, 4), (-1, 1), margin=0.1)
    eps = torch.linspace(0, 8 / 255, 8)
    got = fgsm(D, x, eps=eps, toward=toward)
    expected = x + SIGN[toward] * 2 * eps.view(-1, 1, 1, 1) * D.w.detach().sign()
    assert torch.allclose(got, expected, atol=1e-7)
    assert torch.equal(got[0], x[0])  # eps 0 leaves the sample alone


BIM_CASES = [  # (steps, step_size in pixel units or None, total move as a multiple of eps)
    (3, None, 1.0),        # default step 2.5 eps / 3: saturates at the ball's edge
    (10, 0.5 / 255, 0.5),  # 10 steps of eps / 20 with eps = 10/255: half way
    (1, None, 1.0),        # one step of eps: FGSM
]


@pytest.mark.parametrize("steps,step_size,frac", BIM_CASES, ids=["saturate", "half", "one"])
@pytest.mark.parametrize("toward", TOWARD)
def test_bim_closed_form_on_a_linear_d(toward, steps, step_size, frac):
    # the gradient sign of a linear D is constant, so BIM walks straight to min(k*alpha, eps)
    D = LinearD()
    x = _uniform((8, 1, 4, 4), (-1, 1), margin=0.1)
    eps = 10 / 255
    got = bim(D, x, eps=eps, steps=steps, step_size=step_size, toward=toward)
    expected = x + SIGN[toward] * frac * 2 * eps * D.w.detach().sign()
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("steps,step_size,frac", BIM_CASES, ids=["saturate", "half", "one"])
@pytest.mark.parametrize("toward", TOWARD)
def test_pgd_l2_closed_form_on_a_linear_d(toward, steps, step_size, frac):
    # the gradient of a linear D is w everywhere: PGD-L2 walks along w / ||w||_2 to
    # min(k * alpha, eps) in L2 (inputs well inside the range, nothing clips)
    D = LinearD()
    x = _uniform((8, 1, 4, 4), (-1, 1), margin=0.3)
    eps = 10 / 255
    got = pgd_l2(D, x, eps=eps, steps=steps, step_size=step_size, toward=toward)
    w = D.w.detach()
    expected = x + SIGN[toward] * frac * 2 * eps * w / w.norm()
    assert torch.allclose(got, expected, atol=1e-6)
    dist = (got - x).flatten(1).norm(dim=1)
    assert torch.allclose(dist, torch.full((8,), frac * 2 * eps), rtol=1e-5)


def test_default_step_size_rule():
    assert default_step_size(4 / 255, 1) == 4 / 255
    assert default_step_size(4 / 255, 2) == 4 / 255  # 2.5 eps / 2 capped at eps
    assert default_step_size(4 / 255, 10) == pytest.approx(1 / 255)
    assert torch.allclose(default_step_size(torch.tensor([0.0, 0.4]), 5), torch.tensor([0, 0.2]))


def _bn_eval():
    torch.manual_seed(0)
    D = BNConvD()
    with torch.no_grad():  # non-trivial running stats, as after training
        for _ in range(3):
            D(_uniform((16, 1, 16, 16), (-1, 1), seed=7))
    return D.eval()


BIM1_CASES = [("linear", lambda: LinearD(), (8, 1, 4, 4), "eval"),
              ("bn-eval", _bn_eval, (8, 1, 16, 16), "eval"),
              ("bn-batch", _bn_eval, (8, 1, 16, 16), "batch"),
              ("sn-bn", lambda: BNConvD(spectral=True), (8, 1, 16, 16), "auto")]


@pytest.mark.parametrize("make,shape,mode", [c[1:] for c in BIM1_CASES],
                         ids=[c[0] for c in BIM1_CASES])
@pytest.mark.parametrize("toward", TOWARD)
def test_bim_with_one_step_is_fgsm_bit_for_bit(make, shape, mode, toward):
    D = make()
    x = _uniform(shape, (-1, 1))
    for eps in (0.0, 1 / 255, 8 / 255, 0.7):
        a = fgsm(D, x, eps=eps, toward=toward, mode=mode)
        b = bim(D, x, eps=eps, steps=1, toward=toward, mode=mode)
        assert torch.equal(a, b), eps


def _written_out_bim(D, x, *, eps, steps, toward, lo=-1.0, hi=1.0):
    """The L-inf loop as it stood before the norm hooks, written out: clamp(x + s * alpha *
    sign(g)) into the eps box intersected with the range, alpha = default_step_size."""
    r, a = eps * (hi - lo), default_step_size(eps, steps) * (hi - lo)
    lower, upper = (x - r).clamp(lo, hi), (x + r).clamp(lo, hi)
    xa = x
    for _ in range(steps):
        _, g = logit_grad(D, xa)
        xa = torch.sign(g).mul_(SIGN[toward] * a).add_(xa).clamp_(lower, upper)
    return xa


@pytest.mark.parametrize("toward", TOWARD)
def test_bim_through_the_hooks_is_bit_identical_to_the_written_out_loop(dcgan_bn, toward):
    # the study's robustness numbers come from FGSM/BIM: the hooks must not move one bit
    x = _uniform((12, 1, 28, 28), (-1, 1), seed=6)
    eps = [2 / 255, 8 / 255, 0.3]
    ref = [_written_out_bim(dcgan_bn, x, eps=e, steps=3, toward=toward) for e in eps]
    for e, r in zip(eps, ref):
        assert torch.equal(bim(dcgan_bn, x, eps=e, steps=3, toward=toward, mode="eval"), r)
    with probe_model(dcgan_bn, "eval"):
        for stack in (False, True):  # one eps at a time, and all eps as one batch
            _, xs = craft_pgd(dcgan_bn, x, eps, toward=toward, pixel_range=(-1, 1), steps=3,
                              stack=stack)
            for xa, r in zip(xs, ref):
                assert torch.equal(xa, r), stack
    assert not torch.equal(ref[0], x)


def test_pgd_norm_is_checked():
    with pytest.raises(ValueError, match="norm"):
        pgd(LinearD(), _uniform((8, 1, 4, 4), (-1, 1)), eps=0.1, norm="l1")


def test_l2_random_start_is_uniform_in_the_ball():
    # uniform in the unit n-ball: P(|u| <= r) = r**n, and no point outside
    g = torch.Generator().manual_seed(0)
    for shape in [(20000, 2), (20000, 1, 2, 2)]:
        n = math.prod(shape[1:])
        u = L2.noise(torch.Size(shape), g, torch.float32)
        radius = u.flatten(1).norm(dim=1)
        assert u.shape == shape and bool((radius <= 1 + 1e-6).all())
        for r in (0.5, 0.8, 0.95):
            assert (radius <= r).float().mean().item() == pytest.approx(r ** n, abs=0.012)
        # and isotropic: the mean point is the centre
        assert u.flatten(1).mean(0).abs().max().item() < 0.02


BAD = [
    (dict(eps=-0.1), "eps"), (dict(eps=1.5), "eps"), (dict(eps=float("nan")), "eps"),
    (dict(eps=0.1, toward="up"), "toward"), (dict(eps=0.1, pixel_range=(1, -1)), "pixel_range"),
    (dict(eps=torch.tensor([0.1, 2.0] + [0.1] * 6)), "eps"), (dict(eps=torch.zeros(3)), "shape"),
    (dict(eps=0.1, mode="train"), "mode"),
]


@pytest.mark.parametrize("kwargs,word", BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
@pytest.mark.parametrize("attack", [fgsm, bim, pgd_l2], ids=["fgsm", "bim", "pgd-l2"])
def test_bad_arguments_raise(attack, kwargs, word):
    with pytest.raises(ValueError, match=word):
        attack(LinearD(), _uniform((8, 1, 4, 4), (-1, 1)), **kwargs)


@pytest.mark.parametrize("attack", [bim, pgd_l2], ids=["bim", "pgd-l2"])
def test_iterative_attacks_reject_zero_steps(attack):
    with pytest.raises(ValueError, match="steps"):
        attack(LinearD(), _uniform((8, 1, 4, 4), (-1, 1)), eps=0.1, steps=0)


# ------------------------------------------------------------------------- property
_PROP_D = BNConvD()


@settings(max_examples=25, deadline=None)
@given(eps=st.floats(0, 1), lo=st.floats(-3, 2), width=st.floats(0.05, 4),
       steps=st.integers(1, 4), random_start=st.booleans(), toward=st.sampled_from(TOWARD),
       per_sample=st.booleans(), mode=st.sampled_from(["eval", "batch"]),
       seed=st.integers(0, 2**16))
def test_every_output_stays_in_the_eps_ball_and_the_range(eps, lo, width, steps, random_start,
                                                          toward, per_sample, mode, seed):
    pixel_range = (lo, lo + width)
    x = _uniform((4, 1, 16, 16), pixel_range, seed=seed)
    e = torch.rand(4, generator=torch.Generator().manual_seed(seed)) * eps if per_sample else eps
    radius = (e if per_sample else torch.full((4,), eps)) * width
    g = torch.Generator().manual_seed(seed)
    kw = dict(toward=toward, pixel_range=pixel_range, mode=mode)
    outs = [(fgsm(_PROP_D, x, eps=e, **kw), radius, "linf"),
            (bim(_PROP_D, x, eps=e, steps=steps, random_start=random_start, generator=g, **kw),
             radius, "linf"),
            (pgd_l2(_PROP_D, x, eps=e, steps=steps, random_start=random_start, generator=g,
                    **kw), radius, "l2")]
    # the sweep's crafters, several eps at once (stacked in eval mode)
    with probe_model(_PROP_D, mode):
        for craft, norm in ((craft_fgsm, "linf"), (craft_pgd, "linf"), (craft_pgd, "l2")):
            noise = None
            if random_start:
                noise = (torch.rand(x.shape, generator=g) * 2 - 1 if norm == "linf" else
                         L2.noise(x.shape, g, x.dtype))
            _, xs = craft(_PROP_D, x, [0.0, eps, eps / 3], toward=toward,
                          pixel_range=pixel_range, steps=steps, noise=noise, norm=norm,
                          stack=mode == "eval")
            outs += [(xa, torch.full((4,), f * width), norm)
                     for xa, f in zip(xs, [0, eps, eps / 3])]
    tol = 1e-6 * max(1.0, abs(lo) + width)  # float32 rounding of x +- radius
    for x_adv, r, norm in outs:
        d = (x_adv - x).flatten(1)
        if norm == "linf":
            dist = d.abs().amax(1)
            assert bool((dist <= r + tol).all()), (dist, r)
        else:  # the L2 norm of 256 float32 values: a relative rounding
            dist = d.norm(dim=1)
            assert bool((dist <= r * (1 + 1e-5) + tol).all()), (dist, r)
        assert x_adv.min() >= lo and x_adv.max() <= lo + width


# ------------------------------------------------------------------------- oracle: foolbox
class _TwoLogitsOracle(nn.Module):
    """[0, d] written independently of probes.adapters.foolbox."""

    def __init__(self, D):
        super().__init__()
        self.D = D

    def forward(self, x):
        d = self.D(x)
        return torch.stack([torch.zeros_like(d), d], 1)


@pytest.fixture(scope="module")
def dcgan_bn():
    """A DCGAN D with BatchNorm (28 px) whose running stats moved off (0, 1), in eval mode."""
    torch.manual_seed(0)
    D = dcgan_D(channels=1, resolution=28, width=8)
    with torch.no_grad():
        for s in range(4):
            D(_uniform((16, 1, 28, 28), (-1, 1), seed=100 + s))
    return D.eval()


@pytest.mark.parametrize("eps", [0.5 / 255, 2 / 255, 8 / 255], ids=["0.5", "2", "8"])
@pytest.mark.parametrize("toward", TOWARD)
def test_foolbox_fgsm_and_bim_agree_with_ours(dcgan_bn, toward, eps):
    fb = pytest.importorskip("foolbox")
    D = dcgan_bn
    x = _uniform((16, 1, 28, 28), (-1, 1), seed=3)
    wrapper = _TwoLogitsOracle(D).eval()
    fmodel = fb.PyTorchModel(wrapper, bounds=(-1, 1), device="cpu")
    labels = torch.full((16,), 1 if toward == "fake" else 0)
    crit = fb.criteria.Misclassification(labels)
    for p in D.parameters():  # foolbox's backward would fill D's .grad otherwise
        p.requires_grad_(False)
    try:
        _, fb_fgsm, _ = fb.attacks.FGSM()(fmodel, x, crit, epsilons=eps_to_abs(eps))
        steps = 10
        bim_fb = fb.attacks.LinfBasicIterativeAttack(
            abs_stepsize=eps_to_abs(default_step_size(eps, steps)), steps=steps,
            random_start=False)
        _, fb_bim, _ = bim_fb(fmodel, x, crit, epsilons=eps_to_abs(eps))
    finally:
        for p in D.parameters():
            p.requires_grad_(True)
    ours_fgsm = fgsm(D, x, eps=eps, toward=toward, mode="eval")
    ours_bim = bim(D, x, eps=eps, steps=steps, toward=toward, mode="eval")
    assert torch.allclose(ours_fgsm, fb_fgsm, atol=1e-6, rtol=0)
    assert torch.allclose(ours_bim, fb_bim, atol=1e-6, rtol=0)
    assert not torch.equal(ours_bim, x)


@pytest.fixture(scope="module")
def dcgan_sharp(dcgan_bn):
    """dcgan_bn with its last layer scaled x400: logits of order 1 (-2.9 .. 0.5), so a small
    L2 ball flips some samples and not others."""
    D = copy.deepcopy(dcgan_bn)
    last = [m for m in D.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(400)
    return D


@pytest.mark.parametrize("eps", [0.05, 0.2, 1.0], ids=["0.05", "0.2", "1"])
@pytest.mark.parametrize("toward", TOWARD)
def test_foolbox_l2pgd_agrees_with_ours(dcgan_sharp, toward, eps):
    # eps is an L2 radius in pixel units: foolbox gets eps * (hi - lo) and the same absolute
    # step; both start at x (random_start off). foolbox ascends the cross-entropy of [0, d],
    # whose gradient is the logit's times a positive factor: the same normalized direction
    fb = pytest.importorskip("foolbox")
    D, steps = dcgan_sharp, 10
    x = _uniform((16, 1, 28, 28), (-1, 1), seed=3)
    fmodel = fb.PyTorchModel(_TwoLogitsOracle(D).eval(), bounds=(-1, 1), device="cpu")
    labels = torch.full((16,), 1 if toward == "fake" else 0)
    attack = fb.attacks.L2PGD(abs_stepsize=eps_to_abs(default_step_size(eps, steps)),
                              steps=steps, random_start=False)
    for p in D.parameters():
        p.requires_grad_(False)
    try:
        _, theirs, success = attack(fmodel, x, fb.criteria.Misclassification(labels),
                                    epsilons=eps_to_abs(eps))
    finally:
        for p in D.parameters():
            p.requires_grad_(True)
    ours = pgd_l2(D, x, eps=eps, steps=steps, toward=toward, mode="eval")
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    with torch.no_grad():
        flipped = SIGN[toward] * D(ours) >= 0  # foolbox: the label's class lost the argmax
    assert torch.equal(flipped, success)
    dist = (ours - x).flatten(1).norm(dim=1) / 2  # in pixel units
    assert torch.allclose(dist, (theirs - x).flatten(1).norm(dim=1) / 2, atol=1e-6)
    assert bool((dist <= eps * (1 + 1e-5)).all())


def test_foolbox_adapter_matches_and_leaves_no_grads(dcgan_bn):
    fb = pytest.importorskip("foolbox")
    from probes.adapters.foolbox import foolbox_attack, two_logits

    D = dcgan_bn
    x = _uniform((8, 1, 28, 28), (-1, 1), seed=4)
    [a] = foolbox_attack(D, x, attack=fb.attacks.FGSM(), eps=[2 / 255], toward="fake")
    assert torch.allclose(a, fgsm(D, x, eps=2 / 255, mode="eval"), atol=1e-6, rtol=0)
    assert all(p.grad is None and p.requires_grad for p in D.parameters())
    assert not D.training
    # the wrapper is [0, d]: its cross-entropy for label 1 is the GAN loss on reals
    logits = two_logits(D)(x)
    ce = nn.functional.cross_entropy(logits, torch.ones(8, dtype=torch.long), reduction="none")
    assert torch.allclose(ce, nn.functional.softplus(-D(x)), atol=1e-6)
    # and unguarded foolbox does accumulate into .grad: the reason for the freeze
    fmodel = fb.PyTorchModel(_TwoLogitsOracle(D).eval(), bounds=(-1, 1), device="cpu")
    fb.attacks.FGSM()(fmodel, x, fb.criteria.Misclassification(torch.ones(8).long()),
                      epsilons=0.01)
    assert any(p.grad is not None for p in D.parameters())
    D.zero_grad(set_to_none=True)


# ------------------------------------------------------------------------- contracts
def _dcgan_sn():
    torch.manual_seed(0)
    return dcgan_D(channels=1, resolution=28, width=8, spectral_norm=True)


DISCRIMINATORS = [("bn", lambda: BNConvD(), 16), ("sn+bn", lambda: BNConvD(spectral=True), 16),
                  ("sn-dcgan", _dcgan_sn, 28)]


def _state(D):
    return ({k: v.clone() for k, v in D.state_dict().items()},
            [m.training for m in D.modules()], [p.requires_grad for p in D.parameters()])


def _probes(D, x, mode):
    g = torch.Generator().manual_seed(0)
    fgsm(D, x, eps=2 / 255, mode=mode)
    bim(D, x, eps=2 / 255, steps=2, random_start=True, generator=g, mode=mode, toward="real")
    other = copy.deepcopy(D)
    attack_sweep(D, x, eps=[0, 1 / 255, 4 / 255], method="bim", steps=2, mode=mode,
                 transfer_to={"other": other}, bn_group=4)
    attack_sweep(D, x, eps=[0, 1 / 255], method="fgsm", mode=mode, population="fake")
    min_flip_eps(D, x, method="fgsm", iters=3, mode=mode, bn_group=4)
    min_flip_eps(D, x, method="bim", steps=2, iters=2, mode=mode)


@pytest.mark.parametrize("train_first", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("mode", ["auto", "eval", "batch"])
@pytest.mark.parametrize("make,side", [d[1:] for d in DISCRIMINATORS],
                         ids=[d[0] for d in DISCRIMINATORS])
def test_probes_leave_no_trace(make, side, mode, train_first):
    D = make()
    D.train(train_first)
    with torch.no_grad():  # move running stats and spectral-norm vectors off their init
        D.train()(_uniform((8, 1, side, side), (-1, 1), seed=9))
    D.train(train_first)
    x = _uniform((8, 1, side, side), (-1, 1))
    x_before = x.clone()
    sd, flags, req = _state(D)
    _probes(D, x, mode)
    sd2, flags2, req2 = _state(D)
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    assert flags == flags2 and req == req2
    assert all(p.grad is None for p in D.parameters())
    assert torch.equal(x, x_before)


def test_batch_mode_switches_only_batchnorm_to_batch_statistics():
    D = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(),
                      nn.LazyLinear(1))
    D(torch.zeros(2, 1, 5, 5))
    D.eval()
    with probe_model(D, "batch") as (_, resolved):
        assert resolved == "batch"
        assert [m.training for m in D] == [False, True, False, False, False]
    assert resolve_mode(D, "auto") == "frozen" and resolve_mode(LinearD(), "auto") == "eval"
    with probe_model(D, "frozen", torch.rand(4, 1, 5, 5)) as (copy, resolved):
        assert resolved == "frozen" and copy is not D
        assert not any(m.training for m in copy.modules())
    assert not any(m.training for m in D.modules())


def test_logit_grad_is_the_per_sample_gradient_in_eval_mode(dcgan_bn):
    x = _uniform((3, 1, 28, 28), (-1, 1), seed=5)
    logits, g = logit_grad(dcgan_bn, x)
    for i in range(3):
        xi = x[i:i + 1].clone().requires_grad_(True)
        (gi,) = torch.autograd.grad(dcgan_bn(xi).sum(), xi)
        assert torch.allclose(g[i], gi[0], atol=1e-6)
    assert logits.shape == (3,) and not logits.requires_grad
