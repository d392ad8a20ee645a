"""``asgan-probe attack CKPT [CKPT ...]``: FGSM/BIM (or any foolbox attack) robustness of D.

Parse, load, draw samples, call :func:`probes.core.sweep.attack_sweep` (and
:func:`probes.core.sweep.min_flip_eps`), write JSON; a table on stderr, a figure on request.
"""

from __future__ import annotations

import json
from pathlib import Path

from probes.cli._common import add_common, log, parse_eps_list, write_json
from trainers.errors import UserError

NAME = "attack"
HELP = "FGSM/BIM (or any foolbox attack) on discriminators: flip rate and logit shift vs eps"
EXAMPLES = """examples:
  asgan-probe attack runs/b1/ckpt-002000.safetensors runs/a1/ckpt-002000.safetensors \\
      --method fgsm,bim --eps 0,0.5/255,1/255,2/255,4/255,8/255 --population both \\
      --out attack.json --plot attack.png
  asgan-probe attack runs/b1/ckpt-002000.safetensors --transfer-to runs/a1/ckpt-002000.safetensors
  asgan-probe attack runs/a1/ckpt-002000.safetensors --min-eps --min-eps-max 16/255
  asgan-probe attack runs/a1/ckpt-002000.safetensors --method foolbox:L2DeepFoolAttack \\
      --eps 0,0.05,0.1 --foolbox-kwargs '{"steps": 50}'
  asgan-probe attack netD_epoch_24.pth --format authors --data cifar10 \\
      --data-root ~/data/cifar10 --population real

eps is in [0, 1] pixel units (1/255 = one grey level; the paper's "1/255" is 0.5/255 here);
for foolbox L2/L1 attacks it is the radius in that norm, same units. Records: one per
(checkpoint, population, method, eps, evaluated-on); flip rate = share of the samples D got
right that the attack pushes across logit 0; logit shift > 0 = toward the attacked side.
"""

DEFAULT_EPS = "0,0.5/255,1/255,2/255,4/255,8/255"
OWN = ("fgsm", "bim")


def add_arguments(p) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoints to attack")
    p.add_argument("--method", default="fgsm",
                   help="fgsm, bim or foolbox:<AttackName>; several, comma-separated")
    p.add_argument("--eps", default=DEFAULT_EPS,
                   help=f"comma-separated eps in [0, 1] pixel units (default {DEFAULT_EPS})")
    p.add_argument("--population", choices=("real", "fake", "both"), default="both",
                   help="reals pushed toward 'fake', fakes toward 'real', or both")
    p.add_argument("--n", type=int, default=1024, help="samples per population")
    p.add_argument("--steps", type=int, default=None,
                   help="BIM iterations (default 10); passed to foolbox attacks that take it")
    p.add_argument("--step-size", default=None,
                   help="BIM step, pixel units (default 2.5 * eps / steps, capped at eps)")
    p.add_argument("--random-start", action="store_true", help="BIM from a random point (PGD)")
    p.add_argument("--mode", choices=("auto", "eval", "batch"), default="auto",
                   help="BatchNorm statistics: auto = batch for BN discriminators (SPEC 1)")
    p.add_argument("--bn-group", type=int, default=None,
                   help="samples per BatchNorm batch in batch mode (default: the checkpoint's "
                        "training batch size, else 64)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="samples per pass in eval mode (memory only)")
    p.add_argument("--transfer-to", nargs="+", action="extend", default=[], metavar="CKPT2",
                   help="also score the perturbations on these discriminators")
    p.add_argument("--min-eps", action="store_true",
                   help="bisect each sample's minimal flipping eps (fgsm/bim)")
    p.add_argument("--min-eps-max", default=None,
                   help="upper end of the bisection (default: the largest --eps, or 8/255)")
    p.add_argument("--bisect-steps", type=int, default=10, help="bisection iterations")
    p.add_argument("--data", default=None, help="dataset for reals (default: the checkpoint's)")
    p.add_argument("--data-root", default=None, help="folder of user data")
    from probes.io.sources import FORMATS

    p.add_argument("--format", choices=FORMATS, default="asgan",
                   help="file format of every CKPT/CKPT2 (foreign: see probes/io/foreign.py)")
    p.add_argument("--arch", default=None, help="state-dict format: dcgan, resnet or mlp; "
                   "authors: a model-file name, e.g. resnet64_same_sn (default: inferred)")
    p.add_argument("--arch-kwargs", default=None, help="state-dict format: JSON kwargs")
    p.add_argument("--pixel-range", default=None, help="foreign formats: LO,HI (default -1,1)")
    p.add_argument("--foolbox-kwargs", default=None, help="JSON options for foolbox attacks")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the flip-rate figure")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common(p)


# ----------------------------------------------------------------------------- parsing
def _json_obj(text: str | None, flag: str) -> dict:
    if text is None:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"{flag} must be a JSON object, e.g. '{{\"steps\": 20}}'") from None
    if not isinstance(obj, dict):
        raise UserError(f"{flag} must be a JSON object, e.g. '{{\"steps\": 20}}'")
    return obj


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise UserError("empty --method; use fgsm, bim or foolbox:<AttackName>")
    for m in methods:
        if m.startswith("foolbox:"):
            from probes.adapters.foolbox import attack_names

            name = m[len("foolbox:"):]
            if name not in attack_names():
                raise UserError(f"unknown foolbox attack {name!r}; valid: "
                                f"{', '.join(attack_names())}")
        elif m not in OWN:
            raise UserError(f"unknown method {m!r}; use fgsm, bim or foolbox:<AttackName> "
                            "(e.g. foolbox:L2ProjectedGradientDescentAttack)")
    return list(dict.fromkeys(methods))


def _pixel_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"bad --pixel-range {text!r}; write LO,HI e.g. -1,1") from None
    if not hi > lo:
        raise UserError(f"bad --pixel-range {text!r}: HI must exceed LO")
    return lo, hi


def _check_ints(args) -> None:
    for flag, value, least in (("--n", args.n, 1), ("--steps", args.steps, 1),
                               ("--batch-size", args.batch_size, 1),
                               ("--bn-group", args.bn_group, 2),
                               ("--bisect-steps", args.bisect_steps, 0)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be >= {least}, got {value}")


def labels_for(paths: list[str]) -> list[str]:
    """Shortest unique ``parent/stem`` style names for a table and a legend (the same path
    always gets the same name)."""
    unique = list(dict.fromkeys(str(Path(p).resolve()) for p in paths))
    parts = [Path(p).with_suffix("").parts for p in unique]
    names = unique
    for k in range(1, max(len(p) for p in parts) + 1):
        cand = ["/".join(p[-k:]) for p in parts]
        if len(set(cand)) == len(cand):
            names = cand
            break
    by_path = dict(zip(unique, names))
    return [by_path[str(Path(p).resolve())] for p in paths]


# ----------------------------------------------------------------------------- running
def _samples(G, meta, population: str, args, pixel_range, device):
    from probes.io.sources import fakes, reals, to_pixel_range

    if population == "real":
        x = reals(meta, args.n, seed=args.seed, data=args.data, data_root=args.data_root)
        if args.format != "asgan":  # our checkpoints record their data's range as theirs
            x = to_pixel_range(x, _dataset_range(meta, args), pixel_range)
    else:
        if G is None:
            raise UserError(f"{meta.get('source', 'this file')} is a foreign discriminator with "
                            "no generator: use --population real")
        x = fakes(G, meta, args.n, seed=args.seed, device=device)
    shape = meta.get("data", {}).get("shape")
    if shape and list(x.shape[1:]) != list(shape):
        raise UserError(f"the samples have shape {list(x.shape[1:])} but D takes {shape}: pick "
                        "matching --data (and resolution)")
    return x


def _dataset_range(meta, args) -> tuple[float, float]:
    from probes.io.sources import dataset_for

    return tuple(dataset_for(meta, data=args.data, data_root=args.data_root).pixel_range)


def _crafter(method: str, args, fb_kwargs: dict):
    if method in OWN:
        return method
    from probes.adapters.foolbox import accepts, foolbox_crafter

    name = method[len("foolbox:"):]
    kwargs = dict(fb_kwargs)
    if args.steps is not None and "steps" not in kwargs and accepts(name, "steps"):
        kwargs["steps"] = args.steps
    return foolbox_crafter(name, seed=args.seed, **kwargs)


def _progress(total: int, disabled: bool):
    if disabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", leave=False, dynamic_ncols=True, desc="attack")
    return bar, bar.update


def _table(records: list[dict]) -> None:
    head = (f"{'checkpoint':<28} {'pop':<4} {'method':<20} {'mode':<5} {'eps*255':>7} "
            f"{'clean':>6} {'flip':>6} {'shift':>8} {'dloss':>8}")
    log(head)
    log("-" * len(head))
    for r in records:
        name = r["label"] if r["label"] == r["evaluated_on_label"] else (
            f"{r['label']}->{r['evaluated_on_label']}")
        flip = "-" if r["flip_rate"] is None else f"{r['flip_rate']:.3f}"
        method = r["method"].replace("foolbox:", "fb:")[:20]
        log(f"{name[-28:]:<28} {r['population']:<4} {method:<20} {r['mode']:<5} "
            f"{r['eps_255']:>7.2f} {r['clean_accuracy']:>6.3f} {flip:>6} "
            f"{r['mean_logit_shift']:>8.3f} {r['mean_loss_increase']:>8.3f}"
            + ("  !" if r["warning"] else ""))
    if any(r["warning"] for r in records):
        log("! clean accuracy < 0.5: the flip rate covers only the minority D gets right")


def run(args) -> int:
    from probes.core.sweep import attack_sweep, min_flip_eps
    from probes.io.sources import load, resolve_device

    _check_ints(args)
    eps = parse_eps_list(args.eps)
    methods = _methods(args.method)
    step_size = None if args.step_size is None else parse_eps_list(args.step_size)[0]
    steps = 10 if args.steps is None else args.steps
    fb_kwargs = _json_obj(args.foolbox_kwargs, "--foolbox-kwargs")
    arch_kwargs = _json_obj(args.arch_kwargs, "--arch-kwargs") if args.arch_kwargs else None
    pr = _pixel_range(args.pixel_range)
    if args.min_eps and not any(m in OWN for m in methods):
        raise UserError("--min-eps works with --method fgsm or bim")
    eps_max = (parse_eps_list(args.min_eps_max)[0] if args.min_eps_max is not None
               else (max(eps) or 8 / 255))
    pops = ["real", "fake"] if args.population == "both" else [args.population]
    device = resolve_device(args.device)

    def _load(path):
        return load(path, device=device, format=args.format, arch=args.arch,
                    arch_kwargs=arch_kwargs, pixel_range=pr)

    sources = [_load(p) for p in args.checkpoints]
    for path, (G, _, _) in zip(args.checkpoints, sources):
        if G is None and "fake" in pops:
            raise UserError(f"{path} is a foreign discriminator with no generator: use "
                            "--population real")
    targets = [_load(p) for p in args.transfer_to]
    names = labels_for(list(args.checkpoints) + list(args.transfer_to))
    src_names, tgt_names = names[:len(sources)], names[len(sources):]
    passes = len(methods) + (sum(m in OWN for m in methods) if args.min_eps else 0)
    total = len(sources) * len(pops) * args.n * passes
    bar, tick = _progress(total, args.no_progress)
    records, min_eps = [], []
    try:
        for path, label, (G, D, meta) in zip(args.checkpoints, src_names, sources):
            pixel_range = tuple(float(v) for v in meta.get("pixel_range", (-1.0, 1.0)))
            bn_group = args.bn_group or int(meta.get("config", {}).get("batch_size") or 64)
            transfer = {}
            for tpath, tlabel, (_, D2, meta2) in zip(args.transfer_to, tgt_names, targets):
                if tlabel == label:  # a checkpoint is not "transferred" to itself
                    continue
                if meta2.get("data", {}).get("shape") != meta.get("data", {}).get("shape"):
                    raise UserError(f"cannot transfer from {path} to {tpath}: input shapes "
                                    f"{meta.get('data', {}).get('shape')} and "
                                    f"{meta2.get('data', {}).get('shape')} differ")
                transfer[tlabel] = (tpath, D2)
            for pop in pops:
                x = _samples(G, meta, pop, args, pixel_range, device)
                for method in methods:
                    recs = attack_sweep(
                        D, x, eps=eps, population=pop, method=_crafter(method, args, fb_kwargs),
                        steps=steps, step_size=step_size, random_start=args.random_start,
                        seed=args.seed, mode=args.mode, pixel_range=pixel_range,
                        batch_size=args.batch_size, bn_group=bn_group,
                        transfer_to={k: v[1] for k, v in transfer.items()}, progress=tick)
                    for r in recs:
                        on = r.pop("evaluated_on")
                        tpath, tlabel = (path, label) if on == "self" else (transfer[on][0], on)
                        records.append({"checkpoint": str(path), "label": label,
                                        "evaluated_on": str(tpath), "evaluated_on_label": tlabel,
                                        "transfer": on != "self", **r})
                    if args.min_eps and method in OWN:
                        out = min_flip_eps(D, x, population=pop, method=method, eps_max=eps_max,
                                           iters=args.bisect_steps, steps=steps,
                                           step_size=step_size, mode=args.mode,
                                           pixel_range=pixel_range, batch_size=args.batch_size,
                                           bn_group=bn_group, progress=tick)
                        out.pop("per_sample")
                        min_eps.append({"checkpoint": str(path), "label": label, **out})
    finally:
        if bar is not None:
            bar.close()
    _table(records)
    for m in min_eps:
        med = "beyond eps_max" if m["median"] is None else f"{m['median'] * 255:.2f}/255"
        log(f"min eps {m['label']} {m['population']} {m['method']}: median {med}, "
            f"{m['flipped_share'] or 0:.3f} of {m['n_correct']} flipped within "
            f"{m['eps_max'] * 255:.2f}/255")
    settings = {"eps": eps, "methods": methods, "population": args.population, "n": args.n,
                "steps": steps, "step_size": step_size, "random_start": args.random_start,
                "mode": args.mode, "seed": args.seed, "format": args.format,
                "checkpoints": [str(p) for p in args.checkpoints],
                "transfer_to": [str(p) for p in args.transfer_to]}
    result = {"command": "attack", "settings": settings, "records": records}
    if args.min_eps:
        result["min_eps"] = min_eps
    write_json(result, args.out)
    if args.plot:
        from probes.viz.attack import plot_flip_curves

        log(f"wrote {plot_flip_curves(records, args.plot)}")
    return 0
