"""Gradient fidelity of a shipped study's 2-D checkpoints, for a later study's report (study
v3's registered secondary claims S1/S2 say they are also reported, descriptively, on the
first study's shipped ring8 and grid25 checkpoints; issue 23, item 3).

For every shipped checkpoint of the plan's mixture groups (``measure = "mixture"``) in the
arms ``--arms`` (all their seeds; the final snapshot), ``asgan-probe fidelity`` with its
defaults and probe seed 0 (:func:`probes.study.arms.fidelity_metrics`: 1,000 fakes, a
KDE of p_g from 20,000 G samples, bandwidth by held-out likelihood): the mean cosine of D's
input gradient with the ideal direction ``grad log(p_data / p_g)`` and the mean share of its
energy orthogonal to it. A report whose ``[report] fidelity`` names the file shows, per
mixture, each arm's mean over seeds and the seed-paired differences with an exact sign-flip
p, unadjusted: descriptive, no verdict (:func:`probes.study.report.fidelity_file_lines`).

    python scripts/fidelity_v2.py --arms ARM,ARM,... --out FILE [--plan PLAN]

(the command that made the shipped file is in its manifest entry and checkpoints/README.md).

The file is written atomically after each checkpoint and recorded in the manifest at the end;
a measured checkpoint is not measured again (``--remeasure`` does), so an interrupted run
resumes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CODE_ROOT))


def checkpoints(plan, arms: list[str]) -> list[tuple[str, Path]]:
    """``("<group>/<arm>/seed<k>", final snapshot)`` of every shipped run of ``plan``'s
    mixture groups in ``arms`` (plan order, seeds ascending)."""
    from probes.study.arms import shipped_runs

    out = []
    for group, spec in plan.groups.items():
        if spec["measure"] != "mixture":
            continue
        runs = shipped_runs(group, plan)
        for arm in arms:
            out += [(f"{group}/{arm}/seed{s}", path) for s, path in runs.get(arm, {}).items()]
    return out


def main(argv: list[str] | None = None) -> int:
    from asgan_base.files import atomic_write_bytes
    from asgan_base.manifest import record
    from probes.study.arms import fidelity_metrics, shipped_plan
    from probes.study.engine import load

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", required=True, help="comma-separated arms of the mixture groups")
    ap.add_argument("--out", type=Path, required=True, help="the JSON file (in the checkout)")
    ap.add_argument("--plan", default=None, help="the study's plan (default: the shipped one)")
    ap.add_argument("--remeasure", action="store_true")
    args = ap.parse_args(argv)
    plan = shipped_plan() if args.plan is None else load(args.plan)
    out = args.out.resolve()
    body = json.loads(out.read_text()) if out.is_file() and not args.remeasure else {
        "about": f"asgan-probe fidelity (defaults, probe seed 0) on {plan.name}'s shipped 2-D "
                 "checkpoints; made by scripts/fidelity_v2.py", "runs": {}}
    for name, path in checkpoints(plan, args.arms.split(",")):
        if name in body["runs"]:
            continue
        body["runs"][name] = {"checkpoint": path.relative_to(plan.root).as_posix(),
                              **fidelity_metrics(path, seed=0)}
        print(name, body["runs"][name], flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (json.dumps(body, indent=1) + "\n").encode())
    record(out, command=shlex.join(["python", "scripts/fidelity_v2.py", *sys.argv[1:]]),
           path=plan.manifest, root=plan.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
