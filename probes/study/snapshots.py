"""Numbers of one snapshot, taken by the sitting that trains a run (a plan's ``measure_every``,
:mod:`probes.study.plan`), and the results file they go to.

Per ``measure`` kind of the run's group (the names are :data:`probes.study.plan.
SNAPSHOT_METRICS`):

- ``image``: ``fd``, ``kid`` (mean), ``precision``, ``recall``, ``density``, ``coverage``:
  :func:`probes.measures.quality.scores` in the ``classifier`` space (the dataset's own
  shipped classifier, as ``asgan-probe quality``), :data:`N_IMAGE` fakes against as many
  reals, seed :data:`SEED`: the FD ``probes.study.arms.image_metrics`` gives for a shipped
  checkpoint; ``classes``: how many classes that classifier finds among the same fakes at a
  share of at least :data:`CLASS_SHARE` each (the v3 collapse rule's count, of 10);
- ``mixture``: ``modes`` (of 8 or 25), ``high_quality_pct`` (% within 3 std of a mode),
  ``reverse_kl``: :mod:`probes.measures.coverage` from :data:`N_MIXTURE` points, seed
  :data:`SEED` (``probes.study.arms.mixture_metrics``, the report's numbers);
  ``fidelity_cos`` (mean cosine of D's input gradient with the ideal direction, in [-1, 1])
  and ``fidelity_noise`` (mean share of its energy orthogonal to it, in [0, 1]) over the
  probe's fakes: ``asgan-probe fidelity`` with its defaults and seed :data:`SEED`
  (``probes.study.arms.fidelity_metrics``);
- ``stacked``: ``modes`` (of 1000) and ``kl``: ``probes.study.arms.stacked_metrics``
  (26,000 samples).

Snapshots are measured as the trainer wrote them (float32, the raw run), not the float16 copy a
run may ship: the final step's numbers can differ from a shipped copy's in the last digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

N_IMAGE = 2000
N_MIXTURE = 2500
N_STACKED = 26_000
SEED = 0
CLASS_SHARE = 0.01
_QUALITY = ("fd", "kid", "precision", "recall", "density", "coverage")
_REAL_FEATURES: dict = {}  # real features per (dataset, shape, n, seed, space), reused


@lru_cache(maxsize=4)
def _classifier(data: str):
    from probes.measures.coverage import load_digit_classifier

    return load_digit_classifier(None, "cpu", data=data)


def settings(kind: str) -> dict[str, Any]:
    """What the numbers of a ``kind`` group are computed from (recorded in the results)."""
    n = {"image": N_IMAGE, "mixture": N_MIXTURE, "stacked": N_STACKED}[kind]
    out: dict[str, Any] = {"n": n, "seed": SEED, "weights": "raw float32 snapshot"}
    if kind == "image":
        out.update(space="classifier", class_share=CLASS_SHARE)
    return out


def numbers(path: str | Path, kind: str, metrics: Sequence[str]) -> dict[str, float | None]:
    """``{metric: value}`` of the snapshot at ``path`` for a group of measure ``kind``
    (module docstring); ``metrics`` a subset of the kind's names. A number the measure cannot
    give (a mixture's reverse KL when no point lies on a mode: NaN) is None, so the results
    file stays strict JSON."""
    return {m: (v if math.isfinite(v) else None)
            for m, v in _numbers(path, kind, metrics).items()}


def _numbers(path: str | Path, kind: str, metrics: Sequence[str]) -> dict[str, float]:
    if kind == "mixture":
        return _mixture_numbers(path, metrics)
    if kind == "stacked":
        from probes.study.arms import stacked_metrics

        r = stacked_metrics(path, n=N_STACKED, seed=SEED)
        return {m: r[m] for m in metrics}
    import torch

    from probes.adapters.classifier import predict
    from probes.io import sources
    from probes.measures import quality

    G, _, meta = sources.load(path)
    net, clf = _classifier(meta.get("data", {}).get("name") or "mnist10k")
    out: dict[str, float] = {}
    if any(m in _QUALITY for m in metrics):
        q = quality.scores(G, meta, ["classifier"], n=N_IMAGE, seed=SEED, net=net, clf=clf,
                           real_cache=_REAL_FEATURES)["classifier"]
        every = {"fd": q["frechet"], "kid": q["kid"]["mean"],
                 **{k: q["prdc"][k] for k in ("precision", "recall", "density", "coverage")}}
        out.update({m: float(every[m]) for m in metrics if m in every})
    if "classes" in metrics:
        counts = torch.bincount(predict(net, sources.fakes(G, meta, N_IMAGE, seed=SEED)),
                                minlength=10)
        out["classes"] = int((counts >= CLASS_SHARE * N_IMAGE).sum())
    return {m: out[m] for m in metrics}


def _mixture_numbers(path: str | Path, metrics: Sequence[str]) -> dict[str, float]:
    from probes.study.arms import fidelity_metrics, mixture_metrics

    out: dict[str, float] = {}
    if any(not m.startswith("fidelity_") for m in metrics):
        out.update(mixture_metrics(path, n=N_MIXTURE, seed=SEED))
    if any(m.startswith("fidelity_") for m in metrics):
        out.update(fidelity_metrics(path, seed=SEED))
    return {m: out[m] for m in metrics}


def weights_sha256(path: str | Path) -> str:
    """:func:`trainers.checkpoint.tensor_digest` of the G and D tensors of the snapshot at
    ``path`` as stored (float32 in a raw snapshot; optimizer state left out): what a results
    file records as the SHA-256 of a run's final weights."""
    from probes.io.edge import read_checkpoint, tensor_digest

    tensors, _ = read_checkpoint(path)
    return tensor_digest({k: v for k, v in tensors.items() if k.startswith(("G.", "D."))})


def measured_steps(available: Sequence[int], every: int | None, last: int) -> list[int]:
    """The steps a run's numbers are taken at: those of ``available`` (its snapshots) that are
    multiples of ``every``, and ``last`` (the final or last good one)."""
    if every is None:
        return []
    return sorted({s for s in available if s % every == 0} | {last})
