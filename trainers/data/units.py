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

from trainers.data.dataset import Dataset, canonical_name
from trainers.errors import UserError

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
    """How a checkpoint's eps converts: ``{"unit", "scale", "recorded", "text"}``.

    ``scale`` is the absolute size of eps = 1 (pass it to ``eps_to_abs(..., scale=)``).
    Checkpoints written before eps units were recorded (no ``eps_unit`` in ``meta``) were
    trained in pixel units of their ``pixel_range``, which on ring8/grid25 is a fraction of the
    plotting box: ``recorded`` is False and ``text`` says so.
    """
    lo, hi = (float(v) for v in meta.get("pixel_range", (-1.0, 1.0)))
    if "eps_unit" in meta and "eps_scale" in meta:
        unit, scale = str(meta["eps_unit"]), float(meta["eps_scale"])
        what = ("one std of a mode" if unit == "mode-std"
                else f"the full range {hi - lo:g} of pixel_range [{lo:g}, {hi:g}]")
        return {"unit": unit, "scale": scale, "recorded": True,
                "text": f"{unit}: eps 1 = {scale:g} ({what})"}
    box = " (the old 2-D unit: a fraction of the plotting box)" if _is_2d(meta) else ""
    return {"unit": "pixel", "scale": hi - lo, "recorded": False,
            "text": f"pixel: eps 1 = {hi - lo:g}, the full range of pixel_range [{lo:g}, "
                    f"{hi:g}]{box}; not recorded in this checkpoint (written before eps units "
                    "were), read as pixel units"}


def _is_2d(meta: dict) -> bool:
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return data.get("shape") == [2] or canonical_name(data.get("name", "")) in MIXTURES
