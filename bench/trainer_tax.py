"""Trainer tax: ``trainers.train``'s baseline iteration vs a minimal hand-written DCGAN loop.

Both train the same nets (``trainers.loop.build_models``) with the same optimizers on the same
data (the ``mnist10k-dcgan`` preset: DCGAN-32 grey, width 32, batch 64). The hand-written loop
is what a user would write in ten lines: all images materialised once as one tensor, random
batches, the two non-saturating losses, frozen D in the G step. The trainer is the real thing,
``trainers.train`` with its progress bar, stats.jsonl, TensorBoard events, sample grids and
snapshots.

``train`` has set-up costs (loading data, building nets, the final grid and snapshot) that do
not belong to an iteration, so its per-iteration cost is a difference of two runs:
``(T(short + K) - T(short)) / K``. The cadence defaults (log every 10, a sample grid and a
snapshot every 100 iterations) are 5x denser than the preset's (50, 500, 500): the tax
measured is an upper bound for the preset. The hand loop's iterations are timed directly.
A "bare" trainer (the same ``train`` with one log line, no TensorBoard, grids and snapshots
only at the end) splits the tax into bookkeeping (``trainer / bare``: logging, progress,
TensorBoard, grids, snapshots) and the rest of the machinery (``bare / hand``: batch order,
per-step seeds, the data path). Per repetition all runs are interleaved; reported: the tax
``trainer / hand - 1`` (median of per-repetition ratios), its split, and the cost of the
trainer's data path alone (``Dataset.get`` per batch, which resizes 28 -> 32 px each time).

Run: ``python -m bench.trainer_tax`` (about two minutes on 2 cores); ``--quick`` for a smoke
run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from bench import _common as common
from trainers import make_config, train
from trainers.data import load_dataset
from trainers.loop import build_models

TARGET_TAX = 0.05  # the issue: logging, progress and checkpoint cadence cost < 5%


def bare(cfg, steps: int):
    """``cfg`` with the bookkeeping off: one log line, one grid and one snapshot at the end,
    no TensorBoard (the run's fixed costs, which the two-run difference cancels)."""
    return dataclasses.replace(cfg, steps=steps, log_every=steps, sample_every=0,
                               snapshot_every=0, tensorboard=False)


def trainer_run(cfg, root: Path, progress: bool):
    """A zero-argument callable: one full ``train(cfg)`` run in a fresh directory."""

    def run() -> None:
        out = Path(tempfile.mkdtemp(dir=root))
        try:
            # the progress bar is part of the tax: keep it, but out of the bench's stderr
            with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
                train(cfg, out, progress=progress)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return run


def hand_loop(cfg, steps: int):
    """A minimal hand-written DCGAN loop on the same nets and data; returns a callable."""
    data = load_dataset(cfg.data, root=cfg.data_root, resolution=cfg.resolution, seed=cfg.seed)
    X = data.get(torch.arange(data.n))  # (n, 1, 32, 32) in [-1, 1], materialised once
    G, D, opt_G, opt_D, _, _ = build_models(cfg, data, torch.device("cpu"))
    gen = torch.Generator().manual_seed(cfg.seed)
    B = cfg.batch_size

    def run() -> None:
        for _ in range(steps):
            x_real = X[torch.randint(len(X), (B,), generator=gen)]  # (B, 1, 32, 32)
            x_fake = G(torch.randn(B, cfg.z_dim, generator=gen))
            opt_D.zero_grad(set_to_none=True)
            loss_d = F.softplus(-D(x_real)).mean() + F.softplus(D(x_fake.detach())).mean()
            loss_d.backward()
            opt_D.step()
            opt_G.zero_grad(set_to_none=True)
            D.requires_grad_(False)
            F.softplus(-D(x_fake)).mean().backward()
            D.requires_grad_(True)
            opt_G.step()

    return run, data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.trainer_tax", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # warm-up: one short trainer run (first imports of tensorboard, PIL...), not a full round
    common.add_common_args(p, reps=5, warmup=0)
    p.add_argument("--preset", default="mnist10k-dcgan", help="trainer preset (default "
                   "mnist10k-dcgan); its data must be built in (no --data-root)")
    p.add_argument("--iters", type=int, default=100,
                   help="K: iterations in the difference of the two trainer runs (default 100)")
    p.add_argument("--short", type=int, default=10, help="iterations of the short run")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--sample-every", type=int, default=100)
    p.add_argument("--snapshot-every", type=int, default=100)
    p.add_argument("--no-tensorboard", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    common.setup_threads(args.threads)
    K, short, reps = args.iters, args.short, args.reps
    overrides = dict(trainer="baseline", device="cpu", log_every=args.log_every,
                     sample_every=args.sample_every, snapshot_every=args.snapshot_every,
                     tensorboard=not args.no_tensorboard)
    if args.quick:
        K, short, reps = 6, 2, 2
        overrides.update(width=4, z_dim=8, batch_size=8, log_every=2, sample_every=4,
                         snapshot_every=4)
    cfg = make_config(args.preset, overrides)
    common.log(f"[trainer_tax] {args.preset} {overrides}, K={K}")

    root = Path(tempfile.mkdtemp(prefix="bench-tax-"))
    try:
        hand, data = hand_loop(cfg, K)
        idx = torch.arange(cfg.batch_size)
        show = not args.no_progress
        cases = {
            "trainer short": trainer_run(dataclasses.replace(cfg, steps=short), root, show),
            "trainer long": trainer_run(dataclasses.replace(cfg, steps=short + K), root, show),
            # the same loop with its bookkeeping off: isolates logging, progress, grids and
            # snapshots from the rest of the trainer (batch order, per-step seeds, data path)
            "bare short": trainer_run(bare(cfg, short), root, False),
            "bare long": trainer_run(bare(cfg, short + K), root, False),
            "hand": hand,
            # the trainer's data path alone, K batches: the part of the tax a cache would save
            "data.get": lambda: [data.get(idx + i) for i in range(K)],
        }
        cases["trainer short"]()
        times = common.interleave(cases, reps=reps, warmup=args.warmup,
                           progress=lambda s: common.log(f"[trainer_tax] {s}"))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    results = {}
    for clock, t in times.items():
        trainer_iter = [(lg - sh) / K for lg, sh in zip(t["trainer long"], t["trainer short"])]
        bare_iter = [(lg - sh) / K for lg, sh in zip(t["bare long"], t["bare short"])]
        hand_iter = [h / K for h in t["hand"]]
        results[clock] = {
            "median_s": {k: round(v, 6) for k, v in common.medians(t).items()},
            "trainer_s_per_iter": common.per_rep(lambda x: x, trainer_iter),
            "bare_s_per_iter": common.per_rep(lambda x: x, bare_iter),
            "hand_s_per_iter": common.per_rep(lambda x: x, hand_iter),
            "ratio": common.pair_ratio(trainer_iter, hand_iter),
            "bookkeeping_ratio": common.pair_ratio(trainer_iter, bare_iter),
            "bare_ratio": common.pair_ratio(bare_iter, hand_iter),
            "data_get_share": common.per_rep(lambda d, h: d / h, t["data.get"], t["hand"]),
        }
    head = results[args.clock]
    tax = head["ratio"]["median"] - 1
    checks = {"trainer tax <": {"target": TARGET_TAX, "value": tax, "met": tax < TARGET_TAX}}
    table = [["clock", "trainer / hand", "trainer / bare trainer", "bare trainer / hand",
              "trainer it/s", "hand it/s", "data.get / hand iter"]]
    for clock, r in results.items():
        table.append([clock, common.fmt_ratio(r["ratio"]),
                      common.fmt_ratio(r["bookkeeping_ratio"]), common.fmt_ratio(r["bare_ratio"]),
                      f"{1 / r['trainer_s_per_iter']['median']:.1f}",
                      f"{1 / r['hand_s_per_iter']['median']:.1f}",
                      common.fmt_ratio(r["data_get_share"])])
    notes = [f"target trainer tax < {TARGET_TAX:.0%} ({args.clock} clock): {tax:+.1%} "
             f"{common.verdict(checks['trainer tax <']['met'])}; of which bookkeeping (vs the same "
             f"loop with it off): {head['bookkeeping_ratio']['median'] - 1:+.1%}",
             f"cadence: log every {cfg.log_every}, samples every {cfg.sample_every}, snapshots "
             f"every {cfg.snapshot_every}, tensorboard {cfg.tensorboard}"]
    settings = {"preset": args.preset, "config": cfg.to_dict(), "iters": K, "short": short,
                "reps": reps, "warmup": args.warmup, "clock": args.clock, "quick": args.quick,
                "progress": not args.no_progress}
    common.emit("trainer_tax", {"settings": settings, "results": results, "targets": checks}, table,
         out=args.out, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
