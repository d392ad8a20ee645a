"""Attribution maps of a GAN discriminator's raw logit with captum.

One call, :func:`attribute`, over a registry of captum methods applied to ``D(x)`` (raw logits
``(N,)``, ``target=None``: D has one output per sample):

- ``saliency``: the plain input gradient ``dD/dx`` (captum ``Saliency`` with ``abs=False``;
  captum takes ``|.|`` by default), identical to :func:`probes.core.gradients.input_gradients`
  with ``wrt="logit"`` (Simonyan et al. 2014).
- ``ig``: Integrated Gradients (Sundararajan et al. 2017), Gauss-Legendre, ``steps`` points.
  The **baseline** is ``"black"`` by default: every pixel at ``lo`` of ``pixel_range`` (-1 in
  [-1, 1], the MNIST background), so attributions sum to ``D(x) - D(black)`` (``delta`` holds
  the convergence error per image). In the default ``frozen`` mode (BatchNorm D) and in
  ``eval`` completeness holds per image; in ``batch`` mode each image's logit depends on the
  whole batch, so completeness holds only for the batch sum (per-image deltas are large,
  their sum is small). ``"mid"`` (grey, the middle of the range) or a tensor
  broadcastable to ``x`` are the alternatives.
- ``smoothgrad``: captum ``NoiseTunnel(Saliency)``, the mean signed gradient over
  ``nt_samples`` noisy copies (Smilkov et al. 2017). ``noise`` is the noise std in [0, 1]
  pixel units, i.e. Smilkov's sigma / (x_max - x_min) (they recommend 0.1-0.2).
- ``inputxgrad``: ``x * dD/dx`` with ``x`` in its own pixel range (a [-1, 1] background pixel
  of -1 contributes ``-dD/dx`` there, unlike in [0, 1] units).
- ``guided``: captum ``GuidedBackprop`` (Springenberg et al. 2015). captum modifies the
  backward pass of ``nn.ReLU`` *modules* only: DCGAN discriminators use LeakyReLU and the
  ResNet D uses functional ReLU, so for every D in this toolkit it equals ``saliency``. The
  number of ReLU modules it changed is returned as ``guided_relus``.

D is left as it was: captum sees the model :func:`probes.core.modes.probe_model` yields
(``mode`` as for the attacks: ``frozen``, the default for BatchNorm, is a copy of D with one
clean reference group's statistics held fixed, so each map is the image's own; in ``batch``
mode each D evaluation normalises over one batch of the N inputs: one IG interpolation step,
or one noise draw, at a time), captum's hooks removed, parameter
``.grad`` untouched, inputs copied, and SmoothGrad's noise drawn under a forked, seeded RNG
so the global RNG state is not consumed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from probes.core.attacks import DEFAULT_GROUP, eps_to_abs
from probes.core.modes import probe_model, reference_group

BASELINES = ("black", "mid")


def _baseline(x: torch.Tensor, baseline: str | torch.Tensor,
              pixel_range: tuple[float, float]) -> torch.Tensor:
    lo, hi = pixel_range
    if torch.is_tensor(baseline):
        return baseline.detach().to(x).expand_as(x).clone()
    if baseline == "black":
        return torch.full_like(x, lo)
    if baseline == "mid":
        return torch.full_like(x, (lo + hi) / 2)
    raise ValueError(f"baseline must be one of {BASELINES} or a tensor, got {baseline!r}")


def _saliency(D, x, **_) -> dict[str, Any]:
    from captum.attr import Saliency

    return {"attr": Saliency(D).attribute(x, target=None, abs=False)}


def _ig(D, x, *, baseline="black", pixel_range=(-1.0, 1.0), steps=50, **_) -> dict[str, Any]:
    from captum.attr import IntegratedGradients

    attr, delta = IntegratedGradients(D).attribute(
        x, baselines=_baseline(x, baseline, pixel_range), target=None, n_steps=steps,
        internal_batch_size=len(x),  # one interpolation step per D call: one batch of N
        return_convergence_delta=True)
    return {"attr": attr, "delta": delta.detach()}


def _smoothgrad(D, x, *, noise=0.15, nt_samples=16, pixel_range=(-1.0, 1.0), seed=0, **_
                ) -> dict[str, Any]:
    from captum.attr import NoiseTunnel, Saliency

    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # seeded, and the caller's RNG is untouched
        torch.manual_seed(seed)
        attr = NoiseTunnel(Saliency(D)).attribute(
            x, nt_type="smoothgrad", nt_samples=nt_samples, nt_samples_batch_size=1,
            stdevs=eps_to_abs(float(noise), pixel_range), target=None, abs=False)
    return {"attr": attr}


def _inputxgrad(D, x, **_) -> dict[str, Any]:
    from captum.attr import InputXGradient

    return {"attr": InputXGradient(D).attribute(x, target=None)}


def _guided(D, x, **_) -> dict[str, Any]:
    from captum.attr import GuidedBackprop

    relus = sum(isinstance(m, nn.ReLU) for m in D.modules())
    return {"attr": GuidedBackprop(D).attribute(x, target=None), "guided_relus": relus}


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "saliency": _saliency, "ig": _ig, "smoothgrad": _smoothgrad,
    "inputxgrad": _inputxgrad, "guided": _guided,
}


def attribute(D: nn.Module, x: torch.Tensor, *, method: str = "saliency", mode: str = "auto",
              pixel_range: tuple[float, float] = (-1.0, 1.0), baseline: str | torch.Tensor =
              "black", steps: int = 50, noise: float = 0.15, nt_samples: int = 16,
              seed: int = 0, reference: torch.Tensor | None = None) -> dict[str, Any]:
    """Attributions of D's raw logit for each input.

    Args:
        D: discriminator, ``D(x)`` -> raw logits ``(N,)``; left exactly as found.
        x: inputs ``(N, C, H, W)`` in ``pixel_range``, one population; not modified.
        method: a key of :data:`METHODS` (``saliency``, ``ig``, ``smoothgrad``,
            ``inputxgrad``, ``guided``).
        mode: ``"auto" | "frozen" | "batch" | "eval"`` (:mod:`probes.core.modes`).
        pixel_range: ``(lo, hi)`` of ``x``; sets the IG baseline and SmoothGrad's noise scale.
        baseline: IG baseline: ``"black"`` (all ``lo``), ``"mid"`` or a tensor.
        steps: IG integration points.
        noise: SmoothGrad noise std in [0, 1] pixel units (scaled by ``hi - lo``).
        nt_samples: SmoothGrad noisy copies per input.
        seed: SmoothGrad noise seed (same seed, same maps).
        reference: clean group whose BatchNorm statistics ``frozen`` holds fixed (default:
            the first 64 inputs).

    Returns:
        ``{"attr": (N, C, H, W) tensor on CPU (logit units per input unit for gradients;
        logit units for ig and inputxgrad), "method", "mode" (resolved), "params": {...}}``
        plus ``"delta"`` ``(N,)`` for ``ig`` and ``"guided_relus"`` for ``guided``.

    Examples:
        >>> out = attribute(D, x_real[:16], method="ig")    # baseline: a black image
        >>> out["attr"].shape, out["mode"], out["delta"].abs().max()
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}: choose one of {sorted(METHODS)}")
    params = {"ig": {"baseline": baseline if isinstance(baseline, str) else "tensor",
                     "steps": steps},
              "smoothgrad": {"noise": noise, "nt_samples": nt_samples, "seed": seed}
              }.get(method, {})
    p = next(D.parameters(), None)
    # a private copy that already requires grad: captum would flip requires_grad on the
    # caller's tensor (and warn) otherwise
    xd = x.detach().clone().to(p.device if p is not None else "cpu").requires_grad_(True)
    ref = reference_group(x, DEFAULT_GROUP) if reference is None else reference
    with probe_model(D, mode, ref) as (model, resolved), warnings.catch_warnings():
        # captum announces the ReLU hooks of GuidedBackprop, which it removes afterwards
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        out = METHODS[method](model, xd, baseline=baseline, pixel_range=pixel_range, steps=steps,
                              noise=noise, nt_samples=nt_samples, seed=seed)
    out = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in out.items()}
    return {**out, "method": method, "mode": resolved, "params": params}
