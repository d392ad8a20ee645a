"""Gradient fidelity of the shipped study's 2-D checkpoints (study v3's registered secondary
S1/S2 rationale: "also reported, descriptively, on v2's shipped ring8 and grid25
checkpoints"; issue 23, item 3).

For every shipped v2 checkpoint of ring8 and grid25 in the arms ``baseline``, ``twice`` and
``asgan-eps0.5`` (all their seeds; the final snapshot), ``asgan-probe fidelity`` with its
defaults and probe seed 0 (:func:`probes.measures.fidelity.fidelity_sweep`: 1,000 fakes, a
KDE of p_g from 20,000 G samples, bandwidth by held-out likelihood): the mean cosine of D's
input gradient with the ideal direction ``grad log(p_data / p_g)`` and the mean share of its
energy orthogonal to it. The v3 report reads the file and shows, per mixture, each arm's
mean over seeds and the seed-paired differences (AS-GAN - baseline, AS-GAN - twice) with an
exact sign-flip p, unadjusted: descriptive, no verdict.

    python scripts/fidelity_v2.py [--out checkpoints/shipped/v3/fidelity-v2.json]

The file is written atomically and recorded in the manifest; a finished checkpoint is not
measured again (``--remeasure`` does), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CODE_ROOT))

MIXTURES = ("ring8", "grid25")
ARMS = ("baseline", "twice", "asgan-eps0.5")
SHIP = CODE_ROOT / "checkpoints" / "shipped" / "v2"
OUT = CODE_ROOT / "checkpoints" / "shipped" / "v3" / "fidelity-v2.json"


def checkpoints() -> list[tuple[str, str, int, Path]]:
    """``(mixture, arm, seed, final snapshot)`` of every shipped v2 2-D run in :data:`ARMS`."""
    out = []
    for mix in MIXTURES:
        for arm in ARMS:
            for run in sorted((SHIP / mix / arm).glob("seed*"), key=lambda p: int(p.name[4:])):
                final = max(run.glob("ckpt-*.safetensors"))
                out.append((mix, arm, int(run.name[4:]), final))
    return out


def measure(path: Path) -> dict:
    """The fidelity row of one checkpoint: mean cosine, mean noise share, bandwidth."""
    from probes.measures.fidelity import fidelity_sweep

    (row,) = fidelity_sweep([str(path)], seed=0)["checkpoints"]
    return {"fidelity_cos": row["summary"]["cos"]["mean"],
            "fidelity_noise": row["summary"]["noise"]["mean"],
            "bandwidth": row["bandwidth"], "n": row["n"]}


def main(argv: list[str] | None = None) -> int:
    from asgan_base.files import atomic_write_bytes
    from asgan_base.manifest import record

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--remeasure", action="store_true")
    args = ap.parse_args(argv)
    body = json.loads(args.out.read_text()) if args.out.is_file() and not args.remeasure \
        else {"about": "asgan-probe fidelity (defaults, probe seed 0) on v2's shipped 2-D "
              "checkpoints; made by scripts/fidelity_v2.py", "runs": {}}
    for mix, arm, seed, path in checkpoints():
        name = f"{mix}/{arm}/seed{seed}"
        if name in body["runs"]:
            continue
        body["runs"][name] = {"checkpoint": path.relative_to(CODE_ROOT).as_posix(),
                              **measure(path)}
        print(name, body["runs"][name], flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out, (json.dumps(body, indent=1) + "\n").encode())
    record(args.out, command="python scripts/fidelity_v2.py", study="v3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
