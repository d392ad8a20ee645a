"""``asgan-probe attack`` end to end on checkpoints trained here: JSON records, the figure, the
stderr table, transfer, minimal eps, PGD-L2, foolbox methods, foreign files, seeds; defaults
read from probes.measures.attack; one-line errors."""

from __future__ import annotations

import functools
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from probes.cli import main as probe_main
from tests.conftest import run_cli
from trainers import load_checkpoint, make_config, train

_run = functools.partial(run_cli, probe_main)  # (code, stdout, stderr) of one call

FIELDS = {"checkpoint", "population", "method", "eps", "n", "flip_rate", "mean_logit_shift",
          "median_logit_shift", "mean_loss_increase", "clean_accuracy", "mode", "warning",
          "evaluated_on", "transfer", "mean_linf", "mean_l2"}


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory):
    """A baseline and an AS-GAN DCGAN trained for 20 smoke steps (a few seconds)."""
    root = tmp_path_factory.mktemp("attack-runs")
    return [str(train(make_config("smoke", {"trainer": t, "steps": 20}), root / t,
                      progress=False)) for t in ("baseline", "asgan")]


def _attack(capsys, *argv):
    code, out, err = _run(["attack", *argv, "--no-progress"], capsys)
    assert code == 0, err
    return out, err


def test_two_checkpoints_give_one_json_one_table_one_figure(ckpts, tmp_path, capsys):
    out_json, png = tmp_path / "a.json", tmp_path / "a.png"
    _, err = _attack(capsys, *ckpts, "--method", "fgsm,bim", "--eps", "0,1/255,4/255",
                     "--population", "both", "--n", "24", "--steps", "2",
                     "--out", str(out_json), "--plot", str(png))
    res = json.loads(out_json.read_text())
    recs = res["records"]
    assert len(recs) == 2 * 2 * 2 * 3  # checkpoints x populations x methods x eps
    assert all(FIELDS <= r.keys() for r in recs)
    assert {r["checkpoint"] for r in recs} == set(ckpts)
    assert {(r["population"], r["method"]) for r in recs} == {
        (p, m) for p in ("real", "fake") for m in ("fgsm", "bim")}
    assert all(r["mode"] == "frozen" for r in recs)  # BatchNorm DCGAN: auto -> frozen
    assert all(r["reference_n"] == 16 for r in recs)  # the smoke preset's batch size
    assert all(r["reals"] for r in recs if r["population"] == "real")
    assert all(r["bn_group"] is None for r in recs)  # no batch-mode grouping
    assert all(r["flip_rate"] in (0, None) for r in recs if r["eps"] == 0)
    assert res["eps"] == pytest.approx([0, 1 / 255, 4 / 255])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the human table on stderr names both runs
    assert "baseline" in err and "asgan" in err and "flip" in err


def test_transfer_and_min_eps(ckpts, tmp_path, capsys):
    out_json = tmp_path / "t.json"
    _attack(capsys, ckpts[0], "--transfer-to", ckpts[1], "--eps", "0,2/255", "--population",
            "real", "--n", "16", "--min-eps", "--bisect-steps", "4", "--out", str(out_json))
    res = json.loads(out_json.read_text())
    own = [r for r in res["records"] if not r["transfer"]]
    moved = [r for r in res["records"] if r["transfer"]]
    assert len(own) == len(moved) == 2
    assert all(r["checkpoint"] == ckpts[0] and r["evaluated_on"] == ckpts[1] for r in moved)
    assert own[1]["mean_linf"] == pytest.approx(moved[1]["mean_linf"])  # the same perturbation
    [m] = res["min_eps"]
    assert m["method"] == "fgsm" and m["iters"] == 4 and m["n"] == 16
    assert "per_sample" not in m and set(m["quantiles"]) == {"0.1", "0.25", "0.5", "0.75", "0.9"}


def test_same_seed_same_json_whatever_the_batch_size(ckpts, tmp_path, capsys):
    def run(name, *extra):
        path = tmp_path / name
        _attack(capsys, ckpts[1], "--method", "bim", "--steps", "2", "--random-start",
                "--eps", "0,2/255", "--n", "20", "--out", str(path), *extra)
        return path.read_bytes()

    a = run("a.json", "--seed", "3")
    assert a == run("b.json", "--seed", "3", "--batch-size", "5")
    assert a != run("c.json", "--seed", "4")


def test_pgd_l2_end_to_end_with_min_eps(ckpts, tmp_path, capsys):
    out_json = tmp_path / "l2.json"
    _, err = _attack(capsys, ckpts[1], "--method", "pgd-l2,fgsm", "--eps", "0,0.05,0.2",
                     "--steps", "3", "--population", "real", "--n", "12", "--min-eps",
                     "--bisect-steps", "3", "--out", str(out_json))
    res = json.loads(out_json.read_text())
    l2 = [r for r in res["records"] if r["method"] == "pgd-l2"]
    assert [r["eps"] for r in l2] == pytest.approx([0, 0.05, 0.2])
    assert all(r["norm"] == "l2" and r["steps"] == 3 for r in l2)
    assert all(r["norm"] == "linf" for r in res["records"] if r["method"] == "fgsm")
    # eps is the L2 radius in pixel units: the recorded mean L2 norm stays within it
    assert all(0 < r["mean_l2"] <= r["eps"] * (1 + 1e-5) for r in l2[1:])
    assert {m["method"] for m in res["min_eps"]} == {"pgd-l2", "fgsm"}
    assert "pgd-l2" in err


def test_cli_defaults_are_the_measures_defaults(tmp_path):
    # the CLI reads its defaults from probes.measures.attack: parse a bare command line and
    # compare with the library function's own defaults
    from probes.cli import build_parser
    from probes.cli.attack import _options
    from probes.measures import attack as measure

    args = build_parser().parse_args(["attack", str(tmp_path / "x.safetensors")])
    opts = _options(args)
    lib = {k: p.default for k, p in inspect.signature(measure.attack).parameters.items()}
    for k in ("eps", "n", "steps", "batch_size", "bisect_steps", "step_size", "mode"):
        assert opts[k] == lib[k], k
    # eps None: each checkpoint's unit's default grid (asgan_base.eps.DEFAULT_GRID)
    assert opts["eps"] is None and opts["n"] == measure.N


def test_foolbox_methods_report_the_same_records(ckpts, tmp_path, capsys):
    pytest.importorskip("foolbox")
    out_json = tmp_path / "f.json"
    _attack(capsys, ckpts[0], "--method", "foolbox:L2ProjectedGradientDescentAttack",
            "--eps", "0,0.1", "--steps", "2", "--population", "fake", "--n", "12",
            "--out", str(out_json))
    recs = json.loads(out_json.read_text())["records"]
    assert [r["method"] for r in recs] == ["foolbox:L2ProjectedGradientDescentAttack"] * 2
    assert all(FIELDS <= r.keys() for r in recs)
    assert recs[1]["mean_l2"] <= 0.1 + 1e-5 and recs[1]["mean_l2"] > 0
    assert all(r["norm"] == "l2" for r in recs)
    _, D, _ = load_checkpoint(ckpts[0])
    assert all(p.grad is None for p in D.parameters())


def test_a_foreign_state_dict_attacks_reals(ckpts, tmp_path, capsys):
    _, D, _ = load_checkpoint(ckpts[0])
    sd = tmp_path / "netD.pt"
    torch.save(D.state_dict(), sd)
    out_json = tmp_path / "s.json"
    _attack(capsys, str(sd), "--format", "state-dict", "--data", "mnist10k", "--population",
            "real", "--eps", "0,1/255", "--n", "16", "--out", str(out_json))
    recs = json.loads(out_json.read_text())["records"]
    assert len(recs) == 2 and recs[0]["mode"] == "frozen" and recs[0]["reference_n"] == 64
    code, _, err = _run(["attack", str(sd), "--format", "state-dict", "--data", "mnist10k",
                         "--population", "fake", "--n", "4"], capsys)
    assert code == 2 and "no generator" in err and err.count("\n") == 1


BAD = [
    (["--eps", "-1/255"], "eps"), (["--eps", "abc"], "eps"), (["--eps", "2"], "eps"),
    (["--eps", ","], "eps"), (["--method", "pgd"], "unknown method"),
    (["--method", "foolbox:NoSuchAttack"], "foolbox attack"), (["--method", ""], "method"),
    (["--population", "all"], "population"), (["--n", "0"], "--n"), (["--steps", "0"], "steps"),
    (["--mode", "train"], "mode"), (["--foolbox-kwargs", "[1]"], "json"),
    (["--pixel-range", "1"], "pixel-range"), (["--format", "onnx"], "format"),
    (["--arch", "dcgan"], "foreign formats only"),
    (["--min-eps", "--method", "foolbox:FGSM"], "min-eps"),
    (["--step-size", "x"], "eps"),
]


@pytest.mark.parametrize("argv,word", BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_invocations_get_one_line_and_exit_2(ckpts, capsys, argv, word):
    code, out, err = _run(["attack", ckpts[0], "--n", "4", "--no-progress", *argv], capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert word.lower() in err.lower()
    assert out == ""


@pytest.mark.parametrize("name", ["missing.safetensors", "notes.txt"])
def test_missing_or_foreign_files_get_one_line(tmp_path, capsys, name):
    (tmp_path / "notes.txt").write_text("hello\n")
    code, _, err = _run(["attack", str(tmp_path / name), "--n", "4"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_runs_attack(ckpts, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    exe = str(Path(sys.executable).parent / "asgan-probe")
    res = subprocess.run([exe, "attack", ckpts[1], "--eps", "0,1/255", "--n", "8",
                          "--population", "real", "--no-progress"],
                         env=env, capture_output=True, text=True, check=True)
    assert len(json.loads(res.stdout)["records"]) == 2 and "clean" in res.stderr


def _shipped_ring8(arm: str = "asgan-eps0.5") -> str:
    """A shipped ring8 checkpoint of ``arm``, seed 0, found through the manifest."""
    text = (Path(__file__).resolve().parents[1] / "checkpoints" / "MANIFEST.json").read_text()
    found = sorted({p for p in _strings(json.loads(text)) if f"/ring8/{arm}/seed0/" in p
                    and p.endswith(".safetensors")})
    assert found, f"no shipped ring8 {arm} seed-0 checkpoint in checkpoints/MANIFEST.json"
    return str(Path(__file__).resolve().parents[1] / found[-1])


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def test_a_ring8_checkpoint_takes_eps_in_a_modes_std(tmp_path, capsys):
    """Issue 24: ``--eps 0,0.5,1.5`` on a shipped ring8 checkpoint (eps unit: one std of a mode,
    0.01) attacks at 0, 0.005 and 0.015 in data units and labels eps in std everywhere."""
    path, out_json = _shipped_ring8(), tmp_path / "r8.json"
    _, err = _attack(capsys, path, "--eps", "0,0.5,1.5", "--n", "32", "--min-eps",
                     "--bisect-steps", "3", "--out", str(out_json))
    res = json.loads(out_json.read_text())
    recs = res["records"]
    assert res["eps"] == [0.0, 0.5, 1.5]
    assert {r["eps_unit"]["name"] for r in recs} == {"mode-std"}
    assert {r["eps_unit"]["scale"] for r in recs} == {0.01}
    assert [r["eps_label"] for r in recs if r["population"] == "real"] == [
        "0 std", "0.5 std", "1.5 std"]
    assert all(r["eps_255"] is None for r in recs)  # no grey levels for points
    # FGSM moves every coordinate by exactly eps std (ring8 points sit far inside the box);
    # the record's L-inf is in the same unit (float32 points: 0.005 to ~1e-7 absolute)
    for r in recs:
        assert r["mean_linf"] == pytest.approx(r["eps"], abs=1e-4)
    assert "0.5 std" in err and "1.5 std" in err and "/255" not in err
    assert "within 1.5 std" in err  # the minimal-eps line, in the same unit


def test_a_ring8_checkpoint_defaults_and_range(capsys):
    """No --eps: the std grid, not 0 ... 8/255 std; eps beyond a step of the whole plotting
    box (3 / 0.01 = 300 std) is a one-line error naming the unit."""
    path = _shipped_ring8("baseline")
    out, err = _attack(capsys, path, "--n", "8", "--population", "real")
    assert [r["eps"] for r in json.loads(out)["records"]] == [0.0, 0.25, 0.5, 1.0, 1.5]
    code, out, err = _run(["attack", path, "--eps", "0,400", "--n", "8", "--no-progress"],
                          capsys)
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert "outside [0, 300]" in err and "mode-std" in err


def test_a_pixel_checkpoint_still_labels_grey_levels(ckpts, capsys):
    out, err = _attack(capsys, ckpts[0], "--eps", "0,0.5/255,2/255", "--n", "8",
                       "--population", "real")
    recs = json.loads(out)["records"]
    assert [r["eps_255"] for r in recs] == pytest.approx([0, 0.5, 2])
    assert [r["eps_label"] for r in recs] == ["0/255", "0.5/255", "2/255"]
    assert {r["eps_unit"]["name"] for r in recs} == {"pixel"}
    assert "0.5/255" in err and " std" not in err
    code, _, err = _run(["attack", ckpts[0], "--eps", "1.5", "--n", "4", "--no-progress"],
                        capsys)
    assert code == 2 and "outside [0, 1]" in err and "pixel" in err
