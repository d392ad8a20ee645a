"""eps units: the unit a dataset's eps is measured in and the absolute size of eps = 1.

eps is a size in the data's own unit, converted to an absolute step by
``probes.core.attacks.eps_to_abs`` with the scale recorded here. Images: "pixel", [0, 1] pixel
units, 1 = the full range hi - lo (eps = 1/255 is one grey level, SPEC 1). 2-D mixtures have
no pixels: "mode-std", 1 = one standard deviation of a mode (ring8 0.01, grid25 0.05), so the
same eps means the same on both and a sweep up to 1.5 stays inside the 3-std radius of the
coverage metric. "pixel" on a mixture is the old unit (a fraction of the plotting box
pixel_range): runs trained before eps units were recorded used it.
"""

from __future__ import annotations

from typing import Any

from asgan_base.eps import EpsUnit, named
from asgan_base.errors import UserError
from trainers.data.dataset import Dataset, canonical_name

EPS_UNITS = ("pixel", "mode-std")
MIXTURES = ("ring8", "grid25")


def resolve_eps_unit(name: str, eps_unit: str = "auto") -> str:
    """The eps unit of config ``eps_unit`` on dataset ``name``: ``auto`` -> "mode-std" on the
    2-D mixtures, "pixel" otherwise; "mode-std" on data without modes is a UserError."""
    key = canonical_name(name)
    if eps_unit == "auto":
        return "mode-std" if key in MIXTURES else "pixel"
    if eps_unit not in EPS_UNITS:
        raise UserError(f"eps_unit must be one of auto, {', '.join(EPS_UNITS)}; got "
                        f"{eps_unit!r}")
    if eps_unit == "mode-std" and key not in MIXTURES:
        raise UserError(f"eps_unit=mode-std needs a 2-D mixture ({', '.join(MIXTURES)}); "
                        f"{key} is measured in pixel units (eps_unit=auto or pixel)")
    return eps_unit


def eps_units(ds: Dataset, unit: str) -> dict:
    """``{"eps_unit": unit, "eps_scale": s}``: ``s`` is the absolute size of eps = 1 in
    ``ds``'s values: ``hi - lo`` of ``pixel_range`` ("pixel") or the mode std ("mode-std")."""
    if unit == "mode-std":
        if "std" not in ds.info:
            raise UserError(f"eps_unit=mode-std needs a 2-D mixture; {ds.name} has no mode std")
        return {"eps_unit": unit, "eps_scale": float(ds.info["std"])}
    if unit != "pixel":
        raise UserError(f"eps_unit must be one of {', '.join(EPS_UNITS)}; got {unit!r}")
    lo, hi = ds.pixel_range
    return {"eps_unit": unit, "eps_scale": float(hi) - float(lo)}


def eps_units_of(meta: dict) -> dict:
    """How a checkpoint's eps converts: ``{"unit", "scale", "recorded", "text"}``, from
    :func:`asgan_base.eps.of_meta` (the one place that reads it; ``scale`` goes to
    ``eps_to_abs(..., scale=)``). Checkpoints written before eps units were recorded read as
    pixel units of their ``pixel_range`` (on ring8/grid25 a fraction of the plotting box):
    ``recorded`` is False and ``text`` says so."""
    from asgan_base.eps import of_meta

    u = of_meta(meta)
    return {"unit": u.name, "scale": u.scale, "recorded": u.recorded, "text": u.text}


def eps_unit_of_config(config: dict[str, Any]) -> EpsUnit:
    """The eps unit of a stored training config (a run's ``config.json``), for labels: its
    ``eps_unit`` resolved on its data (``auto``: mode-std on the 2-D mixtures); a config
    without the field trained in pixel units (on 2-D data: of the plotting box)."""
    if "eps_unit" not in config:
        return named("box" if canonical_name(config.get("data", "")) in MIXTURES else "pixel")
    return named(resolve_eps_unit(config.get("data", ""), config["eps_unit"]))
