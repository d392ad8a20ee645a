"""What the study report costs per checkpoint, before and after the classifier's oneDNN path,
and what the full shipped report would cost at that rate.

``asgan-probe report`` measures every shipped checkpoint with one function per group
(:data:`probes.study.arms.MEASURES`, by each group's ``measure``): ``image_metrics``
(mnist10k: quality on 2,000 samples,
gradients on 256 reals and 256 fakes, FGSM on 512 reals), ``stacked_metrics`` (26,000 G
samples, each of the 3 channels read by the digit classifier) and ``mixture_metrics``
(ring8 / grid25, 2,500 points). Cases, timed alternately (``bench/_common.py``):

- ``classifier old`` / ``new``: the digit classifier reading the channels of ``--n-classify``
  stacked G samples (``predict_channels``); ``old`` is the plain ``nn.Module`` forward (the
  code before the oneDNN path: :func:`probes.adapters.classifier._onednn_body` made to
  return None), ``new`` the path the report takes now;
- ``<group> old`` / ``new``: the group's metric function on one shipped checkpoint, with the
  protocol's sample counts, old and new as above (nothing else in them changed).

Before timing, the script checks that old and new give the same numbers: every metric equal,
and on the full 26,000 stacked samples (78,000 channel reads) the same predicted digits and
features within 1e-5 of the largest. The projection multiplies each group's new per-checkpoint
seconds by its checkpoint count in the shipped study's ``PLAN.json`` (the complete study).
With ``--threads 1 --clock cpu`` (the honest clock on a loaded machine) the seconds are those
of one quiet core; the 2-core line divides them by two, which two worker processes reach and
two intra-op threads approach. The report's other work (figures, the claims) is not in it.

Run: ``python -m bench.report_cost --threads 1 --clock cpu`` (~15 minutes on a loaded 2-core
machine); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from typing import Any

import torch

from bench import _common as common
from probes.adapters import classifier as C

GROUPS = ("mnist10k", "stacked-mnist", "ring8", "grid25")
TARGET_S = 360  # the full shipped report's measurements, quiet 2-core machine (setup excluded)


@contextmanager
def old_classifier():
    """The classifier as it was before the oneDNN path: the plain module forward."""
    fast = C._onednn_body
    C._onednn_body = lambda net: None
    try:
        yield
    finally:
        C._onednn_body = fast


def plan_file():
    """The shipped study's ``PLAN.json`` (:func:`probes.study.arms.shipped_plan`)."""
    from probes.study.arms import shipped_plan

    plan = shipped_plan()
    return plan.root / plan.ship / "PLAN.json"


def plan_counts(path=None) -> dict[str, int]:
    """Checkpoints per group in the complete shipped study (arms listed as dropped
    excluded)."""
    plan = json.loads((plan_file() if path is None else path).read_text())
    dropped = plan.get("dropped") or {}
    return {g: sum(len(a["seeds"]) for arm, a in v["arms"].items()
                   if arm not in dropped.get(g, ()))
            for g, v in plan["groups"].items()}


def check_classifier(net, x: torch.Tensor) -> dict[str, Any]:
    """Old vs new on the channels of ``x`` (N, 3, H, W): digits identical, features close."""
    flat = x.reshape(-1, 1, *x.shape[-2:])
    new_f, new_d = C.features(net, flat), C.predict(net, flat)
    with old_classifier():
        old_f, old_d = C.features(net, flat), C.predict(net, flat)
    scale = float(old_f.abs().max())
    max_rel = float((new_f - old_f).abs().max()) / scale
    return {"images": len(flat), "digits_identical": bool(torch.equal(new_d, old_d)),
            "features_max_abs_diff_over_max": max_rel, "features_bit_identical":
            bool(torch.equal(new_f, old_f)), "ok": bool(torch.equal(new_d, old_d))
            and max_rel <= 1e-5}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(p, reps=3, warmup=0)
    p.add_argument("--n-classify", type=int, default=6000,
                   help="stacked G samples in the classifier case (3 reads each; default 6000)")
    args = p.parse_args(argv)
    common.setup_threads(args.threads)
    from probes.io import sources
    from probes.study import arms

    quick = args.quick
    reps = 1 if quick else args.reps
    kw = {"mnist10k": {"n_quality": 200, "n_grad": 32, "n_attack": 32} if quick else {},
          "stacked-mnist": {"n": 500} if quick else {},
          "ring8": {"n": 500} if quick else {}, "grid25": {"n": 500} if quick else {}}
    plan = arms.shipped_plan()
    paths = {g: next(iter(next(iter(arms.shipped_runs(g, plan).values())).values()))
             for g in GROUPS}
    metrics = {g: arms.MEASURES[plan.groups[g]["measure"]] for g in GROUPS}
    net, _ = arms._classifier()
    G, _, meta = sources.load(paths["stacked-mnist"])
    n_check = 300 if quick else 26_000
    common.log(f"checking old == new on {n_check} stacked G samples ...")
    check = check_classifier(net, sources.fakes(G, meta, n_check, seed=0))
    x_cls = sources.fakes(G, meta, 100 if quick else args.n_classify, seed=1)

    same = {}
    for g in GROUPS:  # also fills the report's caches (real features), so both cases share them
        new = metrics[g](paths[g], **kw[g])
        with old_classifier():
            old = metrics[g](paths[g], **kw[g])
        same[g] = old == new
    if not (check["ok"] and all(same.values())):
        common.log(f"old and new differ: classifier {check}, metrics {same}")

    def timed(fn, old):
        def run():
            if old:
                with old_classifier():
                    return fn()
            return fn()
        return run

    cases = {}
    for old in (True, False):
        tag = "old" if old else "new"
        cases[f"classifier {tag}"] = timed(lambda: C.predict_channels(net, x_cls), old)
        for g in GROUPS:
            cases[f"{g} {tag}"] = timed(lambda g=g: metrics[g](paths[g], **kw[g]), old)
    times = common.interleave(cases, reps=reps, warmup=0 if quick else args.warmup,
                              progress=common.log)
    clock = args.clock
    med = {c: common.medians(t) for c, t in times.items()}
    ratios = {c: {k: common.pair_ratio(t[f"{k} old"], t[f"{k} new"])
                  for k in ("classifier", *GROUPS)} for c, t in times.items()}
    counts = plan_counts()
    per_ckpt = {g: med[clock][f"{g} new"] for g in GROUPS}
    per_ckpt_old = {g: med[clock][f"{g} old"] for g in GROUPS}
    total = sum(counts[g] * per_ckpt[g] for g in GROUPS)
    total_old = sum(counts[g] * per_ckpt_old[g] for g in GROUPS)
    images = len(x_cls) * 3
    projection = {"checkpoints": counts, "per_checkpoint_s": per_ckpt,
                  "per_checkpoint_old_s": per_ckpt_old, "one_core_s": total,
                  "two_cores_s": total / 2, "one_core_old_s": total_old,
                  "two_cores_old_s": total_old / 2}
    table = [["case", "old s", "new s", f"old / new ({clock})", "study ckpts", "study total new s"]]
    per_k = {t: 1000 * med[clock][f"classifier {t}"] / images for t in ("old", "new")}
    table.append(["classifier, per 1000 images", f"{per_k['old']:.3f}", f"{per_k['new']:.3f}",
                  common.fmt_ratio(ratios[clock]["classifier"], 2), "", ""])
    for g in GROUPS:
        table.append([f"{g} (per checkpoint)", f"{per_ckpt_old[g]:.2f}", f"{per_ckpt[g]:.2f}",
                      common.fmt_ratio(ratios[clock][g], 2), str(counts[g]),
                      f"{counts[g] * per_ckpt[g]:.0f}"])
    table.append(["full study, one core / two", f"{total_old:.0f} / {total_old / 2:.0f}",
                  f"{total:.0f} / {total / 2:.0f}", "", str(sum(counts.values())), ""])
    common.emit("report_cost", {
        "settings": {"reps": reps, "clock": clock, "quick": quick, "n_classify": len(x_cls),
                     "checkpoints": {g: str(p) for g, p in paths.items()}, "kwargs": kw},
        "same_numbers": {"classifier": check, "metrics_equal": same},
        "results": {"median_s": med, "ratio_old_new": ratios, "projection": projection},
        "targets": {f"full study measurements on 2 cores <= {TARGET_S} s":
                    common.verdict(total / 2 <= TARGET_S) if not quick else "n/a"},
    }, table, out=args.out, notes=[
        f"seconds are {clock} seconds with {torch.get_num_threads()} torch thread(s); the "
        "2-core figure halves the one-core total (two worker processes, or threads at best)",
        "figures and claims of the report are not included"])
    return 0 if check["ok"] and all(same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
