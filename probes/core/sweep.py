"""Robustness curves of a GAN discriminator: attack sweeps over eps, minimal flipping eps, transfer.

For one population (reals, attacked toward "fake"; or generated samples, attacked toward
"real") and a list of eps (radii in the attack's norm, in the data's eps unit: [0, 1] pixel
units for images), :func:`attack_sweep` crafts the perturbations of an attack registered in
:data:`ATTACKS` (FGSM, BIM, PGD-L2) or of any crafter (e.g. a foolbox attack) on D and reports,
per eps:

- ``clean_accuracy``: share of samples on the right side of logit 0 before the attack
  (reals: ``D(x) > 0``; fakes: ``D(x) < 0``);
- ``flip_rate``: of the samples D got right, the share the attack pushes across logit 0
  (``None`` when D got none right);
- ``mean_logit_shift`` / ``median_logit_shift``: ``D(x) - D(x_adv)`` for reals and
  ``D(x_adv) - D(x)`` for fakes, i.e. **positive = moved in the attacked direction**. A
  difference, hence offset-free: comparable across checkpoints whose logits sit at different
  levels;
- ``mean_loss_increase``: increase of the population's own loss term, ``softplus(-D(x))`` for
  reals and ``softplus(D(x))`` for fakes (the terms of ``L_D``, SPEC section 1);
- ``mean_linf`` / ``mean_l2``: the perturbation's norms in eps units (pixel units: divided by
  ``hi - lo``; with ``eps_scale``, e.g. a 2-D mixture's mode std, divided by it);
- ``mode``: the probe mode in force (SPEC section 1), and a ``warning`` when the clean accuracy
  is below 0.5 (the flip rate then describes a minority of the samples).

With ``transfer_to``, the same perturbations are also scored on other discriminators (the
baseline-vs-AS-GAN transfer the paper implies). :func:`min_flip_eps` bisects, per sample, the
smallest eps that flips D's decision.

Per-sample numbers: in the default mode for BatchNorm discriminators (``frozen``, SPEC section
1) the BatchNorm statistics of one clean reference group are held fixed, so each sample is
crafted, scored and bisected on its own and ``batch_size`` only sets memory use; ``eval`` (no
BatchNorm) is per-sample too. The collective ``batch`` mode normalises with the statistics of
the batch as perturbed, so samples are processed in fixed groups of about ``bn_group`` (the
training batch size), whatever ``batch_size`` is. Results are gathered on the device and copied to
the host once at the end.

Torch and numpy only.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from probes.core.attacks import (
    NORMS,
    default_step_size,
    direction,
    eps_to_abs,
    iterate,
    linf_step,
    logit_grad,
)
from probes.core.modes import probe_model, reference_group, resolve_mode

# population -> (attack direction, label sign s): D is right on a sample when s * D(x) > 0
POPULATIONS = {"real": ("fake", 1.0), "fake": ("real", -1.0)}
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

Crafter = Callable[..., tuple[torch.Tensor | None, list[torch.Tensor]]]


# ----------------------------------------------------------------------------- crafters
def craft_fgsm(D: nn.Module, x: torch.Tensor, eps: Sequence[float], *, toward: str,
               pixel_range: tuple[float, float], eps_scale: float | None = None, **_: Any
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """FGSM at every eps from **one** gradient (the sign does not depend on eps).

    Returns ``(clean logits (N,), [x_adv per eps])``; equal to :func:`probes.core.attacks.fgsm`.
    """
    lo, hi = pixel_range
    logits, g = logit_grad(D, x)
    s = direction(toward)
    steps = [s * eps_to_abs(e, pixel_range, scale=eps_scale) for e in eps]
    return logits, [x if e == 0 else linf_step(x, g, a, lo, hi) for e, a in zip(eps, steps)]


def craft_pgd(D: nn.Module, x: torch.Tensor, eps: Sequence[float], *, toward: str,
              pixel_range: tuple[float, float], norm: str = "linf", steps: int = 10,
              step_size: float | None = None, noise: torch.Tensor | None = None,
              stack: bool = False, eps_scale: float | None = None, **_: Any
              ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """BIM (``norm="linf"``) or PGD-L2 (``"l2"``) at every eps. With ``stack`` (per-sample
    modes only) all eps run as one batch of ``len(eps) * N`` samples with per-sample radii: one
    forward/backward per step instead of one per eps and step.

    Args:
        noise: a point of the unit ball per sample (``Norm.noise``), shape of ``x``, for a
            random start (scaled by each eps, so every eps starts from the same relative point);
            None = start at ``x``.

    Returns:
        ``(clean logits (N,) or None (random start), [x_adv per eps])``; equal to
        :func:`probes.core.attacks.pgd`.
    """
    lo, hi = pixel_range
    hooks = NORMS[norm]
    todo = [i for i, e in enumerate(eps) if e > 0]
    out = [x] * len(eps)
    if not todo:
        return None, out
    radii = [eps_to_abs(eps[i], pixel_range, scale=eps_scale) for i in todo]
    alphas = [eps_to_abs(default_step_size(eps[i], steps) if step_size is None else step_size,
                         pixel_range, scale=eps_scale) for i in todo]
    if stack and len(todo) > 1:
        n, k = x.shape[0], len(todo)
        x0 = x.repeat(k, *([1] * (x.dim() - 1)))  # (k * N, ...): eps-major
        # per-sample sizes in absolute units already: convert (N,) -> (N, 1, ...) only
        radius = torch.tensor(radii).repeat_interleave(n).to(x0).view(-1, *[1] * (x.dim() - 1))
        alpha = torch.tensor(alphas).repeat_interleave(n).to(x0).view(-1, *[1] * (x.dim() - 1))
        start = x0 if noise is None else (x0 + radius * noise.repeat(k, *([1] * (x.dim() - 1)))
                                          ).clamp_(lo, hi)
        adv, logits = iterate(D, x0, start, radius=radius, alpha=alpha, steps=steps,
                              toward=toward, pixel_range=pixel_range, norm=hooks)
        for j, i in enumerate(todo):
            out[i] = adv[j * n:(j + 1) * n]
        return (None if noise is not None else logits[:n]), out
    clean = None
    for i, r, a in zip(todo, radii, alphas):
        start = x if noise is None else (x + r * noise).clamp_(lo, hi)
        out[i], logits = iterate(D, x, start, radius=r, alpha=a, steps=steps, toward=toward,
                                 pixel_range=pixel_range, norm=hooks)
        clean = logits if clean is None and noise is None else clean
    return clean, out


# ----------------------------------------------------------------------------- the registry
class Attack(NamedTuple):
    """One attack by name: everything the sweep, the minimal-eps bisection, the measure
    (:func:`probes.measures.attack.attack`) and the CLI read about it.

    Attributes:
        crafter: ``f(D, x, eps list, *, toward, pixel_range, norm, steps, step_size, noise,
            stack, eps_scale) -> (clean logits or None, [x_adv per eps])``.
        norm: the norm eps is a radius in (:data:`probes.core.attacks.NORMS`).
        iterative: ``steps``, ``step_size`` and ``random_start`` apply (else one gradient).
        min_eps: :func:`min_flip_eps` can bisect it.
        steps: default iterations (1 for a one-gradient attack).
        help: one line for ``--help`` and the docs.
    """

    crafter: Crafter
    norm: str
    iterative: bool
    min_eps: bool
    steps: int
    help: str


ATTACKS: dict[str, Attack] = {
    "fgsm": Attack(craft_fgsm, "linf", False, True, 1,
                   "one signed-gradient step of eps (L-inf)"),
    "bim": Attack(craft_pgd, "linf", True, True, 10,
                  "iterated signed-gradient steps in the L-inf ball (PGD with --random-start)"),
    "pgd-l2": Attack(craft_pgd, "l2", True, True, 10,
                     "normalized-gradient steps in the L2 ball of radius eps (PGD-L2)"),
}
"""Registered attacks. Adding one: a crafter (or a :class:`probes.core.attacks.Norm` for
:func:`craft_pgd`) and one entry here; the sweep, :func:`min_flip_eps`, the measure and the
CLI's ``--method`` read this table."""


def _crafter(method: str | Crafter) -> tuple[Crafter, str, Attack | None]:
    if callable(method):
        return method, getattr(method, "method", getattr(method, "__name__", "custom")), None
    if method not in ATTACKS:
        raise ValueError(f"unknown method {method!r}: choose one of {sorted(ATTACKS)} or pass "
                         "a crafter (e.g. probes.adapters.foolbox.foolbox_crafter)")
    rec = ATTACKS[method]
    return functools.partial(rec.crafter, norm=rec.norm), method, rec


# ----------------------------------------------------------------------------- helpers
def groups(n: int, size: int) -> list[slice]:
    """``ceil(n / size)`` contiguous slices of nearly equal length (they differ by at most one):
    no tiny last group, whose batch statistics would be meaningless in ``batch`` mode."""
    if size < 1:
        raise ValueError(f"group/batch size must be >= 1, got {size}")
    k = max(1, math.ceil(n / size))
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _population(population: str) -> tuple[str, float]:
    if population not in POPULATIONS:
        raise ValueError(f"population must be one of {sorted(POPULATIONS)}, got {population!r}")
    return POPULATIONS[population]


def _device(D: nn.Module) -> torch.device:
    p = next(iter(D.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _unique(modules: Mapping[str, nn.Module]) -> list[nn.Module]:
    seen: dict[int, nn.Module] = {}
    for m in modules.values():
        seen.setdefault(id(m), m)
    return list(seen.values())


def _score(T: nn.Module, xs: list[torch.Tensor], eps: Sequence[float], clean: torch.Tensor,
           batch_mode: bool) -> torch.Tensor:
    """Logits of T on every x_adv: ``(len(eps), N)``. eps = 0 copies the clean logits; in eval
    mode all eps go through one forward (the samples do not interact)."""
    out = clean.new_empty(len(eps), clean.shape[0])
    todo = [i for i, e in enumerate(eps) if e > 0]
    for i, e in enumerate(eps):
        if e == 0:
            out[i] = clean
    if not todo:
        return out
    if batch_mode:
        for i in todo:
            out[i] = T(xs[i])
    else:
        out[todo] = T(torch.cat([xs[i] for i in todo])).view(len(todo), -1)
    return out


def _warning(acc: float, population: str, mode: str) -> str | None:
    if acc >= 0.5:
        return None
    hint = "; BatchNorm D: try mode 'frozen'" if mode == "eval" else ""
    return (f"clean accuracy {acc:.2f} < 0.5 on {population}s in {mode} mode: the flip rate "
            f"covers only the minority D gets right{hint}")


def _summaries(clean: np.ndarray, adv: np.ndarray, linf: np.ndarray, l2: np.ndarray,
               eps: Sequence[float], sign: float, pixels: bool = True) -> list[dict[str, Any]]:
    """Per-eps statistics from per-sample logits (float64 on the host)."""
    correct = sign * clean > 0
    n, n_correct = clean.shape[0], int(correct.sum())
    loss_clean = np.logaddexp(0.0, -sign * clean)  # softplus: the population's loss term
    rows = []
    for i, e in enumerate(eps):
        a = adv[i]
        flipped = correct & (sign * a <= 0)
        shift = sign * (clean - a)
        rows.append({
            "eps": float(e), "eps_255": float(e) * 255 if pixels else None, "n": n,
            "clean_accuracy": n_correct / n if n else None,
            "adv_accuracy": float((sign * a > 0).mean()) if n else None,
            "n_correct": n_correct,
            "flip_rate": float(flipped.sum()) / n_correct if n_correct else None,
            "mean_logit_shift": float(shift.mean()) if n else None,
            "median_logit_shift": float(np.median(shift)) if n else None,
            "mean_loss_increase": float((np.logaddexp(0.0, -sign * a) - loss_clean).mean())
            if n else None,
            "mean_linf": float(linf[i].mean()) if n else None,
            "mean_l2": float(l2[i].mean()) if n else None,
        })
    return rows


# ----------------------------------------------------------------------------- the sweep
def attack_sweep(
    D: nn.Module, x: torch.Tensor, *, eps: Sequence[float], population: str = "real",
    method: str | Crafter = "fgsm", steps: int = 10, step_size: float | None = None,
    random_start: bool = False, seed: int = 0, mode: str = "auto",
    pixel_range: tuple[float, float] = (-1.0, 1.0), batch_size: int = 256, bn_group: int = 64,
    reference: torch.Tensor | None = None, transfer_to: Mapping[str, nn.Module] | None = None,
    eps_scale: float | None = None, progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Attack ``x`` at every eps and score the result on D (and on ``transfer_to``).

    Args:
        D: discriminator, ``D(x)`` -> raw logits ``(N,)``; left exactly as it was.
        x: samples ``(N, ...)`` of one population in ``pixel_range``, any device; not modified.
        eps: radii in the method's norm, in eps units ([0, 1] pixel units for images:
            ``1/255`` = one grey level; else ``eps_scale``); 0 allowed.
        population: ``"real"`` (attacked toward "fake") or ``"fake"`` (toward "real").
        method: a name in :data:`ATTACKS` or a crafter (:data:`Attack` ``.crafter`` signature)
            such as :func:`probes.adapters.foolbox.foolbox_crafter`. For ``pgd-l2`` eps bounds
            the L2 norm of the whole perturbation, so ``mean_l2 <= eps``.
        steps, step_size: iterations and step length of an iterative method (eps units, in
            its norm; default :func:`probes.core.attacks.default_step_size` of each eps).
        random_start, seed: an iterative method starts from a uniform point of its eps ball,
            drawn per sample from ``seed`` on the CPU (the same relative point for every eps).
        mode: ``auto | frozen | batch | eval`` (:mod:`probes.core.modes`), resolved per net.
        pixel_range, batch_size: ``(lo, hi)`` of the data; samples per pass (memory only).
        bn_group: the training batch size: samples per BatchNorm batch in ``batch`` mode, and
            the size of the default reference group in ``frozen`` mode.
        reference: clean samples whose BatchNorm statistics ``frozen`` holds fixed, for every
            net (default: the first ``bn_group`` of ``x``; pass one for order independence).
        transfer_to: ``{name: D2}``: score the perturbations crafted on D on these too.
        eps_scale: absolute size of eps = 1 (a 2-D mixture's mode std); None = pixel units.
        progress: called with the number of samples finished after each group.

    Returns:
        One record per (evaluated net, eps), D's own first (meanings: module docstring):
        ``evaluated_on, population, method, norm, eps, eps_255, n, mode, craft_mode,
        clean_accuracy, adv_accuracy, n_correct, flip_rate, mean_logit_shift, median_logit_shift,
        mean_loss_increase, mean_linf, mean_l2, steps, step_size, random_start, seed, bn_group,
        reference_n, pixel_range, warning``.

    Examples:
        >>> [r["flip_rate"] for r in attack_sweep(D, x_real, eps=[0, 1 / 255, 2 / 255])]
    """
    eps = _sweep_eps(x, eps, steps, pixel_range, eps_scale)
    toward, sign = _population(population)
    craft, method_name, rec = _crafter(method)
    targets = {"self": D, **dict(transfer_to or {})}
    modes = {name: resolve_mode(T, mode) for name, T in targets.items()}
    ref = reference_group(x, bn_group) if reference is None else reference
    noise = _start_noise(x, seed, rec) if random_start else None
    clean, adv, linf, l2 = _sweep_pass(
        craft, targets, modes, x, eps, noise, mode=mode, ref=ref,
        group=bn_group if "batch" in modes.values() else batch_size, toward=toward,
        pixel_range=pixel_range, steps=steps, step_size=step_size, eps_scale=eps_scale,
        progress=progress)
    return _sweep_records(
        clean, adv, linf, l2, eps, sign=sign, population=population, method=method, rec=rec,
        method_name=method_name, modes=modes, steps=steps, step_size=step_size, seed=seed,
        random_start=random_start, bn_group=bn_group, ref=ref, pixel_range=pixel_range,
        eps_scale=eps_scale)


def _sweep_eps(x: torch.Tensor, eps: Sequence[float], steps: int,
               pixel_range: tuple[float, float], eps_scale: float | None) -> list[float]:
    """The sweep's eps as floats (eps units) after checking x, eps and steps (ValueError)."""
    eps = [float(e) for e in eps]
    if x.shape[0] == 0 or not eps:
        raise ValueError("attack_sweep needs at least one sample and one eps")
    for e in eps:
        eps_to_abs(e, pixel_range, scale=eps_scale)  # validates units and range
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return eps


def _start_noise(x: torch.Tensor, seed: int, rec: Attack | None) -> torch.Tensor:
    """A point of the attack norm's unit ball per sample, shape of ``x``, drawn on the CPU
    from ``seed`` (L-inf for a crafter outside the registry)."""
    g = torch.Generator().manual_seed(seed)
    return NORMS[rec.norm if rec else "linf"].noise(x.shape, g, x.dtype)


def _sweep_pass(craft: Crafter, targets: dict[str, nn.Module], modes: dict[str, str],
                x: torch.Tensor, eps: list[float], noise: torch.Tensor | None, *, mode: str,
                ref: torch.Tensor, group: int, toward: str, pixel_range: tuple[float, float],
                steps: int, step_size: float | None, eps_scale: float | None,
                progress: Callable[[int], None] | None):
    """Craft on ``targets["self"]`` and score on every target, ``group`` samples at a time.

    Returns device tensors ``(clean logits {name: (N,)}, adv logits {name: (E, N)}, L-inf
    (E, N), L2 (E, N))``, norms of ``x_adv - x`` in eps units.
    """
    n, dev, E = x.shape[0], _device(targets["self"]), len(eps)
    clean = {k: torch.empty(n, device=dev) for k in targets}
    adv = {k: torch.empty(E, n, device=dev) for k in targets}
    linf = torch.empty(E, n, device=dev)
    l2 = torch.empty(E, n, device=dev)
    with contextlib.ExitStack() as stack:
        models = {id(T): stack.enter_context(probe_model(T, mode, ref))[0]
                  for T in _unique(targets)}
        nets = {name: models[id(T)] for name, T in targets.items()}
        for sl in groups(n, group):
            xc = x[sl].to(dev, non_blocking=True)
            logits0, xs = craft(nets["self"], xc, eps, toward=toward, pixel_range=pixel_range,
                                steps=steps, step_size=step_size,
                                stack=modes["self"] != "batch", eps_scale=eps_scale,
                                noise=None if noise is None else noise[sl].to(dev))
            _score_group(nets, modes, xc, xs, eps, logits0, sl, clean, adv, linf, l2,
                         scale=eps_scale or (pixel_range[1] - pixel_range[0]))
            if progress is not None:
                progress(sl.stop - sl.start)
    return clean, adv, linf, l2


@torch.no_grad()
def _score_group(nets: dict[str, nn.Module], modes: dict[str, str], xc: torch.Tensor,
                 xs: list[torch.Tensor], eps: list[float], logits0: torch.Tensor | None,
                 sl: slice, clean: dict[str, torch.Tensor], adv: dict[str, torch.Tensor],
                 linf: torch.Tensor, l2: torch.Tensor, *, scale: float) -> None:
    """Write one group's clean ``(B,)`` and adversarial ``(E, B)`` logits of every net, and the
    perturbations' L-inf and L2 norms ``(E, B)`` divided by ``scale`` (eps units), at ``sl``."""
    for name, T in nets.items():
        # the crafter's clean logits come from the same forward as its first gradient
        c = logits0 if name == "self" and logits0 is not None else T(xc)
        clean[name][sl] = c
        adv[name][:, sl] = _score(T, xs, eps, c, modes[name] == "batch")
    d = torch.stack(xs).sub_(xc).flatten(2).div_(scale)  # (E, B, D) in eps units
    linf[:, sl] = d.abs().amax(2)
    l2[:, sl] = d.norm(dim=2)


def _sweep_records(clean: dict[str, torch.Tensor], adv: dict[str, torch.Tensor],
                   linf: torch.Tensor, l2: torch.Tensor, eps: list[float], *, sign: float,
                   population: str, method: str | Crafter, method_name: str,
                   rec: Attack | None, modes: dict[str, str], steps: int,
                   step_size: float | None, random_start: bool, seed: int, bn_group: int,
                   ref: torch.Tensor, pixel_range: tuple[float, float],
                   eps_scale: float | None) -> list[dict[str, Any]]:
    """The sweep's records, one per (evaluated net, eps): ``evaluated_on`` (``"self"`` or the
    ``transfer_to`` name), ``population, method, norm`` (a crafter's ``.norm`` or None), the
    :func:`_summaries` row, ``mode, craft_mode, steps, step_size, random_start, seed,
    bn_group`` (``batch`` mode only), ``reference_n`` (the reference group's size, ``frozen``
    mode only), ``pixel_range, warning``."""
    iterative = rec is not None and rec.iterative
    lo, hi = pixel_range
    # one device -> host copy for everything
    host = {k: (clean[k].double().cpu().numpy(), adv[k].double().cpu().numpy()) for k in clean}
    linf_h, l2_h = linf.double().cpu().numpy(), l2.double().cpu().numpy()
    records = []
    for name in clean:
        for e, row in zip(eps, _summaries(*host[name], linf_h, l2_h, eps, sign,
                                             pixels=eps_scale is None)):
            step = None
            if iterative:
                step = default_step_size(e, steps) if step_size is None else step_size
            records.append({
                "evaluated_on": name, "population": population, "method": method_name,
                "norm": rec.norm if rec else getattr(method, "norm", None),
                **row, "mode": modes[name], "craft_mode": modes["self"],
                "steps": steps if iterative else (rec.steps if rec else None),
                "step_size": step, "random_start": bool(random_start and iterative),
                "seed": seed, "bn_group": bn_group if "batch" in modes.values() else None,
                "reference_n": int(ref.shape[0]) if "frozen" in modes.values() else None,
                "pixel_range": [float(lo), float(hi)],
                "warning": _warning(row["clean_accuracy"] or 0.0, population, modes[name]),
            })
    return records


# ----------------------------------------------------------------------------- min eps
def _flip_fn(D: nn.Module, x: torch.Tensor, rec: Attack, *, toward: str, sign: float,
             steps: int, step_size: float | None, pixel_range: tuple[float, float],
             eps_scale: float | None = None):
    """``(clean logits, f)`` where ``f(eps (N,)) -> bool (N,)``: does the attack at each
    sample's eps put it on the wrong side of logit 0? A one-gradient attack (FGSM) reuses its
    gradient; an iterative one runs :func:`probes.core.attacks.iterate` in its norm."""
    lo, hi = pixel_range
    s = direction(toward)
    if not rec.iterative:  # FGSM: the only one-gradient attack registered (L-inf)
        logits0, g = logit_grad(D, x)

        def flips(e: torch.Tensor) -> torch.Tensor:
            step = s * eps_to_abs(e, pixel_range, like=x, scale=eps_scale)
            return sign * D(linf_step(x, g, step, lo, hi)) <= 0
        return logits0, flips
    with torch.no_grad():
        logits0 = D(x)

    def flips(e: torch.Tensor) -> torch.Tensor:
        a = e * default_step_size(1.0, steps) if step_size is None else torch.full_like(
            e, step_size)
        xa, _ = iterate(D, x, x, radius=eps_to_abs(e, pixel_range, like=x, scale=eps_scale),
                        alpha=eps_to_abs(a, pixel_range, like=x, scale=eps_scale), steps=steps,
                        toward=toward, pixel_range=pixel_range, norm=NORMS[rec.norm])
        return sign * D(xa) <= 0
    return logits0, flips


def min_flip_eps(
    D: nn.Module, x: torch.Tensor, *, population: str = "real", method: str = "fgsm",
    eps_max: float = 16 / 255, iters: int = 10, steps: int = 10,
    step_size: float | None = None, mode: str = "auto",
    pixel_range: tuple[float, float] = (-1.0, 1.0), batch_size: int = 256, bn_group: int = 64,
    reference: torch.Tensor | None = None, eps_scale: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Per sample, the smallest eps that flips D's decision, by bisection on [0, eps_max].

    The answer is an eps that flips the sample, within ``eps_max / 2**iters`` of the smallest
    one when flipping is monotone in eps (bisection assumes it). FGSM costs one gradient and
    ``iters + 1`` forwards per group; BIM and PGD-L2 ``iters + 1`` full attacks (their step
    is ``default_step_size`` of each sample's eps, or ``step_size`` when given).

    Args:
        D, x, population, mode, pixel_range, batch_size, bn_group, reference, eps_scale,
            progress: as in :func:`attack_sweep`. In the default (per-sample) modes each
            sample's bisection sees only its own perturbation; in ``batch`` mode every sample of
            a group is bisected at once and its answer depends on its neighbours' eps.
        method: a name in :data:`ATTACKS` whose ``min_eps`` is set (fgsm, bim, pgd-l2).
        eps_max: upper end of the search, in eps units (a radius in the method's norm).
        iters: bisection steps.
        steps, step_size: settings of an iterative method.

    Returns:
        ``per_sample``: float64 array ``(N,)`` in eps units, NaN where D is wrong on the clean
        sample, inf where eps_max does not flip it; and a JSON-able summary: ``population,
        method, mode, eps_max, iters, resolution, n, n_correct, flipped_share`` (of the correct
        ones, flipped within eps_max), ``median`` and ``quantiles`` (over the correct samples,
        unflipped counted as infinite; ``None`` = beyond eps_max).

    Examples:
        >>> out = min_flip_eps(D, x_real, eps_max=8 / 255)
        >>> out["median"] * 255   # grey levels
    """
    rec = _bisectable(method, eps_max, iters, pixel_range, eps_scale)
    toward, sign = _population(population)
    n, dev = x.shape[0], _device(D)
    result = torch.empty(n, dtype=torch.float64, device=dev)
    ref = reference_group(x, bn_group) if reference is None else reference
    with probe_model(D, mode, ref) as (model, resolved):
        for sl in groups(n, bn_group if resolved == "batch" else batch_size):
            xc = x[sl].to(dev, non_blocking=True)
            logits0, flips = _flip_fn(model, xc, rec, toward=toward, sign=sign, steps=steps,
                                      step_size=step_size, pixel_range=pixel_range,
                                      eps_scale=eps_scale)
            result[sl] = _bisect(flips, logits0, sign=sign, eps_max=eps_max, iters=iters,
                                 size=xc.shape[0], device=dev)
            if progress is not None:
                progress(sl.stop - sl.start)
    return _min_eps_record(result.cpu().numpy(), rec, population=population, method=method,
                           mode=resolved, eps_max=eps_max, iters=iters, steps=steps,
                           bn_group=bn_group, reference_n=int(ref.shape[0]),
                           pixel_range=pixel_range)


def _bisectable(method: str, eps_max: float, iters: int, pixel_range: tuple[float, float],
                eps_scale: float | None) -> Attack:
    """The registered attack ``min_flip_eps`` bisects, after checking its arguments."""
    eps_to_abs(eps_max, pixel_range, scale=eps_scale)
    bisectable = [k for k, a in ATTACKS.items() if a.min_eps]
    if method not in bisectable:
        raise ValueError(f"min_flip_eps supports methods {', '.join(bisectable)}, not "
                         f"{method!r}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    return ATTACKS[method]


@torch.no_grad()
def _bisect(flips: Callable[[torch.Tensor], torch.Tensor], logits0: torch.Tensor, *,
            sign: float, eps_max: float, iters: int, size: int,
            device: torch.device) -> torch.Tensor:
    """One group's minimal flipping eps, float64 ``(B,)`` in eps units: NaN where D is wrong
    on the clean sample (``logits0`` ``(B,)``), inf where ``eps_max`` does not flip it."""
    hi_eps = torch.full((size,), float(eps_max), device=device)
    lo_eps = torch.zeros_like(hi_eps)
    ok = (sign * logits0 > 0) & flips(hi_eps)
    for _ in range(iters):
        mid = (lo_eps + hi_eps) / 2
        f = flips(mid)
        hi_eps = torch.where(f, mid, hi_eps)
        lo_eps = torch.where(f, lo_eps, mid)
    r = torch.where(ok, hi_eps.double(), torch.full_like(hi_eps, math.inf).double())
    return torch.where(sign * logits0 > 0, r, torch.full_like(r, math.nan))


def _finite_or_none(v: float) -> float | None:
    """A JSON number: ``v`` as a float, None when it is inf or NaN."""
    return float(v) if np.isfinite(v) else None


def _min_eps_record(per: np.ndarray, rec: Attack, *, population: str, method: str, mode: str,
                    eps_max: float, iters: int, steps: int, bn_group: int, reference_n: int,
                    pixel_range: tuple[float, float]) -> dict[str, Any]:
    """:func:`min_flip_eps`'s result from the per-sample answers ``per`` (float64 ``(N,)``)."""
    valid = per[~np.isnan(per)]
    qs = (np.quantile(valid, QUANTILES, method="inverted_cdf") if valid.size
          else [math.nan] * len(QUANTILES))
    return {
        "per_sample": per, "population": population, "method": method, "mode": mode,
        "eps_max": float(eps_max), "iters": iters, "resolution": float(eps_max) / 2 ** iters,
        "norm": rec.norm, "steps": steps if rec.iterative else rec.steps, "n": per.shape[0],
        "n_correct": int(valid.size),
        "flipped_share": float(np.isfinite(valid).mean()) if valid.size else None,
        "median": _finite_or_none(qs[QUANTILES.index(0.5)]),
        "quantiles": {str(q): _finite_or_none(v) for q, v in zip(QUANTILES, qs)},
        "bn_group": bn_group if mode == "batch" else None,
        "reference_n": reference_n if mode == "frozen" else None,
        "pixel_range": [float(pixel_range[0]), float(pixel_range[1])],
    }
