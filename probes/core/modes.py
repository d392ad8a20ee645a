"""How a probe evaluates a BatchNorm discriminator: the probe modes of SPEC section 1.

A GAN's D only ever sees pure-real and pure-fake batches, so its BatchNorm *running* statistics
describe no input it saw (eval-mode flip rates are then meaningless), while statistics of the
batch *being probed* couple the samples: one sample's perturbation moves every other sample's
logit through the batch mean and variance. Three modes, all leaving D exactly as it was:

- ``frozen`` (per-sample; ``auto`` for any D with BatchNorm): the statistics of a *clean*
  one-population reference group (D's training batch size) are computed once and then held
  fixed for crafting, scoring and differentiating. Each logit is then a function of its own
  sample only, and each input gradient is that sample's own. Implemented on a copy of D whose
  BatchNorm layers hold the reference statistics as running statistics in eval mode, so any
  consumer (our attacks, foolbox, captum, ``torch.func``) sees an ordinary per-sample model.
- ``batch`` (collective): statistics of the group as it is at each forward, as in a training
  step, cross-sample terms included. It answers "what does a training step see / what
  gradient does G receive", not "how robust is this sample".
- ``eval``: the running statistics (``auto`` for D without BatchNorm, where all three agree).

The other coupling layer researchers' D's carry, StyleGAN's minibatch-stddev
(:class:`probes.core.coupling.MinibatchStd`), is handled by the same modes: ``auto`` is
``frozen`` for it too, and the frozen copy scores each sample inside a group completed by
``group_size - 1`` fixed clean reference samples (their features at that layer's input); in
``batch`` mode it keeps upstream's strided grouping of the batch as given; ``eval`` leaves it
coupled (:func:`probes.core.coupling.check` refuses that for a per-sample probe).

In every mode dropout is off and spectral norm keeps its stored vectors (no power iteration),
so a result never depends on how many forwards came before. Torch only.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from probes.core.coupling import MinibatchStd

MODES = ("auto", "frozen", "batch", "eval")
_BN = nn.modules.batchnorm._BatchNorm


def has_batchnorm(D: nn.Module) -> bool:
    """True when any BatchNorm layer is inside ``D``."""
    return any(isinstance(m, _BN) for m in D.modules())


def has_minibatch_std(D: nn.Module) -> bool:
    """True when any minibatch-stddev layer (:class:`probes.core.coupling.MinibatchStd`) is
    inside ``D``."""
    return any(isinstance(m, MinibatchStd) for m in D.modules())


def resolve_mode(D: nn.Module, mode: str) -> str:
    """``auto`` -> ``frozen`` for discriminators with BatchNorm or minibatch-stddev, else
    ``eval`` (SPEC section 1)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return "frozen" if has_batchnorm(D) or has_minibatch_std(D) else "eval"
    return mode


def frozen_copy(D: nn.Module, reference: torch.Tensor) -> nn.Module:
    """A copy of D, in eval mode, whose BatchNorm layers normalise with the batch statistics
    of the clean ``reference`` group (as D's training forward on that group would), fixed,
    and whose minibatch-stddev layers score each sample in a group completed by fixed clean
    references.

    Minibatch-stddev (:class:`probes.core.coupling.MinibatchStd`, group size ``G``): its
    ``reference`` is set to the features, at that layer's input, of the first ``G - 1``
    samples of ``reference`` (``m - 1`` for a whole-batch layer), captured in the same clean
    forward that gives the BatchNorm statistics; in that forward the layer already scores every
    reference sample this way, so the BatchNorm statistics after it describe what the probe's
    own forwards see.

    Args:
        D: discriminator; not modified (not even its running statistics or its
            minibatch-stddev ``reference``, which stays as it was).
        reference: clean samples ``(m, ...)`` of one population in D's pixel range, ``m >= 2``
            with BatchNorm and ``m >= G - 1`` with minibatch-stddev (the training batch size
            is the natural choice); moved to D's device.

    Returns:
        The copy. Without minibatch-stddev, its logits on ``reference`` itself equal
        ``batch``-mode logits of D on that group (to float round-off); on any other input
        each logit depends on its own sample.
    """
    Df = copy.deepcopy(D).eval()
    bns = [m for m in Df.modules() if isinstance(m, _BN)]
    mbstds = [m for m in Df.modules() if isinstance(m, MinibatchStd)]
    _check_reference(reference.shape[0], bns, mbstds)
    stats = _reference_forward(Df, reference, bns, mbstds)
    with torch.no_grad():
        for bn in bns:
            _hold_stats(bn, *stats[id(bn)])
    for p in Df.parameters():
        p.requires_grad_(False)  # input gradients only; a copy never trains
    return Df


def _check_reference(m_ref: int, bns: list[nn.Module], mbstds: list[nn.Module]) -> None:
    """ValueError unless ``m_ref`` reference samples can give BatchNorm statistics (>= 2) and
    complete every minibatch-stddev group (>= group size - 1)."""
    if bns and m_ref < 2:
        raise ValueError("frozen mode needs a reference group of at least 2 clean samples "
                         f"for BatchNorm statistics, got {m_ref}")
    for mb in mbstds:
        if mb.group_size is not None and m_ref < mb.group_size - 1:
            raise ValueError(f"frozen mode needs at least {mb.group_size - 1} clean reference "
                             f"samples to complete minibatch-stddev groups of {mb.group_size}, "
                             f"got {m_ref}")


def _reference_forward(Df: nn.Module, reference: torch.Tensor, bns: list[nn.Module],
                       mbstds: list[nn.Module]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """One clean forward of ``Df`` on ``reference`` ``(m, ...)`` with its BatchNorm layers in
    train mode: sets each minibatch-stddev layer's ``reference`` (its first ``G - 1`` input
    features) and returns ``{id(bn): (mean (C,), biased var (C,))}`` of each BatchNorm's input.
    Leaves the BatchNorm layers in train mode."""
    m_ref = reference.shape[0]
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def complete(mb: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        k = (mb.group_size if mb.group_size is not None else m_ref) - 1
        mb.reference = inputs[0][:k].detach().clone()  # a buffer: copies and .to() carry it

    def capture(bn: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        dims = [d for d in range(x.dim()) if d != 1]
        # the biased variance: what BatchNorm's training forward normalises with
        var, mean = torch.var_mean(x, dims, unbiased=False)
        stats[id(bn)] = (mean, var)

    hooks = [bn.register_forward_pre_hook(capture) for bn in bns]
    hooks += [mb.register_forward_pre_hook(complete) for mb in mbstds]
    for bn in bns:
        bn.train()  # only BatchNorm: the rest stays in eval (no spectral-norm iteration)
    ref = reference.detach().to(_device(Df))
    if ref.dim() == 4 and ref.device.type == "cpu":
        ref = ref.contiguous(memory_format=torch.channels_last)  # oneDNN's faster CPU kernels
    try:
        with torch.no_grad():
            Df(ref)
    finally:
        for h in hooks:
            h.remove()
    return stats


def _hold_stats(bn: nn.Module, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Make ``bn`` normalise with ``mean``/``var`` ``(C,)`` for good: running stats, eval mode."""
    if bn.running_mean is None:  # track_running_stats=False: give it buffers to use
        bn.register_buffer("running_mean", mean.clone())
        bn.register_buffer("running_var", var.clone())
        bn.track_running_stats = True
    else:
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    bn.eval()


@contextlib.contextmanager
def probe_model(D: nn.Module, mode: str = "auto", reference: torch.Tensor | None = None
                ) -> Iterator[tuple[nn.Module, str]]:
    """Yield ``(model to probe, resolved mode)`` and leave D exactly as it was afterwards.

    ``frozen`` yields :func:`frozen_copy` of D on ``reference`` (required then); D itself is
    not touched. ``batch`` and ``eval`` yield D itself with its BatchNorm layers in train /
    eval mode and everything else in eval mode; its train/eval flags and every buffer (running
    statistics, spectral-norm vectors) are restored on exit, bit for bit.
    """
    resolved = resolve_mode(D, mode)
    if resolved == "frozen":
        if reference is None:
            raise ValueError("frozen mode needs a clean reference group (reference=...)")
        yield frozen_copy(D, reference), resolved
        return
    with restored(D):
        D.eval()
        if resolved == "batch":
            for m in D.modules():
                if isinstance(m, _BN):
                    m.train()
        yield D, resolved


@contextlib.contextmanager
def restored(net: nn.Module) -> Iterator[None]:
    """Run the block, then put back ``net``'s train/eval flags and every buffer (running
    statistics, spectral-norm vectors, minibatch-stddev references) bit for bit: what a
    probe did to the module leaves no trace."""
    flags = [(m, m.training) for m in net.modules()]
    buffers = [(b, b.detach().clone()) for b in net.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, was_training in flags:
            m.training = was_training


def reference_group(x: torch.Tensor, size: int) -> torch.Tensor:
    """The default clean reference group of a probe: the first ``size`` samples of ``x``
    (all of them when fewer). Pass an explicit reference for results that do not depend on
    the order of ``x``; the CLI draws it from the data by seed (:mod:`probes.io.sources`)."""
    return x[:size]


def rows_per_pass(D: nn.Module, mode: str, bn_group: int, batch_size: int) -> int:
    """Samples per forward: ``bn_group`` in ``batch`` mode (BatchNorm then normalises with the
    group's statistics, so the grouping is part of the measurement), ``batch_size`` otherwise
    (memory only: per-sample modes give the same numbers for any batch size)."""
    return bn_group if resolve_mode(D, mode) == "batch" else batch_size


def _device(D: nn.Module) -> torch.device:
    p = next(iter(D.parameters()), None)
    if p is None:
        p = next(iter(D.buffers()), None)
    return p.device if p is not None else torch.device("cpu")
