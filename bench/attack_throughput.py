"""Attack throughput: our FGSM and BIM-10 against torchattacks and foolbox on the same D.

The D is the classic DCGAN-32 RGB discriminator (``trainers.loop.build_models``, width 64,
seeded), in eval mode, attacked on a batch of 256 seeded images in [-1, 1], reals pushed
toward "fake" at ``eps`` (pixel units, default 2/255). How the libraries see the same problem:

- both get the two-logit wrapper ``[0, d]`` (class 1 = "real"): its cross-entropy with label 1
  is ``softplus(-d)``, the GAN loss on reals, and an untargeted attack on label 1 pushes
  toward "fake", whose gradient sign is ours (``-sign(grad d)``) wherever it is nonzero;
- torchattacks wants inputs in [0, 1]: its wrapper maps ``x01 -> D(2 * x01 - 1)``, and since our
  eps is in [0, 1] pixel units it is passed unchanged (``alpha`` = our BIM step size too);
  its output is mapped back by ``2 * x01 - 1``;
- foolbox gets ``bounds=(-1, 1)`` and absolute sizes ``2 * eps`` (``abs_stepsize`` likewise).
  foolbox accumulates into D's parameter ``.grad`` (SPEC section 7): ``foolbox`` is the
  out-of-the-box call (parameters trainable, their gradients computed and then zeroed, as a
  user who zeroes grads would pay), ``foolbox frozen`` a copy with frozen parameters (its best
  case). Its ``__call__`` also runs one more forward to report success: part of its cost.

BIM-10: 10 steps of ``min(eps, 2.5 eps / 10)`` (our default step size), projection to the eps
ball then to the pixel range, no random start, in all three. ``ours channels_last`` runs our
unchanged functions on the same D with the inputs in NHWC (``x.contiguous(memory_format=
torch.channels_last)``; D itself untouched): what an NHWC fast path inside ``probes.core.attacks``
would do. Agreement: every batch of adversarial images is compared with ours element by
element (in [-1, 1]), and by the mean logit shift it causes. A gradient element within
rounding of zero can take either sign depending on the summation order (NHWC vs NCHW, the
cross-entropy vs the logit gradient), so a few elements may differ by one step (in BIM, for
the remaining iterations); "agree" means at most 0.1% of elements differ and the mean logit
shifts match to 0.1%.

Per-sample mode (SPEC 1): the same D has BatchNorm, so the bench also times our FGSM sweep
(``attack_sweep``, 4 eps) and the gradient probe (``input_gradients`` with the default
sparsity reducer) in ``frozen`` mode (a clean reference group of 64, the training batch,
whose statistics are held fixed: one extra forward of 64 and a copy of D per call) against the
same calls in ``eval`` mode, on the same images; target: frozen / eval <= 1.1.

Run: ``python -m bench.attack_throughput`` (a couple of minutes on 2 cores); ``--quick`` for a
smoke run.
"""

from __future__ import annotations

import argparse
import copy
import types
import warnings

import torch
from torch import nn

from bench import _common as common
from probes.core.attacks import bim, fgsm
from trainers import make_config
from trainers.loop import build_models

LIBS = ("torchattacks", "foolbox", "foolbox frozen")
TARGETS = {("fgsm", "torchattacks"): 1.2, ("fgsm", "foolbox"): 1.5, ("bim10", "torchattacks"): 1.2}
MODE_TARGET = 1.1  # frozen / eval time of the same sweep or gradient probe
SWEEP_EPS = (0, 1 / 255, 2 / 255, 4 / 255)
AGREE_ATOL = 1e-5  # |ours - theirs| above this is a real difference (a flipped sign)


class TwoLogits(nn.Module):
    """``x -> [0, D(scale * x + shift)]`` as ``(N, 2)`` logits: a classifier for the libraries.

    Cross-entropy with label 1 ("real") is ``softplus(-d)``: the GAN loss on reals.
    ``scale, shift = 2, -1`` maps torchattacks' [0, 1] inputs to D's [-1, 1].
    """

    def __init__(self, D: nn.Module, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.D, self.scale, self.shift = D, scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.D(x * self.scale + self.shift if self.scale != 1.0 else x)  # (N,)
        return torch.stack([torch.zeros_like(d), d], dim=1)  # (N, 2)


def _frozen_copy(D: nn.Module) -> nn.Module:
    D2 = copy.deepcopy(D)
    D2.requires_grad_(False)
    return D2


def build(batch: int, width: int, seed: int = 0):
    """The eval-mode DCGAN-32 RGB D and a seeded batch ``(batch, 3, 32, 32)`` in [-1, 1]."""
    cfg = make_config(None, dict(arch="dcgan", width=width, z_dim=100, seed=seed))
    _, D, _, _, _, _ = build_models(cfg, types.SimpleNamespace(shape=(3, 32, 32)),
                                    torch.device("cpu"))
    D.eval()
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1)) * 2 - 1
    return D, x


def make_cases(D: nn.Module, x: torch.Tensor, *, eps: float, steps: int):
    """name -> (attack, library) -> zero-argument callable returning ``x_adv`` in [-1, 1]."""
    import foolbox as fb
    import torchattacks as ta

    step = eps if steps == 1 else min(eps, 2.5 * eps / steps)  # our bim default, made explicit
    labels = torch.ones(len(x), dtype=torch.long)  # class 1 = "real": attack pushes to "fake"
    x01 = (x + 1) / 2
    x_cl = x.contiguous(memory_format=torch.channels_last)  # (N, 3, 32, 32) stored NHWC
    # the wrappers must be in eval mode too: torchattacks restores the mode it found on the
    # *wrapper* after each call, and a fresh (train-mode) wrapper would put D in train mode
    ta_model = TwoLogits(D, scale=2.0, shift=-1.0).eval()
    ta_fgsm = ta.FGSM(ta_model, eps=eps)
    ta_bim = ta.BIM(ta_model, eps=eps, alpha=step, steps=steps)
    fmodels = {"foolbox": fb.PyTorchModel(TwoLogits(D).eval(), bounds=(-1, 1), device="cpu"),
               "foolbox frozen": fb.PyTorchModel(TwoLogits(_frozen_copy(D)).eval(),
                                                 bounds=(-1, 1), device="cpu")}
    fb_fgsm = fb.attacks.FGSM()
    fb_bim = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=2 * step, steps=steps,
                                                 random_start=False)

    def foolbox_call(attack, fmodel):
        def run():
            _, x_adv, _ = attack(fmodel, x, labels, epsilons=2 * eps)
            D.zero_grad(set_to_none=True)  # what a careful user must add (SPEC section 7)
            return x_adv
        return run

    return {
        "fgsm": {
            "ours": lambda: fgsm(D, x, eps=eps, toward="fake", mode="eval"),
            "ours channels_last": lambda: fgsm(D, x_cl, eps=eps, toward="fake", mode="eval"),
            "torchattacks": lambda: ta_fgsm(x01, labels) * 2 - 1,
            "foolbox": foolbox_call(fb_fgsm, fmodels["foolbox"]),
            "foolbox frozen": foolbox_call(fb_fgsm, fmodels["foolbox frozen"]),
        },
        f"bim{steps}": {
            "ours": lambda: bim(D, x, eps=eps, steps=steps, step_size=step, toward="fake",
                                mode="eval"),
            "ours channels_last": lambda: bim(D, x_cl, eps=eps, steps=steps, step_size=step,
                                              toward="fake", mode="eval"),
            "torchattacks": lambda: ta_bim(x01, labels) * 2 - 1,
            "foolbox": foolbox_call(fb_bim, fmodels["foolbox"]),
            "foolbox frozen": foolbox_call(fb_bim, fmodels["foolbox frozen"]),
        },
    }


def mode_cases(D: nn.Module, x: torch.Tensor, *, group: int = 64) -> dict:
    """``{"<probe> <mode>": callable}``: our sweep and gradient probe, eval vs frozen."""
    from probes.core.gradients import input_gradients
    from probes.core.sweep import attack_sweep

    ref = x[:group]
    return {f"{name} {mode}": (lambda fn=fn, mode=mode: fn(mode))
            for name, fn in (
                ("sweep", lambda mode: attack_sweep(D, x, eps=SWEEP_EPS, mode=mode,
                                                    reference=ref, bn_group=group)),
                ("gradients", lambda mode: input_gradients(D, x, mode=mode, reference=ref)))
            for mode in ("eval", "frozen")}


def agreement(cases: dict, D: nn.Module, x: torch.Tensor) -> dict:
    """Each implementation's ``x_adv`` vs ours, element by element and by the logit shift.

    Per implementation: ``max_abs_diff``, ``mismatch_share`` (elements differing by more than
    ``AGREE_ATOL``), ``shift_rel_gap`` (|mean logit shift - ours| / |ours|) and ``agree``.
    Per attack, ``moved_share``: the elements our attack changed (an attack that does
    nothing would "agree" vacuously).
    """
    def mean_shift(x_adv):
        with torch.no_grad():
            return float((D(x_adv) - D(x)).mean())

    out = {}
    for attack, impls in cases.items():
        ref = impls["ours"]().detach()
        ref_shift = mean_shift(ref)
        out[attack] = {"moved_share": float((ref != x).float().mean()),
                       "mean_logit_shift": ref_shift}
        for name, fn in impls.items():
            if name == "ours":
                continue
            x_adv = fn().detach()
            diff = (x_adv - ref).abs()
            share = float((diff > AGREE_ATOL).float().mean())
            gap = abs(mean_shift(x_adv) - ref_shift) / max(abs(ref_shift), 1e-12)
            out[attack][name] = {"max_abs_diff": float(diff.max()), "mismatch_share": share,
                                 "shift_rel_gap": gap, "agree": share <= 1e-3 and gap <= 1e-3}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.attack_throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p, reps=7)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--eps", type=float, default=2 / 255, help="pixel units (default 2/255)")
    p.add_argument("--steps", type=int, default=10, help="BIM steps (default 10)")
    p.add_argument("--width", type=int, default=64, help="D width (default 64: DCGAN-32)")
    args = p.parse_args(argv)
    common.setup_threads(args.threads)
    batch, width, reps, steps = args.batch, args.width, args.reps, args.steps
    if args.quick:
        batch, width, reps, steps = 16, 8, 2, 3
    warnings.filterwarnings("ignore", category=UserWarning)  # foolbox/torchattacks chatter
    D, x = build(batch, width)
    state = {k: v.clone() for k, v in D.state_dict().items()}
    cases = make_cases(D, x, eps=args.eps, steps=steps)
    agree = agreement(cases, D, x)
    flat = {f"{a} {n}": fn for a, impls in cases.items() for n, fn in impls.items()}
    modes = mode_cases(D, torch.cat([x, x.flip(0)]) if not args.quick else x)
    flat.update(modes)
    inner = {k: (3 if k.startswith("fgsm") else 1) for k in flat}
    common.log(f"[attack_throughput] batch {batch}, D width {width}, eps {args.eps:.5f}, BIM steps "
        f"{steps}, {reps} reps")
    times = common.interleave(flat, reps=reps, warmup=args.warmup, inner=inner,
                       progress=lambda s: common.log(f"[attack_throughput] {s}"))

    # a fair comparison needs every call to have seen the same D: same mode, same weights and
    # BatchNorm statistics, no parameter gradient left behind
    d_unchanged = (not D.training and all(torch.equal(v, state[k])
                                          for k, v in D.state_dict().items())
                   and all(p.grad is None for p in D.parameters()))
    results = {}
    for clock, t in times.items():
        med = common.medians(t)
        r = {"images_per_s": {k: round(batch / v, 1) for k, v in med.items() if k not in modes},
             "speedup": {}, "speedup_channels_last": {},
             "frozen_over_eval": {p: common.pair_ratio(t[f"{p} frozen"], t[f"{p} eval"])
                                  for p in ("sweep", "gradients")}}
        for attack, impls in cases.items():
            # speedup of ours over each other implementation: t_theirs / t_ours per repetition
            for ours, key in (("ours", "speedup"), ("ours channels_last",
                                                     "speedup_channels_last")):
                r[key][attack] = {n: common.pair_ratio(t[f"{attack} {n}"], t[f"{attack} {ours}"])
                                  for n in impls if n != ours}
        results[clock] = r
    head = results[args.clock]
    checks = {}
    for (attack, lib), target in TARGETS.items():
        attack = f"bim{steps}" if attack == "bim10" else attack
        for ours, key in (("ours", "speedup"), ("ours channels_last", "speedup_channels_last")):
            value = head[key][attack][lib]["median"]
            checks[f"{ours} {attack} vs {lib} >="] = {"target": target, "value": value,
                                                      "met": value >= target}
    for probe in ("sweep", "gradients"):
        value = head["frozen_over_eval"][probe]["median"]
        checks[f"{probe} frozen / eval <="] = {"target": MODE_TARGET, "value": value,
                                                "met": value <= MODE_TARGET}
    table = [["attack", "implementation", "images/s", "ours faster by",
              "ours channels_last faster by", "agrees with ours"]]
    for attack, impls in cases.items():
        for name in impls:
            sp = head["speedup"][attack].get(name)
            sp_cl = head["speedup_channels_last"][attack].get(name)
            ag = agree[attack].get(name)
            table.append([attack, name, f"{head['images_per_s'][f'{attack} {name}']:.0f}",
                          common.fmt_ratio(sp) if sp else "-",
                          common.fmt_ratio(sp_cl) if sp_cl else "-",
                          "-" if ag is None else f"{'yes' if ag['agree'] else 'NO'} "
                          f"({ag['mismatch_share']:.0e} of elements differ)"])
    for probe in ("sweep", "gradients"):
        table.append([probe, "frozen / eval (per-sample BatchNorm mode)", "-",
                      common.fmt_ratio(head["frozen_over_eval"][probe]), "-", "-"])
    notes = [f"target {k} {v['target']}: {v['value']:.2f} {common.verdict(v['met'])}"
             for k, v in checks.items()]
    settings = {"batch": batch, "width": width, "eps": args.eps, "bim_steps": steps,
                "reps": reps, "warmup": args.warmup, "clock": args.clock, "quick": args.quick,
                "d_mode": "eval", "population": "reals toward fake"}
    if not d_unchanged:
        notes.append("D changed during the run (mode, buffers or .grad): comparison invalid")
    common.emit("attack_throughput", {"settings": settings, "results": results, "agreement": agree,
                               "d_unchanged": d_unchanged, "targets": checks}, table,
         out=args.out, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
