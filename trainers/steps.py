"""The D steps: ``baseline`` and ``asgan`` (SPEC section 2), the shared GAN losses, and
:func:`train_step`, one GAN iteration (the loop and ``bench/asgan_overhead.py`` both call it).

Both steps take the same arguments and return named scalar tensors (no ``.item()`` here: the
loop syncs once per log window). The only difference between the trainers is which of these
functions the loop is handed (``D_STEPS``).

Losses (non-saturating GAN, D returns raw logits):
``L_D = softplus(-D(x_real)).mean() + softplus(D(x_fake)).mean()``,
``L_G = softplus(-D(G(z))).mean()``.

Every D update has the same form, :func:`update_loss`: the GAN loss on the reals it sees
(plus the fakes, unless ``second_step=real`` for AS-GAN's second step), plus
``0.5 * r1_gamma * R1`` on those reals when ``r1_gamma > 0``. So ``trainer=asgan,
perturbation=none, r1_gamma > 0`` (the compute-matched R1 control) makes two identical R1
updates per iteration, and AS-GAN with R1 penalises the reals each of its steps trains on.

``perturbation=first-order`` (the first-order model of AS-GAN): the second D step trains on
the *clean* reals with ``L_D(x) + <g, x_fgsm(g) - x>``, ``g = grad_x L_D(x)`` (batch
statistics, as the training FGSM; graph kept for the second-order term) and ``x_fgsm(g)``
the training FGSM point built from ``g`` by the same function (:func:`fgsm_point`). That is
the first-order Taylor model of ``L_D(x_fgsm)``; it equals ``L_D(x) + eps_abs * ||g||_1``
wherever the step stays inside the pixel range, and drops the clipped part otherwise (MNIST's
background sits at -1, where a step toward -1 is clipped to 0 by the FGSM).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from asgan_base.linf import direction, eps_to_abs, frozen_params, linf_step, logit_grad
from trainers.config import TrainConfig
from trainers.distributed import unwrap


def d_loss(D: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor):
    """``(L_D, logits_real (N,), logits_fake (M,))``; reals and fakes in separate forwards
    so a BatchNorm D normalises each population with its own statistics, as in DCGAN."""
    logits_real = D(x_real)
    logits_fake = D(x_fake)
    loss = F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()
    return loss, logits_real, logits_fake


def g_loss(D: nn.Module, x_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-saturating generator loss and the logits it was computed from."""
    logits = D(x_fake)
    return F.softplus(-logits).mean(), logits


# ------------------------------------------------- per-sample R1 (batch statistics fixed)


def _sync_group(bn: nn.Module):
    """The process group whose global batch a synchronous BatchNorm normalises over, or None
    when ``bn`` normalises with its own input's statistics (plain BN, or one process)."""
    from trainers.distributed import SyncBatchNorm  # CPU SyncBN of this package

    if not isinstance(bn, (nn.SyncBatchNorm, SyncBatchNorm)):
        return None
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = getattr(bn, "process_group", None) or dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


@torch.no_grad()
def _batch_stats(bn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance ``(C,)`` that ``bn`` uses on ``x`` in training:
    of ``x`` itself, or of the global batch across ranks for a synchronous BatchNorm (the
    two-pass sums of :class:`trainers.distributed.SyncBatchNorm`). No graph (held fixed)."""
    dims = [0, *range(2, x.dim())]
    group = _sync_group(bn)
    if group is None:
        return x.mean(dims), x.var(dims, unbiased=False)
    total = torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])])
    dist.all_reduce(total, group=group)
    mean = total[:-1] / total[-1]
    shape = [1, -1] + [1] * (x.dim() - 2)
    sq = (x - mean.reshape(shape)).pow(2).sum(dims)
    dist.all_reduce(sq, group=group)
    return mean, sq / total[-1]


def _bn_fixed_stats_forward(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``bn``'s training-mode output on ``x`` with the batch statistics as constants: each
    sample is normalised by the same numbers, so its output depends on itself only; running
    statistics are not touched."""
    mean, var = _batch_stats(bn, x)
    return F.batch_norm(x, mean, var, bn.weight, bn.bias, training=False, eps=bn.eps)


def _spectral_norm_hosts(net: nn.Module) -> list[nn.Module]:
    """Modules whose ``training`` flag makes spectral norm run a power iteration: the
    parametrization (``torch.nn.utils.parametrizations.spectral_norm``, what trainers/nets.py
    uses) or the host of the older hook (``torch.nn.utils.spectral_norm``)."""
    from torch.nn.utils.parametrizations import _SpectralNorm

    hook_cls = getattr(sys.modules.get("torch.nn.utils.spectral_norm"), "SpectralNorm", ())
    return [m for m in net.modules() if isinstance(m, _SpectralNorm)
            or any(isinstance(h, hook_cls) for h in m._forward_pre_hooks.values())]


@contextlib.contextmanager
def batch_stats_fixed(net: nn.Module) -> Iterator[None]:
    """Forwards of ``net`` in which every training-mode BatchNorm normalises with its input's
    batch mean and biased variance held fixed (detached) and leaves its running statistics
    alone, and spectral norm uses the vectors of the last forward (no power iteration).

    On the same batch and weights as a training forward the logits are the same numbers; the
    difference is in the derivatives: logit ``i`` is a function of sample ``i`` only, so
    ``grad_x sum_i D_i`` holds each sample's own gradient (the "frozen" notion of SPEC
    section 1 applied to the training batch). BatchNorm layers in eval mode are left as they
    are (they use running statistics and update nothing). Everything is restored on exit;
    no buffer changes inside.
    """
    patched = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               and (m.training or m.running_mean is None)]
    hosts = [(m, m.training) for m in _spectral_norm_hosts(net)]
    for m in patched:  # an instance attribute shadows the class's forward
        m.forward = functools.partial(_bn_fixed_stats_forward, m)
    for m, _ in hosts:
        m.training = False
    try:
        yield
    finally:
        for m in patched:
            del m.forward
        for m, flag in hosts:
            m.training = flag


def r1_penalty(D: nn.Module, x_real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ``mean_i ||grad_{x_i} D(x_i)||^2``, each real's own
    input-gradient norm, with a graph for the second-order term. Scalar tensor.

    With a BatchNorm D in train mode, ``d(sum_j D_j)/dx_i`` also holds cross-sample terms
    (through the batch mean and variance); here the batch statistics are held fixed
    (:func:`batch_stats_fixed`), which removes exactly those terms. D without BatchNorm: the
    gradient of the batch sum, as before. The forward runs on a separate leaf copy of the
    reals, so the penalty's input gradient never reaches ``x_real.grad`` (AS-GAN's FGSM takes
    its sign from the GAN loss alone), and it updates no running statistics.

    Under DDP the plain module is called: a forward through the wrapper would broadcast rank
    0's buffers again mid-step and re-arm the reducer for an extra forward; the parameters are
    the same objects, so the penalty's parameter gradients still reach the reducer's hooks in
    the one backward and are averaged over ranks with the rest of the loss.
    """
    x = x_real.detach().requires_grad_(True)  # a new leaf sharing x_real's storage
    with batch_stats_fixed(unwrap(D)):
        logits = unwrap(D)(x)  # (N,)
    (g,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return g.pow(2).flatten(1).sum(1).mean()


# ------------------------------------------------------------------- D updates


def update_loss(D: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor | None, *,
                r1_gamma: float, to_fgsm_point=None):
    """The loss of one D update and what it logs.

    Args:
        D: discriminator (possibly DDP-wrapped), ``D(x)`` -> logits ``(N,)``.
        x_real: reals ``(N, ...)``; must require grad when ``to_fgsm_point`` is given.
        x_fake: fakes ``(M, ...)`` (already detached), or None for a reals-only loss
            (``softplus(-D(x_real)).mean()``, AS-GAN's ``second_step=real``).
        r1_gamma: weight of ``0.5 * r1_gamma * R1`` (:func:`r1_penalty`); 0 = none.
        to_fgsm_point: ``(x, g) -> x_adv``, the training FGSM given the gradient ``g`` of the
            GAN loss: adds the first-order model term ``<g, x_adv - x>`` (graph kept through
            ``g``; ``x_adv`` is a constant of the signs of ``g``, piecewise constant in D).

    Returns:
        ``(total, gan, logits_real (N,), logits_fake (M,) or None, extras)``: the scalar to
        backpropagate, the GAN loss alone, and ``extras`` (``r1``, ``first_order``) detached.
    """
    extras = {}
    logits_real = D(x_real)
    if r1_gamma > 0:
        # between the two forwards: a spectral-norm D's R1 forward then uses the weight the
        # real forward used (the fake forward runs the next power iteration)
        r1 = r1_penalty(D, x_real)
        extras["r1"] = r1.detach()
    gan = F.softplus(-logits_real).mean()
    logits_fake = None
    if x_fake is not None:
        logits_fake = D(x_fake)
        gan = gan + F.softplus(logits_fake).mean()
    total = gan
    if to_fgsm_point is not None:
        (g,) = torch.autograd.grad(gan, x_real, create_graph=True)
        shift = to_fgsm_point(x_real.detach(), g.detach()) - x_real.detach()
        first = (g * shift).sum()
        total = total + first
        extras["first_order"] = first.detach()
    if r1_gamma > 0:
        total = total + 0.5 * r1_gamma * r1
    return total, gan, logits_real, logits_fake, extras


def _first_step(D, opt_D, x_real, x_fake, cfg: TrainConfig, want_input_grad: bool):
    """Standard D update (+ R1). Returns stats and ``x_real`` (with ``.grad`` if asked)."""
    x_real = x_real.detach().requires_grad_(want_input_grad)
    opt_D.zero_grad(set_to_none=True)
    total, loss, logits_real, logits_fake, extras = update_loss(
        D, x_real, x_fake.detach(), r1_gamma=cfg.r1_gamma)
    stats = {"loss_d": loss.detach(), "logits_real": logits_real.detach().mean(),
             "logits_fake": logits_fake.detach().mean(), **extras}
    # x_real.grad (when asked) is filled by this same backward: no extra pass for AS-GAN;
    # R1 differentiates its own copy of the reals, so x_real.grad is dL_D/dx_real alone
    total.backward()
    return stats, x_real


def d_step_baseline(D, opt_D, x_real, x_fake, *, cfg: TrainConfig, eps: float,
                    pixel_range, generator, shard=(0, 1), eps_scale=None
                    ) -> dict[str, torch.Tensor]:
    """One standard D update on ``x_real`` and ``x_fake.detach()``."""
    stats, _ = _first_step(D, opt_D, x_real, x_fake, cfg, want_input_grad=False)
    opt_D.step()
    return stats


def fgsm_point(D: nn.Module, x: torch.Tensor, grad_loss: torch.Tensor, *, eps: float,
               pixel_range, eps_scale=None) -> torch.Tensor:
    """The training FGSM: ``clamp(x + eps*(hi-lo) * sign(grad_loss), lo, hi)`` (SPEC 2.3), by
    the base's L-inf step the probes' ``fgsm`` takes too (one eps conversion for both), given
    ``grad_loss = dL_D/dx`` (D is not called). ``eps_scale``: the data's size of eps = 1 when
    it is not ``hi - lo`` (2-D mixtures: the mode std, ``trainers.data.eps_units``)."""
    return _step(x, -grad_loss, eps, "fake", pixel_range, eps_scale)


def _step(x, grad, eps, toward, pixel_range, eps_scale) -> torch.Tensor:
    """``x`` moved ``eps`` along ``sign(grad)`` toward a class, inside ``pixel_range``."""
    step = direction(toward) * eps_to_abs(eps, pixel_range, like=x, scale=eps_scale)
    return linf_step(x.detach(), grad, step, *pixel_range)


def _eval_logit_grad(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The logit gradient with D in eval mode (BatchNorm's running statistics, no buffer
    updates), D's train/eval flags put back afterwards."""
    flags = [(m, m.training) for m in D.modules()]
    D.eval()
    try:
        return logit_grad(D, x)[1]
    finally:
        for m, flag in flags:
            m.train(flag)


def perturb_reals(D, x_real, *, cfg: TrainConfig, eps: float, pixel_range, generator,
                  grad_loss: torch.Tensor | None, shard=(0, 1), eps_scale=None
                  ) -> torch.Tensor:
    """``x_adv`` for AS-GAN's second D step.

    ``fgsm``: the L-inf step (the probes' FGSM) toward "fake" with ``sign(dL_D/dx_real)``
    from the D step's own backward (``attack_mode=train``: batch statistics, pre-update
    weights, SPEC 2.3) or with a fresh eval-mode logit gradient (``attack_mode=eval``, one
    extra pass).
    ``gaussian``: the sign of N(0, I) noise (the paper's ablation). ``none``,
    ``first-order`` (its second step takes the clean reals) or ``eps == 0``: the clean reals.
    ``shard = (rank, world)``: ``x_real`` is slice ``rank`` of a global batch ``world`` times
    larger; the gaussian noise is drawn for the global batch and sliced the same way, so a
    multi-process run perturbs exactly as a single process.
    """
    x = x_real.detach()
    if eps == 0 or cfg.perturbation in ("none", "first-order"):
        return x
    if cfg.perturbation == "gaussian":
        rank, world = shard
        noise = torch.randn((x.shape[0] * world, *x.shape[1:]), generator=generator)
        noise = noise[rank * x.shape[0]:(rank + 1) * x.shape[0]].to(x.device)
        return _step(x, noise, eps, "real", pixel_range, eps_scale)
    if cfg.attack_mode == "eval":
        return _step(x, _eval_logit_grad(D, x), eps, "fake", pixel_range, eps_scale)
    return fgsm_point(D, x, grad_loss, eps=eps, pixel_range=pixel_range, eps_scale=eps_scale)


def d_step_asgan(D, opt_D, x_real, x_fake, *, cfg: TrainConfig, eps: float,
                 pixel_range, generator, shard=(0, 1), eps_scale=None
                 ) -> dict[str, torch.Tensor]:
    """AS-GAN: the standard D update, then a second update of the same form (R1 included
    when ``r1_gamma > 0``) on adversarial reals, or, for ``first-order``, on the clean reals
    with the first-order model of the loss at the FGSM point (module docstring)."""
    use_step_grad = (cfg.perturbation == "fgsm" and cfg.attack_mode == "train" and eps > 0)
    stats, x_req = _first_step(D, opt_D, x_real, x_fake, cfg, want_input_grad=use_step_grad)
    # the perturbation uses the pre-update weights (SPEC 2.3): build it before opt_D.step()
    x_adv = perturb_reals(D, x_req, cfg=cfg, eps=eps, pixel_range=pixel_range,
                          generator=generator, grad_loss=x_req.grad, shard=shard,
                          eps_scale=eps_scale)
    opt_D.step()

    opt_D.zero_grad(set_to_none=True)
    to_point = None
    if cfg.perturbation == "first-order" and eps > 0:
        x_adv = x_adv.requires_grad_(True)  # clean reals; the penalty needs their gradient
        to_point = functools.partial(fgsm_point, D, eps=eps, pixel_range=pixel_range,
                                     eps_scale=eps_scale)
    fakes = x_fake.detach() if cfg.second_step == "real+fake" else None
    total, loss_adv, logits_adv, _, extras = update_loss(
        D, x_adv, fakes, r1_gamma=cfg.r1_gamma, to_fgsm_point=to_point)
    total.backward()
    opt_D.step()
    # loss_d_adv: the GAN loss of the second step (for first-order, at the clean reals; its
    # first-order term is logged as first_order)
    stats.update(loss_d_adv=loss_adv.detach(), logits_adv=logits_adv.detach().mean())
    if "r1" in extras:
        stats["r1_adv"] = extras["r1"]
    if "first_order" in extras:
        stats["first_order"] = extras["first_order"]
    return stats


D_STEPS = {"baseline": d_step_baseline, "asgan": d_step_asgan}


def train_step(G: nn.Module, D: nn.Module, opt_G, opt_D, x_real: torch.Tensor,
               z: torch.Tensor, *, cfg: TrainConfig, eps: float, pixel_range, generator,
               shard=(0, 1), eps_scale=None) -> dict[str, torch.Tensor]:
    """One training iteration: ``x_fake = G(z)``, the D step(s) of ``cfg.trainer``
    (``D_STEPS``), then one G step on the same fakes with D's parameters frozen.

    ``x_real`` ``(B, *shape)`` and ``z`` ``(B, z_dim)`` are this process's slice of the
    iteration's batch; ``eps`` is the size in force (:func:`eps_in_force`), in the data's
    eps unit (``eps_scale``: its absolute size of 1). ``opt_G`` / ``opt_D`` are optimizers or
    :class:`trainers.faults.SkipNonFinite` wrappers. Returns the D step's scalars plus
    ``loss_g``, detached 0-d tensors (no ``.item()``: the loop syncs once per log window).
    """
    x_fake = G(z)
    stats = D_STEPS[cfg.trainer](D, opt_D, x_real, x_fake, cfg=cfg, eps=eps,
                                 pixel_range=pixel_range, generator=generator, shard=shard,
                                 eps_scale=eps_scale)
    opt_G.zero_grad(set_to_none=True)
    with frozen_params(D):
        # the plain D: under DDP a forward whose backward gives D no gradients would leave
        # its reducer waiting; G's gradients are reduced by G's wrapper
        loss_g, _ = g_loss(unwrap(D), x_fake)
        loss_g.backward()
    opt_G.step()
    stats["loss_g"] = loss_g.detach()
    return stats


def eps_in_force(cfg: TrainConfig, step: int, batch_in_epoch: int) -> float:
    """The perturbation size at this iteration (also the first-order arm's): 0 during
    warm-up, in each epoch's off-window, for ``perturbation=none`` and for the baseline."""
    if cfg.trainer != "asgan" or cfg.perturbation == "none":
        return 0.0
    if step < cfg.eps_warmup or batch_in_epoch < cfg.eps_epoch_off:
        return 0.0
    return cfg.eps
