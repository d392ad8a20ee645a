"""probes.io.families.studiogan: PyTorch-StudioGAN ``model=D-*.pth`` files rebuilt in our code.

Oracles: files and outputs written by upstream's own code (tests/fixtures/studiogan/README.md):
deep_conv (DCGAN, BatchNorm), resnet (SNGAN) and big_resnet (BigGAN, self-attention) D's,
unconditional, projection (PD) and AC heads, eval mode and (BatchNorm) train mode. Plus the
contract of a family reader: sniffing, label rules, malformed and malicious files.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from payload import Payload as _Payload
from safetensors.torch import load_file

from asgan_base.errors import UserError
from probes.core.contract import Reduced
from probes.io import safe_pickle
from probes.io.families import studiogan as sg

FIX = Path(__file__).parent / "fixtures" / "studiogan"
VARIANTS = {  # folder: (conditional, BatchNorm layers, spectral norm, attention, d_cond_mtd)
    "dcgan": (False, 7, False, False, "W/O"),
    "dcgan_pd": (True, 7, False, False, "PD"),
    "sngan": (False, 0, True, False, "W/O"),
    "sngan_pd": (True, 0, True, False, "PD"),
    "resnet_bn": (False, 9, False, False, "W/O"),
    "biggan": (False, 0, True, True, "W/O"),
    "biggan_pd": (True, 0, True, True, "PD"),
    "acgan": (False, 0, True, False, "AC"),
}
DESC_KEYS = {"family", "format", "resolution", "channels", "conditional", "num_classes",
             "label", "pixel_range", "output", "coupling", "randomness", "upstream", "extra"}


def _file(name: str) -> Path:
    (path,) = (FIX / name).glob("model=D-*.pth")
    return path


def _io(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIX / name / "io.safetensors"))


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    # 1e-5 relative to the output's scale (logits near 0 get the scale's tolerance)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


# ------------------------------------------------------------------ upstream outputs


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_matches_upstream_eval(name):
    io = _io(name)
    labels = io["labels"].tolist() if "labels" in io else [None]
    ys = io["y"] if "labels" in io else io["y"][None]
    assert len(labels) == len(ys)
    for k, y in zip(labels, ys):
        D, desc = sg.read(_file(name), label=k)
        x = io["x"].clone()
        with torch.no_grad():
            out = D(x)
        assert out.shape == (x.shape[0],) and out.dtype == torch.float32
        _close(out, y)
        assert torch.equal(x, io["x"])  # the input is not modified in place
        assert desc["label"] == k


def test_projection_head_reads_the_label():
    # the three bound classes give three different logits (the fixture is not degenerate)
    y = _io("biggan_pd")["y"]
    assert (y[0] - y[1]).abs().min() > 1e-3 and (y[1] - y[2]).abs().min() > 1e-3


@pytest.mark.parametrize("name", ["dcgan", "dcgan_pd", "resnet_bn"])
def test_batchnorm_train_mode_matches_upstream_batch_statistics(name):
    io = _io(name)
    label = int(io["y_train_label"]) if "y_train_label" in io else None
    D, _ = sg.read(_file(name), label=label)
    D.train()
    with torch.no_grad():
        out = D(io["x"])
    _close(out, io["y_train"])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_desc(name):
    cond, n_bn, sn, attn, mtd = VARIANTS[name]
    D, desc = sg.read(_file(name), label=3 if cond else None)
    assert set(desc) == DESC_KEYS
    json.dumps(desc)  # JSON-able
    assert desc["family"] == "studiogan" and desc["format"] == sg.FORMAT
    assert desc["resolution"] == 32 and desc["channels"] == 3
    assert desc["pixel_range"] == [-1.0, 1.0]
    assert desc["conditional"] is cond and desc["num_classes"] == (10 if cond else None)
    assert desc["output"]["reduction"] == "squeeze" and desc["output"]["shape"] == "(N,)"
    assert desc["coupling"] == ([{"kind": "batchnorm", "layers": n_bn}] if n_bn else [])
    assert n_bn == sum(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    assert desc["randomness"] == "none"
    kw = desc["upstream"]["init_kwargs"]
    assert desc["upstream"]["repo"] == "POSTECH-CVLab/PyTorch-StudioGAN"
    assert kw["apply_d_sn"] is sn and kw["apply_attn"] is attn and kw["d_cond_mtd"] == mtd
    assert kw["attn_d_loc"] == ([1] if attn else ["N/A"])
    assert kw["num_classes"] == (10 if mtd == "PD" else None)
    assert desc["extra"]["head_classes"] == (10 if mtd != "W/O" else None)
    assert kw["d_conv_dim"] == (None if name.startswith("dcgan") else 4)
    assert desc["extra"]["architecture"] == ("deep_conv" if name.startswith("dcgan")
                                             else "resnet")
    assert desc["extra"]["which"] == "best" and desc["extra"]["step"] == desc["extra"]["best_step"]
    assert desc["extra"]["best_fid"] == 31.25
    assert desc["extra"]["ignored_heads"] == (["linear2"] if mtd == "AC" else [])
    # eval mode, float32, CPU, no parameter wants a gradient
    assert not D.training
    assert all(not p.requires_grad and p.dtype == torch.float32 and p.device.type == "cpu"
               for p in D.parameters())


@pytest.mark.parametrize("name", ["sngan_pd", "dcgan"])
def test_eval_is_per_sample_and_leaves_no_trace(name):
    cond = VARIANTS[name][0]
    D, _ = sg.read(_file(name), label=2 if cond else None)
    before = {k: v.clone() for k, v in D.state_dict().items()}
    x = _io(name)["x"].clone().requires_grad_(True)
    y = D(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.shape == x.shape and g.abs().sum() > 0
    x2 = x.detach().clone()
    x2[0] = -x2[0]
    with torch.no_grad():
        y2 = D(x2)
        one = D(x.detach()[1:2])
    assert not torch.equal(y2[0], y[0].detach())
    assert torch.equal(y2[1:], y[1:].detach())  # sample 0 moves no other logit
    assert one.shape == (1,)
    _close(one, y[1:2].detach())
    assert all(torch.equal(v, before[k]) for k, v in D.state_dict().items())
    red = Reduced(D, "squeeze")
    with torch.no_grad():
        assert torch.equal(red(x.detach()), y.detach())


# ------------------------------------------------------------------ sniff


def test_sniff_recognises_every_fixture():
    for name in VARIANTS:
        assert sg.sniff(_file(name)) == "studiogan"
    assert sg.sniff(_file("sngan")) in sg.NAMES


def test_sniff_none_on_other_files(tmp_path):
    cases = {
        "garbage.pth": os.urandom(4096),
        "empty.pth": b"",
        "text.pth": b"state_dict best_fid best_step blocks.0.0. linear1.",  # not a zip
        "plain.pkl": pickle.dumps({"state_dict": {}, "best_fid": 1.0}),
    }
    for fname, data in cases.items():
        (tmp_path / fname).write_bytes(data)
    # a StudioGAN *generator* file: state_dict and optimizer only
    torch.save({"state_dict": {"linear0.weight": torch.zeros(2, 2)}, "optimizer": {}},
               tmp_path / "model=G-best-weights-step=1.pth")
    torch.save({"state_dict": {"blocks.0.0.conv.weight": torch.zeros(1)}},
               tmp_path / "other.ckpt")  # another family's torch zip
    data = _file("sngan").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 3])
    (tmp_path / "dir.pth").mkdir()
    for p in sorted(tmp_path.iterdir()):
        assert sg.sniff(p) is None, p.name
    assert sg.sniff(tmp_path / "missing.pth") is None


# ------------------------------------------------------------------ labels


def test_conditional_without_label():
    with pytest.raises(UserError) as err:
        sg.read(_file("biggan_pd"))
    msg = _one_line(err)
    assert "class-conditional" in msg and "10 classes" in msg and "label" in msg


@pytest.mark.parametrize("name", ["sngan", "acgan", "dcgan"])
def test_label_for_unconditional(name):
    with pytest.raises(UserError) as err:
        sg.read(_file(name), label=0)
    assert "unconditional" in _one_line(err)


@pytest.mark.parametrize("label", [10, -1, 1000, True, 3.0, "3"])
def test_label_out_of_range(label):
    with pytest.raises(UserError) as err:
        sg.read(_file("sngan_pd"), label=label)
    assert "out of range" in _one_line(err)


def test_last_label_is_accepted():
    D, desc = sg.read(_file("dcgan_pd"), label=9)
    assert desc["label"] == 9 and D.label == 9


# ------------------------------------------------------------------ malformed and malicious


def _contents(name: str) -> dict:
    """A fixture file's dict, read without running it (safe_pickle's TypedStorage warning
    is torch's, not ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return safe_pickle.load_torch_zip(_file(name))


def _resave(tmp_path: Path, name: str, edit) -> Path:
    obj = _contents(name)
    edit(obj["state_dict"])
    path = tmp_path / "model=D-current-weights-step=1.pth"
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("edit, words", [
    (lambda sd: sd.update({"linear1.weight_orig": torch.ones(11, 8),
                           "linear1.weight_u": torch.ones(11)}), "MH"),
    (lambda sd: sd.pop("blocks.2.0.conv2d1.weight_u"), "spectral-norm vectors"),
    (lambda sd: sd.__setitem__("blocks.3.0.conv2d2.weight_orig", torch.ones(8, 8, 5, 5)),
     "do not fit"),
    (lambda sd: sd.__setitem__("extra.weight", torch.ones(2)), "do not fit"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("blocks.1.")], "blocks"),
    (lambda sd: sd.update({"embedding.weight_orig": torch.ones(10, 5),
                           "embedding.weight_v": torch.ones(5)}), "projection"),
    (lambda sd: sd.__setitem__("blocks.0.0.conv2d0.weight_v", torch.ones(4)), "do not fit"),
])
def test_weights_that_do_not_fit(tmp_path, edit, words):
    path = _resave(tmp_path, "sngan_pd", edit)
    with pytest.raises(UserError) as err:
        sg.read(path, label=1)
    assert words in _one_line(err)


def test_malformed_files(tmp_path):
    data = _file("sngan").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pth").write_bytes(os.urandom(1000))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({"state_dict": {"a": 1}}, tmp_path / "notensor.pth")
    for p in sorted(tmp_path.iterdir()) + [tmp_path / "missing.pth", tmp_path]:
        with pytest.raises(UserError) as err:
            sg.read(p)
        _one_line(err)
    with pytest.raises(UserError, match="truncated zip"):
        sg.read(tmp_path / "truncated.pth")


@pytest.mark.parametrize("zipped", [True, False])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, zipped):
    marker = tmp_path / "pwned"
    obj = _contents("sngan")
    obj["best_fid"] = _Payload(marker)
    path = tmp_path / "model=D-best-weights-step=302.pth"
    if zipped:
        torch.save(obj, path)  # the format itself: a torch zip whose data.pkl calls os.system
        assert zipfile.is_zipfile(path)
        assert "posix.system" in safe_pickle.scan_globals(path)
    else:
        path.write_bytes(pickle.dumps(obj))
    sg.sniff(path)
    with pytest.raises(UserError) as err:
        sg.read(path)
    msg = _one_line(err)
    assert ("posix.system" in msg) if zipped else ("not a StudioGAN checkpoint" in msg)
    assert not marker.exists()


def test_module_constants():
    assert sg.NAMES == ("studiogan",) and sg.STUBS == ()
    for s in (sg.FORMAT, sg.CHECKED, sg.COUPLING):
        assert isinstance(s, str) and s and "\n" not in s
