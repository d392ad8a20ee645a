"""``asgan-probe report [RUN_DIR ...] --out DIR``."""

from __future__ import annotations

from probes.cli._common import log

NAME = "report"
HELP = ("the study report from the shipped checkpoints (no RUN_DIR), or training curves and "
        "samples of your own run directories")
EXAMPLES = """examples:
  asgan-probe report --out runs/report                      # the study: claims table, figures
  asgan-probe report runs/demo/baseline runs/demo/asgan --out runs/demo/report
"""


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="asgan-train run directories (none: the shipped study checkpoints)")
    p.add_argument("--out", required=True, help="folder for report.md and figures")
    p.add_argument("--n-quality", type=int, default=2000,
                   help="samples per checkpoint for FD/KID/PRDC (study report)")
    p.add_argument("--n-stacked", type=int, default=26_000,
                   help="samples per stacked-MNIST checkpoint (protocol: 26,000)")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    if args.runs:
        from probes.viz.runs import write_report

        md = write_report(args.runs, args.out)
    else:
        from pathlib import Path

        from probes.study.arms import shipped_plans
        from probes.study.engine import write_report
        from probes.study.report import write_study_report

        # the shipped studies' plan files (studies/SHIPPED names them): the same reports as
        # asgan-study report PLAN --root <checkout>; the first in --out, each further one in
        # --out/<study name>/
        first, *more = shipped_plans()
        md = write_study_report(args.out, plan=first, n_quality=args.n_quality,
                                n_stacked=args.n_stacked, seed=args.seed)
        for plan in more:
            log(f"wrote {write_report(plan, Path(args.out) / plan.name)}")
    log(f"wrote {md}")
    return 0
