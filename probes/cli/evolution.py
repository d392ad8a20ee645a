"""``asgan-probe evolution RUN_DIR [RUN_DIR ...]``: D's input gradient over training (Fig. 5b)."""

from __future__ import annotations

from asgan_base.errors import UserError
from probes.cli._common import add_common, add_mode, log, write_json

NAME = "evolution"
HELP = ("L1 norm and sparsity of D's input gradient at every snapshot of one or more runs, "
        "on fixed seeded inputs (paper Fig. 5b); --plot draws the curves")
EXAMPLES = """examples:
  asgan-probe evolution runs/demo/baseline runs/demo/asgan --out evo.json --plot evo.png
  asgan-probe evolution runs/a1 --population fake --wrt g_loss --n 256

Every snapshot and every run is measured on the same real images (seeded), or with
--population fake on each snapshot's G at the same seeded latents.
"""


def add_arguments(p) -> None:
    from probes.measures import evolution as measure

    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="asgan-train run directories")
    p.add_argument("--population", choices=("real", "fake"), default="real")
    p.add_argument("--n", type=int, default=measure.N,
                   help=f"samples per snapshot (default {measure.N})")
    p.add_argument("--wrt", choices=("logit", "g_loss", "d_loss"), default="logit")
    add_mode(p)
    p.add_argument("--batch-size", type=int, default=None,
                   help="probe batch (default: D's training batch in batch mode, else 256)")
    p.add_argument("--boot", type=int, default=measure.N_BOOT,
                   help=f"bootstrap resamples (0 = no CI; default {measure.N_BOOT})")
    p.add_argument("--no-structure", action="store_true",
                   help="sparsity only (skip the structure measures)")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the curves here")
    add_common(p)


def run(args) -> int:
    from probes.io.sources import resolve_device
    from probes.measures.evolution import evolution_record, evolutions

    if args.n < 1 or args.boot < 0:
        raise UserError("--n must be >= 1 and --boot >= 0")
    evos = evolutions(args.runs, n=args.n, population=args.population, wrt=args.wrt,
                      mode=args.mode, seed=args.seed, batch_size=args.batch_size,
                      n_boot=args.boot, with_structure=not args.no_structure,
                      device=resolve_device(args.device))
    for evo in evos:
        for s in evo["snapshots"]:
            m = s["measures"]
            log(f"{evo['label']:<40} step {s['step']:>7}  L1 {m['l1']['mean']:.4g}  hoyer "
                f"{m['hoyer']['mean']:.3f}  gini_hr {m['gini_hr']['mean']:.3f}")
    write_json(evolution_record(evos, population=args.population, wrt=args.wrt, n=args.n,
                                seed=args.seed, n_boot=args.boot, mode=args.mode,
                                batch_size=args.batch_size,
                                with_structure=not args.no_structure), args.out)
    if args.plot:
        from probes.viz.gradients import plot_evolution

        plot_evolution(evos, args.plot)
        log(f"wrote {args.plot}")
    return 0
