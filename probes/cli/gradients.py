"""``asgan-probe gradients CKPT [CKPT ...]``: sparsity and structure of D's input gradient."""

from __future__ import annotations

from asgan_base.errors import UserError
from probes.cli._common import (
    add_common,
    add_data,
    add_foreign,
    add_mode,
    add_reals,
    log,
    write_json,
)

NAME = "gradients"
HELP = ("input gradients of D on reals or fakes: per-image sparsity (Hoyer, Gini, ...) and "
        "structure (foreground share, high-frequency share, ...) with bootstrap CIs; "
        "histograms (paper Fig. 5a) and gradient maps (Fig. 1) on request")
EXAMPLES = """examples:
  asgan-probe gradients runs/b1/ckpt-002000.safetensors runs/a1/ckpt-002000.safetensors \\
      --population real --n 512 --out grads.json --hist hist.png --maps maps.png
  asgan-probe gradients runs/a1/ckpt-002000.safetensors --wrt g_loss --population fake \\
      --mode eval --random-reference
  asgan-probe gradients netD.pth --data imagefolder --data-root ~/reals --n 64

All checkpoints see the same real images (seeded); with --population fake each D gets its
own G's samples unless --fakes-from first. Paired differences (first checkpoint minus each
other one, bootstrap CI over images) are reported when the inputs are the same.
"""


def add_arguments(p) -> None:
    from probes.measures import gradients as measure

    p.add_argument("checkpoints", nargs="+", metavar="CKPT")
    p.add_argument("--population", choices=("real", "fake"), default="real")
    p.add_argument("--n", type=int, default=measure.N, help=f"samples (default {measure.N})")
    p.add_argument("--wrt", choices=("logit", "g_loss", "d_loss"), default="logit",
                   help="differentiate D's raw logit, the non-saturating G loss, or D's loss")
    add_mode(p)
    add_reals(p)
    add_data(p)
    add_foreign(p)
    p.add_argument("--batch-size", type=int, default=None,
                   help="probe batch (default: D's training batch in batch mode, else 256)")
    p.add_argument("--fakes-from", choices=("own", "first"), default="own",
                   help="with --population fake: each checkpoint's G, or the first one's")
    p.add_argument("--boot", type=int, default=measure.N_BOOT,
                   help=f"bootstrap resamples (0 = no CI; default {measure.N_BOOT})")
    p.add_argument("--random-reference", action="store_true",
                   help="also measure a randomly initialised D of the first checkpoint's "
                        "architecture (a sanity-check baseline, Adebayo et al. 2018)")
    p.add_argument("--hist", default=None, metavar="PNG", help="write a histogram figure")
    p.add_argument("--hist-scale", choices=("raw", "rms"), default="raw",
                   help="raw gradient values, or each image divided by its RMS")
    p.add_argument("--hist-bins", type=int, default=measure.HIST_BINS,
                   help=f"histogram bins (default {measure.HIST_BINS})")
    p.add_argument("--linear-density", action="store_true", help="linear, not log, density")
    p.add_argument("--maps", default=None, metavar="PNG", help="write a gradient-map grid")
    p.add_argument("--n-maps", type=int, default=measure.N_MAPS,
                   help=f"images in the map grid (default {measure.N_MAPS})")
    add_common(p)


def _log_row(row: dict) -> None:
    m = row["measures"]
    log(f"{row['label']:<40} mode {row['mode']:<6} L1 {m['l1']['mean']:.4g}  hoyer "
        f"{m['hoyer']['mean']:.3f}  gini_hr {m['gini_hr']['mean']:.3f}"
        + (f"  fg_share {m['fg_share']['mean']:.3f}  hf_share {m['hf_share']['mean']:.3f}"
           if "fg_share" in m else ""))


def run(args) -> int:
    from probes.io.sources import resolve_device
    from probes.measures.gradients import gradients

    if args.n < 1 or args.n_maps < 1 or args.hist_bins < 2 or args.boot < 0:
        raise UserError("--n and --n-maps must be >= 1, --hist-bins >= 2, --boot >= 0")
    result, entries = gradients(
        args.checkpoints, population=args.population, n=args.n, wrt=args.wrt, mode=args.mode,
        batch_size=args.batch_size, fakes_from=args.fakes_from, boot=args.boot,
        random_reference=args.random_reference, hist=bool(args.hist),
        hist_scale=args.hist_scale, hist_bins=args.hist_bins,
        keep=args.n_maps if args.maps else 0, seed=args.seed,
        device=resolve_device(args.device), check_maps=bool(args.maps), reals=args.reals,
        data=args.data, data_root=args.data_root, format=args.format, label=args.label,
        fakes=args.fakes)
    for row in result["checkpoints"]:
        _log_row(row)
    write_json(result, args.out)
    _figures(args, entries, result)
    return 0


def _figures(args, entries, result) -> None:
    from probes.core.gradients import gradient_map
    from probes.io.checkpoints import pixel_range
    from probes.viz.gradients import MAPS_TITLE, plot_histograms, plot_maps, plot_rows

    pr = pixel_range(entries[0]["meta"])
    if args.hist:
        hists = [{"label": r["label"], "edges": result["histogram"]["edges"], **r["histogram"]}
                 for r in result["checkpoints"]]
        xlabel = {"raw": "input-gradient value", "rms": "input-gradient value / its RMS"}
        plot_histograms(hists, args.hist, log_density=not args.linear_density,
                        xlabel=xlabel[args.hist_scale] + f" (d {args.wrt} / dx)",
                        title=f"{args.population} inputs, n = {args.n}")
        log(f"wrote {args.hist}")
    if not args.maps:
        return
    if args.population == "real" or args.fakes_from == "first":
        grads = [(e["label"], e["res"]["grad"]) for e in entries]
        plot_maps(entries[0]["res"]["x"], grads, args.maps, pixel_range=pr, n=args.n_maps)
    else:  # each D at its own G's fakes: show each one's inputs above its gradients
        rows = []
        for e in entries:
            rows += [(f"fakes of\n{e['label']}", "image", e["res"]["x"]),
                     (e["label"], "map", gradient_map(e["res"]["grad"]))]
        plot_rows(rows, args.maps, pixel_range=pr, n=args.n_maps, title=MAPS_TITLE)
    log(f"wrote {args.maps}")
