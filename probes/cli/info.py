"""``asgan-probe info FILE``: what a checkpoint or discriminator file holds (verified), as JSON.

Parse, call :func:`probes.measures.info.info` (what is reported, for our checkpoints and for
discriminator files of other families, is documented there), write JSON. A file that would
run code gets one line naming what it would call, exit status 2.
"""

from __future__ import annotations

from probes.cli._common import add_foreign, log, write_json

NAME = "info"
HELP = ("verify a checkpoint, or recognise any discriminator file, and print what it holds "
        "(architecture/family, resolution, conditional, coupling, input range, output, globals)")
EXAMPLES = """examples:
  asgan-probe info runs/a1/ckpt-002000.safetensors
  asgan-probe info netD_epoch_24.pth                       # format recognised from contents
  asgan-probe info netD_epoch_24.pth --format authors      # or named
  asgan-probe info network-snapshot-000200.pkl --label 0   # a conditional D, class 0 bound
"""


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CKPT")
    add_foreign(p, fakes=False)
    p.add_argument("--out", default=None, help="write JSON here (default: stdout)")


def run(args) -> int:
    from probes.measures.info import info

    record = info(args.checkpoint, format=args.format, arch=args.arch, label=args.label)
    if record.get("conditional") and args.label is None:
        log(f"a conditional discriminator ({record['num_classes']} classes): probe it with "
            "--label K")
    write_json(record, args.out)
    return 0
