"""Regenerate every shipped study checkpoint under ``checkpoints/shipped/`` (issue: the study).

Each run is an ordinary ``asgan-train`` command (recorded verbatim in the manifest). Raw runs
go to ``runs/study/`` (resumable: an interrupted run continues from its last snapshot); the
shipped copy of each final snapshot (and of every snapshot of the evolution pair) is the same
checkpoint with its optimizer state dropped, to keep the folder small. Arms are paired by
seed: same initialisation, data order and latents (all derived from the seed).

Usage: python scripts/make_checkpoints.py [--jobs 2] [--only mnist10k,ring8,grid25,stacked-mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEEDS = (0, 1, 2)
# the comparison arms: paper default (0.5/255 in our units), another eps, and the controls
# a sceptical reader asks for (D updated twice, random-sign noise, R1, spectral norm)
IMAGE_ARMS = {
    "baseline": {"trainer": "baseline"},
    "asgan-eps0.5": {"trainer": "asgan", "eps": "0.5/255"},
    "asgan-eps2": {"trainer": "asgan", "eps": "2/255"},
    "twice": {"trainer": "asgan", "perturbation": "none"},
    "gaussian-eps2": {"trainer": "asgan", "perturbation": "gaussian", "eps": "2/255"},
    "r1": {"trainer": "baseline", "r1_gamma": "1"},
    "sn": {"trainer": "baseline", "d_spectral_norm": "true"},
}
# 2-D: the eps sweep (paper Fig. 3 analogue) runs on grid25; ring8 keeps the main arms
SWEEP_ARMS = {
    "baseline": {"trainer": "baseline"},
    "twice": {"trainer": "asgan", "perturbation": "none"},  # eps = 0
    **{f"asgan-eps{e:g}": {"trainer": "asgan", "eps": f"{e:g}/255"} for e in (0.5, 1, 2, 3, 4)},
    "gaussian-eps2": {"trainer": "asgan", "perturbation": "gaussian", "eps": "2/255"},
}
RING_ARMS = {k: SWEEP_ARMS[k] for k in ("baseline", "asgan-eps0.5", "asgan-eps2", "twice")}
GROUPS = {
    "mnist10k": dict(preset="mnist10k-dcgan", arms=IMAGE_ARMS,
                     common={"width": "16", "steps": "1400", "snapshot-every": "1400",
                             "sample-every": "700", "log-every": "50", "tensorboard": "false"}),
    "ring8": dict(preset="ring8-mlp", arms=RING_ARMS,
                  common={"steps": "2000", "snapshot-every": "2000", "sample-every": "2000",
                          "tensorboard": "false"}),
    # stacked MNIST (1000 modes): the mode-collapse claim on images; main arms only
    "stacked-mnist": dict(preset="mnist10k-dcgan",
                          arms={k: IMAGE_ARMS[k] for k in ("baseline", "asgan-eps0.5")},
                          common={"data": "stacked-mnist", "width": "16", "steps": "1400",
                                  "snapshot-every": "1400", "sample-every": "700",
                                  "log-every": "50", "tensorboard": "false"}),
    "grid25": dict(preset="grid25-mlp", arms=SWEEP_ARMS,
                   common={"width": "128", "steps": "2500", "snapshot-every": "2500",
                           "sample-every": "2500", "tensorboard": "false"}),
}
# the evolution pair (paper Fig. 5b): every 350 iterations of seed 0 (4 snapshots: small)
EVOLUTION = {("mnist10k", "baseline", 0), ("mnist10k", "asgan-eps0.5", 0)}
_MANIFEST_LOCK = threading.Lock()  # runs finish in parallel; the manifest is read-modify-write


def command(group: str, arm: str, seed: int) -> list[str]:
    g = GROUPS[group]
    opts = {**g["common"], **{k.replace("_", "-"): v for k, v in g["arms"][arm].items()}}
    if (group, arm, seed) in EVOLUTION:
        opts["snapshot-every"] = "350"
    cmd = ["asgan-train", "--preset", g["preset"], "--seed", str(seed)]
    for k, v in opts.items():
        cmd += [f"--{k}", v]
    return cmd + ["--out", f"runs/study/{group}/{arm}/seed{seed}", "--no-progress"]


def run_one(group: str, arm: str, seed: int) -> str:
    from trainers.checkpoint import list_snapshots

    cmd = command(group, arm, seed)
    raw = ROOT / cmd[cmd.index("--out") + 1]
    steps = int(GROUPS[group]["common"]["steps"])
    snaps = list_snapshots(raw) if raw.exists() else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    exe = [str(Path(sys.executable).parent / cmd[0])]
    t0 = time.time()
    if not snaps or int(snaps[-1].stem[5:]) < steps:
        argv = exe + (["--resume", str(raw), "--no-progress"] if snaps else cmd[1:])
        res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            return f"FAILED {group}/{arm}/seed{seed}: {res.stderr.strip().splitlines()[-1:]}"
    with _MANIFEST_LOCK:
        ship(group, arm, seed, raw, cmd)
    return f"{group}/{arm}/seed{seed} done in {time.time() - t0:.0f} s"


def ship(group: str, arm: str, seed: int, raw: Path, cmd: list[str]) -> None:
    """Copy the final (or, for the evolution pair, every) snapshot without optimizer state."""
    from trainers.checkpoint import list_snapshots, read_checkpoint, save_checkpoint
    from trainers.manifest import record
    from trainers.nets import build_net

    dest = ROOT / "checkpoints" / "shipped" / group / arm / f"seed{seed}"
    dest.mkdir(parents=True, exist_ok=True)
    snaps = list_snapshots(raw)
    keep = snaps if (group, arm, seed) in EVOLUTION else snaps[-1:]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    for snap in keep:
        tensors, meta = read_checkpoint(snap)
        G, D = build_net(meta["g_spec"]), build_net(meta["d_spec"])
        G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
        D.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
        meta = {k: v for k, v in meta.items() if k not in ("opt_G", "opt_D", "sha256")}
        meta["exported"] = "optimizer state dropped by scripts/make_checkpoints.py"
        out = save_checkpoint(dest / snap.name, G=G, D=D, meta=meta)
        record(out, command=shlex.join(cmd), seed=seed, steps=meta["step"], group=group,
               arm=arm, wall_time_s=round(meta.get("wall_time_s", 0.0), 1),
               code_commit=commit, torch=meta.get("torch"))
    for name in ("stats.jsonl", "config.json"):
        shutil.copyfile(raw / name, dest / name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (1 thread each)")
    p.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups")
    p.add_argument("--list", action="store_true", help="print the commands and stop")
    args = p.parse_args(argv)
    todo = [(g, a, s) for g in args.only.split(",") for a in GROUPS[g]["arms"] for s in SEEDS]
    if args.list:
        print("\n".join(shlex.join(command(*t)) for t in todo))
        return 0
    with ThreadPoolExecutor(args.jobs) as pool:
        failed = 0
        for msg in pool.map(lambda t: run_one(*t), todo):
            print(msg, flush=True)
            failed += msg.startswith("FAILED")
    print(json.dumps({"runs": len(todo), "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
