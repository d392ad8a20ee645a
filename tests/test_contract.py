"""The discriminator contract for any module (SPEC section 1, issue 21 item 1): declared range
and shape, the reduction of its output to one logit per sample (patch map == manual mean,
dict key), a bound class for conditional D's, a seeded forward for random ones, float32 with
the dtype recorded; every measure takes a (D, meta) pair and records the contract; the README
example runs; nothing of the probe stays on the module."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import probes
from asgan_base.errors import UserError
from probes.core.contract import Contracted, infer_reduction
from probes.measures.attack import attack
from probes.measures.gradients import gradients
from probes.measures.saliency import saliency

ROOT = Path(__file__).resolve().parents[1]


class PatchD(nn.Module):
    """(N, 3, 16, 16) -> a (N, 1, 4, 4) patch map, BatchNorm inside; ``as_dict``: the map
    under key "logits" beside a feature entry."""

    def __init__(self, as_dict=False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.BatchNorm2d(8),
                                  nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 4, 2, 1))
        self.as_dict = as_dict

    def forward(self, x):
        y = self.body(x)
        return {"logits": y, "feat": y.flatten(1)} if self.as_dict else y


class CondD(nn.Module):
    """A projection D: ``forward(x, c)`` with one-hot ``c`` (N, 5) or class ids (N,)."""

    def __init__(self, k=5):
        super().__init__()
        self.f = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8), nn.LeakyReLU(0.2))
        self.out = nn.Linear(8, 1)
        self.embed = nn.Linear(k, 8, bias=False)

    def forward(self, x, c):
        if c.dtype == torch.long:
            c = nn.functional.one_hot(c, self.embed.in_features).float()
        h = self.f(x)
        return self.out(h)[:, 0] + (self.embed(c) * h).sum(1)


class NoisyD(nn.Module):
    """Adds fresh Gaussian noise to its input at every forward (instance noise)."""

    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 1))

    def forward(self, x):
        return self.f(x + 0.1 * torch.randn_like(x))


def _x(n=12, seed=0):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _state(net):
    return ({k: v.detach().clone() for k, v in net.state_dict().items()},
            [m.training for m in net.modules()], [p.dtype for p in net.parameters()])


def _same(a, b):
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1] == b[1] and a[2] == b[2]


def test_a_patch_map_reduces_to_its_mean_over_positions():
    torch.manual_seed(0)
    net = PatchD().eval()
    D, meta = probes.discriminator(net, shape=(3, 16, 16))
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(D(x), net(x).mean(dim=(1, 2, 3)), rtol=0, atol=0)
    out = meta["contract"]["output"]
    assert out["reduction"] == "mean" and out["shape"] == "(N, 1, 4, 4)"
    assert meta["pixel_range"] == [-1.0, 1.0] and meta["data"]["shape"] == [3, 16, 16]


def test_auto_reduction_rules():
    assert infer_reduction(torch.zeros(4))[0] == "squeeze"
    assert infer_reduction(torch.zeros(4, 1))[0] == "squeeze"
    assert infer_reduction(torch.zeros(4, 1, 3, 3))[0] == "mean"
    for y in (torch.zeros(4, 2), torch.zeros(4, 3, 2, 2), {"a": torch.zeros(4)}, (1, 2)):
        with pytest.raises(ValueError, match="declare"):
            infer_reduction(y)


def test_a_dict_output_needs_its_key_and_then_reduces_by_its_shape():
    torch.manual_seed(0)
    net = PatchD(as_dict=True).eval()
    with pytest.raises(UserError, match="key:<name>") as e:
        probes.discriminator(net, shape=(3, 16, 16))
    assert "'feat'" in str(e.value) and "'logits'" in str(e.value)
    D, meta = probes.discriminator(net, shape=(3, 16, 16), reduction="key:logits")
    x = _x()
    with torch.no_grad():
        assert torch.equal(D(x), net(x)["logits"].mean(dim=(1, 2, 3)))
    assert meta["contract"]["output"]["reduction"] == "key:logits"
    with pytest.raises(UserError, match="no key 'score'"):
        probes.discriminator(net, shape=(3, 16, 16), reduction="key:score")


def test_a_conditional_d_gets_its_class_bound_for_every_sample():
    torch.manual_seed(0)
    net = CondD().eval()
    x = _x()
    onehot = torch.zeros(len(x), 5)
    onehot[:, 3] = 1
    with torch.no_grad():
        want = net(x, onehot)
        D1, m1 = probes.discriminator(net, shape=(3, 16, 16), label=3, num_classes=5)
        D2, m2 = probes.discriminator(net, shape=(3, 16, 16), label=3, label_as="index")
        D3, m3 = probes.discriminator(net, shape=(3, 16, 16), label=3,
                                      label_as=lambda n, x: n(x, onehot[:len(x)]))
        for D in (D1, D2, D3):
            torch.testing.assert_close(D(x), want, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(D1(x), net(x, torch.eye(5)[[0] * len(x)]))  # class matters
    assert (m1["contract"]["label"], m1["contract"]["label_as"]) == (3, "onehot")
    assert m2["contract"]["label_as"] == "index" and m3["contract"]["label_as"] == "callable"
    assert m1["contract"]["conditional"]
    with pytest.raises(UserError, match="num_classes"):
        probes.discriminator(net, shape=(3, 16, 16), label=3)
    with pytest.raises(UserError, match="out of range"):
        probes.discriminator(net, shape=(3, 16, 16), label=5, num_classes=5)
    with pytest.raises(UserError, match="D failed on a probe batch"):  # forgot the label
        probes.discriminator(net, shape=(3, 16, 16))


def test_a_random_forward_is_seeded_so_the_same_input_gives_the_same_logit():
    torch.manual_seed(0)
    net = NoisyD()
    x = _x()
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))  # it is random
    D, meta = probes.discriminator(net, shape=(3, 16, 16), seed=7)
    assert meta["contract"]["seed"] == 7 and "random" in meta["contract"]["randomness"]
    rng = torch.get_rng_state()
    with torch.no_grad():
        a, b = D(x), D(x)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is untouched
    Dd, md = probes.discriminator(PatchD(), shape=(3, 16, 16))
    assert md["contract"]["randomness"] == "none" and Dd.seed is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_other_dtypes_are_probed_as_a_float32_copy_and_recorded(dtype):
    torch.manual_seed(0)
    net = PatchD().eval().to(dtype)
    before = _state(net)
    D, meta = probes.discriminator(net, shape=(3, 16, 16))
    x = _x()
    with torch.no_grad():
        y = D(x)
        ref = net.float()(x).mean(dim=(1, 2, 3))  # the same weights in float32, by hand
        net.to(dtype)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    assert meta["contract"]["dtype"] == str(dtype).replace("torch.", "")
    assert meta["contract"]["float32"] == "a float32 copy"
    _same(before, _state(net))


def test_bad_declarations_are_one_line_user_errors():
    for kwargs, words in ((dict(), "shape="), (dict(shape=(3, 16, 16), pixel_range=(1, 0)),
                                                "hi > lo"),
                          (dict(shape=(3, 16, 16), reduction="max"), "reduction must be"),
                          (dict(shape=(1, 16, 16)), "D failed")):
        with pytest.raises(UserError, match=re.escape(words)) as e:
            probes.discriminator(PatchD(), **kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="cannot probe"):
        attack([3], x=_x())


def test_every_measure_takes_a_module_records_the_contract_and_leaves_no_trace():
    torch.manual_seed(0)
    net = PatchD().train()
    x = _x(24)
    net(x)  # a training forward: BatchNorm statistics are now "used"
    before = _state(net)
    D, meta = probes.discriminator(net, shape=(3, 16, 16), group_size=8)
    out = attack([(D, meta)], x=x, populations=("real",), n=24, eps=(0, 1 / 255))
    res, _ = gradients([(D, meta)], x=x, n=24, boot=0)
    sal, _, maps = saliency((D, meta), x=x, n=4, methods=("saliency",))
    for rec in (out["records"][0], res["checkpoints"][0], sal):
        assert rec["contract"]["reduction"] == "mean" and rec["contract"]["dtype"] == "float32"
        assert rec["coupling"]["causes"] == [{"kind": "batchnorm", "layers": 1}]
        assert rec["coupling"]["per_sample"] and rec["coupling"]["mode"] == "frozen"
    assert out["records"][0]["reference_n"] == 8 and out["records"][0]["mode"] == "frozen"
    assert maps[0][1].shape == (4, 3, 16, 16)
    # a bare module: declared with defaults and the shape of x
    bare = attack([net], x=x, populations=("real",), n=8, eps=(0,))
    assert bare["records"][0]["contract"]["reduction"] == "mean"
    assert bare["records"][0]["checkpoint"] == "python:PatchD"
    _same(before, _state(net))
    assert all(p.grad is None for p in net.parameters())


def test_a_module_is_not_copied_when_it_is_float32():
    net = PatchD()
    D, _ = probes.discriminator(net, shape=(3, 16, 16))
    assert isinstance(D, Contracted) and D.net is net


def test_the_readme_example_runs():
    """README "Your own D, in your own code": its code block, run as written (small sizes)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own D, in your own code")[1].split("\n## ")[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(code.strip().splitlines()) <= 16
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    rec = scope["rec"]
    assert rec["contract"]["reduction"] == "mean" and rec["mode"] == "frozen"
    assert rec["coupling"]["causes"] == [{"kind": "batchnorm", "layers": 1}]
    assert scope["result"]["checkpoints"][0]["coupling"]["per_sample"]
