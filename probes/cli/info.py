"""``asgan-probe info CKPT``: what a checkpoint holds (verified), as JSON."""

from __future__ import annotations

from probes.cli._common import write_json

NAME = "info"
HELP = "verify a checkpoint and print its architecture, config, step and checksum"
EXAMPLES = """examples:
  asgan-probe info runs/a1/ckpt-002000.safetensors
"""


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--out", default=None, help="write JSON here (default: stdout)")


def run(args) -> int:
    from probes.io.sources import load

    G, D, meta = load(args.checkpoint)
    summary = {k: meta[k] for k in ("step", "pixel_range", "data", "g_spec", "d_spec", "sha256",
                                    "config", "wall_time_s", "torch") if k in meta}
    summary["parameters"] = {"G": sum(p.numel() for p in G.parameters()),
                             "D": sum(p.numel() for p in D.parameters())}
    summary["checksum_ok"] = True  # load() raised otherwise
    write_json(summary, args.out)
    return 0
