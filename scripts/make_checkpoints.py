"""Regenerate the study's shipped checkpoints (study v2, issue 15), resumably and in sittings.

The plan is data (:data:`GROUPS`, :data:`ARMS`, :data:`TIERS`): groups, arms as
``asgan-train`` options, seeds. Every run is an ordinary ``asgan-train`` command (recorded
verbatim in the manifest); arms are paired by seed (same initialisation, data order and
latents, all derived from the seed); every run trains on the dataset's train part
(``split=train``), so the probes' held-out reals were never seen by D.

The work is ordered (item 7 of the issue): the arms of the primary claims first (seed-major,
so an interrupted plan leaves complete seed pairs), then the compute-matched controls, then the
rest, and last the two arms to drop first if the budget forces a choice (the second AS-GAN eps
and the one-step R1 arm). ``--list`` prints that order with each run's estimated cost (from
the pilot's measured time and a per-arm cost factor) and shipped size.

A sitting trains what is missing: a run whose shipped files are all in
``checkpoints/MANIFEST.json`` with a matching SHA-256 is skipped. Runs go two at a time
(``--jobs``), one thread each, at ``nice`` 10. Raw runs live in ``runs/study-v2/`` (ignored by
git); after EACH finished run its shipped copy is written atomically to
``checkpoints/shipped/v2/<group>/<arm>/seed<k>/`` (the final snapshot, and for the evolution
pair every 700 iterations, with the optimizer state dropped and float16 weights:
:func:`trainers.checkpoint.export_snapshot`) and its manifest entries are added, the final
snapshot's last, so a run is never half-listed as done. ``--max-minutes M`` ends the sitting
cleanly: no run starts after M minutes, and a run still training then gets SIGTERM, writes a
snapshot of its current step and exits; the next sitting resumes it (``asgan-train
--resume``). Each run's ``code_commit`` (HEAD) and ``started_utc`` are taken when the run
STARTS (``runs/study-v2/.../started.json``), not when it is shipped: the claims' registration
rule (:func:`probes.study.claims.registration`) depends on it. A resumed run keeps them and
records every resume (``resumed``: utc, commit, step).

The new study is shipped beside the old one (entries with ``"study": "v2"``; the old ones carry
no field) and ``checkpoints/shipped/v2/PLAN.json`` (in the manifest) says what the plan holds.
``probes.study.arms.shipped_runs(group)`` switches a group to v2 once v2's baseline and main
arm have seed 0 (:func:`probes.study.arms.study_in_use`); from then on the v1 files of that
group are dead weight against the 60 MB cap, so a sitting retires them (deletes its files and
entries) right after shipping the run that made the switch (``--retire-v1`` does it by hand).
Commit the deletions with the runs (``git add checkpoints/``); git history keeps v1.

Usage:
    python scripts/make_checkpoints.py --list
    python scripts/make_checkpoints.py [--jobs 2] [--max-minutes M] [--only GROUP[/ARM],...]
    python scripts/make_checkpoints.py --retire-v1
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CODE_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CODE_ROOT))

STUDY = "v2"
RAW = "runs/study-v2"  # raw runs (resumable, with optimizer state), relative to the out root
SHIP = "checkpoints/shipped/v2"  # shipped copies, relative to the out root

# ---- the pilots (checkpoints/README.md, "Pilot"): mnist10k-dcgan baseline, 2 seeds side by
# side with one thread each at nice 10 on the shared 2-core machine, FD in the classifier's
# features from 2,000 samples. Width 32, 2,800 iterations: FD 34.3 / 40.0 in 522 / 531 s, but
# 0.94 MB a shipped run, 83 MB for the plan (over the 60 MB cap). Width 24, 3,500 iterations:
# FD 30.4 / 36.0 in 498 / 506 s and 0.58 MB a run (56 MB in all): the study's setting.
WIDTH, PILOT_STEPS, PILOT_WALL_S = 24, 3500, 502.0
# seconds per baseline iteration with 2 runs in parallel, 1 thread each: mnist10k from the
# pilot; stacked-mnist 1.066x it (200 iterations beside a mnist10k run); ring8 and grid25 from
# their 6,000-iteration pilots (checkpoints/README.md)
S_PER_IT = {"mnist10k": PILOT_WALL_S / PILOT_STEPS,
            "stacked-mnist": 1.066 * PILOT_WALL_S / PILOT_STEPS,
            "ring8": 0.0122, "grid25": 0.0129}
# cost of one iteration relative to the baseline's, by what the arm's D step does (measured by
# another helper over 30 iterations on one thread; spectral norm not measured, taken as 1)
COST_FACTOR = {"baseline": 1.0, "asgan": 1.5, "twice": 1.5, "gaussian": 1.5, "r1": 1.7,
               "r1-twice": 2.9, "first-order": 1.95, "sn": 1.0}

# ---- the arms (names as in probes/study/claims.json). Images: eps in pixel units of [0, 1]
# images, the paper's eps halved (their script steps in [-1, 1]). 2-D mixtures: eps in mode-std
# units (1 = one std of a mode per coordinate, trainers.data.eps_units), the arm's number as the
# value: asgan-eps0.5 is 0.5 std, and the grid {0.25, 0.5, 1, 1.5} tops out at 1.5 std per
# coordinate (2.1 std in L2), inside the coverage metric's 3-std radius on ring8 and grid25.
R1_GAMMA = "1"
ARMS: dict[str, dict[str, Any]] = {
    "baseline": {"cost": "baseline", "opts": {"trainer": "baseline"}},
    "asgan-eps0.5": {"cost": "asgan", "opts": {"trainer": "asgan", "eps": "0.5/255"}},
    "asgan-eps1": {"cost": "asgan", "opts": {"trainer": "asgan", "eps": "1/255"}},
    "twice": {"cost": "twice", "opts": {"trainer": "asgan", "perturbation": "none", "eps": "0"}},
    "gaussian-eps0.5": {"cost": "gaussian", "opts": {"trainer": "asgan",
                                                     "perturbation": "gaussian", "eps": "0.5/255"}},
    "r1": {"cost": "r1", "opts": {"trainer": "baseline", "r1-gamma": R1_GAMMA}},
    "r1-twice": {"cost": "r1-twice", "opts": {"trainer": "asgan", "perturbation": "none",
                                              "eps": "0", "r1-gamma": R1_GAMMA}},
    "sn": {"cost": "sn", "opts": {"trainer": "baseline", "d-spectral-norm": "true"}},
    "first-order-eps0.5": {"cost": "first-order", "opts": {"trainer": "asgan",
                                                           "perturbation": "first-order",
                                                           "eps": "0.5/255"}},
}
MIXTURE_ARMS: dict[str, dict[str, Any]] = {
    "baseline": ARMS["baseline"],
    "twice": ARMS["twice"],  # the eps = 0 point of the grid
    **{f"asgan-eps{e}": {"cost": "asgan", "opts": {"trainer": "asgan", "eps": e}}
       for e in ("0.25", "0.5", "1", "1.5")},  # mode-std units
}

_IMAGE_COMMON = {"width": str(WIDTH), "steps": str(PILOT_STEPS), "split": "train",
                 "snapshot-every": "700", "keep-snapshots": "1", "sample-every": "1750",
                 "log-every": "50", "tensorboard": "false"}
GROUPS: dict[str, dict[str, Any]] = {
    "mnist10k": {"preset": "mnist10k-dcgan", "arms": ARMS, "common": _IMAGE_COMMON},
    # stacked MNIST (1000 modes): triples of the 9,000 train digits
    "stacked-mnist": {"preset": "mnist10k-dcgan", "arms": ARMS,
                      "common": {"data": "stacked-mnist", **_IMAGE_COMMON}},
    # the 2-D MLPs at width 128 (0.13 MB shipped), trained until the baseline's samples sit
    # on the modes (the 2-D pilots: the first study's 2,000 / 2,500 iterations left 41-60% /
    # 8-33% of the baseline's samples within 3 std of a mode; 5,000 / 6,000 give 94-95% /
    # 84-88%)
    "ring8": {"preset": "ring8-mlp", "arms": MIXTURE_ARMS,
              "common": {"width": "128", "steps": "5000", "split": "train",
                         "snapshot-every": "1000", "keep-snapshots": "1",
                         "sample-every": "5000", "tensorboard": "false"}},
    "grid25": {"preset": "grid25-mlp", "arms": MIXTURE_ARMS,
               "common": {"width": "128", "steps": "6000", "split": "train",
                          "snapshot-every": "1000", "keep-snapshots": "1",
                          "sample-every": "6000", "tensorboard": "false"}},
}
# the Fig. 5b evolution pair: seed 0 of the baseline and of the main AS-GAN arm keep (and ship)
# a snapshot every EVOLUTION_EVERY iterations
EVOLUTION = {("mnist10k", "baseline", 0), ("mnist10k", "asgan-eps0.5", 0)}
EVOLUTION_EVERY = 700

PRIMARY_SEEDS = 8  # claims.json's min_pairs_primary: a one-sided sign-flip p is >= 2^-n
OTHER_SEEDS = 5
RING8_SEEDS = 10
# (tier, [(group, arms, seeds)]), in the order the work is done; within a tier seed-major
TIERS: list[tuple[str, list[tuple[str, tuple[str, ...], int]]]] = [
    ("1-primary", [("mnist10k", ("baseline", "asgan-eps0.5", "twice", "first-order-eps0.5"),
                    PRIMARY_SEEDS),
                   ("stacked-mnist", ("baseline", "asgan-eps0.5"), PRIMARY_SEEDS)]),
    ("2-matched", [("mnist10k", ("r1-twice", "gaussian-eps0.5"), OTHER_SEEDS)]),
    ("3-rest", [("mnist10k", ("sn",), OTHER_SEEDS),
                ("ring8", ("baseline", "asgan-eps0.5", "twice"), RING8_SEEDS),
                ("grid25", ("baseline", "twice", "asgan-eps0.25", "asgan-eps0.5", "asgan-eps1",
                            "asgan-eps1.5"), OTHER_SEEDS)]),
    # dropped first if the budget forces a choice (issue 15, item 7)
    ("4-drop-first", [("mnist10k", ("asgan-eps1", "r1"), OTHER_SEEDS)]),
]
# arms taken out of the plan (name -> why); they are listed in PLAN.json as dropped
DROPPED: dict[str, str] = {}
BUDGET_MB = 60.0  # all shipped checkpoints together (issue 15, item 7)


@dataclass(frozen=True)
class Run:
    tier: str
    group: str
    arm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.group}/{self.arm}/seed{self.seed}"

    @property
    def evolution(self) -> bool:
        return (self.group, self.arm, self.seed) in EVOLUTION


def plan(tiers=None, dropped=None) -> list[Run]:
    """Every planned run in work order (tiers in order, seed-major within a tier)."""
    tiers = TIERS if tiers is None else tiers
    dropped = DROPPED if dropped is None else dropped
    out = []
    for tier, rows in tiers:
        for seed in range(max(n for _, _, n in rows)):
            for group, arms, n in rows:
                out += [Run(tier, group, arm, seed) for arm in arms
                        if seed < n and f"{group}/{arm}" not in dropped]
    return out


def options(run: Run, groups=None) -> dict[str, str]:
    g = (GROUPS if groups is None else groups)[run.group]
    opts = {**g["common"], **g["arms"][run.arm]["opts"]}
    if run.evolution:
        opts.update({"snapshot-every": str(EVOLUTION_EVERY), "keep-snapshots": "0"})
    return opts


def command(run: Run, groups=None) -> list[str]:
    """The ``asgan-train`` argv of ``run`` (recorded verbatim in the manifest)."""
    g = (GROUPS if groups is None else groups)[run.group]
    cmd = ["asgan-train", "--preset", g["preset"], "--seed", str(run.seed)]
    for k, v in options(run, groups).items():
        cmd += [f"--{k}", v]
    return cmd + ["--out", f"{RAW}/{run.name}", "--no-progress"]


def config(run: Run, groups=None):
    """The validated :class:`trainers.config.TrainConfig` that ``command(run)`` trains."""
    from trainers.config import make_config

    g = (GROUPS if groups is None else groups)[run.group]
    opts = {k.replace("-", "_"): v for k, v in options(run, groups).items()}
    return make_config(g["preset"], {**opts, "seed": run.seed})


def steps_of(run: Run, groups=None) -> int:
    return int(options(run, groups)["steps"])


def shipped_steps(run: Run, groups=None) -> list[int]:
    """The snapshot steps shipped for ``run``: the final one, and for the evolution pair every
    :data:`EVOLUTION_EVERY` iterations."""
    steps = steps_of(run, groups)
    if run.evolution:
        return sorted({*range(EVOLUTION_EVERY, steps, EVOLUTION_EVERY), steps})
    return [steps]


def est_seconds(run: Run, groups=None) -> float:
    """Estimated wall seconds of ``run`` with 2 runs in parallel, 1 thread each."""
    g = (GROUPS if groups is None else groups)[run.group]
    return steps_of(run, groups) * S_PER_IT[run.group] * COST_FACTOR[g["arms"][run.arm]["cost"]]


def est_bytes(run: Run, groups=None, header: int = 4608) -> int:
    """Shipped bytes of ``run``: its nets' tensors as :func:`trainers.checkpoint.
    export_snapshot` stores them (float16 at >= HALF_MIN_NUMEL values, else their own dtype)
    plus ``header`` (the JSON header of a real export: 4,560 bytes for the pilot's), times the
    snapshots shipped."""
    import torch

    from trainers.checkpoint import HALF_MIN_NUMEL
    from trainers.data import load_dataset
    from trainers.nets import build_net, net_specs

    cfg = config(run, groups)
    ds = load_dataset(cfg.data, resolution=cfg.resolution, n=256)
    total = 0
    for spec in net_specs(cfg.arch, shape=tuple(ds.shape), z_dim=cfg.z_dim, width=cfg.width,
                          d_spectral_norm=cfg.d_spectral_norm):
        with torch.device("meta"):
            net = build_net(spec)
        for t in net.state_dict().values():
            small = t.numel() < HALF_MIN_NUMEL or t.dtype != torch.float32
            total += t.numel() * (t.element_size() if small else 2)
    return (total + header) * len(shipped_steps(run, groups))


# ---- git facts, taken when a run starts


def _git(*args: str) -> str:
    res = subprocess.run(["git", "-C", str(CODE_ROOT), *args], capture_output=True, text=True)
    # trailing newline only: a leading blank is data (porcelain's " M path" status column)
    return res.stdout.rstrip() if res.returncode == 0 else ""


def code_state() -> dict[str, Any]:
    """``{"code_commit": HEAD (40 hex, "unknown" without git), "code_dirty": [paths]}``: the
    training code's uncommitted changes (trainers/, this script, pyproject.toml) at this
    moment; other agents' edits elsewhere do not change what trains."""
    dirty = _git("status", "--porcelain", "--", "trainers", "scripts/make_checkpoints.py",
                 "pyproject.toml")
    return {"code_commit": _git("rev-parse", "HEAD") or "unknown",
            "code_dirty": sorted(line[3:] for line in dirty.splitlines() if line.strip())}


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- state of a run


def _sha_ok(root: Path, rel: str, entries: dict) -> bool:
    from trainers.data import sha256_file

    f = root / rel
    e = entries.get(rel)
    return e is not None and f.is_file() and f.stat().st_size == e["bytes"] and \
        sha256_file(f) == e["sha256"]


def ship_rels(run: Run, groups=None) -> list[str]:
    from trainers.checkpoint import snapshot_name

    return [f"{SHIP}/{run.name}/{snapshot_name(s)}" for s in shipped_steps(run, groups)]


def is_shipped(root: Path, run: Run, entries: dict, groups=None) -> bool:
    """Every shipped file of ``run`` is in the manifest with a matching size and SHA-256."""
    return all(_sha_ok(root, rel, entries) for rel in ship_rels(run, groups))


def raw_step(root: Path, run: Run) -> int:
    """Step of the newest complete snapshot of the raw run (0: none)."""
    from trainers.checkpoint import list_snapshots

    snaps = list_snapshots(root / RAW / run.name)
    return int(snaps[-1].stem[5:]) if snaps else 0


# ---- one sitting


@dataclass
class Job:
    run: Run
    proc: subprocess.Popen
    log: Any
    t0: float = field(default_factory=time.time)


def _start(root: Path, run: Run, groups, nice: int) -> Job:
    """Launch (or resume) ``run``; its start facts go to RAW/<run>/started.json first."""
    from trainers.checkpoint import atomic_write_bytes

    raw = root / RAW / run.name
    started_file = raw / "started.json"
    cmd = command(run, groups)
    step = raw_step(root, run)
    started = None
    if step and started_file.is_file():
        started = json.loads(started_file.read_text())
    if step and started is None:  # snapshots without start facts: cannot say what began it
        raw.rename(raw.with_name(f"{raw.name}.orphan-{int(time.time())}"))
        step = 0
    now = {"utc": utc_now(), **code_state()}
    if not step:  # a fresh start (also after a kill before the first snapshot)
        started = {"command": shlex.join(cmd), "started_utc": now["utc"],
                   "code_commit": now["code_commit"], "code_dirty": now["code_dirty"],
                   "resumed": []}
    else:
        started["resumed"].append({"utc": now["utc"], "code_commit": now["code_commit"],
                                   "code_dirty": now["code_dirty"], "from_step": step})
    atomic_write_bytes(started_file, (json.dumps(started, indent=2) + "\n").encode())
    exe = str(Path(sys.executable).parent / "asgan-train")
    argv = [exe, *cmd[1:]] if not step else [exe, "--resume", f"{RAW}/{run.name}",
                                                 "--no-progress"]
    logs = root / RAW / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{run.name.replace('/', '_')}.log", "a")
    log.write(f"# {now['utc']} {shlex.join(argv)}\n")
    log.flush()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # a session of its own: a Ctrl-C at the terminal reaches only the sitting, which then sends
    # each run one SIGTERM (a second signal would kill a trainer without its last snapshot)
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)
    return Job(run, proc, log)


def ship(root: Path, run: Run, groups=None, manifest_path: Path | None = None) -> list[str]:
    """Export ``run``'s shipped snapshots (float16, no optimizer state), copy its config and
    stats, then add the manifest entries (final snapshot last). Returns the shipped paths."""
    from trainers.checkpoint import (
        atomic_write_bytes,
        export_snapshot,
        read_checkpoint,
        snapshot_name,
    )
    from trainers.errors import UserError
    from trainers.manifest import record

    raw = root / RAW / run.name
    if not (raw / "started.json").is_file():
        raise UserError(f"{raw} has no started.json (when and at which commit the run began): "
                        "it cannot be registered; delete the folder to train it again")
    started = json.loads((raw / "started.json").read_text())
    dest = root / SHIP / run.name
    for name in ("config.json", "stats.jsonl"):
        atomic_write_bytes(dest / name, (raw / name).read_bytes())
    written = []
    for s in shipped_steps(run, groups):
        src = raw / snapshot_name(s)
        out = export_snapshot(src, dest / snapshot_name(s), half=True,
                              facts={"exported": "scripts/make_checkpoints.py: optimizer state "
                                                 "dropped, float16 weights"})
        written.append(out)
    manifest_path = root / "checkpoints" / "MANIFEST.json" if manifest_path is None \
        else manifest_path
    for out in written:  # the final snapshot is last: its entry marks the run as shipped
        _, meta = read_checkpoint(out)
        record(out, command=started["command"], path=manifest_path, seed=run.seed,
               steps=meta["step"], group=run.group, arm=run.arm, study=STUDY, tier=run.tier,
               wall_time_s=round(float(meta.get("wall_time_s", 0.0)), 1),
               code_commit=started["code_commit"], started_utc=started["started_utc"],
               code_dirty=started["code_dirty"], resumed=started["resumed"],
               shipped_utc=utc_now(), threads=1, stored_dtype=meta["stored_dtype"],
               torch=meta.get("torch"))
    return [p.relative_to(root).as_posix() for p in written]


def write_plan(root: Path, runs: list[Run], groups=None, manifest_path: Path | None = None
               ) -> Path:
    """``SHIP/PLAN.json``: what the v2 study holds (groups -> steps, arms -> seeds, tier,
    options), recorded in the manifest so the study code knows when a group is complete."""
    from trainers.checkpoint import atomic_write_bytes
    from trainers.manifest import record

    body: dict[str, Any] = {"study": STUDY, "about": "scripts/make_checkpoints.py's plan: a "
                            "group is complete when every (arm, seed) below is shipped",
                            "groups": {}, "dropped": DROPPED}
    for r in runs:
        g = body["groups"].setdefault(r.group, {"steps": steps_of(r, groups), "arms": {}})
        a = g["arms"].setdefault(r.arm, {"tier": r.tier, "seeds": [],
                                         "options": (groups or GROUPS)[r.group]["arms"][r.arm]
                                         ["opts"]})
        a["seeds"].append(r.seed)
    path = root / SHIP / "PLAN.json"
    text = json.dumps(body, indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        atomic_write_bytes(path, text.encode())
    manifest_path = root / "checkpoints" / "MANIFEST.json" if manifest_path is None \
        else manifest_path
    record(path, command="python scripts/make_checkpoints.py", path=manifest_path,
           study=STUDY)
    return path


@contextlib.contextmanager
def _sole_sitting(root: Path):
    """One sitting at a time per out root (a second would train the same runs twice)."""
    lock = root / RAW / ".sitting.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from trainers.errors import UserError

            raise UserError(f"another make_checkpoints sitting holds {lock}") from None
        yield


def sitting(runs: list[Run], *, root: Path, jobs: int = 2, max_minutes: float | None = None,
            nice: int = 10, groups=None, full_plan: list[Run] | None = None,
            poll_s: float = 2.0, should_stop=None, say=print) -> dict[str, Any]:
    """Train and ship every run of ``runs`` not yet shipped; returns ``{"shipped",
    "interrupted", "not_started", "failed", "skipped"}`` (lists of run names).

    ``full_plan`` (default ``runs``) is what PLAN.json records, whatever ``--only`` chose;
    ``groups`` replaces :data:`GROUPS` and ``should_stop()`` ends the sitting like the deadline
    does (both for tests)."""
    from trainers.manifest import read_manifest

    root = Path(root)
    manifest_path = root / "checkpoints" / "MANIFEST.json"
    deadline = None if max_minutes is None else time.time() + 60 * max_minutes
    result: dict[str, list[str]] = {k: [] for k in ("shipped", "interrupted", "not_started",
                                                    "failed", "skipped")}
    with _sole_sitting(root):
        dirty = code_state()["code_dirty"]
        if dirty:
            say(f"warning: uncommitted changes in {', '.join(dirty)}: runs started now record "
                "them (code_dirty); commit first for runs the claims can be judged on")
        write_plan(root, runs if full_plan is None else full_plan, groups, manifest_path)
        entries = read_manifest(manifest_path)
        todo = []
        for r in runs:
            if is_shipped(root, r, entries, groups):
                result["skipped"].append(r.name)
            else:
                todo.append(r)
        if result["skipped"]:
            say(f"{len(result['skipped'])} runs already shipped (manifest, SHA-256): skipped")
        running: list[Job] = []

        def stopping() -> bool:
            return (deadline is not None and time.time() >= deadline) or \
                bool(should_stop and should_stop())

        try:
            while todo or running:
                while todo and len(running) < jobs and not stopping():
                    r = todo.pop(0)
                    if raw_step(root, r) >= steps_of(r, groups):
                        _finish(root, r, 0, groups, manifest_path, result, say, time.time())
                        continue
                    running.append(_start(root, r, groups, nice))
                    say(f"started {r.name} ({r.tier})")
                if stopping():
                    for j in running:
                        j.proc.send_signal(signal.SIGTERM)  # a snapshot, then exit 143
                    result["not_started"] += [r.name for r in todo]
                    todo = []
                time.sleep(poll_s if running else 0)
                for j in list(running):
                    rc = j.proc.poll()
                    if rc is None:
                        continue
                    running.remove(j)
                    j.log.close()
                    _finish(root, j.run, rc, groups, manifest_path, result, say, j.t0)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM to the sitting: stop as at the deadline
            for j in running:
                j.proc.send_signal(signal.SIGTERM)
            for j in running:
                j.proc.wait()
                j.log.close()
                result["interrupted"].append(j.run.name)
            result["not_started"] += [r.name for r in todo]
            say("sitting stopped: the interrupted runs resume next sitting")
    return result


def _finish(root, run, rc, groups, manifest_path, result, say, t0) -> None:
    from trainers.errors import UserError

    done = raw_step(root, run) >= steps_of(run, groups)
    if rc == 0 and done:
        try:
            ship(root, run, groups, manifest_path)
        except UserError as e:  # the other runs go on; this one is reported
            result["failed"].append(run.name)
            say(f"FAILED to ship {run.name}: {e}")
            return
        result["shipped"].append(run.name)
        say(f"shipped {run.name} ({time.time() - t0:.0f} s this sitting)")
        retire_v1(root, say=say)
    elif rc in (130, 143) or (rc < 0 and -rc in (signal.SIGINT, signal.SIGTERM)):
        result["interrupted"].append(run.name)
        say(f"interrupted {run.name} at step {raw_step(root, run)}: resumes next sitting")
    else:
        log = root / RAW / "logs" / f"{run.name.replace('/', '_')}.log"
        tail = log.read_text().strip().splitlines()[-1:] if log.is_file() else []
        result["failed"].append(run.name)
        say(f"FAILED {run.name} (exit {rc}): {' '.join(tail)[:300]}")


# ---- the plan table


def table(runs: list[Run], root: Path, groups=None) -> tuple[list[dict], dict]:
    """One row per run (work order) with cost, size and state, and the totals."""
    from trainers.manifest import read_manifest

    entries = read_manifest(root / "checkpoints" / "MANIFEST.json")
    rows, secs, mb = [], 0.0, 0.0
    sizes: dict[tuple, int] = {}
    for r in runs:
        key = (r.group, r.arm, r.evolution)
        if key not in sizes:
            sizes[key] = est_bytes(r, groups)
        s, b = est_seconds(r, groups), sizes[key] / 1e6
        secs, mb = secs + s, mb + b
        state = "shipped" if is_shipped(root, r, entries, groups) else (
            f"at step {raw_step(root, r)}" if raw_step(root, r) else "todo")
        rows.append({"run": r, "steps": steps_of(r, groups), "est_s": s, "mb": b,
                     "cum_h": secs / 3600 / 2, "cum_mb": mb, "state": state})
    return rows, {"runs": len(runs), "cpu_h": secs / 3600, "wall_h_2_jobs": secs / 3600 / 2,
                  "mb": mb}


def print_table(runs: list[Run], root: Path, *, commands: bool = False) -> None:
    rows, tot = table(runs, root)
    classifier = 0.53  # MB, checkpoints/shipped/classifier (also shipped)
    print("est min: one run's wall minutes beside one other run (1 thread each); cum h: hours "
          "of the 2-core machine at --jobs 2 up to this run\n")
    print(f"{'#':>3} {'tier':<12} {'run':<36} {'steps':>5} {'est min':>7} {'MB':>5} "
          f"{'cum h':>6} {'cum MB':>6}  state")
    for i, row in enumerate(rows):
        r = row["run"]
        over = " >budget" if row["cum_mb"] + classifier > BUDGET_MB else ""
        print(f"{i + 1:>3} {r.tier:<12} {r.name:<36} {row['steps']:>5} "
              f"{row['est_s'] / 60:>7.1f} {row['mb']:>5.2f} {row['cum_h']:>6.2f} "
              f"{row['cum_mb']:>6.1f}  {row['state']}{over}")
        if commands:
            print("    " + shlex.join(command(r)))
    print("\nper group/arm:")
    agg: dict[tuple, list] = {}
    for row in rows:
        r = row["run"]
        a = agg.setdefault((r.tier, r.group, r.arm), [0, 0.0, 0.0, row["steps"]])
        a[0] += 1
        a[1] += row["est_s"]
        a[2] += row["mb"]
    print(f"  {'tier':<12} {'group':<14} {'arm':<20} {'seeds':>5} {'steps':>5} "
          f"{'est min/run':>11} {'CPU h':>6} {'MB':>5}")
    for (tier, group, arm), (n, s, b, steps) in agg.items():
        print(f"  {tier:<12} {group:<14} {arm:<20} {n:>5} {steps:>5} {s / n / 60:>11.1f} "
              f"{s / 3600:>6.2f} {b:>5.1f}")
    print(f"\ntotal: {tot['runs']} runs, {tot['cpu_h']:.1f} CPU hours (1 thread per run; "
          f"{tot['wall_h_2_jobs']:.1f} h of the 2-core machine at --jobs 2), "
          f"{tot['mb']:.1f} MB shipped + {classifier} MB classifier; budget {BUDGET_MB:g} MB"
          f"{' (OVER)' if tot['mb'] + classifier > BUDGET_MB else ''}")


def retire_v1(root: Path, say=print) -> list[str]:
    """Delete the first study's files and manifest entries of every group that the study now
    reads from v2 (:func:`probes.study.arms.study_in_use`; never before); returns the groups
    retired. Commit the deletion with the manifest."""
    import shutil

    from probes.study.arms import study_in_use
    from trainers.manifest import forget, read_manifest, study_of

    man = root / "checkpoints" / "MANIFEST.json"
    entries = read_manifest(man)
    retired = []
    for group in sorted({e["group"] for e in entries.values() if "group" in e}):
        old = [rel for rel, e in entries.items()
               if e.get("group") == group and study_of(e) == "v1"]
        if not old or study_in_use(group, entries) != STUDY:
            continue
        forget(old, path=man)
        folder = root / "checkpoints" / "shipped" / group
        if folder.is_dir():
            shutil.rmtree(folder)
        retired.append(group)
        say(f"retired the v1 {group} group ({len(old)} files): the study reads it from v2")
    return retired


def select(runs: list[Run], only: str | None) -> list[Run]:
    if not only:
        return runs
    from trainers.errors import UserError

    keys = [k.strip() for k in only.split(",") if k.strip()]
    known = {r.group for r in runs} | {f"{r.group}/{r.arm}" for r in runs}
    bad = [k for k in keys if k not in known]
    if bad:
        raise UserError(f"--only {','.join(bad)}: not in the plan (groups: "
                        f"{', '.join(sorted({r.group for r in runs}))}; or GROUP/ARM)")
    return [r for r in runs if r.group in keys or f"{r.group}/{r.arm}" in keys]


def main(argv: list[str] | None = None) -> int:
    from trainers.errors import UserError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (1 thread each)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="end the sitting after M minutes (running runs snapshot and stop)")
    p.add_argument("--only", default=None, help="comma-separated GROUP or GROUP/ARM")
    p.add_argument("--nice", type=int, default=10, help="niceness of the training processes")
    p.add_argument("--list", action="store_true", help="print the plan in work order and stop")
    p.add_argument("--commands", action="store_true", help="with --list: each run's command")
    p.add_argument("--retire-v1", action="store_true",
                   help="delete the first study's files of every group read from v2")
    args = p.parse_args(argv)
    try:
        runs = select(plan(), args.only)
        if args.list:
            print_table(runs, CODE_ROOT, commands=args.commands)
            return 0
        if args.retire_v1:
            print(json.dumps({"retired": retire_v1(CODE_ROOT)}))
            return 0
        if args.jobs < 1 or (args.max_minutes is not None and not args.max_minutes > 0):
            raise UserError("--jobs must be >= 1 and --max-minutes > 0")
        # SIGTERM (kill, a scheduler) ends the sitting as Ctrl-C does: runs snapshot and stop
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        res = sitting(runs, root=CODE_ROOT, jobs=args.jobs, max_minutes=args.max_minutes,
                      nice=args.nice, full_plan=plan(), say=lambda m: print(m, flush=True))
    except UserError as e:
        print(f"make_checkpoints: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: len(v) for k, v in res.items()}))
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
