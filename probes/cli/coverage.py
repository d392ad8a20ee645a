"""``asgan-probe coverage CKPT [CKPT2 ...]``: mode coverage beside the published tables.

Parse, call :func:`probes.measures.coverage.coverage` (protocols and defaults there), write JSON
to ``--out`` or stdout; the side-by-side markdown tables to stderr (and ``--markdown``);
figures on ``--plot``.
"""

from __future__ import annotations

from pathlib import Path

from probes.cli._common import add_common, log, write_json

NAME = "coverage"
HELP = ("mode coverage: modes, high-quality share and reverse KL on ring8/grid25; modes and "
        "KL on stacked-mnist; beside the published VEEGAN/PacGAN tables")
EXAMPLES = """examples:
  asgan-probe coverage runs/ring/base/ckpt-003000.safetensors \\
      runs/ring/as/ckpt-003000.safetensors --n 2500 --seed 0 --out cov.json --plot cov.png
  asgan-probe coverage runs/stacked/ckpt-010000.safetensors --out stacked.json --plot stacked.png
"""
def add_arguments(p) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help="checkpoints trained on ring8, grid25 or stacked-mnist")
    p.add_argument("--n", type=int, default=None,
                   help="generated samples per checkpoint (default: 2500 on ring8/grid25, "
                        "26000 on stacked-mnist, as VEEGAN/PacGAN)")
    add_common(p)
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="figure: 2-D scatter with modes and 3-std circles, or the stacked-MNIST "
                        "mode histogram (with both kinds, the latter goes to PNG-stacked.png)")
    p.add_argument("--markdown", default=None, metavar="MD",
                   help="also write the side-by-side tables (ours beside the published) here")
    p.add_argument("--classifier", default=None, metavar="FILE",
                   help="digit classifier (default: the shipped, manifest-verified file)")


def run(args) -> int:
    from asgan_base.files import atomic_write_bytes
    from probes.measures.coverage import coverage, tables

    result, plots = coverage(args.checkpoints, n=args.n, seed=args.seed, device=args.device,
                            classifier=args.classifier)
    md = tables(result)
    log(md)
    if args.markdown:
        atomic_write_bytes(Path(args.markdown), md.encode())
    if args.plot:
        from probes.viz.coverage import plot_mixtures, plot_stacked

        out = Path(args.plot)
        if plots["mixture"]:
            log(f"wrote {plot_mixtures(plots['mixture'], out)}")
        if plots["stacked"]:
            target = out.with_name(out.stem + "-stacked.png") if plots["mixture"] else out
            log(f"wrote {plot_stacked(plots['stacked'], target)}")
    write_json(result, args.out)
    return 0
