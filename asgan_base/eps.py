"""eps units: the one place an eps is parsed, range-checked and labelled (SPEC section 1).

An eps is a size in its data's own unit, and a checkpoint records which (``eps_unit``,
``eps_scale``; :func:`of_meta` reads them back):

- ``"pixel"``: [0, 1] pixel units of the data's ``pixel_range`` (lo, hi); eps = 1 is the full
  range ``hi - lo``, so ``1/255`` is one grey level (2/255 in [-1, 1] space). Labelled
  ``"0.5/255"``.
- ``"mode-std"``: the 2-D mixtures (ring8, grid25) have no pixels; eps = 1 is one standard
  deviation of a mode (0.01 on ring8, 0.05 on grid25), per coordinate. Labelled ``"0.5 std"``.
- 2-D checkpoints written before eps units were recorded trained in pixel units of their
  plotting box (ring8: (-1.5, 1.5)); they read as pixel units, labelled ``"0.5/255 of the
  box"``.

The sensible range of every unit is the same rule: ``0 <= eps * scale <= hi - lo``, a step no
larger than the data's whole range. In pixel units that is [0, 1]; on ring8 (std 0.01, box 3)
[0, 300] std; on grid25 (std 0.05, box 10) [0, 200] std.

Parsing is unit-free (:func:`parse_number`: ``"1/255"``, ``"0.5"``, ``"1.5"``); the range is
checked against the unit of the checkpoint the eps is applied to (:meth:`EpsUnit.check`), so
one ``--eps`` list serves checkpoints of either unit. The conversion to an absolute step is
``eps * scale`` (:func:`probes.core.attacks.eps_to_abs`, with :attr:`EpsUnit.scale`).
No torch here: the checkpoint facts and the config import it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any

from asgan_base.errors import UserError

UNITS = ("pixel", "mode-std")
# the default attack grid of each unit: pixels as the study's FGSM grid, a mode's std as the
# study's 2-D AS-GAN grid (0.25 ... 1.5 std, well inside the coverage metric's 3-std radius)
DEFAULT_GRID = {"pixel": (0.0, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255),
                "mode-std": (0.0, 0.25, 0.5, 1.0, 1.5)}


@dataclass(frozen=True)
class EpsUnit:
    """The unit of one checkpoint's eps.

    Attributes:
        name: ``"pixel"`` or ``"mode-std"``.
        scale: the absolute size of eps = 1 in the data's values (``hi - lo`` for pixels, the
            mode std for mode-std); what ``eps_to_abs(..., scale=)`` multiplies by.
        span: ``hi - lo`` of the data's ``pixel_range``; eps stops at ``span / scale``.
        recorded: False for a checkpoint written before eps units were (read as pixels).
        box: pixel units of a 2-D mixture's plotting box (such old 2-D checkpoints).
    """

    name: str = "pixel"
    scale: float = 2.0
    span: float = 2.0
    recorded: bool = True
    box: bool = False

    def __post_init__(self):
        if self.name not in UNITS:
            raise UserError(f"eps unit must be one of {', '.join(UNITS)}; got {self.name!r}")
        if not (0.0 < self.scale < math.inf and 0.0 < self.span < math.inf):
            raise UserError(f"eps unit {self.name}: scale and span must be finite and > 0, got "
                            f"{self.scale} and {self.span}")

    @property
    def top(self) -> float:
        """The largest eps: a step of the data's whole range (1 in pixel units)."""
        return 1.0 if self.name == "pixel" else self.span / self.scale

    @property
    def what(self) -> str:
        """What eps = 1 is, in words."""
        if self.name == "mode-std":
            return "one std of a mode"
        return ("the full range of the plotting box (the old 2-D unit)" if self.box
                else "the full pixel range (1/255 = one grey level)")

    @property
    def text(self) -> str:
        """One line for records: the unit, what eps = 1 is, and whether it was recorded."""
        line = f"{self.name}: eps 1 = {self.scale:g}, {self.what}"
        if not self.recorded:
            line += ("; not recorded in this checkpoint (written before eps units were), read "
                     "as pixel units")
        return line

    @property
    def axis(self) -> str:
        """A figure's axis label for :meth:`number` values."""
        if self.name == "mode-std":
            return "eps (std of a mode, per coordinate)"
        return ("eps (x 1/255 of the plotting box: the first study's 2-D unit)" if self.box
                else "eps (x 1/255, pixel units)")

    def number(self, eps: float) -> float:
        """The number a display shows for ``eps``: grey levels (eps * 255) for pixel units,
        eps itself for mode-std."""
        return float(eps) if self.name == "mode-std" else float(eps) * 255

    def from_number(self, number: float) -> float:
        """The eps a display's number stands for (the inverse of :meth:`number`): an arm
        named ``asgan-eps0.5`` is 0.5/255 in pixel units, 0.5 std in mode-std."""
        return float(number) if self.name == "mode-std" else float(number) / 255

    def label(self, eps: float, digits: int | None = None) -> str:
        """``"0.5/255"`` (pixel), ``"0.5 std"`` (mode-std), ``"0.5/255 of the box"`` (old
        2-D checkpoints); ``digits`` significant digits (default: ``:g``'s six)."""
        x = self.number(eps)
        text = f"{x:g}" if digits is None else f"{x:.{digits}g}"
        if self.name == "mode-std":
            return f"{text} std"
        return f"{text}/255" + (" of the box" if self.box else "")

    def check(self, eps: float, what: str = "eps") -> float:
        """``eps`` as a float if ``0 <= eps <= top``, else a one-line UserError."""
        value = float(eps)
        if not 0.0 <= value <= self.top:  # NaN fails both
            hint = {"pixel": "e.g. 1/255", "mode-std": "e.g. 0.5"}[self.name]
            raise UserError(f"{what} {eps:g} is outside [0, {self.top:g}]: here eps is in "
                            f"{self.name} units (eps 1 = {self.what}); write {hint}")
        return value

    def parse(self, text: str | float, what: str = "eps") -> float:
        """``"1/255"``, ``"1.5"`` or a float -> a checked eps in this unit."""
        return self.check(parse_number(text, what), what)

    def default_grid(self) -> tuple[float, ...]:
        """The attack grid when none is given (:data:`DEFAULT_GRID`)."""
        return DEFAULT_GRID[self.name]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the fields and :attr:`text` (records carry it as ``eps_unit``)."""
        return {**asdict(self), "text": self.text}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpsUnit:
        """Back from :meth:`to_dict` (extra keys ignored)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def parse_number(text: str | float, what: str = "eps") -> float:
    """``"1/255"``, ``"0.5/255"``, ``"1.5"`` or a float -> a finite float >= 0, unit-free
    (:meth:`EpsUnit.check` bounds it for a unit); a one-line UserError otherwise."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        try:
            if "/" in s:
                num, den = s.split("/", 1)
                value = float(Fraction(num.strip()) / Fraction(den.strip()))
            else:
                value = float(s)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"bad {what} {s!r}: write a number or a fraction such as 1/255 "
                            "(pixel units) or 0.5 (a mode's std)") from None
    if not 0.0 <= value < math.inf:
        raise UserError(f"{what} {text} is not a finite number >= 0")
    return value


def parse_list(text: str, what: str = "eps") -> list[float]:
    """``"0,0.5/255,1/255"`` or ``"0,0.5,1.5"`` -> unit-free floats (:func:`parse_number`)."""
    items = [s for s in str(text).split(",") if s.strip()]
    if not items:
        raise UserError(f"empty {what} list {text!r}; write e.g. 0,1/255,2/255 (pixel units) "
                        "or 0,0.5,1.5 (a mode's std)")
    return [parse_number(s, what) for s in items]


def pixel(pixel_range: tuple[float, float] = (-1.0, 1.0)) -> EpsUnit:
    """Pixel units of ``pixel_range``: eps = 1 is ``hi - lo``."""
    lo, hi = (float(v) for v in pixel_range)
    return EpsUnit("pixel", hi - lo, hi - lo)


def named(name: str) -> EpsUnit:
    """A unit for labels only, by name: ``"pixel"``, ``"mode-std"`` or ``"box"`` (pixel units
    of an old 2-D checkpoint's plotting box); its scale is a placeholder."""
    if name == "box":
        return EpsUnit("pixel", box=True, recorded=False)
    return EpsUnit(name, scale=1.0 if name == "mode-std" else 2.0)


def of_meta(meta: dict[str, Any]) -> EpsUnit:
    """The eps unit a checkpoint's ``meta`` records (``eps_unit``, ``eps_scale``,
    ``pixel_range``); pixel units of ``pixel_range`` (default (-1, 1)) when it records none:
    foreign discriminators, and checkpoints written before eps units were (on a 2-D mixture
    that is a fraction of the plotting box: ``box``)."""
    lo, hi = (float(v) for v in meta.get("pixel_range", (-1.0, 1.0)))
    if "eps_unit" in meta and "eps_scale" in meta:
        return EpsUnit(str(meta["eps_unit"]), float(meta["eps_scale"]), hi - lo)
    return EpsUnit("pixel", hi - lo, hi - lo, recorded=False, box=_is_2d(meta))


def _is_2d(meta: dict[str, Any]) -> bool:
    """Points, not images: the data shape a checkpoint records is (2,)."""
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return list(data.get("shape") or ()) == [2]
