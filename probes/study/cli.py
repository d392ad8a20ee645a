"""``asgan-study``: a registered, seed-paired GAN study from a plan file (TOML,
:mod:`probes.study.plan`).

    asgan-study plan PLAN [--commands] [--only GROUP[/ARM],...]
    asgan-study register PLAN
    asgan-study run PLAN [--launcher local|slurm] [--jobs 2] [--max-minutes M] [--only ...]
    asgan-study verify PLAN RUN [--any-commit] [--keep DIR]   (also: run PLAN --verify RUN)
    asgan-study measure PLAN --out DIR
    asgan-study report PLAN --out DIR

``verify`` retrains one shipped run (``GROUP/ARM/seed<k>``) from its recorded command and
commit in a temporary folder and prints whether its final weights' SHA-256 is identical to
the recorded one (:func:`probes.study.engine.verify`).

Paths in the plan are relative to ``--root`` (default: the plan's folder). Exit status: 0, 1
when a run failed or ``verify`` found different weights, 2 for a bad plan or option (one line,
no traceback), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal

from asgan_base.errors import OneLineParser, UserError, one_line_errors


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="asgan-study", description=__doc__.splitlines()[0],
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True, parser_class=OneLineParser)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("plan", help="the study's plan file (TOML)")
        sp.add_argument("--root", default=None,
                        help="folder the plan's paths are relative to (default: the plan's)")
        return sp

    sp = verb("plan", "every run in work order: command, estimated cost, size and state")
    sp.add_argument("--commands", action="store_true", help="print each run's command")
    sp.add_argument("--only", default=None, help="comma-separated GROUP or GROUP/ARM")
    verb("register", "freeze the claims (their SHA-256 and the code commit) before any run")
    sp = verb("run", "train what is missing and ship each finished run (resumable sittings)")
    sp.add_argument("--only", default=None, help="comma-separated GROUP or GROUP/ARM")
    sp.add_argument("--max-minutes", type=float, default=None,
                    help="end the sitting after M minutes (running runs snapshot and stop)")
    sp.add_argument("--launcher", default="local", help="local (default) or slurm")
    sp.add_argument("--jobs", type=int, default=2, help="local: runs in parallel (1 thread each)")
    sp.add_argument("--nice", type=int, default=10, help="local: niceness of the runs")
    sp.add_argument("--folder", default=None,
                    help="slurm: submitit's folder (default <raw>/slurm)")
    sp.add_argument("--partition", default=None, help="slurm: partition")
    sp.add_argument("--time-min", type=int, default=60, help="slurm: time limit per task (min)")
    sp.add_argument("--cpus-per-task", type=int, default=1, help="slurm: CPUs per task")
    sp.add_argument("--gpus-per-task", type=int, default=0, help="slurm: GPUs per task")
    sp.add_argument("--array-parallelism", type=int, default=32,
                    help="slurm: tasks of the array running at once")
    sp.add_argument("--verify", default=None, metavar="RUN",
                    help="instead of a sitting: asgan-study verify PLAN RUN")
    sp.add_argument("--any-commit", action="store_true", help=argparse.SUPPRESS)
    sp.add_argument("--keep", default=None, help=argparse.SUPPRESS)
    sp = verb("verify", "retrain one shipped run from its recorded command and commit, and "
              "check its final weights' SHA-256 against the recorded one")
    sp.add_argument("run", help="GROUP/ARM/seed<k>")
    sp.add_argument("--any-commit", action="store_true",
                    help="retrain with this checkout when the recorded commit is not in the "
                         "repository (the answer then says nothing about the recorded code)")
    sp.add_argument("--keep", default=None,
                    help="retrain in this new folder and keep it (default: a temporary one)")
    for name, help in (("measure", "measure every shipped run (cached in DIR/measures.json)"),
                       ("report", "measure, then write DIR/report.md with the claims tables")):
        sp = verb(name, help)
        sp.add_argument("--out", required=True, help="output folder")
        sp.add_argument("--n-quality", type=int, default=2000, help="image: samples for FD")
        sp.add_argument("--n-stacked", type=int, default=26_000, help="stacked: samples")
        sp.add_argument("--n-mixture", type=int, default=2500, help="mixture: samples")
        sp.add_argument("--seed", type=int, default=0, help="seed of the measurements")
    return p


def _launcher_options(args) -> dict:
    from probes.study.launchers import OPTIONS

    names = OPTIONS.get(args.launcher, ())
    opts = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if args.launcher == "slurm" and "folder" in names and opts.get("folder") is None:
        opts.pop("folder", None)
    return opts


def run(args) -> int:
    from probes.study import engine

    plan = engine.load(args.plan, args.root)
    say = lambda m: print(m, flush=True)  # noqa: E731
    if args.verb == "plan":
        engine.print_table(plan, engine.select(plan, args.only), commands=args.commands)
        return 0
    if args.verb == "register":
        r = engine.register(plan)
        print(json.dumps({"registered": len(r["claims"]), "claims_sha256":
                          r["claims_sha256"]["*"], "code_commit": r["code_commit"],
                          "file": str(engine.registration_file(plan))}))
        return 0
    if args.verb == "verify" or (args.verb == "run" and args.verify):
        name = args.run if args.verb == "verify" else args.verify
        r = engine.verify(plan, engine.find_run(plan, name), any_commit=args.any_commit,
                          keep=args.keep, say=say)
        print(f"{r['run']}: {'identical' if r['identical'] else 'differs'} ({r['compared']}: "
              f"recorded {r['recorded'][:16]}, retrained {r['retrained'][:16] or 'none'})")
        return 0 if r["identical"] else 1
    if args.verb == "run":
        if args.jobs < 1 or (args.max_minutes is not None and not args.max_minutes > 0):
            raise UserError("--jobs must be >= 1 and --max-minutes > 0")
        from probes.study.launchers import launcher

        launcher(args.launcher)  # an unknown launcher fails before anything starts
        if args.launcher == "slurm" and args.folder is None:
            args.folder = str(plan.root / plan.raw / "slurm")
        # SIGTERM (kill, a scheduler) ends the sitting as Ctrl-C does: runs snapshot and stop
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        res = engine.sitting(plan, engine.select(plan, args.only),
                             launcher_name=args.launcher, options=_launcher_options(args),
                             max_minutes=args.max_minutes, say=say)
        print(json.dumps({k: len(v) for k, v in res.items()}))
        return 1 if res["failed"] else 0
    kw = {"n_quality": args.n_quality, "n_stacked": args.n_stacked,
          "n_mixture": args.n_mixture, "seed": args.seed}
    if args.verb == "measure":
        tables = engine.measure(plan, args.out, say=say, **kw)
        print(json.dumps({g: {a: len(s) for a, s in t.items()} for g, t in tables.items()}))
        return 0
    print(engine.write_report(plan, args.out, **kw))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return one_line_errors(f"asgan-study {args.verb}", lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
