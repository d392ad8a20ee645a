"""Data-parallel training (torchrun, gloo on CPU, 2 processes) against single-process runs.

Two real launches: ``asgan-train --nproc 2`` end to end, and this file run by torchrun as a
worker script that trains several variants in one process group (cheaper than a launch each).
Nets without BatchNorm must follow the single-process run up to float round-off; BatchNorm
nets must not (per-rank statistics) unless ``sync_bn`` is on. The in-process tests show why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainers import load_checkpoint, make_config, train
from trainers.checkpoint import list_snapshots, read_checkpoint
from trainers.distributed import Dist, SyncBatchNorm, exit_worker, launch, strip_nproc

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_MLP = dict(data="ring8", arch="mlp", width=16, z_dim=2, batch_size=32, steps=3,
                lr_g=1e-3, lr_d=1e-3, eps=2 / 255, log_every=1, sample_every=0,
                snapshot_every=1, tensorboard=False)
TINY_DCGAN = dict(data="mnist10k", arch="dcgan", width=4, z_dim=8, batch_size=8, steps=2,
                  log_every=1, sample_every=0, snapshot_every=1, tensorboard=False)
# name -> (config overrides, does a 2-process run follow the single-process one?)
VARIANTS = {
    "mlp-gaussian-real": (dict(TINY_MLP, trainer="asgan", perturbation="gaussian",
                               second_step="real"), True),
    "mlp-eval-attack": (dict(TINY_MLP, trainer="asgan", attack_mode="eval"), True),
    "dcgan-bn": (dict(TINY_DCGAN, trainer="asgan"), False),
    "dcgan-sync-bn-r1": (dict(TINY_DCGAN, trainer="asgan", sync_bn=True, r1_gamma=1.0), True),
    "dcgan-sn-baseline": (dict(TINY_DCGAN, trainer="baseline", d_spectral_norm=True,
                               sync_bn=True), True),
}
RESUME = dict(TINY_MLP, trainer="asgan", steps=4, snapshot_every=2)


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _max_diff(run_a: Path, run_b: Path) -> tuple[float, int]:
    """Largest |a - b| over every tensor of every snapshot (weights and Adam state)."""
    snaps_a, snaps_b = list_snapshots(run_a), list_snapshots(run_b)
    assert [p.name for p in snaps_a] == [p.name for p in snaps_b]
    worst = 0.0
    for a, b in zip(snaps_a, snaps_b):
        ta, _ = read_checkpoint(a)
        tb, _ = read_checkpoint(b)
        assert ta.keys() == tb.keys()
        worst = max(worst, max((ta[k].double() - tb[k].double()).abs().max().item()
                               for k in ta if ta[k].is_floating_point()))
    return worst, len(snaps_a)


# ---------------------------------------------------------------- in-process: the arithmetic


def _two_rank_grads(D: nn.Module, x: torch.Tensor) -> tuple[list, list]:
    """Full-batch gradient of a mean loss, and the average of the two half-batch gradients
    (what DDP computes with per-rank BatchNorm statistics)."""
    def grads(xb):
        D.zero_grad()
        F.softplus(-D(xb)).mean().backward()
        return [p.grad.clone() for p in D.parameters()]

    full = grads(x)
    halves = [grads(x[:4]), grads(x[4:])]
    return full, [(a + b) / 2 for a, b in zip(*halves)]


@pytest.mark.parametrize("arch,equal", [("mlp", True), ("bn", False)],
                         ids=["mlp-no-batchnorm", "batchnorm"])
def test_shard_gradients_average_to_the_global_gradient_unless_batchnorm(arch, equal):
    torch.manual_seed(0)
    if arch == "mlp":
        D = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1),
                          nn.Flatten(0))
    else:
        D = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.LeakyReLU(0.2),
                          nn.Linear(8, 1), nn.Flatten(0))
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    full, averaged = _two_rank_grads(D, x)
    close = all(torch.allclose(a, b, atol=1e-7) for a, b in zip(full, averaged))
    # per-shard means averaged over equal shards = the global mean; BatchNorm's statistics
    # of a half batch are not those of the whole batch, so its gradients differ
    assert close is equal


def test_sync_batchnorm_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    sync = SyncBatchNorm(3)
    sync.load_state_dict(bn.state_dict())
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(bn(x), sync(x))
    assert torch.equal(bn.running_var, sync.running_var)
    assert sync.state_dict().keys() == bn.state_dict().keys()


@pytest.mark.parametrize("rank,rows", [(0, [0, 1, 2]), (1, [3, 4, 5])], ids=["rank0", "rank1"])
def test_shard_takes_the_ranks_slice_of_the_global_batch(rank, rows):
    ctx = Dist(rank=rank, world=2)
    assert ctx.shard(torch.arange(6)).tolist() == rows
    assert Dist().shard(torch.arange(6)).tolist() == list(range(6))


@pytest.mark.parametrize("argv,expected", [
    (["--nproc", "2", "--out", "r"], ["--out", "r"]),
    (["--out", "r", "--nproc=4"], ["--out", "r"]),
    (["--preset", "smoke", "--nproc", "2", "--seed", "3"], ["--preset", "smoke", "--seed", "3"]),
], ids=["space", "equals", "middle"])
def test_strip_nproc(argv, expected):
    assert strip_nproc(argv) == expected


def test_launch_execs_torch_distributed_run(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execv", lambda exe, cmd: calls.append(cmd))
    launch(["--preset", "smoke", "--nproc", "3", "--out", "r"], 3)
    assert calls == [[sys.executable, "-m", "torch.distributed.run", "--standalone",
                      "--nproc-per-node=3", "-m", "trainers", "--preset", "smoke", "--out", "r"]]


EXIT_SCRIPT = """
import atexit, sys
import torch.distributed as dist
from trainers.distributed import exit_worker

dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
real_destroy = dist.destroy_process_group
dist.destroy_process_group = lambda: (print("left the group;", end=""), real_destroy())
atexit.register(lambda: print("finalized", flush=True))
print("result;", end="")  # block-buffered on a pipe: lost unless exit_worker flushes
exit_worker(3, agreed=True)
print("returned")
"""


def test_exit_worker_leaves_the_group_flushes_and_skips_finalization(tmp_path):
    """A worker's exit: barrier, destroy the group, flush, exit with the code, and no
    interpreter finalization (where gloo's teardown can abort a finished run)."""
    env = {k: v for k, v in _env().items() if k != "PYTHONUNBUFFERED"}  # stdout buffered
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(tmp_path / "store")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stdout == "result;left the group;"


# ---------------------------------------------------------------- two real processes (gloo)


CLI_RUN = dict(TINY_MLP, trainer="asgan", r1_gamma=1.0)


@pytest.fixture(scope="module")
def launches(tmp_path_factory) -> dict:
    """Both 2-process launches, started together (they overlap on a multi-core machine):
    ``asgan-train --nproc 2`` and torchrun running this file as the worker script."""
    cli_root = tmp_path_factory.mktemp("ddp-cli")
    worker_root = tmp_path_factory.mktemp("ddp-variants")
    args = [a for k, v in CLI_RUN.items() for a in ("--" + k.replace("_", "-"), str(v))]
    procs = {
        "cli": subprocess.Popen([str(BIN / "asgan-train"), "--nproc", "2", "--no-progress",
                                 "--out", str(cli_root / "ddp"), *args], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "worker": subprocess.Popen([sys.executable, "-m", "torch.distributed.run",
                                    "--standalone", "--nproc-per-node=2", __file__,
                                    str(worker_root)], env=_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True),
    }
    done = {name: (*proc.communicate(timeout=400), proc.returncode)
            for name, proc in procs.items()}
    return {"cli_root": cli_root, "worker_root": worker_root, **done}


def test_asgan_train_nproc_2_matches_one_process(launches, tmp_path):
    """asgan-train --nproc 2: one run directory written by rank 0, a loadable checkpoint,
    finite losses, and the weights and Adam state of a single-process run (mlp, AS-GAN + R1)."""
    stdout, stderr, code = launches["cli"]
    assert code == 0, stderr[-3000:]
    printed = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1 and json.loads(printed[0])["steps"] == 3  # rank 0 only
    root = launches["cli_root"]
    assert sorted(p.name for p in root.iterdir()) == ["ddp"]
    names = sorted(p.name for p in (root / "ddp").iterdir())
    assert names == [".lock", "ckpt-000001.safetensors", "ckpt-000002.safetensors",
                     "ckpt-000003.safetensors", "config.json", "samples", "stats.jsonl"]
    rows = [json.loads(line) for line in (root / "ddp" / "stats.jsonl").open()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(isinstance(v, float) and abs(v) < 1e6 for r in rows for v in r.values()
               if not isinstance(v, int))
    G, D, meta = load_checkpoint(root / "ddp" / "ckpt-000003.safetensors")
    assert meta["world_size"] == 2 and meta["step"] == 3

    train(make_config(None, CLI_RUN), tmp_path / "one", progress=False)
    worst, n = _max_diff(root / "ddp", tmp_path / "one")
    print(f"2 processes vs 1: max |diff| {worst:.2e} over {n} snapshots")
    assert worst < 1e-6


@pytest.fixture(scope="module")
def worker_runs(launches) -> Path:
    """Every variant trained by 2 torchrun workers running this file as a script."""
    _, stderr, code = launches["worker"]
    assert code == 0, stderr[-3000:]
    return launches["worker_root"]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_two_process_variants_against_one_process(worker_runs, tmp_path, name):
    over, follows = VARIANTS[name]
    train(make_config(None, over), tmp_path / name, progress=False)
    worst, n = _max_diff(worker_runs / name, tmp_path / name)
    print(f"{name}: 2 processes vs 1: max |diff| {worst:.2e} over {n} snapshots")
    if follows:
        assert worst < 1e-5
    else:  # per-rank BatchNorm statistics: a different (valid) update, not round-off
        assert worst > 1e-4


def test_two_processes_resume_like_one_long_run(worker_runs, tmp_path):
    """2 ranks trained to step 2, resumed to 4 (both ranks load rank 0's pick): the weights of
    one uninterrupted single-process run."""
    train(make_config(None, RESUME), tmp_path / "one", progress=False)
    worst, n = _max_diff(worker_runs / "resume", tmp_path / "one")
    assert n == 2 and worst < 1e-5


FAULT = dict(TINY_MLP, trainer="asgan", steps=6, snapshot_every=2, log_every=2)
POISON_STEP = 2  # iteration whose latents are NaN on rank 1 only


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_ranks_agree_on_a_non_finite_step_seen_by_one_rank(worker_runs, tmp_path, monkeypatch,
                                                           mode):
    """NaN on rank 1's shard only: DDP averages it into both ranks' gradients, so both stop
    at the same step naming the same snapshot (stop), or both skip it and end exactly where a
    single process skipping the same iteration ends (skip)."""
    ranks = [json.loads((worker_runs / f"nan-{mode}.rank{r}.json").read_text())
             for r in (0, 1)]
    if mode == "stop":  # (the names of the non-finite losses differ between the ranks)
        for r in ranks:
            assert "diverged" in r["error"] and f"at step {POISON_STEP + 1}" in r["error"]
            assert "last good snapshot" in r["error"] and "ckpt-000002.safetensors" in r["error"]
        return
    assert ranks[0] == ranks[1] == {"error": None}
    _poison(monkeypatch, rank=0)
    train(make_config(None, dict(FAULT, on_nonfinite="skip")), tmp_path / "one",
          progress=False)
    worst, _ = _max_diff(worker_runs / "nan-skip", tmp_path / "one")
    assert worst < 1e-5


def test_a_signal_on_one_rank_stops_both_at_the_same_step(worker_runs, tmp_path):
    """SIGTERM to rank 1 only, during iteration 3: both ranks stop after it, rank 0 writes
    ckpt-000003 (the current step, between two regular snapshots), and a 2-process resume
    ends where an uninterrupted single process does."""
    ranks = [json.loads((worker_runs / f"sigterm.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] == {"signum": int(signal.SIGTERM), "step": 3}
    assert (worker_runs / "sigterm" / "ckpt-000003.safetensors").exists()
    train(make_config(None, dict(FAULT, snapshot_every=4)), tmp_path / "one", progress=False)
    ta = read_checkpoint(worker_runs / "sigterm" / "ckpt-000006.safetensors")[0]
    tb = read_checkpoint(tmp_path / "one" / "ckpt-000006.safetensors")[0]
    assert max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta) < 1e-5


def _poison(monkeypatch, rank: int) -> None:
    """Latents of POISON_STEP become NaN on ``rank`` (for a single process: rank 0, all z)."""
    import trainers.loop as loop

    real = loop.latents

    def latents(cfg, n, *keys):
        z = real(cfg, n, *keys)
        mine = int(os.environ.get("RANK", "0")) == rank
        return z * float("nan") if keys == (POISON_STEP,) and mine else z

    monkeypatch.setattr(loop, "latents", latents)


def _worker(root: Path) -> None:
    """Under torchrun: train every variant (and a resumed run) in one process group, then the
    fault cases; each rank records how its fault runs ended."""
    import trainers.loop as loop
    from asgan_base.errors import UserError
    from trainers.faults import Interrupted

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    for name, (over, _) in VARIANTS.items():
        train(make_config(None, over), root / name, progress=False)
    train(make_config(None, dict(RESUME, steps=2)), root / "resume", progress=False)
    train(make_config(None, RESUME), root / "resume", resume=True, progress=False)

    real = loop.latents
    for mode in ("stop", "skip"):
        loop.latents = lambda cfg, n, *keys: (real(cfg, n, *keys) * float("nan")
                                              if keys == (POISON_STEP,) and rank == 1
                                              else real(cfg, n, *keys))
        try:
            train(make_config(None, dict(FAULT, on_nonfinite=mode)), root / f"nan-{mode}",
                  progress=False)
            result = {"error": None}
        except UserError as e:
            result = {"error": str(e)}
        (root / f"nan-{mode}.rank{rank}.json").write_text(json.dumps(result))

    def signal_rank1(cfg, n, *keys):
        if keys == (2,) and rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # lands during iteration 3
        return real(cfg, n, *keys)

    loop.latents = signal_rank1
    try:
        train(make_config(None, FAULT), root / "sigterm", progress=False)
        result = {"signum": None}
    except Interrupted as e:
        result = {"signum": int(e.signum), "step": e.step}
    (root / f"sigterm.rank{rank}.json").write_text(json.dumps(result))
    loop.latents = real
    train(make_config(None, FAULT), root / "sigterm", resume=True, progress=False)
    exit_worker(0, agreed=True)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
