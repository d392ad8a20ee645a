"""``asgan-probe <verb> ...``: one CLI over the probe library.

Each verb lives in its own module of this package and defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; this file only collects them into the
``VERBS`` registry and turns user errors into one line on stderr with exit status 2.
JSON goes to ``--out`` or stdout, human logs to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

from asgan_base.errors import OneLineParser, one_line_errors


def _verbs() -> dict:
    mods = (importlib.import_module(f"{__name__}.{m.name}")
            for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return {mod.NAME: mod for mod in sorted(mods, key=lambda m: m.NAME)}


VERBS = _verbs()


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="asgan-probe", description="Probe GAN discriminators: attacks, "
                      "input gradients, saliency, coverage, quality, reports.")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB",
                           parser_class=OneLineParser)
    for name, mod in VERBS.items():
        sp = sub.add_parser(name, help=mod.HELP, description=mod.HELP,
                            epilog=getattr(mod, "EXAMPLES", None),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(sp)
        sp.add_argument("--checkpoints", metavar="DIR", default=None, dest="checkpoints_dir",
                        help="folder of the shipped checkpoints (MANIFEST.json, shipped/; "
                             "default: $ASGAN_PROBE_CHECKPOINTS, else checkpoints/ of this "
                             "checkout)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def call() -> int:
        if args.checkpoints_dir is not None:  # not `checkpoints`: verbs' positional CKPTs
            from asgan_base.manifest import use_checkpoints_dir

            use_checkpoints_dir(args.checkpoints_dir)
        return VERBS[args.verb].run(args)

    return one_line_errors(f"asgan-probe {args.verb}", call)


if __name__ == "__main__":
    raise SystemExit(main())
