"""What a checkpoint or discriminator file holds, verified: the ``asgan-probe info`` record.

For our checkpoints: format, step, pixel range, data, the nets' specs, the SHA-256 (verified
on load), config, training wall time (the file's recorded fact) and the parameter counts. For
a discriminator file of another family also: family and format, resolution and channels,
conditional (and its classes), coupling, input range, output shape and the reduction to one
logit per sample, randomness, the upstream class and its recorded arguments, family facts, and
``globals``: every Python global a plain ``torch.load`` / ``pickle.load`` of the file would
import or call (:func:`probes.io.safe_pickle.scan_globals`; nothing is unpickled to list
them). A file that would run code is a one-line :class:`UserError` naming what it would call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asgan_base.errors import UserError
from probes.measures.envelope import envelope

OURS = ("format", "step", "pixel_range", "data", "g_spec", "d_spec", "sha256", "config",
        "wall_time_s", "torch")  # what info reports of a checkpoint's meta, when present
FAMILY = ("family", "resolution", "channels", "conditional", "num_classes", "label",
          "coupling", "output", "randomness", "upstream", "extra")  # of a foreign file's desc
UNITS = {"pixel_range": "the input range D was trained on [lo, hi]",
         "parameters": "counts of G's and D's parameters (G None: no generator)",
         "wall_time_s": "seconds the recorded training took (a fact of the file)"}


def load_any_label(path: str | Path, *, format: str = "auto", arch: str | None = None,
                   label: int | None = None):
    """:func:`probes.io.sources.load` with ``label``; without one, a conditional file is
    described with class 0 bound (reported as label None: say which class to probe)."""
    from probes.io.sources import load

    try:
        return load(path, format=format, arch=arch, label=label)
    except UserError as first:
        if label is not None:
            raise
        try:
            G, D, meta = load(path, format=format, arch=arch, label=0)
        except UserError:
            raise first from None
        if not meta.get("family", {}).get("conditional"):
            raise first from None
        meta["family"] = {**meta["family"], "label": None}
        meta["label"] = None
        return G, D, meta


def info(path: str | Path, *, format: str = "auto", arch: str | None = None,
         label: int | None = None) -> dict[str, Any]:
    """The ``asgan-probe info`` JSON of one file: :func:`probes.measures.envelope.envelope`
    keys (no seed: nothing is drawn), then the facts of the module docstring; ``checksum_ok``
    True for our checkpoints (loading verified it), None for a foreign file (none to check)."""
    from probes.io.safe_pickle import scan_globals
    from probes.io.sources import is_foreign

    G, D, meta = load_any_label(path, format=format, arch=arch, label=label)
    summary = {k: meta[k] for k in OURS if k in meta}
    summary["parameters"] = {"G": None if G is None else sum(p.numel() for p in G.parameters()),
                             "D": sum(p.numel() for p in D.parameters())}
    if is_foreign(meta):
        summary.update({k: meta["family"][k] for k in FAMILY})
        summary["input_range"] = meta["pixel_range"]
        summary["globals"] = scan_globals(path)
        summary["checksum_ok"] = None  # a foreign file carries no checksum to verify
    else:
        summary["checksum_ok"] = True  # load() raised otherwise
    options = {"format": format, "arch": arch, "label": label}
    return {**envelope("info", inputs=[path], options=options, seed=None, units=UNITS,
                       evaluates_d=False), **summary}
