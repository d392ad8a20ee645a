"""Speed of a rebuilt foreign D against the upstream code on the same file: StyleGAN2-ADA.

For each resolution, a StyleGAN2-ADA discriminator is built by **upstream's own code**
(``training.networks.Discriminator`` of a ``NVlabs/stylegan2-ada-pytorch`` checkout given with
``--upstream DIR``, imported at bench time, never copied), every parameter and buffer moved off
its init (seeded), and pickled as its training loop writes snapshots. Our reader
(:mod:`probes.io.families.stylegan`) rebuilds it from that file without running its code. Both
then run, interleaved, on the same batch in [-1, 1] and the same threads:

- ``ours``: ``y = D(x)``, ``torch.autograd.grad(y.sum(), x)``;
- ``upstream``: the same with upstream's ``D(x, c, force_fp32=True)`` (its float16 blocks would
  otherwise run float16 on the CPU; ours always run float32), its CPU paths (``bias_act`` and
  ``upfirdn2d`` reference implementations: the custom CUDA kernels do not apply on the CPU).

Configs: 32 px as upstream's ``cifar`` (``fmaps=1``: channel_base 32768, channel_max 512,
mbstd group 32, num_fp16_res 4, conv_clamp 256, resnet), 256 px as ``paper256``
(channel_base 16384, mbstd group 8); the batch is each config's per-GPU batch (cifar: 64 on 2
GPUs = 32; paper256: 64 on 8 GPUs = 8). Before timing, the two outputs and input
gradients are compared (max relative difference). Target: ours / upstream <= 1.1 (issue 21).

Run: ``python -m bench.foreign_speed --upstream /path/to/stylegan2-ada-pytorch`` (a few
minutes on 2 cores); ``--quick`` for a smoke run. Without a usable ``--upstream`` it prints a
JSON line with ``"status": "unavailable"`` and exits 1.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import pickle
import sys
import tempfile
import types
from pathlib import Path

import torch

from bench import _common as common
from probes.io.families import stylegan

TARGET = 1.1
# name -> (resolution, Discriminator kwargs, batch)
CONFIGS = {
    "32px cifar": (32, dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256,
                            architecture="resnet", epilogue_kwargs=dict(mbstd_group_size=32)), 32),
    "256px paper256": (256, dict(channel_base=16384, channel_max=512, num_fp16_res=4,
                                 conv_clamp=256, architecture="resnet",
                                 epilogue_kwargs=dict(mbstd_group_size=8)), 8),
}
QUICK = {"32px cifar": (32, dict(channel_base=512, channel_max=32, num_fp16_res=4, conv_clamp=256,
                                 architecture="resnet", epilogue_kwargs=dict(mbstd_group_size=4)),
                        8),
         "256px paper256": (256, dict(channel_base=256, channel_max=8, num_fp16_res=4,
                                      conv_clamp=256, architecture="resnet",
                                      epilogue_kwargs=dict(mbstd_group_size=4)), 4)}


def import_upstream(root: Path):
    """Upstream's ``training.networks`` from a checkout. Its ``dnnlib`` imports ``requests``
    and ``distutils`` at the top for downloads the bench never makes: empty stand-ins are
    put in place only where those modules are missing."""
    if not (root / "training" / "networks.py").is_file():
        raise FileNotFoundError(f"{root} has no training/networks.py")
    if importlib.util.find_spec("requests") is None:
        sys.modules["requests"] = types.ModuleType("requests")
    try:
        importlib.import_module("distutils.util")
    except ImportError:
        du = types.ModuleType("distutils.util")
        du.strtobool = lambda v: v.lower() in ("y", "yes", "t", "true", "on", "1")
        sys.modules.setdefault("distutils", types.ModuleType("distutils"))
        sys.modules["distutils.util"] = du
    sys.path.insert(0, str(root))
    return importlib.import_module("training.networks")


def build(networks, res: int, kwargs: dict, *, seed: int, folder: Path):
    """Upstream D (eval, frozen), its snapshot file, and our D read from that file."""
    torch.manual_seed(seed)
    D = networks.Discriminator(c_dim=0, img_resolution=res, img_channels=3, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in list(D.named_parameters()) + list(D.named_buffers()):
            t.add_(torch.randn(t.shape, generator=g) * (0.01 if "filter" in name else 0.05))
    D = D.eval().requires_grad_(False)
    path = folder / f"network-snapshot-{res}.pkl"
    with open(path, "wb") as f:  # as training_loop.py writes it
        pickle.dump({"D": copy.deepcopy(D).eval().requires_grad_(False).cpu()}, f)
    ours, _ = stylegan.read(path)
    return D, ours


def case(call, x: torch.Tensor):
    def run():
        xx = x.detach().requires_grad_(True)
        y = call(xx)
        (g,) = torch.autograd.grad(y.sum(), xx)
        return y, g

    return run


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.foreign_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p, reps=7)
    p.add_argument("--upstream", type=Path, default=None,
                   help="a NVlabs/stylegan2-ada-pytorch checkout (imported, never copied)")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated subset of: {', '.join(CONFIGS)}")
    args = p.parse_args(argv)
    common.setup_threads(args.threads)
    try:
        if args.upstream is None:
            raise FileNotFoundError("no --upstream DIR given")
        networks = import_upstream(args.upstream.resolve())
    except Exception as err:  # report clearly, one JSON line
        reason = f"upstream StyleGAN2-ADA code unavailable: {type(err).__name__}: {err}"
        common.log(f"[foreign_speed] {reason}")
        common.emit("foreign_speed", {"status": "unavailable", "reason": reason}, [])
        return 1
    configs = QUICK if args.quick else CONFIGS
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    reps = 2 if args.quick else args.reps
    results, table, checks = {}, [["config", "batch", "ours s", "upstream s", "ours / upstream",
                                   "max rel diff y / grad"]], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in names:
            res, kwargs, batch = configs[n]
            up, ours = build(networks, res, kwargs, seed=0, folder=Path(tmp))
            x = torch.rand(batch, 3, res, res, generator=torch.Generator().manual_seed(1)) * 2 - 1
            c = torch.zeros(batch, 0)
            cases = {"ours": case(ours, x),
                     "upstream": case(lambda xx, up=up, c=c: up(xx, c, force_fp32=True), x)}
            (y0, g0), (y1, g1) = cases["ours"](), cases["upstream"]()
            agree = {"y": rel(y0, y1), "grad": rel(g0, g1)}
            common.log(f"[foreign_speed] {n}: batch {batch}, agreement {agree}")
            times = common.interleave(cases, reps=reps, warmup=args.warmup,
                                      progress=lambda s, n=n: common.log(f"[{n}] {s}"))
            r = {}
            for clock, t in times.items():
                r[clock] = {"median_s": common.medians(t),
                            "ours_over_upstream": common.pair_ratio(t["ours"], t["upstream"])}
            r["agreement_max_rel"] = agree
            r["batch"], r["resolution"] = batch, res
            results[n] = r
            head = r[args.clock]
            q = head["ours_over_upstream"]
            checks[f"{n} ours / upstream <="] = {"target": TARGET, "value": q["median"],
                                                 "met": q["median"] <= TARGET}
            table.append([n, str(batch), f"{head['median_s']['ours']:.4f}",
                          f"{head['median_s']['upstream']:.4f}", common.fmt_ratio(q),
                          f"{agree['y']:.1e} / {agree['grad']:.1e}"])
    notes = [f"target {k} {v['target']}: {v['value']:.3f} {common.verdict(v['met'])}"
             for k, v in checks.items()]
    settings = {"configs": {n: {"resolution": configs[n][0], "kwargs": configs[n][1],
                                "batch": configs[n][2]} for n in names},
                "reps": reps, "warmup": args.warmup, "clock": args.clock, "quick": args.quick,
                "upstream": str(args.upstream), "work": "forward + input gradient"}
    common.emit("foreign_speed", {"status": "ok", "settings": settings, "results": results,
                                  "targets": checks}, table, out=args.out, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
