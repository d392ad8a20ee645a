"""``asgan-probe report`` without run directories: the study report from the shipped
checkpoints. Regenerates every figure and ``report.md`` with the claims table.

What it shows comes from the study's plan file (:func:`probes.study.arms.shipped_plan`, or
any plan with a ``[report]`` table: :func:`report_spec`): groups and arms in the plan's order,
which arms the figures draw, the claims and the exact seeds each is judged on; nothing about
a study lives in this module.

The figure functions here are the ones the notebooks call, so a notebook and the report draw
the same picture from the same seeds.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes.io import sources
from probes.io.edge import grid25_modes, ring8_modes
from probes.study import arms as study

if TYPE_CHECKING:
    from probes.study.plan import Plan

ATTACK_EPS = (0, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255)
MIXTURE_MODES = {"ring8": ring8_modes, "grid25": grid25_modes}  # the modes of each 2-D dataset


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
    """Paper Fig. 1: each D's input-gradient map on the same reals, or on samples of its own
    G (G in eval mode), each map the image's own logit gradient (default probe mode: ``frozen``
    for a BatchNorm D). On fakes this is not the gradient a training step gives G, which is
    the ``batch``-mode gradient of the batch mean (BatchNorm's cross-sample terms included)."""
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


def report_spec(plan: Plan) -> dict[str, Any]:
    """The ``[report]`` table of ``plan``, checked against its groups and arms:

    - ``baseline``, ``main``: the reference arm of every figure and the arm drawn beside it;
      both must be arms of every figure group;
    - ``image``: the group (measure ``image``) of the gradient, attack, evolution and sample
      figures and of the per-arm figure; ``mixtures``: the 2-D groups of the coverage panels;
      ``stacked``: the stacked-MNIST group;
    - ``sweep``: the 2-D group whose eps sweep is drawn beside the image group's FD;
      ``curve``: arms on the sweep's curve, ``ablation``: arms drawn as markers; each at the
      eps its options train with, in its data's unit (images: x 1/255 pixel units; 2-D: a
      mode's std);
    - ``which_runs``, ``arms``: prose of the protocol's "Which runs" and "Arms" lines.

    Returns the table with ``eps`` ``{group: {arm: (eps, unit)}}`` of the curve and ablation
    arms added (unit a key of :data:`probes.viz.study.EPS_UNITS`).

    Raises:
        asgan_base.errors.UserError: ``<plan>:<line>: what is wrong``.
    """
    from asgan_base.errors import UserError

    spec = dict(plan.data.get("report") or {})
    keys = ("baseline", "main", "image", "mixtures", "stacked", "sweep", "curve", "ablation",
            "which_runs", "arms")

    def fail(key: str, msg: str) -> UserError:
        return UserError(f"{plan.path}:{plan.line_of('report', key)}: [report] {msg}")

    if not spec:
        raise UserError(f"{plan.path}: no [report] table: the full study report needs one "
                        "(asgan-study report writes the plain report without it)")
    for k in spec:
        if k not in keys:
            raise fail(k, f"unknown key {k!r}; known: {', '.join(keys)}")
    for k in keys:
        if k not in spec:
            raise fail(k, f"needs {k!r}")
    kinds = {"image": "image", "stacked": "stacked", "sweep": "mixture"}
    for k, kind in kinds.items():
        g = spec[k]
        if g not in plan.groups or plan.groups[g]["measure"] != kind:
            raise fail(k, f"{k} = {g!r}: not a group of the plan measured as {kind!r}")
    for g in spec["mixtures"]:
        if g not in plan.groups or plan.groups[g]["measure"] != "mixture":
            raise fail("mixtures", f"{g!r}: not a group of the plan measured as 'mixture'")
    for g in (spec["image"], *spec["mixtures"], spec["stacked"]):
        for k in ("baseline", "main"):
            if spec[k] not in plan.arms(g):
                raise fail(k, f"{k} = {spec[k]!r} is not an arm of group {g!r}")
    return dict(spec, eps=_sweep_eps(plan, spec))


def _sweep_eps(plan: Plan, spec: dict) -> dict[str, dict[str, tuple[float, str]]]:
    """``{group: {arm: (eps, unit)}}`` of the ``curve`` and ``ablation`` arms of
    :func:`report_spec` in the sweep and image groups, as their options train them."""
    from probes.io.edge import resolve_eps_unit
    from probes.study.plan import Run

    eps: dict[str, dict[str, tuple[float, str]]] = {}
    for g in (spec["sweep"], spec["image"]):
        for k in ("curve", "ablation"):
            for arm in spec[k]:
                if arm not in plan.arms(g):
                    continue
                cfg = plan.config(Run("", g, arm, 0))
                unit = resolve_eps_unit(cfg.data, cfg.eps_unit)
                eps.setdefault(g, {})[arm] = (cfg.eps * 255 if unit == "pixel" else cfg.eps,
                                              unit)
    return eps


def protocol_lines(tables: dict, *, n_quality: int, basis: dict) -> list[str]:
    """The report's protocol, read from the shipped checkpoints (nets, iterations, seeds), so
    it stays true when the study is regenerated, and per group how much of the plan is trained
    (``basis``: :func:`claims_basis`)."""
    from probes.io.sources import load

    plan = basis["plan"]
    spec = report_spec(plan)

    def facts(group: str) -> str:
        runs = study.shipped_runs(group, plan)
        _, _, meta = load(next(iter(runs[spec["baseline"]].values())))
        cfg = meta["config"]
        seeds = sorted({len(s) for s in tables[group].values()})
        return (f"{group}: {cfg['arch']} width {cfg.get('width')}, batch {cfg['batch_size']}, "
                f"{cfg['steps']:,} iterations, {'/'.join(map(str, seeds))} seeds per arm")

    return [
        "- **Scale**: CPU scale, not the paper's. " + "; ".join(
            facts(g) for g in plan.groups if g in tables) + ".",
        f"- **Which runs**: study {plan.name} {_plan_state(basis)} ({spec['which_runs']}; "
        f"plan in `{plan.ship}/PLAN.json`, `checkpoints/README.md`).",
        *progress_lines(basis),
        "- **Pairing**: arms share the seed, hence G/D initialisation, data order and latents; "
        "every comparison is a per-seed difference (tests and their limits below the claims "
        "tables).",
        f"- **Arms**: {spec['arms']}.",
        f"- **Quality**: Frechet distance (FD), KID (100 subsets of up to 1,000, as "
        "`asgan-probe quality`) and PRDC in the feature space of our digit classifier (not "
        f"Inception: these are not FIDs), {n_quality} samples each against all of mnist10k.",
        "- **Gradients and robustness**: D's logit gradient on 256 reals and 256 of its own "
        "G's fakes (G in eval mode); FGSM flip rate of 512 reals at 1/255 and 2/255. Per "
        "sample (SPEC 1): a BatchNorm D is probed with the statistics of one clean reference "
        "group (its training batch) held fixed (`frozen`), a D without BatchNorm in `eval` "
        "mode; reals are the held-out part where the checkpoint records a split, else all of "
        "the data (the shipped runs before the split was introduced trained on all of it). On "
        "fakes this is each sample's own gradient, not the one a training step gives G (the "
        "batch mean's gradient in `batch` mode, with BatchNorm's cross-sample terms and G in "
        "train mode; `docs/gradients.md`).",
    ]


def _plan_state(basis: dict) -> str:
    """"is complete" when every run the plan names is measured here, else "is being
    regenerated" (``basis``: :func:`claims_basis`)."""
    done = all(set(seeds) <= set(basis["tables"].get(g, {}).get(arm, {}))
               for (g, arm), seeds in basis["planned"].items())
    return "is complete: every planned run is trained and measured" if done \
        else "is being regenerated"


def claims_basis(tables: dict, plan: Plan) -> dict[str, Any]:
    """What the registered claims are judged on: the tables of the plan's groups, the manifest
    entries of exactly the runs measured (every shipped file of each: the registration rule
    checks each; a run shipped while the report was measuring is left out), the seeds the
    plan gives each arm, and the plan's claims, each with the exact seed list it is judged on
    (:meth:`probes.study.plan.Plan.claims`).

    Returns ``{"plan", "tables", "entries", "planned" {(group, arm): [seeds]}, "claims"}``."""
    from asgan_base.manifest import read_manifest
    from probes.study.engine import ship_rels

    entries = read_manifest(plan.manifest)
    judged = {g: tables[g] for g in plan.groups if g in tables}
    measured = [entries[rel] for r in plan.runs()
                if r.seed in judged.get(r.group, {}).get(r.arm, {})
                for rel in ship_rels(plan, r) if rel in entries]
    return {"plan": plan, "tables": judged, "entries": measured,
            "planned": plan.planned_seeds(), "claims": plan.claims()}


def arm_label(path: str | Path) -> str:
    """A figure label for an AS-GAN checkpoint with its eps in the unit it was trained in:
    "AS-GAN 0.5/255" (images, pixel units), "AS-GAN 0.5 std" (2-D, a mode's std), "AS-GAN
    0.5/255 of the box" (2-D runs from before eps units were recorded)."""
    from asgan_base.eps import of_meta

    meta = sources.load(path)[2]
    return f"AS-GAN {of_meta(meta).label(float(meta['config']['eps']), digits=3)}"


def figure_label(arm: str, path: str | Path) -> str:
    """A figure label for any arm, from its checkpoint's training options: a perturbed second
    D step (``trainer asgan``) as :func:`arm_label`, "gaussian" for a random-sign one,
    "twice (eps 0)" for none at eps 0 without other terms; other arms their name."""
    cfg = sources.load(path)[2]["config"]
    pert, extra = cfg.get("perturbation", "fgsm"), cfg.get("r1_gamma") or 0
    if cfg.get("trainer") != "asgan" or extra:
        return arm
    if pert == "none":
        return "twice (eps 0)" if float(cfg["eps"]) == 0 else arm
    if pert == "gaussian":  # the same eps field and unit, a random-sign step
        return arm_label(path).replace("AS-GAN", "gaussian")
    return arm_label(path) if pert == "fgsm" else arm


def status_lines(groups: Sequence[str], plan: Plan) -> list[str]:
    """What a notebook reads, from the shipped checkpoints of ``plan``: per group the nets
    and iterations, the seeds shipped per arm, and how many of the plan's runs are trained
    (until all are, numbers are interim)."""
    lines = []
    for g in groups:
        by_arm = study.shipped_runs(g, plan)
        first = next(iter(by_arm.values()))
        cfg = sources.load(first[min(first)])[2]["config"]
        seeds = {a: sorted(s) for a, s in by_arm.items()}
        progress = study.plan_progress(plan, g)
        lines += [f"{g}: read from study {plan.name}; {cfg['arch']} width {cfg['width']}, "
                  f"batch {cfg['batch_size']}, {cfg['steps']:,} iterations; seeds per arm: "
                  f"{seeds}",
                  f"  study {plan.name}: {sum(len(p['shipped']) for p in progress.values())} "
                  f"of {sum(len(p['planned']) for p in progress.values())} planned runs "
                  "trained: " + ", ".join(f"{a} {len(p['shipped'])}/{len(p['planned'])}"
                                          for a, p in sorted(progress.items()))]
    return lines


def progress_lines(basis: dict) -> list[str]:
    """One line per group of the plan (``basis``: :func:`claims_basis`): the runs measured of
    the plan's, per arm (arms sorted by name)."""
    plan, lines = basis["plan"], []
    for g in plan.groups:
        planned = sorted((arm, seeds) for (group, arm), seeds in basis["planned"].items()
                         if group == g)
        have = basis["tables"].get(g, {})
        total = sum(len(seeds) for _, seeds in planned)
        arms = ", ".join(f"{a} {len(have.get(a, {}))}/{len(seeds)}" for a, seeds in planned)
        done = sum(len(have.get(a, {})) for a, _ in planned)
        lines.append(f"- **{g}**: study {plan.name}, {done} of {total} planned runs trained "
                     f"and measured ({arms}).")
    return lines


def _classifier_accuracy() -> float:
    from probes.adapters.classifier import load_classifier

    return float(load_classifier()[1]["heldout_accuracy"])


def write_study_report(out: str | Path, *, plan: Plan | None = None, n_quality: int = 2000,
                       n_stacked: int = 26_000, n_mixture: int = 2500, seed: int = 0,
                       runs: list | None = None, figures: bool = True) -> Path:
    """Measure every shipped run of ``plan`` (default :func:`probes.study.arms.shipped_plan`;
    :func:`probes.study.engine.measure`, cached in ``out/measures.json``), then regenerate
    every study figure and ``report.md`` into ``out``; returns the md path.

    ``runs``: measure and report only these runs of the plan (default all); ``figures``:
    False writes ``report.md`` and ``study.json`` only (the text and numbers). The files are
    built whole (:func:`asgan_base.lock.build_into`): two reports into one folder at once
    leave one of them, complete; other files in ``out`` are kept."""
    from asgan_base.lock import build_into
    from probes.study.engine import measure

    plan = study.shipped_plan() if plan is None else plan
    report_spec(plan)  # a bad [report] table fails before anything is measured
    raw = measure(plan, out, n_quality=n_quality, n_stacked=n_stacked, n_mixture=n_mixture,
                  seed=seed, runs=runs,
                  say=lambda s: _log(f"measuring {s.removeprefix('measuring ')}"))
    # groups in plan order, arms and seeds sorted (the order every table lists them in)
    tables = {g: {a: dict(sorted(raw[g][a].items())) for a in sorted(raw[g])}
              for g in plan.groups if g in raw}
    with build_into(out, last=["report.md"]) as tmp:
        _build_study_report(tmp, plan, tables, n_quality=n_quality, n_stacked=n_stacked,
                            seed=seed, figures=figures)
    return Path(out) / "report.md"


def _build_study_report(out: Path, plan: Plan, tables: dict, *, n_quality: int,
                        n_stacked: int, seed: int, figures: bool) -> None:
    import json

    from asgan_base.files import atomic_write_bytes
    from probes.measures.references import side_by_side
    from probes.study.claims import evaluate_claims
    from probes.study.engine import registration_state

    t0 = time.time()
    spec = report_spec(plan)
    judged = claims_basis(tables, plan)
    reg = registration_state(plan, judged["entries"])
    # each claim judged on exactly its registered seeds (``seeds``), never on others present
    claims = evaluate_claims(judged["tables"], judged["claims"], reg, None)
    if figures:
        _figures(out, plan, spec, tables, seed=seed)
    lines = _report_head(plan, spec, tables, judged, reg, n_quality=n_quality)
    for g in [g for g in spec["mixtures"] if g in tables]:
        lines += [*arms_markdown(tables[g], ["modes", "high_quality_pct", "reverse_kl"],
                                 list(plan.arms(g))), "",
                  side_by_side(_data_of(plan, g), _ours(tables, g)), ""]
    lines += _report_tail(plan, spec, tables, n_stacked=n_stacked)
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
    _log(f"report written in {time.time() - t0:.0f} s")
    atomic_write_bytes(out / "study.json", json.dumps(
        {"tables": tables, "study": plan.name, "claims": claims, "registration": reg},
        indent=1, default=float).encode())


def _ours(tables: dict, group: str) -> list[dict]:
    """Our arms' mean coverage numbers in the rows of
    :func:`probes.measures.references.side_by_side`."""
    def mean(metric, arm):
        return round(study.arm_summary(tables[group], metric)[arm]["mean"], 2)

    return [{"label": f"ours: {arm} ({len(tables[group][arm])} seeds)",
             "modes_captured": mean("modes", arm),
             "high_quality_pct": mean("high_quality_pct", arm),
             "reverse_kl": mean("reverse_kl", arm)} for arm in tables[group]]


def _report_head(plan: Plan, spec: dict, tables: dict, judged: dict, reg: dict, *,
                 n_quality: int) -> list[str]:
    """The study report from its title to the mode-coverage heading."""
    from probes.study.claims import claims_markdown

    img = spec["image"]
    return [
        "# asgan-probe study report", "",
        "Every number below is computed by `asgan-probe report` from the checkpoints shipped "
        f"in `checkpoints/shipped/` (made by `asgan-study run {_shown_plan(plan)}`, commands "
        "in `checkpoints/MANIFEST.json`), with fixed seeds: re-running gives the same numbers. "
        "Each number is the one the matching `asgan-probe` verb reports for that checkpoint "
        "with the same settings (tests/test_report_numbers.py).", "",
        "## Protocol", "",
        *protocol_lines(tables, n_quality=n_quality, basis=judged), "",
        "## Claims", "",
        "A claim that does not hold here is a finding about this scale, not a verdict on the "
        "paper.", "",
        claims_markdown(judged["tables"], judged["claims"], reg, None, study.MEASURED_AS), "",
        modes_line(tables), "",
        f"## {img} arms (mean ± 95% CI half-width over seeds)", "",
        *arms_markdown(tables[img], ["fd", "kid", "precision", "recall",
                                     "hoyer_real", "fg_share_real", "hf_share_real",
                                     "hoyer_fake", "flip_real_1", "flip_real_2"],
                       list(plan.arms(img))), "",
        f"![arms](arms-{img}.png)", "", "![samples](samples.png)", "",
        "## Gradients (paper Fig. 1, 5a, 5b; seed 0)", "",
        "![maps on reals](fig1-maps-real.png)", "", "![maps on fakes](fig1-maps-fake.png)", "",
        "![histogram](fig5a-hist-raw.png)", "", "![histogram rms](fig5a-hist-rms.png)", "",
        "![evolution](fig5b-evolution.png)", "",
        "## Robustness", "", "![attack](attack-curves.png)", "",
        "## Mode coverage", "",
        *[f"- {g}: read from study {plan.name}; eps in units of a mode's std per coordinate."
          for g in spec["mixtures"]], ""]


def _report_tail(plan: Plan, spec: dict, tables: dict, *, n_stacked: int) -> list[str]:
    """The study report from the 2-D coverage figure to the end."""
    return [
        "![coverage](coverage-2d.png)", "",
        f"Stacked MNIST (1000 modes, {n_stacked} samples per checkpoint, each channel read by our "
        f"digit classifier, held-out accuracy {_classifier_accuracy():.1%}). The data is "
        "built from the 10k-digit subset, so these counts are indicative and not comparable "
        "with the published ones (VEEGAN Table 2: DCGAN 99 modes; PacGAN Table 2: DCGAN "
        "78.9 modes, PacDCGAN2 1000).", "",
        *arms_markdown(tables.get(spec["stacked"], {}), ["modes", "kl"],
                       list(plan.arms(spec["stacked"]))), "",
        "## eps sweep (paper Fig. 3 analogue)", "", "![eps sweep](eps-sweep.png)", "",
        "## Training curves (seed 0)", "", "![curves](training-curves.png)", ""]


def _data_of(plan: Plan, group: str) -> str:
    """The dataset ``group``'s runs train on (its preset's, or its ``data`` option)."""
    from probes.io.edge import canonical_name
    from probes.study.plan import Run

    run = next(r for r in plan.runs() if r.group == group)
    return canonical_name(plan.config(Run("", group, run.arm, run.seed)).data)


def _shown_plan(plan: Plan) -> str:
    """The plan file as the report names it: relative to the study's root when inside it."""
    try:
        return plan.path.relative_to(plan.root).as_posix()
    except ValueError:
        return plan.path.name


def _figures(out: Path, plan: Plan, spec: dict, tables: dict, *, seed: int) -> None:
    """Every figure of the report, drawn from seed 0 of the ``[report]`` arms
    (:func:`report_spec`)."""
    from probes.measures.evolution import evolutions
    from probes.viz.gradients import plot_evolution
    from probes.viz.runs import plot_curves, read_run
    from probes.viz.study import plot_arms, plot_eps_sweep

    base, main, img = spec["baseline"], spec["main"], spec["image"]
    mn = study.shipped_runs(img, plan)
    pair = [(base, mn[base][0]), (arm_label(mn[main][0]), mn[main][0])]
    _log("figures ...")
    fig_gradient_maps(pair, out / "fig1-maps-real.png", population="real")
    fig_gradient_maps(pair, out / "fig1-maps-fake.png", population="fake")
    fig_histograms(pair, out / "fig5a-hist-raw.png", out / "fig5a-hist-rms.png")
    evos = evolutions([study.run_dir(p) for _, p in pair], n=64, seed=seed)
    plot_evolution(evos, out / "fig5b-evolution.png")
    fig_attack(pair, out / "attack-curves.png")
    panels = []
    for g in spec["mixtures"]:
        runs = study.shipped_runs(g, plan)
        panels += [(base, runs[base][0]), (arm_label(runs[main][0]), runs[main][0])]
    fig_coverage(panels, out / "coverage-2d.png")
    sw = spec["sweep"]
    n_modes = len(MIXTURE_MODES[_data_of(plan, sw)]())
    plot_eps_sweep([("modes", f"{sw} modes captured (of {n_modes})", tables[sw],
                     spec["eps"][sw]),
                    ("high_quality_pct", f"{sw} high-quality samples (%)", tables[sw],
                     spec["eps"][sw]),
                    ("fd", f"{img} Frechet distance (classifier features)", tables[img],
                     spec["eps"].get(img, {}))], out / "eps-sweep.png",
                   title="Fig. 3 analogue: AS-GAN eps sweep vs baseline and gaussian ablation",
                   baseline=base, ablation=spec["ablation"])
    plot_arms(tables[img], [("fd", "Frechet distance (lower better)"),
                            ("hoyer_real", "Hoyer sparsity of grad on reals"),
                            ("fg_share_real", "grad L1 share on strokes"),
                            ("flip_real_1", "FGSM flip rate, eps 1/255")],
              out / f"arms-{img}.png", order=list(plan.arms(img)))
    fig_samples([(a, mn[a][0]) for a in plan.arms(img) if 0 in mn.get(a, {})],
                out / "samples.png")
    plot_curves([read_run(study.run_dir(p)) for _, p in pair], out / "training-curves.png")


# ---- study v3: a plan with an [analysis] table (probes.study.analysis)


def analysis_inputs(plan: Plan) -> dict[str, Any]:
    """What the v3 report reads, from the shipped results files (SHA-256 checked):
    ``tables`` ``{group: {arm: {seed: metrics}}}``: derived metrics of the measured image
    groups, the final step's numbers of the measured mixture groups
    (:func:`probes.study.analysis.final_numbers`); ``curves`` ``{group: {arm: {seed: {step:
    FD or None}}}}`` of the image groups; ``entries`` (the manifest entries of those results
    files, for the registration check)."""
    from asgan_base.manifest import read_manifest
    from probes.study.analysis import _curve, final_numbers, run_metrics
    from probes.study.engine import read_results, results_rel

    manifest = read_manifest(plan.manifest)
    tables: dict = {}
    curves: dict = {}
    entries = []
    for r in plan.runs():
        g = plan.groups[r.group]
        res = read_results(plan, r) if g["measure"] in ("image", "mixture") \
            and "measure_every" in g else None
        if res is None:
            continue
        entries.append(manifest[results_rel(plan, r)])
        row = tables.setdefault(r.group, {}).setdefault(r.arm, {})
        if g["measure"] == "mixture":
            row[r.seed] = final_numbers(res)
            continue
        row[r.seed] = run_metrics(res, plan.data["analysis"], steps=plan.steps(r),
                                  every=plan.measure_every(r))
        curves.setdefault(r.group, {}).setdefault(r.arm, {})[r.seed] = _curve(
            res["numbers"], "fd")
    return {"tables": tables, "curves": curves, "entries": entries}


def _claim_text(c: dict) -> str:
    where = ", ".join(c["groups"]) if c.get("groups") else c["group"]
    expect = {"lower": "lower", "higher": "higher"}.get(c["expect"], "within +-"
                                                        f"{c.get('margin')}")
    return f"{where}: {c['metric']} of {c['a']} vs {c['b']} ({expect})"


def _ci_cell(r: dict) -> str:
    if not r["n"]:
        return "not measured"
    return f"{_fmt(r['diff'])} [{_fmt(r['lo'])}, {_fmt(r['hi'])}]"


RULES = {"two-sided": "one two-sided Holm family over the primary claims (a claim is held "
                      "when its Holm p <= alpha and its estimate has the registered sign, "
                      "opposite when it has the other)",
         "one-sided": "the default rule: a one-sided Holm family in the registered direction "
                      "(held), and the same family in the reverse direction (opposite)"}


def _claim_row(r: dict, primary: bool) -> str:
    cells = (f"| {r['id']} | {_claim_text(r)} | {r['test']} | {r['n']} of {r['n_planned']} | "
             f"{_fmt(r['mean_a'])} | {_fmt(r['mean_b'])} | {_ci_cell(r)} | {_fmt(r['p'], 2)} |")
    return cells + (f" {_fmt(r['p_holm'], 2)} | **{r['verdict']}** |" if primary else "")


def claims_tables_v3(ev: dict, claims: dict, reg: dict) -> list[str]:
    """The primary table (first), then the secondary and exploratory ones, markdown lines."""
    cols = "| id | claim | test | n | mean A | mean B | A - B [95% CI] | p |"
    lines = [f"Multiplicity: {RULES[claims.get('family', 'one-sided')]}; alpha "
             f"{claims['alpha']:g}. p: two-sided exact (sign-flip, McNemar), or the TOST p "
             "of a registered equivalence margin."]
    if not reg.get("primary_allowed"):
        lines += ["", f"**No claim is judged**: {reg.get('reason')}."]
    lines += ["", cols + " Holm p | verdict |", "|---" * 10 + "|"]
    lines += [_claim_row(r, True) for r in ev["primary"]]
    for kind in ("secondary", "exploratory"):
        if ev[kind]:
            lines += ["", f"{kind.capitalize()} claims (registered; numbers and unadjusted "
                      "p only, no verdict):", "", cols, "|---" * 8 + "|"]
            lines += [_claim_row(r, False) for r in ev[kind]]
    return lines


def collapse_lines(tables: dict, groups: Sequence[str], baseline: str) -> list[str]:
    """Per setting and arm: collapsed runs of trained, the rate's exact (Clopper-Pearson)
    95% interval, and against ``baseline`` on the seeds both have: the discordant pairs and
    the exact McNemar p (two-sided, unadjusted: descriptive)."""
    from probes.core.stats import clopper_pearson, mcnemar_exact

    lines = ["| setting | arm | collapsed | rate [95% exact CI] | vs baseline: A only / "
             "baseline only | McNemar p |", "|---|---|---|---|---|---|"]
    for g in groups:
        for arm, by_seed in tables.get(g, {}).items():
            k, n = int(sum(m["collapsed"] for m in by_seed.values())), len(by_seed)
            lo, hi = clopper_pearson(k, n)
            cells = "– | –"
            base = tables[g].get(baseline, {})
            both = sorted(set(by_seed) & set(base))
            if arm != baseline and both:
                m = mcnemar_exact([by_seed[s]["collapsed"] > 0.5 for s in both],
                                  [base[s]["collapsed"] > 0.5 for s in both])
                cells = f"{m['n10']} / {m['n01']} ({len(both)} pairs) | {_fmt(m['p'], 2)}"
            lines.append(f"| {g} | {arm} | {k} of {n} | {_fmt(k / n, 2)} [{_fmt(lo, 2)}, "
                         f"{_fmt(hi, 2)}] | {cells} |")
    return lines


def write_analysis_report(out: str | Path, plan: Plan, *, seed: int = 0) -> Path:
    """Study v3's report of ``plan`` (an ``[analysis]`` plan): ``out/report.md`` (the primary
    claims table first, the collapse table, figures with captions naming their seeds and
    samples, the secondary and exploratory claims) and ``out/claims.json``."""
    import json

    from asgan_base.files import atomic_write_bytes
    from probes.study.analysis import evaluate
    from probes.study.engine import registration_state

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inp = analysis_inputs(plan)
    claims = plan.claims()
    reg = registration_state(plan, inp["entries"])
    ev = evaluate(inp["tables"], claims, plan.data["analysis"], reg)
    spec = analysis_spec(plan)
    base = spec.get("baseline", "baseline")
    lines = [f"# {plan.name}: study report", "",
             f"Plan `{_shown_plan(plan)}`; every number is computed by `asgan-study report` "
             f"from the shipped results files in `{plan.ship}` (probes/study/analysis.py "
             "defines each derived metric).", "", "## Primary claims", "",
             *claims_tables_v3(ev, claims, reg), ""]
    lines += _figure_sections(out, plan, inp, ev, spec, base, seed=seed)
    atomic_write_bytes(out / "claims.json", json.dumps(dict(ev, registration=reg), indent=1,
                                                       default=float).encode())
    atomic_write_bytes(out / "report.md", ("\n".join(lines) + "\n").encode())
    return out / "report.md"


ANALYSIS_REPORT_KEYS = ("baseline", "main", "curves", "collapse", "samples", "fidelity")


def analysis_spec(plan: Plan) -> dict[str, Any]:
    """The ``[report]`` table of an ``[analysis]`` plan (:mod:`probes.study.plan`), checked:
    known keys, ``curves`` / ``collapse`` lists of groups, ``samples`` a group.

    Raises:
        asgan_base.errors.UserError: ``<plan>:<line>: [report] what is wrong``.
    """
    from asgan_base.errors import UserError

    spec = dict(plan.data.get("report") or {})
    for k, v in spec.items():
        where = f"{plan.path}:{plan.line_of('report', k)}: [report]"
        if k not in ANALYSIS_REPORT_KEYS:
            raise UserError(f"{where} unknown key {k!r}; known: "
                            f"{', '.join(ANALYSIS_REPORT_KEYS)}")
        if k == "fidelity":
            if not (isinstance(v, str) and v.endswith(".json")):
                raise UserError(f"{where} fidelity = {v!r}: name a .json file of "
                                "scripts/fidelity_v2.py, relative to the study's root")
            continue
        groups = v if k in ("curves", "collapse") else [v] if k == "samples" else []
        if not isinstance(groups, list) or any(g not in plan.groups for g in groups):
            raise UserError(f"{where} {k} = {v!r}: name groups of the plan "
                            f"({', '.join(plan.groups)})")
    return spec


def _seeds_text(seeds: Sequence[int]) -> str:
    s = sorted(seeds)
    if s and s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"seeds {s[0]}-{s[-1]}"
    return "seeds " + ", ".join(map(str, s))


def _figure_sections(out: Path, plan: Plan, inp: dict, ev: dict, spec: dict, base: str, *,
                     seed: int) -> list[str]:
    """The collapse table, the FD curves, one figure per primary claim, the sample grid."""
    from probes.viz.study import plot_fd_curves

    tables, curves = inp["tables"], inp["curves"]
    lines = ["## Collapses per setting", "", *collapse_lines(
        tables, spec.get("collapse", list(tables)), base), ""]
    shown = {g: curves[g] for g in spec.get("curves", list(curves)) if g in curves}
    if shown:
        arms = [a for g in shown for a in plan.arms(g)]
        plot_fd_curves(shown, out / "fd_curves.png", baseline=base,
                       arms=list(dict.fromkeys(arms)))
        seeds = "; ".join(f"{g} {a}: {_seeds_text(by)}" for g in shown
                          for a, by in shown[g].items())
        lines += ["## FD against iteration", "", "![FD against iteration](fd_curves.png)", "",
                  "*FD (2,000 fakes of the raw snapshot against 2,000 held-out reals, seed 0, "
                  "every measured snapshot) against iteration; thin lines: single runs, bold: "
                  "median over the runs with a number at that step, a cross where a run stopped "
                  "(non-finite); bottom: paired difference to the baseline, mean and 95% t "
                  "band over the seeds both arms have a number for at that step. Runs shown: "
                  f"{seeds}.*", ""]
    lines += _claim_figures(out, plan, inp, ev)
    if spec.get("fidelity"):
        lines += fidelity_file_lines(plan, spec["fidelity"], base)
    return lines + _samples_section(out, plan, spec, seed=seed)


def fidelity_file_lines(plan: Plan, rel: str, base: str) -> list[str]:
    """A descriptive table of a gradient-fidelity file (``scripts/fidelity_v2.py``: ``runs``
    ``{"<mixture>/<arm>/seed<k>": {fidelity_cos, fidelity_noise}}``), SHA-256 checked: per
    mixture, metric and arm the mean over seeds; then seed-paired differences (mean, 95%
    t-interval, exact two-sided sign-flip p, unadjusted) of every arm against ``base`` and of
    the file's last arm against the others; "not measured yet" while it is not shipped."""
    import json

    import numpy as np

    from asgan_base.manifest import read_manifest
    from probes.study.analysis import claim_numbers
    from probes.study.engine import _sha_ok

    head = ["## Gradient fidelity of the shipped study's 2-D checkpoints (descriptive)", ""]
    if not _sha_ok(plan.root, rel, read_manifest(plan.manifest)):
        return head + [f"Not measured yet (`{rel}`: `scripts/fidelity_v2.py` writes it).", ""]
    table: dict = {}
    for name, row in json.loads((plan.root / rel).read_text())["runs"].items():
        mix, arm, seed = name.rsplit("/", 2)
        table.setdefault(mix, {}).setdefault(arm, {})[int(seed[4:])] = row
    lines = head + ["| mixture | metric | arm (seeds): mean | A - B | diff [95% CI] | p |",
                    "|---|---|---|---|---|---|"]
    for mix, arms in table.items():
        names, last = list(arms), list(arms)[-1]
        pairs = [(a, base) for a in names if a != base and base in arms] + \
            [(last, b) for b in names if b not in (base, last)]
        for metric in ("fidelity_cos", "fidelity_noise"):
            vals = {a: {s: r[metric] for s, r in arms[a].items()} for a in names}
            means = "; ".join(f"{a} ({len(v)}): {_fmt(float(np.mean(list(v.values()))))}"
                              for a, v in vals.items())
            for i, (a, b) in enumerate(pairs):
                c = claim_numbers(vals[a], vals[b], {"metric": metric, "expect": "higher"})
                lines.append(f"| {mix if i == 0 else ''} | {metric if i == 0 else ''} | "
                             f"{means if i == 0 else ''} | {a} - {b} | {_ci_cell(c)} | "
                             f"{_fmt(c['p'], 2)} |")
    return lines + ["", f"*`asgan-probe fidelity` (defaults, probe seed 0) on each final "
                    f"snapshot (`{rel}`); differences are seed-paired. Registered with the "
                    "claims as descriptive: no verdict, p unadjusted.*", ""]


def _claim_figures(out: Path, plan: Plan, inp: dict, ev: dict) -> list[str]:
    """Per primary claim with pairs: its own metric per arm and the paired differences."""
    from probes.study.analysis import unit_values
    from probes.viz.study import plot_claim

    lines = []
    for r in ev["primary"]:
        if not r["n"]:
            continue
        a = unit_values(inp["tables"], r, r["a"], plan.data["analysis"])
        b = unit_values(inp["tables"], r, r["b"], plan.data["analysis"])
        name = f"claim-{r['id']}.png"
        plot_claim(a, b, out / name, label=r["metric"], names=(r["a"], r["b"]),
                   title=f"{r['id']} ({r['verdict']})", interval=(r["lo"], r["hi"]))
        units = sorted(set(a) & set(b), key=str)
        lines += [f"![{r['id']}]({name})", "", f"*{r['id']}: {_claim_text(r)}; left each "
                  f"unit's value under both arms, right the paired differences with their "
                  f"mean and the table's 95% interval. Seeds ({len(units)}"
                  + (f", each the mean over {', '.join(r['groups'])}" if r.get("groups") else "")
                  + "): " + ", ".join(map(str, units)) + ".*", ""]
    return (["## The primary claims' own metrics", ""] + lines) if lines else []


def _samples_section(out: Path, plan: Plan, spec: dict, *, seed: int) -> list[str]:
    """Samples of each arm's shipped seed-0 (lowest shipped) run of the ``samples`` group."""
    from probes.study.engine import shipped_finals

    group = spec.get("samples")
    finals = shipped_finals(plan).get(group, {}) if group else {}
    paths = [(f"{arm} seed {min(by)}", plan.root / by[min(by)])
             for arm, by in finals.items() if by]
    if not paths:
        return []
    fig_samples(paths, out / "samples.png", n=32, seed=seed)
    return ["## Samples", "", "![samples](samples.png)", "",
            f"*{group}: 32 samples (latents of probe seed {seed}, the first 32 of "
            "`probes.io.sources.fakes`) of the final weights of "
            + ", ".join(label for label, _ in paths) + ".*", ""]
