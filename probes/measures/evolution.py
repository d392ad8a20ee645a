"""The input gradient of D across a run's snapshots (the AS-GAN paper's Fig. 5b), and the
checkpoint-level helpers the gradient CLI verbs share.

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
from torch import nn

from probes.core.attacks import resolve_mode
from trainers.errors import UserError

EVAL_BATCH = 256  # rows per batch in eval mode, where the batch size changes nothing


def default_batch_size(meta: dict[str, Any], D: nn.Module, mode: str,
                       batch_size: int | None = None) -> int:
    """The probe batch size: ``batch_size`` when given; in ``batch`` mode the batch size D
    was trained with (its BatchNorm statistics then come from batches like its training
    batches); else :data:`EVAL_BATCH`."""
    if batch_size is not None:
        if batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {batch_size}")
        return batch_size
    if resolve_mode(D, mode) == "batch":
        return int(meta.get("config", {}).get("batch_size") or 64)
    return EVAL_BATCH


def describe(meta: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Short facts that identify a checkpoint in results: path, step, trainer, eps (pixel
    units), perturbation, data, D architecture."""
    cfg = meta.get("config", {})
    return {"checkpoint": str(path), "step": meta.get("step"), "trainer": cfg.get("trainer"),
            "eps": cfg.get("eps") if cfg.get("trainer") == "asgan" else None,
            "perturbation": cfg.get("perturbation") if cfg.get("trainer") == "asgan" else None,
            "data": meta.get("data", {}).get("name", cfg.get("data")),
            "d_arch": meta.get("d_spec", {}).get("arch")}


def label(info: dict[str, Any]) -> str:
    """A legend label: ``run-name (asgan eps 1/255) @ step``."""
    name = Path(info["checkpoint"]).parent.name or Path(info["checkpoint"]).stem
    if info.get("trainer") == "asgan":
        kind = f"asgan eps {info['eps'] * 255:g}/255"
        if info.get("perturbation") not in (None, "fgsm"):
            kind += f" {info['perturbation']}"
    else:
        kind = info.get("trainer") or "?"
    return f"{name} ({kind})"


def inputs_for(meta: dict[str, Any], G: nn.Module | None, *, population: str, n: int,
               seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """``n`` seeded samples: reals chosen by ``seed`` from the checkpoint's dataset, or fakes
    ``G(z)`` with ``z`` drawn from ``seed`` (same ``z`` whatever the checkpoint)."""
    from probes.io.sources import fakes, reals

    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    if population == "real":
        return reals(meta, n, seed=seed)
    if G is None:
        raise UserError("this checkpoint holds no generator; use --population real")
    return fakes(G, meta, n, seed=seed, device=device)


def is_image(meta: dict[str, Any]) -> bool:
    return len(meta.get("data", {}).get("shape", ())) == 3


def measure(D: nn.Module, x: torch.Tensor, meta: dict[str, Any], *, wrt: str, population: str,
            mode: str, batch_size: int | None, with_structure: bool = True,
            keep: bool | int = False, accumulate=None) -> dict[str, Any]:
    """Sparsity (and structure for images) per image of D's input gradient on ``x``:
    :func:`probes.core.gradients.input_gradients` with the checkpoint's pixel range and batch
    size."""
    from probes.core.gradients import grad_sparsity, input_gradients
    from probes.core.structure import structure_reducer

    pixel_range = tuple(meta.get("pixel_range", (-1.0, 1.0)))
    reducers = [grad_sparsity]
    if with_structure and x.dim() == 4:
        reducers.append(structure_reducer(pixel_range=pixel_range))
    bs = default_batch_size(meta, D, mode, batch_size)
    return input_gradients(D, x, wrt=wrt, population=population, mode=mode, batch_size=bs,
                           reduce=reducers, accumulate=accumulate, keep=keep)


def evolution(run_dir: str | Path, *, n: int = 64, population: str = "real",
              wrt: str = "logit", mode: str = "auto", seed: int = 0,
              batch_size: int | None = None, n_boot: int = 1000, with_structure: bool = True,
              x: torch.Tensor | None = None, device: str | torch.device = "cpu"
              ) -> dict[str, Any]:
    """Gradient L1 norm and sparsity at every snapshot of one run.

    Args:
        run_dir: an ``asgan-train`` output folder holding ``ckpt-<step>.safetensors`` files.
        n: samples per snapshot (the same ones at every snapshot).
        population: ``"real"`` (seeded choice of training images) or ``"fake"`` (each
            snapshot's G on the same seeded latents).
        wrt, mode: as in :func:`probes.core.gradients.input_gradients`.
        seed: chooses the reals / latents and seeds the bootstrap.
        batch_size: probe batch size (default :func:`default_batch_size`).
        n_boot: bootstrap resamples for the confidence intervals.
        with_structure: add :func:`probes.core.structure.structure` measures for images.
        x: real inputs to use instead of drawing them (so several runs share them).
        device: where D runs.

    Returns:
        ``{"run", "population", "wrt", "n", "seed", "snapshots": [{"step", "checkpoint",
        "mode", "batch_size", "logit_mean", "measures": {key: summary}}]}``, oldest first;
        summaries as :func:`probes.core.sparsity.summarize`.

    Examples:
        >>> evo = evolution("runs/demo/asgan", n=64)
        >>> [(s["step"], s["measures"]["l1"]["mean"]) for s in evo["snapshots"]]
    """
    from probes.core.sparsity import summarize
    from probes.io.sources import load
    from trainers.checkpoint import list_snapshots

    snaps = list_snapshots(run_dir)
    if not snaps:
        raise UserError(f"no ckpt-*.safetensors snapshots in {run_dir}; pass an asgan-train "
                        "run directory")
    rows, first = [], None
    for path in snaps:
        G, D, meta = load(path, device=device)
        first = first or describe(meta, path)
        xs = x if (x is not None and population == "real") else inputs_for(
            meta, G, population=population, n=n, seed=seed, device=device)
        res = measure(D, xs, meta, wrt=wrt, population=population, mode=mode,
                      batch_size=batch_size, with_structure=with_structure)
        rows.append({"step": meta["step"], "checkpoint": str(path), "mode": res["mode"],
                     "batch_size": res["batch_size"],
                     "logit_mean": float(res["logits"].double().mean()),
                     "measures": summarize(res["per_image"], n_boot=n_boot, seed=seed)})
    return {"run": str(run_dir), **{k: first[k] for k in ("trainer", "eps", "perturbation",
                                                          "data")},
            "label": label({**first, "checkpoint": str(snaps[0])}),
            "population": population, "wrt": wrt, "n": n, "seed": seed, "snapshots": rows}


def evolutions(run_dirs: list[str | Path], **kwargs) -> list[dict[str, Any]]:
    """:func:`evolution` for several runs on the *same* real inputs (drawn once, from the
    first run's dataset; every run must have the same data shape)."""
    from probes.io.sources import load
    from trainers.checkpoint import list_snapshots

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
                x = inputs_for(meta, None, population="real", n=kwargs.get("n", 64),
                               seed=kwargs.get("seed", 0))
        if len(shapes) > 1:
            raise UserError(f"runs differ in data shape {sorted(shapes)}: compare runs of "
                            "one dataset")
    return [evolution(run, x=x, **kwargs) for run in run_dirs]
