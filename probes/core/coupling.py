"""Layers that couple the samples of a batch, written so a probe can decouple them.

BatchNorm in train mode is one such layer (:mod:`probes.core.modes` freezes it). The other one
researchers' discriminators carry is the **minibatch standard deviation** layer of ProGAN /
StyleGAN2-ADA / StyleGAN3 (Karras et al. 2018, 2020): it appends to each sample's feature map
the standard deviation of the features across a *group* of samples, so sample j moves logit i
whenever i and j share a group. Foreign readers rebuild it as :class:`MinibatchStd`, so that
every such layer in any rebuilt D is one recognisable type.

Upstream (batch) behaviour, StyleGAN2-ADA's ``MinibatchStdLayer``: for ``N`` samples the group
size is ``G = min(group_size, N)`` (``N`` must be divisible by it) and the groups are
*strided*: sample ``i`` shares its group with samples ``i + k * N/G`` (``x.reshape(G, -1, ...)``).
Per group and per channel group of ``C/F`` channels, the statistic is the mean over channels
and positions of ``sqrt(var_over_group + 1e-8)`` (the biased variance), appended as ``F``
constant feature maps.

Per-sample behaviour (``reference`` set, the probes' ``frozen`` mode): each sample is scored
inside a group of ``group_size`` made of **itself and ``group_size - 1`` fixed clean reference
samples** (their features at this layer's input, set by :func:`probes.core.modes.frozen_copy`).
The statistic then still reacts to the sample itself, as it does in training (an attacker or G
can move it), but never to another probed sample: each logit depends on its own sample only,
and results are independent of the batch size and order.

**The check** (:func:`check`), run by every measure before it probes and written into every
record: does changing sample j move logit i (i != j)? Sample 0 of a probe batch of 8 of the
probe's own inputs is replaced, and the other logits are compared bit for bit (to float
round-off of the logits' size) in the probe's mode, and in ``batch`` mode for the collective
view. :func:`causes` names what is known by type (BatchNorm; minibatch-stddev with its group
size); a leak that no known layer explains is ``unknown``. A per-sample mode that still leaks
raises :class:`CouplingError` (one line naming the cause and the modes that can be asked
for), never a silent batch number. Cost: one frozen copy and six forwards of 8 samples
(``bench/coupling_cost.py``).
"""

from __future__ import annotations

import torch
from torch import nn


class MinibatchStd(nn.Module):
    """Minibatch standard deviation, StyleGAN2-ADA / StyleGAN3 semantics (module docstring).

    Args:
        group_size: samples per group (``None``: the whole batch); 4 in StyleGAN2-ADA's
            default configs, 32 in ``cifar``.
        num_channels: ``F``, the number of appended statistic maps (1 upstream by default).

    Input ``(N, C, H, W)``; output ``(N, C + F, H, W)``. ``reference`` (a buffer, ``None``
    until a probe sets it): ``(group_size - 1, C, H, W)`` clean features that complete each
    sample's group.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels
        self.register_buffer("reference", None)

    def extra_repr(self) -> str:
        mode = "batch" if self.reference is None else f"per-sample ({len(self.reference)} refs)"
        return f"group_size={self.group_size}, num_channels={self.num_channels}, {mode}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        F = self.num_channels
        c = C // F
        if self.reference is None:
            G = min(self.group_size, N) if self.group_size is not None else N
            if N % G:
                raise ValueError(f"minibatch-stddev: batch {N} is not divisible by its group "
                                 f"size {G}")
            y = x.reshape(G, -1, F, c, H, W)
            y = y - y.mean(dim=0)
            y = y.square().mean(dim=0)
            y = (y + 1e-8).sqrt()
            y = y.mean(dim=[2, 3, 4])
            y = y.reshape(-1, F, 1, 1)
            y = y.repeat(G, 1, H, W)
            return torch.cat([x, y], dim=1)
        ref = self.reference.to(dtype=x.dtype)
        grp = torch.cat([x.unsqueeze(1), ref.unsqueeze(0).expand(N, *ref.shape)], dim=1)
        y = grp.reshape(N, grp.shape[1], F, c, H, W)
        y = y - y.mean(dim=1, keepdim=True)
        y = y.square().mean(dim=1)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])  # (N, F)
        y = y.reshape(N, F, 1, 1).expand(N, F, H, W)
        return torch.cat([x, y], dim=1)


# ------------------------------------------------------------------------ the coupling check
_BN = nn.modules.batchnorm._BatchNorm
PROBE_N = 8  # rows of the check's probe batch: divisible by minibatch-stddev groups 1, 2, 4, 8
PER_SAMPLE = ("frozen", "eval")


class CouplingError(ValueError):
    """A per-sample probe asked of a D whose logits still depend on other samples; ``str``
    is one line naming the cause and the modes that can be asked for."""


def causes(D: nn.Module) -> list[dict]:
    """The known coupling layers inside ``D`` (by type, whatever their mode), JSON-able:
    ``{"kind": "batchnorm", "layers": k}`` and, per distinct setting,
    ``{"kind": "minibatch-stddev", "group_size": G, "num_channels": F, "layers": k}``."""
    out: list[dict] = []
    bns = sum(isinstance(m, _BN) for m in D.modules())
    if bns:
        out.append({"kind": "batchnorm", "layers": bns})
    seen: dict[tuple, int] = {}
    for m in D.modules():
        if isinstance(m, MinibatchStd):
            key = (m.group_size, m.num_channels)
            seen[key] = seen.get(key, 0) + 1
    for (g, f), k in seen.items():
        out.append({"kind": "minibatch-stddev", "group_size": g, "num_channels": f, "layers": k})
    return out


def describe(found: list[dict]) -> str:
    """``causes`` in words: ``"BatchNorm (3 layers), minibatch-stddev (group 4)"``."""
    words = []
    for c in found:
        if c["kind"] == "batchnorm":
            words.append(f"BatchNorm ({c['layers']} layer{'s' * (c['layers'] > 1)})")
        elif c["kind"] == "minibatch-stddev":
            g = "the whole batch" if c["group_size"] is None else f"group {c['group_size']}"
            words.append(f"minibatch-stddev ({g})")
        else:
            words.append(c["kind"])
    return ", ".join(words) or "none"


def probe_batch(x: torch.Tensor, n: int = PROBE_N) -> torch.Tensor:
    """``n`` rows for the check: the first ``n`` of ``x``, cycled when ``x`` is shorter."""
    if x.shape[0] < 1:
        raise ValueError("the coupling check needs at least one sample")
    idx = torch.arange(n) % x.shape[0]
    return x[idx.to(x.device)].detach()


def cross_change(model: nn.Module, xb: torch.Tensor) -> tuple[float, float]:
    """``(change, scale)``: the largest ``|logit_i(x') - logit_i(x)|`` over ``i != 0`` when
    sample 0 of ``xb`` is replaced by a fixed uniform draw spanning ``xb``'s value range (0.0:
    no leak, bit for bit), and the largest ``|logit|`` on ``xb``. ``model`` maps ``(n, ...)``
    to logits ``(n,)``; ``xb`` is scored twice, and a forward that gives two answers (random
    numbers drawn) is a :class:`CouplingError` of its own."""
    lo, hi = float(xb.min()), float(xb.max())
    if not hi > lo:
        lo, hi = lo - 1.0, hi + 1.0
    g = torch.Generator().manual_seed(0)
    xp = xb.clone()
    xp[0] = (torch.rand(xb.shape[1:], generator=g) * (hi - lo) + lo).to(xb)
    with torch.no_grad():
        a, b, again = model(xb), model(xp), model(xb)
    if a.shape != (xb.shape[0],):
        raise ValueError(f"D returned shape {tuple(a.shape)}, not logits ({xb.shape[0]},)")
    if not torch.equal(a, again):  # not a coupling: the same batch scored twice differs
        raise CouplingError(
            f"D's forward draws random numbers (the same batch scored twice differs by "
            f"{float((a - again).abs().max()):.3g}), so no per-sample number is reproducible: "
            "declare it with probes.discriminator(module, ...), which seeds every forward")
    return float((a[1:].double() - b[1:].double()).abs().max()), float(a.abs().max())


def check(D: nn.Module, x: torch.Tensor, *, mode: str = "auto",
          reference: torch.Tensor | None = None, n: int = PROBE_N) -> dict:
    """Does changing sample j move logit i (i != j)? Run before a probe, in its mode.

    Perturbs sample 0 of a probe batch of ``n`` rows of ``x`` and watches the other logits,
    in the mode the probe will use (:func:`probes.core.modes.probe_model`: ``frozen`` builds
    its copy from ``reference``) and in ``batch`` mode (the collective view, which shows
    whether D couples samples at all). D is left exactly as it was.

    Args:
        D: discriminator, ``D(x)`` -> logits ``(N,)``.
        x: samples in D's pixel range (the probe's own inputs); only the first ``n`` are used.
        mode: the probe mode asked for (``auto`` resolves as the probe resolves it).
        reference: the clean group of ``frozen`` mode (default: the first 64 rows of ``x``).
        n: probe batch rows (raised to twice the smallest minibatch-stddev group that does
            not divide it, so ``batch`` mode runs).

    Returns:
        JSON-able ``{"mode", "causes", "per_sample", "max_cross_change", "batch_view":
        {"coupled", "max_cross_change"}, "probe_n", "tolerance"}``: ``causes`` as
        :func:`causes`, plus ``{"kind": "unknown"}`` when the batch view leaks and no known
        layer explains it; ``per_sample`` is True when, in ``mode``, no logit moved by more
        than ``tolerance`` (float round-off of the logits' size).

    Raises:
        CouplingError: ``mode`` resolves to a per-sample mode (``frozen``/``eval``) and a
            logit still moves: one line naming the cause and the modes that can be asked for;
            or D's forward gives two answers for one batch (seed it:
            :func:`probes.core.contract.wrap`).
    """
    from probes.core.modes import _device, probe_model, reference_group, resolve_mode

    resolved = resolve_mode(D, mode)
    found = causes(D)
    xb = probe_batch(x, _probe_rows(found, n)).to(_device(D))
    ref = reference_group(x, 64) if reference is None else reference
    with probe_model(D, resolved, ref if resolved == "frozen" else None) as (model, _):
        change, scale = cross_change(model, xb)
    tol = 1e-6 * max(1.0, scale)  # float32 round-off at the logits' size
    view = change if resolved == "batch" else _batch_view(D, xb)
    coupled_view = None if view is None else view > tol
    if (coupled_view or change > tol) and not found:
        found = [{"kind": "unknown"}]
    out = {"mode": resolved, "causes": found, "per_sample": change <= tol,
           "max_cross_change": change,
           "batch_view": {"coupled": coupled_view, "max_cross_change": view},
           "probe_n": int(xb.shape[0]), "tolerance": tol}
    if resolved in PER_SAMPLE and change > tol:
        raise CouplingError(_message(D, resolved, found, change))
    return out


def _probe_rows(found: list[dict], n: int) -> int:
    """Rows of the probe batch: ``n``, or twice the group size of a minibatch-stddev layer
    whose group does not divide ``n`` (so ``batch`` mode can run)."""
    for c in found:
        g = c.get("group_size")
        if c["kind"] == "minibatch-stddev" and g and n % min(g, n):
            n = 2 * g
    return n


def _batch_view(D: nn.Module, xb: torch.Tensor) -> float | None:
    """Largest cross-sample logit change of D on ``xb`` in ``batch`` mode (logit units), or
    None when a layer refuses this batch size."""
    from probes.core.modes import probe_model

    try:
        with probe_model(D, "batch") as (model, _):
            return cross_change(model, xb)[0]
    except (ValueError, RuntimeError):  # a layer that refuses this batch size
        return None


def _message(D: nn.Module, mode: str, found: list[dict], change: float) -> str:
    known = [c for c in found if c["kind"] != "unknown"]
    hint = "ask for mode 'batch' (the collective view: cross-sample terms included)"
    if mode == "eval" and any(c["kind"] == "minibatch-stddev" for c in known):
        return (f"mode 'eval' leaves D's {describe(known)} coupling samples (a change of one "
                f"sample moved another's logit by {change:.3g}): ask for mode 'frozen' (per "
                f"sample, the default) or 'batch'")
    suspects = sorted({type(m).__name__ for m in D.modules()
                       if any(w in type(m).__name__.lower() for w in ("std", "batch", "group"))
                       and not isinstance(m, (_BN, MinibatchStd))})
    named = f" (suspect layers: {', '.join(suspects)})" if suspects else ""
    return (f"D couples samples through an unknown path{named}: in mode '{mode}' a change of "
            f"one sample moved another's logit by {change:.3g}, beyond what {describe(known)} "
            f"explains; per-sample probes cannot remove it: {hint}, or rebuild the layer as "
            "probes.core.coupling.MinibatchStd if it is a minibatch-stddev")
