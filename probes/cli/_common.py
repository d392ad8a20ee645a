"""Helpers shared by the ``asgan-probe`` verbs: common options, eps lists, JSON output."""

from __future__ import annotations

import json

from asgan_base.errors import UserError
from probes.io.outputs import log, write_json  # noqa: F401  (the verbs' one import)


def add_common(p, *, out_help: str = "write JSON here (default: stdout)") -> None:
    p.add_argument("--seed", type=int, default=0, help="seed for sample choice and latents")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default=None, help=out_help)


def add_mode(p) -> None:
    """The one ``--mode`` option of every verb that evaluates D (SPEC section 1)."""
    p.add_argument("--mode", choices=("auto", "frozen", "batch", "eval"), default="auto",
                   help="BatchNorm statistics: frozen = one clean reference group's, held fixed "
                        "(per-sample; what auto means for BN discriminators); batch = the "
                        "batch's own as in a training step (cross-sample terms); eval = running")


def add_reals(p) -> None:
    """The one ``--reals`` option: which reals a probe uses (``probes.io.sources.reals_part``)."""
    p.add_argument("--reals", choices=("held-out", "train", "all"), default=None,
                   help="which reals: default the held-out part when the checkpoint records a "
                        "train/held-out split (reals D never trained on), else all of the data")


def add_foreign(p, *, fakes: bool = True) -> None:
    """The options that say how to read a file (``probes.io.sources.load``): ``--format``
    (default auto), ``--label``, ``--arch``; and ``--fakes`` (a folder of generated images:
    the fakes of a discriminator file that carries no G)."""
    from probes.io.sources import formats

    p.add_argument("--format", choices=formats(), default="auto",
                   help="file format (default auto: recognised from the contents; families: "
                        "see probes/io/families/__init__.py)")
    p.add_argument("--label", type=int, default=None, metavar="K",
                   help="conditional discriminators: the class bound for every sample")
    p.add_argument("--arch", default=None, help="state-dict format: dcgan, resnet or mlp; "
                   "authors: a model-file name, e.g. resnet64_same_sn (default: inferred)")
    if fakes:
        p.add_argument("--fakes", default=None, metavar="DIR",
                       help="fakes from this folder of generated images (any size: center "
                            "square crop, resized to D's side, mapped to its range) instead "
                            "of G; the only fakes of a discriminator file, which has no G")


def add_data(p) -> None:
    """``--data`` / ``--data-root``: where reals come from (a foreign D has no dataset)."""
    p.add_argument("--data", default=None,
                   help="dataset for reals (default: the checkpoint's; for a discriminator "
                        "file e.g. imagefolder with --data-root DIR)")
    p.add_argument("--data-root", default=None,
                   help="folder of user data (imagefolder: any images, resized to D's side)")


def json_obj(text: str | None, flag: str) -> dict:
    """A JSON object option (``--foolbox-kwargs '{"steps": 20}'``); {} when absent."""
    if text is None:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        raise UserError(f"{flag} must be a JSON object, e.g. '{{\"steps\": 20}}'")
    return obj


def check_at_least(**values: tuple[int | None, int]) -> None:
    """UserError naming the first option below its minimum: ``check_at_least(n=(args.n, 1))``."""
    for name, (value, least) in values.items():
        if value is not None and value < least:
            raise UserError(f"--{name.replace('_', '-')} must be >= {least}, got {value}")


def parse_eps_list(text: str) -> list[float]:
    """``"0,0.5/255,1/255"`` or ``"0,0.5,1.5"`` -> floats >= 0, in the eps unit of the
    checkpoint they are applied to (:mod:`asgan_base.eps`; the measure checks each unit's range).
    A UserError on a bad entry."""
    from asgan_base.eps import parse_list

    return parse_list(text)
