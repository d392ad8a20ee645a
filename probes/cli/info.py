"""``asgan-probe info CKPT``: what a checkpoint holds (verified), as JSON."""

from __future__ import annotations

from probes.cli._common import add_foreign, write_json

NAME = "info"
HELP = "verify a checkpoint and print its architecture, config, step and checksum"
EXAMPLES = """examples:
  asgan-probe info runs/a1/ckpt-002000.safetensors
  asgan-probe info netD_epoch_24.pth --format authors     # the AS-GAN authors' netD
"""


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CKPT")
    add_foreign(p)
    p.add_argument("--out", default=None, help="write JSON here (default: stdout)")


def run(args) -> int:
    from probes.io.sources import load

    G, D, meta = load(args.checkpoint, format=args.format, arch=args.arch)
    summary = {k: meta[k] for k in ("format", "step", "pixel_range", "data", "g_spec", "d_spec",
                                    "sha256", "config", "wall_time_s", "torch") if k in meta}
    summary["parameters"] = {"G": None if G is None else sum(p.numel() for p in G.parameters()),
                             "D": sum(p.numel() for p in D.parameters())}
    # load() raised otherwise; a foreign file carries no checksum to verify
    summary["checksum_ok"] = True if args.format == "asgan" else None
    write_json(summary, args.out)
    return 0
