"""Mode coverage of generator checkpoints beside the published tables: the ``asgan-probe
coverage`` measurement, also used by the study report and notebook 04.

ring8 / grid25: modes captured, high-quality share and reverse KL from ``n`` (default 2,500)
generated points (PacGAN's protocol, :mod:`probes.core.coverage`). stacked-mnist: modes (of
1000) and KL(p_gen || uniform) from ``n`` (default 26,000) samples, each channel read by the
shipped digit classifier, whose held-out accuracy is written next to every count. The real
data get the same treatment as a reference row.
"""

from __future__ import annotations

from typing import Any

from asgan_base.errors import UserError
from probes.io.checkpoints import facts
from probes.io.outputs import log
from probes.measures.envelope import envelope

MIXTURES = ("ring8", "grid25")
STACKED = "stacked-mnist"
DEFAULT_N = {"ring8": 2500, "grid25": 2500, STACKED: 26_000}
NOT_OPTIONS = ("paths", "device")  # coverage()'s arguments that are no option
UNITS = {"modes_captured": "modes (count) with at least one high-quality sample",
         "high_quality": "share in [0, 1] of samples within 3 std of a mode (_pct: percent)",
         "reverse_kl": "nats: KL(p || uniform) of the mode histogram (2-D mixtures)",
         "kl": "nats: KL(p_gen || uniform) over the 1000 stacked-MNIST modes"}
CAVEAT = ("stacked MNIST here is built from the 10k-digit mnist10k subset and read by our own "
          "classifier: the numbers are indicative, not the papers'")


def load_digit_classifier(path: str | None, device, data: str = "mnist10k"
                          ) -> tuple[Any, dict[str, Any]]:
    """``(net, summary)`` of the classifier at ``path``, or when None the shipped one of
    ``data`` (Fashion-MNIST has its own; any other data gets the digit classifier's)."""
    from probes.adapters.classifier import SHIPPED_FOR, classifier_summary, load_classifier

    try:
        net, meta = load_classifier(path, device=device,
                                    data=data if data in SHIPPED_FOR else "mnist10k")
    except ValueError as e:
        raise UserError(f"{e}; pass a classifier made by scripts/train_classifier.py "
                        "(or none, for the shipped one)") from None
    return net, classifier_summary(meta)


def check_n(n: int | None) -> None:
    if n is not None and n < 1:
        raise UserError(f"--n must be a positive number of samples, got {n}")


def _load_checked(paths: list[str], n: int | None, dev) -> list[tuple]:
    """``[(path, G, meta, info, dataset, count)]``: every file read and checked first (data,
    sample counts), so a bad input fails in one line before any work."""
    from probes.io import sources

    loaded = []
    for path in paths:
        G, _, meta = sources.load(path, device=dev)
        info = facts(meta, path)
        if info["data"] not in (*MIXTURES, STACKED):
            raise UserError(f"{path} was trained on {info['data']!r}; coverage needs ring8, "
                            "grid25 or stacked-mnist (use asgan-probe quality for other data)")
        ds = sources.dataset_for(meta)
        count = n or DEFAULT_N[info["data"]]
        if count > ds.n:
            raise UserError(f"--n {count} asks for more real {ds.name} samples than the "
                            f"{ds.n} it has; lower --n")
        loaded.append((path, G, meta, info, ds, count))
    return loaded


def _mixture(x, meta, info, ds, count, seed, reals, plots, with_reals) -> dict[str, Any]:
    """Coverage of one ring8/grid25 checkpoint's samples ``x`` (and, once per dataset, of
    the real data: the reference panel, first)."""
    import torch

    from probes.core import coverage as cov
    from probes.io import sources

    data = info["data"]
    modes = torch.tensor(ds.info["modes"], dtype=torch.float64)
    std = float(ds.info["std"])
    r = cov.mixture_coverage(x, modes, std)
    if with_reals and data not in reals:  # the real data first, as the reference panel
        xr = sources.reals(meta, count, seed=seed)
        reals[data] = dict(cov.mixture_coverage(xr, modes, std), label=f"real {data} samples")
        plots["mixture"].append({"title": f"real {data} samples (reference)", "x": xr,
                                 "modes": modes, "std": std, "result": reals[data],
                                 "data": data})
    plots["mixture"].append({"title": info["label"], "x": x, "modes": modes, "std": std,
                             "result": r, "data": data})
    return r


def _stacked(x, meta, info, count, seed, reals, plots, with_reals, net, clf) -> dict[str, Any]:
    """Coverage of one stacked-MNIST checkpoint's samples ``x``, each channel read by the
    classifier ``net`` (and, once, of the real data: the reference bar, first)."""
    from probes.adapters.classifier import predict_channels
    from probes.core import coverage as cov
    from probes.io import sources

    data = info["data"]
    r = cov.stacked_coverage(predict_channels(net, x))
    r.update(classifier_accuracy=clf["heldout_accuracy"], caveat=CAVEAT)
    plots["stacked"].append({"label": info["label"], "result": r})
    if with_reals and data not in reals:
        xr = sources.reals(meta, count, seed=seed)
        reals[data] = dict(cov.stacked_coverage(predict_channels(net, xr)),
                           label=f"real {data} samples",
                           classifier_accuracy=clf["heldout_accuracy"], caveat=CAVEAT)
        plots["stacked"].insert(0, {"label": "real stacked MNIST (reference)",
                                    "result": reals[data], "reference": True})
    return r


def coverage(paths: list[str], *, n: int | None = None, seed: int = 0, device: str = "cpu",
            classifier: str | None = None, with_reals: bool = True
            ) -> tuple[dict[str, Any], dict[str, list]]:
    """Coverage of every checkpoint in ``paths`` (and of the real data, once per dataset,
    unless ``with_reals`` is False: the study measures many checkpoints of one dataset).
    ``n``: generated samples per checkpoint (None: :data:`DEFAULT_N` of its dataset).

    Returns:
        ``(result, plots)``: the ``asgan-probe coverage`` JSON
        (:func:`probes.measures.envelope.envelope` keys, protocols, one ``results`` row per
        checkpoint, the real data's ``reals`` rows, the ``published`` tables), and per kind
        (``"mixture"``, ``"stacked"``) the panels the figures need (samples included).
    """
    options = {k: v for k, v in locals().items() if k not in NOT_OPTIONS}  # the call's, as given
    from probes.core import coverage as cov
    from probes.io import sources
    from probes.measures import references

    check_n(n)
    dev = sources.resolve_device(device)
    loaded = _load_checked(paths, n, dev)
    net = clf = None
    if any(info["data"] == STACKED for *_, info, _, _ in loaded):
        net, clf = load_digit_classifier(classifier, dev)
    rows, reals, plots = [], {}, {"mixture": [], "stacked": []}
    for _path, G, meta, info, ds, count in loaded:
        log(f"{info['label']}: {count} samples of {info['data']}")
        x = sources.fakes(G, meta, count, seed=seed, device=dev)
        r = (_mixture(x, meta, info, ds, count, seed, reals, plots, with_reals)
             if info["data"] in MIXTURES else
             _stacked(x, meta, info, count, seed, reals, plots, with_reals, net, clf))
        rows.append({**info, "n": count, "seed": seed, **r})
    datasets = list(dict.fromkeys(r["data"] for r in rows))  # order of first appearance
    # panels grouped by dataset, each group led by its real-data reference
    plots["mixture"].sort(key=lambda p: datasets.index(p["data"]))
    result = {**envelope("coverage", inputs=paths, options=options, seed=seed, units=UNITS,
                         evaluates_d=False),
              "protocol": {d: cov.PROTOCOL_STACKED if d == STACKED
                           else cov.PROTOCOL_2D for d in datasets},
              "results": rows, "reals": reals,
              "published": {d: references.published(d) for d in datasets}}
    if clf is not None:
        result["classifier"] = clf
        result["caveat"] = CAVEAT
    return result, plots


def tables(result: dict[str, Any]) -> str:
    """The markdown side-by-side tables, one per dataset."""
    from probes.measures.references import side_by_side

    parts = []
    for data in result["published"]:
        ours = [r for r in result["results"] if r["data"] == data]
        real = result["reals"].get(data)
        ours = ours + ([dict(real, label=real["label"] + " (reference)")] if real else [])
        parts.append(f"### {data}\n\n" + side_by_side(data, ours))
    return "\n\n".join(parts) + "\n"


