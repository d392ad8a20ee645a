"""Issue 21's acceptance checks, across every discriminator family, on the upstream-written
fixture files (``tests/fixtures/<family>/``), read as a user reads them:
``probes.io.sources.load(path, format="auto", label=k)`` and the CLI.

- contract: in the default mode, through the measures' path (the probe mode's model, the
  frozen copy where the family couples samples), changing sample j leaves logit i bit-identical;
  the coupling check names BatchNorm (StudioGAN DCGAN / BN ResNet, taming BN, BasicSR VGG),
  minibatch-stddev with its group size (StyleGAN2-ADA / StyleGAN3) and nothing on R3GAN and
  the spectral-norm / ActNorm nets; batch size and input order change no per-sample number;
- ``attack``, ``gradients`` and ``saliency`` end to end on a file of each family with
  ``--data imagefolder`` (odd-sized RGB, RGBA and grey PNGs), and on the same nets as modules
  from Python (``probes.discriminator``), which give the file path's numbers;
- StyleGAN ``attack`` records and min-flip eps for ``--batch-size 16`` and ``5``;
- ``info``: minibatch-stddev and its group size, conditional and classes, the globals a plain
  load would import, the embedded-source verdict; malicious files of every pickle-based format:
  exit 2, one line, no traceback, the payload never runs;
- ``--label K`` gives the upstream output for class K; a missing label is one line;
- BasicSR D's receive the image-folder reals in [0, 1].
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from payload import Payload as _Payload
from safetensors.torch import load_file

import probes
from asgan_base.errors import UserError
from probes.cli import main
from probes.core.gradients import input_gradients
from probes.core.modes import probe_model
from probes.core.sweep import min_flip_eps
from probes.io.families import read as family_read
from probes.io.safe_pickle import read_any
from probes.io.sources import folder_samples, load
from probes.measures.attack import attack
from probes.measures.contract import coupling_record
from probes.measures.gradients import gradients
from probes.measures.saliency import saliency
from tests.conftest import run_cli

FIX = Path(__file__).parent / "fixtures"
SG = "stylegan/sg2ada_resnet32.pkl"
SG_COND = "stylegan/sg2ada_cond_skip32.pkl"
SG3 = "stylegan/sg3_orig64.pkl"
R3 = "r3gan/network-snapshot-uncond.pkl"
R3_COND = "r3gan/network-snapshot-cond.pkl"
DCGAN = "studiogan/dcgan/model=D-best-weights-step=300.pth"
DCGAN_PD = "studiogan/dcgan_pd/model=D-best-weights-step=301.pth"
SNGAN_PD = "studiogan/sngan_pd/model=D-best-weights-step=303.pth"
BIGGAN = "studiogan/biggan/model=D-best-weights-step=305.pth"
RESNET_BN = "studiogan/resnet_bn/model=D-best-weights-step=304.pth"
TAMING_BN = "taming/bn.ckpt"
TAMING_ACT = "taming/actnorm.ckpt"
UNET = "basicsr/net_d_skip.pth"
VGG = "basicsr/net_d_vgg128.pth"

MB4 = ("minibatch-stddev", 4)
BN = ("batchnorm", None)
# file, class bound, the coupling the check must name: (kind, minibatch-stddev group size)
CASES = {
    "stylegan2-ada": (SG, None, [MB4]),
    "stylegan2-ada-cond": (SG_COND, 7, [MB4]),
    "stylegan3-cond": (SG3, 3, [MB4]),
    "r3gan": (R3, None, []),
    "r3gan-cond": (R3_COND, 3, []),
    "studiogan-dcgan": (DCGAN, None, [BN]),
    "studiogan-dcgan-pd": (DCGAN_PD, 3, [BN]),
    "studiogan-resnet-bn": (RESNET_BN, None, [BN]),
    "studiogan-sngan-pd": (SNGAN_PD, 9, []),
    "studiogan-biggan": (BIGGAN, None, []),
    "taming-bn": (TAMING_BN, None, [BN]),
    "taming-actnorm": (TAMING_ACT, None, []),
    "basicsr-unet": (UNET, None, []),
    "basicsr-vgg": (VGG, None, [BN]),
}
# one file of each family for the end-to-end runs (conditional ones with their class)
# (BasicSR: the VGG D, 128 px, BatchNorm; the 256 px U-Net runs end to end in the [0, 1] test)
E2E = ["stylegan2-ada", "stylegan3-cond", "r3gan-cond", "studiogan-dcgan-pd", "taming-bn",
       "basicsr-vgg"]


def _kinds(causes: list[dict]) -> list[tuple]:
    return [(c["kind"], c.get("group_size")) for c in causes]


def _inputs(meta: dict, n: int, seed: int) -> torch.Tensor:
    """``n`` seeded samples uniform in D's pixel range, of D's input shape."""
    lo, hi = meta["pixel_range"]
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *meta["data"]["shape"], generator=g) * (hi - lo) + lo


def _state(net: torch.nn.Module):
    return ({k: v.detach().clone() for k, v in net.state_dict().items()},
            [m.training for m in net.modules()])


def _same_state(a, b) -> None:
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1] == b[1]


# ------------------------------------------------------------------------------ folders
def _png(path: Path, arr: np.ndarray, mode: str) -> None:
    from PIL import Image

    Image.fromarray(arr, mode=mode).save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[str, str]:
    """``(reals, fakes)``: 12 PNGs each of odd sizes, RGB, RGBA and grey, seeded noise; reals
    0 and 1 are half black, half white (the ends of the pixel range)."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("images")
    out = []
    for name in ("reals", "fakes"):
        folder = root / name
        folder.mkdir()
        for i in range(12):
            h, w = (int(v) for v in rng.integers(9, 71, size=2))
            mode = ("RGB", "L", "RGBA")[i % 3]
            shape = (h, w) if mode == "L" else (h, w, len(mode))
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            if name == "reals" and i < 2:
                arr[:] = 0
                arr[:, w // 2:] = 255
            _png(folder / f"im{i:02d}.png", arr, mode)
        out.append(str(folder))
    return out[0], out[1]


def _folder_args(folders) -> list[str]:
    return ["--data", "imagefolder", "--data-root", folders[0], "--fakes", folders[1]]


def _label_args(label: int | None) -> list[str]:
    return [] if label is None else ["--label", str(label)]


def _ok(argv: list[str], capsys) -> tuple[str, str]:
    code, out, err = run_cli(main, argv, capsys)
    assert code == 0, err[-2000:]
    return out, err


# ------------------------------------------------------------------------------ contract
@pytest.mark.parametrize("case", list(CASES))
def test_default_mode_is_per_sample_and_the_check_names_the_coupling(case):
    rel, label, expect = CASES[case]
    G, D, meta = load(FIX / rel, format="auto", label=label)
    assert G is None and meta["label"] == label
    assert meta["family"]["conditional"] is (label is not None)
    assert _kinds(meta["family"]["coupling"]) == expect  # what the reader says it rebuilt
    x, ref = _inputs(meta, 8, seed=1), _inputs(meta, 8, seed=2)
    before = _state(D)
    rec = coupling_record(D, x, mode="auto", reference=ref, name=rel)
    assert _kinds(rec["causes"]) == expect  # what the check finds by running it
    assert rec["mode"] == ("frozen" if expect else "eval")
    assert rec["per_sample"] and rec["max_cross_change"] == 0.0
    assert rec["batch_view"]["coupled"] is bool(expect)  # the collective view does couple
    # the measures' model (probes.core.modes.probe_model: the frozen copy where D couples)
    with torch.no_grad(), probe_model(D, "auto", ref) as (model, mode):
        assert mode == rec["mode"]
        y = model(x)
        assert y.shape == (8,) and y.dtype == torch.float32
        for j in (0, 5):
            x2 = x.clone()
            x2[j] = ref[j]
            y2 = model(x2)
            others = torch.arange(8) != j
            assert torch.equal(y[others], y2[others]), f"sample {j} moved another logit"
            assert not torch.equal(y[j], y2[j])  # its own logit does move
    _same_state(before, _state(D))  # the probe left no trace


@pytest.mark.parametrize("case", list(CASES))
def test_batch_size_and_input_order_change_no_per_sample_number(case):
    """The measures' per-sample primitives (min flip eps of ``attack --min-eps``, input
    gradients and logits of ``gradients``) for batches of 8 in order and of 3 permuted, with
    the same clean reference group. Discrete outcomes (each sample's minimal flipping eps,
    NaN where D gets it wrong, inf where nothing flips) are identical; continuous ones equal to
    float32 round-off: the CPU kernels (oneDNN conv at one row, GEMM at few rows) pick other
    accumulation orders for other batch shapes, one ulp of a logit, whatever the coupling."""
    rel, label, _ = CASES[case]
    _, D, meta = load(FIX / rel, label=label)
    x, ref = _inputs(meta, 8, seed=3), _inputs(meta, 8, seed=4)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(5))
    pr = tuple(meta["pixel_range"])
    scale = pr[1] - pr[0]  # eps is in [0, 1] pixel units; a [-1, 1] D moves twice as far
    a = min_flip_eps(D, x, iters=4, eps_max=8 / 255, reference=ref, batch_size=8,
                     pixel_range=pr)
    b = min_flip_eps(D, x[perm], iters=4, eps_max=8 / 255, reference=ref, batch_size=3,
                     pixel_range=pr)
    np.testing.assert_array_equal(a["per_sample"][perm.numpy()], b["per_sample"])
    ga = input_gradients(D, x, reference=ref, batch_size=8, reduce=None, keep=True)
    gb = input_gradients(D, x[perm], reference=ref, batch_size=3, reduce=None, keep=True)
    torch.testing.assert_close(ga["logits"][perm], gb["logits"], rtol=1e-5,
                               atol=1e-6 * float(ga["logits"].abs().max()))
    torch.testing.assert_close(ga["grad"][perm], gb["grad"], rtol=1e-5,
                               atol=1e-6 * float(ga["grad"].abs().max()))
    assert scale > 0


# ------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize("case", E2E)
def test_attack_gradients_saliency_end_to_end_on_a_file_of_each_family(case, folders,
                                                                        tmp_path, capsys):
    rel, label, expect = CASES[case]
    path = str(FIX / rel)
    output = load(path, label=label)[2]["family"]["output"]  # the reader's declared output
    common = [*_folder_args(folders), *_label_args(label), "--n", "8"]
    out_json = tmp_path / "attack.json"
    _ok(["attack", path, *common, "--eps", "0,2/255", "--population", "both",
         "--no-progress", "--out", str(out_json)], capsys)
    res = json.loads(out_json.read_text())
    recs = res["records"]
    assert {(r["population"], r["eps"]) for r in recs} == {
        (p, e) for p in ("real", "fake") for e in (0.0, 2 / 255)}
    for r in recs:
        assert _kinds(r["coupling"]["causes"]) == expect and r["coupling"]["per_sample"]
        assert r["mode"] == ("frozen" if expect else "eval")
        assert r["contract"]["reduction"] == r["reduction"] == output["reduction"]
        assert r["contract"]["output_shape"] == output["shape"]
        assert r["contract"]["dtype"] == "float32" and r["contract"]["label"] == label
        assert r["class_label"] == label and r["n"] == 8
        assert r["reals" if r["population"] == "real" else "fakes"]
    assert next(r for r in recs if r["eps"] > 0)["mean_logit_shift"] > 0  # the attack moved D
    for pop in ("real", "fake"):
        out, _ = _ok(["gradients", path, *common, "--population", pop, "--boot", "0"],
                     capsys)
        row = json.loads(out)["checkpoints"][0]
        assert row["mode"] == ("frozen" if expect else "eval")
        assert _kinds(row["coupling"]["causes"]) == expect
        assert row["measures"]["hoyer"]["mean"] > 0
    fig = tmp_path / "sal.png"
    out, _ = _ok(["saliency", path, *common, "--population", "fake", "--n", "3",
                  "--method", "saliency", "--out", str(fig)], capsys)
    sal = json.loads(out)
    assert fig.stat().st_size > 0 and sal["fakes"] == folders[1]
    assert _kinds(sal["coupling"]["causes"]) == expect


@pytest.mark.parametrize("case", E2E)
def test_the_same_net_as_a_module_from_python_gives_the_files_numbers(case, folders):
    """The reader's net (upstream output as is: (N, 1), (N,) or a patch / pixel map) declared
    with ``probes.discriminator``: every measure runs on it, finds the same coupling, and
    ``attack`` gives the file path's numbers on the same samples."""
    rel, label, expect = CASES[case]
    _, _, fmeta = load(FIX / rel, label=label)
    net, desc = family_read(FIX / rel, fmeta["format"].split(":", 1)[1], label=label)
    shape = tuple(fmeta["data"]["shape"])
    D, meta = probes.discriminator(net, shape=shape, pixel_range=tuple(desc["pixel_range"]),
                                   group_size=12)
    x = {"real": folder_samples(folders[0], meta, 12, seed=0),
         "fake": folder_samples(folders[1], meta, 12, seed=0)}
    kw = dict(x=x, n=8, eps=(0, 2 / 255), methods=("fgsm",))
    mod = attack([(D, meta)], **kw)
    fil = attack([str(FIX / rel)], label=label, **kw)
    for u, v in zip(mod["records"], fil["records"]):
        assert _kinds(u["coupling"]["causes"]) == expect
        assert u["contract"]["reduction"] == desc["output"]["reduction"]
        for k in ("clean_accuracy", "flip_rate", "n_correct", "mean_logit_shift",
                  "mean_loss_increase", "mode"):
            assert u[k] == v[k], k
    res, _ = gradients([(D, meta)], x=x["real"], n=8, boot=0)
    assert _kinds(res["checkpoints"][0]["coupling"]["causes"]) == expect
    sal, _, maps = saliency((D, meta), x=x["fake"], n=3, methods=("saliency",))
    assert maps[0][1].shape == (3, *shape) and sal["coupling"]["per_sample"]


def test_stylegan_attack_numbers_do_not_depend_on_the_batch_size(folders, tmp_path, capsys):
    """``attack --batch-size 16`` and ``--batch-size 5`` on a StyleGAN2-ADA D (minibatch-stddev
    groups of 4, upstream batch behaviour in the file): the same records and min-flip eps.
    Everything discrete is identical (clean accuracy, counts, flip rates, every min-eps
    quantile); the continuous means agree to float32 round-off (see
    test_batch_size_and_input_order_change_no_per_sample_number), where a batch-mode probe of
    the same D moves them by orders of magnitude more."""
    path = str(FIX / SG)
    runs = []
    for bs in ("16", "5"):
        out_json = tmp_path / f"bs{bs}.json"
        _ok(["attack", path, *_folder_args(folders), "--n", "12", "--eps", "0,1/255,4/255",
             "--method", "fgsm,bim", "--steps", "2", "--min-eps", "--bisect-steps", "4",
             "--batch-size", bs, "--no-progress", "--out", str(out_json)], capsys)
        runs.append(json.loads(out_json.read_text()))
    a, b = runs
    assert len(a["records"]) == len(b["records"]) == 12
    continuous = ("mean_logit_shift", "median_logit_shift", "mean_loss_increase", "mean_l2",
                  "mean_linf")
    for u, v in zip(a["records"], b["records"]):
        assert u["mode"] == "frozen" and u["coupling"]["per_sample"]
        assert {k: u[k] for k in u if k not in continuous} == \
            {k: v[k] for k in v if k not in continuous}
        for k in continuous:
            if k in u:
                # 1.2e-5 apart on an AVX512 CPU (conv sums ordered by batch size)
                assert u[k] == pytest.approx(v[k], rel=1e-4, abs=1e-6), k
    assert a["min_eps"] == b["min_eps"]
    assert len(a["min_eps"]) == 4  # real and fake, fgsm and bim


# ------------------------------------------------------------------------------ info
def _info(path, capsys, *extra) -> tuple[dict, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, err = _ok(["info", str(path), *extra], capsys)
    assert not [str(w.message) for w in caught]  # nothing but the answer reaches the user
    return json.loads(out), err


def test_info_on_stylegan_files(capsys):
    info, err = _info(FIX / SG, capsys)
    assert info["family"] == "stylegan2-ada" and info["conditional"] is False
    assert info["coupling"] == [{"kind": "minibatch-stddev", "group_size": 4,
                                 "num_channels": 1}]
    assert "torch_utils.persistence._reconstruct_persistent_obj" in info["globals"]
    assert info["extra"]["module_src"].startswith("differs") and "not run" in \
        info["extra"]["module_src"]
    assert info["input_range"] == [-1.0, 1.0] and info["output"]["shape"] == "(N, 1)"
    assert err == ""
    info, err = _info(FIX / SG_COND, capsys)
    assert info["conditional"] is True and info["num_classes"] == 10 and info["label"] is None
    assert info["coupling"][0]["group_size"] == 4 and info["coupling"][0]["num_channels"] == 2
    assert "conditional" in err and "10 classes" in err and "--label K" in err
    info, err = _info(FIX / SG_COND, capsys, "--label", "7")
    assert info["label"] == 7 and err == ""
    info, _ = _info(FIX / SG3, capsys, "--label", "3")
    assert info["family"] == "stylegan3" and info["coupling"][0]["group_size"] == 4


@pytest.mark.parametrize("case", ["r3gan-cond", "studiogan-dcgan-pd", "taming-bn",
                                  "basicsr-vgg"])
def test_info_on_other_families(case, capsys):
    rel, label, expect = CASES[case]
    info, err = _info(FIX / rel, capsys)
    assert info["conditional"] is (label is not None)
    assert _kinds(info["coupling"]) == expect
    if label is not None:
        assert info["num_classes"] == 10 and "--label K" in err
    assert info["globals"] and all(isinstance(g, str) for g in info["globals"])
    if case == "r3gan-cond":
        assert any(g.startswith("R3GAN.Networks.") for g in info["globals"])
    if case == "taming-bn":  # the Lightning checkpoint's own records, named, never imported
        assert any(g.startswith("omegaconf.") for g in info["globals"])


# ------------------------------------------------------------------------------ malicious
def _spliced(src: Path, marker: Path, dst: Path) -> Path:
    """The upstream-written pickle ``src`` with one more entry in its top-level dict, a code
    payload: the opcodes of ``{..., "note": payload}`` (an otherwise real snapshot)."""
    data = src.read_bytes()
    assert data.endswith(pickle.STOP)
    key = pickle.dumps("note", protocol=2)[2:-1]
    payload = pickle.dumps(_Payload(marker), protocol=2)[2:-1]
    # the last frame keeps its length: STOP becomes a push of () (popped after the frame)
    dst.write_bytes(data[:-1] + pickle.EMPTY_TUPLE + pickle.POP + key + payload
                    + pickle.SETITEM + pickle.STOP)
    return dst


def _malicious(kind: str, marker: Path, tmp_path: Path) -> Path:
    if kind == "stylegan-pkl":
        return _spliced(FIX / SG, marker, tmp_path / "network-snapshot-000100.pkl")
    if kind == "r3gan-pkl":
        return _spliced(FIX / R3, marker, tmp_path / "network-snapshot-000200.pkl")
    if kind == "lightning-ckpt":
        sd = torch.load(FIX / "taming/bn_state_dict.pt", weights_only=True)
        path = tmp_path / "last.ckpt"
        torch.save({"state_dict": {f"loss.discriminator.{k}": v for k, v in sd.items()},
                    "global_step": 6, "pytorch-lightning_version": "1.0.8",
                    "callbacks": {"ModelCheckpoint": _Payload(marker)}}, path)
        return path
    if kind == "studiogan-pth":
        obj = read_any(FIX / DCGAN)  # its best_fid is a numpy scalar: not weights_only
        obj["best_fid"] = _Payload(marker)
        path = tmp_path / "model=D-best-weights-step=300.pth"
        torch.save(obj, path)
        return path
    assert kind == "basicsr-pth"
    obj = torch.load(FIX / UNET, weights_only=True)
    obj["note"] = _Payload(marker)
    path = tmp_path / "net_d_5000.pth"
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("kind", ["stylegan-pkl", "r3gan-pkl", "lightning-ckpt",
                                  "studiogan-pth", "basicsr-pth"])
def test_malicious_files_are_one_line_and_never_run(kind, tmp_path, capsys, folders):
    marker = tmp_path / "PAYLOAD_RAN"
    path = _malicious(kind, marker, tmp_path)
    with pytest.raises(UserError, match="system") as e:
        load(path)
    assert "\n" not in str(e.value)
    for argv in (["info", str(path)], ["info", str(path), "--label", "1"],
                 ["attack", str(path), *_folder_args(folders), "--n", "2", "--eps", "0"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code, out, err = run_cli(main, argv, capsys)
        assert code == 2 and out == "" and "Traceback" not in err, err
        assert err.count("\n") == 1 and not caught, (err, [str(w.message) for w in caught])
        # with a label, an unconditional family's reader may refuse the label first
        assert "system" in err or ("--label" in argv and "label" in err), err
    assert not marker.exists()


# ------------------------------------------------------------------------------ labels
LABELLED = [(SG_COND, "stylegan", 3), (SG_COND, "stylegan", 7), (SG3, "stylegan", 4),
            (DCGAN_PD, "studiogan", 9), (SNGAN_PD, "studiogan", 0), (R3_COND, "r3gan", 3)]


def _upstream(rel: str, family: str, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: the fixture's input and upstream's output for class ``label``, (N,)."""
    if family == "stylegan":
        t = load_file(FIX / rel.replace(".pkl", ".io.safetensors"))
        return t["x"], t["y"][t["labels"].tolist().index(label)][:, 0]
    if family == "studiogan":
        t = load_file(Path(FIX / rel).parent / "io.safetensors")
        return t["x"], t["y"][t["labels"].tolist().index(label)]
    t = load_file(FIX / "r3gan/io-cond.safetensors")
    assert label == 3  # upstream's float32 forward with class 3 for every image
    return t["x"], t["y_fp32_label3"]


@pytest.mark.parametrize("rel,family,label", LABELLED)
def test_label_k_gives_the_upstream_logits_of_class_k(rel, family, label):
    x, y = _upstream(rel, family, label)
    _, D, meta = load(FIX / rel, format="auto", label=label)
    assert meta["label"] == label and meta["reduction"] == "squeeze"
    with torch.no_grad():
        got = D(x)
    assert got.shape == y.shape == (len(x),)
    torch.testing.assert_close(got, y.float(), rtol=1e-5, atol=1e-5 * float(y.abs().max()))
    other = (label + 1) % meta["family"]["num_classes"]
    with torch.no_grad():
        assert not torch.allclose(load(FIX / rel, label=other)[1](x), got)  # the class acts


@pytest.mark.parametrize("rel", [SG_COND, SG3, DCGAN_PD, R3_COND])
def test_a_conditional_file_without_a_label_is_one_line(rel, folders, capsys):
    for label in (None, 10):
        with pytest.raises(UserError, match="label") as e:
            load(FIX / rel, label=label)
        assert "\n" not in str(e.value)
    code, out, err = run_cli(main, ["attack", str(FIX / rel), *_folder_args(folders), "--n",
                                    "2", "--eps", "0"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "conditional" in err and "label" in err


# ------------------------------------------------------------------------------ BasicSR range
def test_basicsr_d_receives_the_folder_reals_in_0_1(folders, capsys, tmp_path):
    """Everything the rebuilt U-Net D is fed while ``attack`` runs on an image folder (caught
    by a forward pre-hook on its class, frozen copies included) lies in [0, 1], and the clean
    reals are the folder's images mapped linearly from the data's [-1, 1]: the half-black,
    half-white images reach 0 and 1 exactly."""
    _, D0, meta = load(FIX / UNET)
    net_cls = type(D0.net)
    seen: list[torch.Tensor] = []

    def hook(module, args):
        if isinstance(module, net_cls):
            seen.append(args[0].detach().clone())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        _ok(["attack", str(FIX / UNET), "--data", "imagefolder", "--data-root", folders[0],
             "--population", "real", "--n", "12", "--eps", "0,8/255", "--no-progress",
             "--out", str(tmp_path / "a.json")], capsys)
    finally:
        handle.remove()
    assert seen
    fed = torch.cat(seen)
    assert float(fed.min()) >= 0.0 and float(fed.max()) <= 1.0
    # the folder as the data reads it, in [-1, 1], mapped to [0, 1]: each such image was fed
    data = folder_samples(folders[0], {**meta, "pixel_range": [-1.0, 1.0]}, 12, seed=0)
    assert float(data.min()) == -1.0 and float(data.max()) == 1.0
    want = (data + 1) / 2
    dist = torch.cdist(want.flatten(1).double(), fed.flatten(1).double())
    assert float(dist.min(dim=1).values.max()) < 1e-4
