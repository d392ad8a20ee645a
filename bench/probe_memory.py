"""Probe memory: peak RSS of ``asgan-probe gradients`` at n=1,000 vs n=10,000 reals.

A streaming probe holds one batch of images and gradients at a time, so its peak resident
memory should barely move when n grows tenfold; one that keeps every image and gradient grows
by about ``n * C * H * W * 4 bytes * 2`` (82 MB for 10,000 images of 1x32x32 in float32).

Each run is the documented CLI, as a user would call it, in a subprocess:
``python -m probes gradients CKPT --population real --n N --out X.json`` (``python -m probes`` is
``asgan-probe`` without needing the console script on PATH). Its peak RSS is the child's own
``ru_maxrss`` from ``os.wait4`` (exact, no polling). ``asgan-probe info CKPT`` is run beside
it as the floor (not in ``--quick``): Python, torch and the checkpoint loaded, no probe work.
The runs alternate (1,000 / 10,000 / info, then reversed) so the timings share the load.

The checkpoint is trained here (``mnist10k-dcgan`` nets, 2 iterations: weights do not change
memory) unless ``--ckpt`` names one. If the ``gradients`` verb does not exist yet, the script
says so, prints a JSON line with ``"status": "unavailable"`` and exits with status 1.

Run: ``python -m bench.probe_memory`` (a minute or two on 2 cores); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import REPO, add_common_args, emit, log, setup_threads, verdict

TARGET_RATIO = 1.10  # "nearly flat": peak RSS at 10x the images within 10% of the 1x run
VERB = "gradients"


def verb_available() -> bool:
    """True when ``asgan-probe`` has the ``gradients`` verb (probes/cli/gradients.py)."""
    from probes.cli import VERBS

    return VERB in VERBS


def make_checkpoint(out: Path, quick: bool) -> Path:
    """A tiny trained checkpoint on mnist10k (the data the probe will read reals from)."""
    from trainers import make_config, train

    preset, over = ("smoke", {}) if quick else ("mnist10k-dcgan", {})
    cfg = make_config(preset, dict(over, steps=2, log_every=1, sample_every=0,
                                   snapshot_every=2, tensorboard=False, device="cpu"))
    return train(cfg, out, progress=False)


def run_measured(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd`` from the repo root; its exit status, wall seconds and peak RSS (MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    # read stderr while waiting, then reap with wait4 to get this child's own rusage
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    rss_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return {"rc": proc.returncode, "wall_s": round(wall, 3), "peak_rss_mib": rss_kib / 1024,
            "stderr_tail": err.strip().splitlines()[-3:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.probe_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, reps=2, timing=False)
    # --threads sets OMP_NUM_THREADS of the probe runs (default 1)
    p.add_argument("--ckpt", default=None, help="checkpoint to probe (default: train a tiny one)")
    p.add_argument("--n", default="1000,10000", help="the two sample counts (default "
                   "1000,10000)")
    p.add_argument("--verb-args", default="", help="extra options for the verb, e.g. "
                   "'--boot 0' (to see what the bootstrap adds)")
    args = p.parse_args(argv)
    setup_threads(args.threads)  # for the checkpoint trained here
    n_small, n_large = (int(s) for s in args.n.split(","))
    reps = args.reps
    if args.quick:
        n_small, n_large, reps = 20, 200, 1
    settings = {"n": [n_small, n_large], "reps": reps, "quick": args.quick, "verb": VERB,
                "command": f"asgan-probe {VERB} CKPT --population real --n N --out X.json "
                           f"{args.verb_args}".strip()}

    if not verb_available():
        reason = (f"asgan-probe has no '{VERB}' verb yet (probes/cli/{VERB}.py is "
                  "missing): nothing measured; rerun once it lands")
        log(f"[probe_memory] {reason}")
        emit("probe_memory", {"status": "unavailable", "reason": reason, "settings": settings,
                              "results": {}, "targets": {}}, [["status"], ["unavailable"]],
             out=args.out)
        return 1

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads or 1), PYTHONPATH=str(REPO))
    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    try:
        ckpt = Path(args.ckpt) if args.ckpt else make_checkpoint(tmp / "run", args.quick)
        base = [sys.executable, "-m", "probes"]
        cmds = {f"n={n}": [*base, VERB, str(ckpt), "--population", "real", "--n", str(n),
                           "--seed", "0", "--out", str(tmp / f"n{n}.json"),
                           *args.verb_args.split()]
                for n in (n_small, n_large)}
        if not args.quick:
            cmds["info (floor)"] = [*base, "info", str(ckpt)]
        runs: dict[str, list[dict]] = {k: [] for k in cmds}
        for r in range(reps):
            for name in (list(cmds) if r % 2 == 0 else list(cmds)[::-1]):
                runs[name].append(run_measured(cmds[name], env))
                log(f"[probe_memory] rep {r + 1}/{reps} {name}: "
                    f"{runs[name][-1]['peak_rss_mib']:.0f} MiB, {runs[name][-1]['wall_s']:.1f} s")
        failed = {k: v[-1] for k, v in runs.items() if any(x["rc"] != 0 for x in v)}
        if failed:
            reason = "; ".join(f"{k}: exit {v['rc']}: {' | '.join(v['stderr_tail'])}"
                               for k, v in failed.items())
            emit("probe_memory", {"status": "failed", "reason": reason, "settings": settings,
                                  "results": runs, "targets": {}}, [["status"], ["failed"]],
                 out=args.out)
            return 1
        from trainers import load_checkpoint

        _, _, meta = load_checkpoint(ckpt)
        shape = meta["data"]["shape"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(x["peak_rss_mib"] for x in v) for k, v in runs.items()}
    wall = {k: statistics.median(x["wall_s"] for x in v) for k, v in runs.items()}
    small, large = med[f"n={n_small}"], med[f"n={n_large}"]
    floor = med.get("info (floor)")
    per_image = 4 * 2 * math.prod(shape) / 2**20  # MiB: one float32 image + its gradient
    results = {
        "peak_rss_mib": {k: round(v, 1) for k, v in med.items()},
        "wall_s": wall,
        "ratio_large_small": large / small,
        "delta_mib": large - small,
        "above_floor_mib": None if floor is None else {f"n={n_small}": small - floor,
                                                       f"n={n_large}": large - floor},
        "dense_estimate_delta_mib": (n_large - n_small) * per_image,
        "runs": runs,
    }
    ok = large / small <= TARGET_RATIO
    checks = {f"peak RSS n={n_large} / n={n_small} <=": {"target": TARGET_RATIO,
                                                         "value": large / small, "met": ok}}
    table = [["run", "peak RSS (MiB)", "wall (s)"]]
    table += [[k, f"{v:.0f}", f"{wall[k]:.1f}"] for k, v in med.items()]
    notes = [f"target peak RSS n={n_large} / n={n_small} <= {TARGET_RATIO}: "
             f"{large / small:.3f} (+{large - small:.0f} MiB; holding every image and gradient "
             f"would add ~{results['dense_estimate_delta_mib']:.0f} MiB) {verdict(ok)}"]
    emit("probe_memory", {"status": "ok", "settings": settings, "results": results,
                          "targets": checks}, table, out=args.out, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
