"""CLIs: bad input gives one line and exit 2, never a traceback; good input writes JSON."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from payload import Payload as _Payload

from probes.cli import main as probe_main
from tests.conftest import run_cli
from trainers.cli import main as train_main

BAD_TRAIN = [
    (["--data", "nope", "--out", "{tmp}/r"], "unknown"),
    (["--data", "cifar10", "--data-root", "{tmp}/missing", "--out", "{tmp}/r"], "cifar-10"),
    (["--preset", "smoke", "--eps", "-1/255", "--out", "{tmp}/r"], "eps"),
    (["--preset", "smoke", "--steps", "0", "--out", "{tmp}/r"], "steps"),
    (["--preset", "smoke", "--steps", "-5", "--out", "{tmp}/r"], "steps"),
    (["--preset", "smoke", "--trainer", "wgan", "--out", "{tmp}/r"], "trainer"),
    (["--preset", "nope", "--out", "{tmp}/r"], "preset"),
    (["--preset", "smoke"], "--out"),
    (["--resume", "{tmp}/missing"], "no such run"),
    (["--preset", "smoke", "--bogus", "1", "--out", "{tmp}/r"], "unrecognized"),
    (["--preset", "smoke", "--arch", "vit", "--out", "{tmp}/r"], "arch"),
]


@pytest.mark.parametrize("argv,word", BAD_TRAIN, ids=[f"train-{i}" for i in range(len(BAD_TRAIN))])
def test_bad_train_invocations(tmp_path, capsys, argv, word):
    code, _, err = run_cli(train_main, [a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert word.lower() in err.lower()


def test_bad_checkpoints_for_probe(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    for path in (text, evil, tmp_path / "missing.safetensors"):
        code, _, err = run_cli(probe_main, ["info", str(path)], capsys)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not marker.exists()


def test_dry_run_prints_resolved_config(capsys):
    code, out, _ = run_cli(train_main, ["--preset", "ring8-mlp", "--trainer", "asgan",
                                     "--eps", "1.5", "--dry-run"], capsys)
    cfg = json.loads(out)  # ring8: eps in a mode's std, so 1.5 (beyond pixels' 1) is fine
    assert code == 0 and cfg["eps"] == 1.5 and cfg["data"] == "ring8"
    assert cfg["eps_unit"] == "auto"


def test_train_help_gives_every_option_its_field_help_and_default(capsys):
    # the help text lives once, in TrainConfig's field metadata; --help shows it for every
    # config option (units included) with the field's default
    import dataclasses
    import re

    from trainers.cli import build_parser
    from trainers.config import TrainConfig, config_fields
    from trainers.data import dataset_names

    with pytest.raises(SystemExit) as exit_:
        train_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words
    assert exit_.value.code == 0
    actions = {a.dest: a for a in build_parser()._actions}
    meta = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(TrainConfig)}
    for name in config_fields():
        text = " ".join(meta[name].split())
        assert len(text) > 5, f"{name} has no help text"
        assert actions[name].help.startswith(meta[name])
        option = "--" + name.replace("_", "-")
        assert re.search(rf"{re.escape(option)} [A-Z]+ {re.escape(text)} \(default: ", out), \
            f"{option}'s help is not shown"
    assert all(a.help for a in build_parser()._actions), "an option without help"
    assert "(default: 1/255)" in out and "(default: none)" in out
    assert "pixel units" in meta["eps"] and "mode-std" in meta["eps"]  # eps states its units
    assert set(dataset_names()) <= set(re.findall(r"[a-z0-9-]+", meta["data"]))


def test_train_resume_and_info_through_the_console_scripts(tmp_path):
    """The installed entry points, as a user runs them (subprocess, no traceback)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    bindir = Path(sys.executable).parent
    run = tmp_path / "run"
    base = [str(bindir / "asgan-train"), "--no-progress"]
    subprocess.run(base + ["--preset", "smoke", "--steps", "10", "--out", str(run)], check=True,
                   env=env, capture_output=True)
    res = subprocess.run(base + ["--resume", str(run), "--steps", "20"], check=True, env=env,
                         capture_output=True, text=True)
    assert json.loads(res.stdout)["checkpoint"].endswith("ckpt-000020.safetensors")
    res = subprocess.run([str(bindir / "asgan-probe"), "info",
                          str(run / "ckpt-000020.safetensors")],
                         check=True, env=env, capture_output=True, text=True)
    assert json.loads(res.stdout)["step"] == 20
    again = subprocess.run(base + ["--preset", "smoke", "--out", str(run)], env=env,
                           capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # never overwrite a run
    bad = subprocess.run(base + ["--resume", str(run), "--eps", "3/255"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot change eps" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_report_writes_markdown_and_figures(tmp_path, capsys):
    runs = []
    for trainer in ("baseline", "asgan"):
        run = tmp_path / trainer
        assert train_main(["--preset", "smoke", "--trainer", trainer, "--out", str(run),
                           "--no-progress"]) == 0
        runs.append(str(run))
    capsys.readouterr()
    assert probe_main(["report", *runs, "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    # eps in the unit the run trained in (pixel units: grey levels)
    assert "| asgan | asgan | 1/255 |" in md and "| baseline | baseline | - |" in md
    for png in ("training-curves.png", "samples.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
