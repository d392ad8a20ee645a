"""``asgan-probe gradients | saliency | evolution`` end to end on two smoke-preset runs
(baseline and AS-GAN, trained here), plus their one-line user errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from probes.cli import main
from trainers import make_config, train

PIXELS = 28 * 28  # mnist10k, the smoke preset's data


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Two 20-step smoke runs with snapshots at steps 10 and 20."""
    root = tmp_path_factory.mktemp("gradient-cli")
    out = {}
    for trainer in ("baseline", "asgan"):
        ckpt = train(make_config("smoke", {"trainer": trainer, "steps": 20}), root / trainer,
                     progress=False)
        out[trainer] = ckpt
    return out


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _png(path, min_side=250):
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert min(im.size) >= min_side, im.size  # 150 dpi, inches wide: paper size
        return im.size


def test_gradients_two_checkpoints_json_and_figures(runs, tmp_path, capsys):
    out = tmp_path / "grads.json"
    argv = ["gradients", runs["baseline"], runs["asgan"], "--population", "real", "--n", 64,
            "--boot", 200, "--out", out, "--hist", tmp_path / "hist.png", "--maps",
            tmp_path / "maps.png", "--n-maps", 6, "--random-reference"]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    assert stdout == ""  # JSON went to --out, the log to stderr
    assert "hoyer" in err and "wrote" in err
    res = json.loads(out.read_text())
    assert [c["trainer"] for c in res["checkpoints"]] == ["baseline", "asgan", None]
    # the envelope's inputs are what was given (the random-init reference is no input)
    assert res["inputs"] == [str(runs["baseline"]), str(runs["asgan"])]
    assert res["checkpoints"][2]["reference"] == "random-init D"
    for c in res["checkpoints"]:
        # BN D: per-sample, against a reference group of one training batch
        assert c["mode"] == "frozen" and c["reference_n"] == 16 and c["batch_size"] == 256
        m = c["measures"]
        assert m["hoyer"]["n"] == 64 and m["hoyer"]["ci_low"] <= m["hoyer"]["mean"]
        assert 0 < m["fg_share"]["mean"] < 1 and "edge_corr" in m and "gini_hr" in m
        h = c["histogram"]
        assert sum(h["counts"]) + h["under"] + h["over"] == 64 * PIXELS
    assert len(res["histogram"]["edges"]) == 102
    assert {"gini_hr", "fg_share", "edge_corr"} <= set(res["definitions"])
    assert "edge_corr" in res["confound_checks"] and "fg_share" in res["evidence"]
    assert len(res["comparisons"]) == 2 and res["comparisons"][0]["paired"]
    assert 0.7 < res["hf_reference"] < 0.9
    _png(tmp_path / "hist.png")
    w, h = _png(tmp_path / "maps.png")
    assert w > h  # 6 columns, 4 rows (inputs + three Ds)
    # same seed, same JSON (figures elsewhere)
    again = tmp_path / "again.json"
    argv2 = [again if a == out else tmp_path / f"2-{a.name}" if str(a).endswith(".png") else a
             for a in argv]
    assert _run(argv2, capsys)[0] == 0
    assert again.read_text() == out.read_text()


def test_gradients_on_fakes_of_each_generator(runs, tmp_path, capsys):
    out = tmp_path / "fake.json"
    code, stdout, err = _run(["gradients", runs["baseline"], runs["asgan"], "--population",
                              "fake", "--wrt", "g_loss", "--mode", "eval", "--n", 32,
                              "--boot", 0, "--maps", tmp_path / "maps.png", "--out", out],
                             capsys)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["wrt"] == "g_loss" and res["comparisons"] == []  # different inputs: no pairing
    assert all(c["mode"] == "eval" and c["batch_size"] == 256 for c in res["checkpoints"])
    _, h = _png(tmp_path / "maps.png")
    assert h > 400  # four rows: each G's fakes above its D's gradients


def test_saliency_figure_and_json(runs, tmp_path, capsys):
    png, js = tmp_path / "sal.png", tmp_path / "sal.json"
    code, _, err = _run(["saliency", runs["asgan"], "--method", "ig", "--n", 16, "--steps", 16,
                         "--out", png, "--json", js], capsys)
    assert code == 0, err
    res = json.loads(js.read_text())
    assert res["methods"][0]["method"] == "ig" and res["methods"][0]["mode"] == "frozen"
    assert res["methods"][0]["params"] == {"baseline": "black", "steps": 16}
    assert "ig_abs_delta_mean" in res["methods"][0]
    _png(png)
    code, stdout, err = _run(["saliency", runs["baseline"], "--method", "all", "--n", 4,
                              "--steps", 4, "--nt-samples", 2, "--out", png], capsys)
    assert code == 0, err
    assert [m["method"] for m in json.loads(stdout)["methods"]] == [
        "saliency", "ig", "smoothgrad", "inputxgrad", "guided"]


def test_evolution_two_runs(runs, tmp_path, capsys):
    out, png = tmp_path / "evo.json", tmp_path / "evo.png"
    code, _, err = _run(["evolution", runs["baseline"].parent, runs["asgan"].parent, "--n", 32,
                         "--boot", 100, "--out", out, "--plot", png], capsys)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert [r["trainer"] for r in res["runs"]] == ["baseline", "asgan"]
    for r in res["runs"]:
        assert [s["step"] for s in r["snapshots"]] == [10, 20]
        assert all(s["measures"]["l1"]["n"] == 32 and s["mode"] == "frozen"
                   for s in r["snapshots"])
    _png(png)


USER_ERRORS = [
    (["gradients", "{tmp}/missing.safetensors"], "not found"),
    (["gradients", "{ckpt}", "--n", "0"], "--n"),
    (["gradients", "{ckpt}", "--n", "20000"], "lower --n"),
    (["saliency", "{ckpt}", "--method", "lime", "--out", "{tmp}/s.png"], "unknown --method"),
    (["saliency", "{ckpt}"], "--out"),
    (["evolution", "{tmp}"], "no ckpt-"),
    (["gradients", "{ckpt}", "--population", "both"], "invalid choice"),
]


@pytest.mark.parametrize("argv,word", USER_ERRORS, ids=[f"{a[0]}-{w}" for a, w in USER_ERRORS])
def test_user_errors_are_one_line(runs, tmp_path, capsys, argv, word):
    argv = [a.format(tmp=tmp_path, ckpt=runs["asgan"]) for a in argv]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert word in err


def test_evolution_defaults_and_envelope_are_the_library_s():
    # the CLI reads its defaults from probes.measures.evolution and writes the same envelope a
    # Python user gets from evolution_record
    import inspect

    from probes.cli import build_parser
    from probes.measures import evolution as measure

    args = build_parser().parse_args(["evolution", "runs/x"])
    lib = inspect.signature(measure.evolution).parameters
    assert args.n == lib["n"].default == measure.N and args.boot == lib["n_boot"].default
    rec = measure.evolution_record([], population="fake", wrt="g_loss", n=8, seed=3, n_boot=0)
    assert rec["verb"] == "evolution" and rec["runs"] == [] and "hoyer" in rec["definitions"]
    assert (rec["population"], rec["wrt"], rec["n"], rec["seed"]) == ("fake", "g_loss", 8, 3)
