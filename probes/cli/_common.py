"""Helpers shared by the ``asgan-probe`` verbs: common options, eps lists, JSON output."""

from __future__ import annotations

import json

from probes.io.outputs import log, write_json  # noqa: F401  (the verbs' one import)
from trainers.errors import UserError


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


def add_foreign(p) -> None:
    """The options that read a foreign discriminator file (``probes.io.foreign``)."""
    from probes.io.sources import FORMATS

    p.add_argument("--format", choices=FORMATS, default="asgan",
                   help="file format (foreign: see probes/io/foreign.py)")
    p.add_argument("--arch", default=None, help="state-dict format: dcgan, resnet or mlp; "
                   "authors: a model-file name, e.g. resnet64_same_sn (default: inferred)")


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
    """``"0,0.5/255,1/255"`` -> floats in [0, 1] pixel units (UserError on a bad entry)."""
    from trainers.config import parse_eps

    items = [s for s in text.split(",") if s.strip()]
    if not items:
        raise UserError(f"empty eps list {text!r}; write e.g. --eps 0,1/255,2/255")
    return [parse_eps(s) for s in items]
