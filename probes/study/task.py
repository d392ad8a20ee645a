"""One training task of a sitting: record the run's start facts, then become ``asgan-train``.

``python -m probes.study.task RAW CLAIMS_SHA asgan-train ARGS...`` (run in the study's root,
as :func:`probes.study.engine.task_for` builds it for every launcher):

- a fresh run (no snapshot in ``RAW``) writes ``RAW/started.json``: the command, ``started_utc``,
  the code's ``code_commit`` and ``code_dirty`` (:func:`probes.study.engine.code_state`) and the
  claims hash registered when it started (``claims_sha256``, "" without a registration), then
  execs ``asgan-train ARGS``;
- a run with snapshots resumes (``asgan-train --resume RAW``) and appends ``{utc, code_commit,
  code_dirty, from_step}`` to ``resumed``, keeping the start facts;
- snapshots without start facts cannot say what began them: the folder is set aside
  (``RAW.orphan-<time>``) and the run starts afresh.

The facts are taken when the task STARTS, whichever launcher started it and whenever a
scheduler ran it: the claims' registration rule depends on that. The process then *is* the
trainer (``os.execv``), so the launcher's SIGTERM reaches ``asgan-train`` itself, which writes
a snapshot of its current step and exits 143.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path


def start_facts(raw: Path, command: list[str], claims_sha: str) -> tuple[list[str], dict]:
    """Write ``raw/started.json`` (module docstring) and return the trainer's arguments
    (after ``asgan-train``) with the facts written."""
    from asgan_base.files import atomic_write_bytes
    from probes.study.engine import code_state, machine_facts, raw_step_of, utc_now

    started_file = raw / "started.json"
    step = raw_step_of(raw)
    started = json.loads(started_file.read_text()) if step and started_file.is_file() else None
    if step and started is None:
        raw.rename(raw.with_name(f"{raw.name}.orphan-{int(time.time())}"))
        step = 0
    now = {"utc": utc_now(), **code_state(), "machine": machine_facts()}
    if not step:  # a fresh start (also after a kill before the first snapshot)
        started = {"command": shlex.join(command), "started_utc": now["utc"],
                   "code_commit": now["code_commit"], "code_dirty": now["code_dirty"],
                   "machine": now["machine"], "resumed": []}
        if claims_sha:
            started["claims_sha256"] = claims_sha
        args = command[1:]
    else:
        started["resumed"].append({"utc": now["utc"], "code_commit": now["code_commit"],
                                   "code_dirty": now["code_dirty"], "from_step": step,
                                   "machine": now["machine"]})
        args = ["--resume", str(raw), "--no-progress"]
    atomic_write_bytes(started_file, (json.dumps(started, indent=2) + "\n").encode())
    return args, started


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[2] != "asgan-train":
        print("usage: python -m probes.study.task RAW CLAIMS_SHA asgan-train ARGS...",
              file=sys.stderr)
        return 2
    raw, claims_sha, command = Path(argv[0]), argv[1], argv[2:]
    args, _ = start_facts(raw, command, claims_sha)
    print(f"# trainer: asgan-train {shlex.join(args)}", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "trainers", *args])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
