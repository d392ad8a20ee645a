"""The input gradient of D across a run's snapshots (the AS-GAN paper's Fig. 5b).

For every ``ckpt-*.safetensors`` of a run directory (:func:`trainers.checkpoint.
list_snapshots`, loaded with :func:`probes.io.sources.load`) it measures the L1 norm and the
sparsity (and, for images, the structure) of D's input gradient on **fixed seeded inputs**:
the same real images for every snapshot and every run of the same dataset, or fakes from the
same latents ``z`` (each snapshot's own G). This is an *edge* module: it reads checkpoints and
data through :mod:`probes.io.sources`; the maths is in :mod:`probes.core.gradients`,
:mod:`probes.core.sparsity` and :mod:`probes.core.structure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from asgan_base.errors import UserError
from probes.io.checkpoints import describe, run_label
from probes.measures import gradients
from probes.measures.envelope import envelope
from probes.measures.gradients import per_image

N = 128  # samples per snapshot (the same ones at every snapshot)
N_BOOT = 1000  # bootstrap resamples of each per-image mean's CI
UNITS = gradients.UNITS  # the same measures as asgan-probe gradients


def evolution(run_dir: str | Path, *, n: int = N, population: str = "real",
              wrt: str = "logit", mode: str = "auto", seed: int = 0,
              batch_size: int | None = None, n_boot: int = N_BOOT, with_structure: bool = True,
              x: tuple[torch.Tensor, torch.Tensor] | None = None,
              device: str | torch.device = "cpu"
              ) -> dict[str, Any]:
    """Gradient L1 norm and sparsity at every snapshot of one run.

    Args:
        run_dir: an ``asgan-train`` output folder holding ``ckpt-<step>.safetensors`` files.
        n: samples per snapshot (the same ones at every snapshot).
        population: ``"real"`` (seeded choice of training images) or ``"fake"`` (each
            snapshot's G on the same seeded latents).
        wrt, mode: as in :func:`probes.core.gradients.input_gradients`.
        seed: chooses the reals / latents and seeds the bootstrap.
        batch_size: probe batch size (default
            :func:`probes.measures.gradients.batch_size_for`).
        n_boot: bootstrap resamples for the confidence intervals.
        with_structure: add :func:`probes.core.structure.structure` measures for images.
        x: ``(inputs, reference)`` to use for reals instead of drawing them (so several runs
            share them).
        device: where D runs.

    Returns:
        ``{"run", "population", "wrt", "n", "seed", "snapshots": [{"step", "checkpoint",
        "mode", "batch_size", "logit_mean", "contract", "coupling", "measures": {key: summary}}]}``,
        oldest first (``coupling``: the check run before each snapshot's probe);
        summaries as :func:`probes.core.sparsity.summarize`.

    Examples:
        >>> evo = evolution("runs/demo/asgan", n=64)
        >>> [(s["step"], s["measures"]["l1"]["mean"]) for s in evo["snapshots"]]
    """
    from probes.io.edge import list_snapshots
    from probes.io.sources import real_split

    snaps = list_snapshots(run_dir)
    if not snaps:
        raise UserError(f"no ckpt-*.safetensors snapshots in {run_dir}; pass an asgan-train "
                        "run directory")
    o = dict(n=n, population=population, wrt=wrt, mode=mode, seed=seed, batch_size=batch_size,
             n_boot=n_boot, with_structure=with_structure, x=x, device=device)
    rows, first = [], None
    for path in snaps:
        row, meta = _snapshot(path, o)
        first = first or describe(meta, path)
        rows.append(row)
    return {"run": str(run_dir), **{k: first[k] for k in ("trainer", "eps", "perturbation",
                                                          "data")},
            "label": run_label(run_dir, first),
            "population": population, "wrt": wrt, "n": n, "seed": seed,
            "reals": real_split(meta) if population == "real" else None, "snapshots": rows}


def _snapshot(path, o: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(row, meta)`` of one snapshot: its step, mode, batch size, reference size, mean
    logit, contract, the coupling check run first, and the summaries of the measures."""
    from probes.core.sparsity import summarize
    from probes.io.sources import load, probe_inputs
    from probes.measures.contract import contract_record, coupling_record

    G, D, meta = load(path, device=o["device"])
    x, population, mode = o["x"], o["population"], o["mode"]
    xs, ref = x if (x is not None and population == "real") else probe_inputs(
        meta, G, population=population, n=o["n"], seed=o["seed"], device=o["device"])
    coupling = coupling_record(D, xs, mode=mode, reference=ref, name=str(path))
    res = per_image(D, xs, meta, reference=ref, wrt=o["wrt"], population=population,
                    mode=mode, batch_size=o["batch_size"], with_structure=o["with_structure"])
    return {"step": meta["step"], "checkpoint": str(path), "mode": res["mode"],
            "batch_size": res["batch_size"],
            "reference_n": int(ref.shape[0]) if res["mode"] == "frozen" else None,
            "logit_mean": float(res["logits"].double().mean()),
            "contract": contract_record(meta, D), "coupling": coupling,
            "measures": summarize(res["per_image"], n_boot=o["n_boot"], seed=o["seed"])}, meta


def evolutions(run_dirs: list[str | Path], **kwargs) -> list[dict[str, Any]]:
    """:func:`evolution` for several runs on the *same* real inputs (drawn once, from the
    first run's dataset; every run must have the same data shape)."""
    from probes.io.edge import list_snapshots
    from probes.io.sources import load, probe_inputs

    x = kwargs.pop("x", None)
    if x is None and kwargs.get("population", "real") == "real":
        shapes = set()
        for run in run_dirs:
            snaps = list_snapshots(run)
            if not snaps:
                raise UserError(f"no ckpt-*.safetensors snapshots in {run}; pass an "
                                "asgan-train run directory")
            _, _, meta = load(snaps[0])
            shapes.add(tuple(meta.get("data", {}).get("shape", ())))
            if x is None:
                x = probe_inputs(meta, None, population="real", n=kwargs.get("n", N),
                                 seed=kwargs.get("seed", 0))
        if len(shapes) > 1:
            raise UserError(f"runs differ in data shape {sorted(shapes)}: compare runs of "
                            "one dataset")
    return [evolution(run, x=x, **kwargs) for run in run_dirs]


def evolution_record(evos: list[dict[str, Any]], *, population: str = "real",
                     wrt: str = "logit", n: int = N, seed: int = 0, n_boot: int = N_BOOT,
                     mode: str = "auto", batch_size: int | None = None,
                     with_structure: bool = True) -> dict[str, Any]:
    """The ``asgan-probe evolution`` JSON around :func:`evolutions`' results (the same from
    Python: pass the options :func:`evolutions` was given): the envelope
    (:func:`probes.measures.envelope.envelope`, inputs = the runs), settings, the measures'
    definitions, one entry per run."""
    from probes.core.sparsity import DEFINITIONS as SPARSITY_DEFS
    from probes.core.structure import DEFINITIONS as STRUCTURE_DEFS

    options = dict(n=n, population=population, wrt=wrt, mode=mode, batch_size=batch_size,
                   n_boot=n_boot, with_structure=with_structure)
    return {**envelope("evolution", inputs=[e["run"] for e in evos], options=options,
                       seed=seed, units=UNITS),
            "population": population, "wrt": wrt, "n": n, "seed": seed,
            "n_boot": n_boot, "ci_level": 0.95,
            "definitions": {**SPARSITY_DEFS, **STRUCTURE_DEFS}, "runs": evos}
