"""``asgan-probe attack CKPT [CKPT ...]``: FGSM/BIM/PGD-L2 (or any foolbox attack) robustness of D.

Parse, call :func:`probes.measures.attack.attack`, write JSON; a table on stderr, a figure on
request. Defaults and the method names are read from :mod:`probes.measures.attack` (and its
registry), not repeated here.
"""

from __future__ import annotations

from asgan_base.errors import UserError
from probes.cli._common import (
    add_common,
    add_data,
    add_foreign,
    add_mode,
    add_reals,
    check_at_least,
    json_obj,
    log,
    parse_eps_list,
    write_json,
)
from probes.core.sweep import ATTACKS
from probes.measures import attack as measure

NAME = "attack"
HELP = ("FGSM/BIM/PGD-L2 (or any foolbox attack) on discriminators: flip rate and logit shift "
        "vs eps")
EXAMPLES = """examples:
  asgan-probe attack runs/b1/ckpt-002000.safetensors runs/a1/ckpt-002000.safetensors \\
      --method fgsm,bim --eps 0,0.5/255,1/255,2/255,4/255,8/255 --population both \\
      --out attack.json --plot attack.png
  asgan-probe attack runs/b1/ckpt-002000.safetensors --transfer-to runs/a1/ckpt-002000.safetensors
  asgan-probe attack runs/a1/ckpt-002000.safetensors --min-eps --min-eps-max 16/255
  asgan-probe attack runs/a1/ckpt-002000.safetensors --method pgd-l2 --eps 0,0.05,0.1 \\
      --steps 20
  asgan-probe attack runs/ring/ckpt-005000.safetensors --eps 0,0.5,1.5   # 2-D: a mode's std
  asgan-probe attack runs/a1/ckpt-002000.safetensors --method foolbox:L2DeepFoolAttack \\
      --eps 0,0.05,0.1 --foolbox-kwargs '{"steps": 50}'
  asgan-probe attack netD_epoch_24.pth --data cifar10 --data-root ~/data/cifar10 \\
      --population real                        # format recognised: the AS-GAN authors' netD
  asgan-probe attack network-snapshot.pkl --label 3 --data imagefolder --data-root ~/reals \\
      --fakes ~/generated                      # a conditional D file, class 3; no G: --fakes

eps is in the unit each checkpoint records (asgan_base.eps): images in [0, 1] pixel units
(1/255 = one grey level; the paper's "1/255" is 0.5/255 here), the 2-D mixtures (ring8,
grid25) in a mode's std (1 = one std per coordinate; at most a step of the plotting box);
for pgd-l2 and foolbox L2/L1 attacks it is the radius in that norm, same units (the L2 norm
of the whole perturbation divided by the range width: the record's mean_l2 is at most eps).
Default eps: 0,0.5/255,1/255,2/255,4/255,8/255 on images, 0,0.25,0.5,1,1.5 std on the
mixtures. Records: one per (checkpoint, population, method, eps, evaluated-on); flip rate =
share of the samples D got right that the attack pushes across logit 0; logit shift > 0 =
toward the attacked side.
"""


def add_arguments(p) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoints to attack")
    methods = "; ".join(f"{k}: {a.help}" for k, a in ATTACKS.items())
    p.add_argument("--method", default="fgsm",
                   help=f"{measure.METHODS}; several, comma-separated ({methods})")
    p.add_argument("--eps", default=None,
                   help="comma-separated eps in the checkpoint's unit, radii in the method's "
                        "norm: pixel (0,1/255,2/255) or a mode's std (0,0.5,1.5) (default: "
                        "the unit's grid, see below)")
    p.add_argument("--population", choices=("real", "fake", "both"), default="both",
                   help="reals pushed toward 'fake', fakes toward 'real', or both")
    p.add_argument("--n", type=int, default=measure.N,
                   help=f"samples per population (default {measure.N})")
    p.add_argument("--steps", type=int, default=measure.STEPS,
                   help=f"iterations of bim and pgd-l2 (default {measure.STEPS}); passed to "
                        "foolbox attacks that take it")
    p.add_argument("--step-size", default=None,
                   help="bim/pgd-l2 step length, eps units in the method's norm (default "
                        "2.5 * eps / steps, capped at eps)")
    p.add_argument("--random-start", action="store_true",
                   help="bim/pgd-l2 from a uniform point of the eps ball (PGD)")
    p.add_argument("--transfer-to", nargs="+", action="extend", default=[], metavar="CKPT2",
                   help="also score the perturbations on these discriminators")
    p.add_argument("--min-eps", action="store_true",
                   help="bisect each sample's minimal flipping eps ("
                        f"{', '.join(k for k, a in ATTACKS.items() if a.min_eps)})")
    p.add_argument("--min-eps-max", default=None,
                   help="upper end of the bisection, in eps units (default: the largest --eps, "
                        "or the top of the unit's grid: 8/255, 1.5 std)")
    p.add_argument("--bisect-steps", type=int, default=measure.BISECT_STEPS,
                   help=f"bisection iterations (default {measure.BISECT_STEPS})")
    _add_inputs(p)
    p.add_argument("--foolbox-kwargs", default=None, help="JSON options for foolbox attacks")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the flip-rate figure")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common(p)


def _add_inputs(p) -> None:
    """Where the samples come from and how D is evaluated on them."""
    add_mode(p)
    p.add_argument("--bn-group", type=int, default=None,
                   help="BatchNorm group: the frozen reference group / batch-mode batches "
                        "(default: the checkpoint's training batch size, else 64)")
    p.add_argument("--batch-size", type=int, default=measure.BATCH_SIZE,
                   help="samples per pass in per-sample modes (memory only; default "
                        f"{measure.BATCH_SIZE})")
    add_data(p)
    add_reals(p)
    add_foreign(p)
    p.add_argument("--arch-kwargs", default=None, help="state-dict format: JSON kwargs")
    p.add_argument("--pixel-range", default=None, help="foreign formats: LO,HI (default -1,1)")


# ----------------------------------------------------------------------------- parsing
def _methods(text: str) -> list[str]:
    methods = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not methods:
        raise UserError(f"empty --method; use {measure.METHODS}")
    return methods


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


def _options(args) -> dict:
    """The keyword arguments of :func:`probes.measures.attack.attack`, checked."""
    check_at_least(n=(args.n, 1), steps=(args.steps, 1), batch_size=(args.batch_size, 1),
                   bn_group=(args.bn_group, 2), bisect_steps=(args.bisect_steps, 0))
    methods = _methods(args.method)
    bisectable = [k for k, a in ATTACKS.items() if a.min_eps]
    if args.min_eps and not any(m in bisectable for m in methods):
        raise UserError(f"--min-eps works with --method {', '.join(bisectable)}")
    def first(text):
        return None if text is None else parse_eps_list(text)[0]

    return dict(
        eps=None if args.eps is None else parse_eps_list(args.eps), methods=methods, n=args.n,
        populations=["real", "fake"] if args.population == "both" else [args.population],
        steps=args.steps, step_size=first(args.step_size),
        random_start=args.random_start, mode=args.mode, seed=args.seed,
        batch_size=args.batch_size, bn_group=args.bn_group, transfer_to=args.transfer_to,
        min_eps=args.min_eps, eps_max=first(args.min_eps_max), bisect_steps=args.bisect_steps,
        data=args.data, data_root=args.data_root, reals=args.reals, format=args.format,
        label=args.label, fakes=args.fakes, arch=args.arch,
        arch_kwargs=json_obj(args.arch_kwargs, "--arch-kwargs") or None,
        foreign_range=_pixel_range(args.pixel_range),
        foolbox_kwargs=json_obj(args.foolbox_kwargs, "--foolbox-kwargs") or None,
        device=args.device)


def _table(records: list[dict]) -> None:
    head = (f"{'checkpoint':<28} {'pop':<4} {'method':<20} {'mode':<6} {'eps':>9} "
            f"{'clean':>6} {'flip':>6} {'shift':>8} {'dloss':>8}")
    log(head)
    log("-" * len(head))
    for r in records:
        name = r["label"] if r["label"] == r["evaluated_on_label"] else (
            f"{r['label']}->{r['evaluated_on_label']}")
        flip = "-" if r["flip_rate"] is None else f"{r['flip_rate']:.3f}"
        method = r["method"].replace("foolbox:", "fb:")[:20]
        log(f"{name[-28:]:<28} {r['population']:<4} {method:<20} {r['mode']:<6} "
            f"{r['eps_label']:>9} {r['clean_accuracy']:>6.3f} {flip:>6} "
            f"{r['mean_logit_shift']:>8.3f} {r['mean_loss_increase']:>8.3f}"
            + ("  !" if r["warning"] else ""))
    if any(r["warning"] for r in records):
        log("! clean accuracy < 0.5: the flip rate covers only the minority D gets right")


def _min_eps_lines(rows: list[dict]) -> None:
    from asgan_base.eps import EpsUnit

    for m in rows:
        unit = EpsUnit.from_dict(m["eps_unit"])
        med = "beyond eps_max" if m["median"] is None else unit.label(m["median"], 3)
        log(f"min eps {m['label']} {m['population']} {m['method']} ({m['mode']}): median "
            f"{med}, {m['flipped_share'] or 0:.3f} of {m['n_correct']} flipped within "
            f"{unit.label(m['eps_max'])}")


def run(args) -> int:
    options = _options(args)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(unit="img", leave=False, dynamic_ncols=True, desc="attack")
    try:
        result = measure.attack(args.checkpoints, progress=None if bar is None else bar.update,
                        **options)
    finally:
        if bar is not None:
            bar.close()
    _table(result["records"])
    _min_eps_lines(result.get("min_eps", []))
    write_json(result, args.out)
    if args.plot:
        from probes.viz.attack import plot_flip_curves

        log(f"wrote {plot_flip_curves(result['records'], args.plot)}")
    return 0
