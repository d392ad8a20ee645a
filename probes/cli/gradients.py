"""``asgan-probe gradients CKPT [CKPT ...]``: sparsity and structure of D's input gradient."""

from __future__ import annotations

from typing import Any

from probes.cli._common import add_common, log, write_json
from trainers.errors import UserError

NAME = "gradients"
HELP = ("input gradients of D on reals or fakes: per-image sparsity (Hoyer, Gini, ...) and "
        "structure (foreground share, high-frequency share, ...) with bootstrap CIs; "
        "histograms (paper Fig. 5a) and gradient maps (Fig. 1) on request")
EXAMPLES = """examples:
  asgan-probe gradients runs/b1/ckpt-002000.safetensors runs/a1/ckpt-002000.safetensors \\
      --population real --n 512 --out grads.json --hist hist.png --maps maps.png
  asgan-probe gradients runs/a1/ckpt-002000.safetensors --wrt g_loss --population fake \\
      --mode eval --random-reference

All checkpoints see the same real images (seeded); with --population fake each D gets its
own G's samples unless --fakes-from first. Paired differences (first checkpoint minus each
other one, bootstrap CI over images) are reported when the inputs are the same.
"""


def add_arguments(p) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CKPT")
    p.add_argument("--population", choices=("real", "fake"), default="real")
    p.add_argument("--n", type=int, default=512, help="samples (default 512)")
    p.add_argument("--wrt", choices=("logit", "g_loss", "d_loss"), default="logit",
                   help="differentiate D's raw logit, the non-saturating G loss, or D's loss")
    p.add_argument("--mode", choices=("auto", "eval", "batch"), default="auto",
                   help="BatchNorm statistics: auto = batch for BN discriminators (SPEC 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="probe batch (default: D's training batch in batch mode, else 256)")
    p.add_argument("--fakes-from", choices=("own", "first"), default="own",
                   help="with --population fake: each checkpoint's G, or the first one's")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (0 = no CI)")
    p.add_argument("--random-reference", action="store_true",
                   help="also measure a randomly initialised D of the first checkpoint's "
                        "architecture (a sanity-check baseline, Adebayo et al. 2018)")
    p.add_argument("--hist", default=None, metavar="PNG", help="write a histogram figure")
    p.add_argument("--hist-scale", choices=("raw", "rms"), default="raw",
                   help="raw gradient values, or each image divided by its RMS")
    p.add_argument("--hist-bins", type=int, default=101)
    p.add_argument("--linear-density", action="store_true", help="linear, not log, density")
    p.add_argument("--maps", default=None, metavar="PNG", help="write a gradient-map grid")
    p.add_argument("--n-maps", type=int, default=8, help="images in the map grid")
    add_common(p)


def _random_d(meta: dict, seed: int, device):
    import torch

    from trainers.nets import build_net

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        D = build_net(meta["d_spec"])
    return D.to(device).eval()


def _histogram_edges(entries: list[dict], x_by_entry: list, args) -> Any:
    """Shared edges from a pilot batch: +- the largest |value| any D gives on its first
    batch (later batches may fall outside: they are counted as under/overflow)."""
    from probes.core.gradients import histogram_edges, iter_gradients, rms_scaled
    from probes.measures.evolution import default_batch_size

    limit = 0.0
    for e, x in zip(entries, x_by_entry):
        bs = default_batch_size(e["meta"], e["D"], args.mode, args.batch_size)
        b = next(iter_gradients(e["D"], x, wrt=args.wrt, population=args.population,
                                mode=args.mode, batch_size=bs))
        v = rms_scaled(b["grad"]) if args.hist_scale == "rms" else b["grad"]
        limit = max(limit, float(v.abs().max()))
    return histogram_edges(limit if limit > 0 else 1.0, args.hist_bins)


def run(args) -> int:
    from probes.core.gradients import histogram_reducer
    from probes.core.sparsity import DEFINITIONS as SPARSITY_DEFS
    from probes.core.sparsity import compare, summarize
    from probes.core.structure import CONFOUND_CHECKS, EVIDENCE, hf_reference
    from probes.core.structure import DEFINITIONS as STRUCTURE_DEFS
    from probes.io.sources import load, resolve_device
    from probes.measures.evolution import describe, inputs_for, is_image, label, measure

    if args.n < 1 or args.n_maps < 1 or args.hist_bins < 2 or args.boot < 0:
        raise UserError("--n and --n-maps must be >= 1, --hist-bins >= 2, --boot >= 0")
    device = resolve_device(args.device)
    entries = []
    for path in args.checkpoints:
        G, D, meta = load(path, device=device)
        info = describe(meta, path)
        entries.append({"G": G, "D": D, "meta": meta, "info": info, "label": label(info)})
    shapes = {tuple(e["meta"].get("data", {}).get("shape", ())) for e in entries}
    if len(shapes) > 1:
        raise UserError(f"checkpoints differ in data shape {sorted(shapes)}: compare "
                        "checkpoints of one dataset")
    first = entries[0]
    if args.random_reference:
        info = {**{k: None for k in first["info"]}, "d_arch": first["info"]["d_arch"],
                "data": first["info"]["data"], "reference": "random-init D"}
        entries.append({"G": first["G"], "D": _random_d(first["meta"], args.seed, device),
                        "meta": first["meta"], "info": info,
                        "label": f"random-init D ({first['meta']['d_spec']['arch']}, seed "
                                 f"{args.seed})"})
    shared = args.population == "real" or args.fakes_from == "first"
    x_first = inputs_for(first["meta"], first["G"], population=args.population, n=args.n,
                         seed=args.seed, device=device)
    xs = [x_first if shared or e is first or e["info"].get("reference") else
          inputs_for(e["meta"], e["G"], population=args.population, n=args.n, seed=args.seed,
                     device=device) for e in entries]
    image = is_image(first["meta"])
    if args.maps and not image:
        raise UserError("--maps needs image data; this checkpoint's data are points")
    edges = None
    if args.hist:
        edges = _histogram_edges(entries, xs, args)
    results, per_image = [], []
    for e, x in zip(entries, xs):
        acc = [histogram_reducer(edges, scale=args.hist_scale)] if edges is not None else None
        res = measure(e["D"], x, e["meta"], wrt=args.wrt, population=args.population,
                      mode=args.mode, batch_size=args.batch_size,
                      keep=args.n_maps if args.maps else False, accumulate=acc)
        e["res"] = res
        per_image.append(res["per_image"])
        row = {**e["info"], "label": e["label"], "mode": res["mode"],
               "batch_size": res["batch_size"], "batch_sizes": res["batch_sizes"],
               "logit_mean": float(res["logits"].double().mean()),
               "measures": summarize(res["per_image"], n_boot=args.boot, seed=args.seed)}
        if edges is not None:
            t = res["totals"]
            row["histogram"] = {"counts": t["hist_counts"].tolist(),
                                "under": int(t["hist_under"]), "over": int(t["hist_over"])}
        results.append(row)
        m = row["measures"]
        log(f"{e['label']:<40} mode {res['mode']:<5} L1 {m['l1']['mean']:.4g}  hoyer "
            f"{m['hoyer']['mean']:.3f}  gini_hr {m['gini_hr']['mean']:.3f}"
            + (f"  fg_share {m['fg_share']['mean']:.3f}  hf_share {m['hf_share']['mean']:.3f}"
               if "fg_share" in m else ""))
    comparisons = []
    if shared:
        for e, pi in zip(entries[1:], per_image[1:]):
            comparisons.append({"a": first["label"], "b": e["label"], "paired": True,
                                "measures": compare(per_image[0], pi, n_boot=args.boot,
                                                    seed=args.seed)})
    out = {"probe": "gradients", "population": args.population, "wrt": args.wrt,
           "n": args.n, "seed": args.seed, "n_boot": args.boot, "ci_level": 0.95,
           "inputs": ("the same seeded samples for every checkpoint" if shared else
                      "each checkpoint's own G on the same seeded latents"),
           "definitions": {**SPARSITY_DEFS, **STRUCTURE_DEFS},
           "evidence": list(EVIDENCE), "confound_checks": list(CONFOUND_CHECKS),
           "checkpoints": results, "comparisons": comparisons}
    if image:
        h, w = first["meta"]["data"]["shape"][-2:]
        out["hf_reference"] = hf_reference(h, w)
    if edges is not None:
        out["histogram"] = {"edges": edges.tolist(), "scale": args.hist_scale,
                            "edges_from": "+- max |value| over every D's first batch"}
    write_json(out, args.out)
    _figures(args, entries, xs, results, edges)
    return 0


def _figures(args, entries, xs, results, edges) -> None:
    from probes.core.gradients import gradient_map
    from probes.viz.gradients import MAPS_TITLE, plot_histograms, plot_maps, plot_rows

    pixel_range = tuple(entries[0]["meta"].get("pixel_range", (-1.0, 1.0)))
    if edges is not None:
        hists = [{"label": r["label"], "edges": edges, **r["histogram"]} for r in results]
        xlabel = {"raw": "input-gradient value", "rms": "input-gradient value / its RMS"}
        plot_histograms(hists, args.hist, log_density=not args.linear_density,
                        xlabel=xlabel[args.hist_scale] + f" (d {args.wrt} / dx)",
                        title=f"{args.population} inputs, n = {args.n}")
        log(f"wrote {args.hist}")
    if args.maps:
        if args.population == "real" or args.fakes_from == "first":
            grads = [(e["label"], e["res"]["grad"]) for e in entries]
            plot_maps(entries[0]["res"]["x"], grads, args.maps, pixel_range=pixel_range,
                      n=args.n_maps)
        else:  # each D at its own G's fakes: show each one's inputs above its gradients
            rows = []
            for e in entries:
                rows += [(f"fakes of\n{e['label']}", "image", e["res"]["x"]),
                         (e["label"], "map", gradient_map(e["res"]["grad"]))]
            plot_rows(rows, args.maps, pixel_range=pixel_range, n=args.n_maps,
                      title=MAPS_TITLE)
        log(f"wrote {args.maps}")
