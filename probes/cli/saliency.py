"""``asgan-probe saliency CKPT --method ig --out sal.png``: captum attribution maps of D."""

from __future__ import annotations

from asgan_base.errors import UserError
from probes.cli._common import add_data, add_foreign, add_mode, log, write_json

NAME = "saliency"
HELP = ("captum attributions of D's raw logit (saliency, ig, smoothgrad, inputxgrad, guided) "
        "on reals or fakes: a figure (--out) and a JSON summary (--json or stdout)")
EXAMPLES = """examples:
  asgan-probe saliency runs/a1/ckpt-002000.safetensors --method ig --n 16 --out sal.png
  asgan-probe saliency runs/a1/ckpt-002000.safetensors --method saliency,ig,smoothgrad \\
      --population fake --out sal.png --json sal.json

Integrated gradients start from a black image (--baseline black: every pixel at the low end
of the pixel range) unless --baseline mid. SmoothGrad's --noise is the noise std in [0, 1]
pixel units. captum's GuidedBackprop changes nn.ReLU modules only, so on LeakyReLU
discriminators (DCGAN) it equals the plain gradient.
"""


def add_arguments(p) -> None:
    from probes.measures import saliency as measure

    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--method", default="saliency",
                   help="comma-separated: saliency, ig, smoothgrad, inputxgrad, guided, or all")
    p.add_argument("--n", type=int, default=measure.N, help=f"images (default {measure.N})")
    p.add_argument("--population", choices=("real", "fake"), default="real")
    add_mode(p)
    add_data(p)
    add_foreign(p)
    p.add_argument("--baseline", choices=("black", "mid"), default="black",
                   help="integrated-gradients baseline image")
    p.add_argument("--steps", type=int, default=measure.IG_STEPS,
                   help=f"integrated-gradients steps (default {measure.IG_STEPS})")
    p.add_argument("--noise", type=float, default=measure.NOISE,
                   help=f"SmoothGrad noise std in [0, 1] pixel units (default {measure.NOISE})")
    p.add_argument("--nt-samples", type=int, default=measure.NT_SAMPLES,
                   help=f"SmoothGrad noisy copies (default {measure.NT_SAMPLES})")
    p.add_argument("--out", required=True, metavar="PNG", help="figure to write")
    p.add_argument("--json", default=None, help="write the JSON summary here (default: stdout)")
    p.add_argument("--seed", type=int, default=0, help="seed for samples and SmoothGrad noise")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def _methods(text: str) -> list[str]:
    from probes.adapters.captum import METHODS

    names = list(METHODS) if text.strip() == "all" else [s.strip() for s in text.split(",")
                                                         if s.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise UserError(f"unknown --method {', '.join(bad) or text!r}: choose from "
                        f"{', '.join(METHODS)} (comma-separated) or all")
    return names


def run(args) -> int:
    from probes.io.sources import resolve_device
    from probes.measures.saliency import saliency
    from probes.viz.gradients import plot_saliency

    methods = _methods(args.method)
    if args.n < 1 or args.steps < 1 or args.nt_samples < 1 or not 0 <= args.noise <= 1:
        raise UserError("--n, --steps and --nt-samples must be >= 1 and --noise in [0, 1]")
    result, x, attrs = saliency(
        args.checkpoint, methods=methods, n=args.n, population=args.population, mode=args.mode,
        baseline=args.baseline, steps=args.steps, noise=args.noise,
        nt_samples=args.nt_samples, seed=args.seed, device=resolve_device(args.device),
        data=args.data, data_root=args.data_root, format=args.format, label=args.label,
        fakes=args.fakes, figure=args.out)
    for row in result["methods"]:
        log(f"{row['method']:<11} mode {row['mode']:<6} "
            f"hoyer {row['measures']['hoyer']['mean']:.3f}")
    title = (f"{result['label']}, step {result['step']}: attributions of D's raw logit on "
             f"{args.population} inputs (clip to mean ± 3 std, mean |a| over channels)")
    # at most 16 columns stay readable; the JSON summarises all --n images
    plot_saliency(x, attrs, args.out, pixel_range=tuple(result["pixel_range"]),
                  n=min(args.n, 16), title=title)
    log(f"wrote {args.out}")
    write_json(result, args.json)
    return 0
