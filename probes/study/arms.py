"""The shipped study: every probe run over the shipped checkpoints, per arm and seed, and the
claims table that pairs arms by seed (an edge module: it loads checkpoints and data).

Which study is shipped, its groups, arms, seeds and iterations are all in its plan file
(:func:`shipped_plan`: ``studies/SHIPPED`` names it; :mod:`probes.study.plan`), never in code:
its runs live in the plan's ``ship`` folder, are listed in ``checkpoints/MANIFEST.json`` and
were made by ``asgan-study run <plan>``. Every number here is computed from those files with
fixed seeds, so re-running gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes.io import sources

if TYPE_CHECKING:
    from probes.study.plan import Plan

ATTACK_EPS = (1 / 255, 2 / 255)
SHIPPED = "studies/SHIPPED"  # beside checkpoints/: names the shipped study's plan file


def shipped_plan() -> Plan:
    """The plan of the study shipped in :func:`asgan_base.manifest.checkpoints_dir` (paths
    relative to the folder holding it: a checkout's root), from the plan file that
    ``studies/SHIPPED`` there names first (its first line that is not a comment); the
    later lines name further shipped studies (:func:`shipped_plans`).

    Raises:
        asgan_base.errors.UserError: no ``studies/SHIPPED`` there, or a bad plan.
    """
    return shipped_plans()[0]


def shipped_plans() -> list[Plan]:
    """Every plan ``studies/SHIPPED`` names, in its order (:func:`shipped_plan` is the
    first): ``asgan-probe report`` writes the first study's report and each further one's
    in a folder named after it."""
    from asgan_base.errors import UserError
    from asgan_base.manifest import checkpoints_dir
    from probes.study.engine import load

    root = checkpoints_dir().parent
    pointer = root / SHIPPED
    try:
        names = [ln.strip() for ln in pointer.read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError:
        raise UserError(f"{pointer}: missing; it names the plan file of the shipped study "
                        "(a clone has it beside checkpoints/)") from None
    if not names:
        raise UserError(f"{pointer}: names no plan file")
    return [load(pointer.parent / name, root) for name in names]


def plan_progress(plan: Plan, group: str, entries: Mapping[str, Mapping] | None = None
                  ) -> dict[str, dict[str, list[int]]]:
    """Per planned arm of ``group`` (plan order): ``{"planned": [seeds], "shipped": [seeds]}``,
    a seed being shipped when its final snapshot has a manifest entry; ``{}`` when the plan
    has no such group."""
    from asgan_base.manifest import read_manifest
    from probes.study.engine import ship_rels

    entries = read_manifest(plan.manifest) if entries is None else entries
    out: dict[str, dict[str, list[int]]] = {}
    for r in plan.runs():
        if r.group == group:
            p = out.setdefault(r.arm, {"planned": [], "shipped": []})
            p["planned"].append(r.seed)
            if ship_rels(plan, r)[-1] in entries:
                p["shipped"].append(r.seed)
    return {a: {k: sorted(v) for k, v in p.items()} for a, p in out.items()}


def shipped_runs(group: str, plan: Plan | None = None) -> dict[str, dict[int, Path]]:
    """``{arm: {seed: final checkpoint}}`` (arms and seeds sorted) of a group of ``plan``
    (default :func:`shipped_plan`) whose final snapshot is in the manifest (evolution
    snapshots and a run cut short do not count)."""
    from asgan_base.errors import UserError
    from asgan_base.manifest import read_manifest
    from probes.study.engine import ship_rels

    plan = shipped_plan() if plan is None else plan
    entries = read_manifest(plan.manifest)
    runs: dict[str, dict[int, Path]] = {}
    for r in plan.runs():
        rel = ship_rels(plan, r)[-1]
        if r.group == group and rel in entries:
            runs.setdefault(r.arm, {})[r.seed] = plan.root / rel
    if not runs:
        raise UserError(f"no shipped checkpoints for group {group!r} in {plan.manifest}; "
                        f"regenerate with asgan-study run {plan.path.name}")
    return {arm: dict(sorted(v.items())) for arm, v in sorted(runs.items())}


def run_dir(path: Path) -> Path:
    """The shipped run folder of a checkpoint (config.json, stats.jsonl, snapshots)."""
    return Path(path).parent


GRAD_KEYS = ("l1", "hoyer", "gini_hr", "fg_share", "hf_share", "alignment", "ssim", "edge_corr")
# what an ``image`` measure's gradient numbers on fakes are, for the report to print beside a
# claim on one: a claim's registered text cannot change (its hash is checked against the runs)
# and may call them "the gradient G receives", which only ``batch`` mode with G in train mode is
# (probes.core.gradients; docs/gradients.md)
MEASURED_AS: dict[str, str] = {
    f"{k}_fake": "D's per-sample logit gradient at samples of its own G (G in eval mode), in "
                 "the default probe mode (`frozen` for a BatchNorm D, `eval` without): each "
                 "sample's own gradient, not the `batch`-mode gradient a training step gives "
                 "G. The registered text above is left as it was registered (the claims file's "
                 "hash is checked against the runs it judges)." for k in GRAD_KEYS}
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


def fidelity_metrics(path: str | Path, *, seed: int = 0) -> dict[str, float]:
    """Gradient fidelity of one ring8/grid25 checkpoint (``asgan-probe fidelity`` with its
    defaults): ``fidelity_cos`` (mean cosine of D's input gradient with the ideal direction,
    [-1, 1]), ``fidelity_noise`` (mean share of its energy orthogonal to it, [0, 1]), the
    KDE ``bandwidth`` (data units) and ``n`` probed fakes."""
    from probes.measures.fidelity import fidelity_sweep

    (row,) = fidelity_sweep([str(path)], seed=seed)["checkpoints"]
    return {"fidelity_cos": row["summary"]["cos"]["mean"],
            "fidelity_noise": row["summary"]["noise"]["mean"],
            "bandwidth": row["bandwidth"], "n": row["n"]}


def stacked_metrics(path: str | Path, *, n: int = 26_000, seed: int = 0) -> dict[str, float]:
    """Stacked-MNIST modes (of 1000) and KL(p_gen || uniform) from ``n`` samples, each channel
    read by the shipped digit classifier (``asgan-probe coverage --n n``; VEEGAN/PacGAN
    protocol on our 10k-digit subset)."""
    from probes.measures.coverage import coverage

    (r,) = coverage([str(path)], n=n, seed=seed, with_reals=False)[0]["results"]
    return {"modes": r["modes_captured"], "kl": r["kl"] if r["kl"] is not None else math.nan}


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
            plan: Plan | None = None, **kwargs: Any) -> dict[str, dict[int, dict[str, float]]]:
    """``{arm: {seed: metrics}}`` for a shipped group of ``plan`` (default
    :func:`shipped_plan`; all arms and seeds by default), through the group's ``measure``."""
    plan = shipped_plan() if plan is None else plan
    runs = shipped_runs(group, plan)
    table: dict[str, dict[int, dict[str, float]]] = {}
    for arm, by_seed in runs.items():
        if arms is not None and arm not in arms:
            continue
        for s, path in by_seed.items():
            if seeds is not None and s not in seeds:
                continue
            if progress:
                progress(f"{group}/{arm}/seed{s}")
            table.setdefault(arm, {})[s] = MEASURES[plan.groups[group]["measure"]](
                path, **kwargs)
    return table


def arm_summary(table: Mapping[str, Mapping[int, Mapping[str, float]]], metric: str
                ) -> dict[str, dict[str, float]]:
    """Per arm: mean and 95% t-interval of ``metric`` over seeds."""
    from probes.core.stats import mean_ci

    return {arm: mean_ci([m[metric] for m in by_seed.values()])
            for arm, by_seed in table.items()}
