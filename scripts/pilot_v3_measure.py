"""Measure the study v3 pilot (issue 23, item 2; NOT judged): FD against iteration, classes
among the fakes and non-finite stops of every run trained by ``scripts/pilot_v3.sh``.

Per run (``runs/pilot-v3/<setting>/<arm>/seed<k>/``): the Frechet distance in the digit
classifier's features (the study's FD: 2,000 fakes against 2,000 reals, seed 0, as
``probes.study.arms.image_metrics``) at every kept snapshot; at the last snapshot the digit
classes among 2,000 fakes (a class counts when it is at least 1 % of them); whether the run
stopped on a non-finite loss (``exit.txt``). The shipped study's baselines (its plan's
``[report]`` baseline on mnist10k: the default setting, 8 seeds) are measured the same way,
for the collapse rule's reference (final FD > 2x their median). Fashion-MNIST runs
(``fashion/<arm>/seed<k>``) are measured with Fashion-MNIST's own shipped classifier against
its held-out part (t10k); the mnist10k collapse rule does not apply to them.

    python scripts/pilot_v3_measure.py [--root runs/pilot-v3] [--record FILE]

Writes ``<root>/results.json`` and prints a markdown table. ``--record`` (default
``studies/pilot-v3-results.json``, committed): the FINISHED runs (all 3,500 iterations, or a
non-finite stop) are merged into it, so a later checkout keeps their numbers and
``scripts/pilot_v3.sh`` does not train them again; runs still training are not recorded.
Recorded finished runs are not measured again (``--remeasure`` does).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CODE_ROOT))

N = 2000
CLASS_SHARE = 0.01


def steps_of(run: Path) -> int:
    """The iterations the run was asked for (its config.json)."""
    return int(json.loads((run / "config.json").read_text())["steps"])


def measure_run(run: Path, net, clf, cache) -> dict:
    import torch

    from probes.adapters.classifier import predict
    from probes.io import sources
    from probes.measures import quality
    from trainers.checkpoint import list_snapshots

    curve = {}
    classes = None
    snaps = list_snapshots(run)
    for snap in snaps:
        G, _, meta = sources.load(snap)
        q = quality.scores(G, meta, ["classifier"], n=N, seed=0, net=net, clf=clf,
                           real_cache=cache)["classifier"]
        curve[int(snap.stem[5:])] = q["frechet"]
        if snap == snaps[-1]:
            pred = predict(net, sources.fakes(G, meta, N, seed=0))
            counts = torch.bincount(pred, minlength=10)
            classes = {"counts": counts.tolist(),
                       "n_classes": int((counts >= CLASS_SHARE * N).sum())}
    exit_file = run / "exit.txt"
    return {"fd": curve, "final_step": max(curve) if curve else 0,
            "final_fd": curve[max(curve)] if curve else None, "classes": classes,
            "exit": int(exit_file.read_text()) if exit_file.exists() else 0}


def print_table(rows: dict, ref: float, n_base: int, study: str) -> None:
    """The pilot as a markdown table on stdout, one row a run."""
    print(f"{study} baseline FD median {ref:.1f} ({n_base} seeds); collapse threshold "
          f"{2 * ref:.1f}\n")
    print("| setting | arm | seed | FD 500 / 1000 / ... / final | classes | exit | collapsed |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        s, a, k = name.split("/")
        fds = " / ".join(f"{v:.0f}" for v in r["fd"].values())
        ncls = r["classes"]["n_classes"] if r["classes"] else "-"
        collapsed = {True: "yes", False: "no", None: "-"}[r["collapsed"]]
        print(f"| {s} | {a} | {k[4:]} | {fds} | {ncls} | {r['exit']} | {collapsed} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="runs/pilot-v3")
    ap.add_argument("--record", default="studies/pilot-v3-results.json")
    ap.add_argument("--remeasure", action="store_true", help="measure recorded runs again")
    args = ap.parse_args()
    import statistics

    from probes.measures.coverage import load_digit_classifier
    from probes.study.arms import shipped_plan, shipped_runs

    net, clf = load_digit_classifier(None, "cpu")
    fashion = load_digit_classifier(None, "cpu", data="fashion-mnist")
    cache: dict = {}
    fashion_cache: dict = {}
    root = Path(args.root)
    record = Path(args.record)
    kept = json.loads(record.read_text())["runs"] if record.is_file() else {}
    plan = shipped_plan()
    base = {}
    for seed, path in sorted(shipped_runs("mnist10k", plan)[
            plan.data["report"]["baseline"]].items()):
        base[seed] = measure_run(Path(path).parent, net, clf, cache)["final_fd"]
    ref = statistics.median(base.values())
    rows = {}
    for run in sorted(p for p in root.glob("*/*/seed*") if p.is_dir()):
        name = "/".join(run.parts[-3:])
        if name in kept and not args.remeasure:
            continue
        if run.parts[-3] == "fashion":
            r = measure_run(run, *fashion, fashion_cache)
            r["collapsed"] = None  # the mnist10k rule has no Fashion-MNIST reference
        else:
            r = measure_run(run, net, clf, cache)
            r["collapsed"] = bool(r["exit"] != 0 or r["final_fd"] is None or
                                  r["final_fd"] > 2 * ref or
                                  (r["classes"] and r["classes"]["n_classes"] < 9))
        r["steps"] = steps_of(run)
        rows[name] = r
        print(f"{name}: {r}", file=sys.stderr)
    out = {"reference_study": plan.name, "baseline_final_fd": base, "baseline_median": ref,
           "n": N, "class_share": CLASS_SHARE, "runs": rows,
           "collapse_rule": f"non-finite stop, or final FD > 2x the {plan.name} baseline "
                            "median, or fewer than 9 of 10 classes (>= 1 % each) among 2,000 "
                            "fakes"}
    (root / "results.json").write_text(json.dumps(out, indent=1))
    kept.update({k: r for k, r in rows.items() if r["final_step"] == r["steps"] or r["exit"]})
    rows = dict(sorted({**kept, **rows}.items()))
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({**out, "runs": dict(sorted(kept.items()))}, indent=1) + "\n")
    tmp.replace(record)  # atomic
    print_table(rows, ref, len(base), plan.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
