"""The ``slurm`` launcher: a sitting's tasks as one SLURM array job, through ``submitit``.

``asgan-study run --launcher slurm`` submits every task of the sitting as one element of one
array job (``sbatch --array``, at most ``array_parallelism`` at once). Each element runs
:func:`run_task` on a node: the task's argv as a subprocess in its cwd with its env, stdout and
stderr appended to its log, and returns the exit status (the launcher contract of
:mod:`probes.study.launchers`). The controller polls the job states (``sacct``, which is why
the cluster needs accounting) and yields each task as its element finishes:

- **finished**: the status ``run_task`` returned (0, 143 after SIGTERM, the trainer's error);
- **CANCELLED / TIMEOUT / PREEMPTED** with no status returned: 143 (the scheduler ends a job
  with SIGTERM, which makes ``asgan-train`` write a snapshot of its step; the run resumes at
  the next ``run``); **FAILED / NODE_FAIL / OUT_OF_MEMORY / ...**: 1 (failed);
- never started (cancelled while pending): not yielded, as the contract says.

Signals. SLURM signals every process of a job step (``proctrack`` follows the whole process
tree), so the trainer gets the scheduler's SIGTERM itself: ``run_task`` must not forward that
one too (a second SIGTERM kills a trainer before its snapshot). Before the time limit SLURM
sends the job ``SIGUSR2`` (submitit's ``--signal=USR2@signal_delay_s``): the trainer ignores
it, and ``run_task`` turns it into the trainer's one SIGTERM, so a run reaching its time limit
writes a snapshot and exits 143 ``signal_delay_s`` seconds before the scheduler would kill it.
SLURM checks time limits about every 30 s, so the delay should exceed 30 s plus one iteration
and one snapshot write. ``stop()`` (the sitting's deadline) and Ctrl-C do the same through
``scancel --signal=USR2`` for the elements running and cancel the others.

Needs ``submitit`` (``pip install 'asgan-probe[slurm]'``) where the sitting runs; the nodes run
the same Python (``sys.executable``) with the same environment (``sbatch`` exports it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import submitit
from submitit.core.utils import pickle_load
from submitit.slurm.slurm import SlurmJobEnvironment

from probes.study.launchers import (
    LAUNCHERS,
    OPTIONS,
    Task,
    _header,
    _never,
    _open_log,
    exit_status,
)

# the signal submitit asks SLURM to send before the time limit (--signal=<sig>@<delay>)
WARN_SIGNAL = getattr(signal, "SIG" + SlurmJobEnvironment.USR_SIG.removeprefix("SIG"))
# how long an element that sacct says ended may go without its result file while it is still
# in the queue (its processes ending: SLURM's KillWait) or, COMPLETED, on a slow file system
RESULT_WAIT_S = 120
KILLED = {"CANCELLED", "TIMEOUT", "PREEMPTED", "DEADLINE"}  # ended by the scheduler's SIGTERM
# a job in one of these states is not finished (submitit's list, and REQUEUED's kin)
UNFINISHED = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "CONFIGURING",
              "RESIZING", "SUSPENDED", "REQUEUE_FED", "REQUEUE_HOLD", "SIGNALING", "STAGE_OUT",
              "STOPPED"}


def run_task(task: Task) -> int:
    """On the node: run ``task`` to the end and return its exit status (module docstring:
    signals). Runs in submitit's process, in its main thread."""
    warned = forwarded = False
    proc: subprocess.Popen | None = None

    def warn(signum=None, frame=None) -> None:  # the time limit is near, or the sitting stops
        nonlocal warned, forwarded
        warned = True
        if proc is not None and not forwarded and proc.poll() is None:
            forwarded = True
            proc.send_signal(signal.SIGTERM)  # a snapshot, then exit 143

    # installed before the trainer starts, so no warning reaches submitit's own handler
    # (which would requeue the job); the scheduler's SIGTERM reaches the trainer directly
    signal.signal(WARN_SIGNAL, warn)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log = _open_log(task.log) if task.log is not None else subprocess.DEVNULL
    try:
        if task.log is not None:
            log.write(_header(task))
            log.flush()
        try:
            proc = subprocess.Popen(
                list(task.argv), cwd=task.cwd, env={**os.environ, **task.env}, stdout=log,
                stderr=subprocess.STDOUT,
                # the trainer ignores the warning signal; SIGTERM back to its default
                preexec_fn=lambda: (signal.signal(WARN_SIGNAL, signal.SIG_IGN),
                                    signal.signal(signal.SIGTERM, signal.SIG_DFL)))
        except OSError as e:  # no such program, not executable: as a shell reports it
            if log is not subprocess.DEVNULL:
                log.write(f"# cannot start {task.argv[0]}: {e}\n")
            return 127
        if warned:  # the warning came while the trainer was being started
            warn()
        return exit_status(proc.wait())
    finally:
        if log is not subprocess.DEVNULL:
            log.close()


def slurm(tasks: Iterable[Task], *, folder: str | Path, partition: str | None = None,
          time_min: int = 60, cpus_per_task: int = 1, gpus_per_task: int = 0,
          array_parallelism: int = 256, signal_delay_s: int = 120, job_name: str = "asgan-study",
          stop: Callable[[], bool] = _never, poll_s: float = 10.0
          ) -> Iterator[tuple[Task, int]]:
    """Run ``tasks`` as one SLURM array job and yield ``(task, exit status)`` as each element
    finishes (:mod:`probes.study.launchers`: the contract; module docstring: the statuses).

    ``folder``: submitit's files (the pickled tasks, results, SLURM's own stdout/stderr of each
    element). ``partition`` (None: the cluster's default), ``time_min`` (minutes per element),
    ``cpus_per_task``, ``gpus_per_task`` (0: none) and ``array_parallelism`` (elements running
    at once) go to ``sbatch``. ``signal_delay_s``: seconds before the time limit at which a run
    is told to snapshot and stop. ``poll_s``: seconds between ``sacct`` calls (a finished
    element's result file is seen within a second).
    """
    tasks = list(tasks)
    if not tasks:
        return
    jobs = _submit(tasks, folder=folder, partition=partition, time_min=time_min,
                   cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task,
                   array_parallelism=array_parallelism, signal_delay_s=signal_delay_s,
                   job_name=job_name)
    yield from _watch(jobs, tasks, stop=stop, poll_s=poll_s)


def _submit(tasks: list[Task], *, folder: str | Path, partition: str | None, time_min: int,
            cpus_per_task: int, gpus_per_task: int, array_parallelism: int,
            signal_delay_s: int, job_name: str) -> list:
    """Submit ``tasks`` as one array job (:func:`slurm`'s arguments); its submitit jobs."""
    from asgan_base.errors import UserError

    if min(time_min, cpus_per_task, array_parallelism) < 1 or gpus_per_task < 0:
        raise UserError(f"slurm launcher: time_min, cpus_per_task and array_parallelism must be "
                        f">= 1 and gpus_per_task >= 0, got {time_min}, {cpus_per_task}, "
                        f"{array_parallelism}, {gpus_per_task}")
    if signal_delay_s >= 60 * time_min:
        raise UserError(f"slurm launcher: signal_delay_s ({signal_delay_s}) must be shorter than "
                        f"the time limit ({time_min} min)")
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
    params = dict(time=int(time_min), cpus_per_task=cpus_per_task, job_name=job_name,
                  array_parallelism=array_parallelism, signal_delay_s=signal_delay_s,
                  stderr_to_stdout=True)
    if partition:
        params["partition"] = partition
    if gpus_per_task:
        params["gpus_per_task"] = gpus_per_task
    executor.update_parameters(**params)
    try:
        return executor.map_array(run_task, tasks)
    except Exception as e:  # sbatch refused the job (no such partition, no GPUs...)
        raise UserError(f"slurm launcher: sbatch refused the sitting: "
                        f"{' '.join(str(e).split())[-300:]}") from None


def _scancel(*args: str) -> None:
    subprocess.run(["scancel", *args], capture_output=True, check=False)


def _stop_all(state: dict, waiting: dict, array_id: str) -> None:
    """The contract's stop: nothing new starts, one SIGTERM each. Elements running now get
    the warning (the trainer's one SIGTERM); the others are cancelled: removed while
    pending, or, if one started since ``sacct`` looked, ended with SLURM's own SIGTERM, again
    just one. ``state``: ``stopped``, ``last_poll`` of :func:`_watch`."""
    if state["stopped"]:
        return
    state["stopped"] = True
    # squeue asks slurmctld itself: sacct (the database) may not know yet that one started
    running = set(_squeue("-r", "-t", "RUNNING", "-j", array_id))
    running = [j.job_id for j in waiting if j.job_id in running]
    rest = [j.job_id for j in waiting if j.job_id not in running]
    if rest:
        _scancel(*rest)
    if running:
        _scancel(f"--signal={WARN_SIGNAL.name.removeprefix('SIG')}", *running)
    state["last_poll"] = 0.0


def _watch(jobs: list, tasks: list[Task], *, stop: Callable[[], bool], poll_s: float
           ) -> Iterator[tuple[Task, int]]:
    """Yield ``(task, exit status)`` as each element of the array ends (:func:`slurm`)."""
    array_id = jobs[0].job_id.split("_")[0]
    watcher = jobs[0].watcher
    waiting = dict(zip(jobs, tasks))
    seen_done: dict[str, float] = {}  # job id -> when sacct first said it ended
    state = {"stopped": False, "last_poll": 0.0}
    try:
        while waiting:
            if not state["stopped"] and stop():
                _stop_all(state, waiting, array_id)
            try:
                if time.time() - state["last_poll"] >= poll_s:
                    watcher.update()  # one sacct call for the whole array
                    state["last_poll"] = time.time()
                for job in list(waiting):
                    rc, note = _status(job, watcher, seen_done)
                    if rc is not None:
                        task = waiting.pop(job)
                        if rc >= 0:
                            if note and task.log is not None:  # the controller shows its tail
                                with _open_log(task.log) as f:
                                    f.write(f"# slurm: {note}\n")
                            yield task, rc
                time.sleep(min(1.0, poll_s) if waiting else 0)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM mapped to it: stop as stop() does
                _stop_all(state, waiting, array_id)
    finally:  # the consumer closed the generator early: leave no element behind
        if waiting:
            _scancel(array_id)


def _status(job, watcher, seen_done: dict[str, float]) -> tuple[int | None, str | None]:
    """``(exit status, note)`` of an array element: status None while it has not finished,
    -1 for one that never started; the note (for the task's log) says why a status did not
    come from the task itself."""
    pickle = job.paths.result_pickle
    if pickle.exists():
        try:
            outcome, value = pickle_load(pickle)
        except (EOFError, OSError):  # being written right now
            return None, None
        if outcome == "success":
            return int(value), None
        return 1, f"job {job.job_id}: submitit's wrapper failed; see {job.paths.stdout}"
    info = watcher.get_info(job.job_id, mode="cache")
    state = (info.get("State") or "UNKNOWN").split()[0].upper()
    if state in UNFINISHED:
        return None, None
    # cancelled while pending: it never ran. sacct's NodeList lags behind slurmctld (the
    # database learns of a start late, seconds under load), so an element whose output file
    # exists (SLURM opens it as the element starts) did run, whatever sacct says yet
    if state == "CANCELLED" and info.get("NodeList", "None assigned") == "None assigned" \
            and not job.paths.stdout.exists():
        return -1, None
    # sacct says it ended, but no result file yet: a cancelled task still writing its snapshot
    # (in the queue, COMPLETING, until it exits or KillWait runs out), or a slow file system
    first = seen_done.setdefault(job.job_id, time.time())
    if time.time() - first < RESULT_WAIT_S and (state == "COMPLETED" or _squeue("-j",
                                                                                job.job_id)):
        return None, None
    note = f"job {job.job_id} ended {state} without a status; SLURM's output: {job.paths.stdout}"
    return (143 if state in KILLED else 1), note


def _squeue(*args: str) -> list[str]:
    """Job ids ``squeue`` lists (array elements as ``<array>_<index>``); [] when it fails."""
    res = subprocess.run(["squeue", "-h", "-o", "%i", *args], capture_output=True, text=True,
                         check=False)
    return res.stdout.split() if res.returncode == 0 else []


LAUNCHERS["slurm"] = slurm
OPTIONS["slurm"] = ("folder", "partition", "time_min", "cpus_per_task", "gpus_per_task",
                    "array_parallelism")
