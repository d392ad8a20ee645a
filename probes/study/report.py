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

from probes.io import sources
from probes.study import arms as study
from probes.study.arms import MAIN

GROUPS = ("mnist10k", "ring8", "grid25", "stacked-mnist")
ATTACK_EPS = (0, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255)
# display order of the arms of both studies (v1 and v2); arms a study lacks are skipped
MNIST_ORDER = ("baseline", "twice", "asgan-eps0.5", "asgan-eps1", "asgan-eps2",
               "gaussian-eps0.5", "gaussian-eps2", "first-order-eps0.5", "r1", "r1-twice", "sn")
GRID_ORDER = ("baseline", "twice", "asgan-eps0.25", "asgan-eps0.5", "asgan-eps1", "asgan-eps1.5",
              "asgan-eps2", "asgan-eps3", "asgan-eps4", "gaussian-eps2")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _entries(paths: Sequence[tuple[str, Path]], population: str, n: int, seed: int
             ) -> list[dict[str, Any]]:
    """Loaded checkpoints with their probe inputs (:func:`probes.io.sources.probe_inputs`:
    the same seeded reals for all, or each G's own fakes), as the gradients verb has them."""
    entries = []
    for label, path in paths:
        G, D, meta = sources.load(path)
        x, ref = sources.probe_inputs(meta, G, population=population, n=n, seed=seed)
        entries.append({"label": label, "G": G, "D": D, "meta": meta, "x": x,
                        "reference": ref})
    return entries


def fig_gradient_maps(paths: Sequence[tuple[str, Path]], out: Path, *, population: str = "real",
                      n: int = 8, seed: int = 0) -> Path:
    """Paper Fig. 1: each D's input-gradient map on the same reals, or on its own G's fakes
    (the gradient that G actually receives), each map the image's own (default probe mode)."""
    from probes.core.gradients import gradient_map
    from probes.measures.gradients import per_image
    from probes.viz.gradients import plot_maps, plot_rows

    rows, grads = [], []
    entries = _entries(paths, population, n, seed)
    for e in entries:
        r = per_image(e["D"], e["x"], e["meta"], reference=e["reference"],
                      population=population, with_structure=False, keep=n)
        grads.append((f"{e['label']}: |grad| of D", r["grad"]))
        rows += [(f"{e['label']}: G(z)", "image", r["x"]),
                 (f"{e['label']}: |grad| of D", "map", gradient_map(r["grad"]))]
    if population == "real":
        return plot_maps(entries[0]["x"], grads, out, n=n)
    return plot_rows(rows, out, n=n, title="input gradients on each G's own samples: clip to "
                     "mean ± 3 std, mean |g| over channels")


def fig_histograms(paths: Sequence[tuple[str, Path]], out_raw: Path, out_rms: Path, *,
                   n: int = 256, seed: int = 0, bins: int = 101) -> tuple[Path, Path]:
    """Paper Fig. 5a: gradient-value histograms on the same reals, shared edges (the gradients
    verb's policy, :func:`probes.measures.gradients.pilot_edges`: outliers counted, not
    clamped); raw values and values divided by each image's RMS gradient."""
    from probes.core.gradients import histogram_reducer
    from probes.measures.gradients import histogram_record, per_image, pilot_edges
    from probes.viz.gradients import plot_histograms

    entries = _entries(paths, "real", n, seed)
    written = []
    for out, scale, xlabel in ((out_raw, "raw", "input-gradient value"),
                               (out_rms, "rms", "gradient value / per-image RMS")):
        edges = pilot_edges(entries, scale=scale, bins=bins)
        hists = [{"label": e["label"], "edges": edges, **histogram_record(per_image(
            e["D"], e["x"], e["meta"], reference=e["reference"], with_structure=False,
            accumulate=[histogram_reducer(edges, scale=scale)]))} for e in entries]
        written.append(plot_histograms(hists, out, xlabel=xlabel))
    return written[0], written[1]


def fig_attack(paths: Sequence[tuple[str, Path]], out: Path, *, n: int = 256, seed: int = 0,
               eps: Sequence[float] = ATTACK_EPS) -> tuple[Path, list[dict[str, Any]]]:
    """Flip rate vs eps (FGSM) on reals and on each G's fakes, one line per checkpoint
    (:func:`probes.measures.attack.attack`, as ``asgan-probe attack``)."""
    from probes.measures.attack import attack
    from probes.viz.attack import plot_flip_curves

    records = []
    for label, path in paths:
        for r in attack([str(path)], eps=eps, n=n, seed=seed)["records"]:
            records.append(dict(r, label=label))
    return plot_flip_curves(records, out), records


def fig_coverage(entries: Sequence[tuple[str, Path]], out: Path, *, n: int = 2500,
                 seed: int = 0) -> Path:
    """2-D scatter of generated points with modes and 3-std circles (the coverage verb's
    panels, :func:`probes.measures.coverage.coverage`)."""
    from probes.measures.coverage import coverage
    from probes.viz.coverage import plot_mixtures

    panels = []
    for label, path in entries:
        (panel,) = coverage([str(path)], n=n, seed=seed, with_reals=False)[1]["mixture"]
        panels.append(dict(panel, title=f"{panel['data']}: {label}"))
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


def arms_markdown(table: dict, metrics: Sequence[str], order: Sequence[str]) -> list[str]:
    """Mean ± 95% CI half-width over seeds per arm; with a ``probe mode`` column (and a note)
    when the arms' discriminators were probed in different BatchNorm modes (SPEC 1)."""
    modes = {arm: sorted({m["mode"] for m in by_seed.values() if "mode" in m})
             for arm, by_seed in table.items()}
    with_mode = any(modes.values())
    head = "| arm | " + " | ".join(metrics) + (" | probe mode |" if with_mode else " |")
    lines = [head, "|" + "---|" * (len(metrics) + 1 + with_mode)]
    for arm in [a for a in order if a in table] + [a for a in table if a not in order]:
        cells = []
        for m in metrics:
            s = study.arm_summary({arm: table[arm]}, m)[arm]
            half = (s["hi"] - s["mean"]) if not math.isnan(s["hi"]) else math.nan
            cells.append(f"{_fmt(s['mean'])} ± {_fmt(half, 2)}")
        if with_mode:
            cells.append(", ".join(modes[arm]) or "-")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if len({m for ms in modes.values() for m in ms}) > 1:
        lines += ["", "Note: these arms were probed in different BatchNorm modes (SPEC 1): "
                  "`frozen` (per-sample, one clean reference group's statistics held fixed) "
                  "for discriminators with BatchNorm, `eval` for those without (spectral norm "
                  "drops DCGAN D's BatchNorm); per-sample in both, but not the same network "
                  "family, so gradient and robustness numbers compare with that caveat."]
    return lines


def modes_line(tables: dict) -> str:
    """Which BatchNorm probe mode each arm's gradient and robustness numbers were measured in
    (SPEC 1): one line under the claims, so a claim that compares arms in different modes
    says so."""
    by_mode: dict[str, list[str]] = {}
    for group, table in tables.items():
        for arm, by_seed in table.items():
            for mode in sorted({m["mode"] for m in by_seed.values() if "mode" in m}):
                by_mode.setdefault(mode, []).append(f"{group}/{arm}")
    if not by_mode:
        return ""
    parts = [f"`{mode}` for {', '.join(arms)}" for mode, arms in sorted(by_mode.items())]
    note = (" Claims between arms in different modes compare per-sample numbers of different "
            "network families (with and without BatchNorm)." if len(by_mode) > 1 else "")
    return "Probe modes of the gradient and robustness metrics: " + "; ".join(parts) + "." + note


def protocol_lines(tables: dict, *, n_quality: int, basis: dict | None = None) -> list[str]:
    """The report's protocol, read from the shipped checkpoints (nets, iterations, seeds), so
    it stays true when the study is regenerated; ``basis`` (:func:`claims_basis`) adds one
    line per group on how much of study v2's plan is trained."""
    from probes.io.sources import load

    def facts(group: str) -> str:
        runs = study.shipped_runs(group, basis["studies"][group] if basis else None)
        _, _, meta = load(next(iter(runs["baseline"].values())))
        cfg = meta["config"]
        seeds = sorted({len(s) for s in tables[group].values()})
        return (f"{group}: {cfg['arch']} width {cfg.get('width')}, batch {cfg['batch_size']}, "
                f"{cfg['steps']:,} iterations, {'/'.join(map(str, seeds))} seeds per arm")

    return [
        "- **Scale**: CPU scale, not the paper's. " + "; ".join(
            facts(g) for g in GROUPS if g in tables) + ".",
        *([f"- **Which runs**: study v2 {_v2_state(basis)} (issue 15: nets that learn, 8 "
           "seeds for the arms of the primary claims, claims registered before the runs; plan "
           "in `checkpoints/shipped/v2/PLAN.json`, `checkpoints/README.md`)."]
          + progress_lines(basis) if basis else []),
        "- **Pairing**: arms share the seed, hence G/D initialisation, data order and latents; "
        "every comparison is a per-seed difference (tests and their limits below the claims "
        "tables).",
        f"- **Arms**: `baseline`; `{MAIN}` = AS-GAN at the paper's default (their 1/255 in "
        "[-1, 1] space is 0.5/255 in our pixel units; on ring8/grid25 in v2, 0.5 std of a "
        "mode per coordinate); the controls named in the tables (`twice`: eps 0, D updated "
        "twice; `gaussian-*`: random-sign perturbation of the same size; "
        "`first-order-eps0.5`: the second D step on clean reals plus eps_abs * ||grad_x "
        "L_D||_1, AS-GAN's first-order model; `r1`: R1 penalty, one D step; `r1-twice`: R1 "
        "with a second clean D step, compute-matched with AS-GAN; `sn`: spectral norm, which "
        "drops DCGAN D's BatchNorm and is probed in eval mode).",
        f"- **Quality**: Frechet distance (FD), KID (100 subsets of up to 1,000, as "
        "`asgan-probe quality`) and PRDC in the feature space of our digit classifier (not "
        f"Inception: these are not FIDs), {n_quality} samples each against all of mnist10k.",
        "- **Gradients and robustness**: D's logit gradient on 256 reals and 256 of its own "
        "G's fakes; FGSM flip rate of 512 reals at 1/255 and 2/255. Per sample (SPEC 1): a "
        "BatchNorm D is probed with the statistics of one clean reference group (its training "
        "batch) held fixed (`frozen`), a D without BatchNorm in `eval` mode; reals are the "
        "held-out part where the checkpoint records a split, else all of the data (the "
        "shipped runs before the split was introduced trained on all of it).",
    ]


def _v2_state(basis: dict) -> str:
    """"is complete" when every run study v2's plan names is measured here, else "is being
    regenerated" (``basis``: :func:`claims_basis`)."""
    done = all(set(seeds) <= set(basis["tables"].get(g, {}).get(arm, {}))
               for (g, arm), seeds in basis["planned"].items())
    return "is complete: every planned run is trained and measured" if done \
        else "is being regenerated"


def claims_basis(tables: dict, studies: dict[str, str]) -> dict[str, Any]:
    """What the registered claims are judged on: the tables of the groups read from study v2
    (the claims name v2's arms and eps units; a group still read from v1 counts as not
    measured), the manifest entries of exactly the v2 runs measured (for the registration
    rule; a run shipped while the report was measuring is left out) and the seeds v2's plan
    gives each arm (verdicts wait for all of them).

    ``studies``: ``{group: "v1" | "v2"}``, the study each table was collected from.

    Returns ``{"studies", "tables", "entries", "planned" {(group, arm): [seeds]}}``."""
    from trainers.manifest import read_manifest, study_of, study_progress

    entries = read_manifest()
    v2 = {g: tables[g] for g in GROUPS if studies[g] == "v2" and g in tables}
    planned = {(g, arm): p["planned"] for g in GROUPS
               for arm, p in study_progress(g, "v2", entries).items()}
    measured = [e for e in entries.values() if study_of(e) == "v2" and e.get("group") in v2
                and e.get("seed") in v2[e["group"]].get(e.get("arm"), {})]
    return {"studies": studies, "tables": v2, "entries": measured, "planned": planned}


def arm_label(path: str | Path) -> str:
    """A figure label for an AS-GAN checkpoint with its eps in the unit it was trained in:
    "AS-GAN 0.5/255" (images, pixel units), "AS-GAN 0.5 std" (2-D, a mode's std), "AS-GAN
    0.5/255 of the box" (2-D runs from before eps units were recorded)."""
    from trainers.data import MIXTURES, canonical_name, eps_units_of

    meta = sources.load(path)[2]
    eps, units = float(meta["config"]["eps"]), eps_units_of(meta)
    if units["unit"] == "mode-std":
        return f"AS-GAN {eps:g} std"
    mixture = canonical_name(meta["config"]["data"]) in MIXTURES
    box = " of the box" if mixture and not units["recorded"] else ""
    return f"AS-GAN {eps * 255:.3g}/255{box}"


def figure_label(arm: str, path: str | Path) -> str:
    """A figure label for any arm, eps in the unit its checkpoint was trained in: AS-GAN arms
    as :func:`arm_label`, ``gaussian-*`` the same with "gaussian", ``twice`` "twice (eps 0)",
    other arms their name."""
    if arm.startswith("asgan-"):
        return arm_label(path)
    if arm.startswith("gaussian-"):  # the same eps field and unit, a random-sign step
        return arm_label(path).replace("AS-GAN", "gaussian")
    return "twice (eps 0)" if arm == "twice" else arm


def status_lines(groups: Sequence[str], studies: dict[str, str]) -> list[str]:
    """What a notebook reads, from the shipped checkpoints: per group the study it is read
    from (``studies``, fixed by the caller), the nets and iterations, the seeds shipped per
    arm, and how many of v2's planned runs are trained (until all are, numbers are
    interim)."""
    from trainers.manifest import study_progress

    lines = []
    for g in groups:
        by_arm = study.shipped_runs(g, studies[g])
        cfg = sources.load(by_arm["baseline"][min(by_arm["baseline"])])[2]["config"]
        seeds = {a: sorted(s) for a, s in by_arm.items()}
        plan = study_progress(g, "v2")
        lines += [f"{g}: read from study {studies[g]}; {cfg['arch']} width {cfg['width']}, "
                  f"batch {cfg['batch_size']}, {cfg['steps']:,} iterations; seeds per arm: "
                  f"{seeds}",
                  f"  study v2: {sum(len(p['shipped']) for p in plan.values())} of "
                  f"{sum(len(p['planned']) for p in plan.values())} planned runs trained: "
                  + ", ".join(f"{a} {len(p['shipped'])}/{len(p['planned'])}"
                              for a, p in plan.items())]
    return lines


def progress_lines(basis: dict) -> list[str]:
    """One line per group (``basis``: :func:`claims_basis`): which study it is read from and,
    for v2, the runs measured of the plan's, per arm."""
    lines = []
    for g in GROUPS:
        plan = {arm: seeds for (group, arm), seeds in basis["planned"].items() if group == g}
        have = basis["tables"].get(g, {})
        total = sum(len(seeds) for seeds in plan.values())
        if basis["studies"][g] == "v2":
            arms = ", ".join(f"{a} {len(have.get(a, {}))}/{len(seeds)}"
                             for a, seeds in plan.items())
            done = sum(len(have.get(a, {})) for a in plan)
            lines.append(f"- **{g}**: study v2, {done} of {total} planned runs trained and "
                         f"measured ({arms}).")
        else:
            lines.append(f"- **{g}**: the first study (v1: trained before the claims were "
                         "registered, older eps units); v2 has not reached it yet (0 of "
                         f"{total} planned runs measured here), and the group switches to v2 "
                         f"once its baseline and {MAIN} have seed 0. The registered claims on "
                         f"{g} count as not measured until then.")
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
    # which study each group is read from, fixed once: a background sitting may ship the run
    # that switches a group while the report is measuring
    studies = {g: study.study_in_use(g) for g in GROUPS}
    tables = {}
    for group in GROUPS:
        kw = {"mnist10k": {"n_quality": n_quality}, "stacked-mnist": {"n": n_stacked}}.get(
            group, {})
        tables[group] = study.collect(group, progress=lambda s: _log(f"measuring {s}"),
                                      study=studies[group], seed=seed, **kw)
    from probes.study.claims import CLAIMS_FILE, claims_markdown, evaluate_claims, load_claims
    from probes.study.claims import registration as registered

    registered_claims = load_claims()
    judged = claims_basis(tables, studies)
    reg = registered(CLAIMS_FILE, judged["entries"], claims=registered_claims)
    claims = evaluate_claims(judged["tables"], registered_claims, reg, judged["planned"])
    mn = study.shipped_runs("mnist10k", studies["mnist10k"])
    pair = [("baseline", mn["baseline"][0]), (arm_label(mn[MAIN][0]), mn[MAIN][0])]
    _log("figures ...")
    fig_gradient_maps(pair, out / "fig1-maps-real.png", population="real")
    fig_gradient_maps(pair, out / "fig1-maps-fake.png", population="fake")
    fig_histograms(pair, out / "fig5a-hist-raw.png", out / "fig5a-hist-rms.png")
    evos = evolutions([study.run_dir(p) for _, p in pair], n=64, seed=seed)
    plot_evolution(evos, out / "fig5b-evolution.png")
    fig_attack(pair, out / "attack-curves.png")
    r8, g25 = (study.shipped_runs(g, studies[g]) for g in ("ring8", "grid25"))
    fig_coverage([("baseline", r8["baseline"][0]), (arm_label(r8[MAIN][0]), r8[MAIN][0]),
                  ("baseline", g25["baseline"][0]), (arm_label(g25[MAIN][0]), g25[MAIN][0])],
                 out / "coverage-2d.png")
    grid_unit = "mode-std" if studies["grid25"] == "v2" else "box"
    plot_eps_sweep([("modes", "grid25 modes captured (of 25)", tables["grid25"], grid_unit),
                    ("high_quality_pct", "grid25 high-quality samples (%)", tables["grid25"],
                     grid_unit),
                    ("fd", "mnist10k Frechet distance (classifier features)",
                     tables["mnist10k"], "pixel")], out / "eps-sweep.png",
                   title="Fig. 3 analogue: AS-GAN eps sweep vs baseline and gaussian ablation")
    plot_arms(tables["mnist10k"], [("fd", "Frechet distance (lower better)"),
                                   ("hoyer_real", "Hoyer sparsity of grad on reals"),
                                   ("fg_share_real", "grad L1 share on strokes"),
                                   ("flip_real_1", "FGSM flip rate, eps 1/255")],
              out / "arms-mnist10k.png", order=MNIST_ORDER)
    fig_samples([(a, mn[a][0]) for a in MNIST_ORDER if 0 in mn.get(a, {})], out / "samples.png")
    plot_curves([read_run(study.run_dir(p)) for _, p in pair], out / "training-curves.png")

    def ours(group):
        def mean(metric, arm):
            return round(study.arm_summary(tables[group], metric)[arm]["mean"], 2)

        return [{"label": f"ours: {arm} ({len(tables[group][arm])} seeds)",
                 "modes_captured": mean("modes", arm),
                 "high_quality_pct": mean("high_quality_pct", arm),
                 "reverse_kl": mean("reverse_kl", arm)} for arm in tables[group]]

    lines = [
        "# asgan-probe study report", "",
        "Every number below is computed by `asgan-probe report` from the checkpoints shipped "
        "in `checkpoints/shipped/` (made by `asgan-study run studies/v2.toml`, commands in "
        "`checkpoints/MANIFEST.json`), with fixed seeds: re-running gives the same numbers. "
        "Each number is the one the matching `asgan-probe` verb reports for that checkpoint "
        "with the same settings (tests/test_report_numbers.py).", "",
        "## Protocol", "",
        *protocol_lines(tables, n_quality=n_quality, basis=judged), "",
        "## Claims", "",
        "A claim that does not hold here is a finding about this scale, not a verdict on the "
        "paper.", "",
        claims_markdown(judged["tables"], registered_claims, reg, judged["planned"]), "",
        modes_line(tables), "",
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
        *[f"- {g}: read from study {judged['studies'][g]}; "
          + ("eps in units of a mode's std per coordinate." if judged["studies"][g] == "v2"
             else "eps in the old 2-D unit, a fraction of the plotting box (v2 replaces "
             "it with a mode's std), so its eps values do not compare with v2's.")
          for g in ("ring8", "grid25")], "",
        *arms_markdown(tables["ring8"], ["modes", "high_quality_pct", "reverse_kl"],
                       ("baseline", "twice", MAIN, "asgan-eps2")), "",
        side_by_side("ring8", ours("ring8")), "",
        *arms_markdown(tables["grid25"], ["modes", "high_quality_pct", "reverse_kl"],
                       GRID_ORDER), "",
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

    atomic_write_bytes(out / "study.json", json.dumps(
        {"tables": tables, "studies": judged["studies"], "claims": claims,
         "registration": reg}, indent=1,
        default=float).encode())
