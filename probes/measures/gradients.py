"""Input-gradient measurements of discriminator checkpoints (paper Fig. 1, 5a).

:func:`per_image` is the one way a checkpoint's gradient is measured (sparsity, and structure
for images, per image, in the probe mode the caller names, against the clean reference group
of :func:`probes.io.sources.probe_inputs`); :func:`histogram_edges_for` is the one edge policy
of the Fig. 5a histograms; :func:`gradients` is the whole ``asgan-probe gradients``
measurement. The CLI, the study report and the notebooks call these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from asgan_base.errors import UserError
from probes.io.checkpoints import facts, group_size, is_image, pixel_range
from probes.measures.envelope import envelope

EVAL_BATCH = 256  # rows per pass in per-sample modes, where the batch size changes nothing
HIST_BINS = 101  # bins of the Fig. 5a histograms
N = 512  # samples per checkpoint
N_BOOT = 1000  # bootstrap resamples of each per-image mean's CI (0 = no CI)
N_MAPS = 8  # images in the gradient-map figure
# gradients()'s arguments that are no option of the measurement (where, what is kept, figures)
NOT_OPTIONS = ("paths", "device", "x", "keep", "check_maps")
UNITS = {"gradient": "d wrt / dx per input coordinate, wrt in logit (or loss, nats) units and "
                     "x in D's pixel range (its pixel_range)",
         "l1": "sum of |gradient| over one sample's coordinates",
         "sparsity": "hoyer, gini, gini_hr, ...: unitless, in [0, 1] (definitions)",
         "structure": "fg_share, hf_share, ...: shares in [0, 1] (definitions)"}


def batch_size_for(meta: dict[str, Any], D: nn.Module, mode: str,
                   batch_size: int | None = None) -> int:
    """The probe batch: ``batch_size`` when given; in ``batch`` mode the batch size D was
    trained with (its BatchNorm statistics then come from batches like its training
    batches); else :data:`EVAL_BATCH` (memory only)."""
    from probes.core.modes import rows_per_pass

    if batch_size is not None:
        if batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {batch_size}")
        return batch_size
    return rows_per_pass(D, mode, group_size(meta), EVAL_BATCH)


def per_image(D: nn.Module, x: torch.Tensor, meta: dict[str, Any], *, reference: torch.Tensor,
              wrt: str = "logit", population: str = "real", mode: str = "auto",
              batch_size: int | None = None, with_structure: bool = True,
              keep: bool | int = False, accumulate=None) -> dict[str, Any]:
    """Sparsity (and structure for images) of D's input gradient, per image of ``x``.

    :func:`probes.core.gradients.input_gradients` with the checkpoint's pixel range, its probe
    batch (:func:`batch_size_for`) and the clean ``reference`` group ``frozen`` mode holds the
    BatchNorm statistics of. Returns its result (``per_image``, ``mode``, ``logits``, ...).
    """
    from probes.core.gradients import grad_sparsity, input_gradients
    from probes.core.structure import structure_reducer
    from probes.io.memory import trim_heap

    reducers = [grad_sparsity]
    if with_structure and x.dim() == 4:
        reducers.append(structure_reducer(pixel_range=pixel_range(meta)))
    return input_gradients(D, x, wrt=wrt, population=population, mode=mode,
                           batch_size=batch_size_for(meta, D, mode, batch_size),
                           reference=reference, reduce=reducers, accumulate=accumulate,
                           keep=keep, after_batch=trim_heap)


def histogram_edges_for(pilots: Sequence[torch.Tensor], *, scale: str = "raw",
                        bins: int = HIST_BINS) -> torch.Tensor:
    """Shared Fig. 5a edges: +- the largest |value| in the pilot gradients (each D's first
    batch). Values of later batches outside them are *counted* as under/overflow by
    :func:`probes.core.gradients.histogram_reducer`, never clamped into the edge bins."""
    from probes.core.gradients import histogram_edges, rms_scaled

    limit = max(float((rms_scaled(g) if scale == "rms" else g).abs().max()) for g in pilots)
    return histogram_edges(limit if limit > 0 else 1.0, bins)


def pilot_edges(entries: Sequence[dict[str, Any]], *, wrt: str = "logit",
                population: str = "real", mode: str = "auto", scale: str = "raw",
                bins: int = HIST_BINS, batch_size: int | None = None) -> torch.Tensor:
    """:func:`histogram_edges_for` from each entry's first batch (entries as made by
    :func:`load_entries`: ``{"D", "meta", "x", "reference", ...}``)."""
    from probes.core.gradients import iter_gradients

    pilots = [next(iter_gradients(e["D"], e["x"], wrt=wrt, population=population, mode=mode,
                                  batch_size=batch_size_for(e["meta"], e["D"], mode,
                                                            batch_size),
                                  reference=e["reference"]))["grad"] for e in entries]
    return histogram_edges_for(pilots, scale=scale, bins=bins)


def histogram_record(res: dict[str, Any]) -> dict[str, Any]:
    """The counts a :func:`probes.core.gradients.histogram_reducer` summed into ``res``."""
    t = res["totals"]
    return {"counts": t["hist_counts"].tolist(), "under": int(t["hist_under"]),
            "over": int(t["hist_over"])}


def random_d(meta: dict[str, Any], seed: int, device) -> nn.Module:
    """A randomly initialised D of a checkpoint's architecture (Adebayo et al. 2018's sanity
    baseline), built under a forked RNG so the caller's stream is untouched."""
    from probes.io.edge import build_net

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        D = build_net(meta["d_spec"])
    return D.to(device).eval()


def load_entries(paths: Sequence[Any], *, population: str, n: int, seed: int, device,
                 fakes_from: str = "own", random_reference: bool = False,
                 reals: str | None = None, data: str | None = None,
                 data_root: str | None = None, format: str = "auto",
                 label: int | None = None, fakes: str | None = None,
                 x: torch.Tensor | None = None, mode: str = "auto") -> list[dict[str, Any]]:
    """Checkpoints with their inputs: ``{"G", "D", "meta", "info", "label", "x",
    "reference", "coupling"}``. Reals (and ``fakes_from="first"``, and the ``fakes`` folder)
    are the same samples for all. ``paths`` items: files, ``(D, meta)`` pairs
    (``probes.discriminator``) or modules; ``data``/``data_root``: the reals (a discriminator
    file has no dataset); ``format``/``label``: :func:`probes.io.sources.load`; ``x``: the
    samples to probe (in D's range; the first ``n``, and the first
    :func:`probes.io.checkpoints.group_size` as the reference group) instead of drawn ones.
    ``coupling``: :func:`probes.measures.contract.coupling_record` in ``mode``."""
    from probes.io.sources import load, probe_inputs
    from probes.measures.attack import unique_names
    from probes.measures.contract import coupling_record, resolve

    entries = []
    items = [resolve(p, lambda q: load(q, device=device, format=format, label=label), x=x)
             for p in paths]
    for (G, D, meta, _), src in zip(items, unique_names([it[3] for it in items])):
        info = facts(meta, src)
        entries.append({"G": G, "D": D, "meta": meta, "info": info, "label": info["label"]})
    shapes = {tuple(e["meta"].get("data", {}).get("shape", ())) for e in entries}
    if len(shapes) > 1:
        raise UserError(f"checkpoints differ in data shape {sorted(shapes)}: compare "
                        "checkpoints of one dataset")
    first = entries[0]
    if random_reference:
        if first["meta"].get("format") == "module":
            raise UserError("random_reference needs a checkpoint's architecture; a module D "
                            "has none to rebuild: compare with your own random-init module")
        arch = first["meta"]["d_spec"]["arch"]
        info = {**{k: None for k in first["info"]}, "d_arch": arch,
                "data": first["info"]["data"], "reference": "random-init D",
                "label": f"random-init D ({arch}, seed {seed})"}
        entries.append({"G": first["G"], "D": random_d(first["meta"], seed, device),
                        "meta": first["meta"], "info": info, "label": info["label"]})
    if x is not None:
        if population != "real":
            raise UserError("x gives reals; for fakes pass population='real' with your "
                            "samples, or a checkpoint with a generator")
        if x.shape[0] < 1:
            raise UserError("x holds no samples")
        for e in entries:
            e["x"], e["reference"] = x[:n], x[:group_size(e["meta"])]
    else:
        shared = population == "real" or fakes_from == "first" or fakes is not None
        where = dict(population=population, n=n, seed=seed, device=device, part=reals,
                     data=data, data_root=data_root, fakes_dir=fakes)
        x0 = probe_inputs(first["meta"], first["G"], **where)
        for e in entries:
            own = not (shared or e is first or e["info"].get("reference"))
            e["x"], e["reference"] = probe_inputs(e["meta"], e["G"], **where) if own else x0
    for e in entries:
        e["coupling"] = coupling_record(e["D"], e["x"], mode=mode, reference=e["reference"],
                                        name=e["label"])
    return entries


def _checkpoint_row(e: dict[str, Any], res: dict[str, Any], o: dict[str, Any],
                    with_histogram: bool) -> dict[str, Any]:
    """One checkpoint's entry of the ``gradients`` record: its facts, mode, reference size,
    reals used, contract and coupling, mean logit, summaries with bootstrap CIs."""
    from probes.core.sparsity import summarize
    from probes.io.sources import real_split
    from probes.measures.contract import contract_record

    population, fakes = o["population"], o["fakes"]
    return {**e["info"], "mode": res["mode"], "batch_size": res["batch_size"],
            "batch_sizes": res["batch_sizes"],
            "reference_n": int(e["reference"].shape[0]) if res["mode"] == "frozen" else None,
            "reals": (real_split(e["meta"], o["reals"], data=o["data"]) if o["x"] is None else
                      "given by the caller") if population == "real" else None,
            **({"fakes": str(fakes)} if population == "fake" and fakes else {}),
            "contract": contract_record(e["meta"], e["D"]), "coupling": e["coupling"],
            "logit_mean": float(res["logits"].double().mean()),
            "measures": summarize(res["per_image"], n_boot=o["boot"], seed=o["seed"]),
            **({"histogram": histogram_record(res)} if with_histogram else {})}


def _measure_entries(entries: list[dict[str, Any]], o: dict[str, Any]) -> tuple[list, Any]:
    """``(rows, edges)``: :func:`per_image` of every entry (kept in ``e["res"]``) and its
    record row; ``edges`` the shared histogram edges (None without ``hist``)."""
    from probes.core.gradients import histogram_reducer

    probe = dict(wrt=o["wrt"], population=o["population"], mode=o["mode"],
                 batch_size=o["batch_size"])
    edges = pilot_edges(entries, scale=o["hist_scale"], bins=o["hist_bins"],
                        **probe) if o["hist"] else None
    rows = []
    for e in entries:
        acc = None if edges is None else [histogram_reducer(edges, scale=o["hist_scale"])]
        e["res"] = per_image(e["D"], e["x"], e["meta"], reference=e["reference"],
                             keep=o["keep"] or False, accumulate=acc, **probe)
        rows.append(_checkpoint_row(e, e["res"], o, edges is not None))
    return rows, edges


def _record(entries, rows, edges, o: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The ``asgan-probe gradients`` JSON around the rows: envelope, settings, definitions,
    paired comparisons (shared inputs only), the HF reference and the histogram edges."""
    from probes.core.sparsity import DEFINITIONS as SPARSITY_DEFS
    from probes.core.sparsity import compare
    from probes.core.structure import CONFOUND_CHECKS, EVIDENCE, hf_reference
    from probes.core.structure import DEFINITIONS as STRUCTURE_DEFS

    first, boot, seed, x = entries[0], o["boot"], o["seed"], o["x"]
    shared = o["population"] == "real" or o["fakes_from"] == "first" or x is not None
    comparisons = [{"a": first["label"], "b": e["label"], "paired": True,
                    "measures": compare(first["res"]["per_image"], e["res"]["per_image"],
                                        n_boot=boot, seed=seed)}
                   for e in entries[1:]] if shared else []
    inputs = [e["info"]["checkpoint"] for e in entries if not e["info"].get("reference")]
    out = {**envelope("gradients", inputs=inputs,
                      options=options, seed=seed, units=UNITS),
           "population": o["population"], "wrt": o["wrt"], "n": o["n"], "seed": seed,
           "n_boot": boot, "ci_level": 0.95,
           "inputs_are": ("the caller's samples (x) for every checkpoint" if x is not None else
                          "the same seeded samples for every checkpoint" if shared else
                          "each checkpoint's own G on the same seeded latents"),
           "definitions": {**SPARSITY_DEFS, **STRUCTURE_DEFS},
           "evidence": list(EVIDENCE), "confound_checks": list(CONFOUND_CHECKS),
           "checkpoints": rows, "comparisons": comparisons}
    if is_image(first["meta"]):
        h, w = first["meta"]["data"]["shape"][-2:]
        out["hf_reference"] = hf_reference(h, w)
    if edges is not None:
        out["histogram"] = {"edges": edges.tolist(), "scale": o["hist_scale"],
                            "edges_from": "+- max |value| over every D's first batch; values "
                                          "outside are counted in under/over"}
    return out


def gradients(paths: Sequence[Any], *, population: str = "real", n: int = N,
              wrt: str = "logit", mode: str = "auto", batch_size: int | None = None,
              fakes_from: str = "own", boot: int = N_BOOT, random_reference: bool = False,
              hist: bool = False, hist_scale: str = "raw", hist_bins: int = HIST_BINS,
              keep: int = 0, seed: int = 0, device: str = "cpu", check_maps: bool = False,
              reals: str | None = None, data: str | None = None, data_root: str | None = None,
              format: str = "auto", label: int | None = None, fakes: str | None = None,
              x: torch.Tensor | None = None
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Sparsity and structure of each checkpoint's input gradient on the same inputs.

    ``paths``: files, ``(D, meta)`` pairs from ``probes.discriminator(module, ...)`` or
    modules; ``x``: reals to probe (in D's range) instead of drawn ones
    (:func:`load_entries`). Every checkpoint's result holds its ``contract`` (reduction,
    dtype) and the ``coupling`` check run before it (a per-sample mode that cannot make D
    per-sample is a UserError).

    ``reals``: which reals (``--reals``; default the held-out part when the checkpoint records
    a split). ``check_maps``: fail at once (before any work) if gradient maps were asked for
    on points. ``data``, ``data_root``, ``format``, ``label``, ``fakes``: as in
    :func:`load_entries` (a discriminator file: reals from ``data``, fakes from ``fakes``).

    Returns:
        ``(result, entries)``: the ``asgan-probe gradients`` JSON (the envelope of
        :func:`probes.measures.envelope.envelope`; per checkpoint: facts, mode, reference
        size, reals used, summaries with bootstrap CIs; paired comparisons of the first
        checkpoint with each other one when the inputs are shared; histograms on request),
        and the loaded entries with their results (``res``: kept gradients for figures).
    """
    options = {k: v for k, v in locals().items() if k not in NOT_OPTIONS}  # the call's, as given
    entries = load_entries(paths, population=population, n=n, seed=seed, device=device,
                           fakes_from=fakes_from, random_reference=random_reference,
                           reals=reals, data=data, data_root=data_root, format=format,
                           label=label, fakes=fakes, x=x, mode=mode)
    o = {**options, "keep": keep, "x": x}
    rows, edges = _measure_entries(entries, o)
    return _record(entries, rows, edges, o, options), entries
