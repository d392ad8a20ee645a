"""R3GAN snapshot reader (probes.io.families.r3gan) against fixtures written by upstream R3GAN.

The fixtures (tests/fixtures/r3gan/README.md) are snapshot pickles written the way upstream's
training loop writes them, weights moved off init, with upstream's D output on a fixed batch.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from payload import Payload as _Payload
from safetensors.torch import load_file, safe_open

from asgan_base.errors import UserError
from probes.core import coupling
from probes.io import safe_pickle
from probes.io.families import r3gan

FIX = __import__("pathlib").Path(__file__).parent / "fixtures" / "r3gan"
UNCOND = FIX / "network-snapshot-uncond.pkl"
COND = FIX / "network-snapshot-cond.pkl"
DESC_KEYS = {"family", "format", "resolution", "channels", "conditional", "num_classes", "label",
             "pixel_range", "output", "coupling", "randomness", "upstream", "extra"}


def _close(ours, ref, rtol=1e-5):
    # 1e-5 relative, with an absolute floor at 1e-5 of the batch's largest logit (a logit
    # near 0 has no meaningful relative error)
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=rtol * float(ref.abs().max()))


def _d_kwargs(name):
    with safe_open(FIX / name, "pt") as f:
        return json.loads(f.metadata()["D_kwargs"])


# ----------------------------------------------------------------------------- upstream
def test_unconditional_matches_upstream():
    io = load_file(FIX / "io.safetensors")
    D, desc = r3gan.read(UNCOND)
    with torch.no_grad():
        y = D(io["x"])
    assert y.shape == (6,) and y.dtype == torch.float32
    _close(y, io["y"])
    assert desc["conditional"] is False and desc["num_classes"] is None
    assert desc["resolution"] == 32 and desc["channels"] == 3


def test_conditional_matches_upstream_for_every_label():
    io = load_file(FIX / "io-cond.safetensors")
    x, labels = io["x"], io["labels"]
    y = torch.empty(len(x))
    for k in labels.unique().tolist():  # one class bound per read, as the loader binds it
        D, desc = r3gan.read(COND, label=k)
        assert desc["label"] == k and desc["num_classes"] == 10
        with torch.no_grad():
            y[labels == k] = D(x[labels == k])
    _close(y, io["y_fp32"])  # upstream with every stage in float32
    D3, _ = r3gan.read(COND, label=3)
    with torch.no_grad():
        _close(D3(x), io["y_fp32_label3"])
    # upstream as stored computes stages 0-2 in bfloat16: ours is the float32 forward, within
    # bfloat16 rounding of it (2% of the largest logit), and the record says so
    torch.testing.assert_close(y, io["y"], rtol=0, atol=2e-2 * float(io["y"].abs().max()))
    assert not torch.equal(io["y"], io["y_fp32"])
    assert desc["extra"]["upstream_stage_dtypes"] == ["bfloat16"] * 3 + ["float32"]
    assert "bfloat16" in desc["extra"]["bf16_note"]


@pytest.mark.parametrize("snap,io_name", [(UNCOND, "io.safetensors"),
                                          (COND, "io-cond.safetensors")])
def test_desc_records_the_architecture(snap, io_name):
    kw = _d_kwargs(io_name)
    D, desc = r3gan.read(snap, label=0 if snap == COND else None)
    assert set(desc) == DESC_KEYS
    json.dumps(desc)  # JSON-able
    assert desc["family"] == "r3gan" and desc["pixel_range"] == [-1.0, 1.0]
    assert desc["output"]["shape"] == "(N,)" and desc["output"]["reduction"] == "squeeze"
    assert desc["coupling"] == [] and desc["randomness"] == "none"
    got = desc["upstream"]["init_kwargs"]
    for k in ("WidthPerStage", "CardinalityPerStage", "BlocksPerStage", "ExpansionFactor"):
        assert got[k] == kw[k], k
    assert got["KernelSize"] == kw.get("KernelSize", 3)
    assert got["ConditionEmbeddingDimension"] == kw.get("ConditionEmbeddingDimension", 0)
    assert sorted(got["FP16Stages"]) == sorted(kw["FP16Stages"])
    assert desc["extra"]["snapshot_keys"][:3] == ["G", "D", "G_ema"]
    assert desc["extra"]["step"] == 1234567  # cur_nimg, images seen
    assert desc["extra"]["resampling_kernels_are_default"] is False  # perturbed filters
    # eval, float32, nothing to train, no layer that couples samples
    assert not D.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in D.parameters())
    assert not any(isinstance(m, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm))
                   for m in D.modules())


def test_every_stored_tensor_is_read():
    """The filters, biases and conv weights come from the file: changing one recorded tensor
    changes the logits (no constant filter or init value is assumed)."""
    io = load_file(FIX / "io.safetensors")
    obj = safe_pickle.read_any(UNCOND, stubs=r3gan.STUBS)
    D0, _ = r3gan.build(obj)
    model = obj["D"].dict["_modules"]["Model"]
    stage0 = model.dict["_modules"]["MainLayers"].dict["_modules"]["0"]
    layers = stage0.dict["_modules"]["Layers"].dict["_modules"]
    kernel = layers["2"].dict["_modules"]["Resampler"].dict["_buffers"]["Kernel"]
    bias = layers["0"].dict["_modules"]["NonLinearity2"].dict["_parameters"]["Bias"]
    with torch.no_grad():
        y0 = D0(io["x"])
        for t in (kernel, bias):
            saved = t.clone()
            t.mul_(1.5)
            D1, _ = r3gan.build(obj)
            assert (D1(io["x"]) - y0).abs().max() > 1e-4
            t.copy_(saved)
        # the resampler is a true convolution (upfirdn2d flips the stored, asymmetric kernel)
        for m in D0.modules():
            if hasattr(m, "flip"):
                m.flip = False
        assert (D0(io["x"]) - y0).abs().max() > 1e-3


# ----------------------------------------------------------------------------- coupling
@pytest.mark.parametrize("snap", [UNCOND, COND])
def test_changing_one_sample_leaves_the_others_bit_identical(snap):
    D, desc = r3gan.read(snap, label=4 if snap == COND else None)
    x = load_file(FIX / "io.safetensors")["x"]
    with torch.no_grad():
        y = D(x)
        for j in (0, 3, 5):
            x2 = x.clone()
            x2[j] = torch.rand_like(x2[j]) * 2 - 1
            y2 = D(x2)
            others = [i for i in range(len(x)) if i != j]
            assert torch.equal(y2[others], y[others])
            assert y2[j] != y[j]
    # the contract's coupling check finds nothing, in the probe's mode and in the batch view
    found = coupling.check(D, x)
    assert found["causes"] == [] and found["per_sample"] and found["max_cross_change"] == 0.0
    assert found["batch_view"]["coupled"] is False
    # input gradients (what the probes take) are per sample too
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x)[2], x)
    assert g[2].abs().sum() > 0 and g[[0, 1, 3, 4, 5]].abs().sum() == 0


# ----------------------------------------------------------------------------- labels
def test_label_rules_are_one_line_errors():
    cases = [(COND, None, "conditional"), (COND, 10, "not a class"), (COND, -1, "not a class"),
             (COND, True, "not a class"), (COND, "3", "not a class"),
             (COND, torch.tensor([3, 4]), "not a class"), (UNCOND, 0, "unconditional")]
    for snap, label, words in cases:
        with pytest.raises(UserError) as e:
            r3gan.read(snap, label=label)
        msg = str(e.value)
        assert words in msg and "\n" not in msg, (label, msg)
        assert str(snap) in msg
    D, desc = r3gan.read(COND, label=np.int64(7))  # a numpy integer is a class id too
    assert desc["label"] == 7 and type(desc["label"]) is int


# ----------------------------------------------------------------------------- safety
def _fake_upstream_modules(monkeypatch):
    """Classes named R3GAN.Networks.Generator / training.networks.Discriminator, so that a
    payload pickle looks like an R3GAN snapshot (sniff says r3gan) without any R3GAN code."""
    made = {}
    for mod, name in (("R3GAN.Networks", "Generator"), ("training.networks", "Discriminator")):
        for part in (mod.split(".")[0], mod):
            if part not in sys.modules:
                monkeypatch.setitem(sys.modules, part, types.ModuleType(part))
        cls = type(name, (), {"__module__": mod, "__qualname__": name})
        monkeypatch.setattr(sys.modules[mod], name, cls, raising=False)
        made[name] = cls()
    return made


@pytest.mark.parametrize("disguised", [False, True])
def test_code_payload_is_refused_and_never_runs(tmp_path, monkeypatch, disguised):
    marker = tmp_path / "pwned"
    snap = {"D": _Payload(marker)}
    if disguised:  # an R3GAN-looking snapshot whose optimizer state carries the payload
        fake = _fake_upstream_modules(monkeypatch)
        snap = {"G": fake["Generator"], "D": fake["Discriminator"],
                "D_opt_state": {"state": {0: _Payload(marker)}}}
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(pickle.dumps(snap))
    monkeypatch.undo()
    assert r3gan.sniff(path) == ("r3gan" if disguised else None)
    glob = f"{os.system.__module__}.system"
    with pytest.raises(UserError) as e:
        r3gan.read(path)
    msg = str(e.value)
    assert glob in msg and "\n" not in msg and "nothing was executed" in msg
    assert not marker.exists()


def test_a_global_outside_the_exact_stub_list_is_refused(tmp_path):
    # protocol 0: GLOBAL 'R3GAN.Networks eval' called with a string; a prefix allow-list
    # would have let it through as a record, the exact list refuses it by name
    path = tmp_path / "x.pkl"
    path.write_bytes(b"cR3GAN.Networks\neval\n(S'1'\ntR.")
    with pytest.raises(UserError, match=r"R3GAN\.Networks\.eval"):
        r3gan.read(path)


# ----------------------------------------------------------------------------- malformed
def test_malformed_files_are_one_line_errors(tmp_path):
    data = UNCOND.read_bytes()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(data[: len(data) // 2])
    no_d = tmp_path / "no_d.pkl"
    no_d.write_bytes(pickle.dumps({"cur_nimg": 5, "G_opt_state": {"state": {}}}))
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"D": {"weight": torch.zeros(2)}}))
    for path, words in ((cut, "not a readable pickle"), (no_d, "without a discriminator"),
                        (other, "expected training.networks.Discriminator"),
                        (tmp_path / "missing.pkl", "not found"), (tmp_path, "is a folder")):
        with pytest.raises(UserError) as e:
            r3gan.read(path)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_weights_that_do_not_fit_are_refused():
    obj = safe_pickle.read_any(UNCOND, stubs=r3gan.STUBS)
    model = obj["D"].dict["_modules"]["Model"]
    block = (model.dict["_modules"]["MainLayers"].dict["_modules"]["1"].dict["_modules"]
             ["Layers"].dict["_modules"]["0"])
    conv = block.dict["_modules"]["LinearLayer2"].dict["_modules"]["Layer"].dict["_parameters"]
    w = conv["weight"]
    conv["weight"] = w[:, :-1]
    with pytest.raises(UserError, match=r"D\.MainLayers\.1\.Layers\.0\.LinearLayer2"):
        r3gan.build(obj)
    conv["weight"] = w.clone().fill_(float("nan"))
    with pytest.raises(UserError, match="NaN"):
        r3gan.build(obj)
    conv["weight"] = w
    obj["training_set_kwargs"]["resolution"] = 64
    with pytest.raises(UserError, match="resolution 64"):
        r3gan.build(obj)


# ----------------------------------------------------------------------------- sniff
def test_sniff(tmp_path):
    assert r3gan.sniff(UNCOND) == "r3gan" and r3gan.sniff(COND) == "r3gan"
    head = tmp_path / "head.pkl"  # a truncated snapshot is still recognised (read refuses it)
    head.write_bytes(UNCOND.read_bytes()[:2000])
    assert r3gan.sniff(head) == "r3gan"
    files = {
        "garbage.pkl": os.urandom(4096), "empty.pkl": b"", "text.pkl": b"hello\n",
        "proto.pkl": b"\x80\x04\x95\xff\xff",
        # StyleGAN2-ADA / 3: NVlabs persistence records of training.networks classes
        "stylegan.pkl": b"\x80\x02}q\x00X\x01\x00\x00\x00Dq\x01ctorch_utils.persistence\n"
                        b"_reconstruct_persistent_obj\nq\x02}q\x03X\x0b\x00\x00\x00class_name"
                        b"q\x04X\x1f\x00\x00\x00training.networks.Discriminator.",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert r3gan.sniff(tmp_path / name) is None, name
    torch.save({"state_dict": {"linear1.weight": torch.zeros(2, 2)}}, tmp_path / "studio.pth")
    torch.save({"params": {"conv0.weight": torch.zeros(2, 2)}}, tmp_path / "basicsr.pth")
    for name in ("studio.pth", "basicsr.pth"):
        assert r3gan.sniff(tmp_path / name) is None
    assert r3gan.sniff(FIX / "io.safetensors") is None
    assert r3gan.sniff(tmp_path / "missing") is None and r3gan.sniff(tmp_path) is None


def test_module_facts():
    assert r3gan.NAMES == ("r3gan",)
    for s in (r3gan.FORMAT, r3gan.CHECKED, r3gan.COUPLING):
        assert isinstance(s, str) and s and "\n" not in s
    # every stub is an exact module.name: no prefix lets an unlisted global through
    assert all("." in s and not s.endswith((".", "*")) for s in r3gan.STUBS)
    assert set(safe_pickle.scan_globals(UNCOND)) - set(r3gan.STUBS) <= set(safe_pickle.ALLOWED) | {
        "torch.float32", "torch.bfloat16"}
