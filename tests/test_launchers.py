"""The launcher contract (probes.study.launchers): every task yielded once with its exit status
as it finishes, at most ``jobs`` at a time, logs appended, and ``stop()`` ending a sitting with
one SIGTERM to each running task (reported 128 + 15) and nothing new started."""

import sys
import time

import pytest

from asgan_base.errors import UserError
from probes.study.launchers import LAUNCHERS, Task, exit_status, launcher, local

PY = sys.executable


def _task(tmp_path, name, code, env=None):
    return Task(name, (PY, "-c", code), tmp_path, env or {}, tmp_path / "logs" / f"{name}.log")


def test_local_yields_every_task_with_its_status_and_log(tmp_path):
    tasks = [_task(tmp_path, "ok", "print('hello')"),
             _task(tmp_path, "bad", "import sys; sys.exit(3)"),
             _task(tmp_path, "env", "import os; print(os.environ['X_STUDY'])", {"X_STUDY": "7"})]
    out = dict((t.name, rc) for t, rc in local(tasks, jobs=2, nice=0, poll_s=0.05))
    assert out == {"ok": 0, "bad": 3, "env": 0}
    log = (tmp_path / "logs" / "ok.log").read_text().splitlines()
    assert log[0].startswith("# ") and "-c" in log[0] and log[1] == "hello"
    assert (tmp_path / "logs" / "env.log").read_text().splitlines()[-1] == "7"


def test_local_runs_at_most_jobs_at_once_in_order(tmp_path):
    code = ("import os, time; open(os.environ['F'], 'w').write(str(time.time())); "
            "time.sleep(0.3); open(os.environ['F'], 'a').write(' ' + str(time.time()))")
    tasks = [_task(tmp_path, f"t{i}", code, {"F": str(tmp_path / f"t{i}")}) for i in range(3)]
    done = [t.name for t, rc in local(tasks, jobs=1, nice=0, poll_s=0.02) if rc == 0]
    assert done == ["t0", "t1", "t2"]
    spans = [tuple(map(float, (tmp_path / f"t{i}").read_text().split())) for i in range(3)]
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0]  # never two at once


def test_local_stop_terminates_running_and_starts_nothing_more(tmp_path):
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('snapshot'), sys.exit(143)))\n"
            "print('up', flush=True); time.sleep(60)")
    tasks = [_task(tmp_path, f"t{i}", code) for i in range(3)]
    t0 = time.time()
    stop_at = t0 + 1.5
    out = list(local(tasks, jobs=2, nice=0, poll_s=0.05, stop=lambda: time.time() > stop_at))
    assert time.time() - t0 < 20
    assert sorted(t.name for t, _ in out) == ["t0", "t1"]  # t2 never started: not yielded
    assert all(rc == 143 for _, rc in out)
    assert (tmp_path / "logs" / "t0.log").read_text().splitlines()[-1] == "snapshot"
    assert not (tmp_path / "logs" / "t2.log").exists()


def test_exit_status_and_registry():
    assert exit_status(-15) == 143 and exit_status(0) == 0 and exit_status(2) == 2
    assert LAUNCHERS["local"] is local and launcher("local") is local
    with pytest.raises(UserError, match="unknown launcher 'pbs'"):
        launcher("pbs")
