"""captum attributions of D: closed forms on a linear D, equality with autograd and captum's
Saliency, seeded SmoothGrad, and no trace on D."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probes.adapters.captum import METHODS, attribute
from probes.core.modes import probe_model
from tests.conftest import BNConvD, LinearD


def _x(n=6, shape=(1, 16, 16), seed=1):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class ReLUD(nn.Module):
    """A D with nn.ReLU modules, where captum's GuidedBackprop does change the gradient."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1),
                                 nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 1))

    def forward(self, x):
        return self.net(x).flatten()


# --------------------------------------------------------------------------- analytic
def test_linear_d_closed_forms():
    D = LinearD((1, 4, 4))
    x = _x(5, (1, 4, 4))
    w = D.w.detach()
    assert torch.allclose(attribute(D, x, method="saliency")["attr"], w.expand_as(x))
    assert torch.allclose(attribute(D, x, method="inputxgrad")["attr"], x * w)
    # smoothing a constant gradient changes nothing
    assert torch.allclose(attribute(D, x, method="smoothgrad", nt_samples=4)["attr"],
                          w.expand_as(x), atol=1e-6)


@pytest.mark.parametrize("baseline,value", [("black", -1.0), ("mid", 0.0), ("tensor", 0.25)])
def test_integrated_gradients_baselines_on_a_linear_d(baseline, value):
    """IG on a linear D is exact: (x - baseline) * w, summing to D(x) - D(baseline)."""
    D = LinearD((1, 4, 4))
    x = _x(5, (1, 4, 4))
    b = torch.full((1, 4, 4), value) if baseline == "tensor" else baseline
    out = attribute(D, x, method="ig", baseline=b, steps=8)
    w = D.w.detach()
    assert torch.allclose(out["attr"], (x - value) * w, atol=1e-6)
    assert out["delta"].abs().max() < 1e-5
    assert out["params"]["baseline"] == (baseline if baseline != "tensor" else "tensor")


# ------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("mode", ["eval", "batch"])
def test_saliency_equals_autograd_and_captum(bn_d, mode):
    from captum.attr import Saliency

    x = _x()
    ours = attribute(bn_d, x, method="saliency", mode=mode)
    assert ours["mode"] == mode
    with probe_model(bn_d, mode):
        xr = x.clone().requires_grad_(True)
        (want,) = torch.autograd.grad(bn_d(xr).sum(), xr)
        captum_attr = Saliency(bn_d).attribute(x.clone().requires_grad_(True), target=None,
                                               abs=False)
    assert torch.equal(ours["attr"], want)
    assert torch.allclose(ours["attr"], captum_attr.detach(), rtol=0, atol=0)


def test_ig_completeness_on_a_bn_d():
    """Attributions sum to D(x) - D(baseline) up to the integration error (LeakyReLU kinks),
    per image in eval mode; in batch mode each logit depends on the whole batch, so only the
    batch sum is complete (documented)."""
    torch.manual_seed(0)
    D = BNConvD()
    D(_x(8))  # give the running stats some values
    x = _x()
    coarse = attribute(D, x, method="ig", mode="eval", steps=16)["delta"].abs().max()
    ev = attribute(D, x, method="ig", mode="eval", steps=64)
    assert ev["delta"].abs().max() < min(2e-3, coarse.item() / 3)
    bt = attribute(D, x, method="ig", mode="batch", steps=64)["delta"]
    assert bt.abs().max() > 0.05  # per image it is not complete: the batch shares BN stats
    assert abs(bt.sum()) < 0.1 * bt.abs().sum()  # the batch sum nearly is


def test_guided_backprop_is_the_gradient_without_relu_modules(bn_d):
    x = _x()
    guided = attribute(bn_d, x, method="guided", mode="eval")
    assert guided["guided_relus"] == 0
    assert torch.allclose(guided["attr"], attribute(bn_d, x, method="saliency",
                                                    mode="eval")["attr"])
    D = ReLUD()
    g2 = attribute(D, x, method="guided")
    assert g2["guided_relus"] == 2
    assert not torch.allclose(g2["attr"], attribute(D, x, method="saliency")["attr"])


def test_smoothgrad_is_seeded_and_leaves_the_global_rng_alone(bn_d):
    x = _x()
    state = torch.get_rng_state()
    a = attribute(bn_d, x, method="smoothgrad", seed=3, nt_samples=4)
    assert torch.equal(torch.get_rng_state(), state)
    b = attribute(bn_d, x, method="smoothgrad", seed=3, nt_samples=4)
    c = attribute(bn_d, x, method="smoothgrad", seed=4, nt_samples=4)
    assert torch.equal(a["attr"], b["attr"]) and not torch.equal(a["attr"], c["attr"])
    assert a["params"] == {"noise": 0.15, "nt_samples": 4, "seed": 3}


def test_unknown_method(bn_d):
    with pytest.raises(ValueError, match="choose one of"):
        attribute(bn_d, _x(), method="lime")


# ----------------------------------------------------------------------- no trace
@pytest.mark.parametrize("spectral", [False, True], ids=["bn", "bn+spectral-norm"])
@pytest.mark.parametrize("mode", ["auto", "eval", "batch"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_no_trace_on_d(spectral, mode, method):
    torch.manual_seed(0)
    D = BNConvD(spectral=spectral).train()
    D(_x(4))  # BN stats and spectral-norm vectors away from their initial values
    state = {k: v.detach().clone() for k, v in D.state_dict().items()}
    flags = [m.training for m in D.modules()]
    hooks = [(len(m._forward_hooks), len(m._backward_hooks)) for m in D.modules()]
    x = _x(4)
    x_before = x.clone()
    out = attribute(D, x, method=method, mode=mode, steps=4, nt_samples=2)
    assert out["attr"].shape == x.shape and out["mode"] == ("eval" if mode == "eval" else
                                                             "batch" if mode == "batch" else
                                                             "frozen")
    after = D.state_dict()
    for k in state:
        assert torch.equal(state[k], after[k]), k
    assert [m.training for m in D.modules()] == flags
    assert [(len(m._forward_hooks), len(m._backward_hooks)) for m in D.modules()] == hooks
    assert all(p.grad is None for p in D.parameters())
    assert torch.equal(x, x_before) and not x.requires_grad
