"""The coupling check's cost beside a default ``asgan-probe attack`` run (issue 21: at most 5%).

Every probe first runs :func:`probes.core.coupling.check` (through
:func:`probes.measures.contract.coupling_record`) on its own inputs and in its own mode: a
probe batch of 8 samples, one of them replaced, scored in the probe's mode (in ``frozen``
mode that includes building the frozen copy from the clean reference group) and in ``batch``
mode. ``attack`` does it once per population.

Cases, timed interleaved on the same D and inputs:

- ``attack``: :func:`probes.measures.attack.attack` with the CLI's defaults (FGSM, eps
  ``0, 0.5, 1, 2, 4, 8 /255``, reals and fakes, ``n`` = 1000 each, mode ``auto``, batch 256),
  on the classic DCGAN-32 RGB D (``trainers.loop.build_models``, width 64, BatchNorm, so the
  mode is ``frozen`` with a reference group of 64) given as ``(D, meta)``
  (``probes.discriminator``), with seeded inputs in [-1, 1] passed as ``x`` (no data loading:
  the checks' share of a real run, which also loads a checkpoint and draws data, is smaller);
- ``checks``: the two coupling checks ``attack`` runs (reals and fakes), alone.

The headline is ``checks / attack`` per repetition (the checks are part of ``attack``, so this
is their share of the run); target <= 0.05.

Run: ``python -m bench.coupling_cost`` (about a minute on 2 cores); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import types

import torch

from bench import _common as common

TARGET = 0.05  # the checks' share of a default attack run


def build(n: int, width: int, seed: int = 0):
    """``(D, meta)`` of the DCGAN-32 RGB D and seeded reals / fakes ``(n, 3, 32, 32)``."""
    import probes
    from trainers import make_config
    from trainers.loop import build_models

    cfg = make_config(None, dict(arch="dcgan", width=width, z_dim=100, seed=seed))
    _, net, _, _, _, _ = build_models(cfg, types.SimpleNamespace(shape=(3, 32, 32)),
                                      torch.device("cpu"))
    D, meta = probes.discriminator(net.eval(), shape=(3, 32, 32), group_size=64)
    g = torch.Generator().manual_seed(seed + 1)
    x = {pop: torch.rand(n, 3, 32, 32, generator=g) * 2 - 1 for pop in ("real", "fake")}
    return D, meta, x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.coupling_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p, reps=5)
    p.add_argument("--n", type=int, default=1000, help="samples per population (default 1000)")
    p.add_argument("--width", type=int, default=64, help="D width (default 64: DCGAN-32)")
    args = p.parse_args(argv)
    common.setup_threads(args.threads)
    n, width, reps = args.n, args.width, args.reps
    if args.quick:
        n, width, reps = 96, 8, 2
    from probes.measures.attack import attack
    from probes.measures.contract import coupling_record

    D, meta, x = build(n, width)
    group = meta["config"]["batch_size"]
    out = attack([(D, meta)], x=x, n=n)  # once, for the record: what the checks found
    found = {r["population"]: r["coupling"] for r in out["records"] if r["eps"] == 0}

    def checks():
        for pop in ("real", "fake"):
            coupling_record(D, x[pop][:n], mode="auto", reference=x[pop][:group], name="D")

    cases = {"attack": lambda: attack([(D, meta)], x=x, n=n), "checks": checks}
    common.log(f"[coupling_cost] n {n} per population, D width {width}, {reps} reps")
    times = common.interleave(cases, reps=reps, warmup=args.warmup,
                              progress=lambda s: common.log(f"[coupling_cost] {s}"))
    results = {clock: {"seconds": common.medians(t),
                       "checks_share": common.pair_ratio(t["checks"], t["attack"])}
               for clock, t in times.items()}
    share = results[args.clock]["checks_share"]
    checks_met = {"checks / attack <=": {"target": TARGET, "value": share["median"],
                                          "met": share["median"] <= TARGET}}
    sec = results[args.clock]["seconds"]
    table = [["case", "seconds (median)", "share of attack"],
             ["attack (default settings, reals + fakes)", f"{sec['attack']:.3f}", "1"],
             ["coupling checks (2)", f"{sec['checks']:.4f}", common.fmt_ratio(share, 4)]]
    settings = {"n": n, "width": width, "reps": reps, "warmup": args.warmup,
                "clock": args.clock, "quick": args.quick, "mode": out["records"][0]["mode"],
                "reference_n": group, "probe_n": found["real"]["probe_n"]}
    notes = [f"target checks / attack <= {TARGET}: {share['median']:.4f} "
             f"{common.verdict(share['median'] <= TARGET)}",
             f"causes found: {found['real']['causes']}; per sample in mode "
             f"{found['real']['mode']}: {found['real']['per_sample']}"]
    common.emit("coupling_cost", {"settings": settings, "results": results,
                                  "coupling": found, "targets": checks_met}, table,
                out=args.out, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
