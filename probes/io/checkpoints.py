"""What a probe records about a checkpoint, and the facts it reads from one.

Every probe result carries :func:`facts` of the checkpoint it measured (path, step, trainer,
eps, data, D architecture and a legend label), and sizes its BatchNorm groups with
:func:`group_size` (the batch D was trained with), so the CLI, the study and the notebooks
describe and group a checkpoint the same way. Reads the plain ``meta`` dicts that
:func:`probes.io.sources.load` returns; no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asgan_base.eps import of_meta

DEFAULT_GROUP = 64  # DCGAN's training batch, for foreign files that do not record theirs


def describe(meta: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Short facts that identify a checkpoint in results: path, step, trainer, eps (in the
    checkpoint's eps unit) and ``eps_label`` (:meth:`asgan_base.eps.EpsUnit.label`: "0.5/255",
    "0.5 std"), perturbation, data, D architecture; for a discriminator file of another family
    also its format, family, the reduction of its output to (N,) logits, the class bound
    (``class_label``) and its input range."""
    cfg = meta.get("config", {})
    asgan = cfg.get("trainer") == "asgan"
    info = {"checkpoint": str(path), "step": meta.get("step"), "trainer": cfg.get("trainer"),
            "eps": cfg.get("eps") if asgan else None,
            "eps_label": of_meta(meta).label(cfg.get("eps") or 0) if asgan else None,
            "perturbation": cfg.get("perturbation") if cfg.get("trainer") == "asgan" else None,
            "data": meta.get("data", {}).get("name", cfg.get("data")),
            "d_arch": meta.get("d_spec", {}).get("arch")}
    if "family" in meta:  # a discriminator file of another family (probes.io.sources.load)
        info.update(format=meta.get("format"), family=meta["family"].get("family"),
                    reduction=meta.get("reduction"), class_label=meta.get("label"),
                    pixel_range=meta.get("pixel_range"))
    return info


def kind(info: dict[str, Any]) -> str:
    """What trained it, from :func:`describe`: ``baseline``, ``asgan, fgsm eps 1/255``,
    ``asgan, fgsm eps 0.5 std`` (its eps in the unit the checkpoint records)..."""
    if info.get("trainer") == "asgan":
        eps = info.get("eps_label") or of_meta({}).label(info.get("eps") or 0)
        return f"asgan, {info.get('perturbation') or 'fgsm'} eps {eps}"
    return info.get("trainer") or "?"


def label(info: dict[str, Any]) -> str:
    """A legend label from :func:`describe`: ``<run dir>/<snapshot> (<kind>)``."""
    p = Path(info["checkpoint"])
    return f"{p.parent.name}/{p.stem} ({kind(info)})"


def run_label(run_dir: str | Path, info: dict[str, Any]) -> str:
    """The label of a whole run (its snapshots' facts in ``info``): ``<run dir> (<kind>)``."""
    return f"{Path(run_dir).name} ({kind(info)})"


def facts(meta: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """:func:`describe` plus its :func:`label`: what every probe record starts with."""
    info = describe(meta, path)
    return {**info, "label": label(info)}


def is_image(meta: dict[str, Any]) -> bool:
    """True for image data ``(C, H, W)``, False for points."""
    return len(meta.get("data", {}).get("shape", ())) == 3


def pixel_range(meta: dict[str, Any]) -> tuple[float, float]:
    """The data range D takes (recorded in every checkpoint; (-1, 1) when absent)."""
    lo, hi = meta.get("pixel_range", (-1.0, 1.0))
    return float(lo), float(hi)


def group_size(meta: dict[str, Any]) -> int:
    """The probe's BatchNorm group: the batch size D was trained with (else 64). It sizes the
    clean reference group of ``frozen`` mode and the groups of ``batch`` mode."""
    return int(meta.get("config", {}).get("batch_size") or DEFAULT_GROUP)
