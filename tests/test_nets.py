"""Contracts of trainers.nets: shapes, ranges, raw logits, spec round-trips, errors, counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from asgan_base.errors import UserError
from probes.core.modes import has_batchnorm
from trainers.nets import ARCHS, build_net, net_specs

Z_DIM, N, WIDTH = 8, 4, 8  # small everything: the whole file runs in seconds on 2 CPU cores

SHAPES = {
    "dcgan": [(c, r, r) for r in (28, 32, 64) for c in (1, 3)],
    "resnet": [(c, r, r) for r in (32, 64) for c in (1, 3)],
    "mlp": [(2,)],
}
CASES = [(arch, shape, sn) for arch, shapes in SHAPES.items() for shape in shapes
         for sn in (False, True)]
IDS = [f"{a}-{'x'.join(map(str, s))}-{'sn' if sn else 'plain'}" for a, s, sn in CASES]


def _build(arch, shape, sn, seed=0):
    g_spec, d_spec = net_specs(arch, shape=shape, z_dim=Z_DIM, width=WIDTH, d_spectral_norm=sn)
    torch.manual_seed(seed)
    return g_spec, d_spec, build_net(g_spec), build_net(d_spec)


def _x(shape, seed=1):
    return torch.rand((N, *shape), generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("arch,shape,sn", CASES, ids=IDS)
def test_generator_shape_and_range(arch, shape, sn):
    _, _, G, _ = _build(arch, shape, sn)
    x_fake = G(torch.randn(N, Z_DIM))  # (N, *shape)
    assert x_fake.shape == (N, *shape) and x_fake.dtype == torch.float32
    if arch == "mlp":  # raw coordinates: grid25 spans [-4, 4], so no tanh may bound them
        assert not any(isinstance(m, nn.Tanh) for m in G.modules())
    else:
        assert x_fake.abs().max() <= 1.0


@pytest.mark.parametrize("arch,shape,sn", CASES, ids=IDS)
def test_discriminator_returns_raw_logits(arch, shape, sn):
    _, _, G, D = _build(arch, shape, sn)
    logits = D(_x(shape))
    assert logits.shape == (N,)
    assert not any(isinstance(m, (nn.Sigmoid, nn.LogSigmoid)) for m in D.modules())
    # in-place activations break module backward hooks (captum's GuidedBackprop, DeepLift)
    assert not any(getattr(m, "inplace", False) for m in [*D.modules(), *G.modules()])
    # Blow up the last layer's output: a hidden sigmoid would keep the result inside [0, 1].
    last = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    last.register_forward_hook(lambda m, inp, out: (out - out.mean()) * 1e3)
    logits = D(_x(shape))
    assert logits.shape == (N,) and logits.min() < -1 and logits.max() > 1


@pytest.mark.parametrize("arch,shape,sn", CASES, ids=IDS)
def test_spec_round_trip_rebuilds_same_net(arch, shape, sn):
    g_spec, d_spec, G, D = _build(arch, shape, sn, seed=0)
    z, x = torch.randn(N, Z_DIM), _x(shape)
    for spec, net, inp in [(g_spec, G, z), (d_spec, D, x)]:
        stored = json.loads(json.dumps(spec))  # what a checkpoint gives back
        assert stored == spec
        torch.manual_seed(123)  # a different init, so equality below comes from the load
        twin = build_net(stored)
        sd, sd_twin = net.state_dict(), twin.state_dict()
        assert list(sd) == list(sd_twin)
        assert all(sd[k].shape == sd_twin[k].shape for k in sd)
        twin.load_state_dict(sd)
        net.eval(), twin.eval()
        with torch.no_grad():
            torch.testing.assert_close(twin(inp), net(inp), rtol=0, atol=0)


@pytest.mark.parametrize("arch,shape,sn", CASES, ids=IDS)
def test_has_batchnorm_and_spectral_norm(arch, shape, sn):
    _, d_spec, G, D = _build(arch, shape, sn)
    assert d_spec["kwargs"]["spectral_norm"] is sn
    assert has_batchnorm(G) == (arch != "mlp")
    assert has_batchnorm(D) == (arch == "dcgan" and not sn)  # SN drops dcgan D's BN (SNGAN)
    weighted = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert weighted and all(parametrize.is_parametrized(m, "weight") == sn for m in weighted)
    assert not any(parametrize.is_parametrized(m) for m in G.modules())


@pytest.mark.parametrize("arch,shape", [("dcgan", (3, 32, 32)), ("resnet", (1, 32, 32)),
                                        ("mlp", (2,))], ids=["dcgan", "resnet", "mlp"])
def test_init_is_deterministic_given_seed(arch, shape):
    a, b = _build(arch, shape, True, seed=5), _build(arch, shape, True, seed=5)
    for net_a, net_b in [(a[2], b[2]), (a[3], b[3])]:
        for (k, va), vb in zip(net_a.state_dict().items(), net_b.state_dict().values()):
            assert torch.equal(va, vb), k


def test_dcgan_init_statistics():
    torch.manual_seed(0)
    G = build_net(net_specs("dcgan", shape=(3, 32, 32), z_dim=100)[0])
    conv_w = torch.cat([m.weight.flatten() for m in G.modules()
                        if isinstance(m, nn.ConvTranspose2d)])
    bn_w = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(conv_w.std().item() - 0.02) < 1e-3 and abs(bn_w.mean().item() - 1.0) < 5e-3


def _n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_dcgan32_parameter_counts_match_the_classic_nets():
    g_spec, d_spec = net_specs("dcgan", shape=(3, 32, 32), z_dim=100)  # width None -> 64
    assert d_spec["kwargs"]["width"] == 64
    # Classic DCGAN-32 D (ndf=64, bias-free convs, 4x4 kernels):
    #   conv 3->64: 3*64*16 = 3,072          conv 64->128: 64*128*16 = 131,072  + BN 2*128 = 256
    #   conv 128->256: 128*256*16 = 524,288  + BN 2*256 = 512   conv 256->1: 256*16 = 4,096
    #   total 3,072 + 131,072 + 256 + 524,288 + 512 + 4,096 = 663,296
    assert _n_params(build_net(d_spec)) == 663_296
    # Classic G (nz=100, ngf=64): 100*256*16 + 512 + 256*128*16 + 256 + 128*64*16 + 128
    #   + 64*3*16 = 409,600 + 512 + 524,288 + 256 + 131,072 + 128 + 3,072 = 1,068,928
    assert _n_params(build_net(g_spec)) == 1_068_928


def test_net_specs_are_plain_json_even_from_numpy_shapes():
    shape = tuple(np.array([3, 32, 32], dtype=np.int64))
    for spec in net_specs("resnet", shape=shape, z_dim=np.int64(16)):
        assert json.loads(json.dumps(spec)) == spec
        assert spec["kwargs"]["width"] == 128  # resnet default at 32 px, recorded explicitly
    assert net_specs("resnet", shape=(3, 64, 64), z_dim=16)[0]["kwargs"]["width"] == 64
    # every factory argument is recorded, so a later change of defaults cannot alter old nets
    g_spec, d_spec = net_specs("mlp", shape=(2,), z_dim=2)
    assert g_spec["kwargs"] == {"z_dim": 2, "dim": 2, "width": 256, "depth": 3}
    assert d_spec["kwargs"] == {"dim": 2, "width": 256, "depth": 3, "spectral_norm": False}


def test_registry_lists_every_arch_with_both_roles():
    assert set(ARCHS) == {"dcgan", "resnet", "mlp"}
    assert all(set(roles) == {"G", "D"} for roles in ARCHS.values())


_D32 = {"arch": "dcgan", "role": "D", "kwargs": {"channels": 3, "resolution": 32}}
ERRORS = [
    ("unknown-arch", lambda: build_net({**_D32, "arch": "stylegan"}), "dcgan"),
    ("unknown-role", lambda: build_net({**_D32, "role": "E"}), "choose one of"),
    ("unknown-kwarg", lambda: build_net({**_D32, "kwargs": {"widht": 8}}), "widht"),
    ("bad-spec-keys", lambda: build_net({"arch": "dcgan"}), "arch, role, kwargs"),
    ("non-json-kwarg", lambda: build_net({**_D32, "kwargs": {"width": torch.tensor(8)}}),
     "plain"),
    ("kwargs-not-dict", lambda: build_net({**_D32, "kwargs": "width=8"}), "(a dict)"),
    ("zero-width", lambda: build_net({**_D32, "kwargs": {"width": 0}}), "sizes >= 1"),
    ("dcgan-48px", lambda: build_net({**_D32, "kwargs": {"resolution": 48}}), "[28, 32, 64]"),
    ("resnet-28px", lambda: net_specs("resnet", shape=(1, 28, 28), z_dim=8), "[32, 64]"),
    ("specs-unknown-arch", lambda: net_specs("vit", shape=(2,), z_dim=8), "mlp"),
    ("non-square", lambda: net_specs("dcgan", shape=(3, 32, 16), z_dim=8), "square"),
    ("mlp-on-images", lambda: net_specs("mlp", shape=(1, 28, 28), z_dim=8), "(dim,)"),
]


@pytest.mark.parametrize("call,fragment", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_user_mistakes_raise_one_line_user_error(call, fragment):
    with pytest.raises(UserError) as err:
        call()
    message = str(err.value)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("arch, shape", [("dcgan", (1, 28, 28)), ("resnet", (3, 32, 32)),
                                         ("mlp", (2,))])
def test_d_width_changes_d_only(arch, shape):
    """``d_width`` (a stronger D, study v3's pilot) widens D and leaves G as ``width`` makes it;
    the resolved width is recorded in the D spec, so the checkpoint rebuilds it."""
    g0, d0 = net_specs(arch, shape=shape, z_dim=8, width=8)
    g1, d1 = net_specs(arch, shape=shape, z_dim=8, width=8, d_width=16)
    assert g1 == g0 and d1["kwargs"]["width"] == 16 and d0["kwargs"]["width"] == 8

    def size(spec):
        return sum(p.numel() for p in build_net(spec).parameters())

    assert size(d1) > size(d0)
    x = torch.zeros(3, *shape)
    assert build_net(d1)(x).shape == (3,)
