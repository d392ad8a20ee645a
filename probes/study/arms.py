"""The study: every probe run over the shipped checkpoints, per arm and seed, and the claims
table that pairs arms by seed (an edge module: it loads checkpoints and data).

Shipped runs live in ``checkpoints/shipped/<group>/<arm>/seed<k>/`` and are listed in
``checkpoints/MANIFEST.json`` (``scripts/make_checkpoints.py`` made them). Groups: ``mnist10k``
(DCGAN-32, width 16, 1,400 iterations: baseline, AS-GAN at 0.5/255 (the paper's default in
our units) and 2/255, and the controls ``twice`` (D updated twice, eps 0), ``gaussian-eps2``
(random-sign noise), ``r1`` (R1 penalty) and ``sn`` (spectral norm)); ``ring8`` and ``grid25``
(MLP; grid25 carries the eps sweep). Every number here is computed from those files with
fixed seeds, so re-running gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from probes.core.stats import paired, verdict
from probes.io import sources

MAIN = "asgan-eps0.5"  # the paper's default (its "1/255" in [-1, 1] space)
CONTROLS = ("twice", "gaussian-eps2", "r1", "sn")
ATTACK_EPS = (1 / 255, 2 / 255)


def shipped_runs(group: str) -> dict[str, dict[int, Path]]:
    """``{arm: {seed: final checkpoint}}`` of a shipped group, from the manifest."""
    from trainers.manifest import locate, read_manifest

    runs: dict[str, dict[int, tuple[int, Path]]] = {}
    for rel, e in read_manifest().items():
        if e.get("group") != group or not rel.endswith(".safetensors"):
            continue
        seeds = runs.setdefault(e["arm"], {})
        best = seeds.get(e["seed"])
        if best is None or e["steps"] > best[0]:
            seeds[e["seed"]] = (e["steps"], locate(rel))
    if not runs:
        from trainers.errors import UserError

        raise UserError(f"no shipped checkpoints for group {group!r} in checkpoints/MANIFEST"
                        ".json; regenerate with python scripts/make_checkpoints.py")
    return {arm: {s: p for s, (_, p) in sorted(v.items())} for arm, v in sorted(runs.items())}


def run_dir(path: Path) -> Path:
    """The shipped run folder of a checkpoint (config.json, stats.jsonl, snapshots)."""
    return Path(path).parent


@lru_cache(maxsize=4)
def _reals(data: str, n: int, seed: int, resolution: int | None) -> torch.Tensor:
    meta = {"config": {"data": data, "resolution": resolution, "seed": 0}}
    return sources.reals(meta, n, seed=seed)


def reals_for(meta: Mapping[str, Any], n: int, seed: int = 0) -> torch.Tensor:
    """``n`` seeded reals of a checkpoint's dataset, shared (cached) across checkpoints."""
    cfg = meta["config"]
    res = cfg.get("resolution") or (meta["data"]["shape"][-1]
                                    if len(meta["data"]["shape"]) == 3 else None)
    return _reals(cfg["data"], n, seed, res)


@lru_cache(maxsize=2)
def _real_features(data: str, n: int, seed: int, resolution: int | None) -> torch.Tensor:
    from probes.adapters.classifier import features, load_classifier

    net, _ = load_classifier()
    return features(net, _reals(data, n, seed, resolution))


def image_metrics(path: str | Path, *, n_quality: int = 2000, n_grad: int = 256,
                  n_attack: int = 512, seed: int = 0) -> dict[str, float]:
    """Quality, gradient and robustness numbers of one image checkpoint (grey digits).

    Quality: Frechet distance and KID in the shipped digit classifier's feature space,
    and precision/recall/density/coverage, from ``n_quality`` fakes against as many reals.
    Gradients (of D's logit, ``auto`` mode, batch statistics in groups of the training batch):
    sparsity and structure means on ``n_grad`` reals and on as many fakes. Robustness: FGSM
    flip rate of reals at 1/255 and 2/255 (``n_attack`` reals).
    """
    from probes.adapters.classifier import features, load_classifier
    from probes.core.gradients import grad_sparsity, input_gradients
    from probes.core.quality import quality_scores
    from probes.core.structure import structure_reducer
    from probes.core.sweep import attack_sweep

    G, D, meta = sources.load(path)
    pixel_range = tuple(meta["pixel_range"])
    batch = int(meta["config"].get("batch_size", 64))
    net, _ = load_classifier()
    x_fake = sources.fakes(G, meta, n_quality, seed=seed)
    cfg = meta["config"]
    res = cfg.get("resolution") or meta["data"]["shape"][-1]
    q = quality_scores(_real_features(cfg["data"], n_quality, seed, res), features(net, x_fake),
                       kid_subsets=20, kid_subset_size=min(500, n_quality), seed=seed)
    out = {"fd": q["frechet"], "kid": q["kid"]["mean"],
           **{k: q["prdc"][k] for k in ("precision", "recall", "density", "coverage")}}
    x_real = reals_for(meta, max(n_grad, n_attack), seed)
    reducers = [grad_sparsity, structure_reducer(pixel_range=pixel_range)]
    for pop, x in (("real", x_real[:n_grad]), ("fake", x_fake[:n_grad])):
        r = input_gradients(D, x, population=pop, batch_size=batch, reduce=reducers)
        for k in ("l1", "hoyer", "gini_hr", "fg_share", "hf_share", "alignment", "ssim",
                  "edge_corr"):
            out[f"{k}_{pop}"] = float(r["per_image"][k].mean())
    for rec in attack_sweep(D, x_real[:n_attack], eps=ATTACK_EPS, population="real",
                            pixel_range=pixel_range, bn_group=batch):
        out[f"flip_real_{rec['eps_255']:g}"] = rec["flip_rate"]
    return out


def mixture_metrics(path: str | Path, *, n: int = 2500, seed: int = 0) -> dict[str, float]:
    """PacGAN 2-D coverage of one ring8/grid25 checkpoint from ``n`` generated points."""
    from probes.core.coverage import mixture_coverage
    from trainers.data import load_dataset

    G, _, meta = sources.load(path)
    ds = load_dataset(meta["config"]["data"])
    x = sources.fakes(G, meta, n, seed=seed)
    modes = torch.as_tensor(ds.info["modes"], dtype=x.dtype)
    r = mixture_coverage(x, modes, float(ds.info["std"]))
    return {"modes": r["modes_captured"], "high_quality_pct": r["high_quality_pct"],
            "reverse_kl": r["reverse_kl"] if r["reverse_kl"] is not None else math.nan}


def stacked_metrics(path: str | Path, *, n: int = 26_000, seed: int = 0) -> dict[str, float]:
    """Stacked-MNIST modes (of 1000) and KL(p_gen || uniform) from ``n`` samples, each channel
    read by the shipped digit classifier (VEEGAN/PacGAN protocol on our 10k-digit subset)."""
    from probes.adapters.classifier import load_classifier, predict_channels
    from probes.core.coverage import stacked_coverage

    G, _, meta = sources.load(path)
    net, _ = load_classifier()
    r = stacked_coverage(predict_channels(net, sources.fakes(G, meta, n, seed=seed)))
    return {"modes": r["modes_captured"], "kl": r["kl"] if r["kl"] is not None else math.nan}


METRICS: dict[str, Callable[..., dict[str, float]]] = {
    "mnist10k": image_metrics, "ring8": mixture_metrics, "grid25": mixture_metrics,
    "stacked-mnist": stacked_metrics}


def collect(group: str, *, arms: Sequence[str] | None = None,
            seeds: Sequence[int] | None = None, progress: Callable[[str], None] | None = None,
            **kwargs: Any) -> dict[str, dict[int, dict[str, float]]]:
    """``{arm: {seed: metrics}}`` for a shipped group (all arms and seeds by default)."""
    runs = shipped_runs(group)
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


# (claim in the paper, group, metric, arm A, arm B, expected sign of A - B). The claims
# against the baseline are stated for both AS-GAN arms fixed in advance (the paper's default
# 0.5/255 and 2/255), so neither can be picked after the fact.
_VS_BASELINE = [
    ("AS-GAN improves sample quality (FID -10..-50%)", "fd", "lower"),
    ("AS-GAN makes D robust to FGSM on reals (eps 1/255)", "flip_real_1", "lower"),
    ("AS-GAN makes D robust to FGSM on reals (eps 2/255)", "flip_real_2", "lower"),
    ("AS-GAN makes D's gradient sparser (Fig. 5)", "hoyer_real", "higher"),
    ("...also the gradient G receives (on fakes)", "hoyer_fake", "higher"),
    ("AS-GAN's gradient is less noisy: more mass on strokes (Fig. 1)", "fg_share_real",
     "higher"),
    ("...and less high-frequency energy", "hf_share_real", "lower"),
]
CLAIMS: list[tuple[str, str, str, str, str, str]] = [
    (claim, "mnist10k", metric, arm, "baseline", expect)
    for arm in (MAIN, "asgan-eps2") for claim, metric, expect in _VS_BASELINE
] + [
    ("Not just more D steps: beats D-updated-twice on quality", "mnist10k", "fd", MAIN,
     "twice", "lower"),
    ("Not just more D steps: sparser than D-updated-twice", "mnist10k", "hoyer_real", MAIN,
     "twice", "higher"),
    ("Gradient direction matters: beats random-sign noise (same eps)", "mnist10k", "fd",
     "asgan-eps2", "gaussian-eps2", "lower"),
    ("Gradient direction matters: sparser than random-sign noise", "mnist10k", "hoyer_real",
     "asgan-eps2", "gaussian-eps2", "higher"),
    ("Not just a smoother D: vs R1 penalty, quality", "mnist10k", "fd", MAIN, "r1", "lower"),
    ("Not just a smoother D: vs R1 penalty, sparsity", "mnist10k", "hoyer_real", MAIN, "r1",
     "higher"),
    ("Not just a smoother D: vs spectral norm, quality", "mnist10k", "fd", MAIN, "sn", "lower"),
    ("Alleviates mode collapse: ring8 modes", "ring8", "modes", MAIN, "baseline", "higher"),
    ("Alleviates mode collapse: grid25 modes", "grid25", "modes", MAIN, "baseline", "higher"),
    ("Alleviates mode collapse: grid25 reverse KL", "grid25", "reverse_kl", MAIN, "baseline",
     "lower"),
    ("Alleviates mode collapse: stacked-MNIST modes", "stacked-mnist", "modes", MAIN,
     "baseline", "higher"),
    ("Alleviates mode collapse: stacked-MNIST KL", "stacked-mnist", "kl", MAIN, "baseline",
     "lower"),
]


def claims_table(tables: Mapping[str, Mapping[str, Mapping[int, Mapping[str, float]]]]
                 ) -> list[dict[str, Any]]:
    """One row per claim in :data:`CLAIMS` whose group was collected: the seed-paired
    difference ``A - B`` (mean, 95% t-interval, ``d_z``), the per-arm means, how many seed
    pairs agree with the claimed sign, and the verdict (held / opposite / inconclusive)."""
    rows = []
    for claim, group, metric, a, b, expect in CLAIMS:
        t = tables.get(group, {})
        if a not in t or b not in t or not all(metric in m for arm in (a, b)
                                               for m in t[arm].values()):
            continue  # that group, arm or metric was not measured
        va = {s: m[metric] for s, m in t[a].items()}
        vb = {s: m[metric] for s, m in t[b].items()}
        d = paired(va, vb)
        agree = sum((x < 0) if expect == "lower" else (x > 0) for x in d["diffs"].values())
        mean_b = sum(vb.values()) / len(vb)
        rows.append({"claim": claim, "group": group, "metric": metric, "a": a, "b": b,
                     "expect": expect, "mean_a": sum(va.values()) / len(va), "mean_b": mean_b,
                     "diff": d["mean"], "lo": d["lo"], "hi": d["hi"], "d_z": d["d_z"],
                     "rel_change_pct": 100 * d["mean"] / mean_b if mean_b else math.nan,
                     "pairs_agree": f"{agree}/{len(d['diffs'])}",
                     "verdict": verdict(d, expect)})
    return rows


def arm_summary(table: Mapping[str, Mapping[int, Mapping[str, float]]], metric: str
                ) -> dict[str, dict[str, float]]:
    """Per arm: mean and 95% t-interval of ``metric`` over seeds."""
    from probes.core.stats import mean_ci

    return {arm: mean_ci([m[metric] for m in by_seed.values()])
            for arm, by_seed in table.items()}
