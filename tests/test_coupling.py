"""Coupling, detected and removed for any D (SPEC section 1, issue 21 item 2): the check names
BatchNorm and minibatch-stddev (with its group size) and finds none on a coupling-free net; in
the default mode changing sample j leaves logit i bit-identical, with minibatch-stddev scored
in a group completed by fixed clean references (checked against upstream's batch form on an
explicit group); batch size and order change no per-sample number; an unknown coupling is a
one-line error; probes leave no trace."""

import numpy as np
import pytest
import torch
from torch import nn

import probes
from asgan_base.errors import UserError
from probes.core.coupling import CouplingError, MinibatchStd, causes, check
from probes.core.gradients import input_gradients
from probes.core.modes import frozen_copy, probe_model, resolve_mode
from probes.core.sweep import attack_sweep, min_flip_eps
from probes.measures.attack import attack
from probes.measures.gradients import gradients


class Net(nn.Module):
    """conv -> [BatchNorm] -> LeakyReLU -> [MinibatchStd(group)] -> conv -> linear: logits (N,).
    ``leak``: a hidden coupling (the batch mean of a feature map subtracted)."""

    def __init__(self, bn=False, group=None, leak=False):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, 2, 1)
        self.bn = nn.BatchNorm2d(6) if bn else nn.Identity()
        self.mb = MinibatchStd(group) if group is not None else None
        self.c2 = nn.Conv2d(6 + (self.mb is not None), 4, 3, 2, 1)
        self.fc = nn.Linear(4 * 4 * 4, 1)
        self.leak = leak

    def forward(self, x):
        h = nn.functional.leaky_relu(self.bn(self.c1(x)), 0.2)
        if self.leak:
            h = h - h.mean(0, keepdim=True)
        if self.mb is not None:
            h = self.mb(h)
        return self.fc(nn.functional.leaky_relu(self.c2(h), 0.2).flatten(1))[:, 0]


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    D = Net(**kw)
    with torch.no_grad():
        for m in D.modules():
            if isinstance(m, nn.BatchNorm2d):  # running stats that describe no input
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 3)
    return D.train()


def _data(n=40, m=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g) * 2 - 1, torch.rand(m, 3, 16, 16,
                                                                       generator=g) * 2 - 1


def _state(D):
    return ({k: v.detach().clone() for k, v in D.state_dict().items()},
            [m.training for m in D.modules()],
            [(m.reference is None) for m in D.modules() if isinstance(m, MinibatchStd)],
            [p.grad for p in D.parameters()])


def _same_state(a, b):
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1] == b[1] and a[2] == b[2] and all(g is None for g in b[3])


NETS = {"mbstd": dict(group=4), "bn+mbstd": dict(bn=True, group=4), "bn": dict(bn=True)}


@pytest.mark.parametrize("kind", list(NETS))
def test_default_mode_changing_sample_j_leaves_logit_i_bit_identical(kind):
    x, ref = _data()
    D = _net(**NETS[kind])
    x2 = x.clone()
    x2[5] = -x2[5]
    others = torch.arange(len(x)) != 5
    with torch.no_grad(), probe_model(D, "auto", ref) as (model, mode):
        a, b = model(x), model(x2)
    assert mode == "frozen"
    assert torch.equal(a[others], b[others])
    assert not torch.equal(a[5], b[5])  # the sample's own logit does move
    with torch.no_grad(), probe_model(D, "batch") as (model, _):  # upstream grouping leaks
        assert (model(x)[others] - model(x2)[others]).abs().max() > 1e-6


def test_frozen_minibatch_std_scores_each_sample_in_a_group_completed_by_references():
    """The documented choice, against upstream's batch form: D (no BatchNorm) on the batch
    ``[x_i, r_1, r_2, r_3]`` (one group of G=4) gives x_i the frozen logit, where r_k are the
    first G - 1 = 3 reference samples."""
    x, ref = _data(n=6)
    D = _net(group=4)
    Df = frozen_copy(D, ref)
    (mb,) = [m for m in Df.modules() if isinstance(m, MinibatchStd)]
    assert mb.reference.shape == (3, 6, 8, 8)
    with torch.no_grad():
        frozen = Df(x)
        with probe_model(D, "batch") as (model, _):
            upstream = torch.stack([model(torch.cat([x[i:i + 1], ref[:3]]))[0]
                                    for i in range(len(x))])
    torch.testing.assert_close(frozen, upstream, rtol=1e-5, atol=1e-6)
    assert D.mb.reference is None  # the original keeps upstream's batch behaviour


def test_frozen_needs_group_size_minus_one_references():
    x, ref = _data()
    with pytest.raises(ValueError, match="at least 3 clean reference"):
        frozen_copy(_net(group=4), ref[:2])


@pytest.mark.parametrize("kind,expect", [
    ("bn", [{"kind": "batchnorm", "layers": 1}]),
    ("mbstd", [{"kind": "minibatch-stddev", "group_size": 4, "num_channels": 1,
                "layers": 1}]),
    ("bn+mbstd", [{"kind": "batchnorm", "layers": 1},
                  {"kind": "minibatch-stddev", "group_size": 4, "num_channels": 1,
                   "layers": 1}]),
    ("none", []),
])
def test_the_check_names_the_cause_and_finds_none_on_a_coupling_free_net(kind, expect):
    x, ref = _data()
    D = _net(**NETS.get(kind, {}))
    before = _state(D)
    rec = check(D, x, mode="auto", reference=ref)
    assert rec["causes"] == expect
    assert rec["per_sample"] and rec["max_cross_change"] == 0.0  # bit for bit
    assert rec["mode"] == ("eval" if kind == "none" else "frozen")
    assert rec["batch_view"]["coupled"] is (kind != "none")
    _same_state(before, _state(D))
    # the collective view is allowed and says it is coupled
    rec = check(D, x, mode="batch")
    assert rec["per_sample"] is (kind == "none")


def test_the_check_sees_a_group_of_32():
    x, ref = _data(n=40, m=40)
    rec = check(_net(group=32), x, mode="auto", reference=ref)
    assert rec["causes"][0]["group_size"] == 32 and rec["per_sample"]
    assert rec["batch_view"]["coupled"]


def test_an_unknown_coupling_is_a_one_line_error_naming_the_modes():
    x, ref = _data()
    D = _net(leak=True)
    assert resolve_mode(D, "auto") == "eval"  # nothing known to freeze
    with pytest.raises(CouplingError) as e:
        check(D, x, mode="auto", reference=ref)
    msg = str(e.value)
    assert "\n" not in msg and "unknown" in msg and "'batch'" in msg
    rec = check(D, x, mode="batch")  # the collective view is what can be asked for
    assert rec["causes"] == [{"kind": "unknown"}] and not rec["per_sample"]
    Dm, meta = probes.discriminator(D, shape=(3, 16, 16))
    with pytest.raises(UserError, match="unknown path") as e:
        attack([(Dm, meta)], x=x, populations=("real",), n=8, eps=(0, 1 / 255))
    assert "\n" not in str(e.value)
    out = attack([(Dm, meta)], x=x, populations=("real",), n=8, eps=(0, 1 / 255), mode="batch",
                 bn_group=8)
    assert out["records"][0]["coupling"]["causes"] == [{"kind": "unknown"}]


def test_eval_mode_on_minibatch_std_is_refused_with_the_modes_that_work():
    x, ref = _data()
    with pytest.raises(CouplingError, match="'frozen'"):
        check(_net(group=4), x, mode="eval", reference=ref)


@pytest.mark.parametrize("kind", ["mbstd", "bn+mbstd"])
def test_batch_size_and_order_change_no_per_sample_number(kind):
    x, ref = _data()
    D = _net(**NETS[kind])
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    a = min_flip_eps(D, x, iters=6, reference=ref, batch_size=16)["per_sample"]
    b = min_flip_eps(D, x[perm], iters=6, reference=ref, batch_size=5)["per_sample"]
    np.testing.assert_array_equal(a[perm.numpy()], b)
    ga = input_gradients(D, x, reference=ref, batch_size=16, reduce=None, keep=True)
    gb = input_gradients(D, x[perm], reference=ref, batch_size=5, reduce=None, keep=True)
    torch.testing.assert_close(ga["grad"][perm], gb["grad"], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(ga["logits"][perm], gb["logits"], rtol=1e-6, atol=1e-7)
    ra = attack_sweep(D, x, eps=[1 / 255, 4 / 255], reference=ref, batch_size=16)
    rb = attack_sweep(D, x[perm], eps=[1 / 255, 4 / 255], reference=ref, batch_size=5)
    for u, v in zip(ra, rb):
        assert u["flip_rate"] == v["flip_rate"] and u["mode"] == v["mode"] == "frozen"
        assert u["mean_logit_shift"] == pytest.approx(v["mean_logit_shift"], rel=1e-6)


def test_measures_on_a_module_do_not_depend_on_the_batch_size():
    """``attack`` and ``gradients`` of a (D, meta) pair with BatchNorm and minibatch-stddev:
    --batch-size 16 and 5 give the same numbers, and the original module is untouched."""
    x, _ = _data()
    net = _net(bn=True, group=4)
    before = _state(net)
    D, meta = probes.discriminator(net, shape=(3, 16, 16), group_size=16)
    runs = [attack([(D, meta)], x=x, populations=("real",), n=40, eps=(0, 2 / 255),
                   methods=("fgsm", "bim"), steps=3, batch_size=bs, min_eps=True,
                   bisect_steps=4) for bs in (16, 5)]
    for u, v in zip(runs[0]["records"], runs[1]["records"]):
        assert u["mode"] == "frozen" and u["coupling"]["per_sample"]
        for k in ("clean_accuracy", "flip_rate", "n_correct", "adv_accuracy"):
            assert u[k] == v[k], k
        for k in ("mean_logit_shift", "median_logit_shift", "mean_l2"):
            assert u[k] == pytest.approx(v[k], rel=1e-5, abs=1e-7), k
    assert runs[0]["min_eps"][0]["quantiles"] == runs[1]["min_eps"][0]["quantiles"]
    grads = [gradients([(D, meta)], x=x, n=40, batch_size=bs, boot=0)[1][0]["res"]
             for bs in (16, 5)]
    for k, v in grads[0]["per_image"].items():
        torch.testing.assert_close(v, grads[1]["per_image"][k], rtol=1e-5, atol=1e-9)
    _same_state(before, _state(net))


def test_probes_leave_no_trace_on_a_minibatch_std_module():
    x, ref = _data()
    net = _net(bn=True, group=4)
    net(x)  # a training forward: BatchNorm statistics are now "used"
    before = _state(net)
    D, meta = probes.discriminator(net, shape=(3, 16, 16))
    attack([(D, meta)], x=x, populations=("real",), n=16, eps=(0, 2 / 255), methods=("bim",),
           steps=2)
    gradients([(D, meta)], x=x, n=16, boot=0)
    check(net, x, mode="auto", reference=ref)
    check(net, x, mode="batch")
    _same_state(before, _state(net))
    assert causes(net)[1]["group_size"] == 4


def test_a_random_forward_is_not_taken_for_a_coupling():
    class Noisy(nn.Module):
        def forward(self, x):
            return x.flatten(1).mean(1) + torch.randn(len(x))

    x, _ = _data()
    with pytest.raises(CouplingError, match="random numbers.*probes.discriminator"):
        check(Noisy(), x)
    Dm, meta = probes.discriminator(Noisy(), shape=(3, 16, 16))  # seeded: per sample again
    assert check(Dm, x)["per_sample"]


def test_too_few_references_for_a_group_is_a_user_error():
    x, _ = _data(n=10)
    Dm, meta = probes.discriminator(_net(group=32), shape=(3, 16, 16))
    with pytest.raises(UserError, match="at least 31 clean reference"):
        attack([(Dm, meta)], x=x, populations=("real",), n=10, eps=(0,))


@pytest.mark.parametrize("name", ["dcgan", "sngan", "resnet_bn", "biggan_pd"])
def test_the_check_agrees_with_a_family_readers_description(name):
    """StudioGAN D's read from upstream-written files: the check finds what the reader says
    the rebuilt net contains (BatchNorm or nothing), and the default mode is per sample."""
    from pathlib import Path

    from probes.io.families import studiogan

    (path,) = (Path(__file__).parent / "fixtures" / "studiogan" / name).glob("model=*.pth")
    D, desc = studiogan.read(path, label=1 if _conditional(path) else None)
    s = desc["resolution"]
    Dm, meta = probes.discriminator(D, shape=(desc["channels"], s, s),
                                    pixel_range=desc["pixel_range"],
                                    reduction=desc["output"]["reduction"])
    x = torch.rand(16, desc["channels"], s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rec = check(Dm, x)
    assert rec["causes"] == desc["coupling"] and rec["per_sample"]
    assert rec["batch_view"]["coupled"] is bool(desc["coupling"])


def _conditional(path):
    return path.parent.name.endswith("_pd")
