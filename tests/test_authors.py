"""probes.io.families.authors / ``--format authors``: the AS-GAN authors' twelve discriminators.

The reference nets below are written from the layer facts of the authors' model files
(``CirclePassFilter/AS_GAN``, ``model/*.py``), independently of probes.io.families.authors: torch's
own hook-style spectral norm, BatchNorm, and the sigmoid where the authors put one. Each is
trained for a few forwards (running stats and spectral-norm vectors off their init), saved
with ``torch.save(netD.state_dict())`` and loaded back through ``probes.io.sources.load`` or
the CLI; our logits must be the logit of the reference's output.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from asgan_base.errors import UserError
from probes.io.families import authors
from probes.io.sources import load
from tests.conftest import run_cli


def _maybe_sn(layer: nn.Module, sn: bool) -> nn.Module:
    return spectral_norm(layer) if sn else layer


# ------------------------------------------------------------------ reference nets (facts)
class RefDCGAN(nn.Module):
    """conv4x4/2 (no bias), LReLU(0.2); [conv4x4/2, BN, LReLU] x (n_down - 1); conv4x4/1/0 to
    one channel; Sigmoid. DCGAN_32* return (N,), DCGAN_64*/128 return (N, 1, 1, 1)."""

    def __init__(self, ndf: int, n_down: int, sn: bool, flat: bool, nc: int = 3):
        super().__init__()
        layers = [_maybe_sn(nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), sn),
                  nn.LeakyReLU(0.2, inplace=True)]
        ch = ndf
        for _ in range(n_down - 1):
            layers += [_maybe_sn(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), sn),
                       nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        layers += [_maybe_sn(nn.Conv2d(ch, 1, 4, 1, 0, bias=False), sn), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)
        self.flat = flat

    def forward(self, x):
        out = self.main(x)
        return out.view(-1, 1).squeeze(1) if self.flat else out


class RefOptimizedBlock(nn.Module):
    """residual: c1 (in -> out), ReLU, c2, avgpool; shortcut: avgpool, c_sc (1x1)."""

    def __init__(self, c_in, c_out, sn):
        super().__init__()
        self.c1 = _maybe_sn(nn.Conv2d(c_in, c_out, 3, 1, 1), sn)
        self.c2 = _maybe_sn(nn.Conv2d(c_out, c_out, 3, 1, 1), sn)
        self.c_sc = _maybe_sn(nn.Conv2d(c_in, c_out, 1, 1, 0), sn)

    def forward(self, x):
        return self.c_sc(F.avg_pool2d(x, 2)) + F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)


class RefDBlock(nn.Module):
    """residual: ReLU, c1 (in -> in), ReLU, c2 (in -> out), avgpool; shortcut: c_sc, avgpool."""

    def __init__(self, c_in, c_out, sn):
        super().__init__()
        self.c1 = _maybe_sn(nn.Conv2d(c_in, c_in, 3, 1, 1), sn)
        self.c2 = _maybe_sn(nn.Conv2d(c_in, c_out, 3, 1, 1), sn)
        self.c_sc = _maybe_sn(nn.Conv2d(c_in, c_out, 1, 1, 0), sn)

    def forward(self, x):
        res = F.avg_pool2d(self.c2(F.relu(self.c1(F.relu(x)))), 2)
        return F.avg_pool2d(self.c_sc(x), 2) + res


class RefResNet(nn.Module):
    """block1 (optimized), block2..n; ReLU; sum over H, W; l6 Linear(., 1); Sigmoid or not.
    Output (N, 1)."""

    def __init__(self, nf, n_blocks, same, sn, sigmoid):
        super().__init__()
        chs = [nf if same else nf * 2 ** i for i in range(n_blocks)]
        self.block1 = RefOptimizedBlock(3, chs[0], sn)
        for i in range(1, n_blocks):
            setattr(self, f"block{i + 1}", RefDBlock(chs[i - 1], chs[i], sn))
        self.l6 = _maybe_sn(nn.Linear(chs[-1], 1), sn)
        self.n_blocks, self.sigmoid = n_blocks, sigmoid

    def forward(self, x):
        h = x
        for i in range(self.n_blocks):
            h = getattr(self, f"block{i + 1}")(h)
        out = self.l6(torch.sum(F.relu(h), dim=(2, 3)))
        return torch.sigmoid(out) if self.sigmoid else out


# family: (reference factory taking a width, authors' default width, input side)
REFS = {
    "DCGAN_32": (lambda w: RefDCGAN(w, 3, False, True), 128, 32),
    "DCGAN_64": (lambda w: RefDCGAN(w, 4, False, False), 128, 64),
    "DCGAN_128": (lambda w: RefDCGAN(w, 5, False, False), 64, 128),
    "DCGAN_32_sn": (lambda w: RefDCGAN(w, 3, True, True), 128, 32),
    "DCGAN_64_sn": (lambda w: RefDCGAN(w, 4, True, False), 128, 64),
    "resnet32": (lambda w: RefResNet(w, 4, False, False, True), 96, 32),
    "resnet64": (lambda w: RefResNet(w, 5, False, False, True), 64, 64),
    "resnet32_same": (lambda w: RefResNet(w, 4, True, False, True), 256, 32),
    "resnet64_same": (lambda w: RefResNet(w, 5, True, False, True), 256, 64),
    "resnet32_sn": (lambda w: RefResNet(w, 4, True, True, False), 64, 32),
    "resnet32_same_sn": (lambda w: RefResNet(w, 4, True, True, True), 256, 32),
    "resnet64_same_sn": (lambda w: RefResNet(w, 5, True, True, True), 256, 64),
}
# small widths keep the forward tests fast; resnet32_sn keeps its 64 (its width is what tells
# it from resnet32_same_sn when the family is inferred)
SMALL = {"DCGAN_32": 8, "DCGAN_64": 4, "DCGAN_128": 2, "DCGAN_32_sn": 8, "DCGAN_64_sn": 4,
         "resnet32": 4, "resnet64": 2, "resnet32_same": 8, "resnet64_same": 4,
         "resnet32_sn": 64, "resnet32_same_sn": 8, "resnet64_same_sn": 4}


def _x(side, n=3, seed=0):
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _reference(family, width, seed=0):
    """The reference at ``width``, after 2 train-mode forwards (BN stats, SN vectors move)."""
    make, _, side = REFS[family]
    torch.manual_seed(seed)
    ref = make(width)
    ref.train()
    with torch.no_grad():
        for s in range(2):
            ref(_x(side, 4, seed=10 + s))
    return ref.eval()


def test_the_twelve_families_are_the_authors_twelve_model_files():
    assert sorted(authors.FAMILIES) == sorted(REFS)


@pytest.mark.parametrize("family", list(REFS))
def test_names_shapes_and_inferred_family_match_at_the_authors_widths(family):
    """At the widths of the authors' files: the same tensor names and shapes, and the file
    alone names its family."""
    make, width, _ = REFS[family]
    torch.manual_seed(0)
    ref_sd = make(width).state_dict()
    ours = authors.build(family).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
           {k: tuple(v.shape) for k, v in ref_sd.items()}
    assert authors.infer(ref_sd) == (family, 3, width)
    assert authors.n_tensors(family) == len(ref_sd)


@pytest.mark.parametrize("family", list(REFS))
def test_logits_are_the_logit_of_the_authors_output(tmp_path, family):
    ref = _reference(family, SMALL[family])
    path = tmp_path / "netD_epoch_3.pth"
    torch.save(ref.state_dict(), path)
    G, D, meta = load(path, format="authors")
    assert G is None and not D.training
    kw = meta["d_spec"]["kwargs"]
    side = REFS[family][2]
    assert (meta["d_spec"]["arch"], kw["family"], kw["width"]) == ("authors", family,
                                                                   SMALL[family])
    assert meta["data"]["shape"] == [3, side, side] and meta["pixel_range"] == [-1.0, 1.0]
    x = _x(side)
    with torch.no_grad():
        p = ref(x).reshape(-1)  # (N,) the authors' output, a probability unless resnet32_sn
        z = D(x)  # (N,) ours
        # the same maths in float64: the logit of a probability is then exact to ~1e-12
        p64 = ref.double()(x.double()).reshape(-1)
        z64 = D.double()(x.double())
    assert z.shape == (3,)
    if kw["sigmoid"]:
        assert bool(((p64 > 1e-4) & (p64 < 1 - 1e-4)).all()), "saturated: the test says nothing"
        torch.testing.assert_close(z64, torch.logit(p64), rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.sigmoid(z), p, rtol=0, atol=1e-6)
    else:  # resnet32_sn: the authors' forward returns the logit itself
        torch.testing.assert_close(z64, p64, rtol=0, atol=1e-5)
        torch.testing.assert_close(z, p, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["DCGAN_32_sn", "resnet64_same_sn"])
def test_input_gradients_are_those_of_the_authors_pre_sigmoid_output(tmp_path, family):
    """Attacks follow d logit / dx: ours must equal d logit(sigmoid output) / dx of theirs."""
    ref = _reference(family, SMALL[family])
    path = tmp_path / "netD.pth"
    torch.save(ref.state_dict(), path)
    _, D, _ = load(path, format="authors")
    x = _x(REFS[family][2]).double().requires_grad_(True)
    (g_ours,) = torch.autograd.grad(D.double()(x).sum(), x)
    (g_ref,) = torch.autograd.grad(torch.logit(ref.double()(x)).sum(), x)
    assert g_ours.abs().max() > 0
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-6, atol=1e-9)
    assert all(p.grad is None for p in D.parameters())


def test_batch_and_frozen_modes_normalise_like_the_reference_in_train_mode(tmp_path):
    """A BatchNorm D in ``batch`` mode equals the reference with only its BatchNorm layers in
    train mode (spectral-norm vectors stay as stored); ``frozen`` (the default for BatchNorm,
    a deep copy of D) gives the same logits on its own reference group."""
    from probes.core.modes import probe_model

    ref = _reference("DCGAN_64_sn", 4)
    path = tmp_path / "netD.pth"
    torch.save(ref.state_dict(), path)
    _, D, _ = load(path, format="authors")
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    x = _x(64, n=4)
    with torch.no_grad():
        p = ref(x).reshape(-1)
        with probe_model(D, "batch") as (M, mode):
            z = M(x)
        with probe_model(D, "auto", reference=x) as (Mf, mode_f):
            zf = Mf(x)
    assert (mode, mode_f) == ("batch", "frozen")
    torch.testing.assert_close(torch.sigmoid(z), p, rtol=0, atol=1e-6)
    torch.testing.assert_close(zf, z, rtol=1e-5, atol=1e-5)


def test_named_family_model_file_path_and_data_parallel_prefix(tmp_path):
    ref = _reference("resnet32_same_sn", 8)
    path = tmp_path / "netD.pth"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, path)
    _, D, meta = load(path, format="authors", arch="model/resnet32_sn.py")
    assert meta["d_spec"]["kwargs"]["family"] == "resnet32_sn"  # named: same tensors
    assert not meta["d_spec"]["kwargs"]["sigmoid"]
    x = _x(32)
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(D(x)), ref(x).reshape(-1), rtol=0, atol=1e-6)
    with pytest.raises(UserError, match="do not fit the authors' resnet64_same_sn"):
        load(path, format="authors", arch="resnet64_same_sn")
    with pytest.raises(UserError, match="unknown authors' family 'resnet99'.*DCGAN_32"):
        load(path, format="authors", arch="resnet99")


def test_a_torch_1_0_spectral_norm_file_loads(tmp_path):
    """torch <= 1.0 saved the normalised ``weight`` beside ``weight_orig`` and ``weight_u``,
    and no ``weight_v``; BatchNorm had no ``num_batches_tracked`` before 0.4.1."""
    ref = _reference("DCGAN_32_sn", 8)
    old = {}
    for k, v in ref.state_dict().items():
        if k.endswith("weight_v") or k.endswith("num_batches_tracked"):
            continue
        old[k] = v
    for name, m in ref.named_modules():
        if hasattr(m, "weight_orig"):
            old[f"{name}.weight"] = m.weight.detach().clone()  # W / sigma, as torch 1.0 kept it
    path = tmp_path / "netD_old.pth"
    torch.save(old, path)
    _, D, meta = load(path, format="authors")
    assert meta["d_spec"]["kwargs"]["family"] == "DCGAN_32_sn"
    x = _x(32)
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(D(x)), ref(x), rtol=0, atol=1e-6)


def test_cli_info_reads_an_authors_file(tmp_path, capsys):
    import json

    from probes.cli import main

    ref = _reference("resnet64_same_sn", 4)
    path = tmp_path / "netD_epoch_0.pth"
    torch.save(ref.state_dict(), path)
    code, out, err = run_cli(main, ["info", str(path), "--format", "authors"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["d_spec"]["kwargs"]["family"] == "resnet64_same_sn"
    assert info["parameters"]["D"] == sum(p.numel() for p in ref.parameters())


def _foreign_files(tmp_path):
    """Files that are no authors' netD: our resnet D's names, torch-mimicry's SNGAN-32 names
    (block1..4 but ``l5``), and a spectral-norm DCGAN_128 (no such model file)."""
    t = torch.zeros
    files = {"ours": {"blocks.0.conv1.weight": t(4, 3, 3, 3), "linear.weight": t(1, 4)},
             "mimicry": {"block1.c1.weight": t(4, 3, 3, 3), "block1.c1.bias": t(4),
                         "l5.weight": t(1, 4), "l5.bias": t(1)}}
    torch.manual_seed(0)
    files["sn128"] = RefDCGAN(2, 5, True, False).state_dict()
    paths = {}
    for name, sd in files.items():
        paths[name] = tmp_path / f"{name}.pth"
        torch.save(sd, paths[name])
    return paths


@pytest.mark.parametrize("which", ["ours", "mimicry", "sn128"])
def test_unsupported_files_get_one_line_errors_naming_the_families(tmp_path, capsys, which):
    from probes.cli import main

    path = _foreign_files(tmp_path)[which]
    with pytest.raises(UserError) as e:
        load(path, format="authors")
    msg = str(e.value)
    assert "\n" not in msg and all(f in msg for f in authors.FAMILIES), msg
    code, out, err = run_cli(main, ["info", str(path), "--format", "authors"], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "resnet64_same_sn" in err
