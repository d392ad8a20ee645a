"""``asgan-probe fidelity CKPT [CKPT2 ...]``: D's input gradient against the optimal D's, on the
2-D mixtures (:mod:`probes.core.fidelity`; defaults in :mod:`probes.measures.fidelity`).

Parse, call :func:`probes.measures.fidelity.fidelity_sweep`, write JSON to ``--out`` or stdout
and a one-line summary per checkpoint to stderr.
"""

from __future__ import annotations

from probes.cli._common import add_common, add_mode, check_at_least, log, write_json

NAME = "fidelity"
HELP = ("gradient fidelity on ring8/grid25: cosine between D's input gradient and the ideal "
        "direction grad[log p_data - log p_g] (KDE of p_g), and the orthogonal 'noise' share")
EXAMPLES = """examples:
  asgan-probe fidelity runs/ring/base/ckpt-005000.safetensors \\
      runs/ring/as/ckpt-005000.safetensors --n 1000 --seed 0 --out fidelity.json
"""


def add_arguments(p) -> None:
    from probes.measures.fidelity import DEFAULT_N, DEFAULT_N_KDE

    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help="checkpoints trained on ring8 or grid25")
    p.add_argument("--n", type=int, default=DEFAULT_N, help="probed fakes per checkpoint")
    p.add_argument("--n-kde", type=int, default=DEFAULT_N_KDE,
                   help="G samples in the kernel density estimate of p_g")
    p.add_argument("--bandwidth", type=float, default=None,
                   help="KDE bandwidth in data units (default: likelihood cross-validation)")
    p.add_argument("--per-sample", action="store_true",
                   help="also write every sample's cosine, noise share and norms")
    add_mode(p)
    add_common(p)


def run(args) -> int:
    from probes.measures.fidelity import fidelity_sweep

    check_at_least(n=(args.n, 2), n_kde=(args.n_kde, 100))
    result = fidelity_sweep(args.checkpoints, n=args.n, n_kde=args.n_kde, seed=args.seed,
                            bandwidth=args.bandwidth, mode=args.mode, device=args.device,
                            keep=args.per_sample)
    for row in result["checkpoints"]:
        s = row["summary"]
        log(f"{row['label']}: cos {s['cos']['mean']:.3f} [{s['cos']['ci_low']:.3f}, "
            f"{s['cos']['ci_high']:.3f}], noise share {s['noise']['mean']:.3f} "
            f"[{s['noise']['ci_low']:.3f}, {s['noise']['ci_high']:.3f}], "
            f"h {row['bandwidth']:.4g} ({row['n']} fakes)")
    write_json(result, args.out)
    return 0
