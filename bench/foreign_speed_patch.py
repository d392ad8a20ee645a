"""Rebuilt PatchGAN vs taming-transformers' own ``NLayerDiscriminator``: forward + input gradient.

A probe's inner step is ``g = d/dx sum_i reduce(D(x))_i`` with D frozen: one forward and one
backward to the input only (no weight gradients). This times that step for the same weights
in two nets: upstream's class, imported at bench time from the checkout the user names with
``--upstream DIR`` (the folder holding ``taming/``; nothing of it is in this project), and
ours, read by :func:`probes.io.families.taming.read` from a ``torch.save`` of upstream's
``state_dict`` (the file path a user would take). Both in eval mode, float32, same batch and
threads, same input; the reduction is the declared ``mean`` over positions. Before timing, the
outputs and gradients are compared (max relative difference, recorded).

Defaults are taming's: ``n_layers=3, ndf=64``, BatchNorm, 256 px, batch 8. The goal (issue 21)
is ours / upstream <= 1.1.

Run: ``python -m bench.foreign_speed_patch --upstream /path/to/taming-transformers``
(``--quick`` for a smoke run: 64 px, ndf 8, 3 repetitions).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

import torch

from bench import _common as common

GOAL = 1.1


def _upstream_class(root: str):
    """``NLayerDiscriminator`` from the user's taming checkout (``root/taming/...``)."""
    if not (Path(root) / "taming" / "modules" / "discriminator" / "model.py").is_file():
        raise SystemExit(f"--upstream {root}: no taming/modules/discriminator/model.py there; "
                         "give the folder of a CompVis/taming-transformers checkout")
    sys.path.insert(0, str(Path(root).resolve()))
    try:
        return importlib.import_module("taming.modules.discriminator.model").NLayerDiscriminator
    finally:
        sys.path.pop(0)


def _step(D: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N,) by the mean over positions, d sum(logits) / dx)."""
    xr = x.detach().requires_grad_(True)
    y = D(xr).flatten(1).mean(1)
    (g,) = torch.autograd.grad(y.sum(), xr)
    return y.detach(), g


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True,
                   help="folder of a CompVis/taming-transformers checkout (holds taming/)")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--n-layers", type=int, default=3)
    p.add_argument("--actnorm", action="store_true", help="use_actnorm=True (default BatchNorm)")
    common.add_common_args(p, reps=10)
    a = p.parse_args(argv)
    if a.quick:
        a.resolution, a.ndf, a.batch, a.reps = 64, 8, 4, 3
    common.setup_threads(a.threads)
    from probes.io.families import taming  # after the thread setting

    torch.manual_seed(0)
    up = _upstream_class(a.upstream)(input_nc=3, ndf=a.ndf, n_layers=a.n_layers,
                                     use_actnorm=a.actnorm)
    with torch.no_grad():  # off init: random weights, BN statistics, ActNorm loc/scale
        for k, t in up.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if k.endswith(("running_var", "scale"))
                        else 0.05 * torch.randn_like(t))
            elif k.endswith("initialized"):
                t.fill_(1)
    up.eval().requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "D.pt"
        torch.save(up.state_dict(), f)
        ours, desc = taming.read(f)
    x = torch.rand(a.batch, 3, a.resolution, a.resolution, generator=torch.Generator()
                   .manual_seed(1)) * 2 - 1

    (y_u, g_u), (y_o, g_o) = _step(up, x), _step(ours, x)
    rel = lambda o, u: float((o - u).abs().max() / u.abs().max().clamp_min(1e-30))  # noqa: E731
    check = {"logits_max_rel_diff": rel(y_o, y_u), "grad_max_rel_diff": rel(g_o, g_u)}
    cases = {"upstream": lambda: _step(up, x), "ours": lambda: _step(ours, x)}
    times = common.interleave(cases, reps=a.reps, warmup=a.warmup,
                              progress=common.log if not a.quick else None)
    ratio = {c: common.pair_ratio(times[c]["ours"], times[c]["upstream"]) for c in times}
    med = {c: common.medians(times[c]) for c in times}
    head = ratio[a.clock]
    table = [["case", f"s/step ({a.clock})", "ours / upstream"],
             ["upstream NLayerDiscriminator", f"{med[a.clock]['upstream']:.4f}", ""],
             ["ours (taming.read)", f"{med[a.clock]['ours']:.4f}", common.fmt_ratio(head)],
             ["goal", "", f"<= {GOAL} ({common.verdict(head['median'] <= GOAL)})"]]
    common.emit("foreign_speed_patch", {
        "settings": {"resolution": a.resolution, "batch": a.batch, "ndf": a.ndf,
                     "n_layers": a.n_layers, "norm": desc["extra"]["norm"], "reps": a.reps,
                     "warmup": a.warmup, "clock": a.clock, "quick": a.quick,
                     "step": "forward + d/dx of the mean-reduced logits, eval mode, float32"},
        "check": check,
        "results": {c: {"median_s": med[c], "ratio_ours_upstream": ratio[c]} for c in times},
        "targets": {"ratio_ours_upstream_max": GOAL, "met": head["median"] <= GOAL},
    }, table, out=a.out)
    return 0 if max(check.values()) < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
