"""probes.io.families.basicsr: BasicSR / Real-ESRGAN ``UNetDiscriminatorSN`` net_d files.

Fixtures (tests/fixtures/basicsr/README.md) were written by BasicSR 1.4.2's own class: our
rebuilt D must give upstream's eval-mode per-pixel map to 1e-5, with and without skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from payload import Payload as _Payload
from safetensors.torch import load_file

from asgan_base.errors import UserError
from probes.core.contract import Reduced
from probes.io.families import basicsr, taming

FIX = Path(__file__).parent / "fixtures" / "basicsr"
IO = load_file(FIX / "io.safetensors")
SKIP, NOSKIP = FIX / "net_d_skip.pth", FIX / "net_d_noskip.pth"


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def _check(D, key):
    x, y_up = IO[f"x_{key}"], IO[f"y_{key}"]
    with torch.no_grad():
        y = D(x)
    assert y.shape == y_up.shape == (3, 1, 32, 32) and y.dtype == torch.float32
    torch.testing.assert_close(y, y_up, rtol=1e-5, atol=1e-5 * y_up.abs().max().item())


def _params(path):
    return torch.load(path, weights_only=True)["params"]


def test_matches_upstream_skip_default():
    D, desc = basicsr.read(SKIP)  # skip_connection: Real-ESRGAN's True unless told
    _check(D, "skip")
    assert desc["upstream"]["init_kwargs"] == {"num_in_ch": 3, "num_feat": 4,
                                               "skip_connection": True}
    assert desc["extra"]["skip_connection_source"].startswith("default")
    assert not D.training and not any(p.requires_grad for p in D.parameters())


def test_matches_upstream_noskip():
    D, desc = basicsr.read(NOSKIP, skip_connection=False)
    _check(D, "noskip")
    assert desc["upstream"]["init_kwargs"]["num_feat"] == 6
    assert desc["extra"]["skip_connection_source"] == "caller"
    # the skip flag has no tensors: the wrong one gives a different map (the test can fail)
    D_wrong, _ = basicsr.read(NOSKIP, skip_connection=True)
    with torch.no_grad():
        assert (D_wrong(IO["x_noskip"]) - IO["y_noskip"]).abs().max() > 1e-3


def test_skip_from_the_runs_options_file(tmp_path):
    models = tmp_path / "experiments" / "train_x4" / "models"
    models.mkdir(parents=True)
    f = models / "net_d_5000.pth"
    f.write_bytes(NOSKIP.read_bytes())
    (models.parent / "train_x4.yml").write_text(
        "# GENERATE TIME: x\nname: train_x4\nnetwork_d:\n  type: UNetDiscriminatorSN\n"
        "  num_in_ch: 3\n  num_feat: 6\n  skip_connection: false\n")
    D, desc = basicsr.read(f)
    _check(D, "noskip")
    assert desc["extra"]["skip_connection_source"].startswith("options file")
    with pytest.raises(UserError) as e:
        basicsr.read(f, skip_connection=True)
    assert "options file" in _one_line(e)


def test_other_containers_and_names(tmp_path):
    sd = _params(SKIP)
    new_names = {}
    for k, v in sd.items():  # torch's parametrization-style spectral-norm names
        for old, new in (("weight_orig", "parametrizations.weight.original"),
                         ("weight_u", "parametrizations.weight.0._u"),
                         ("weight_v", "parametrizations.weight.0._v")):
            if k.endswith("." + old):
                k = k[: -len(old)] + new
        new_names[k] = v
    for i, obj in enumerate(({"params_ema": sd}, sd, {"params": {f"module.{k}": v
                                                                 for k, v in sd.items()}},
                             {"params": new_names})):
        p = tmp_path / f"net_d_{i}.pth"
        torch.save(obj, p)
        assert basicsr.sniff(p) == "basicsr-unet"
        D, _ = basicsr.read(p)
        _check(D, "skip")


def test_desc_and_reduction():
    D, d = basicsr.read(SKIP)
    assert d["family"] == "basicsr-unet" and d["pixel_range"] == [0.0, 1.0]
    assert d["output"] == {"shape": "(N, 1, H, W)", "reduction": "mean",
                           "why": d["output"]["why"]} and d["output"]["why"]
    assert d["coupling"] == [] and d["randomness"] == "none" and d["conditional"] is False
    assert d["channels"] == 3 and d["num_classes"] is None and d["extra"]["param_key"] == "params"
    with torch.no_grad():
        torch.testing.assert_close(Reduced(D, "mean")(IO["x_skip"]),
                                   IO["y_skip"].flatten(1).mean(1), rtol=1e-5, atol=1e-7)


def test_stored_uv_used_without_power_iteration():
    sd = _params(SKIP)
    # the fixture's u is off the power iteration's fixed point, so iterating would change D
    w, u, v = sd["conv3.weight_orig"].flatten(1), sd["conv3.weight_u"], sd["conv3.weight_v"]
    assert (F.normalize(w @ v, dim=0) - u).abs().max() > 1e-4
    D, _ = basicsr.read(SKIP)
    before = {k: t.clone() for k, t in D.state_dict().items()}
    D.train()
    _check(D, "skip")  # train mode changes nothing either: no power iteration, no BN
    assert all(torch.equal(before[k], t) for k, t in D.state_dict().items())


def test_sniff_none_on_others(tmp_path):
    assert basicsr.sniff(SKIP) == basicsr.sniff(NOSKIP) == "basicsr-unet"
    garbage = tmp_path / "g.pth"
    garbage.write_bytes(os.urandom(300))
    empty = tmp_path / "e.pth"
    empty.write_bytes(b"")
    partial = tmp_path / "p.pth"  # BasicSR-like names, but not the U-Net D
    torch.save({"params": {"conv0.weight": torch.zeros(4, 3, 3, 3), "conv9.weight":
                           torch.zeros(1, 4, 3, 3), "conv1.weight": torch.zeros(8, 4, 4, 4)}},
               partial)
    taming_fix = Path(__file__).parent / "fixtures" / "taming" / "bn.ckpt"
    for p in (garbage, empty, partial, taming_fix, tmp_path / "missing.pth", tmp_path):
        assert basicsr.sniff(p) is None
    assert taming.sniff(SKIP) is None and taming.sniff(NOSKIP) is None


def test_label_and_side_refused():
    with pytest.raises(UserError) as e:
        basicsr.read(SKIP, label=1)
    assert "unconditional" in _one_line(e)
    D, _ = basicsr.read(SKIP)
    with pytest.raises(UserError) as e:
        D(torch.rand(1, 3, 36, 36))
    assert "multiples of 8" in _one_line(e)


def test_code_payload_refused(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "net_d_evil.pth"
    torch.save({"params": _params(SKIP), "note": _Payload(marker)}, evil)
    with pytest.raises(UserError) as e:
        basicsr.read(evil)
    assert f"{os.system.__module__}.system" in _one_line(e)
    assert basicsr.sniff(evil) is None
    assert not marker.exists()


def test_bad_files(tmp_path):
    sd = _params(SKIP)
    whole = SKIP.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole[: len(whole) // 2])
    wrong = tmp_path / "wrong.pth"
    torch.save({"params": {**sd, "conv2.weight_orig": sd["conv2.weight_orig"][:, :3]}}, wrong)
    missing = tmp_path / "missing.pth"
    torch.save({"params": {k: v for k, v in sd.items() if k != "conv7.weight_v"}}, missing)
    zero_u = tmp_path / "zero_u.pth"
    torch.save({"params": {**sd, "conv5.weight_u": torch.zeros_like(sd["conv5.weight_u"])}},
               zero_u)
    legacy = tmp_path / "legacy.pth"
    torch.save({"params": sd}, legacy, _use_new_zipfile_serialization=False)
    for p, words in ((cut, ""), (wrong, "shape"), (missing, "do not fit"), (zero_u, "sigma"),
                     (legacy, "zip"), (tmp_path / "nope.pth", "no such file")):
        with pytest.raises(UserError) as e:
            basicsr.read(p)
        assert words in _one_line(e)


# ------------------------------------------------------------------ VGGStyleDiscriminator
VGG = FIX / "net_d_vgg128.pth"
IO_VGG = load_file(FIX / "io_vgg.safetensors")


def test_vgg_matches_upstream():
    assert basicsr.sniff(VGG) == "basicsr-vgg"
    D, d = basicsr.read(VGG)
    x, y_up = IO_VGG["x_vgg128"].float(), IO_VGG["y_vgg128"]
    with torch.no_grad():
        y = D(x)
    assert y.shape == y_up.shape == (2, 1)
    torch.testing.assert_close(y, y_up, rtol=1e-5, atol=1e-5 * y_up.abs().max().item())
    assert (y_up[0] - y_up[1]).abs() > 0.1  # the samples differ: a bias-only D would fail
    assert d["family"] == "basicsr-vgg" and d["resolution"] == 128
    assert d["output"]["reduction"] == "squeeze" and d["output"]["shape"] == "(N, 1)"
    assert d["coupling"] == [{"kind": "batchnorm", "layers": 9}]
    assert d["upstream"]["init_kwargs"] == {"num_in_ch": 3, "num_feat": 2, "input_size": 128}
    bn = [m for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all((m.running_var - 1).abs().max() > 0.1 for m in bn)  # stats off init
    with pytest.raises(UserError) as e:
        D(torch.rand(1, 3, 64, 64))
    assert "128" in _one_line(e)
    with pytest.raises(UserError) as e:
        basicsr.read(VGG, skip_connection=True)
    assert "skip" in _one_line(e)


def test_vgg_input_size_inferred(tmp_path):
    # a 256 px file differs by the conv5_* / bn5_* tensors only (layer facts, our own net)
    sd = basicsr.VGGStyle(3, 2, 256).state_dict()
    p = tmp_path / "net_d_vgg256.pth"
    torch.save({"params": sd}, p)
    assert basicsr.sniff(p) == "basicsr-vgg"
    D, d = basicsr.read(p)
    assert d["resolution"] == 256 and d["coupling"] == [{"kind": "batchnorm", "layers": 11}]
    with torch.no_grad():
        assert D(torch.rand(2, 3, 256, 256)).shape == (2, 1)
    assert taming.sniff(VGG) is None
