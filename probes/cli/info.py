"""``asgan-probe info FILE``: what a checkpoint or discriminator file holds (verified), as JSON.

For a discriminator file of another family: the family and format, resolution and channels,
conditional (and its classes), coupling, input range, output shape and the reduction to one
logit per sample, randomness, the upstream class and its recorded arguments, family facts
(e.g. whether an NVlabs pickle's embedded source matches a known release; it is never run),
and ``globals``: every Python global a plain ``torch.load`` / ``pickle.load`` of the file would
import or call (:func:`probes.io.safe_pickle.scan_globals`; nothing is unpickled to list them).
A file that would run code gets one line naming what it would call, exit status 2.
"""

from __future__ import annotations

from asgan_base.errors import UserError
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


def _load_any_label(path: str, args):
    """``load`` with ``--label``; without one, a conditional file is described with class 0
    bound (reported as label None: say which class to probe with --label)."""
    from probes.io.sources import load

    try:
        return load(path, format=args.format, arch=args.arch, label=args.label)
    except UserError as first:
        if args.label is not None:
            raise
        try:
            G, D, meta = load(path, format=args.format, arch=args.arch, label=0)
        except UserError:
            raise first from None
        if not meta.get("family", {}).get("conditional"):
            raise first from None
        meta["family"] = {**meta["family"], "label": None}
        meta["label"] = None
        return G, D, meta


def run(args) -> int:
    from probes.io.safe_pickle import scan_globals
    from probes.io.sources import is_foreign

    G, D, meta = _load_any_label(args.checkpoint, args)
    summary = {k: meta[k] for k in ("format", "step", "pixel_range", "data", "g_spec", "d_spec",
                                    "sha256", "config", "wall_time_s", "torch") if k in meta}
    summary["parameters"] = {"G": None if G is None else sum(p.numel() for p in G.parameters()),
                             "D": sum(p.numel() for p in D.parameters())}
    if is_foreign(meta):
        desc = meta["family"]
        summary.update({k: desc[k] for k in ("family", "resolution", "channels", "conditional",
                                             "num_classes", "label", "coupling", "output",
                                             "randomness", "upstream", "extra")})
        summary["input_range"] = meta["pixel_range"]
        summary["globals"] = scan_globals(args.checkpoint)
        summary["checksum_ok"] = None  # a foreign file carries no checksum to verify
        if desc["conditional"] and args.label is None:
            log(f"a conditional discriminator ({desc['num_classes']} classes): probe it with "
                "--label K")
    else:
        summary["checksum_ok"] = True  # load() raised otherwise
    write_json(summary, args.out)
    return 0
