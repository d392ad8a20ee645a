"""``asgan-probe coverage CKPT [CKPT2 ...]``: mode coverage beside the published tables.

ring8 / grid25 checkpoints: modes captured, high-quality share and reverse KL from ``--n``
(default 2,500) generated points (PacGAN's protocol, :mod:`probes.core.coverage`). stacked-mnist
checkpoints: modes (of 1000) and KL(p_gen || uniform) from ``--n`` (default 26,000) samples,
each channel read by the shipped digit classifier, whose held-out accuracy is written next to
every count. The real data get the same treatment as a reference row. JSON to ``--out`` or
stdout; the side-by-side markdown tables to stderr (and ``--markdown``); figures on ``--plot``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probes.cli._common import add_common, log, write_json
from trainers.errors import UserError

NAME = "coverage"
HELP = ("mode coverage: modes, high-quality share and reverse KL on ring8/grid25; modes and "
        "KL on stacked-mnist; beside the published VEEGAN/PacGAN tables")
EXAMPLES = """examples:
  asgan-probe coverage runs/ring/base/ckpt-003000.safetensors \\
      runs/ring/as/ckpt-003000.safetensors --n 2500 --seed 0 --out cov.json --plot cov.png
  asgan-probe coverage runs/stacked/ckpt-010000.safetensors --out stacked.json --plot stacked.png
"""
MIXTURES = ("ring8", "grid25")
STACKED = "stacked-mnist"
DEFAULT_N = {"ring8": 2500, "grid25": 2500, STACKED: 26_000}
CAVEAT = ("stacked MNIST here is built from the 10k-digit mnist10k subset and read by our own "
          "classifier: the numbers are indicative, not the papers'")


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


def label(path: str | Path, meta: dict[str, Any]) -> str:
    """A short, readable name: ``<run dir>/<snapshot> (<trainer>[, eps k/255])``."""
    p = Path(path)
    cfg = meta.get("config", {})
    arm = cfg.get("trainer", "?")
    if arm == "asgan":
        arm += f", {cfg.get('perturbation', 'fgsm')} eps {cfg.get('eps', 0) * 255:g}/255"
    return f"{p.parent.name}/{p.stem} ({arm})"


def checkpoint_facts(path, meta: dict[str, Any]) -> dict[str, Any]:
    """:func:`probes.measures.evolution.describe` (the facts every probe records) plus a label."""
    from probes.measures.evolution import describe

    return {**describe(meta, path), "label": label(path, meta)}


def load_digit_classifier(path: str | None, device) -> tuple[Any, dict[str, Any]]:
    """``(net, summary)`` of the digit classifier (the shipped one when ``path`` is None)."""
    from probes.adapters.classifier import classifier_summary, load_classifier

    try:
        net, meta = load_classifier(path, device=device)
    except ValueError as e:
        raise UserError(f"{e}; pass a classifier made by scripts/train_classifier.py "
                        "(or none, for the shipped one)") from None
    return net, classifier_summary(meta)


def _check_n(n: int | None) -> None:
    if n is not None and n < 1:
        raise UserError(f"--n must be a positive number of samples, got {n}")


def measure(paths: list[str], *, n: int | None = None, seed: int = 0, device: str = "cpu",
            classifier: str | None = None) -> tuple[dict[str, Any], dict[str, list]]:
    """Coverage of every checkpoint in ``paths`` (and of the real data, once per dataset).

    Returns:
        ``(result, plots)``: the JSON-able result, and per kind (``"mixture"``, ``"stacked"``)
        the panels the figures need (samples included).
    """
    import torch

    from probes.adapters.classifier import predict_channels
    from probes.core import coverage
    from probes.io import sources
    from probes.study import references

    _check_n(n)
    dev = sources.resolve_device(device)
    # check everything first (files, data, sample counts, classifier): a bad input fails
    # in one line before any work
    loaded = []
    for path in paths:
        G, _, meta = sources.load(path, device=dev)
        facts = checkpoint_facts(path, meta)
        if facts["data"] not in (*MIXTURES, STACKED):
            raise UserError(f"{path} was trained on {facts['data']!r}; coverage needs ring8, "
                            "grid25 or stacked-mnist (use asgan-probe quality for other data)")
        ds = sources.dataset_for(meta)
        count = n or DEFAULT_N[facts["data"]]
        if count > ds.n:
            raise UserError(f"--n {count} asks for more real {ds.name} samples than the "
                            f"{ds.n} it has; lower --n")
        loaded.append((path, G, meta, facts, ds, count))
    net = clf = None
    if any(facts["data"] == STACKED for *_, facts, _, _ in loaded):
        net, clf = load_digit_classifier(classifier, dev)

    rows, reals, plots = [], {}, {"mixture": [], "stacked": []}
    for _path, G, meta, facts, ds, count in loaded:
        data = facts["data"]
        log(f"{facts['label']}: {count} samples of {data}")
        x = sources.fakes(G, meta, count, seed=seed, device=dev)
        if data in MIXTURES:
            modes = torch.tensor(ds.info["modes"], dtype=torch.float64)
            std = float(ds.info["std"])
            r = coverage.mixture_coverage(x, modes, std)
            if data not in reals:  # the real data first, as the reference panel
                xr = sources.reals(meta, count, seed=seed)
                reals[data] = dict(coverage.mixture_coverage(xr, modes, std),
                                   label=f"real {data} samples")
                plots["mixture"].append({"title": f"real {data} samples (reference)",
                                         "x": xr, "modes": modes, "std": std,
                                         "result": reals[data], "data": data})
            plots["mixture"].append({"title": facts["label"], "x": x, "modes": modes,
                                     "std": std, "result": r, "data": data})
        else:
            r = coverage.stacked_coverage(predict_channels(net, x))
            r.update(classifier_accuracy=clf["heldout_accuracy"], caveat=CAVEAT)
            plots["stacked"].append({"label": facts["label"], "result": r})
            if data not in reals:
                xr = sources.reals(meta, count, seed=seed)
                reals[data] = dict(coverage.stacked_coverage(predict_channels(net, xr)),
                                   label=f"real {data} samples",
                                   classifier_accuracy=clf["heldout_accuracy"], caveat=CAVEAT)
                plots["stacked"].insert(0, {"label": "real stacked MNIST (reference)",
                                            "result": reals[data], "reference": True})
        rows.append({**facts, "n": count, "seed": seed, **r})
    datasets = list(dict.fromkeys(r["data"] for r in rows))  # order of first appearance
    # panels grouped by dataset, each group led by its real-data reference
    plots["mixture"].sort(key=lambda p: datasets.index(p["data"]))
    result = {"probe": "coverage", "seed": seed,
              "protocol": {d: coverage.PROTOCOL_STACKED if d == STACKED
                           else coverage.PROTOCOL_2D for d in datasets},
              "results": rows, "reals": reals,
              "published": {d: references.published(d) for d in datasets}}
    if clf is not None:
        result["classifier"] = clf
        result["caveat"] = CAVEAT
    return result, plots


def tables(result: dict[str, Any]) -> str:
    """The markdown side-by-side tables, one per dataset."""
    from probes.study.references import side_by_side

    parts = []
    for data in result["published"]:
        ours = [r for r in result["results"] if r["data"] == data]
        real = result["reals"].get(data)
        ours = ours + ([dict(real, label=real["label"] + " (reference)")] if real else [])
        parts.append(f"### {data}\n\n" + side_by_side(data, ours))
    return "\n\n".join(parts) + "\n"


def run(args) -> int:
    from trainers.checkpoint import atomic_write_bytes

    result, plots = measure(args.checkpoints, n=args.n, seed=args.seed, device=args.device,
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
