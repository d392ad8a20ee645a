"""Any foolbox 3 attack on a single-logit GAN discriminator.

foolbox expects a classifier with >= 2 logits. :func:`two_logits` wraps D as ``[0, D(x)]``
(class 1 = "real"): its softmax cross-entropy for label 1 is ``softplus(-D(x))`` and for label
0 ``softplus(D(x))``, exactly the terms of the GAN loss, so an untargeted foolbox attack on
reals (label 1) pushes them toward "fake" and on fakes (label 0) toward "real". Bounds are the
data's ``pixel_range``; eps in [0, 1] pixel units becomes the radius ``eps * (hi - lo)`` in the
attack's own norm (L-inf, L2 or L1, whatever the attack uses).

foolbox takes gradients with ``loss.backward()``, which accumulates into D's parameter
``.grad``: :func:`probes.core.modes.frozen_params` switches ``requires_grad`` off around every
call, so D is left as it was. The model is the caller's: the sweep hands it what
:func:`probes.core.modes.probe_model` yields, so in the default ``frozen`` mode foolbox attacks a
per-sample copy of D (one clean group's BatchNorm statistics held fixed), and in ``batch``
mode BatchNorm sees the batches foolbox forms.

:func:`foolbox_crafter` plugs an attack into :func:`probes.core.sweep.attack_sweep`, so foolbox's
breadth gets the same records, JSON and figures as FGSM/BIM. Random attacks are seeded per
group from ``seed`` (the global RNG is restored afterwards); they are reproducible for a given
group size, not independent of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from asgan_base.errors import UserError
from asgan_base.linf import frozen_params
from probes.core.attacks import TOWARD, eps_to_abs


class TwoLogits(nn.Module):
    """``x -> [0, D(x)]`` of shape ``(N, 2)``; class 1 is "real"."""

    def __init__(self, D: nn.Module):
        super().__init__()
        self.D = D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.D(x)  # (N,)
        return torch.stack((torch.zeros_like(d), d), dim=1)  # (N, 2)


def two_logits(D: nn.Module) -> TwoLogits:
    """The two-logit wrapper. Its own ``training`` flag is False (so foolbox does not warn)
    while D keeps whatever mode it is in: ``.eval()`` is not called, it would recurse into D."""
    wrapper = TwoLogits(D)
    wrapper.training = False
    return wrapper


def _foolbox():
    try:
        import foolbox
    except ImportError as e:  # foolbox is a declared dependency; SciPy 2 breaks its import
        raise UserError(f"foolbox cannot be imported ({e}); install foolbox>=3.3 with "
                        "scipy<2") from None
    return foolbox


def attack_names() -> list[str]:
    """Names of the concrete attack classes in ``foolbox.attacks`` (aliases included)."""
    fb = _foolbox()
    base = fb.attacks.base.Attack
    return sorted(n for n, obj in vars(fb.attacks).items()
                  if inspect.isclass(obj) and issubclass(obj, base) and not inspect.isabstract(obj))


def make_attack(name: str, **kwargs: Any):
    """``foolbox.attacks.<name>(**kwargs)``; UserError for an unknown name or bad options."""
    fb = _foolbox()
    names = attack_names()
    if name not in names:
        raise UserError(f"unknown foolbox attack {name!r}; valid: {', '.join(names)}")
    cls = getattr(fb.attacks, name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        params = [p for p in inspect.signature(cls).parameters if p not in ("self", "args")]
        raise UserError(f"foolbox {name} rejects options {sorted(kwargs)} ({e}); it takes "
                        f"{params}") from None


def accepts(name: str, option: str) -> bool:
    """Whether ``foolbox.attacks.<name>`` takes keyword ``option`` (e.g. ``steps``)."""
    return option in inspect.signature(getattr(_foolbox().attacks, name)).parameters


def foolbox_attack(D: nn.Module, x: torch.Tensor, *, attack: Any, eps: Sequence[float],
                   toward: str = "fake", pixel_range: tuple[float, float] = (-1.0, 1.0),
                   eps_scale: float | None = None) -> list[torch.Tensor]:
    """Run a foolbox attack on D through the two-logit wrapper.

    Args:
        D: discriminator (raw logits ``(N,)``), in the mode the caller chose.
        x: inputs ``(N, ...)`` in ``pixel_range``; not modified.
        attack: a foolbox attack instance (e.g. ``foolbox.attacks.LinfPGD()``, or
            :func:`make_attack`).
        eps: sizes in [0, 1] pixel units; radius ``eps * (hi - lo)`` in the attack's norm
            (``eps * eps_scale`` when the data's eps unit is not pixels).
        toward: ``"fake"`` (reals, label 1) or ``"real"`` (fakes, label 0).
        pixel_range: foolbox's ``bounds``.

    Returns:
        One ``x_adv`` per eps (foolbox's clipped output: within the radius and the bounds).

    Examples:
        >>> import foolbox as fb
        >>> [x_adv] = foolbox_attack(D, x_real, attack=fb.attacks.FGSM(), eps=[2 / 255])
    """
    if toward not in TOWARD:
        raise ValueError(f"toward must be one of {TOWARD}, got {toward!r}")
    fb = _foolbox()
    label = 1 if toward == "fake" else 0
    labels = torch.full((x.shape[0],), label, dtype=torch.long, device=x.device)
    fmodel = fb.PyTorchModel(two_logits(D), bounds=tuple(pixel_range), device=x.device)
    radii = [eps_to_abs(e, pixel_range, scale=eps_scale) for e in eps]
    with frozen_params(D):
        _, clipped, _ = attack(fmodel, x.detach(), fb.criteria.Misclassification(labels),
                               epsilons=radii)
    return [c.detach() for c in clipped]


def norm_name(attack: Any) -> str | None:
    """``"linf"``, ``"l2"``, ``"l1"`` or ``"l0"``: the norm a foolbox attack's eps is a radius
    in (the records' ``norm``); None when the attack declares no Lp distance."""
    try:
        p = attack.distance.p
    except (AttributeError, ValueError):  # foolbox raises ValueError for "unknown distance"
        return None
    return {float("inf"): "linf", 2: "l2", 1: "l1", 0: "l0"}.get(p)


def foolbox_crafter(name: str, *, seed: int = 0, **kwargs: Any):
    """A crafter for :func:`probes.core.sweep.attack_sweep` running ``foolbox.attacks.<name>``.

    Args:
        name: foolbox attack class name, e.g. ``"L2ProjectedGradientDescentAttack"``.
        seed: seeds foolbox's random draws (random starts), group by group.
        kwargs: options for the attack's constructor (e.g. ``steps=20``).

    Examples:
        >>> recs = attack_sweep(D, x_real, eps=[0.1, 0.5],
        ...                     method=foolbox_crafter("L2DeepFoolAttack"))
    """
    attack = make_attack(name, **kwargs)
    calls = [0]

    def craft(D: nn.Module, x: torch.Tensor, eps: Sequence[float], *, toward: str,
              pixel_range: tuple[float, float], eps_scale: float | None = None, **_: Any
              ) -> tuple[None, list[torch.Tensor]]:
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed * 1_000_003 + calls[0])
            calls[0] += 1
            return None, foolbox_attack(D, x, attack=attack, eps=eps, toward=toward,
                                        pixel_range=pixel_range, eps_scale=eps_scale)

    craft.method = f"foolbox:{name}"
    craft.norm = norm_name(attack)
    return craft
