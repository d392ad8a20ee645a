"""The one loader and the family registry (issue 21, items 3-5): ``probes.io.sources.load``
with ``format="auto"`` recognises every format from the file's contents, ``asgan-probe info``
says what it found, a discriminator file with no G is probed end to end on an image folder of
any-size reals (``--data imagefolder``) and a folder of fakes (``--fakes``), and labels, bad
folders and malicious files get one-line errors.

The fixture files are the older families' on-disk formats (``tests/fixtures/<module>/``)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from asgan_base.errors import UserError
from probes.cli import main
from probes.io import families
from probes.io.sources import detect_format, folder_samples, load
from tests.conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
KNOWN = {  # fixture file -> the format auto must find
    "ours/netD-dcgan28.pt": "state-dict", "ours/netD-dcgan28-legacy.pt": "state-dict",
    "ours/netD-resnet32-sn.safetensors": "state-dict", "authors/netD_DCGAN_32.pth": "authors",
    "authors/netD_resnet32_sn.pth": "authors", "mimicry/netD_5_steps.pth": "mimicry",
}


def _x(shape, n=5, seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------- the registry
def test_every_family_module_has_the_interface():
    seen = []
    for name, mod in zip(families.MODULES, families.modules()):
        for attr in ("FORMAT", "CHECKED", "COUPLING"):
            text = getattr(mod, attr)
            assert isinstance(text, str) and text and "\n" not in text, (name, attr)
        assert isinstance(mod.STUBS, tuple) and mod.NAMES and callable(mod.sniff)
        assert callable(mod.read)
        seen += mod.NAMES
    assert len(seen) == len(set(seen)) == len(families.names())
    with pytest.raises(UserError, match="unknown format 'onnx'"):
        families.module_for("onnx")


def test_the_table_is_in_the_docstring_and_the_docs():
    table = families.table()
    assert len(table.splitlines()) == 2 + len(families.MODULES)
    assert table in families.__doc__, "regenerate the table in probes/io/families/__init__.py"
    assert table in (ROOT / "docs" / "formats.md").read_text(), \
        "regenerate the family table in docs/formats.md"


# ------------------------------------------------------------------------- auto
@pytest.mark.parametrize("rel,fmt", sorted(KNOWN.items()), ids=sorted(KNOWN))
def test_auto_recognises_each_format_and_loads_what_the_named_format_loads(rel, fmt):
    path = FIXTURES / rel
    assert detect_format(path) == fmt
    G, D, meta = load(path)  # format="auto" is the default
    _, D2, meta2 = load(path, format=fmt)
    assert G is None and not D.training and meta == meta2
    assert meta["format"] == f"foreign:{fmt}" and meta["label"] is None
    assert meta["reduction"] == "squeeze" and meta["pixel_range"] == [-1.0, 1.0]
    desc = meta["family"]
    assert set(families.DESC_KEYS) <= set(desc) and desc["conditional"] is False
    x = _x(meta["data"]["shape"])
    with torch.no_grad():
        y = D(x)
        assert y.shape == (5,) and torch.equal(y, D2(x))
    # per sample: a logit depends on its own row only in eval mode (BatchNorm: running stats);
    # to float32 round-off, since conv kernels sum in a batch-size dependent order (bit-equal
    # on AVX2, 3e-10 apart on AVX512); a batch statistic would move it by orders more
    with torch.no_grad():
        torch.testing.assert_close(D(x[2:3]), y[2:3], rtol=1e-5, atol=1e-7)


def test_auto_finds_the_layouts_only_authors_dcgan_reads(tmp_path):
    from tests.test_foreign import ExamplesNetD, _settle

    torch.manual_seed(0)
    ref = _settle(ExamplesNetD(nc=1, ndf=4, n=2), (1, 28, 28))
    ref.main[-2] = nn.Conv2d(8, 1, 7, 1, 0, bias=False)  # 28 px: a 7x7 valid conv last
    path = tmp_path / "netD_mnist.pth"
    torch.save(ref.state_dict(), path)
    assert detect_format(path) == "authors-dcgan"
    _, D, meta = load(path)
    x = _x((1, 28, 28))
    with torch.no_grad():
        torch.testing.assert_close(D(x), ref.main[:-1](x).view(-1), rtol=0, atol=1e-6)


def test_auto_reads_an_asgan_checkpoint_and_a_torchscript_archive_without_running_it(tmp_path):
    from trainers import make_config, save_checkpoint
    from trainers.nets import build_net, net_specs

    g_spec, d_spec = net_specs("dcgan", shape=(1, 28, 28), z_dim=4, width=2)
    torch.manual_seed(0)
    G0, D0 = build_net(g_spec), build_net(d_spec).eval()
    ckpt = save_checkpoint(tmp_path / "c.safetensors", G=G0, D=D0,
                           meta={"g_spec": g_spec, "d_spec": d_spec, "step": 3,
                                 "config": make_config("smoke").to_dict(),
                                 "pixel_range": [-1.0, 1.0]})
    if ckpt.read_bytes()[:1] != b"\x80":  # see test_foreign: a 0x80 header length
        assert detect_format(ckpt) == "asgan"
        G, _, meta = load(ckpt)
        assert G is not None and meta["step"] == 3
        with pytest.raises(UserError, match="foreign formats only"):
            load(ckpt, label=1)
        # its record stripped: the checkpoint reader says why, auto never reads its D silently
        from safetensors.torch import load_file, save_file

        bare = tmp_path / "stripped.safetensors"
        save_file(load_file(ckpt), str(bare))
        assert detect_format(bare) == "asgan"
        with pytest.raises(UserError) as err:
            load(bare)
        assert "\n" not in str(err.value)
        assert load(bare, format="state-dict")[2]["d_spec"]["arch"] == "dcgan"
    script = tmp_path / "d_scripted.pt"
    torch.jit.save(torch.jit.trace(D0, _x((1, 28, 28))), script)
    assert detect_format(script) == "state-dict"
    _, D, meta = load(script)
    assert "torchscript" in meta["family"]["extra"]["container"]
    x = _x((1, 28, 28))
    with torch.no_grad():
        assert torch.equal(D(x), D0(x))


def test_unknown_and_malicious_files_get_one_line_and_run_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Payload()))
    torch.save({"weights": {"x": Payload()}}, tmp_path / "evil_zip.pt")
    torch.save({"weird.key": torch.zeros(2)}, tmp_path / "weird.pt")
    for name, word in (("evil.pkl", "system"), ("evil_zip.pt", "system"),
                       ("weird.pt", "no known discriminator family")):
        with pytest.raises(UserError, match=word) as err:
            load(tmp_path / name)
        assert "\n" not in str(err.value)
        code, out, err = run_cli(main, ["info", str(tmp_path / name)], capsys)
        assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
        assert word in err
    assert not marker.exists()


def test_labels_on_unconditional_files_are_one_line_errors(capsys):
    path = FIXTURES / "authors/netD_DCGAN_32.pth"
    with pytest.raises(UserError, match="unconditional; drop --label") as err:
        load(path, label=3)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="class index"):
        load(path, label="3")
    code, _, err = run_cli(main, ["info", str(path), "--label", "1"], capsys)
    assert code == 2 and "unconditional" in err and err.count("\n") == 1
    code, _, err = run_cli(main, ["info", str(path), "--label", "one"], capsys)
    assert code == 2 and "invalid int" in err


# ------------------------------------------------------------------------- info
def test_info_says_what_it_found_in_a_foreign_file(capsys):
    path = FIXTURES / "authors/netD_DCGAN_32.pth"
    code, out, err = run_cli(main, ["info", str(path)], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["format"] == "foreign:authors" and info["family"] == "as-gan-authors"
    assert (info["resolution"], info["channels"]) == (32, 3)
    assert info["conditional"] is False and info["num_classes"] is None
    assert info["coupling"] == [{"kind": "batchnorm", "layers": 2}]
    assert info["input_range"] == [-1.0, 1.0]
    assert info["output"]["shape"] == "(N,)" and info["output"]["reduction"] == "squeeze"
    assert info["upstream"]["class"] == "model/DCGAN_32.py"
    # what a plain torch.load would import: torch's rebuild functions, nothing else
    assert "torch._utils._rebuild_tensor_v2" in info["globals"]
    assert all(g.startswith(("torch.", "collections.")) for g in info["globals"])
    code, out, _ = run_cli(main, ["info", str(FIXTURES / "ours/netD-resnet32-sn.safetensors")],
                           capsys)
    info = json.loads(out)
    assert code == 0 and info["globals"] == [] and info["coupling"] == []
    assert info["d_spec"]["kwargs"]["spectral_norm"] is True


# ------------------------------------------------------------------------- folders
def _png_folder(folder: Path, sizes, colours) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, ((w, h), (mode, colour)) in enumerate(zip(sizes, colours)):
        Image.new(mode, (w, h), colour).save(folder / f"im{i}.png")
    return folder


def test_folder_images_are_resized_and_mapped_to_ds_range_and_channels(tmp_path):
    sizes = [(37, 23), (8, 61), (100, 100)]
    colours = [("RGB", (255, 0, 0)), ("L", 255), ("RGBA", (0, 0, 255, 255))]
    folder = _png_folder(tmp_path / "f", sizes, colours)
    grey = {"data": {"shape": [1, 28, 28]}, "pixel_range": [0.0, 1.0], "format": "foreign:x"}
    x = folder_samples(folder, grey, 3, seed=0)
    assert x.shape == (3, 1, 28, 28)
    # constant images stay constant; red -> luma 0.299, white -> 1, blue -> 0.114, in [0, 1]
    got = sorted(round(float(v), 3) for v in x.mean(dim=(1, 2, 3)))
    assert got == pytest.approx(sorted([0.299, 1.0, 0.114]), abs=2e-3)
    rgb = {"data": {"shape": [3, 16, 16]}, "pixel_range": [-1.0, 1.0], "format": "foreign:x"}
    y = folder_samples(folder, rgb, 3, seed=0)
    assert y.shape == (3, 3, 16, 16) and y.min() == -1.0 and y.max() == 1.0
    assert torch.equal(folder_samples(folder, rgb, 3, seed=0), y)  # seeded
    with pytest.raises(UserError, match="holds 3 images"):
        folder_samples(folder, rgb, 4, seed=0)
    with pytest.raises(UserError, match="--fakes"):
        folder_samples(tmp_path / "nowhere", rgb, 1)


@pytest.fixture
def folders(tmp_path):
    import random

    rng = random.Random(0)
    sizes = [(rng.randint(9, 70), rng.randint(9, 70)) for _ in range(7)]
    reals = _png_folder(tmp_path / "reals", sizes,
                        [("RGB", tuple(rng.randrange(256) for _ in range(3))) for _ in sizes])
    fakes = _png_folder(tmp_path / "fakes", sizes[:6],
                        [("L", rng.randrange(256)) for _ in sizes[:6]])
    return str(reals), str(fakes)


FOREIGN = ["--data", "imagefolder", "--data-root", "{reals}", "--fakes", "{fakes}"]


def _cli(argv, folders, capsys):
    reals, fakes = folders
    code, out, err = run_cli(main, [a.format(reals=reals, fakes=fakes) for a in argv], capsys)
    assert code == 0, err[-2000:]
    return out, err


def test_attack_end_to_end_on_a_discriminator_file_with_folders(folders, tmp_path, capsys):
    path = str(FIXTURES / "authors/netD_DCGAN_32.pth")  # BatchNorm: frozen per-sample mode
    outs = []
    for bs in ("2", "5"):
        out_json = tmp_path / f"a{bs}.json"
        _cli(["attack", path, *FOREIGN, "--n", "5", "--eps", "0,2/255", "--batch-size", bs,
              "--no-progress", "--out", str(out_json)], folders, capsys)
        outs.append(json.loads(out_json.read_text()))
    recs = outs[0]["records"]
    assert {(r["population"], r["eps"]) for r in recs} == {
        (p, e) for p in ("real", "fake") for e in (0.0, 2 / 255)}
    real, fake = recs[0], next(r for r in recs if r["population"] == "fake")
    assert real["mode"] == "frozen" and real["reference_n"] == 7  # the folder holds 7
    assert fake["reference_n"] == 6 and fake["fakes"] == folders[1]
    assert real["reals"].startswith("all of imagefolder")
    assert real["family"] == "as-gan-authors" and real["reduction"] == "squeeze"
    assert outs[0]["records"] == outs[1]["records"]  # the batch size changes no number


def test_gradients_and_saliency_end_to_end_on_a_one_channel_d(folders, tmp_path, capsys):
    path = str(FIXTURES / "ours/netD-dcgan28.pt")  # 1x28x28: RGB folders made grey
    for pop in ("real", "fake"):
        out, _ = _cli(["gradients", path, *FOREIGN, "--population", pop, "--n", "4",
                       "--boot", "0"], folders, capsys)
        row = json.loads(out)["checkpoints"][0]
        assert row["mode"] == "frozen" and row["family"] == "asgan-probe"
        assert row["measures"]["hoyer"]["mean"] > 0
    fig = tmp_path / "sal.png"
    out, _ = _cli(["saliency", path, *FOREIGN, "--population", "fake", "--n", "3",
                   "--method", "saliency", "--out", str(fig)], folders, capsys)
    res = json.loads(out)
    assert fig.exists() and res["fakes"] == folders[1] and res["methods"][0]["mode"] == "frozen"


def test_a_foreign_d_without_fakes_or_with_a_bad_folder_gets_one_line(folders, tmp_path,
                                                                      capsys):
    path = str(FIXTURES / "mimicry/netD_5_steps.pth")
    reals, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, word in (
            (["attack", path, "--data", "imagefolder", "--data-root", reals, "--n", "2"],
             "--fakes DIR"),
            (["gradients", path, "--population", "fake", "--n", "2"], "--fakes DIR"),
            (["attack", path, "--population", "fake", "--fakes", str(empty), "--n", "2"],
             "no images"),
            (["saliency", path, "--data", "imagefolder", "--data-root", reals, "--n", "9",
              "--out", str(tmp_path / "s.png")], "lower --n"),
            (["attack", path, "--population", "real", "--n", "2"], "pass --data")):
        code, out, err = run_cli(main, argv, capsys)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert word in err, err
