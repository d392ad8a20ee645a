"""Launchers: the engines that run a sitting's training tasks (``asgan-study run --launcher``).

A launcher is a plain function ``launcher(tasks, *, stop, **options) -> Iterator[(Task, rc)]``
that runs every task of ``tasks`` (an iterable of :class:`Task`, in work order) and yields
each one with its exit status **as it finishes**, so the controller ships a finished run at
once. The contract every launcher keeps:

- ``rc``: the task's exit status, 0..255; a task killed by signal ``s`` reports ``128 + s``
  (a shell's convention): 143 for SIGTERM, 130 for SIGINT. ``asgan-train`` itself exits 143
  after SIGTERM with a snapshot of its current step written, so 130/143 mean "resumes next
  sitting", anything else but 0 means failed.
- ``stop()`` (a callable, polled every couple of seconds): once it returns True no task
  starts any more, and every running task gets SIGTERM (one, never a second: a second signal
  kills a trainer before its snapshot), is waited for and yielded with its status. Tasks never
  started are not yielded; the controller knows them as the ones missing from the output.
- Ctrl-C or SIGTERM to the sitting (the controller maps SIGTERM to ``KeyboardInterrupt``) acts
  as ``stop()``; the generator then returns normally after yielding the interrupted tasks.
- A task's stdout and stderr go to ``task.log`` (appended; the launcher writes one ``#``
  header line with the argv first). ``task.env`` is set on top of the launcher's environment.
- A task is self-contained: its argv records its own start facts and resumes itself (the
  controller gives ``python -m probes.study.task ...``), so a launcher only has to run argv in
  cwd; a scheduler that requeues or reruns a task gets the right thing.

:data:`LAUNCHERS` maps ``--launcher`` names to these functions; another engine is one function
in its own module added there (``slurm`` through submitit: ``probes.study.slurm``). Each
launcher takes its own keyword options; ``asgan-study run`` passes the ones named in
:data:`OPTIONS`.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class Task:
    """One process to run: ``argv`` in ``cwd`` with ``env`` (set on top of the launcher's
    environment), stdout and stderr appended to ``log``. ``name``: the run it trains
    (``group/arm/seed<k>``), unique within a sitting."""

    name: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    log: Path | None = None


def exit_status(returncode: int) -> int:
    """A subprocess' return code as a shell reports it: death by signal s is 128 + s."""
    return 128 - returncode if returncode < 0 else returncode


def _never() -> bool:
    return False


def _header(task: Task) -> str:
    utc = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"# {utc} {shlex.join(task.argv)}\n"


def local(tasks: Iterable[Task], *, jobs: int = 2, nice: int = 10,
          stop: Callable[[], bool] = _never, poll_s: float = 1.0
          ) -> Iterator[tuple[Task, int]]:
    """Run ``tasks`` as a pool of at most ``jobs`` local processes at niceness ``nice``, in
    order, and yield ``(task, exit status)`` as each finishes (module docstring: the contract).

    Each process runs in a session of its own: a Ctrl-C at the terminal reaches only the
    sitting, which then sends each task exactly one SIGTERM."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    todo = list(tasks)
    running: list[tuple[Task, subprocess.Popen, object]] = []

    def start(task: Task) -> None:
        log = _open_log(task.log) if task.log is not None else subprocess.DEVNULL
        if task.log is not None:
            log.write(_header(task))
            log.flush()
        proc = subprocess.Popen(list(task.argv), cwd=task.cwd, env={**os.environ, **task.env},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=(lambda: os.nice(nice)) if nice else None)
        running.append((task, proc, log))

    def finished(item) -> tuple[Task, int]:
        task, proc, log = item
        rc = exit_status(proc.wait())
        if log is not subprocess.DEVNULL:
            log.close()
        running.remove(item)
        return task, rc

    def terminate_all() -> Iterator[tuple[Task, int]]:
        for _, proc, _ in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # a snapshot, then exit 143
        for item in list(running):
            yield finished(item)

    try:
        while todo or running:
            if stop():
                yield from terminate_all()
                return
            while todo and len(running) < jobs:
                start(todo.pop(0))
            time.sleep(poll_s)
            for item in list(running):
                if item[1].poll() is not None:
                    yield finished(item)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM mapped to it: stop as stop() does
        yield from terminate_all()
    finally:  # the consumer closed the generator early: leave no orphan trainer behind
        for _, proc, _ in list(running):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait()


def _open_log(path: Path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a")


LAUNCHERS: dict[str, Callable[..., Iterator[tuple[Task, int]]]] = {"local": local}
# the ``asgan-study run`` options each launcher takes (besides ``stop``)
OPTIONS: dict[str, tuple[str, ...]] = {"local": ("jobs", "nice")}


def launcher(name: str) -> Callable[..., Iterator[tuple[Task, int]]]:
    """The launcher called ``name``; an unknown one is a one-line UserError."""
    if name == "slurm" and name not in LAUNCHERS:
        try:
            import probes.study.slurm  # noqa: F401  registers itself in LAUNCHERS
        except ImportError as e:
            from asgan_base.errors import UserError

            raise UserError(f"--launcher slurm needs submitit ({e}); pip install submitit"
                            ) from None
    if name not in LAUNCHERS:
        from asgan_base.errors import UserError

        raise UserError(f"unknown launcher {name!r}; known: {', '.join(sorted(LAUNCHERS))}")
    return LAUNCHERS[name]
