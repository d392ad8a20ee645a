"""probes.core.sweep: closed forms on a linear D (L-inf and L2), agreement with fgsm/bim/pgd_l2
and foolbox, batch-size independence, seeds, warnings, transfer, BatchNorm running stats skewed
as after GAN training, the minimal flipping eps, and the attack registry's contract."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from probes.core.attacks import bim, default_step_size, fgsm, pgd_l2
from probes.core.modes import probe_model
from probes.core.sweep import ATTACKS, attack_sweep, groups, min_flip_eps
from tests.conftest import BNConvD, LinearD

EPS = [0.0, 1 / 255, 2 / 255, 8 / 255]
POP_SIGN = {"real": 1.0, "fake": -1.0}
NUMBERS = ("clean_accuracy", "adv_accuracy", "flip_rate", "mean_logit_shift",
           "median_logit_shift", "mean_loss_increase", "mean_linf", "mean_l2")


def _uniform(shape, lo=-1.0, hi=1.0, seed=1):
    return lo + (hi - lo) * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _softplus(z):
    return np.logaddexp(0.0, z)


def _numbers(records):
    """(records, stats) float array; None (no flip rate defined) becomes NaN."""
    return np.array([[r[k] for k in NUMBERS] for r in records], dtype=float)


# ------------------------------------------------------------------------- analytic cases
@pytest.mark.parametrize("method", ["fgsm", "bim"])
@pytest.mark.parametrize("population", ["real", "fake"])
def test_linear_d_sweep_matches_the_closed_form(population, method):
    # D(x) = <w, x> + b; inputs well inside the range so nothing clips: the attack moves the
    # logit by exactly eps*(hi-lo)*||w||_1 (BIM's default steps saturate at the ball's edge)
    D = LinearD(shape=(1, 4, 4), seed=3)
    x = _uniform((200, 1, 4, 4), -0.5, 0.5)
    s = POP_SIGN[population]
    recs = attack_sweep(D, x, eps=EPS, population=population, method=method, steps=4)
    with torch.no_grad():
        clean = D(x).double().numpy()
    w1 = D.w.detach().abs().sum().item()
    correct = s * clean > 0
    for r, e in zip(recs, EPS):
        move = 2 * e * w1  # logit change toward the attacked side
        adv = clean - s * move
        assert r["mode"] == "eval" and r["population"] == population and r["eps"] == e
        assert r["n"] == 200 and r["n_correct"] == correct.sum()
        assert r["clean_accuracy"] == pytest.approx(correct.mean())
        assert r["flip_rate"] == pytest.approx((correct & (s * adv <= 0)).sum() / correct.sum())
        assert r["mean_logit_shift"] == pytest.approx(move, abs=1e-5)
        assert r["median_logit_shift"] == pytest.approx(move, abs=1e-5)
        loss_inc = (_softplus(-s * adv) - _softplus(-s * clean)).mean()
        assert r["mean_loss_increase"] == pytest.approx(loss_inc, abs=1e-5)
        assert r["mean_linf"] == pytest.approx(e, abs=1e-6)
        assert r["mean_l2"] == pytest.approx(e * 4, abs=1e-5)  # sqrt(16 pixels) * eps
    assert recs[0]["flip_rate"] == 0 and recs[-1]["flip_rate"] > 0


@pytest.mark.parametrize("population", ["real", "fake"])
def test_linear_d_pgd_l2_sweep_matches_the_closed_form(population):
    # PGD-L2 on <w, x> + b walks along w / ||w||_2 to the ball's edge: the logit moves by
    # eps * (hi - lo) * ||w||_2 and the perturbation's L2 norm in pixel units is eps
    D = LinearD(shape=(1, 4, 4), seed=3)
    x = _uniform((200, 1, 4, 4), -0.5, 0.5)
    s = POP_SIGN[population]
    recs = attack_sweep(D, x, eps=EPS, population=population, method="pgd-l2", steps=4)
    with torch.no_grad():
        clean = D(x).double().numpy()
    w2 = D.w.detach().norm().item()
    correct = s * clean > 0
    for r, e in zip(recs, EPS):
        move = 2 * e * w2
        adv = clean - s * move
        assert r["method"] == "pgd-l2" and r["norm"] == "l2" and r["steps"] == 4
        assert r["flip_rate"] == pytest.approx((correct & (s * adv <= 0)).sum() / correct.sum())
        assert r["mean_logit_shift"] == pytest.approx(move, abs=1e-5)
        assert r["mean_l2"] == pytest.approx(e, abs=1e-6)
        assert r["mean_linf"] <= e + 1e-7
    assert recs[-1]["flip_rate"] > 0


def test_groups_cover_everything_in_nearly_equal_parts():
    for n, size in [(1, 64), (64, 64), (65, 64), (100, 64), (1000, 7)]:
        gs = groups(n, size)
        lens = [g.stop - g.start for g in gs]
        assert sum(lens) == n and max(lens) - min(lens) <= 1 and max(lens) <= size
        assert [g.start for g in gs[1:]] == [g.stop for g in gs[:-1]]


# ------------------------------------------------------------------------- agreement
@pytest.fixture
def bn_trained():
    """BNConvD with running stats moved by a few train-mode batches."""
    torch.manual_seed(0)
    D = BNConvD()
    with torch.no_grad():
        for s in range(3):
            D(_uniform((16, 1, 16, 16), seed=50 + s))
    return D.eval()


ONE_SHOT = {"fgsm": lambda D, x, e, mode: fgsm(D, x, eps=e, mode=mode),
            "bim": lambda D, x, e, mode: bim(D, x, eps=e, steps=3, mode=mode),
            "pgd-l2": lambda D, x, e, mode: pgd_l2(D, x, eps=e, steps=3, mode=mode)}


@pytest.mark.parametrize("mode", ["eval", "batch"])
@pytest.mark.parametrize("method", list(ONE_SHOT))
def test_sweep_scores_what_fgsm_bim_and_pgd_l2_produce(bn_trained, method, mode):
    D, x = bn_trained, _uniform((24, 1, 16, 16), seed=2)
    recs = attack_sweep(D, x, eps=EPS, method=method, steps=3, mode=mode, bn_group=24)

    def attack(e):
        return ONE_SHOT[method](D, x, e, mode)
    with torch.no_grad(), probe_model(D, mode):
        clean = D(x)
        for r, e in zip(recs, EPS):
            adv = D(attack(e)) if e else clean
            assert r["mean_logit_shift"] == pytest.approx((clean - adv).mean().item(), abs=1e-5)
            assert r["mode"] == mode and r["bn_group"] == (24 if mode == "batch" else None)
            if method != "fgsm":
                assert r["steps"] == 3 and r["step_size"] == pytest.approx(
                    default_step_size(e, 3))


def test_sweep_with_a_foolbox_crafter_matches_bim(bn_trained):
    pytest.importorskip("foolbox")
    from probes.adapters.foolbox import foolbox_crafter
    from probes.core.attacks import eps_to_abs

    D, x = bn_trained, _uniform((16, 1, 16, 16), seed=3)
    eps = [0.0, 2 / 255, 4 / 255]
    ours = attack_sweep(D, x, eps=eps, method="bim", steps=5, mode="eval")
    # foolbox takes one absolute step for all eps: compare eps by eps
    for i, e in enumerate(eps[1:], start=1):
        crafter = foolbox_crafter("LinfBasicIterativeAttack", steps=5, random_start=False,
                                  abs_stepsize=eps_to_abs(default_step_size(e, 5)))
        theirs = attack_sweep(D, x, eps=[e], method=crafter, mode="eval")
        assert theirs[0]["method"] == "foolbox:LinfBasicIterativeAttack"
        for k in NUMBERS:
            assert theirs[0][k] == pytest.approx(ours[i][k], abs=1e-5), k
    assert all(p.grad is None for p in D.parameters())


def test_sweep_with_foolbox_l2pgd_matches_pgd_l2(bn_trained):
    pytest.importorskip("foolbox")
    from probes.adapters.foolbox import foolbox_crafter
    from probes.core.attacks import eps_to_abs

    D, x = bn_trained, _uniform((16, 1, 16, 16), seed=3)
    eps = [0.0, 0.1, 0.4]  # L2 radii in pixel units
    ours = attack_sweep(D, x, eps=eps, method="pgd-l2", steps=5, mode="eval")
    for i, e in enumerate(eps[1:], start=1):
        crafter = foolbox_crafter("L2PGD", steps=5, random_start=False,
                                  abs_stepsize=eps_to_abs(default_step_size(e, 5)))
        theirs = attack_sweep(D, x, eps=[e], method=crafter, mode="eval")
        assert theirs[0]["norm"] == ours[i]["norm"] == "l2"
        for k in NUMBERS:
            assert theirs[0][k] == pytest.approx(ours[i][k], abs=1e-5), k
    # near the ball's edge; inside it, as the range clip shortens moves of edge pixels
    assert 0.35 < ours[2]["mean_l2"] <= 0.4 * (1 + 1e-5)


# ------------------------------------------------------------------------- contracts
@pytest.mark.parametrize("method", ["fgsm", "bim", "pgd-l2"])
def test_eval_mode_results_do_not_depend_on_batch_size(bn_trained, method):
    x = _uniform((40, 1, 16, 16), seed=4)
    runs = [attack_sweep(bn_trained, x, eps=EPS, method=method, steps=3, mode="eval",
                         batch_size=b) for b in (3, 16, 64)]
    for other in runs[1:]:
        assert np.allclose(_numbers(runs[0]), _numbers(other), atol=1e-6, equal_nan=True)


def test_batch_mode_results_do_not_depend_on_batch_size(bn_trained):
    x = _uniform((40, 1, 16, 16), seed=4)
    runs = [attack_sweep(bn_trained, x, eps=EPS, method="bim", steps=2, mode="batch",
                         bn_group=16, batch_size=b) for b in (3, 16, 256)]
    assert runs[0] == runs[1] == runs[2]
    # the BatchNorm groups do matter, which is why they are fixed and recorded
    other = attack_sweep(bn_trained, x, eps=EPS, method="bim", steps=2, mode="batch",
                         bn_group=8)
    assert not np.allclose(_numbers(other), _numbers(runs[0]))


@pytest.mark.parametrize("method", ["bim", "pgd-l2"])
def test_same_seed_same_records_other_seed_other_records(bn_trained, method):
    x = _uniform((20, 1, 16, 16), seed=6)
    kw = dict(eps=EPS, method=method, steps=2, random_start=True, mode="eval")
    a = attack_sweep(bn_trained, x, seed=1, **kw)
    b = attack_sweep(bn_trained, x, seed=1, batch_size=7, **kw)
    c = attack_sweep(bn_trained, x, seed=2, **kw)
    assert np.allclose(_numbers(a), _numbers(b), atol=1e-6, equal_nan=True)
    assert not np.allclose(_numbers(a), _numbers(c))
    assert all(r["random_start"] and r["seed"] == 1 for r in a)


@pytest.mark.parametrize("method,attack,eps", [("bim", bim, 4 / 255), ("pgd-l2", pgd_l2, 0.2)])
def test_sweep_random_start_is_the_attacks_random_start(bn_trained, method, attack, eps):
    x = _uniform((12, 1, 16, 16), seed=8)
    [r] = attack_sweep(bn_trained, x, eps=[eps], method=method, steps=2, random_start=True,
                       seed=5, mode="eval")
    xa = attack(bn_trained, x, eps=eps, steps=2, random_start=True, mode="eval",
                generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        shift = (bn_trained(x) - bn_trained(xa)).mean().item()
    assert r["mean_logit_shift"] == pytest.approx(shift, abs=1e-6)


def test_transfer_scores_on_other_discriminators(bn_trained):
    x = _uniform((20, 1, 16, 16), seed=7)
    torch.manual_seed(1)
    other = BNConvD().eval()
    recs = attack_sweep(bn_trained, x, eps=EPS, method="fgsm", mode="eval",
                        transfer_to={"copy": copy.deepcopy(bn_trained), "other": other})
    by = {name: [r for r in recs if r["evaluated_on"] == name] for name in ("self", "copy",
                                                                             "other")}
    assert [len(v) for v in by.values()] == [len(EPS)] * 3
    assert np.allclose(_numbers(by["self"]), _numbers(by["copy"]), equal_nan=True)
    assert not np.allclose(_numbers(by["other"]), _numbers(by["self"]))
    assert all(r["craft_mode"] == "eval" for r in recs)


def test_eps_zero_changes_nothing_and_warnings_flag_low_clean_accuracy():
    D = LinearD(seed=0)
    with torch.no_grad():
        D.b.fill_(-50.0)  # every sample scored "fake": reals all misclassified
    x = _uniform((10, 1, 4, 4), -0.5, 0.5)
    real = attack_sweep(D, x, eps=[0.0, 1 / 255], population="real")
    fake = attack_sweep(D, x, eps=[0.0, 1 / 255], population="fake")
    assert real[0]["clean_accuracy"] == 0 and real[0]["flip_rate"] is None
    assert "clean accuracy 0.00 < 0.5" in real[0]["warning"]
    assert fake[0]["clean_accuracy"] == 1 and fake[0]["warning"] is None
    assert fake[0]["flip_rate"] == 0 and fake[0]["mean_logit_shift"] == 0
    assert fake[0]["mean_loss_increase"] == 0 and fake[0]["mean_linf"] == 0


@pytest.mark.parametrize("kwargs,word", [
    (dict(eps=[2.0]), "eps"), (dict(eps=[-1 / 255]), "eps"), (dict(eps=[]), "eps"),
    (dict(eps=[0.1], population="both"), "population"), (dict(eps=[0.1], method="pgd"), "method"),
    (dict(eps=[0.1], steps=0), "steps"), (dict(eps=[0.1], mode="train"), "mode"),
], ids=["eps>1", "eps<0", "no-eps", "population", "method", "steps", "mode"])
def test_bad_sweep_arguments_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        attack_sweep(LinearD(), _uniform((4, 1, 4, 4)), **kwargs)


# ------------------------------------------------------------------------- skewed BatchNorm
class PooledBND(nn.Module):
    """conv -> BatchNorm -> LeakyReLU -> global mean -> linear: with the pooling right after
    BN, shifting a channel's running mean shifts every eval-mode logit the same way."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        h = nn.functional.leaky_relu(self.bn(self.conv(x)), 0.2).mean(dim=(2, 3))  # (N, 8)
        return self.head(h).squeeze(1)  # (N,)


def _reals_and_fakes(n, seed):
    g = torch.Generator().manual_seed(seed)
    reals = (torch.rand(n, 1, 8, 8, generator=g) > 0.7).float() * 2 - 1  # sparse strokes
    fakes = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1  # uniform noise
    return reals, fakes


def test_auto_mode_gives_sane_accuracy_where_skewed_running_stats_do_not():
    # trained like a GAN D: pure-real and pure-fake batches through BatchNorm
    torch.manual_seed(0)
    D = PooledBND()
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    for step in range(60):
        reals, fakes = _reals_and_fakes(32, step)
        loss = (nn.functional.softplus(-D(reals)).mean()
                + nn.functional.softplus(D(fakes)).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    D.eval()
    with torch.no_grad():  # skew the running stats so eval mode puts every input on one side
        D.bn.running_mean += 25 * torch.sign(D.head.weight[0] * D.bn.weight) * D.bn.running_var
    reals, fakes = _reals_and_fakes(64, 1000)  # held out
    acc = {(m, p): attack_sweep(D, x, eps=[0.0], population=p, mode=m)[0]
           for m in ("auto", "eval") for p, x in (("real", reals), ("fake", fakes))}
    assert acc["auto", "real"]["mode"] == "frozen" and acc["eval", "real"]["mode"] == "eval"
    assert acc["eval", "real"]["clean_accuracy"] == 0  # every real scored "fake"
    assert acc["eval", "real"]["warning"] and "try mode 'frozen'" in acc["eval", "real"]["warning"]
    assert acc["auto", "real"]["clean_accuracy"] > 0.75  # 0.80 measured
    assert acc["auto", "fake"]["clean_accuracy"] > 0.75  # 0.86
    assert acc["auto", "real"]["warning"] is None


# ------------------------------------------------------------------------- minimal eps
@pytest.mark.parametrize("method", ["fgsm", "bim", "pgd-l2"])
@pytest.mark.parametrize("population", ["real", "fake"])
def test_min_flip_eps_matches_the_closed_form_on_a_linear_d(population, method):
    D = LinearD(shape=(1, 4, 4), seed=3)
    x = _uniform((100, 1, 4, 4), -0.3, 0.3)
    s = POP_SIGN[population]
    eps_max, iters = 16 / 255, 12
    out = min_flip_eps(D, x, population=population, method=method, eps_max=eps_max,
                       iters=iters, steps=5, batch_size=7)
    with torch.no_grad():
        clean = D(x).double().numpy()
    # pixel units to reach logit 0: the logit moves by eps * 2 * ||w||_1 in L-inf, ||w||_2 in L2
    w = D.w.detach()
    need = s * clean / (2 * (w.norm() if method == "pgd-l2" else w.abs().sum()).item())
    got = out["per_sample"]
    wrong = s * clean <= 0
    assert np.isnan(got[wrong]).all() and not np.isnan(got[~wrong]).any()
    far = ~wrong & (need > eps_max)
    assert np.isinf(got[far]).all()
    near = ~wrong & (need <= eps_max * (1 - 1e-3))
    assert near.sum() > 10
    assert (got[near] >= need[near] - 1e-6).all()
    assert (got[near] <= need[near] + eps_max / 2**iters + 1e-6).all()
    assert out["n_correct"] == (~wrong).sum() and out["norm"] == ATTACKS[method].norm
    assert out["flipped_share"] == pytest.approx(np.isfinite(got[~wrong]).mean())
    finite_median = np.quantile(got[~wrong], 0.5, method="inverted_cdf")
    assert out["median"] == (None if np.isinf(finite_median) else pytest.approx(finite_median))
    assert set(out["quantiles"]) == {"0.1", "0.25", "0.5", "0.75", "0.9"}


def test_min_flip_eps_does_not_depend_on_batch_size(bn_trained):
    x = _uniform((30, 1, 16, 16), seed=11)
    a = min_flip_eps(bn_trained, x, mode="eval", batch_size=4, iters=6)
    b = min_flip_eps(bn_trained, x, mode="eval", batch_size=64, iters=6)
    assert np.allclose(a["per_sample"], b["per_sample"], equal_nan=True)
    with pytest.raises(ValueError, match="supports methods fgsm, bim"):
        min_flip_eps(bn_trained, x, method="foolbox:FGSM")


def test_eps_in_units_of_a_mode_std_on_2d_data():
    """On a 2-D mixture eps is a multiple of a mode's std (eps_scale): FGSM at eps 0.5 with
    std 0.05 moves each coordinate by exactly 0.025, and the record's norms are in std units."""
    D = torch.nn.Linear(2, 1)
    with torch.no_grad():
        D.weight.copy_(torch.tensor([[1.0, -2.0]]))
        D.bias.zero_()
    D2 = torch.nn.Sequential(D, torch.nn.Flatten(0))
    x = torch.tensor([[0.3, -0.1], [1.0, 0.5]])
    (r,) = attack_sweep(D2, x, eps=[0.5], pixel_range=(-6.0, 6.0), eps_scale=0.05)
    assert r["mean_linf"] == pytest.approx(0.5) and r["eps_255"] is None
    assert r["mean_logit_shift"] == pytest.approx(0.025 * 3)  # |w|_1 * step
    with pytest.raises(ValueError):
        attack_sweep(D2, x, eps=[1.5], pixel_range=(-6.0, 6.0))  # pixel units stop at 1
    assert attack_sweep(D2, x, eps=[1.5], pixel_range=(-6.0, 6.0), eps_scale=0.05)[0][
        "mean_linf"] == pytest.approx(1.5)


# ------------------------------------------------------------------------- the registry
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_registered_attack_runs_through_the_sweep_and_the_bisection(bn_trained, name):
    # one entry is all an attack needs: the sweep records its norm and steps, the bisection
    # takes it when the entry says so, and its eps ball holds in its own norm
    a = ATTACKS[name]
    x = _uniform((10, 1, 16, 16), seed=12)
    recs = attack_sweep(bn_trained, x, eps=[0.0, 4 / 255], method=name, steps=3,
                        random_start=a.iterative, seed=1, mode="eval")
    for r in recs:
        assert r["method"] == name and r["norm"] == a.norm
        assert r["steps"] == (3 if a.iterative else a.steps)
        assert r["random_start"] is a.iterative
        assert (r["step_size"] is not None) is a.iterative
    assert recs[1][{"linf": "mean_linf", "l2": "mean_l2"}[a.norm]] <= 4 / 255 * (1 + 1e-5)
    assert recs[1]["mean_logit_shift"] > 0
    if a.min_eps:
        out = min_flip_eps(bn_trained, x, method=name, steps=3, iters=3, mode="eval")
        assert out["method"] == name and out["steps"] == (3 if a.iterative else a.steps)
