"""What ``asgan-study`` does with a plan (:mod:`probes.study.plan`): each run's state, sittings
that train what is missing and ship each finished run, the claims' registration, and the
plan table.

A sitting trains what is missing: a run whose shipped files are all in the plan's manifest
with a matching SHA-256 is skipped. The runs go to a launcher (:mod:`probes.study.launchers`:
a local pool, or SLURM) as :class:`~probes.study.launchers.Task` objects, each one a
``python -m probes.study.task`` that records the run's start facts and then becomes
``asgan-train`` (fresh, or ``--resume`` of the raw run). Raw runs live in the plan's ``raw``
folder (resumable, with optimizer state; not shipped); as EACH run finishes, its shipped copy
is written atomically to ``<ship>/<group>/<arm>/seed<k>/`` (the final snapshot, and for an
evolution run every ``every`` iterations, optimizer state dropped, float16 weights:
:func:`trainers.checkpoint.export_snapshot`) and its manifest entries are added, the final
snapshot's last, so a run is never half-listed as done. ``--max-minutes`` or SIGTERM ends a
sitting cleanly: nothing starts any more, a run still training gets one SIGTERM, writes a
snapshot of its current step and exits; the next sitting resumes it. Each run's
``code_commit`` and ``started_utc`` are taken when it STARTS (``started.json`` in the raw
run), not when it is shipped; a resumed run keeps them and records every resume.

Plans with per-run results (:mod:`probes.study.plan`: ``measure_every``,
``ship_weights_seeds``, ``nonfinite``): when such a run finishes, the controller (the sitting,
the one writer) measures its kept raw snapshots (:mod:`probes.study.snapshots`; the launcher
waits meanwhile), writes ``results.json`` beside the shipped copy (numbers per step, outcome,
the final weights' SHA-256), lists it in the manifest after the run's weights (when it ships
any; its entry marks the run done) and prunes the raw run to its last snapshot. A run that
stops on a non-finite value under ``nonfinite = "outcome"`` is shipped the same way with
outcome ``nonfinite`` and not retried. :func:`verify` (``asgan-study verify``) retrains one
run from its recorded command at its recorded commit and compares the weights' SHA-256.

Registration (``asgan-study register``): for claims written in the plan, freezes them by
writing ``<ship>/REGISTRATION.json`` (the SHA-256 of each claim and of all of them, the code
commit, the time) and refuses once any run of the plan has started. Every run started after it
records the registered hash; a claim edited afterwards makes the plan fail to load, naming the
claim's line. A claim is judged primary only when every run it judges started after the
registration with that hash (:func:`registration_state`). Claims kept in a separate file
(``[claims] file``) follow the git rule of :func:`probes.study.claims.registration`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asgan_base.errors import UserError
from probes.study.launchers import Task, launcher
from probes.study.plan import Plan, Run, load_plan

CODE_ROOT = Path(__file__).resolve().parents[2]  # the checkout that trains
TRAINING_CODE = ("trainers", "probes/study", "pyproject.toml")  # what decides what trains
REGISTRATION = "REGISTRATION.json"
RESULTS = "results.json"
NONFINITE_MARK = "training diverged: non-finite"  # asgan-train's on_nonfinite=stop message


# ---- git facts, taken when a run starts


def _git(*args: str) -> str:
    res = subprocess.run(["git", "-C", str(CODE_ROOT), *args], capture_output=True, text=True)
    # trailing newline only: a leading blank is data (porcelain's " M path" status column)
    return res.stdout.rstrip() if res.returncode == 0 else ""


def code_state() -> dict[str, Any]:
    """``{"code_commit": HEAD (40 hex, "unknown" without git), "code_dirty": [paths]}``: the
    training code's uncommitted changes (:data:`TRAINING_CODE`) at this moment; edits
    elsewhere do not change what trains."""
    dirty = _git("status", "--porcelain", "--", *TRAINING_CODE)
    return {"code_commit": _git("rev-parse", "HEAD") or "unknown",
            "code_dirty": sorted(line[3:] for line in dirty.splitlines() if line.strip())}


def machine_facts() -> dict[str, Any]:
    """What decides a CPU run's floating-point path besides the code: torch's version, the
    vector ISA its kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``: AVX2,
    AVX512, ...) and the CPU model. Weights are bit-reproducible only where these match: a
    verify on another machine that differs says little about the code."""
    import platform

    import torch

    model = platform.processor()
    try:
        model = next((line.split(":", 1)[1].strip() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), model)
    except OSError:
        pass
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_model": model or "unknown"}


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- state of a run


def raw_step_of(raw: Path) -> int:
    """Step of the newest complete snapshot in the raw run folder ``raw`` (0: none)."""
    from probes.io.edge import list_snapshots

    snaps = list_snapshots(raw)
    return int(snaps[-1].stem[5:]) if snaps else 0


def raw_step(plan: Plan, run: Run) -> int:
    return raw_step_of(plan.root / plan.raw_dir(run))


def weight_rels(plan: Plan, run: Run) -> list[str]:
    """The shipped snapshots of ``run`` (none for a run that ships no weights), relative to
    the root (the manifest's paths), the final one last."""
    from probes.io.edge import snapshot_name

    return [f"{plan.ship}/{run.name}/{snapshot_name(s)}" for s in plan.shipped_steps(run)]


def results_rel(plan: Plan, run: Run) -> str | None:
    """The results file of ``run`` (:meth:`Plan.has_results`), or None."""
    return f"{plan.ship}/{run.name}/{RESULTS}" if plan.has_results(run) else None


def ship_rels(plan: Plan, run: Run) -> list[str]:
    """The shipped files of ``run`` that the manifest lists, in the order they are recorded:
    the snapshots, then the results file (when the plan gives the run one)."""
    res = results_rel(plan, run)
    return weight_rels(plan, run) + ([res] if res else [])


def read_results(plan: Plan, run: Run) -> dict[str, Any] | None:
    """The shipped results file of ``run`` (SHA-256 checked against the manifest), or None."""
    from asgan_base.manifest import read_manifest

    rel = results_rel(plan, run)
    if rel is None or not _sha_ok(plan.root, rel, read_manifest(plan.manifest)):
        return None
    return json.loads((plan.root / rel).read_text())


def _sha_ok(root: Path, rel: str, entries: Mapping) -> bool:
    from asgan_base.files import sha256_file

    f, e = root / rel, entries.get(rel)
    return e is not None and f.is_file() and f.stat().st_size == e["bytes"] and \
        sha256_file(f) == e["sha256"]


def is_shipped(plan: Plan, run: Run, entries: Mapping) -> bool:
    """Every shipped file of ``run`` is in the manifest with a matching size and SHA-256 (a
    run whose outcome is ``nonfinite`` has only its results file)."""
    res = results_rel(plan, run)
    if res is not None:
        if not _sha_ok(plan.root, res, entries):
            return False
        if entries[res].get("outcome") == "nonfinite":
            return True
    return all(_sha_ok(plan.root, rel, entries) for rel in weight_rels(plan, run))


def started(plan: Plan) -> list[str]:
    """The runs of ``plan`` that have begun (start facts in the raw folder, or a manifest
    entry of the study)."""
    from asgan_base.manifest import read_manifest

    names = {r.name for r in plan.runs()
             if (plan.root / plan.raw_dir(r) / "started.json").is_file()}
    for e in read_manifest(plan.manifest).values():
        if e.get("study") == plan.name and "arm" in e:
            names.add(f"{e['group']}/{e['arm']}/seed{e['seed']}")
    return sorted(names)


# ---- registration


def registration_file(plan: Plan) -> Path:
    return plan.root / plan.ship / REGISTRATION


def load(path: str | Path, root: str | Path | None = None) -> Plan:
    """:func:`probes.study.plan.load_plan`, and for a registered plan the check that no claim
    changed since ``asgan-study register`` (a changed one fails naming its line)."""
    plan = load_plan(path, root)
    reg = registration_file(plan)
    if plan.claims()["registration"] != "asgan-study" or not reg.is_file():
        return plan
    frozen = json.loads(reg.read_text())["claims_sha256"]
    now = plan.claim_hashes()
    for cid in sorted(set(frozen) | set(now)):
        if cid != "*" and frozen.get(cid) != now.get(cid):
            what = "was added" if cid not in frozen else (
                "was removed" if cid not in now else "changed")
            at = plan.line_of("claim", "id", cid) if cid in now else plan.line_of("claim")
            raise UserError(f"{plan.path}:{at}: claim {cid} {what} after the claims were "
                            f"registered ({reg}); registered claims cannot change: restore it "
                            "or start a new study")
    if frozen.get("*") != now["*"]:
        raise UserError(f"{plan.path}:{plan.line_of('claims', 'alpha')}: the claims' alpha "
                        f"changed after they were registered ({reg})")
    return plan


def register(plan: Plan) -> dict[str, Any]:
    """Freeze ``plan``'s inline claims (module docstring); returns the registration record.

    Raises:
        asgan_base.errors.UserError: the claims live in a separate file (registered by git), a
            run of the plan has started, or the plan is registered already.
    """
    from asgan_base.files import atomic_write_bytes
    from asgan_base.manifest import record

    if plan.claims()["registration"] != "asgan-study":
        raise UserError(f"{plan.path}: the claims come from "
                        f"{plan.data['claims']['file']!r}, registered by committing that file "
                        "before the runs (probes.study.claims.registration); nothing to do")
    if not plan.claims()["claims"]:
        raise UserError(f"{plan.path}: no [[claim]] to register")
    reg = registration_file(plan)
    if reg.is_file():
        raise UserError(f"{plan.path}: already registered ({reg})")
    begun = started(plan)
    if begun:
        raise UserError(f"{plan.path}: {len(begun)} run(s) of the plan have started "
                        f"({begun[0]}, ...): claims must be registered before any run")
    body = {"plan": plan.path.name, "registered_utc": utc_now(), **code_state(),
            "claims_sha256": plan.claim_hashes(), "claims": plan.claims()["claims"]}
    atomic_write_bytes(reg, (json.dumps(body, indent=2) + "\n").encode())
    record(reg, command=f"asgan-study register {plan.path.name}", path=plan.manifest,
           root=plan.root, study=plan.name)
    return body


def registration_state(plan: Plan, entries: list[Mapping]) -> dict[str, Any]:
    """Whether ``plan``'s claims were registered before the runs they judge, in the form of
    :func:`probes.study.claims.registration` (``entries``: manifest entries of the runs
    measured). Inline claims: every judged entry records the registered ``claims_sha256``
    and started no earlier than the registration."""
    from probes.study.claims import registration

    claims = plan.claims()
    if claims["registration"] == "git":
        return registration(claims["path"], entries, claims=claims)
    judged_pairs = {(g, arm) for c in claims["claims"] for g in (c.get("groups") or
                                                                  [c["group"]])
                    for arm in (c["a"], c["b"])}
    judged = [e for e in entries if (e.get("group"), e.get("arm")) in judged_pairs]
    out = {"claims_commit": "unknown", "code_commits": sorted(
        {str(e.get("code_commit") or "unknown") for e in judged}), "checkpoints": len(judged),
        "code_dirty": {str(e["path"]): list(e["code_dirty"]) for e in judged
                       if e.get("code_dirty")}, "primary_allowed": False, "reason": ""}
    reg = registration_file(plan)
    if not reg.is_file():
        out["reason"] = f"the claims are not registered (asgan-study register {plan.path.name})"
        return out
    r = json.loads(reg.read_text())
    out["claims_commit"] = r.get("code_commit", "unknown")
    for e in judged:
        if e.get("claims_sha256") != r["claims_sha256"]["*"]:
            out["reason"] = (f"{e.get('path')}: its run did not start under the registered "
                             "claims")
            return out
        if e.get("started_utc", "") < r["registered_utc"]:
            out["reason"] = f"{e.get('path')}: its run started before the registration"
            return out
    if not judged:
        out["reason"] = "no run of an arm the claims name is measured"
        return out
    out["primary_allowed"] = True
    return out


# ---- one sitting


def task_for(plan: Plan, run: Run, claims_sha: str = "") -> Task:
    """The launcher task that trains (or resumes) ``run`` in the study's root, one thread."""
    return Task(name=run.name,
                argv=(sys.executable, "-m", "probes.study.task", plan.raw_dir(run), claims_sha,
                      *plan.command(run)),
                cwd=plan.root, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                                    "PYTHONPATH": str(CODE_ROOT)},
                log=plan.root / plan.raw / "logs" / f"{run.name.replace('/', '_')}.log")


def ship(plan: Plan, run: Run, *, outcome: str = "finished", stopped: str = "",
         say=print) -> list[str]:
    """Export ``run``'s shipped snapshots (float16, no optimizer state), copy its config and
    stats, write its results file (per-snapshot numbers, outcome, final weights' SHA-256)
    where the plan gives it one, then add the manifest entries (the final snapshot's, or the
    results file's, last). ``outcome``: ``finished``, or ``nonfinite`` (the trainer stopped
    on a non-finite value with the message ``stopped``: no weights are shipped, the numbers
    end at the last good snapshot). Returns the shipped paths."""
    from asgan_base.files import atomic_write_bytes
    from asgan_base.manifest import record
    from probes.io.edge import (
        export_snapshot,
        read_checkpoint,
        snapshot_name,
    )

    raw = plan.root / plan.raw_dir(run)
    if not (raw / "started.json").is_file():
        raise UserError(f"{raw} has no started.json (when and at which commit the run began): "
                        "it cannot be registered; delete the folder to train it again")
    facts = json.loads((raw / "started.json").read_text())
    dest = plan.root / plan.ship / run.name
    for name in ("config.json", "stats.jsonl"):
        if (raw / name).is_file() or outcome == "finished":
            atomic_write_bytes(dest / name, (raw / name).read_bytes())
    steps = [] if outcome == "nonfinite" else plan.shipped_steps(run)
    extra = {"claims_sha256": facts["claims_sha256"]} if "claims_sha256" in facts else {}
    res_rel = results_rel(plan, run)
    if res_rel is not None:  # measured before any weights are shipped: measuring takes
        # minutes, and a sitting stopped meanwhile must leave no weights without their entries
        body, snaps, last_meta = _results_body(plan, run, raw, outcome, stopped,
                                               [snapshot_name(s) for s in steps], say)
    written = [export_snapshot(raw / snapshot_name(s), dest / snapshot_name(s), half=True,
                               facts={"exported": "asgan-study: optimizer state dropped, "
                                                  "float16 weights"})
               for s in steps]
    for out in written:  # the final snapshot is last: its entry marks the run as shipped
        _, meta = read_checkpoint(out)
        record(out, command=facts["command"], path=plan.manifest, root=plan.root,
               seed=run.seed, steps=meta["step"], group=run.group, arm=run.arm,
               study=plan.name, tier=run.tier,
               wall_time_s=round(float(meta.get("wall_time_s", 0.0)), 1),
               code_commit=facts["code_commit"], started_utc=facts["started_utc"],
               code_dirty=facts["code_dirty"], resumed=facts["resumed"], **extra,
               machine=facts.get("machine"),
               shipped_utc=utc_now(), threads=1, stored_dtype=meta["stored_dtype"],
               torch=meta.get("torch"))
    if res_rel is not None:  # the results file is last of all: its entry marks the run done
        _ship_results(plan, run, res_rel, body, facts, extra, last_meta, bool(written))
        for s, p in snaps.items():  # measured: the raw run keeps its last snapshot only
            if s != body["final_step"]:
                p.unlink(missing_ok=True)
    return [p.relative_to(plan.root).as_posix() for p in written] + (
        [res_rel] if res_rel else [])


def _results_body(plan: Plan, run: Run, raw: Path, outcome: str, stopped: str,
                  shipped: list[str], say) -> tuple[dict, dict, dict]:
    """The results file of ``run`` (module docstring of :mod:`probes.study.plan`): its
    measured snapshots' numbers, outcome and final weights' digest; ``shipped``: the file
    names of the snapshots it ships. Returns the body, the raw snapshots ``{step: path}``
    and the last one's metadata."""
    from probes.io.edge import list_snapshots, read_checkpoint
    from probes.study import snapshots

    snaps = {int(p.stem[5:]): p for p in list_snapshots(raw)}
    if not snaps:
        raise UserError(f"{raw}: no snapshot to record (the run stopped before its first "
                        "snapshot); delete the folder to train it again")
    last = max(snaps)
    kind, metrics = plan.groups[run.group]["measure"], plan.measure_metrics(run)
    final = plan.final_metrics(run)
    nums = {}
    for s in snapshots.measured_steps(list(snaps), plan.measure_every(run), last):
        say(f"measuring {run.name} step {s}")
        nums[str(s)] = snapshots.numbers(snaps[s], kind, metrics + final * (s == last))
    _, last_meta = read_checkpoint(snaps[last])
    body = {"run": run.name, "study": plan.name, "outcome": outcome,
            "planned_steps": plan.steps(run), "final_step": last,
            "weights_sha256": snapshots.weights_sha256(snaps[last]),
            "weights_sha256_of": "trainers.checkpoint.tensor_digest of the G.* and D.* "
                                 "float32 tensors of the final (or last good) raw snapshot",
            "weights_shipped": list(shipped),
            "stopped": stopped or None, "measure_every": plan.measure_every(run),
            "measure": dict(snapshots.settings(kind), kind=kind, metrics=metrics,
                            final_metrics=final),
            "numbers": nums}
    return body, snaps, last_meta


def _ship_results(plan: Plan, run: Run, res_rel: str, body: dict, facts: dict, extra: dict,
                  last_meta: dict, weights: bool) -> None:
    """Write the results file and its manifest entry (the entry that marks the run done)."""
    from asgan_base.files import atomic_write_bytes
    from asgan_base.manifest import record

    atomic_write_bytes(plan.root / res_rel, (json.dumps(body, indent=1) + "\n").encode())
    record(plan.root / res_rel, command=facts["command"], path=plan.manifest,
           root=plan.root, seed=run.seed, steps=body["final_step"], group=run.group,
           arm=run.arm, study=plan.name, tier=run.tier,
           wall_time_s=round(float(last_meta.get("wall_time_s", 0.0)), 1),
           code_commit=facts["code_commit"], started_utc=facts["started_utc"],
           code_dirty=facts["code_dirty"], resumed=facts["resumed"], **extra,
           machine=facts.get("machine"),
           shipped_utc=utc_now(), threads=1, torch=last_meta.get("torch"),
           outcome=body["outcome"], weights_sha256=body["weights_sha256"],
           weights_shipped=weights)


def write_plan(plan: Plan) -> Path:
    """``<ship>/PLAN.json`` (:meth:`Plan.plan_json`), rewritten only when it changed, and its
    manifest entry, recorded only when missing or stale."""
    from asgan_base.files import atomic_write_bytes
    from asgan_base.manifest import read_manifest, record

    path = plan.root / plan.ship / "PLAN.json"
    text = plan.plan_json()
    if not path.is_file() or path.read_text() != text:
        atomic_write_bytes(path, text.encode())
    rel = path.relative_to(plan.root).as_posix()
    if not _sha_ok(plan.root, rel, read_manifest(plan.manifest)):
        record(path, command=f"asgan-study run {plan.path.name}", path=plan.manifest,
               root=plan.root, study=plan.name)
    return path


@contextlib.contextmanager
def _sole_sitting(plan: Plan):
    """One sitting at a time per study (a second would train the same runs twice)."""
    lock = plan.root / plan.raw / ".sitting.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another asgan-study sitting holds {lock}") from None
        yield


def sitting(plan: Plan, runs: list[Run] | None = None, *, launcher_name: str = "local",
            options: Mapping[str, Any] | None = None, max_minutes: float | None = None,
            should_stop: Callable[[], bool] | None = None, say=print) -> dict[str, list[str]]:
    """Train and ship every run of ``runs`` (default: the whole plan) not yet shipped, through
    the launcher ``launcher_name`` with its ``options``; returns ``{"shipped", "interrupted",
    "not_started", "failed", "skipped"}`` (lists of run names). ``should_stop()`` ends the
    sitting as the deadline does."""
    from asgan_base.manifest import read_manifest

    runs = plan.runs() if runs is None else runs
    run_launcher = launcher(launcher_name)
    deadline = None if max_minutes is None else time.time() + 60 * max_minutes
    result: dict[str, list[str]] = {k: [] for k in ("shipped", "interrupted", "not_started",
                                                    "failed", "skipped")}

    def stopping() -> bool:
        return (deadline is not None and time.time() >= deadline) or \
            bool(should_stop and should_stop())

    claims = plan.claims()
    reg = registration_file(plan)
    claims_sha = plan.claim_hashes()["*"] if claims["registration"] == "asgan-study" and \
        reg.is_file() else ""
    with _sole_sitting(plan):
        dirty = code_state()["code_dirty"]
        if dirty:
            say(f"warning: uncommitted changes in {', '.join(dirty)}: runs started now record "
                "them (code_dirty); commit first for runs the claims can be judged on")
        if claims["registration"] == "asgan-study" and claims["claims"] and not claims_sha:
            say("warning: the claims are not registered (asgan-study register): runs started "
                "now cannot judge them as primary")
        write_plan(plan)
        entries = read_manifest(plan.manifest)
        by_name, tasks = {r.name: r for r in runs}, []
        for r in runs:
            if is_shipped(plan, r, entries):
                result["skipped"].append(r.name)
            elif raw_step(plan, r) >= plan.steps(r):  # trained, not shipped: ship now
                _finish(plan, r, 0, result, say)
            else:
                tasks.append(task_for(plan, r, claims_sha))
        if result["skipped"]:
            say(f"{len(result['skipped'])} runs already shipped (manifest, SHA-256): skipped")
        if stopping():
            tasks, result["not_started"] = [], [t.name for t in tasks]
        seen: set[str] = set()
        try:
            for task, rc in run_launcher(tasks, stop=stopping, **(options or {})):
                seen.add(task.name)
                _finish(plan, by_name[task.name], rc, result, say)
        except KeyboardInterrupt:  # stopped while shipping: the launcher has stopped its tasks
            say("sitting stopped: the interrupted runs resume next sitting")
        for t in tasks:
            if t.name not in seen:
                result["not_started"].append(t.name)
    return result


def nonfinite_stop(plan: Plan, run: Run) -> str:
    """The trainer's non-finite stop message in the last lines of ``run``'s task log ("" when
    its last attempt did not stop on a non-finite value)."""
    log = plan.root / plan.raw / "logs" / f"{run.name.replace('/', '_')}.log"
    lines = log.read_text().strip().splitlines() if log.is_file() else []
    for line in reversed(lines[-5:]):
        if line.startswith("# "):  # the header of the last attempt: nothing after it
            break
        if NONFINITE_MARK in line:
            return line.split("error: ", 1)[-1].strip()
    return ""


def _finish(plan: Plan, run: Run, rc: int, result: dict, say) -> None:
    done = raw_step(plan, run) >= plan.steps(run)
    stopped = nonfinite_stop(plan, run) if rc == 2 and plan.nonfinite_outcome(run) else ""
    if (rc == 0 and done) or stopped:
        try:
            ship(plan, run, outcome="nonfinite" if stopped else "finished", stopped=stopped,
                 say=say)
        except UserError as e:  # the other runs go on; this one is reported
            result["failed"].append(run.name)
            say(f"FAILED to ship {run.name}: {e}")
            return
        result["shipped"].append(run.name)
        if stopped:
            result.setdefault("nonfinite", []).append(run.name)
            say(f"shipped {run.name}: outcome nonfinite ({stopped[:160]})")
        else:
            say(f"shipped {run.name}")
    elif rc in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        result["interrupted"].append(run.name)
        say(f"interrupted {run.name} at step {raw_step(plan, run)}: resumes next sitting")
    else:
        log = plan.root / plan.raw / "logs" / f"{run.name.replace('/', '_')}.log"
        tail = log.read_text().strip().splitlines()[-1:] if log.is_file() else []
        result["failed"].append(run.name)
        say(f"FAILED {run.name} (exit {rc}): {' '.join(tail)[:300]}")


# ---- the plan table


# a results-file run's shipped record besides weights: stats.jsonl lines (the shipped
# study's: 208 bytes each; AS-GAN arms log a few more fields), config.json and the results
# file's frame and one row per measured snapshot
LOG_LINE_BYTES, RECORD_BYTES, ROW_BYTES = 260, 2500, 200


def est_bytes(plan: Plan, run: Run, header: int = 4608) -> int:
    """Shipped bytes of ``run``: its nets' tensors as :func:`trainers.checkpoint.
    export_snapshot` stores them (float16 at >= HALF_MIN_NUMEL values, else their own dtype)
    plus ``header`` (the JSON header of a real export: 4,560 bytes for a pilot's), times
    the snapshots shipped; for a run with a results file, its log, config and results too
    (:data:`LOG_LINE_BYTES` ...)."""
    record = 0
    if plan.has_results(run):
        steps, every = plan.steps(run), plan.measure_every(run)
        log_every = int(plan.options(run).get("log-every", plan.config(run).log_every))
        record = RECORD_BYTES + steps // max(log_every, 1) * LOG_LINE_BYTES + (
            (steps // every + 1) * ROW_BYTES if every else 0)
    if not plan.shipped_steps(run):
        return record
    import torch

    from probes.io.edge import HALF_MIN_NUMEL, build_net, config_specs, load_dataset

    cfg = plan.config(run)
    ds = load_dataset(cfg.data, resolution=cfg.resolution, n=256)
    total = 0
    for spec in config_specs(cfg, ds.shape):
        with torch.device("meta"):
            net = build_net(spec)
        for t in net.state_dict().values():
            small = t.numel() < HALF_MIN_NUMEL or t.dtype != torch.float32
            total += t.numel() * (t.element_size() if small else 2)
    return (total + header) * len(plan.shipped_steps(run)) + record


def table(plan: Plan, runs: list[Run] | None = None) -> tuple[list[dict], dict]:
    """One row per run (work order) with its command, estimated cost, shipped size and state
    (shipped / at step k / todo), and the totals."""
    from asgan_base.manifest import read_manifest

    runs = plan.runs() if runs is None else runs
    entries = read_manifest(plan.manifest)
    rows, secs, mb = [], 0.0, 0.0
    sizes: dict[tuple, int] = {}
    for r in runs:
        key = (r.group, r.arm, plan.evolution_every(r), plan.ships_weights(r))
        if key not in sizes:
            sizes[key] = est_bytes(plan, r)
        s, b = plan.est_seconds(r), sizes[key] / 1e6
        secs, mb = secs + s, mb + b
        step = raw_step(plan, r)
        state = "shipped" if is_shipped(plan, r, entries) else (
            f"at step {step}" if step else "todo")
        rows.append({"run": r, "steps": plan.steps(r), "est_s": s, "mb": b,
                     "ships": "weights" if plan.ships_weights(r) else "numbers",
                     "cum_h": secs / 3600 / plan.jobs, "cum_mb": mb, "state": state,
                     "command": shlex.join(plan.command(r))})
    return rows, {"runs": len(runs), "cpu_h": secs / 3600,
                  "wall_h": secs / 3600 / plan.jobs, "mb": mb}


def print_table(plan: Plan, runs: list[Run] | None = None, *, commands: bool = False,
                say=print) -> None:
    rows, tot = table(plan, runs)
    budget = plan.budget_mb
    # plans with results files say per run what ships (the shipped study's table is unchanged)
    ships = any(plan.has_results(row["run"]) for row in rows)
    say(f"est min: one run's wall minutes beside {plan.jobs - 1} other run(s) (1 thread "
        f"each); cum h: hours of the machine at {plan.jobs} jobs up to this run\n")
    say(f"{'#':>3} {'tier':<12} {'run':<36} {'steps':>5} {'est min':>7} {'MB':>5} "
        f"{'cum h':>6} {'cum MB':>6}  state")
    for i, row in enumerate(rows):
        r = row["run"]
        over = " >budget" if budget is not None and row["cum_mb"] > budget else ""
        say(f"{i + 1:>3} {r.tier:<12} {r.name:<36} {row['steps']:>5} "
            f"{row['est_s'] / 60:>7.1f} {row['mb']:>5.2f} {row['cum_h']:>6.2f} "
            f"{row['cum_mb']:>6.1f}  {row['state']}{over}"
            + (f"  [{row['ships']}]" if ships else ""))
        if commands:
            say("    " + row["command"])
    say(f"\ntotal: {tot['runs']} runs, {tot['cpu_h']:.1f} CPU hours (1 thread per run; "
        f"{tot['wall_h']:.1f} h at {plan.jobs} jobs), {tot['mb']:.1f} MB shipped"
        + (f"; budget {budget:g} MB{' (OVER)' if tot['mb'] > budget else ''}"
           if budget is not None else ""))
    if ships:
        n_w = sum(row["ships"] == "weights" for row in rows)
        say(f"ships: weights for {n_w} run(s); for the other {len(rows) - n_w} its numbers, "
            "log and the SHA-256 of its final weights (asgan-study verify retrains one)")


def select(plan: Plan, only: str | None) -> list[Run]:
    """The plan's runs, or those of ``only`` (comma-separated GROUP or GROUP/ARM)."""
    runs = plan.runs()
    if not only:
        return runs
    keys = [k.strip() for k in only.split(",") if k.strip()]
    known = {r.group for r in runs} | {f"{r.group}/{r.arm}" for r in runs}
    bad = [k for k in keys if k not in known]
    if bad:
        raise UserError(f"--only {','.join(bad)}: not in the plan (groups: "
                        f"{', '.join(sorted({r.group for r in runs}))}; or GROUP/ARM)")
    return [r for r in runs if r.group in keys or f"{r.group}/{r.arm}" in keys]


# ---- measuring and reporting any plan


def shipped_finals(plan: Plan, entries: Mapping | None = None
                   ) -> dict[str, dict[str, dict[int, str]]]:
    """``{group: {arm: {seed: manifest path of the final snapshot}}}`` of the plan's shipped
    runs that ship weights (SHA-256 checked), in plan order."""
    from asgan_base.manifest import read_manifest

    entries = read_manifest(plan.manifest) if entries is None else entries
    out: dict[str, dict[str, dict[int, str]]] = {}
    for r in plan.runs():
        if weight_rels(plan, r) and is_shipped(plan, r, entries) and (
                entries.get(results_rel(plan, r) or "", {}).get("outcome") != "nonfinite"):
            out.setdefault(r.group, {}).setdefault(r.arm, {})[r.seed] = weight_rels(plan,
                                                                                     r)[-1]
    return out


def measure_fingerprint() -> str:
    """SHA-256 of what a cached measurement depends on besides the checkpoint and settings:
    the source of the packages that measure (every ``.py`` of asgan_base, probes and
    trainers), the shipped classifiers that read the samples (FD, classes, Stacked-MNIST
    modes; by their manifest SHA-256, which ``load_classifier`` holds each file to) and
    torch's version. Over-inclusive on purpose: any code change re-measures, since a stale
    number costs more than minutes of CPU."""
    import hashlib

    import torch

    import asgan_base
    import probes
    from asgan_base.errors import UserError
    from asgan_base.manifest import read_manifest
    from probes.adapters.classifier import SHIPPED_FOR
    from probes.io.edge import TRAINERS_DIR

    h = hashlib.sha256(torch.__version__.encode())
    for top in (Path(asgan_base.__file__).parent, Path(probes.__file__).parent, TRAINERS_DIR):
        for f in sorted(top.rglob("*.py")):
            h.update(f"{top.name}/{f.relative_to(top).as_posix()}".encode())
            h.update(f.read_bytes())
    try:
        entries = read_manifest()
    except UserError:  # no checkpoints folder: no shipped classifier to measure with
        entries = {}
    for rel in sorted(SHIPPED_FOR.values()):
        h.update(f"{rel} {entries.get(rel, {}).get('sha256')}".encode())
    return h.hexdigest()


def measure(plan: Plan, out: str | Path, *, n_quality: int = 2000, n_stacked: int = 26_000,
            n_mixture: int = 2500, seed: int = 0, runs: list[Run] | None = None,
            say=print) -> dict:
    """The metrics of every shipped run of ``plan`` (final snapshot) through the group's
    measurement (:data:`probes.study.arms.MEASURES`), kept in ``out/measures.json`` keyed by
    the checkpoint's SHA-256 and settings, so a second call measures only new runs; the
    cache holds for one :func:`measure_fingerprint` (code, classifiers, torch) and is
    dropped when that changes. ``runs``: only these (default: every run of the plan).

    Returns ``{group: {arm: {seed: {metric: value}}}}``."""
    from asgan_base.files import atomic_write_bytes
    from asgan_base.manifest import read_manifest
    from probes.study.arms import MEASURES

    out = Path(out)
    cache_file = out / "measures.json"
    fingerprint = measure_fingerprint()
    kept = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    cache = kept.get("measures", {}) if kept.get("fingerprint") == fingerprint else {}
    entries = read_manifest(plan.manifest)
    kwargs = {"image": {"n_quality": n_quality, "seed": seed},
              "stacked": {"n": n_stacked, "seed": seed},
              "mixture": {"n": n_mixture, "seed": seed}}
    tables: dict = {}
    wanted = None if runs is None else {r.name for r in runs}
    for group, by_arm in shipped_finals(plan, entries).items():
        kind = plan.groups[group]["measure"]
        for arm, by_seed in by_arm.items():
            for s, rel in by_seed.items():
                if wanted is not None and f"{group}/{arm}/seed{s}" not in wanted:
                    continue
                key = f"{rel} {entries[rel]['sha256']} {json.dumps(kwargs[kind])}"
                if key not in cache:
                    say(f"measuring {group}/{arm}/seed{s}")
                    cache[key] = MEASURES[kind](plan.root / rel, **kwargs[kind])
                    atomic_write_bytes(cache_file, json.dumps(
                        {"fingerprint": fingerprint, "measures": cache}, indent=1).encode())
                tables.setdefault(group, {}).setdefault(arm, {})[s] = cache[key]
    return tables


def report_markdown(plan: Plan, tables: Mapping) -> tuple[str, dict]:
    """The report of any plan: what is trained of the plan, the claims tables (primary first;
    exact sign-flip tests, Holm across the primary claims) and per group the arms' means.
    Returns the markdown and the evaluated claims."""
    from asgan_base.manifest import read_manifest
    from probes.study.arms import MEASURED_AS
    from probes.study.claims import claims_markdown, evaluate_claims
    from probes.study.report import arms_markdown

    claims = plan.claims()
    entries = read_manifest(plan.manifest)
    measured = [entries[rel] for by_arm in shipped_finals(plan, entries).values()
                for by_seed in by_arm.values() for rel in by_seed.values()]
    reg = registration_state(plan, measured)
    planned = plan.planned_seeds()
    lines = [f"# {plan.name}: study report", "",
             f"Plan `{plan.path.name}`; every number is computed by `asgan-study report` from "
             f"the shipped runs in `{plan.ship}` (commands in `{plan.manifest.name}`).", "",
             "## Runs", ""]
    for g in plan.groups:
        have = tables.get(g, {})
        cells = [f"{a} {len(have.get(a, {}))}/{len(seeds)}"
                 for (gg, a), seeds in planned.items() if gg == g]
        lines.append(f"- **{g}** ({plan.groups[g]['preset']}, measure "
                     f"{plan.groups[g]['measure']}): trained and measured of planned: "
                     + ", ".join(cells) + ".")
    lines += ["", "## Claims", "", claims_markdown(tables, claims, reg, None, MEASURED_AS), ""]
    for g, table in tables.items():
        metrics = list(dict.fromkeys(c["metric"] for c in claims["claims"] if c["group"] == g))
        if not metrics:
            metrics = [k for k, v in next(iter(next(iter(table.values())).values())).items()
                       if isinstance(v, (int, float))][:6]
        lines += [f"## {g} arms (mean ± 95% CI half-width over seeds)", "",
                  *arms_markdown(table, metrics, list(plan.arms(g))), ""]
    return "\n".join(lines), evaluate_claims(tables, claims, reg, None) | {"registration": reg}


def write_report(plan: Plan, out: str | Path, **measure_kwargs: Any) -> Path:
    """Measure (:func:`measure`) and write ``out/report.md`` and ``out/claims.json``; a plan
    with a ``[report]`` table gets the full study report with its figures instead
    (:func:`probes.study.report.write_study_report`, what ``asgan-probe report`` writes)."""
    from asgan_base.files import atomic_write_bytes

    if "analysis" in plan.data:  # study v3's report: derived metrics from results files
        from probes.study.report import write_analysis_report

        return write_analysis_report(out, plan)
    if plan.data.get("report"):
        from probes.study.report import write_study_report

        return write_study_report(out, plan=plan, **measure_kwargs)
    out = Path(out)
    tables = measure(plan, out, **measure_kwargs)
    text, ev = report_markdown(plan, tables)
    atomic_write_bytes(out / "claims.json", json.dumps(ev, indent=1, default=float).encode())
    atomic_write_bytes(out / "report.md", text.encode())
    return out / "report.md"


# ---- regenerating one run


def find_run(plan: Plan, name: str) -> Run:
    """The planned run called ``name`` (``group/arm/seed<k>``)."""
    for r in plan.runs():
        if r.name == name:
            return r
    raise UserError(f"{name!r} is not a run of {plan.path.name} (runs are GROUP/ARM/seed<k>; "
                    f"asgan-study plan {plan.path.name} lists them)")


def _recorded(plan: Plan, run: Run) -> tuple[dict, str, str]:
    """``(manifest entry, recorded hash, what the hash is of)`` of a shipped ``run``."""
    from asgan_base.manifest import read_manifest
    from probes.io.edge import read_checkpoint

    entries = read_manifest(plan.manifest)
    res, finals = results_rel(plan, run), weight_rels(plan, run)
    if res is not None and res in entries:
        return (entries[res], str(entries[res].get("weights_sha256", "")),
                "weights_sha256: the float32 G and D tensors of the final raw snapshot")
    if finals and finals[-1] in entries:
        _, meta = read_checkpoint(plan.root / finals[-1])  # its tensors checked against it
        return (entries[finals[-1]], meta["sha256"],
                f"the shipped {meta['stored_dtype']} copy's tensor digest")
    raise UserError(f"{run.name} is not shipped (no manifest entry): nothing to verify")


def _code_tree(commit: str, dest: Path, any_commit: bool, notes: list[str]) -> Path:
    """The code to retrain with: this checkout when HEAD is ``commit`` with no uncommitted
    training code, else ``commit``'s training code exported by ``git archive`` into ``dest``
    (``any_commit``: this checkout whatever it is, when the commit is not in the repo)."""
    state = code_state()
    if state["code_commit"] == commit and not state["code_dirty"]:
        notes.append(f"code: this checkout, at the recorded commit {commit[:12]}")
        return CODE_ROOT
    known = subprocess.run(["git", "-C", str(CODE_ROOT), "cat-file", "-e",
                            f"{commit}^{{commit}}"], capture_output=True).returncode == 0
    if known:
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(CODE_ROOT), "archive", commit, "--",
                                  *TRAINING_CODE], capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        why = "has uncommitted training code" if state["code_commit"] == commit else \
            f"is {state['code_commit'][:12]}"
        notes.append(f"code: the recorded commit {commit[:12]} (git archive of "
                     f"{', '.join(TRAINING_CODE)}), because HEAD {why}")
        return dest
    if not any_commit:
        raise UserError(f"the run was trained at commit {commit[:12]}, which this repository "
                        f"does not have, and HEAD is {state['code_commit'][:12]}: fetch that "
                        "commit, or pass --any-commit to retrain with this checkout (a "
                        "'differs' then says nothing about the recorded code)")
    notes.append(f"WARNING code: this checkout at {state['code_commit'][:12]}"
                 f"{' with uncommitted training code' if state['code_dirty'] else ''}, NOT the "
                 f"recorded commit {commit[:12]} (--any-commit)")
    return CODE_ROOT


def verify(plan: Plan, run: Run, *, any_commit: bool = False, keep: str | Path | None = None,
           say=print) -> dict[str, Any]:
    """Retrain ``run`` from its recorded command in a temporary folder (``keep``: in this
    folder, kept) with its recorded commit's code (:func:`_code_tree`), one thread as a
    sitting trains, and compare the SHA-256 of its final (for a ``nonfinite`` outcome, last
    good) weights with the recorded one: the results file's ``weights_sha256``, or for a run
    without one the shipped copy's tensor digest (the retrained snapshot exported the same
    way). Returns ``{"run", "identical", "recorded", "retrained", "compared", "notes"}``."""
    import tempfile

    entry, recorded, compared = _recorded(plan, run)
    outcome = entry.get("outcome", "finished")
    argv = shlex.split(entry["command"])
    if argv[:1] != ["asgan-train"] or "--out" not in argv:
        raise UserError(f"{run.name}: the recorded command is not an asgan-train run: "
                        f"{entry['command'][:100]}")
    notes = _verify_notes(entry)
    work = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="asgan-verify-"))
    if keep is not None and work.exists() and any(work.iterdir()):
        raise UserError(f"--keep {work}: not empty; name a new folder")
    try:
        code = _code_tree(str(entry.get("code_commit", "unknown")), work / "code", any_commit,
                          notes)
        for n in notes:
            say(n)
        ended, tail = _retrain(plan, run, argv, code, work, say)
        retrained = _retrained_digest(plan, run, entry, work, ended, tail, compared, notes,
                                      say)
    finally:
        if keep is None:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return {"run": run.name, "identical": bool(retrained) and retrained == recorded,
            "recorded": recorded, "retrained": retrained, "compared": compared,
            "outcome": outcome, "notes": notes}


def _verify_notes(entry: Mapping) -> list[str]:
    """What :func:`verify` says before retraining: an uncommitted or resumed run, and
    whether the run's machine is this one."""
    notes: list[str] = []
    if entry.get("code_dirty"):
        notes.append(f"WARNING the run started with uncommitted training code "
                     f"({', '.join(entry['code_dirty'])}): its commit is not all that trained it")
    if entry.get("resumed"):
        notes.append(f"note: the run was resumed {len(entry['resumed'])} time(s); the retrain "
                     "runs uninterrupted")
    here, there = machine_facts(), entry.get("machine")
    if there is None:
        notes.append(f"note: the run's machine was not recorded; here: {here['cpu_model']}, "
                     f"{here['cpu_capability']}, torch {here['torch']} (CPU kernels differ by "
                     "vector ISA, so a difference may be the machine's, not the code's)")
    elif there != here:
        notes.append(f"WARNING another machine: recorded {there}, here {here}; a difference "
                     "may be the machine's, not the code's")
    return notes


def _retrain(plan: Plan, run: Run, argv: list[str], code: Path, work: Path, say
             ) -> tuple[str, list[str]]:
    """Train ``argv`` into ``work/run`` with the code tree ``code``, one thread; returns how
    it ended (``finished``, ``nonfinite`` or ``exit N``) and its log's last line."""
    out = work / "run"
    argv = list(argv)
    argv[argv.index("--out") + 1] = str(out)
    say(f"retraining {run.name}: {shlex.join(argv)}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(code)}
    with open(work / "train.log", "w") as log:
        # the code tree first on sys.path: `python -m` would put the study's root (cwd)
        # first, whose own trainers/ (the repository's, at HEAD) would then train
        boot = (f"import runpy, sys; sys.path.insert(0, {str(code)!r}); "
                "runpy.run_module('trainers', run_name='__main__', alter_sys=True)")
        rc = subprocess.run([sys.executable, "-c", boot, *argv[1:]], cwd=plan.root,
                            env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    tail = (work / "train.log").read_text().strip().splitlines()[-1:]
    ended = "nonfinite" if rc == 2 and tail and NONFINITE_MARK in tail[0] else (
        "finished" if rc == 0 else f"exit {rc}")
    return ended, tail


def _retrained_digest(plan: Plan, run: Run, entry: Mapping, work: Path, ended: str,
                      tail: list[str], compared: str, notes: list[str], say) -> str:
    """The retrained run's digest, comparable with the recorded one ("" when the retrain
    did not end as the record says; a note says how it ended)."""
    from probes.io.edge import export_snapshot, list_snapshots, read_checkpoint
    from probes.study import snapshots

    outcome = entry.get("outcome", "finished")
    snaps = list_snapshots(work / "run")
    if ended == outcome and snaps and int(snaps[-1].stem[5:]) == int(entry["steps"]):
        if compared.startswith("weights_sha256"):
            return snapshots.weights_sha256(snaps[-1])
        half = read_checkpoint(plan.root / weight_rels(plan, run)[-1])[1][
            "stored_dtype"] == "float16"
        exp = export_snapshot(snaps[-1], work / "export.safetensors", half=half)
        return read_checkpoint(exp)[1]["sha256"]
    notes.append(f"the retrain ended {ended} at step "
                 f"{snaps[-1].stem[5:] if snaps else 'none'}; the record says "
                 f"{outcome} at step {entry['steps']} ({' '.join(tail)[:200]})")
    say(notes[-1])
    return ""
