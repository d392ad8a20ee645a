"""The D-step maths: per-sample R1 on BatchNorm discriminators, and AS-GAN's first-order arm.

R1 is checked against an independent computation (each real alone through an eval-mode copy
of D whose running statistics are set to the training batch's statistics); the first-order
arm against central finite differences in float64 and against the loss at the FGSM point.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import BNConvD
from trainers import make_config
from trainers.nets import dcgan_D, mlp_D
from trainers.steps import (
    D_STEPS,
    batch_stats_fixed,
    fgsm_point,
    r1_penalty,
    update_loss,
)


def _reals(n=8, shape=(1, 32, 32), seed=1, dtype=torch.float32):
    """(n, *shape) in [-1, 1], a quarter of the pixels exactly at -1 (like MNIST's background)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g, dtype=dtype) * 2 - 1
    x[torch.rand(x.shape, generator=g) < 0.25] = -1.0
    return x


def _bn_dcgan(seed=0):
    torch.manual_seed(seed)
    return dcgan_D(channels=1, resolution=32, width=8)  # 3 convs, BN on the last two


def _batch_sum_r1(D, x):
    """The old R1: gradient of the batch sum of train-mode logits (cross-sample BN terms)."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x)
    return g.pow(2).flatten(1).sum(1).mean()


def _per_sample_r1_one_at_a_time(D, x):
    """Independent R1: the batch's BatchNorm statistics (of each BN's input in a train-mode
    forward) become the running statistics of an eval-mode copy; each real then goes through
    it alone, and its own gradient norm is taken."""
    D_fixed = copy.deepcopy(D)
    stats, hooks = {}, []
    for name, m in D_fixed.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            def grab(mod, args, name=name):
                h = args[0].detach()
                stats[name] = (h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False))
            hooks.append(m.register_forward_pre_hook(grab))
    with torch.no_grad():
        D_fixed(x)
    for h in hooks:
        h.remove()
    for name, m in D_fixed.named_modules():
        if name in stats:
            m.running_mean.copy_(stats[name][0])
            m.running_var.copy_(stats[name][1])
    D_fixed.eval()
    norms = []
    for i in range(x.shape[0]):
        xi = x[i:i + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D_fixed(xi).sum(), xi)
        norms.append(g.pow(2).sum())
    return torch.stack(norms).mean()


def _buffers(D):
    return {k: v.clone() for k, v in D.state_dict().items()}


def test_r1_on_a_batchnorm_d_is_each_real_s_own_gradient_norm():
    D, x = _bn_dcgan(), _reals()
    before = _buffers(D)
    ours = r1_penalty(D, x)
    assert all(torch.equal(before[k], v) for k, v in D.state_dict().items())  # no BN update
    independent = _per_sample_r1_one_at_a_time(D, x)
    batch_sum = _batch_sum_r1(copy.deepcopy(D), x)
    rel = (batch_sum - ours).abs() / ours
    print(f"R1 per-sample {ours:.6g}, independent {independent:.6g}, batch-sum {batch_sum:.6g} "
          f"(batch-sum off by {rel:.1%})")
    assert ours.item() == pytest.approx(independent.item(), rel=1e-5)
    assert rel > 0.05  # the batch-sum gradient is a different quantity on a BN D
    assert ours.requires_grad  # a graph for the second-order term


def test_r1_without_batchnorm_is_the_batch_sum_version():
    torch.manual_seed(0)
    D = mlp_D(dim=2, width=16)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(r1_penalty(D, x), _batch_sum_r1(D, x))


def test_r1_on_a_spectral_norm_d_uses_the_real_forward_s_weight():
    """No extra power iteration: R1 right after the real forward equals the old R1 taken from
    that forward's own graph, and the spectral-norm vectors are those of one forward."""
    torch.manual_seed(0)
    D = dcgan_D(channels=1, resolution=32, width=8, spectral_norm=True)
    x = _reals()
    D_old = copy.deepcopy(D)
    xo = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D_old(xo).sum(), xo)
    old = g.pow(2).flatten(1).sum(1).mean()
    D(x)  # the real forward (one power iteration)
    new = r1_penalty(D, x)
    assert torch.allclose(new, old, rtol=1e-6, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(D.buffers(), D_old.buffers()))


def test_batch_stats_fixed_keeps_the_logits_and_restores_d():
    D, x = BNConvD(spectral=True), _reals(shape=(1, 16, 16))
    D_ref = copy.deepcopy(D)
    with torch.no_grad():
        train_logits = D_ref(x)  # one power iteration, one BN update
        D(x)
        before = _buffers(D)
        with batch_stats_fixed(D):
            fixed_logits = D(x)
    assert torch.allclose(fixed_logits, train_logits, atol=1e-5)  # same numbers, other grads
    assert all(torch.equal(before[k], v) for k, v in D.state_dict().items())
    assert all(m.training for m in D.modules()) and "forward" not in vars(D.net[3])


@pytest.mark.parametrize("spectral", [False, True], ids=["bn", "bn+sn"])
def test_r1_leaves_running_stats_updated_once_per_d_forward(spectral):
    """The same BatchNorm and spectral-norm buffers after a D step with and without R1."""
    runs = {}
    for gamma in (0.0, 10.0):
        torch.manual_seed(0)
        D = BNConvD(spectral=spectral)
        opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        cfg = make_config("smoke", {"r1_gamma": gamma})
        stats = D_STEPS["baseline"](D, opt, _reals(shape=(1, 16, 16)),
                                    _reals(shape=(1, 16, 16), seed=5), cfg=cfg, eps=0.0,
                                    pixel_range=(-1.0, 1.0), generator=None)
        runs[gamma] = (_buffers(D), stats)
    (b0, s0), (b1, s1) = runs[0.0], runs[10.0]
    bufs = [k for k in b0 if "running" in k or "num_batches" in k or "_u" in k or "_v" in k]
    assert bufs and all(torch.equal(b0[k], b1[k]) for k in bufs)
    assert b1["net.3.num_batches_tracked"] == 2  # reals, fakes: R1's forward adds none
    assert "r1" in s1 and "r1" not in s0


# ------------------------------------------------------------------ the first-order arm


class SmoothBND(nn.Module):
    """A tiny smooth D with BatchNorm: conv -> BN -> tanh -> linear, (N, 1, 8, 8) -> (N,)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, 2, 1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 1)

    def forward(self, x):
        return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1)).flatten()


def _penalised(D, x, x_fake, eps):
    """The first-order arm's second-step loss at D's current weights (float64 inputs)."""
    x = x.detach().requires_grad_(True)
    point = lambda xx, g: fgsm_point(D, xx, g, eps=eps, pixel_range=(-1.0, 1.0))  # noqa: E731
    total, gan, _, _, extras = update_loss(D, x, x_fake, r1_gamma=0.0, to_fgsm_point=point)
    return total, gan, extras["first_order"]


@pytest.mark.parametrize("with_fakes", [True, False], ids=["real+fake", "real"])
def test_first_order_parameter_gradient_matches_finite_differences(with_fakes):
    torch.manual_seed(0)
    D = SmoothBND().double()
    x = _reals(16, (1, 8, 8), dtype=torch.float64)
    x_fake = _reals(16, (1, 8, 8), seed=7, dtype=torch.float64) if with_fakes else None
    eps = 4 / 255
    total, _, first = _penalised(D, x, x_fake, eps)
    assert first > 0
    params = list(D.parameters())
    grads = torch.autograd.grad(total, params)
    worst = 0.0
    for k in range(3):  # directional derivatives along random parameter directions
        gen = torch.Generator().manual_seed(100 + k)
        v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        analytic = sum((g * d).sum() for g, d in zip(grads, v))
        h, vals = 1e-5, []
        for s in (1, -1):
            with torch.no_grad():
                for p, d in zip(params, v):
                    p.add_(s * h * d)
            vals.append(_penalised(D, x, x_fake, eps)[0].detach())
            with torch.no_grad():
                for p, d in zip(params, v):
                    p.sub_(s * h * d)
        numeric = (vals[0] - vals[1]) / (2 * h)
        worst = max(worst, float((analytic - numeric).abs() / numeric.abs()))
    print(f"first-order arm, {'real+fake' if with_fakes else 'real'}: worst relative error "
          f"of the parameter gradient vs central differences {worst:.2e}")
    assert worst < 1e-6
    # the term reaches the weights through g (create_graph): not the GAN loss's gradient
    D2 = copy.deepcopy(D)
    xg = x.detach().requires_grad_(True)
    gan = F.softplus(-D2(xg)).mean() + (F.softplus(D2(x_fake)).mean() if with_fakes else 0)
    first_only = torch.autograd.grad(gan, list(D2.parameters()))
    assert max((a - b).abs().max() for a, b in zip(first_only, grads)) > 1e-4


def test_first_order_term_approximates_the_loss_at_the_fgsm_point():
    """``L(x_fgsm) - L(x) ~ <g, x_fgsm - x>`` with relative error -> 0 as eps -> 0 (smooth D,
    batch statistics); with pixels at the range bound only the clip-aware term converges."""
    torch.manual_seed(0)
    D = SmoothBND().double()
    x = _reals(16, (1, 8, 8), dtype=torch.float64)
    x_fake = _reals(16, (1, 8, 8), seed=7, dtype=torch.float64)
    errors, plain_errors = [], []
    for eps in (1e-2, 1e-3, 1e-4):
        _, gan, first = _penalised(D, x, x_fake, eps)
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.softplus(-D(xg)).mean(), xg)
        x_adv = fgsm_point(D, x, g, eps=eps, pixel_range=(-1.0, 1.0))
        with torch.no_grad():
            gan_adv = F.softplus(-D(x_adv)).mean() + F.softplus(D(x_fake)).mean()
        change = gan_adv - gan.detach()
        errors.append(float((change - first).abs() / change.abs()))
        plain = 2 * eps * g.abs().sum()  # eps_abs * ||g||_1, blind to the clipped pixels
        plain_errors.append(float((change - plain).abs() / change.abs()))
    print(f"first-order model: relative error {errors} at eps 1e-2, 1e-3, 1e-4 (pixel units); "
          f"plain eps_abs*||g||_1: {plain_errors}")
    assert errors[2] < 1e-3 and errors[2] < errors[1] < errors[0]
    assert min(plain_errors) > 0.05  # the clipped background pixels do not move
    # strictly inside the range the term is eps_abs * ||g||_1 exactly
    inside = x.clamp(-0.9, 0.9)
    _, _, first = _penalised(D, inside, x_fake, 1e-3)
    xg = inside.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.softplus(-D(xg)).mean(), xg)
    assert torch.allclose(first, 2e-3 * g.abs().sum(), rtol=1e-12)


@pytest.mark.parametrize("second_step", ["real+fake", "real"])
def test_first_order_arm_step_is_the_penalised_update_on_clean_reals(second_step):
    """The training step: a standard update, then one SGD step on the penalised clean loss."""
    torch.manual_seed(0)
    D = BNConvD()
    D_ref = copy.deepcopy(D)
    x, x_fake = _reals(shape=(1, 16, 16)), _reals(shape=(1, 16, 16), seed=5)
    cfg = make_config("smoke", {"trainer": "asgan", "perturbation": "first-order",
                                "second_step": second_step, "eps": 2 / 255})
    opt = torch.optim.SGD(D.parameters(), lr=0.1)
    inputs = []
    D.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach().clone()))
    stats = D_STEPS["asgan"](D, opt, x, x_fake, cfg=cfg, eps=2 / 255,
                             pixel_range=(-1.0, 1.0), generator=None)
    assert torch.equal(inputs[2], x)  # the second step sees the clean reals
    assert stats["first_order"] > 0
    # the same by hand
    opt_ref = torch.optim.SGD(D_ref.parameters(), lr=0.1)
    opt_ref.zero_grad()
    total, *_ = update_loss(D_ref, x, x_fake, r1_gamma=0.0)
    total.backward()
    opt_ref.step()
    opt_ref.zero_grad()
    total, _, _, _, extras = update_loss(
        D_ref, x.clone().requires_grad_(True), x_fake if second_step == "real+fake" else None,
        r1_gamma=0.0,
        to_fgsm_point=lambda xx, g: fgsm_point(D_ref, xx, g, eps=2 / 255,
                                               pixel_range=(-1.0, 1.0)))
    total.backward()
    opt_ref.step()
    assert torch.equal(extras["first_order"], stats["first_order"])
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(D.parameters(),
                                                               D_ref.parameters()))


def test_r1_twice_arm_makes_two_identical_r1_updates():
    """``trainer=asgan perturbation=none r1_gamma>0``: the second step is the first step's
    update (GAN loss + R1 on the clean reals) at the updated weights."""
    torch.manual_seed(0)
    D = BNConvD()
    D_ref = copy.deepcopy(D)
    x, x_fake = _reals(shape=(1, 16, 16)), _reals(shape=(1, 16, 16), seed=5)
    cfg = make_config("smoke", {"trainer": "asgan", "perturbation": "none", "r1_gamma": 10})
    opt = torch.optim.SGD(D.parameters(), lr=0.1)
    stats = D_STEPS["asgan"](D, opt, x, x_fake, cfg=cfg, eps=0.0, pixel_range=(-1.0, 1.0),
                             generator=None)
    opt_ref = torch.optim.SGD(D_ref.parameters(), lr=0.1)
    cfg_base = make_config("smoke", {"r1_gamma": 10})
    for _ in range(2):
        D_STEPS["baseline"](D_ref, opt_ref, x, x_fake, cfg=cfg_base, eps=0.0,
                            pixel_range=(-1.0, 1.0), generator=None)
    assert stats["r1_adv"] > 0 and stats["r1"] > 0
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(D.parameters(),
                                                               D_ref.parameters()))
