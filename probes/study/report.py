"""``asgan-probe report`` without run directories: the study report from the shipped
checkpoints. Regenerates every figure and ``report.md`` with the claims table.

The figure functions here are the ones the notebooks call, so a notebook and the report draw
the same picture from the same seeds.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from probes.io import sources
from probes.study import arms as study
from probes.study.arms import MAIN

ATTACK_EPS = (0, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255)
MNIST_ORDER = ("baseline", "twice", "asgan-eps0.5", "asgan-eps2", "gaussian-eps2", "r1", "sn")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _batch(meta: dict) -> int:
    return int(meta["config"].get("batch_size", 64))


def fig_gradient_maps(paths: Sequence[tuple[str, Path]], out: Path, *, population: str = "real",
                      n: int = 8, seed: int = 0) -> Path:
    """Paper Fig. 1: each D's input-gradient map on the same reals, or on its own G's fakes
    (the gradient that G actually receives)."""
    from probes.core.gradients import gradient_map, input_gradients
    from probes.viz.gradients import plot_maps, plot_rows

    rows, grads, x_real = [], [], None
    for label, path in paths:
        G, D, meta = sources.load(path)
        if population == "real":
            x_real = study.reals_for(meta, n, seed) if x_real is None else x_real
            x = x_real
        else:  # at least one training batch so BatchNorm statistics are those of training
            x = sources.fakes(G, meta, max(n, _batch(meta)), seed=seed)
        r = input_gradients(D, x, population=population, batch_size=_batch(meta), reduce=None,
                            keep=n)
        grads.append((f"{label}: |grad| of D", r["grad"]))
        rows += [(f"{label}: G(z)", "image", r["x"]),
                 (f"{label}: |grad| of D", "map", gradient_map(r["grad"]))]
    if population == "real":
        return plot_maps(x_real, grads, out, n=n)
    return plot_rows(rows, out, n=n, title="input gradients on each G's own samples: clip to "
                     "mean ± 3 std, mean |g| over channels")


def fig_histograms(paths: Sequence[tuple[str, Path]], out_raw: Path, out_rms: Path, *,
                   n: int = 256, seed: int = 0, bins: int = 101) -> tuple[Path, Path]:
    """Paper Fig. 5a: gradient-value histograms on the same reals, shared bins; raw values
    and values divided by each image's RMS gradient (shape without scale)."""
    from probes.core.gradients import histogram_edges, input_gradients, rms_scaled
    from probes.viz.gradients import plot_histograms

    gs = []
    for label, path in paths:
        _, D, meta = sources.load(path)
        x = study.reals_for(meta, n, seed)
        gs.append((label, input_gradients(D, x, batch_size=_batch(meta), reduce=None,
                                          keep=True)["grad"]))
    written = []
    for out, transform, xlabel in ((out_raw, lambda g: g, "input-gradient value"),
                                   (out_rms, rms_scaled, "gradient value / per-image RMS")):
        vals = [transform(g).flatten() for _, g in gs]
        limit = max(float(v.abs().quantile(0.999)) for v in vals)
        edges = histogram_edges(limit, bins)
        hists = []
        for (label, _), v in zip(gs, vals):
            counts = torch.histogram(v.double().clamp(-limit, limit), edges.double())[0]
            hists.append({"label": label, "edges": edges, "counts": counts,
                          "under": int((v < -limit).sum()), "over": int((v > limit).sum())})
        written.append(plot_histograms(hists, out, xlabel=xlabel))
    return written[0], written[1]


def fig_attack(paths: Sequence[tuple[str, Path]], out: Path, *, n: int = 256, seed: int = 0,
               eps: Sequence[float] = ATTACK_EPS) -> tuple[Path, list[dict[str, Any]]]:
    """Flip rate vs eps (FGSM) on reals and on each G's fakes, one line per checkpoint."""
    from probes.core.sweep import attack_sweep
    from probes.viz.attack import plot_flip_curves

    records = []
    for label, path in paths:
        G, D, meta = sources.load(path)
        pr = tuple(meta["pixel_range"])
        for pop, x in (("real", study.reals_for(meta, n, seed)),
                       ("fake", sources.fakes(G, meta, n, seed=seed))):
            for r in attack_sweep(D, x, eps=eps, population=pop, pixel_range=pr,
                                  bn_group=_batch(meta)):
                records.append(dict(r, label=label, checkpoint=str(path)))
    return plot_flip_curves(records, out), records


def fig_coverage(entries: Sequence[tuple[str, Path]], out: Path, *, n: int = 2500,
                 seed: int = 0) -> Path:
    """2-D scatter of generated points with modes and 3-std circles."""
    from probes.core.coverage import mixture_coverage
    from probes.viz.coverage import plot_mixtures
    from trainers.data import load_dataset

    panels = []
    for label, path in entries:
        G, _, meta = sources.load(path)
        ds = load_dataset(meta["config"]["data"])
        x = sources.fakes(G, meta, n, seed=seed)
        modes = torch.as_tensor(ds.info["modes"], dtype=x.dtype)
        panels.append({"title": f"{ds.name}: {label}", "x": x, "modes": modes,
                       "std": float(ds.info["std"]), "data": ds.name,
                       "result": mixture_coverage(x, modes, float(ds.info["std"]))})
    return plot_mixtures(panels, out)


def fig_samples(paths: Sequence[tuple[str, Path]], out: Path, *, n: int = 32,
                seed: int = 0) -> Path:
    from probes.viz.study import plot_sample_grids

    grids = []
    for label, path in paths:
        G, _, meta = sources.load(path)
        grids.append((label, sources.fakes(G, meta, n, seed=seed)))
    return plot_sample_grids(grids, out, nrow=8)


def _fmt(x: float, digits: int = 3) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def claims_markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| claim (paper) | metric | A vs B | mean A | mean B | A - B [95% CI] | d_z "
             "| pairs agree | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['claim']} | {r['group']}: {r['metric']} ({r['expect']} is "
                     f"better) | {r['a']} vs {r['b']} | {_fmt(r['mean_a'])} | "
                     f"{_fmt(r['mean_b'])} | {_fmt(r['diff'])} [{_fmt(r['lo'])}, "
                     f"{_fmt(r['hi'])}] | {_fmt(r['d_z'], 2)} | {r['pairs_agree']} | "
                     f"**{r['verdict']}** |")
    return lines


def arms_markdown(table: dict, metrics: Sequence[str], order: Sequence[str]) -> list[str]:
    head = "| arm | " + " | ".join(metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 1)]
    for arm in [a for a in order if a in table] + [a for a in table if a not in order]:
        cells = []
        for m in metrics:
            s = study.arm_summary({arm: table[arm]}, m)[arm]
            half = (s["hi"] - s["mean"]) if not math.isnan(s["hi"]) else math.nan
            cells.append(f"{_fmt(s['mean'])} ± {_fmt(half, 2)}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def _classifier_accuracy() -> float:
    from probes.adapters.classifier import load_classifier

    return float(load_classifier()[1]["heldout_accuracy"])


def write_study_report(out: str | Path, *, n_quality: int = 2000, n_stacked: int = 26_000,
                       seed: int = 0) -> Path:
    """Regenerate every study figure and ``report.md`` into ``out``; returns the md path.

    The files are built whole (:func:`trainers.lock.build_into`): two reports into one
    folder at once leave one of them, complete; other files in ``out`` are kept."""
    from trainers.lock import build_into

    with build_into(out, last=["report.md"]) as tmp:
        _build_study_report(tmp, n_quality=n_quality, n_stacked=n_stacked, seed=seed)
    return Path(out) / "report.md"


def _build_study_report(out: Path, *, n_quality: int, n_stacked: int, seed: int) -> None:
    from probes.measures.evolution import evolutions
    from probes.measures.references import side_by_side
    from probes.viz.gradients import plot_evolution
    from probes.viz.runs import plot_curves, read_run
    from probes.viz.study import plot_arms, plot_eps_sweep
    from trainers.checkpoint import atomic_write_bytes

    t0 = time.time()
    tables = {}
    for group in ("mnist10k", "ring8", "grid25", "stacked-mnist"):
        kw = {"mnist10k": {"n_quality": n_quality}, "stacked-mnist": {"n": n_stacked}}.get(
            group, {})
        tables[group] = study.collect(group, progress=lambda s: _log(f"measuring {s}"),
                                      seed=seed, **kw)
    claims = study.claims_table(tables)
    mn = study.shipped_runs("mnist10k")
    pair = [("baseline", mn["baseline"][0]), ("AS-GAN 0.5/255", mn[MAIN][0])]
    _log("figures ...")
    fig_gradient_maps(pair, out / "fig1-maps-real.png", population="real")
    fig_gradient_maps(pair, out / "fig1-maps-fake.png", population="fake")
    fig_histograms(pair, out / "fig5a-hist-raw.png", out / "fig5a-hist-rms.png")
    evos = evolutions([study.run_dir(p) for _, p in pair], n=64, seed=seed)
    plot_evolution(evos, out / "fig5b-evolution.png")
    fig_attack(pair, out / "attack-curves.png")
    r8, g25 = study.shipped_runs("ring8"), study.shipped_runs("grid25")
    fig_coverage([("baseline", r8["baseline"][0]), ("AS-GAN 0.5/255", r8[MAIN][0]),
                  ("baseline", g25["baseline"][0]), ("AS-GAN 0.5/255", g25[MAIN][0])],
                 out / "coverage-2d.png")
    plot_eps_sweep([("modes", "grid25 modes captured (of 25)", tables["grid25"]),
                    ("high_quality_pct", "grid25 high-quality samples (%)", tables["grid25"]),
                    ("fd", "mnist10k Frechet distance (classifier features)",
                     tables["mnist10k"])], out / "eps-sweep.png",
                   title="Fig. 3 analogue: AS-GAN eps sweep vs baseline and gaussian ablation")
    plot_arms(tables["mnist10k"], [("fd", "Frechet distance (lower better)"),
                                   ("hoyer_real", "Hoyer sparsity of grad on reals"),
                                   ("fg_share_real", "grad L1 share on strokes"),
                                   ("flip_real_1", "FGSM flip rate, eps 1/255")],
              out / "arms-mnist10k.png", order=MNIST_ORDER)
    fig_samples([(a, mn[a][0]) for a in MNIST_ORDER if a in mn], out / "samples.png")
    plot_curves([read_run(study.run_dir(p)) for _, p in pair], out / "training-curves.png")

    def ours(group):
        return [{"label": f"ours: {arm} (3 seeds)",
                 "modes_captured": study.arm_summary(tables[group], "modes")[arm]["mean"],
                 "high_quality_pct": study.arm_summary(tables[group],
                                                       "high_quality_pct")[arm]["mean"],
                 "reverse_kl": study.arm_summary(tables[group], "reverse_kl")[arm]["mean"]}
                for arm in tables[group]]

    held = sum(r["verdict"] == "held" for r in claims)
    lines = [
        "# asgan-probe study report", "",
        "Every number below is computed by `asgan-probe report` from the checkpoints shipped "
        "in `checkpoints/shipped/` (made by `scripts/make_checkpoints.py`, commands in "
        "`checkpoints/MANIFEST.json`), with fixed seeds: re-running gives the same numbers.",
        "", "## Protocol", "",
        "- **Scale**: CPU scale, not the paper's. mnist10k (the first 10k MNIST digits) at "
        "32 px, DCGAN width 16, batch 64, 1,400 iterations; ring8/grid25 with MLPs (2,000 / "
        "2,500 iterations). Three seeds per arm.",
        "- **Pairing**: arms share the seed, hence G/D initialisation, data order and latents; "
        "comparisons are per-seed differences A - B with a Student-t 95% interval over the 3 "
        "seeds (t = 4.30) and Cohen's d_z. A claim is *held* when the interval excludes 0 on "
        "the claimed side, *opposite* when it excludes 0 on the other side, otherwise "
        "*inconclusive*.",
        f"- **Arms**: `baseline`; `{MAIN}` = AS-GAN at the paper's default (their 1/255 in "
        "[-1, 1] space is 0.5/255 in our pixel units); `asgan-eps2`; controls `twice` (eps 0: "
        "D updated twice), `gaussian-eps2` (random-sign perturbation), `r1` (R1 penalty, "
        "gamma 1), `sn` (spectral norm on D).",
        f"- **Quality**: Frechet distance (FD) and KID in the feature space of our digit "
        f"classifier (not Inception: these are not FIDs), {n_quality} samples each. "
        "**Gradients**: D's logit gradient on 256 held reals/fakes, BatchNorm in batch mode "
        "(SPEC 1); Hoyer sparsity, share of |g| on strokes (fg_share), high-frequency share. "
        "**Robustness**: FGSM flip rate of reals at 1/255 and 2/255 (both fixed in advance).",
        "",
        "## Claims", "",
        f"{held} of {len(claims)} comparisons held at this scale. A claim that does not hold "
        "here is a finding about this scale, not a verdict on the paper.", "",
        *claims_markdown(claims), "",
        "## mnist10k arms (mean ± 95% CI half-width over seeds)", "",
        *arms_markdown(tables["mnist10k"], ["fd", "kid", "precision", "recall",
                                            "hoyer_real", "fg_share_real", "hf_share_real",
                                            "hoyer_fake", "flip_real_1", "flip_real_2"],
                       MNIST_ORDER), "",
        "![arms](arms-mnist10k.png)", "", "![samples](samples.png)", "",
        "## Gradients (paper Fig. 1, 5a, 5b; seed 0)", "",
        "![maps on reals](fig1-maps-real.png)", "", "![maps on fakes](fig1-maps-fake.png)", "",
        "![histogram](fig5a-hist-raw.png)", "", "![histogram rms](fig5a-hist-rms.png)", "",
        "![evolution](fig5b-evolution.png)", "",
        "## Robustness", "", "![attack](attack-curves.png)", "",
        "## Mode coverage", "",
        *arms_markdown(tables["ring8"], ["modes", "high_quality_pct", "reverse_kl"],
                       ("baseline", "twice", MAIN, "asgan-eps2")), "",
        side_by_side("ring8", ours("ring8")), "",
        *arms_markdown(tables["grid25"], ["modes", "high_quality_pct", "reverse_kl"],
                       ("baseline", "twice", "asgan-eps0.5", "asgan-eps1", "asgan-eps2",
                        "asgan-eps3", "asgan-eps4", "gaussian-eps2")), "",
        side_by_side("grid25", ours("grid25")), "",
        "![coverage](coverage-2d.png)", "",
        f"Stacked MNIST (1000 modes, {n_stacked} samples per checkpoint, each channel read by our "
        f"digit classifier, held-out accuracy {_classifier_accuracy():.1%}). The data is "
        "built from the 10k-digit subset, so these counts are indicative and not comparable "
        "with the published ones (VEEGAN Table 2: DCGAN 99 modes; PacGAN Table 2: DCGAN "
        "78.9 modes, PacDCGAN2 1000).", "",
        *arms_markdown(tables["stacked-mnist"], ["modes", "kl"], ("baseline", MAIN)), "",
        "## eps sweep (paper Fig. 3 analogue)", "", "![eps sweep](eps-sweep.png)", "",
        "## Training curves (seed 0)", "", "![curves](training-curves.png)", ""]
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
    _log(f"report written in {time.time() - t0:.0f} s")
    import json

    atomic_write_bytes(out / "study.json", json.dumps({"tables": tables, "claims": claims},
                                                      indent=1, default=float).encode())
