"""Faults: kills at random moments, signals, full or read-only disks, divergence.

The kill trials run the CLI in child processes and SIGKILL them at seeded random moments
(some mid-snapshot-write), resume, and require the final weights and Adam state of an
uninterrupted run *bit for bit*, and no partial file left. Forked children (cheap: torch is
already imported) are throttled to at most 500 iterations/s so a kill always lands mid-run;
the throttle sleeps and changes no number. SIGTERM/SIGINT use the real console script.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import trainers.loop as loop
from asgan_base.errors import UserError
from asgan_base.lock import LOCK_NAME, check_free
from trainers import load_checkpoint, make_config, train
from trainers.checkpoint import list_snapshots, read_checkpoint
from trainers.cli import main as train_main
from trainers.faults import SkipNonFinite, nonfinite_names

BIN = Path(sys.executable).parent
R = 60  # iterations of a forked kill trial (throttled: a kill lands by step ~40)
R_CONSOLE = 600  # iterations of a console-script trial (not throttled: room for a slow poll)
FAULT_CFG = dict(data="ring8", arch="mlp", width=8, z_dim=2, batch_size=32, steps=R,
                 trainer="asgan", eps=2 / 255, lr_g=1e-3, lr_d=1e-3, log_every=4,
                 sample_every=0, snapshot_every=2, keep_snapshots=3, tensorboard=False)


def _argv(over: dict) -> list[str]:
    return [a for k, v in over.items() for a in ("--" + k.replace("_", "-"), str(v))]


def _newest(run: Path) -> int:
    snaps = list_snapshots(run)
    return int(snaps[-1].stem[5:]) if snaps else 0


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(steps)``: the uninterrupted run's final tensors (weights + Adam state)
    and its stats rows without the wall-clock column (cached per length)."""
    cache = {}

    def get(steps: int) -> tuple[dict, list[int]]:
        if steps not in cache:
            run = tmp_path_factory.mktemp("reference") / "run"
            last = train(make_config(None, dict(FAULT_CFG, steps=steps, snapshot_every=50)), run,
                         progress=False)
            cache[steps] = _tensors(last), _stats(run)
        return cache[steps]

    return get


def _child(argv: list[str], stall_at_write: int = 0, marker: str = "",
           stderr: str = os.devnull, signal_at: tuple[int, int] | None = None,
           gate: tuple[int, str, str] | None = None) -> None:
    """Forked child: the CLI, throttled; optionally stalls inside the n-th snapshot write
    after truncating the temp file to half (a write cut off mid-way), or sends itself signal
    ``sig`` while drawing the latents of iteration ``step`` (``signal_at=(step, sig)``): a
    signal that lands mid-iteration at a known point, however starved the parent is. With
    ``gate=(step, ready, go)`` it touches ``ready`` at iteration ``step`` and waits there
    until the file ``go`` exists: a run that is known to be mid-training, holding its lock."""
    # the parent's sys.stdout/err may be pytest's in-memory capture: use real files
    sys.stdout, sys.stderr = open(os.devnull, "w"), open(stderr, "w", buffering=1)  # noqa: SIM115
    if signal_at is not None:
        # a pytest started in the background by a non-interactive shell (`pytest &`, nohup)
        # inherits SIGINT ignored, and the trainer rightly leaves an ignored signal ignored:
        # give the child Python's default so the test measures the trainer, not the shell
        signal.signal(signal_at[1], signal.default_int_handler
                      if signal_at[1] == signal.SIGINT else signal.SIG_DFL)
    real_latents, real_fsync, writes = loop.latents, os.fsync, [0]

    def slow_latents(cfg, n, *keys):
        time.sleep(0.004)  # <= 250 it/s whatever the machine: kills land before step R
        if signal_at is not None and keys == (signal_at[0],):
            os.kill(os.getpid(), signal_at[1])
        if gate is not None and keys == (gate[0],):
            Path(gate[1]).touch()
            deadline = time.monotonic() + 120
            while not Path(gate[2]).exists() and time.monotonic() < deadline:
                time.sleep(0.005)
        return real_latents(cfg, n, *keys)

    def stalling_fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if ".tmp-" in name and name.endswith(".safetensors"):
            writes[0] += 1
            if writes[0] == stall_at_write:
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                Path(marker).touch()
                time.sleep(600)
        real_fsync(fd)

    loop.latents = slow_latents
    if stall_at_write:
        os.fsync = stalling_fsync
    code = train_main(argv)
    sys.stderr.flush()
    os._exit(code)


def _run_and_kill(argv: list[str], ready, delay: float, *, stall_at_write: int = 0,
                  marker: str = "") -> int | None:
    """Fork the CLI, wait until ``ready()``, sleep ``delay`` s, SIGKILL. Returns the exit code
    (``-9`` when killed, 0 when it finished first)."""
    proc = multiprocessing.get_context("fork").Process(
        target=_child, args=(argv, stall_at_write, marker))
    proc.start()
    deadline = time.monotonic() + 120
    while proc.is_alive() and not ready() and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    return proc.exitcode


def _resume_and_check(run: Path, reference, capsys, steps: int = R, *,
                      whole_rows: bool = False) -> None:
    """Resume in-process through the CLI; the final state must equal the reference."""
    assert train_main(["--resume", str(run), "--no-progress", "--snapshot-every", "50"]) == 0
    capsys.readouterr()
    _check_as_uninterrupted(run, reference, steps, whole_rows=whole_rows)


def _check_as_uninterrupted(run: Path, reference, steps: int = R, *,
                            whole_rows: bool = False) -> None:
    """The final snapshot of ``run`` (weights + Adam state) equals an uninterrupted run's, no
    partial file is left, and ``stats.jsonl`` logs the same steps, each once. With
    ``whole_rows`` every value but the wall-clock column must be equal too: true when the
    run was resumed at a log boundary (a resume from a step inside a log window starts a
    fresh window: that row averages only the iterations the resumed run made)."""
    ref_tensors, ref_rows = reference(steps)
    final = _tensors(run / f"ckpt-{steps:06d}.safetensors")
    assert final.keys() == ref_tensors.keys()
    unequal = [k for k in final if not torch.equal(final[k], ref_tensors[k])]
    assert unequal == [], f"resumed run differs from the uninterrupted one in {unequal[:5]}"
    assert not list(run.glob(".tmp-*")), "partial files left after resume"
    # rows logged after the last snapshot were dropped, then redone: none twice, none missing
    rows = _stats(run)
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows]
    if whole_rows:
        assert rows == ref_rows


# seed -> number of consecutive kills before the final resume
KILL_TRIALS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 3}


@pytest.mark.parametrize("seed", sorted(KILL_TRIALS), ids=[f"seed{s}" for s in KILL_TRIALS])
def test_sigkill_at_random_moments_then_resume_is_exact(tmp_path, reference, capsys, seed):
    rnd = random.Random(seed)
    run = tmp_path / "run"
    argv = ["--no-progress", "--out", str(run), *_argv(FAULT_CFG)]
    history = []
    for _ in range(KILL_TRIALS[seed]):
        before = _newest(run)
        code = _run_and_kill(argv, lambda before=before: _newest(run) > before,
                             delay=rnd.uniform(0, 0.25))
        history.append((code, _newest(run), len(list(run.glob(".tmp-*")))))
        # whatever the moment, every file named like a snapshot is a complete one
        for snap in list_snapshots(run):
            load_checkpoint(snap)
        argv = ["--no-progress", "--resume", str(run)]
    assert any(code == -signal.SIGKILL for code, _, _ in history)
    _resume_and_check(run, reference, capsys)
    print(f"seed {seed}: (exit code, newest snapshot, .tmp files) after each kill: {history}")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_sigkill_during_a_snapshot_write_leaves_only_complete_snapshots(tmp_path, reference,
                                                                       capsys):
    run, marker = tmp_path / "run", tmp_path / "stalled"
    code = _run_and_kill(["--no-progress", "--out", str(run), *_argv(FAULT_CFG)],
                         marker.exists, 0.0, stall_at_write=3, marker=str(marker))
    assert code == -signal.SIGKILL
    partial = list(run.glob(".tmp-*.safetensors"))
    assert len(partial) == 1, "the kill should have cut a snapshot write in half"
    with pytest.raises(UserError):  # the half-written file is not a checkpoint ...
        load_checkpoint(partial[0])
    assert [p.name for p in list_snapshots(run)] == ["ckpt-000002.safetensors",
                                                     "ckpt-000004.safetensors"]  # ... nor listed
    _resume_and_check(run, reference, capsys)  # start-up removes it


@pytest.mark.parametrize("sig,how", [(signal.SIGTERM, "console-script"),
                                     (signal.SIGINT, "forked")], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_write_a_final_snapshot_and_exit_cleanly(tmp_path, reference, capsys,
                                                                    sig, how):
    """The signal lands at a seeded point; the run finishes its iteration, writes a snapshot
    of that step (not necessarily a multiple of snapshot_every), says so in one line and exits
    128 + signum. SIGTERM goes to the real console script (a fresh interpreter)."""
    run, errfile = tmp_path / "run", tmp_path / "stderr"
    target = random.Random(int(sig)).randrange(2, 12)
    if how == "console-script":
        steps = R_CONSOLE
        proc = subprocess.Popen([str(BIN / "asgan-train"), "--no-progress", "--out", str(run),
                                 *_argv(dict(FAULT_CFG, steps=steps))],
                                env=dict(os.environ, OMP_NUM_THREADS="1"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        alive = lambda: proc.poll() is None  # noqa: E731
    else:
        steps = R
        proc = multiprocessing.get_context("fork").Process(
            target=_child, args=(["--no-progress", "--out", str(run), *_argv(FAULT_CFG)],),
            kwargs={"stderr": str(errfile), "signal_at": (target, sig)})
        proc.start()
    if how == "console-script":  # the parent signals a fresh interpreter from outside
        deadline = time.monotonic() + 120
        while alive() and _newest(run) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=120)
        code = proc.returncode
        assert out == ""
    else:
        proc.join(120)
        code, err = proc.exitcode, errfile.read_text()
    assert code == 128 + sig, err[-2000:]
    assert err.count("\n") == 1 and "Traceback" not in err
    step = _newest(run)
    if how == "forked":  # signalled while drawing iteration `target`'s latents: it completes
        assert step == target + 1
    assert f"interrupted by {sig.name} at step {step};" in err and "--resume" in err
    assert load_checkpoint(run / f"ckpt-{step:06d}.safetensors")[2]["step"] == step
    assert not list(run.glob(".tmp-*"))
    _resume_and_check(run, reference, capsys, steps=steps)


# ---------------------------------------------------------------- full or read-only disks

SMALL = dict(FAULT_CFG, steps=6, keep_snapshots=0)


def _fail_on(monkeypatch, errno_: int, *, after: int, name: str = "os.fsync") -> None:
    """Make the ``after``-th and later snapshot writes fail with ``errno_``."""
    seen = [0]
    if name == "os.fsync":
        real = os.fsync

        def fsync(fd):
            path = os.readlink(f"/proc/self/fd/{fd}") if Path("/proc/self/fd").is_dir() else ""
            if path.endswith(".safetensors"):
                seen[0] += 1
                if seen[0] >= after:
                    raise OSError(errno_, os.strerror(errno_))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    else:
        real = tempfile.mkstemp

        def mkstemp(*args, **kwargs):
            if kwargs.get("suffix") == ".safetensors":
                seen[0] += 1
                if seen[0] >= after:
                    raise OSError(errno_, os.strerror(errno_))
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
@pytest.mark.parametrize("errno_,where,word", [
    (errno.ENOSPC, "os.fsync", "disk is full"),
    (errno.EDQUOT, "os.fsync", "quota"),
    (errno.EROFS, "tempfile.mkstemp", "read-only"),
    (errno.EIO, "os.fsync", "Input/output error"),
], ids=["ENOSPC", "EDQUOT", "EROFS", "EIO"])
def test_failed_snapshot_write_is_one_line_and_keeps_the_previous(tmp_path, capsys, monkeypatch,
                                                                  errno_, where, word):
    run = tmp_path / "run"
    _fail_on(monkeypatch, errno_, after=2, name=where)
    code = train_main(["--no-progress", "--out", str(run), *_argv(SMALL)])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and word in err, err
    assert "ckpt-000004.safetensors" in err and "earlier snapshots are untouched" in err
    assert [p.name for p in list_snapshots(run)] == ["ckpt-000002.safetensors"]
    load_checkpoint(run / "ckpt-000002.safetensors")
    assert not list(run.glob(".tmp-*"))


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs mounts are Linux-only")
def test_real_full_and_read_only_tmpfs(tmp_path, capsys):
    """Where this process may mount (root in a container): a 48 kB tmpfs fills up for real,
    then is remounted read-only; both give one line, exit 2, and keep every snapshot."""
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "48k"):
        pytest.skip("cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN)")
    try:
        run = mnt / "run"
        code = train_main(["--no-progress", "--out", str(run),
                           *_argv(dict(FAULT_CFG, steps=40, keep_snapshots=0))])
        _, err = capsys.readouterr()
        assert code == 2 and err.count("\n") == 1 and "disk is full" in err, err
        snaps = list_snapshots(run)
        assert snaps and all(load_checkpoint(s) for s in snaps)
        assert not list(run.glob(".tmp-*"))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        code = train_main(["--no-progress", "--resume", str(run), "--steps", "60"])
        _, err = capsys.readouterr()
        assert code == 2 and err.count("\n") == 1 and "read-only" in err, err
        assert list_snapshots(run) == snaps
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_unwritable_out_is_a_user_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run directory should be")
    code = train_main(["--no-progress", "--out", str(blocker), *_argv(SMALL)])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "run directory" in err


# ---------------------------------------------------------------- divergence guard

TINY_BN = dict(data="mnist10k", arch="dcgan", width=4, z_dim=8, batch_size=8, steps=7,
               trainer="asgan", log_every=2, sample_every=0, snapshot_every=1,
               tensorboard=False)


def _poison_latents(monkeypatch, at_step: int) -> None:
    """Latents of iteration ``at_step`` become NaN: G(z), D's fake logits and every loss
    and gradient of that iteration are NaN (a test hook for a divergence)."""
    real = loop.latents

    def latents(cfg, n, *keys):
        z = real(cfg, n, *keys)
        return z * float("nan") if keys == (at_step,) else z

    monkeypatch.setattr(loop, "latents", latents)


def test_stop_names_the_last_good_snapshot_and_writes_no_bad_one(tmp_path, monkeypatch):
    _poison_latents(monkeypatch, at_step=4)  # the 5th iteration
    with pytest.raises(UserError) as e:
        train(make_config(None, TINY_BN), tmp_path / "run", progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "diverged" in msg and "at step 5" in msg
    assert "ckpt-000004.safetensors" in msg and "--on-nonfinite skip" in msg
    snaps = list_snapshots(tmp_path / "run")
    assert snaps[-1].name == "ckpt-000004.safetensors"
    G, D, _ = load_checkpoint(snaps[-1])
    assert nonfinite_names(G=G, D=D) == []


def test_stop_on_a_huge_learning_rate(tmp_path, capsys):
    code = train_main(["--no-progress", "--out", str(tmp_path / "run"),
                       *_argv(dict(FAULT_CFG, steps=12, lr_d=1e30, snapshot_every=4))])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "diverged" in err and "none yet" in err


def test_skip_leaves_the_iteration_without_trace(tmp_path, monkeypatch):
    """on_nonfinite=skip: the poisoned iteration changes no weight, Adam state or BatchNorm
    buffer; the run goes on, logs how many steps it skipped, and ends finite."""
    _poison_latents(monkeypatch, at_step=4)
    run = tmp_path / "run"
    last = train(make_config(None, dict(TINY_BN, on_nonfinite="skip")), run, progress=False)
    before = _tensors(run / "ckpt-000004.safetensors")
    after = _tensors(run / "ckpt-000005.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not all(torch.equal(after[k], _tensors(last)[k]) for k in after)  # then it trains on
    rows = [json.loads(line) for line in (run / "stats.jsonl").open()]
    assert [r["skipped"] for r in rows] == [0, 0, 3, 0]  # D step 1, D step 2, G step
    assert all(r["loss_g"] is not None for r in rows)  # means over the finite iterations
    G, D, _ = load_checkpoint(last)
    assert nonfinite_names(G=G, D=D) == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None], ids=["nan", "inf", "finite"])
def test_skip_non_finite_optimizer(bad):
    w = torch.nn.Parameter(torch.ones(3))
    opt = SkipNonFinite(torch.optim.SGD([w], lr=1.0))
    w.grad = torch.tensor([1.0, 1.0, 1.0 if bad is None else bad])
    opt.step()
    assert opt.skipped == (0 if bad is None else 1)
    assert torch.equal(w.detach(), torch.zeros(3) if bad is None else torch.ones(3))


def test_skip_gives_up_after_a_run_of_bad_iterations(tmp_path, monkeypatch):
    real = loop.latents
    monkeypatch.setattr(loop, "latents",
                        lambda cfg, n, *keys: real(cfg, n, *keys) * float("nan"))
    monkeypatch.setattr(loop, "SKIP_LIMIT", 3)
    with pytest.raises(UserError, match="3 iterations in a row"):
        train(make_config(None, dict(TINY_BN, on_nonfinite="skip", steps=10)),
              tmp_path / "run", progress=False)


# ---------------------------------------------------------------- stats.jsonl: append-only

STATS_CFG = dict(FAULT_CFG, steps=10, log_every=2, snapshot_every=4, keep_snapshots=0)
VOLATILE = {"images_per_s"}  # wall-clock: the only column two identical runs may differ in


def _stats(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE}
            for line in (run / "stats.jsonl").read_text().splitlines()]


TRUNCATE = [  # id, file content, step, kept lines (indices into LINES)
    ("fresh-run", "a b c", 0, ""),
    ("keeps-up-to-step", "a b c", 4, "a b"),
    ("torn-last-line", "a b c torn", 6, "a b c"),
    ("garbage-line", "a junk b", 6, "a b"),
    ("not-a-row", "a list nostep boolstep b", 6, "a b"),
    ("missing-file", None, 6, ""),
]
LINES = {"a": '{"step": 2, "loss_d": 1.5}\n', "b": '{"step": 4, "loss_d": 1.25}\n',
         "c": '{"step": 6, "loss_d": 1.0}\n', "torn": '{"step": 8, "loss',
         "junk": "}{\n", "list": "[1, 2]\n", "nostep": '{"loss_d": 1}\n',
         "boolstep": '{"step": true}\n'}


@pytest.mark.parametrize("content,step,kept", [r[1:] for r in TRUNCATE],
                         ids=[r[0] for r in TRUNCATE])
def test_truncate_stats_keeps_complete_rows_up_to_the_step(tmp_path, content, step, kept):
    path = tmp_path / "stats.jsonl"
    if content is not None:
        path.write_text("".join(LINES[k] for k in content.split()))
    loop._truncate_stats(path, step)
    assert path.read_text() == "".join(LINES[k] for k in kept.split())


def test_stats_are_appended_not_rewritten(tmp_path, monkeypatch):
    """One atomic rewrite at start-up, then one appended line per log window: the cost of a
    log line does not grow with the run (it used to rewrite the whole file every time)."""
    rewrites, real = [], loop.atomic_write_bytes
    monkeypatch.setattr(loop, "atomic_write_bytes",
                        lambda path, data: (rewrites.append(Path(path).name), real(path, data)))
    run = tmp_path / "run"
    train(make_config(None, STATS_CFG), run, progress=False)
    assert rewrites.count("stats.jsonl") == 1
    assert [r["step"] for r in _stats(run)] == [2, 4, 6, 8, 10]


def test_resume_after_a_torn_stats_line_matches_an_uninterrupted_run(tmp_path):
    """SIGKILL mid-append leaves a last line without its newline, and rows logged after the
    last snapshot: the resume drops both and logs them again, exactly."""
    full = tmp_path / "full"
    train(make_config(None, dict(STATS_CFG, steps=12)), full, progress=False)
    run = tmp_path / "run"
    train(make_config(None, STATS_CFG), run, progress=False)
    (run / "ckpt-000010.safetensors").unlink()  # as if killed before the step-10 snapshot
    with (run / "stats.jsonl").open("a") as f:
        f.write('{"step": 12, "eps": 0.0078, "loss_d": 1.3')  # torn by the kill
    assert [p.name for p in list_snapshots(run)][-1] == "ckpt-000008.safetensors"
    train(make_config(None, dict(STATS_CFG, steps=12)), run, resume=True, progress=False)
    assert _stats(run) == _stats(full)
    assert (run / "stats.jsonl").read_text().endswith("}\n")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_failed_stats_append_is_one_line(tmp_path, capsys, monkeypatch):
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("stats.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code = train_main(["--no-progress", "--out", str(tmp_path / "run"), *_argv(SMALL)])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "stats.jsonl" in err and "disk is full" in err


# ---------------------------------------------------------------- one writer per run directory

HALF = 32  # a multiple of log_every: a run that ends here logs no short last window


def _fork(argv: list[str], **kwargs) -> multiprocessing.Process:
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(argv,),
                                                       kwargs=kwargs)
    proc.start()
    return proc


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _files(run: Path) -> dict[str, tuple[int, bytes]]:
    """``{relative path: (mtime in ns, content)}`` of every file under ``run``."""
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(run.rglob("*")) if p.is_file()}


def test_two_resumes_at_once_one_trains_the_other_exits_2(tmp_path, reference, capsys,
                                                          monkeypatch):
    """A resume started twice at once: the one that gets the lock trains (it waits at its
    first iteration until the other has exited, so the two overlap however slow the machine
    is); the other exits 2 with one line naming the directory and the winner's PID, before
    it has written anything. Further writers while the winner trains (a resume, a fresh
    run, ``--nproc``, ``train()`` itself) are refused and leave every file as it was, debris
    included. The winner's final weights, Adam state and stats equal an uninterrupted run's.
    """
    run, go = tmp_path / "run", tmp_path / "go"
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    train(make_config(None, dict(FAULT_CFG, steps=HALF)), run, progress=False)
    argv = ["--no-progress", "--resume", str(run), "--steps", str(R)]
    procs = [_fork(argv, stderr=str(tmp_path / f"err{i}"), gate=(HALF, str(ready[i]), str(go)))
             for i in range(2)]
    try:
        _wait_for(lambda: any(p.exitcode is not None for p in procs)
                  or all(r.exists() for r in ready), "one resume to exit")
        assert not all(r.exists() for r in ready), "both resumes are training the same run"
        loser = next(i for i, p in enumerate(procs) if p.exitcode is not None)
        winner = procs[1 - loser]
        err = (tmp_path / f"err{loser}").read_text()
        assert procs[loser].exitcode == 2, err[-2000:]
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"run directory {run} is in use by process {winner.pid} " in err, err
        assert not ready[loser].exists()  # it never reached an iteration
        _wait_for(ready[1 - loser].exists, "the winner to train")

        (run / ".tmp-debris").write_bytes(b"a killed write's leftover: only its owner cleans")
        before = _files(run)
        monkeypatch.setattr("trainers.distributed.launch",
                            lambda *a: pytest.fail("launched torchrun on a directory in use"))
        for other in (argv, ["--no-progress", "--out", str(run), *_argv(FAULT_CFG)],
                      [*argv, "--nproc", "2"]):
            assert train_main(other) == 2
            _, err = capsys.readouterr()
            assert err.count("\n") == 1 and f"in use by process {winner.pid} " in err, err
        with pytest.raises(UserError, match=f"in use by process {winner.pid} "):  # the lock
            train(make_config(None, dict(FAULT_CFG, steps=R)), run, resume=True,
                  progress=False)
        assert _files(run) == before
        (run / ".tmp-debris").unlink()
    finally:  # a failed check must not leave a child waiting at its gate
        go.touch()
        for p in procs:
            p.join(120)
    assert winner.exitcode == 0
    _check_as_uninterrupted(run, reference, whole_rows=True)


def test_a_lock_holder_killed_by_sigkill_blocks_no_resume(tmp_path, reference, capsys):
    """``kill -9`` of a run mid-training: the OS drops its lock with the process, so the
    resume that follows at once gets it (its PID is still in ``.lock``: the content decides
    nothing) and ends as an uninterrupted run would."""
    run, ready = tmp_path / "run", tmp_path / "ready"
    proc = _fork(["--no-progress", "--out", str(run), *_argv(FAULT_CFG)],
                 gate=(HALF, str(ready), str(tmp_path / "never")))
    _wait_for(ready.exists, "the run to reach its gate")
    with pytest.raises(UserError, match=f"in use by process {proc.pid} "):
        check_free(run)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    assert (run / LOCK_NAME).read_text().split()[0] == str(proc.pid)
    assert _newest(run) == HALF  # the snapshot before the gate: a log boundary
    _resume_and_check(run, reference, capsys, whole_rows=True)


# ---------------------------------------------------------------- report folders: built whole


def _report_child(argv: list[str], paused: str, go: str) -> None:
    """Forked child: ``asgan-probe report``; with ``paused``, it touches that file after
    drawing the training curves and waits for ``go`` before it draws the samples, i.e. in
    the middle of writing its report."""
    sys.stdout, sys.stderr = open(os.devnull, "w"), open(os.devnull, "w")  # noqa: SIM115
    import probes.viz.runs as runs

    real = runs.plot_samples

    def paused_samples(*args):
        if paused:
            Path(paused).touch()
            _wait_for(Path(go).exists, "the go-ahead")
        return real(*args)

    runs.plot_samples = paused_samples
    from probes.cli import main as probe_main

    os._exit(probe_main(argv))


def test_two_reports_into_one_folder_leave_one_whole_report(tmp_path):
    """Report A pauses mid-write; report B into the same folder runs start to end meanwhile;
    then A finishes. Written in place, the folder would end with B's curves beside A's
    samples and table; built whole, it holds B's report, complete, while A waits, and then
    A's, byte for byte as A writes it alone. A file of the user's in the folder survives."""
    from probes.cli import main as probe_main

    runs = []
    for name, trainer in (("base", "baseline"), ("as", "asgan")):
        runs.append(str(tmp_path / name))
        train(make_config(None, dict(FAULT_CFG, steps=8, trainer=trainer, sample_every=8)),
              runs[-1], progress=False)
    a, b = [*runs, "--out"], [*runs[::-1], "--out"]  # other order: other colours and table
    for argv, folder in ((a, "alone-a"), (b, "alone-b")):
        assert probe_main(["report", *argv, str(tmp_path / folder)]) == 0

    def report(folder: Path) -> dict[str, bytes]:
        """The report's files: not the lock, the user's file, nor a build in progress."""
        return {k: v for k, (_, v) in _files(folder).items()
                if k not in (LOCK_NAME, "notes.txt") and not k.startswith(".tmp-")}

    alone = {k: report(tmp_path / f"alone-{k}") for k in "ab"}
    assert alone["a"].keys() == {"report.md", "training-curves.png", "samples.png"}
    assert all(alone["a"][k] != alone["b"][k] for k in alone["a"])
    out, paused, go = tmp_path / "shared", tmp_path / "paused", tmp_path / "go"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")

    proc_a = multiprocessing.get_context("fork").Process(
        target=_report_child, args=(["report", *a, str(out)], str(paused), str(go)))
    proc_a.start()
    try:
        _wait_for(paused.exists, "report A to pause mid-write")
        proc_b = multiprocessing.get_context("fork").Process(
            target=_report_child, args=(["report", *b, str(out)], "", ""))
        proc_b.start()
        proc_b.join(120)
        assert proc_b.exitcode == 0
        assert report(out) == alone["b"]
    finally:
        go.touch()
        proc_a.join(120)
    assert proc_a.exitcode == 0
    assert report(out) == alone["a"]
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert not list(out.glob(".tmp-*"))


def test_build_into_removes_what_a_killed_or_earlier_build_left(tmp_path):
    """A build's own files replace the old ones; an owned name it did not make goes; the
    folder of a build killed long ago (unlocked) goes; a build still running keeps its own."""
    import fcntl

    from asgan_base.lock import build_into

    out = tmp_path / "out"
    out.mkdir()
    (out / "old-figure.png").write_bytes(b"from an earlier build")
    killed, running = out / ".tmp-build-killed", out / ".tmp-build-running"
    for folder in (killed, running):
        folder.mkdir()
        (folder / "report.md").write_text("half a report")
        os.utime(folder, (time.time() - 3600,) * 2)
    held = os.open(running, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with build_into(out, last=["report.md"], owned=["report.md", "old-figure.png"]) as tmp:
            (tmp / "report.md").write_text("new")
        assert sorted(p.name for p in out.iterdir()) == [".lock", ".tmp-build-running",
                                                         "report.md"]
        with pytest.raises(RuntimeError), build_into(out) as tmp:  # a failed build ...
            (tmp / "report.md").write_text("never seen")
            raise RuntimeError
        assert (out / "report.md").read_text() == "new"  # ... changes nothing
        assert sorted(p.name for p in out.iterdir()) == [".lock", ".tmp-build-running",
                                                         "report.md"]
    finally:
        os.close(held)


def test_a_signal_the_parent_ignored_stays_ignored_and_handlers_come_back():
    """nohup / `cmd &` hand the trainer SIGINT ignored: StopSignals must not turn it back on
    (a stray Ctrl-C to the shell would stop a run the user detached), and on exit every
    handler is what it was before."""
    from trainers.faults import StopSignals

    before = {s: signal.getsignal(s) for s in StopSignals.SIGNALS}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with StopSignals() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == stop._handle
            signal.raise_signal(signal.SIGINT)  # ignored: no stop requested
            assert stop.signum is None
            signal.raise_signal(signal.SIGTERM)  # the first one only sets the flag
            assert stop.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for s, h in before.items():
            signal.signal(s, h)
