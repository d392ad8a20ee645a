"""Input gradients of a GAN discriminator, streamed over any number of samples.

The gradient of D with respect to its input is what the generator learns from and what an
attacker follows (the AS-GAN paper's "adversarial noise", its Fig. 1 and 5). Three quantities
can be differentiated (SPEC section 1 for the losses), always per sample and summed over the
batch, so a value never shrinks with the batch size:

- ``logit``: ``d_i = D(x_i)``, the raw logit;
- ``g_loss``: ``softplus(-d_i)``, the non-saturating generator loss. In ``batch`` mode, on a
  batch of ``x_i = G(z_i)`` drawn with G in train mode, its input gradient is the gradient the
  generator receives in a training step (training uses the batch *mean*, i.e. this divided by
  the batch size m; G descends it, i.e. moves along ``-grad``); in ``frozen``/``eval`` mode it
  is each sample's own gradient of that loss, which a training step does not compute;
- ``d_loss``: D's own loss on one population, ``softplus(-d_i)`` for reals and
  ``softplus(d_i)`` for fakes (the gradient AS-GAN's FGSM step follows on reals).

The model comes from :func:`probes.core.modes.probe_model`, with the same ``mode`` semantics as
the attacks, and D is left as it was even if a consumer stops early: ``frozen`` (the default
for BatchNorm discriminators: the statistics of one clean reference group held fixed, so each
image's gradient is the gradient of its *own* logit and results do not depend on the batch
size), ``eval`` (running statistics; per-sample too), ``batch`` (statistics of the
one-population batch, as in training: the gradient of the batch sum then includes BatchNorm's
cross-sample terms, exactly the gradient G receives in a training step, and *depends on which
samples share a batch*). The mode in force is returned with every result.

Memory: :func:`input_gradients` keeps per-image scalars (``reduce``) and running sums
(``accumulate``), never the gradients themselves unless ``keep`` asks for them, so 10k or 1M
images cost O(N) scalars. Imports only torch (plus :mod:`probes.core.attacks`,
:mod:`probes.core.sparsity`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from probes.core.attacks import DEFAULT_GROUP
from probes.core.modes import frozen_copy, probe_model, reference_group, resolve_mode

WRT = ("logit", "g_loss", "d_loss")
POPULATIONS = ("real", "fake")

Batch = dict[str, Any]
Reducer = Callable[[Batch], dict[str, torch.Tensor]]
Source = torch.Tensor | Iterable[torch.Tensor] | Callable[[], Iterable[torch.Tensor]]


def _check(wrt: str, population: str) -> None:
    if wrt not in WRT:
        raise ValueError(f"wrt must be one of {WRT}, got {wrt!r}")
    if population not in POPULATIONS:
        raise ValueError(f"population must be one of {POPULATIONS}, got {population!r}")


def objective(logits: torch.Tensor, *, wrt: str = "logit", population: str = "real"
              ) -> torch.Tensor:
    """The per-sample quantity whose input gradient is taken.

    Args:
        logits: D's raw logits ``(N,)``.
        wrt: ``"logit"`` (``d``), ``"g_loss"`` (``softplus(-d)``, non-saturating G loss) or
            ``"d_loss"`` (``softplus(-d)`` on reals, ``softplus(d)`` on fakes).
        population: ``"real"`` or ``"fake"``; only ``d_loss`` depends on it.

    Returns:
        ``(N,)`` per-sample values (not averaged: gradients do not scale with 1/N).
    """
    _check(wrt, population)
    if wrt == "logit":
        return logits
    if wrt == "g_loss" or population == "real":
        return F.softplus(-logits)
    return F.softplus(logits)


def batches(x: Source, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches from a tensor (split into ``batch_size`` rows, the last one shorter), an
    iterable of batch tensors (used as given), or a zero-argument callable returning such an
    iterable (so a stream can be produced lazily and re-run)."""
    if torch.is_tensor(x):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        yield from x.split(batch_size)
        return
    if callable(x):
        x = x()
    for xb in x:
        if not torch.is_tensor(xb):
            raise TypeError(f"a batch must be a tensor, got {type(xb).__name__}")
        yield xb


def _device_of(D: nn.Module) -> torch.device:
    p = next(D.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def iter_gradients(D: nn.Module, x: Source, *, wrt: str = "logit", population: str = "real",
                   mode: str = "auto", batch_size: int = 256,
                   reference: torch.Tensor | None = None) -> Iterator[Batch]:
    """Yield one dict per batch: ``x`` (the batch as given), ``grad`` (same shape, on D's
    device), ``logits`` ``(n_b,)``, ``mode`` (resolved), ``start`` (index of its first sample).

    ``frozen`` probes a copy of D built once from ``reference`` (default: the first 64
    samples of the stream); ``batch``/``eval`` enter and restore D around each batch, so
    nothing of the probe survives between yields. Inputs are never modified (the graph is
    built on a detached alias). Parameter ``.grad`` is never touched (``torch.autograd.grad``).
    """
    _check(wrt, population)
    device = _device_of(D)
    resolved = resolve_mode(D, mode)
    frozen = None
    start = 0
    for xb in batches(x, batch_size):
        if resolved == "frozen" and frozen is None:
            frozen = frozen_copy(D, reference_group(xb, DEFAULT_GROUP) if reference is None
                                 else reference)
        # frozen: the copy, built once, needs no entering (D is not touched); batch/eval: D,
        # entered and restored around each batch
        held = contextlib.nullcontext((frozen, resolved)) if frozen is not None else \
            probe_model(D, resolved)
        with held as (model, _):
            xd = xb.detach().to(device).requires_grad_(True)
            logits = model(xd)  # (n_b,)
            (g,) = torch.autograd.grad(objective(logits, wrt=wrt, population=population).sum(),
                                       xd)
        yield {"x": xb, "grad": g.detach(), "logits": logits.detach(), "mode": resolved,
               "start": start}
        start += len(xb)
        del xd, logits, g  # the frame would otherwise hold them while the next batch runs


def grad_sparsity(batch: Batch) -> dict[str, torch.Tensor]:
    """Default reducer: :func:`probes.core.sparsity.sparsity` of each image's gradient."""
    from probes.core.sparsity import sparsity

    return sparsity(batch["grad"])


def input_gradients(
    D: nn.Module, x: Source, *, wrt: str = "logit", population: str = "real",
    mode: str = "auto", batch_size: int = 256, reference: torch.Tensor | None = None,
    reduce: Reducer | Sequence[Reducer] | None = grad_sparsity,
    accumulate: Reducer | Sequence[Reducer] | None = None, keep: bool | int = False,
    after_batch: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Input gradients of D over a stream of samples, reduced on the fly.

    Args:
        D: discriminator, ``D(x)`` -> raw logits ``(N,)``; left exactly as found.
        x: samples ``(N, C, H, W)`` (or ``(N, dim)``) in D's pixel range: a tensor, an
            iterable of batch tensors, or a zero-argument callable returning one. Not modified.
            One population only (``batch`` mode normalises with the batch's statistics).
        wrt: ``"logit"``, ``"g_loss"`` or ``"d_loss"`` (see :func:`objective`).
        population: ``"real"`` or ``"fake"``: what ``x`` is (recorded; sets ``d_loss``).
        mode: ``"auto" | "frozen" | "batch" | "eval"`` (:mod:`probes.core.modes`). In
            ``batch`` mode the result depends on how samples are grouped: pass a fixed batch
            layout (the training batch size, or an iterable of batches) to reproduce it.
        reference: the clean group ``frozen`` holds the BatchNorm statistics of (default:
            the first 64 samples); pass one for results independent of the order of ``x``.
        batch_size: rows per batch when ``x`` is a tensor (ignored for iterables).
        reduce: function(s) ``batch -> {name: (n_b,) tensor}`` of per-image values,
            concatenated into ``per_image`` (O(N) scalars; default :func:`grad_sparsity`);
            ``batch`` holds ``x``, ``grad``, ``logits``, ``mode``, ``start``.
        accumulate: function(s) ``batch -> {name: tensor}`` whose results are *summed* over
            batches into ``totals`` (histogram counts, sums for means).
        keep: ``True`` keeps every gradient (and input) in ``grad``/``x``: O(N * dim) memory,
            only when asked; an int ``k`` keeps the first ``k`` (for maps and figures).
        after_batch: called once a batch's gradients are dropped (the measures pass
            :func:`probes.io.memory.trim_heap`, so RSS stays flat over long streams).

    Returns:
        ``{"mode", "wrt", "population", "n", "batch_size", "batch_sizes", "logits" (N,),
        "per_image": {name: (N,) float64}, "totals": {name: tensor}}`` plus ``"grad"`` and
        ``"x"`` (on CPU) when ``keep``. ``batch_sizes`` lists the distinct batch sizes used
        (a shorter last batch changes ``batch``-mode statistics for its samples).

    Examples:
        >>> out = input_gradients(D, x_real, wrt="g_loss", mode="eval")
        >>> out["per_image"]["hoyer"].mean(), out["mode"]
        >>> g = input_gradients(D, x_real, reduce=None, keep=True)["grad"]  # all gradients
    """
    reducers, accumulators = _as_list(reduce), _as_list(accumulate)
    limit = None if keep is True else int(keep)  # None: keep all
    acc = _new_stream()
    for b in iter_gradients(D, x, wrt=wrt, population=population, mode=mode,
                            batch_size=batch_size, reference=reference):
        _take_batch(acc, b, reducers, accumulators, limit)
        del b  # drop this batch's gradients before the next one is computed
        if after_batch is not None:
            after_batch()
    if acc["mode"] is None:
        raise ValueError("no samples: x gave no batches")
    return _stream_result(acc, wrt=wrt, population=population, keep=keep,
                          batch_size=batch_size if torch.is_tensor(x) else None)


def _new_stream() -> dict[str, Any]:
    """Empty running state of :func:`input_gradients` (CPU lists of per-batch pieces)."""
    return {"mode": None, "n": 0, "sizes": set(), "logits": [], "per_image": {},
            "totals": {}, "grad": [], "x": []}


def _take_batch(acc: dict[str, Any], b: Batch, reducers: list[Reducer],
                accumulators: list[Reducer], limit: int | None) -> None:
    """Fold one batch into ``acc``: its logits ``(n_b,)``, per-image reductions (float64),
    summed totals, and its first gradients/inputs while fewer than ``limit`` are kept."""
    acc["mode"], n_b = b["mode"], len(b["x"])
    acc["n"] += n_b
    acc["sizes"].add(n_b)
    acc["logits"].append(b["logits"].cpu())
    for f in reducers:
        for k, v in f(b).items():
            acc["per_image"].setdefault(k, []).append(v.detach().double().cpu())
    totals = acc["totals"]
    for f in accumulators:
        for k, v in f(b).items():
            v = v.detach().cpu()
            totals[k] = totals[k] + v if k in totals else v
    room = n_b if limit is None else max(0, limit - (acc["n"] - n_b))
    if room:
        acc["grad"].append(b["grad"][:room].cpu())
        acc["x"].append(b["x"][:room].detach().cpu())


def _stream_result(acc: dict[str, Any], *, wrt: str, population: str, keep: bool | int,
                   batch_size: int | None) -> dict[str, Any]:
    """:func:`input_gradients`' result from its running state (pieces concatenated)."""
    out = {"mode": acc["mode"], "wrt": wrt, "population": population, "n": acc["n"],
           "batch_size": batch_size, "batch_sizes": sorted(acc["sizes"]),
           "logits": torch.cat(acc["logits"]),
           "per_image": {k: torch.cat(v) for k, v in acc["per_image"].items()},
           "totals": acc["totals"]}
    if keep and acc["grad"]:
        out["grad"], out["x"] = torch.cat(acc["grad"]), torch.cat(acc["x"])
    return out


def _as_list(f: Reducer | Sequence[Reducer] | None) -> list[Reducer]:
    if f is None:
        return []
    return [f] if callable(f) else list(f)


# ------------------------------------------------------------------ histograms (Fig. 5a)
def histogram_edges(limit: float, bins: int = 101) -> torch.Tensor:
    """``bins + 1`` float64 edges spanning ``[-limit, limit]``, symmetric around 0 (an odd
    ``bins`` puts 0 in the middle of the central bin)."""
    if not limit > 0:
        raise ValueError(f"histogram limit must be > 0, got {limit}")
    return torch.linspace(-limit, limit, bins + 1, dtype=torch.float64)


def rms_scaled(g: torch.Tensor) -> torch.Tensor:
    """Each image's gradient divided by its RMS (``||g||_2 / sqrt(n)``): a scale-free view of
    the value distribution; zero gradients stay zero."""
    flat = g.flatten(1).double()
    rms = flat.pow(2).mean(1, keepdim=True).sqrt()
    return (flat / torch.where(rms > 0, rms, torch.ones_like(rms))).view_as(g)


def histogram_reducer(edges: torch.Tensor, *, scale: str = "raw") -> Reducer:
    """An ``accumulate`` function counting gradient values into fixed shared ``edges``.

    Args:
        edges: ``(bins + 1,)`` increasing edges (:func:`histogram_edges`); share them between
            checkpoints so histograms compare bin for bin.
        scale: ``"raw"`` (gradient values as they are) or ``"rms"`` (each image divided by its
            RMS, :func:`rms_scaled`).

    Returns:
        ``batch -> {"hist_counts": (bins,) int64, "hist_under": (), "hist_over": ()}``; values
        outside the edges are counted in under/over, never dropped silently.
    """
    if scale not in ("raw", "rms"):
        raise ValueError(f"scale must be 'raw' or 'rms', got {scale!r}")
    edges = edges.double().cpu()

    def count(batch: Batch) -> dict[str, torch.Tensor]:
        g = batch["grad"]
        v = (rms_scaled(g) if scale == "rms" else g.double()).flatten().cpu()
        idx = torch.bucketize(v, edges, right=True) - 1  # bin i holds edges[i] <= v < edges[i+1]
        idx = torch.where(v == edges[-1], torch.full_like(idx, len(edges) - 2), idx)
        inside = (idx >= 0) & (idx < len(edges) - 1)
        return {"hist_counts": torch.bincount(idx[inside], minlength=len(edges) - 1),
                "hist_under": (v < edges[0]).sum(), "hist_over": (v > edges[-1]).sum()}

    return count


# --------------------------------------------------------------- gradient maps (Fig. 1)
def gradient_map(g: torch.Tensor, *, n_std: float = 3.0) -> torch.Tensor:
    """The paper's Fig. 1 recipe: clip each image's gradient to its mean +- ``n_std`` standard
    deviations (over all its entries), then take the mean absolute value over channels.

    Args:
        g: gradients ``(N, C, H, W)``.
        n_std: clipping half-width in standard deviations (the paper: 3).

    Returns:
        ``(N, H, W)`` non-negative maps in gradient units (normalise for display).
    """
    if g.dim() != 4:
        raise ValueError(f"gradient maps need image gradients (N, C, H, W), got {tuple(g.shape)}")
    flat = g.flatten(1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    std = flat.std(1, unbiased=False).view(-1, 1, 1, 1)
    clipped = torch.minimum(torch.maximum(g, mean - n_std * std), mean + n_std * std)
    return clipped.abs().mean(1)
