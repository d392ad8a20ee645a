"""How much the BatchNorm probe mode changes the numbers, on the shipped mnist10k checkpoints.

For seed 0 of the shipped study's baseline and of its AS-GAN arms (eps > 0 on the sweep's
curve: the plan's ``[report]`` table) it measures, on the same 512 reals (held-out part when the
checkpoint records a split) and with the statistics of the same clean reference group (the
first training batch of the seeded draw):

- FGSM at 2/255 on reals: mean logit shift and flip rate in ``batch`` mode (the group is
  perturbed together and normalised with its own statistics) and ``frozen`` mode (per sample);
- the minimal flipping eps (FGSM, median over correct reals) in both modes;
- the cosine between each image's gradient of the batch sum (batch mode) and the gradient of
  its own logit (frozen), and the Hoyer sparsity and stroke share of both.

Prints one JSON object; the README and docs/gradients.md quote it. Run from the repo root:
``OMP_NUM_THREADS=1 python scripts/mode_difference.py`` (about a minute).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes.core.gradients import input_gradients  # noqa: E402
from probes.core.sparsity import sparsity  # noqa: E402
from probes.core.structure import structure  # noqa: E402
from probes.core.sweep import attack_sweep, min_flip_eps  # noqa: E402
from probes.io import sources  # noqa: E402
from probes.io.checkpoints import group_size  # noqa: E402
from probes.study.arms import shipped_plan, shipped_runs  # noqa: E402
from probes.study.report import report_spec  # noqa: E402

N = 512


def measure(path: Path) -> dict:
    G, D, meta = sources.load(path)
    x, ref = sources.probe_inputs(meta, G, population="real", n=N, seed=0)
    m = group_size(meta)
    out = {"checkpoint": str(path), "n": N, "group": m}
    for mode in ("batch", "frozen"):
        (r,) = attack_sweep(D, x, eps=[2 / 255], mode=mode, bn_group=m, reference=ref)
        e = min_flip_eps(D, x, mode=mode, bn_group=m, reference=ref, eps_max=32 / 255)
        g = input_gradients(D, x, mode=mode, batch_size=m, reference=ref, reduce=None,
                            keep=True)["grad"]
        s = structure(g, x)
        out[mode] = {"fgsm2_mean_logit_shift": r["mean_logit_shift"],
                     "fgsm2_flip_rate": r["flip_rate"],
                     "min_eps_median_255": None if e["median"] is None else e["median"] * 255,
                     "hoyer": float(sparsity(g)["hoyer"].mean()),
                     "fg_share": float(s["fg_share"].mean())}
        out[mode + "_grad"] = g
    gb, gf = out.pop("batch_grad").flatten(1), out.pop("frozen_grad").flatten(1)
    out["cosine_batch_sum_vs_own"] = float(torch.nn.functional.cosine_similarity(gb, gf).mean())
    return out


def main() -> None:
    plan = shipped_plan()
    spec = report_spec(plan)
    eps = spec["eps"].get(spec["image"], {})
    arms = [spec["baseline"]] + [a for a in spec["curve"] if a in eps and eps[a][0] > 0]
    runs = shipped_runs(spec["image"], plan)
    print(json.dumps({arm: measure(runs[arm][0]) for arm in arms if arm in runs}, indent=1))


if __name__ == "__main__":
    main()
