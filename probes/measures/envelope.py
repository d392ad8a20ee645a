"""The one JSON envelope of every ``asgan-probe`` verb, built here and nowhere else.

Each measure (``probes.measures.<verb>``) returns ``envelope(verb, ...) | body``: the CLI
writes that dict as it is, and a Python caller of the same function with the same arguments
gets the identical dict. The common keys:

- ``tool``, ``version``: ``"asgan-probe"`` and the package version that wrote the record;
- ``verb``: the verb (``attack``, ``gradients``, ``saliency``, ``coverage``, ``quality``,
  ``evolution``, ``fidelity``, ``info``);
- ``inputs``: what was measured, as given (checkpoint files, run directories, or the source
  names of ``(D, meta)`` pairs and modules);
- ``options``: every other option of the call that the numbers depend on, as given (``None`` =
  the measure's default rule; e.g. ``eps=None``: each checkpoint unit's grid);
- ``seed``: the one seed of the call (samples, latents, bootstrap, random starts);
- ``units``: the unit of each kind of number in the record;
- ``probe_contract``: the facts of SPEC section 1 a verb that evaluates D relies on (None for
  the verbs that evaluate no D: coverage, quality, info); each record's own ``contract``
  says how that D's output became one logit per sample.

The verb's own keys follow: its results, and the settings its records had before the
envelope (``n``, ``population``, ``wrt``, ...), kept where readers find them.

:data:`VARYING` lists the keys whose values may differ between two calls with the same
arguments on the same machine: none. Nothing in a record is a timestamp or a wall time of the
probe (``info``'s ``wall_time_s`` is the checkpoint's recorded training time, a fact of the
file), so the same seed gives the same JSON (SPEC section 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

TOOL = "asgan-probe"
VARYING: tuple[str, ...] = ()  # keys that may differ between identical calls: none
LOGIT = "raw logit of D, one per sample (no sigmoid); > 0 = 'real'"
PROBE_CONTRACT = {
    "output": "D(x) reduced to raw logits (N,) by a declared rule (each record's contract)",
    "per_sample": "frozen and eval modes: each logit and gradient depends on its own sample "
                  "only (checked by each record's coupling); batch mode: a training step's "
                  "batch statistics, cross-sample terms included",
    "no_trace": "gradients by torch.autograd.grad (no parameter .grad), D's train/eval mode, "
                "BatchNorm running statistics and spectral-norm buffers restored; inputs "
                "never modified in place",
}


def version() -> str:
    """The installed ``asgan-probe`` version, else ``pyproject.toml``'s (a checkout run with
    ``PYTHONPATH``), else ``"unknown"``."""
    import importlib.metadata
    from pathlib import Path

    try:
        return importlib.metadata.version(TOOL)
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():
        for line in pyproject.read_text().splitlines():
            if line.startswith("version = "):
                return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


def envelope(verb: str, *, inputs: Iterable[Any], options: Mapping[str, Any], seed: int | None,
             units: Mapping[str, str], evaluates_d: bool = True) -> dict[str, Any]:
    """The common keys of a ``verb`` record (see the module docstring), in a fixed order;
    the measure adds its body after them. ``inputs`` items become strings, ``options`` plain
    JSON values (:func:`plain`) without ``seed`` (its own key)."""
    return {"tool": TOOL, "version": version(), "verb": verb,
            "inputs": [str(p) for p in inputs],
            "options": plain({k: v for k, v in options.items() if k != "seed"}), "seed": seed,
            "units": {"logit": LOGIT, **units} if evaluates_d else dict(units),
            "probe_contract": dict(PROBE_CONTRACT) if evaluates_d else None}


def plain(value: Any) -> Any:
    """``value`` as JSON writes it: tuples and other sequences as lists, paths as strings,
    mappings with string keys (a copy; the caller's objects are untouched)."""
    from pathlib import PurePath

    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def strip_varying(record: Any) -> Any:
    """``record`` without the :data:`VARYING` keys, at any depth (for comparing two records)."""
    if isinstance(record, dict):
        return {k: strip_varying(v) for k, v in record.items() if k not in VARYING}
    if isinstance(record, list):
        return [strip_varying(v) for v in record]
    return record
