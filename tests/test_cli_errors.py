"""Bad command lines for asgan-train and asgan-probe: one line on stderr, exit 2, no traceback.

Every invocation runs in-process through ``main(argv)`` (argparse errors exit via SystemExit);
``{tmp}`` is a scratch folder, ``{ckpt}`` a tiny valid checkpoint, ``{run}`` its run
directory, ``{file}`` a text file and ``{evil}`` a pickle whose unpickling would run code.
"""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from payload import Payload as _Payload

from probes.cli import main as probe_main
from tests.conftest import run_cli
from trainers import make_config, train
from trainers.cli import main as train_main

SMOKE = ["--preset", "smoke", "--out", "{tmp}/r"]

BAD_TRAIN = [
    ([], "--out"),
    (["--nproc", "0", *SMOKE], "--nproc"),
    (["--nproc", "-2", *SMOKE], "--nproc"),
    (["--nproc", "two", *SMOKE], "invalid int"),
    (["--nproc", "2", "--batch-size", "15", *SMOKE], "divisible"),
    (["--nproc", "2", "--data-root", "{tmp}", *SMOKE], "takes no data root"),  # preflight
    (["--on-nonfinite", "maybe", *SMOKE], "on_nonfinite"),
    (["--sync-bn", "perhaps", *SMOKE], "sync_bn"),
    (["--lr-g", "inf", *SMOKE], "finite"),
    (["--lr-d", "nan", *SMOKE], "finite"),
    (["--d-width", "0", *SMOKE], "d_width must be > 0"),
    (["--r1-gamma", "nan", *SMOKE], "finite"),
    (["--beta1", "1", *SMOKE], "beta1"),
    (["--steps", "1e3", *SMOKE], "steps"),
    (["--batch-size", "0", *SMOKE], "batch_size"),
    (["--width", "10000000", *SMOKE], "width"),
    (["--seed", "-1", *SMOKE], "seed"),
    (["--seed", "9" * 30, *SMOKE], "seed"),
    (["--resolution", "0", *SMOKE], "resolution"),
    (["--log-every", "0", *SMOKE], "log_every"),
    (["--keep-snapshots", "-1", *SMOKE], "keep_snapshots"),
    (["--eps", "2", *SMOKE], "eps"),
    (["--eps", "1/0", *SMOKE], "eps"),
    (["--device", "tpu", *SMOKE], "device"),
    (["--data", "nope", *SMOKE], "unknown dataset"),
    (["--data-root", "{tmp}", *SMOKE], "takes no data root"),
    (["--arch", "vit", *SMOKE], "arch"),
    (["--arch", "mlp", *SMOKE], "mlp expects points"),
    (["--resolution", "48", *SMOKE], "resolutions"),
    (["--z-dim", "0", *SMOKE], "z_dim"),
    (["--batch-size", "20000", *SMOKE], "fewer than batch_size"),
    (["--data", "imagefolder", "--data-root", "{tmp}", "--preset", "smoke", "--out",
      "{tmp}/r"], "no images"),
    (["--bogus", "1", *SMOKE], "unrecognized"),
    (["--preset", "smoke", "--out", "{file}"], "run directory"),
    (["--resume", "{file}"], "no such run"),
    (["--resume", "{tmp}"], "neither a readable config.json"),
    (["--resume", "{run}", "--preset", "smoke"], "drop --preset"),
    (["--resume", "{run}", "--eps", "3/255"], "cannot change eps"),
]

BAD_PROBE = [
    ([], "required"),
    (["nope"], "invalid choice"),
    (["info"], "required"),
    (["info", "{tmp}/missing.safetensors"], "not found"),
    (["info", "{tmp}"], "folder"),
    (["info", "{file}"], "not an asgan-probe checkpoint"),
    (["info", "{evil}"], "pickle"),
    (["info", "/dev/null"], "not a regular file"),
    (["info", "{ckpt}", "--out"], "expected one argument"),
    (["attack", "{ckpt}", "--eps", "abc"], "eps"),
    (["attack", "{ckpt}", "--eps", "-1/255"], "eps"),
    (["attack", "{ckpt}", "--method", "nope"], "method"),
    (["attack", "{ckpt}", "--format", "nope"], "invalid choice"),
    (["attack", "{ckpt}", "--steps", "x"], "invalid int"),
    (["attack", "{tmp}/missing.safetensors"], "not found"),
    (["gradients", "{ckpt}", "--population", "both"], "invalid choice"),
    (["report"], "required"),
    (["report", "{tmp}/missing", "--out", "{tmp}/rep"], "missing"),
    (["saliency", "{ckpt}"], "required"),
    (["coverage", "{tmp}/missing.safetensors"], "not found"),
    (["quality", "{ckpt}", "--n", "abc"], "invalid int"),
    (["evolution", "{tmp}/missing"], "missing"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    run = tmp / "run"
    ckpt = train(make_config(None, dict(data="ring8", arch="mlp", width=4, z_dim=2,
                                        batch_size=8, steps=1, sample_every=0,
                                        tensorboard=False)), run, progress=False)
    (tmp / "notes.txt").write_text("not a checkpoint\n")
    (tmp / "evil.pt").write_bytes(pickle.dumps(_Payload(tmp / "pwned")))
    scratch = tmp / "scratch"
    scratch.mkdir()
    return {"tmp": str(scratch), "ckpt": str(ckpt), "run": str(run),
            "file": str(tmp / "notes.txt"), "evil": str(tmp / "evil.pt"),
            "pwned": str(tmp / "pwned")}


@pytest.fixture(autouse=True)
def no_exec(monkeypatch):
    """A bad --nproc invocation must fail before launching: never replace pytest by torchrun."""
    def refuse(*args):
        raise AssertionError(f"os.execv called: {args}")

    monkeypatch.setattr(os, "execv", refuse)


def _check(main, argv, word, places, capsys):
    argv = [a.format(**places) for a in argv]
    code, _, err = run_cli(main, argv, capsys)
    assert code == 2, (argv, code, err[-500:])
    assert err.count("\n") == 1 and "Traceback" not in err, err[-1000:]
    assert word.lower() in err.lower(), err
    assert not os.path.exists(places["pwned"])


@pytest.mark.parametrize("argv,word", BAD_TRAIN, ids=[f"train-{i:02d}" for i in
                                                       range(len(BAD_TRAIN))])
def test_bad_asgan_train_invocations(places, capsys, argv, word):
    _check(train_main, argv, word, places, capsys)


@pytest.mark.parametrize("argv,word", BAD_PROBE, ids=[f"probe-{i:02d}" for i in
                                                       range(len(BAD_PROBE))])
def test_bad_asgan_probe_invocations(places, capsys, argv, word):
    _check(probe_main, argv, word, places, capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_cuda_without_gpu(places, capsys):
    _check(train_main, ["--device", "cuda", *SMOKE], "no CUDA device", places, capsys)


def test_count():
    assert len(BAD_TRAIN) + len(BAD_PROBE) >= 30
