"""``asgan-probe coverage`` and ``quality`` end to end on checkpoints trained here (tiny steps)."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from probes.cli import main
from tests.conftest import run_cli
from trainers import make_config, train

_run = functools.partial(run_cli, main)  # (code, stdout, stderr) of one call

FAST = {"tensorboard": False, "sample_every": 0, "log_every": 100}


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory):
    """ring8 baseline and AS-GAN (300 steps, narrow MLPs), stacked-mnist and mnist10k smoke."""
    root = tmp_path_factory.mktemp("cov")
    out = {}
    for trainer in ("baseline", "asgan"):
        cfg = make_config("ring8-mlp", {"steps": 300, "trainer": trainer, "width": 32,
                                        "batch_size": 64, "snapshot_every": 300, **FAST})
        out[f"ring8-{trainer}"] = train(cfg, root / f"ring8-{trainer}", progress=False)
    for data in ("stacked-mnist", "mnist10k"):
        cfg = make_config("smoke", {"data": data, "steps": 4, "snapshot_every": 4, **FAST})
        out[data] = train(cfg, root / data, progress=False)
    return {k: str(v) for k, v in out.items()}


def test_ring8_baseline_and_asgan_coverage_json_and_figure(ckpts, tmp_path, capsys):
    out, png, md = tmp_path / "cov.json", tmp_path / "cov.png", tmp_path / "cov.md"
    code, _, err = _run(["coverage", ckpts["ring8-baseline"], ckpts["ring8-asgan"], "--n", "2500",
                         "--seed", "0", "--out", str(out), "--plot", str(png),
                         "--markdown", str(md)], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    rows = result["results"]
    assert [r["trainer"] for r in rows] == ["baseline", "asgan"]
    for r in rows:
        assert r["data"] == "ring8" and r["n"] == 2500 and r["modes_total"] == 8
        assert 0 <= r["modes_captured"] <= 8 and 0 <= r["high_quality"] <= 1
        assert sum(r["counts"]) == round(r["high_quality"] * 2500)
    real = result["reals"]["ring8"]
    assert real["modes_captured"] == 8 and abs(real["high_quality"] - 0.9889) < 0.01
    tables = [t["name"] for t in result["published"]["ring8"]["tables"]]
    assert tables == ["VEEGAN Table 1", "PacGAN Table 1"]
    assert "PacGAN" in result["protocol"]["ring8"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    text = md.read_text()
    assert "| PacGAN Table 1 | GAN |" in text and "| ours | ring8-asgan/" in text
    assert "Protocol differences" in text and "Protocol differences" in err


def test_same_seed_same_json(ckpts, tmp_path, capsys):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"c{i}.json")
        code, _, err = _run(["coverage", ckpts["ring8-asgan"], "--n", "500", "--seed", "3",
                             "--out", str(paths[-1])], capsys)
        assert code == 0, err
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_stacked_mnist_counts_carry_classifier_accuracy_and_caveat(ckpts, tmp_path, capsys):
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    code, _, err = _run(["coverage", ckpts["stacked-mnist"], "--n", "400", "--out", str(out),
                         "--plot", str(png)], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    for row in (*result["results"], result["reals"]["stacked-mnist"]):
        assert row["classifier_accuracy"] >= 0.97 and "10k" in row["caveat"]
        assert row["modes_total"] == 1000 and sum(row["counts"]) == 400
    assert result["reals"]["stacked-mnist"]["modes_captured"] > 250  # 400 draws: ~330 expected
    assert result["classifier"]["heldout_accuracy"] >= 0.97
    assert [t["name"] for t in result["published"]["stacked-mnist"]["tables"]][0] == \
        "VEEGAN Table 2"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "indicative" in err.lower()


def _bad(tmp_path, ckpts):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    ring = ckpts["ring8-baseline"]
    return [
        (["coverage", str(tmp_path / "missing.safetensors")], "not found"),
        (["coverage", str(text)], "not an asgan-probe checkpoint"),
        (["coverage", ckpts["mnist10k"]], "ring8, grid25 or stacked-mnist"),
        (["coverage", ring, "--n", "0"], "--n"),
        (["coverage", ring, "--n", "-3"], "--n"),
        (["coverage", ring, "--n", "many"], "invalid int"),
        (["coverage"], "required"),
        (["coverage", ring, "--n", "200000"], "lower --n"),
        (["coverage", ckpts["stacked-mnist"], "--n", "10", "--classifier", str(junk)],
         "classifier"),
        (["quality", ring, "--inception-weights", str(tmp_path / "none.pth")], "not found"),
        (["quality", ring, "--k", "0"], "--k"),
        (["quality", ring, "--n", "1"], "--n"),
        (["quality", str(text)], "not an asgan-probe checkpoint"),
    ]


@pytest.mark.parametrize("case", range(13), ids=[f"bad-{i}" for i in range(13)])
def test_bad_inputs_get_one_line_errors(ckpts, tmp_path, capsys, case):
    argv, word = _bad(tmp_path, ckpts)[case]
    code, out, err = _run(argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert word.lower() in err.lower(), err
    assert out == ""


def test_quality_in_raw_classifier_and_per_channel_spaces(ckpts, tmp_path, capsys):
    out = tmp_path / "q.json"
    code, _, err = _run(["quality", ckpts["ring8-baseline"], ckpts["ring8-asgan"],
                         ckpts["mnist10k"], ckpts["stacked-mnist"], "--n", "200",
                         "--kid-subsets", "3", "--kid-subset-size", "50", "--out", str(out)],
                        capsys)
    assert code == 0, err
    rows = json.loads(out.read_text())["results"]
    spaces = [list(r["scores"]) for r in rows]
    assert spaces == [["raw"], ["raw"], ["classifier"], ["classifier-per-channel"]]
    assert rows[0]["scores"]["raw"]["dim"] == 2
    assert "relative_to_first" in rows[1]["scores"]["raw"]
    clf = rows[2]["scores"]["classifier"]
    assert clf["dim"] == 128 and clf["classifier"]["heldout_accuracy"] >= 0.97
    assert rows[3]["scores"]["classifier-per-channel"]["dim"] == 384
    for r in rows:
        s = next(iter(r["scores"].values()))
        assert s["frechet"] >= 0 and set(s["prdc"]) >= {"precision", "recall", "density",
                                                        "coverage"}
        assert {"mean", "std"} <= s["kid"].keys()
    assert "| checkpoint | space | Frechet |" in err


class _TinyInception(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 4, 8)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.proj(torch.nn.functional.adaptive_avg_pool2d(x / 255, 2).flatten(1))


def test_quality_adds_inception_fid_with_user_weights(ckpts, tmp_path, capsys, monkeypatch):
    weights = tmp_path / "inception-2015-12-05.pt"
    torch.manual_seed(0)
    torch.jit.script(_TinyInception()).save(str(weights))
    monkeypatch.setenv("ASGAN_PROBE_INCEPTION", str(weights))  # the environment variable path
    out = tmp_path / "qi.json"
    # a TorchScript file runs as a program only when asked: --inception-format torchscript
    code, _, err = _run(["quality", ckpts["mnist10k"], "--n", "40", "--kid-subsets", "2",
                         "--kid-subset-size", "20", "--inception-format", "torchscript",
                         "--out", str(out)], capsys)
    assert code == 0, err
    scores = json.loads(out.read_text())["results"][0]["scores"]
    assert list(scores) == ["classifier", "inception"]
    assert scores["inception"]["dim"] == 8
    assert scores["inception"]["weights"]["format"] == "torchscript"
    assert len(scores["inception"]["weights"]["sha256"]) == 64
