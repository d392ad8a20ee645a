"""The probe modes (SPEC section 1) on a real DCGAN D with BatchNorm: in the default mode each
logit and each input gradient is the sample's own (no leakage through BatchNorm), results do not
depend on order or batch size, and D is left exactly as it was."""

import copy

import numpy as np
import pytest
import torch

from probes.core.attacks import fgsm
from probes.core.gradients import input_gradients
from probes.core.modes import frozen_copy, probe_model, resolve_mode
from probes.core.sweep import attack_sweep, min_flip_eps
from trainers.nets import build_net, net_specs


def _dcgan_d(sn: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    _, d_spec = net_specs("dcgan", shape=(1, 32, 32), z_dim=8, width=8, d_spectral_norm=sn)
    D = build_net(d_spec)
    # give BatchNorm running stats that describe no input (as a GAN's D has)
    with torch.no_grad():
        for m in D.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-2, 2)
                m.running_var.uniform_(0.1, 5)
    return D.train()


def _snapshot(D):
    return ({k: v.detach().clone() for k, v in D.state_dict().items()},
            [m.training for m in D.modules()],
            [None if p.grad is None else p.grad.clone() for p in D.parameters()])


def _same(a, b):
    sa, fa, ga = a
    sb, fb, gb = b
    assert fa == fb and sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(ga, gb))


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 1, 32, 32, generator=g) * 2 - 1
    ref = torch.rand(16, 1, 32, 32, generator=g) * 2 - 1
    return x, ref


def test_auto_is_frozen_with_batchnorm_and_eval_without():
    assert resolve_mode(_dcgan_d(), "auto") == "frozen"
    assert resolve_mode(_dcgan_d(sn=True), "auto") == "eval"  # SN dcgan D has no BatchNorm


def test_changing_sample_j_leaves_logit_i_unchanged_exactly(data):
    x, ref = data
    D = _dcgan_d()
    with torch.no_grad(), probe_model(D, "auto", ref) as (model, mode):
        before = model(x)
        x2 = x.clone()
        x2[7] = -x2[7]  # change one sample drastically
        after = model(x2)
    assert mode == "frozen"
    others = torch.arange(len(x)) != 7
    assert torch.equal(before[others], after[others])
    assert not torch.equal(before[7], after[7])
    # batch mode leaks: the same change moves the other logits
    with torch.no_grad(), probe_model(D, "batch") as (model, _):
        leak = (model(x)[others] - model(x2)[others]).abs().max()
    assert leak > 1e-3


def test_per_image_gradient_is_the_samples_own(data):
    """Every per-image gradient equals the gradient of that sample's own logit, computed one
    sample at a time against the same frozen statistics (an independent computation with
    torch.func over a functional BatchNorm)."""
    x, ref = data
    D = _dcgan_d()
    out = input_gradients(D, x, reference=ref, reduce=None, keep=True, batch_size=7)
    assert out["mode"] == "frozen"
    # independent: batch statistics of the clean reference group, by a train-mode forward
    # of a fresh copy with hooks, then a per-sample functional call
    Dc = frozen_copy(D, ref)
    params = {k: v.detach() for k, v in Dc.named_parameters()}
    buffers = {k: v.detach() for k, v in Dc.named_buffers()}

    def one(xi):
        return torch.func.functional_call(Dc, (params, buffers), (xi.unsqueeze(0),)).squeeze(0)

    per = torch.func.vmap(torch.func.grad(one))(x)
    torch.testing.assert_close(out["grad"], per, rtol=1e-5, atol=1e-7)
    for i in (0, 13):  # and one at a time, no vmap
        xi = x[i:i + 1].clone().requires_grad_(True)
        (gi,) = torch.autograd.grad(Dc(xi).sum(), xi)
        torch.testing.assert_close(out["grad"][i:i + 1], gi, rtol=1e-5, atol=1e-7)


def test_frozen_statistics_are_those_of_the_clean_reference_batch(data):
    _, ref = data
    D = _dcgan_d()
    with torch.no_grad():
        with probe_model(D, "batch") as (model, _):
            batch_logits = model(ref)
        with probe_model(D, "frozen", ref) as (model, _):
            frozen_logits = model(ref)
    torch.testing.assert_close(frozen_logits, batch_logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sn", [False, True])
def test_frozen_probes_leave_no_trace(data, sn):
    x, ref = data
    D = _dcgan_d(sn=sn)
    D(x)  # one training forward: SN vectors and BN stats are now "used"
    before = _snapshot(D)
    attack_sweep(D, x, eps=[0, 2 / 255], method="bim", steps=3, reference=ref)
    min_flip_eps(D, x, iters=3, reference=ref)
    input_gradients(D, x, reference=ref)
    fgsm(D, x, eps=1 / 255)
    _same(before, _snapshot(D))


def test_order_and_batch_size_do_not_change_per_sample_numbers(data):
    x, ref = data
    D = _dcgan_d()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    a = min_flip_eps(D, x, iters=6, reference=ref, batch_size=40)["per_sample"]
    b = min_flip_eps(D, x[perm], iters=6, reference=ref, batch_size=9)["per_sample"]
    np.testing.assert_array_equal(a[perm.numpy()], b)  # NaN (wrong when clean) equal too
    ga = input_gradients(D, x, reference=ref, batch_size=40)["per_image"]["hoyer"]
    gb = input_gradients(D, x[perm], reference=ref, batch_size=6)["per_image"]["hoyer"]
    torch.testing.assert_close(ga[perm], gb, rtol=1e-6, atol=1e-9)
    ra = attack_sweep(D, x, eps=[1 / 255, 4 / 255], reference=ref, batch_size=40)
    rb = attack_sweep(D, x[perm], eps=[1 / 255, 4 / 255], reference=ref, batch_size=7)
    for r, s in zip(ra, rb):
        assert r["mode"] == s["mode"] == "frozen" and r["reference_n"] == 16
        assert r["flip_rate"] == s["flip_rate"]
        assert r["mean_logit_shift"] == pytest.approx(s["mean_logit_shift"], rel=1e-6)


def test_fgsm_shift_matches_an_independent_per_sample_computation(data):
    """The sweep's mean logit shift and flip rate in the default mode equal those of FGSM
    computed sample by sample against the frozen statistics."""
    x, ref = data
    D = _dcgan_d()
    eps = 2 / 255
    (rec,) = attack_sweep(D, x, eps=[eps], reference=ref)
    Dc = frozen_copy(D, ref)
    shifts, flips, right = [], 0, 0
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        d0 = Dc(xi)
        (g,) = torch.autograd.grad(d0.sum(), xi)
        xa = (x[i:i + 1] - eps * 2 * g.sign()).clamp(-1, 1)
        d1 = Dc(xa).detach()
        shifts.append(float((d0 - d1).detach()))
        if float(d0) > 0:
            right += 1
            flips += float(d1) <= 0
    assert rec["mean_logit_shift"] == pytest.approx(sum(shifts) / len(shifts), rel=1e-5)
    assert rec["flip_rate"] == (flips / right if right else None)


def test_cli_attack_on_a_shipped_batchnorm_checkpoint_matches_per_sample_fgsm(tmp_path, capsys):
    """Acceptance (issue 12): ``asgan-probe attack`` on a shipped DCGAN (BatchNorm) reports a
    mean logit shift and flip rate equal, within 2%, to FGSM done one sample at a time against
    the statistics of the clean reference group (the first training batch of the same seeded
    reals), each sample with its own logit gradient, written here without the probe code."""
    import json

    from probes.cli import main
    from probes.io import sources
    from probes.study.arms import shipped_runs
    from tests.conftest import run_cli

    path = shipped_runs("mnist10k")["asgan-eps0.5"][0]
    out = tmp_path / "a.json"
    code, _, err = run_cli(main, ["attack", str(path), "--population", "real", "--n", "96",
                                  "--eps", "2/255", "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    (rec,) = json.loads(out.read_text())["records"]
    assert rec["mode"] == "frozen"

    G, D, meta = sources.load(path)
    m = int(meta["config"]["batch_size"])
    x = sources.reals(meta, max(96, m), seed=0)
    ref, x = x[:m], x[:96]
    # the clean group's batch statistics, by hand: a train-mode forward with hooks on a copy
    Dc = copy.deepcopy(D)
    stats = {}
    bns = [mod for mod in Dc.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    hooks = [bn.register_forward_pre_hook(
        lambda bn, a: stats.__setitem__(bn, (a[0].mean((0, 2, 3)),
                                             a[0].var((0, 2, 3), unbiased=False))))
        for bn in bns]
    Dc.eval()
    for bn in bns:
        bn.train()
    with torch.no_grad():
        Dc(ref)
    for h in hooks:
        h.remove()
    for bn in bns:
        bn.running_mean.copy_(stats[bn][0])
        bn.running_var.copy_(stats[bn][1])
    Dc.eval()
    shifts, right, flipped = [], 0, 0
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        d0 = Dc(xi)
        (g,) = torch.autograd.grad(d0.sum(), xi)
        d1 = Dc((x[i:i + 1] - 2 / 255 * 2 * g.sign()).clamp(-1, 1)).detach()
        shifts.append(float((d0 - d1).detach()))
        right += float(d0) > 0
        flipped += float(d0) > 0 and float(d1) <= 0
    assert rec["mean_logit_shift"] == pytest.approx(sum(shifts) / len(shifts), rel=0.02)
    assert rec["flip_rate"] == pytest.approx(flipped / right, rel=0.02, abs=1e-9)
