"""The slurm launcher (probes.study.slurm) on a real single-node SLURM cluster
(tests/slurm_cluster.py): the launcher contract of probes.study.launchers, the same weights as
the local launcher, a ``scancel`` mid-run reported at once and resumed exactly, and ``stop()``
giving each running task one SIGTERM through the time-limit warning signal."""

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import asgan_base.manifest as manifest
from asgan_base.errors import UserError
from probes.study import engine
from probes.study.cli import main
from probes.study.launchers import LAUNCHERS, Task, launcher, local
from probes.study.slurm import slurm
from trainers.checkpoint import list_snapshots, read_checkpoint, tensor_digest

pytestmark = pytest.mark.xdist_group("slurm")  # one cluster per session, under --dist loadgroup
PY = sys.executable
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train(tmp_path, name, seed, steps=20, resume=False):
    """A smoke-sized asgan-train run (seconds) into tmp_path/runs/<name>."""
    out = tmp_path / "runs" / name
    argv = ((PY, "-m", "trainers", "--resume", str(out), "--no-progress") if resume else
            (PY, "-m", "trainers", "--preset", "smoke", "--seed", str(seed), "--steps",
             str(steps), "--snapshot-every", "10", "--sample-every", "1000", "--out", str(out),
             "--no-progress"))
    return Task(name, argv, tmp_path, ENV, tmp_path / "logs" / f"{name}.log")


def _digest(run_dir: Path) -> tuple[int, str]:
    """(step, SHA-256 of every tensor: weights and Adam state) of the run's newest snapshot."""
    last = list_snapshots(run_dir)[-1]
    tensors, meta = read_checkpoint(last)
    return meta["step"], tensor_digest(tensors)


def _array_ids(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True,
                         text=True, check=True).stdout
    return out.split()


ROOT = Path(__file__).resolve().parents[1]


def test_registered_and_refusals(slurm_cluster, tmp_path):
    assert LAUNCHERS["slurm"] is slurm and launcher("slurm") is slurm
    t = Task("x", (PY, "-c", "pass"), tmp_path)
    with pytest.raises(UserError, match="sbatch refused the sitting"):
        list(slurm([t], folder=tmp_path / "sub", partition="no-such-partition"))
    with pytest.raises(UserError, match="signal_delay_s"):
        list(slurm([t], folder=tmp_path / "sub", time_min=1, signal_delay_s=60))


def test_an_element_that_dies_without_a_status_is_failed_and_says_where_to_look(slurm_cluster,
                                                                               tmp_path):
    """The task kills submitit's wrapper on the node (as an out-of-memory kill would): no
    result file, so the status comes from sacct's state, and the task's log says so."""
    code = "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"
    task = Task("t", (PY, "-c", code), tmp_path, {}, tmp_path / "t.log")
    out = list(slurm([task], folder=tmp_path / "submitit", poll_s=1, job_name="t-die"))
    assert [rc for _, rc in out] == [1]
    last = task.log.read_text().splitlines()[-1]
    assert last.startswith("# slurm: job ") and "ended FAILED without a status" in last, last


@pytest.mark.slow
def test_tasks_finish_with_their_status_and_the_weights_local_gives(slurm_cluster, tmp_path):
    slurm_dir, local_dir = tmp_path / "slurm", tmp_path / "local"
    extra = [Task("exit3", (PY, "-c", "import sys; print('bye'); sys.exit(3)"), slurm_dir, {},
                  slurm_dir / "logs" / "exit3.log"),
             Task("env", (PY, "-c", "import os; print(os.environ['X_STUDY'])"), slurm_dir,
                  {"X_STUDY": "7"}, slurm_dir / "logs" / "env.log"),
             Task("nope", (str(tmp_path / "no-such-program"),), slurm_dir)]
    tasks = [_train(slurm_dir, f"s{s}", s) for s in (0, 1)] + extra
    t0 = time.time()
    out = {t.name: rc for t, rc in slurm(tasks, folder=tmp_path / "submitit", poll_s=1,
                                         job_name="t-finish")}
    wall = time.time() - t0
    assert out == {"s0": 0, "s1": 0, "exit3": 3, "env": 0, "nope": 127}, \
        (out, slurm_cluster.logs())
    log = (slurm_dir / "logs" / "exit3.log").read_text().splitlines()
    assert log[0].startswith("# ") and "sys.exit(3)" in log[0] and log[1] == "bye"
    assert (slurm_dir / "logs" / "env.log").read_text().splitlines()[-1] == "7"
    _drained("t-finish")
    ref = list(local([_train(local_dir, f"s{s}", s) for s in (0, 1)], jobs=2, nice=0,
                     poll_s=0.2))
    assert [rc for _, rc in ref] == [0, 0]
    for s in (0, 1):
        got, want = _digest(slurm_dir / "runs" / f"s{s}"), _digest(local_dir / "runs" / f"s{s}")
        assert got == want and got[0] == 20
    print(f"slurm launcher: 5 tasks in {wall:.1f} s")


@pytest.mark.slow
def test_scancel_mid_run_is_reported_at_once_and_the_rerun_resumes_exactly(slurm_cluster,
                                                                            tmp_path):
    steps = 100  # cancelled at its first snapshot (step 10): 90 steps of margin, seconds
    a = tmp_path / "a"
    task = _train(a, "long", 5, steps=steps)
    run_dir = a / "runs" / "long"
    cancelled = {}

    def cancel_after_first_snapshot():
        t0 = time.time()
        while not list_snapshots(run_dir) and time.time() - t0 < 120:
            time.sleep(0.2)
        (jid,) = _array_ids("t-cancel")
        subprocess.run(["scancel", jid], check=True)
        cancelled.update(id=jid, t=time.time())

    killer = threading.Thread(target=cancel_after_first_snapshot)
    killer.start()
    out = list(slurm([task], folder=tmp_path / "submitit", poll_s=1, job_name="t-cancel"))
    seen = time.time()
    killer.join()
    assert [(t.name, rc) for t, rc in out] == [("long", 143)]  # the scheduler's SIGTERM
    assert seen - cancelled["t"] < 15
    assert slurm_cluster.state(cancelled["id"]) == "CANCELLED"
    step, _ = _digest(run_dir)
    assert 0 < step < steps  # the trainer wrote a snapshot of its step on SIGTERM and stopped
    assert "SIGTERM" in (a / "logs" / "long.log").read_text()
    # the rerun resumes from that snapshot and ends where an uninterrupted run ends
    out = list(slurm([_train(a, "long", 5, resume=True)], folder=tmp_path / "submitit",
                     poll_s=1, job_name="t-resume"))
    assert [rc for _, rc in out] == [0]
    ref = tmp_path / "ref"
    assert [rc for _, rc in local([_train(ref, "long", 5, steps=steps)], nice=0)] == [0]
    assert _digest(run_dir) == _digest(ref / "runs" / "long")
    assert _digest(run_dir)[0] == steps


# counts SIGTERMs, exits 143 two seconds after the first (time for a second to arrive); the
# default action of the warning signal (SIGUSR2) would kill it with status 140 instead
SIGTERM_COUNTER = """
import signal, sys, time
n = []
signal.signal(signal.SIGTERM, lambda *a: n.append(1))
print('up', flush=True)
while not n:
    time.sleep(0.1)
time.sleep(2)
print('sigterms', len(n), flush=True)
sys.exit(143)
"""


def test_stop_gives_each_running_task_one_sigterm_and_starts_nothing(slurm_cluster, tmp_path):
    tasks = [Task(f"t{i}", (PY, "-c", SIGTERM_COUNTER), tmp_path, {},
                  tmp_path / "logs" / f"t{i}.log") for i in range(3)]
    logs = [t.log for t in tasks]

    def stop():  # once the first two are up (array_parallelism=2: the third waits)
        return all(p.is_file() and "up" in p.read_text() for p in logs[:2])

    t0 = time.time()
    out = list(slurm(tasks, folder=tmp_path / "submitit", poll_s=1, array_parallelism=2,
                     job_name="t-stop", stop=stop))
    assert time.time() - t0 < 90
    sacct = subprocess.run(["sacct", "-n", "-P", "-o", "JobID,State,NodeList", "--name",
                            "t-stop"], capture_output=True, text=True).stdout
    assert sorted((t.name, rc) for t, rc in out) == [("t0", 143), ("t1", 143)], \
        (out, [p.read_text() if p.is_file() else None for p in logs], sacct)
    for p in logs[:2]:
        assert p.read_text().splitlines()[-1] == "sigterms 1", (p.read_text(), sacct)
    assert not logs[2].exists()  # never started: not yielded, never ran
    _drained("t-stop")


def _drained(name: str, timeout: float = 20) -> None:
    """The array leaves the queue (an element yields once its result is written, just before
    its process exits)."""
    t0 = time.time()
    while _array_ids(name) and time.time() - t0 < timeout:
        time.sleep(0.5)
    assert _array_ids(name) == []


# what differs between two trainings of the same run at different times: the clock, and the
# file hashes (a snapshot's header holds its wall time); the weights are compared separately
VOLATILE = {"sha256", "bytes", "wall_time_s", "started_utc", "shipped_utc", "resumed"}


@pytest.mark.slow
def test_asgan_study_on_slurm_with_a_scancel_matches_the_local_launcher(slurm_cluster,
                                                                        tmp_path, capsys):
    """Acceptance (issue 22): the example plan (3 seed pairs; 300 iterations so that a run can
    be cancelled mid-way) run by ``asgan-study run --launcher slurm``, one array element
    ``scancel``led mid-run, ``run`` again: the manifest entries and the shipped weights are the
    local launcher's."""
    plans = {}
    for name in ("local", "slurm"):
        (tmp_path / name).mkdir()
        plans[name] = tmp_path / name / "plan.toml"
        shutil.copy(ROOT / "studies" / "example.toml", plans[name])
        plans[name].write_text(plans[name].read_text().replace('steps = "20"', 'steps = "300"'))
        assert main(["register", str(plans[name])]) == 0
    assert main(["run", str(plans["local"]), "--jobs", "2", "--nice", "0"]) == 0
    plan = engine.load(plans["slurm"])
    target = plan.runs()[0]  # array element 0
    cancelled = {}

    def cancel_mid_run():
        t0 = time.time()
        while engine.raw_step(plan, target) < 10 and time.time() - t0 < 180:
            time.sleep(0.1)
        (jid,) = [j for j in _array_ids("asgan-study") if j.endswith("_0")]
        subprocess.run(["scancel", jid], check=True)
        cancelled.update(id=jid)

    killer = threading.Thread(target=cancel_mid_run)
    killer.start()
    capsys.readouterr()
    argv = ["run", str(plans["slurm"]), "--launcher", "slurm", "--time-min", "10"]
    assert main(argv) == 0
    killer.join()
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (first["shipped"], first["interrupted"], first["failed"]) == (5, 1, 0), first
    assert slurm_cluster.state(cancelled["id"]) == "CANCELLED"
    step = engine.raw_step(plan, target)
    assert 10 <= step < 300  # cancelled mid-run, its snapshot written on the SIGTERM
    assert main(argv) == 0  # resumes the cancelled run
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (second["shipped"], second["skipped"], second["failed"]) == (1, 5, 0), second
    got, want = (manifest.read_manifest(plans[k].parent / plan.manifest.relative_to(plan.root))
                 for k in ("slurm", "local"))
    assert sorted(got) == sorted(want)
    assert sum(rel.endswith(".safetensors") for rel in got) == 6  # + PLAN, REGISTRATION
    for rel in want:
        assert {k: v for k, v in got[rel].items() if k not in VOLATILE} == \
            {k: v for k, v in want[rel].items() if k not in VOLATILE}, rel
        if rel.endswith(".safetensors"):
            digests = [tensor_digest(read_checkpoint(plans[k].parent / rel)[0])
                       for k in ("slurm", "local")]
            assert digests[0] == digests[1], rel
            resumed = [r["from_step"] for r in got[rel]["resumed"]]
            assert resumed == ([step] if target.name in rel else []) and \
                want[rel]["resumed"] == []
    assert manifest.verify(plan.manifest) == []


@pytest.mark.slow
def test_the_time_limit_warning_makes_a_task_stop_cleanly_before_the_kill(slurm_cluster,
                                                                           tmp_path):
    """A one-minute time limit with the warning 45 s before it (slurmctld checks limits about
    every 30 s): the task gets exactly one SIGTERM from the warning and exits 143 on its own,
    so its job ends COMPLETED, not TIMEOUT. About a minute of waiting, no CPU."""
    task = Task("t", (PY, "-c", SIGTERM_COUNTER), tmp_path, {}, tmp_path / "t.log")
    t0 = time.time()
    out = list(slurm([task], folder=tmp_path / "submitit", poll_s=1, time_min=1,
                     signal_delay_s=45, job_name="t-limit"))
    assert [rc for _, rc in out] == [143]
    assert time.time() - t0 < 60
    assert task.log.read_text().splitlines()[-1] == "sigterms 1"
    # accounting records the end a moment after the task exits (slurmdbd is asynchronous;
    # under load, seconds): poll for a final state rather than read it once
    for _ in range(60):
        ids = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "--name",
                              "t-limit"], capture_output=True, text=True, check=True).stdout.split()
        if ids and not ids[0].endswith(("|RUNNING", "|COMPLETING", "|PENDING")):
            break
        time.sleep(1)
    assert len(ids) == 1 and ids[0].endswith("|COMPLETED"), ids
