"""The D steps: ``baseline`` and ``asgan`` (SPEC section 2), and the shared GAN losses.

Both steps take the same arguments and return named scalar tensors (no ``.item()`` here: the
loop syncs once per log window). The only difference between the trainers is which of these
functions the loop is handed (``D_STEPS``).

Losses (non-saturating GAN, D returns raw logits):
``L_D = softplus(-D(x_real)).mean() + softplus(D(x_fake)).mean()``,
``L_G = softplus(-D(G(z))).mean()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from probes.core.attacks import fgsm
from trainers.config import TrainConfig


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


def r1_penalty(logits_real: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """``mean ||grad_x D(x_real)||^2`` with a graph for the second-order term (Mescheder 2018)."""
    (g,) = torch.autograd.grad(logits_real.sum(), x_real, create_graph=True)
    return g.pow(2).flatten(1).sum(1).mean()


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[None]:
    """Stop gradients into ``net``'s parameters (G's step need not pay for D's weight grads)."""
    flags = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(net.parameters(), flags):
            p.requires_grad_(flag)


def _first_step(D, opt_D, x_real, x_fake, cfg: TrainConfig, want_input_grad: bool):
    """Standard D update (+ R1). Returns stats and ``x_real`` (with ``.grad`` if asked)."""
    need_grad = want_input_grad or cfg.r1_gamma > 0
    x_real = x_real.detach().requires_grad_(need_grad)
    opt_D.zero_grad(set_to_none=True)
    loss, logits_real, logits_fake = d_loss(D, x_real, x_fake.detach())
    total = loss
    stats = {"loss_d": loss.detach(), "logits_real": logits_real.detach().mean(),
             "logits_fake": logits_fake.detach().mean()}
    if cfg.r1_gamma > 0:
        r1 = r1_penalty(logits_real, x_real)
        total = loss + 0.5 * cfg.r1_gamma * r1
        stats["r1"] = r1.detach()
    # x_real.grad (when asked) is filled by this same backward: no extra pass for AS-GAN
    total.backward()
    return stats, x_real


def d_step_baseline(D, opt_D, x_real, x_fake, *, cfg: TrainConfig, eps: float,
                    pixel_range, generator, shard=(0, 1)) -> dict[str, torch.Tensor]:
    """One standard D update on ``x_real`` and ``x_fake.detach()``."""
    stats, _ = _first_step(D, opt_D, x_real, x_fake, cfg, want_input_grad=False)
    opt_D.step()
    return stats


def perturb_reals(D, x_real, *, cfg: TrainConfig, eps: float, pixel_range, generator,
                  grad_loss: torch.Tensor | None, shard=(0, 1)) -> torch.Tensor:
    """``x_adv`` for AS-GAN's second D step.

    ``fgsm``: the probes' FGSM toward "fake" with ``sign(dL_D/dx_real)`` from the D step's
    own backward (``attack_mode=train``: batch statistics, pre-update weights, SPEC 2.3) or
    with a fresh eval-mode logit gradient (``attack_mode=eval``, one extra pass).
    ``gaussian``: the sign of N(0, I) noise (the paper's ablation). ``none`` or
    ``eps == 0``: the clean reals. ``shard = (rank, world)``: ``x_real`` is slice ``rank``
    of a global batch ``world`` times larger; the gaussian noise is drawn for the global batch
    and sliced the same way, so a multi-process run perturbs exactly as a single process.
    """
    x = x_real.detach()
    if eps == 0 or cfg.perturbation == "none":
        return x
    if cfg.perturbation == "gaussian":
        rank, world = shard
        noise = torch.randn((x.shape[0] * world, *x.shape[1:]), generator=generator)
        noise = noise[rank * x.shape[0]:(rank + 1) * x.shape[0]].to(x.device)
        return fgsm(D, x, eps=eps, toward="real", pixel_range=pixel_range, grad=noise)
    if cfg.attack_mode == "eval":
        return fgsm(D, x, eps=eps, toward="fake", pixel_range=pixel_range, mode="eval")
    return fgsm(D, x, eps=eps, toward="fake", pixel_range=pixel_range, grad=-grad_loss)


def d_step_asgan(D, opt_D, x_real, x_fake, *, cfg: TrainConfig, eps: float,
                 pixel_range, generator, shard=(0, 1)) -> dict[str, torch.Tensor]:
    """AS-GAN: the standard D update, then a second update on adversarial reals."""
    use_step_grad = (cfg.perturbation == "fgsm" and cfg.attack_mode == "train" and eps > 0)
    stats, x_req = _first_step(D, opt_D, x_real, x_fake, cfg, want_input_grad=use_step_grad)
    # the perturbation uses the pre-update weights (SPEC 2.3): build it before opt_D.step()
    x_adv = perturb_reals(D, x_req, cfg=cfg, eps=eps, pixel_range=pixel_range,
                          generator=generator, grad_loss=x_req.grad, shard=shard)
    opt_D.step()

    opt_D.zero_grad(set_to_none=True)
    if cfg.second_step == "real+fake":
        loss_adv, logits_adv, _ = d_loss(D, x_adv, x_fake.detach())
    else:
        logits_adv = D(x_adv)
        loss_adv = F.softplus(-logits_adv).mean()
    loss_adv.backward()
    opt_D.step()
    stats.update(loss_d_adv=loss_adv.detach(), logits_adv=logits_adv.detach().mean())
    return stats


D_STEPS = {"baseline": d_step_baseline, "asgan": d_step_asgan}


def eps_in_force(cfg: TrainConfig, step: int, batch_in_epoch: int) -> float:
    """The perturbation size at this iteration: 0 during warm-up, in each epoch's off-window,
    for ``perturbation=none`` and for the baseline."""
    if cfg.trainer != "asgan" or cfg.perturbation == "none":
        return 0.0
    if step < cfg.eps_warmup or batch_in_epoch < cfg.eps_epoch_off:
        return 0.0
    return cfg.eps
