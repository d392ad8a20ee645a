"""``asgan-train``: parse, resolve the config, call :func:`trainers.loop.train`.

Every config field is an option (``--eps 1/255``, ``--second-step real``), generated from
:class:`trainers.config.TrainConfig` with the help text (units included) and default its
field declares (:func:`trainers.config.field_help`), so the CLI cannot drift from the config.
User errors print one line and exit 2; JSON (run directory, last snapshot) goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from asgan_base.errors import OneLineParser, UserError
from trainers.config import (
    PRESETS,
    config_fields,
    field_help,
    field_types,
    make_config,
    save_config,
)

EXAMPLES = """examples:
  asgan-train --preset smoke --trainer asgan --out runs/smoke
  asgan-train --data mnist10k --arch dcgan --trainer asgan --steps 2000 --out runs/a1 --seed 0
  asgan-train --resume runs/a1 --steps 4000
  asgan-train --preset paper-cifar10 --data-root ~/data/cifar10 --device cuda --out runs/paper
  asgan-train --preset ring8-mlp --trainer asgan --eps 0.5 --dry-run    # 2-D: a mode's std
"""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="asgan-train", description="Train baseline or AS-GAN models.",
                      epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="named starting config")
    p.add_argument("--out", help="run directory (created; snapshots, stats, samples)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--nproc", type=int, default=1,
                   help="processes for distributed data-parallel training (wraps torchrun)")
    group = p.add_argument_group("config fields (override the preset; defaults shown are "
                                 "TrainConfig's, before a preset)")
    helps, types = field_help(), field_types()
    for name in config_fields():
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                           metavar=_metavar(types[name]),
                           help=helps[name].replace("%", "%%"))  # argparse %-formats help
    return p


def _metavar(kind) -> str:
    """``BOOL``, ``INT``, ``FLOAT`` or ``STR`` from a field's annotation (``"int | None"``)."""
    text = str(kind)
    for name in ("bool", "int", "float"):
        if text.startswith(name):
            return name.upper()
    return "STR"


def main(argv: list[str] | None = None) -> int:
    """Run ``asgan-train``; returns the exit status (0 ok, 2 user error, 130/143 signal).

    SIGINT (Ctrl-C) or SIGTERM: the current iteration finishes, a snapshot of that step is
    written, and the exit status is 128 + the signal number (130 / 143), as a shell reports a
    process killed by it; ``--resume`` continues from there.
    """
    args = build_parser().parse_args(argv)
    overrides = {k: v for k in config_fields() if (v := getattr(args, k)) is not None}
    from trainers.distributed import env_world

    world = env_world()
    tag = f" (rank {os.environ.get('RANK', '?')})" if world > 1 else ""
    agreed = True  # every rank ends here together (see exit_worker)
    try:
        code = _main(args, overrides, argv, world)
    except UserError as e:
        print(f"asgan-train: error{tag}: {e}", file=sys.stderr)
        code, agreed = 2, False
    except KeyboardInterrupt as e:  # trainers.faults.Interrupted: a snapshot is on disk
        signum = getattr(e, "signum", signal.SIGINT)
        where = f" at step {e.step}; snapshot {e.snapshot}" if hasattr(e, "step") else ""
        if world <= 1 or os.environ.get("RANK") == "0":
            print(f"asgan-train: interrupted by {signal.Signals(signum).name}{where}; continue "
                  "with asgan-train --resume RUN_DIR", file=sys.stderr)
        code, agreed = 128 + signum, hasattr(e, "step")  # the loop stopped all ranks at once
    if world > 1:  # a torchrun worker: never returns
        from trainers.distributed import exit_worker

        exit_worker(code, agreed=agreed)
    return code


def _main(args, overrides: dict, argv: list[str] | None, world: int) -> int:
    if args.nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {args.nproc}")
    if world > 1 and args.nproc not in (1, world):
        raise UserError(f"--nproc {args.nproc} inside a torchrun job of {world} processes: "
                        "use either torchrun or --nproc, not both")
    if args.resume:
        if args.preset:
            raise UserError("--resume takes its config from the run; drop --preset")
        from trainers.loop import resume_config

        cfg = resume_config(args.resume, overrides)
        out = args.resume
    else:
        if not args.out and not args.dry_run:
            raise UserError("--out DIR is required (the run directory to create)")
        cfg = make_config(args.preset, overrides)
        out = args.out
    if out and not args.dry_run and world == 1:
        from asgan_base.lock import check_free

        # "in use" first, and before the launcher's start-up; train() takes the lock itself
        # (not here under torchrun: rank 0 may already hold it when another rank gets here)
        check_free(out)
    if out and not args.dry_run and not args.resume:
        from trainers.checkpoint import list_snapshots

        if list_snapshots(out):  # a fresh run must not mix with an old run's snapshots
            raise UserError(f"{out} already holds snapshots of a run; continue it with "
                            f"--resume {out} or choose a new --out")
    if args.dry_run:
        print(save_config(cfg))
        return 0
    if args.nproc > 1 and world == 1:
        if cfg.batch_size % args.nproc:
            raise UserError(f"batch_size {cfg.batch_size} is not divisible by --nproc "
                            f"{args.nproc}: the global batch is split evenly")
        from trainers.distributed import launch
        from trainers.loop import preflight

        preflight(cfg)  # start-up mistakes: one line here, not one per worker + torchrun's

        return launch(argv if argv is not None else sys.argv[1:], args.nproc)
    from trainers.loop import train

    last = train(cfg, out, resume=bool(args.resume), progress=not args.no_progress)
    if world <= 1 or os.environ.get("RANK") == "0":
        print(json.dumps({"run_dir": str(out), "checkpoint": str(last),
                          "steps": cfg.steps}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
