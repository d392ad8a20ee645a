"""``asgan-probe report RUN_DIR [RUN_DIR ...] --out DIR``."""

from __future__ import annotations

from probes.commands._common import log

NAME = "report"
HELP = "write report.md with training curves and sample grids for one or more run directories"
EXAMPLES = """examples:
  asgan-probe report runs/demo/baseline runs/demo/asgan --out runs/demo/report
"""


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of asgan-train")
    p.add_argument("--out", required=True, help="folder for report.md and figures")


def run(args) -> int:
    from probes.report import write_report

    md = write_report(args.runs, args.out)
    log(f"wrote {md}")
    return 0
