"""The study: every probe run over the shipped checkpoints, per arm and seed, and the claims
table that pairs arms by seed (an edge module: it loads checkpoints and data).

Shipped runs live in ``checkpoints/shipped/v2/<group>/<arm>/seed<k>/`` (study v2, issue 15) or,
for a group v2 has not reached yet, ``checkpoints/shipped/<group>/...`` (the first study, v1),
and are listed in ``checkpoints/MANIFEST.json``; ``asgan-study run studies/v2.toml`` made them from
the plan in ``checkpoints/shipped/v2/PLAN.json`` (arms, seeds, iterations: see
``checkpoints/README.md``). A group uses one study only (:func:`study_in_use`), never a mix.
Every number here is computed from those files with fixed seeds, so re-running gives the same
numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from probes.io import sources

MAIN = "asgan-eps0.5"  # the paper's default (its "1/255" in [-1, 1] space)
ATTACK_EPS = (1 / 255, 2 / 255)


def study_in_use(group: str, entries: Mapping[str, Mapping] | None = None) -> str:
    """The study whose runs stand for ``group``: "v2" once its baseline and main arm
    (:data:`MAIN`) have their seed-0 final snapshots shipped, which is what every figure of the
    report needs; "v1" before. From then on the v1 files of the group are retired
    (deleted when v1 was retired; git history keeps them), and the report
    shows the v2 seeds trained so far, verdicts waiting for the planned ones
    (:func:`probes.study.claims.evaluate_claims`)."""
    from trainers.manifest import read_manifest, study_progress

    progress = study_progress(group, "v2", read_manifest() if entries is None else entries)
    begun = all(0 in progress.get(arm, {}).get("shipped", []) for arm in ("baseline", MAIN))
    return "v2" if progress and begun else "v1"


def shipped_runs(group: str, study: str | None = None) -> dict[str, dict[int, Path]]:
    """``{arm: {seed: final checkpoint}}`` of a shipped group, from the manifest.

    ``study``: "v2" (issue 15's regeneration, ``checkpoints/shipped/v2/``), "v1" (the first
    study) or None: :func:`study_in_use`. A v2 run counts once its planned final snapshot is
    shipped (evolution snapshots and a run cut short do not).
    """
    from trainers.manifest import locate, read_manifest, study_of, study_plan

    entries = read_manifest()
    if study is None:
        study = study_in_use(group, entries)
    plan = study_plan(group, study, entries) if study != "v1" else None
    runs: dict[str, dict[int, tuple[int, Path]]] = {}
    for rel, e in entries.items():
        if e.get("group") != group or not rel.endswith(".safetensors") or \
                study_of(e) != study:
            continue
        if plan is not None and e["steps"] != plan["steps"]:
            continue
        seeds = runs.setdefault(e["arm"], {})
        best = seeds.get(e["seed"])
        if best is None or e["steps"] > best[0]:
            seeds[e["seed"]] = (e["steps"], locate(rel))
    if not runs:
        from trainers.errors import UserError

        raise UserError(f"no shipped checkpoints for group {group!r} in checkpoints/MANIFEST"
                        ".json; regenerate with asgan-study run studies/v2.toml")
    return {arm: {s: p for s, (_, p) in sorted(v.items())} for arm, v in sorted(runs.items())}


def run_dir(path: Path) -> Path:
    """The shipped run folder of a checkpoint (config.json, stats.jsonl, snapshots)."""
    return Path(path).parent


GRAD_KEYS = ("l1", "hoyer", "gini_hr", "fg_share", "hf_share", "alignment", "ssim", "edge_corr")
_REAL_FEATURES: dict = {}  # real features for quality, shared across checkpoints


@lru_cache(maxsize=1)
def _classifier():
    from probes.measures.coverage import load_digit_classifier

    return load_digit_classifier(None, "cpu")


def image_metrics(path: str | Path, *, n_quality: int = 2000, n_grad: int = 256,
                  n_attack: int = 512, seed: int = 0) -> dict[str, float]:
    """Quality, gradient and robustness numbers of one image checkpoint (grey digits), each
    through the measurement the CLI verb uses, with the CLI's defaults:

    - quality (``asgan-probe quality --n n_quality``): Frechet distance, KID and
      precision/recall/density/coverage in the digit classifier's features;
    - gradients (``asgan-probe gradients --n n_grad``, reals and ``--population fake``):
      per-image means of sparsity and structure of D's logit gradient, in the default probe
      mode (per-sample ``frozen`` for BatchNorm D, ``eval`` without), on held-out reals when
      the checkpoint records a split;
    - robustness (``asgan-probe attack --population real --method fgsm --n n_attack``): FGSM
      flip rate of reals at 1/255 and 2/255.

    ``mode`` records the probe mode in force (a table mixing modes says so).
    """
    from probes.measures import quality
    from probes.measures.attack import attack
    from probes.measures.gradients import per_image

    G, D, meta = sources.load(path)
    net, clf = _classifier()
    q = quality.scores(G, meta, ["classifier"], n=n_quality, seed=seed, net=net, clf=clf,
                       real_cache=_REAL_FEATURES)["classifier"]
    out = {"fd": q["frechet"], "kid": q["kid"]["mean"],
           **{k: q["prdc"][k] for k in ("precision", "recall", "density", "coverage")}}
    for pop in ("real", "fake"):
        x, ref = sources.probe_inputs(meta, G, population=pop, n=n_grad, seed=seed)
        r = per_image(D, x, meta, reference=ref, population=pop)
        out["mode"] = r["mode"]
        for k in GRAD_KEYS:
            out[f"{k}_{pop}"] = float(r["per_image"][k].mean())
    for rec in attack([str(path)], eps=ATTACK_EPS, methods=("fgsm",), populations=("real",),
                      n=n_attack, seed=seed)["records"]:
        out[f"flip_real_{rec['eps_255']:g}"] = rec["flip_rate"]
    return out


def mixture_metrics(path: str | Path, *, n: int = 2500, seed: int = 0) -> dict[str, float]:
    """PacGAN 2-D coverage of one ring8/grid25 checkpoint from ``n`` generated points
    (``asgan-probe coverage --n n``)."""
    from probes.measures.coverage import coverage

    (r,) = coverage([str(path)], n=n, seed=seed, with_reals=False)[0]["results"]
    return {"modes": r["modes_captured"], "high_quality_pct": r["high_quality_pct"],
            "reverse_kl": r["reverse_kl"] if r["reverse_kl"] is not None else math.nan}


def stacked_metrics(path: str | Path, *, n: int = 26_000, seed: int = 0) -> dict[str, float]:
    """Stacked-MNIST modes (of 1000) and KL(p_gen || uniform) from ``n`` samples, each channel
    read by the shipped digit classifier (``asgan-probe coverage --n n``; VEEGAN/PacGAN
    protocol on our 10k-digit subset)."""
    from probes.measures.coverage import coverage

    (r,) = coverage([str(path)], n=n, seed=seed, with_reals=False)[0]["results"]
    return {"modes": r["modes_captured"], "kl": r["kl"] if r["kl"] is not None else math.nan}


METRICS: dict[str, Callable[..., dict[str, float]]] = {
    "mnist10k": image_metrics, "ring8": mixture_metrics, "grid25": mixture_metrics,
    "stacked-mnist": stacked_metrics}
# a study plan's group says which measurement its runs take (``measure``), and these are the
# numbers each gives (what a claim may name)
MEASURES: dict[str, Callable[..., dict[str, float]]] = {
    "image": image_metrics, "mixture": mixture_metrics, "stacked": stacked_metrics}
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "image": ("fd", "kid", "precision", "recall", "density", "coverage",
              *(f"{k}_{pop}" for pop in ("real", "fake") for k in GRAD_KEYS),
              *(f"flip_real_{e * 255:g}" for e in ATTACK_EPS)),
    "mixture": ("modes", "high_quality_pct", "reverse_kl"),
    "stacked": ("modes", "kl")}


def collect(group: str, *, arms: Sequence[str] | None = None,
            seeds: Sequence[int] | None = None, progress: Callable[[str], None] | None = None,
            study: str | None = None, **kwargs: Any) -> dict[str, dict[int, dict[str, float]]]:
    """``{arm: {seed: metrics}}`` for a shipped group (all arms and seeds by default) of
    ``study`` (:func:`shipped_runs`; None: :func:`study_in_use` now)."""
    runs = shipped_runs(group, study)
    table: dict[str, dict[int, dict[str, float]]] = {}
    for arm, by_seed in runs.items():
        if arms is not None and arm not in arms:
            continue
        for s, path in by_seed.items():
            if seeds is not None and s not in seeds:
                continue
            if progress:
                progress(f"{group}/{arm}/seed{s}")
            table.setdefault(arm, {})[s] = METRICS[group](path, **kwargs)
    return table


def arm_summary(table: Mapping[str, Mapping[int, Mapping[str, float]]], metric: str
                ) -> dict[str, dict[str, float]]:
    """Per arm: mean and 95% t-interval of ``metric`` over seeds."""
    from probes.core.stats import mean_ci

    return {arm: mean_ci([m[metric] for m in by_seed.values()])
            for arm, by_seed in table.items()}
