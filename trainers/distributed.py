"""Data-parallel training on ``torch.distributed``: torchrun launch, ranks, shards, SyncBN.

``asgan-train --nproc N ...`` execs ``python -m torch.distributed.run --standalone
--nproc-per-node N -m trainers ...`` (the same as ``torchrun --nproc_per_node=N -m trainers
...``). Each worker finds ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its environment and
:func:`setup` joins the process group: NCCL on CUDA (one GPU per local rank), gloo on CPU.

How a run with ``W`` processes relates to a single-process run with the same config:

- ``batch_size`` is the **global** batch; it must be divisible by ``W``. Every rank draws the
  same global batch indices (:class:`trainers.loop.BatchOrder`, a pure function of
  ``(seed, step)``: it plays the role of a ``DistributedSampler``) and the same global latents,
  and takes its slice ``r`` of both (:meth:`Dist.shard`): the data order and the latents are
  those of the single-process run.
- G and D are wrapped in ``DistributedDataParallel``, which *averages* gradients over ranks;
  every loss is a mean over the local shard, so the average is the global-batch mean (also for
  the R1 term and AS-GAN's second step). AS-GAN's FGSM perturbation is computed per rank on
  its own shard from the gradient of its own first backward.
- When neither net has BatchNorm (``mlp``) the run therefore follows the single-process one
  up to float round-off (measured: 3e-8 after 3 steps). With BatchNorm (``dcgan`` G and D,
  ``resnet`` G) each rank normalises with the statistics of its own shard, so the updates
  differ from the single-process ones (a different, equally valid estimator: 7e-2 apart after
  2 steps); ``sync_bn=True`` uses global-batch statistics instead and follows the
  single-process run again (1e-6): ``torch.nn.SyncBatchNorm`` on CUDA, :class:`SyncBatchNorm`
  here on CPU, where torch's refuses to run. In one process ``sync_bn`` changes nothing.
- "Per-rank seeding": rank r's latents and gaussian noise are slice r of the draw a single
  process makes from ``(seed, step)``; the weights start from the same seed on every rank
  (and DDP broadcasts rank 0's).
- Only rank 0 writes (config, stats, TensorBoard, samples, snapshots). On resume, rank 0 picks
  the snapshot and broadcasts its path; every rank loads it (weights, optimizer state), and
  the step fixes all randomness.
- Control decisions (stop on a signal, stop on non-finite values) are agreed by a small
  all-reduce on a gloo group, so ranks never part ways and no GPU sync is added for them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

from asgan_base.errors import UserError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. ``world == 1``: plain single-process training."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    control: Any = None  # gloo process group for control messages (None: single process)

    @property
    def main(self) -> bool:
        """True on the one process that writes files (rank 0)."""
        return self.rank == 0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's slice ``r`` of ``W`` equal slices along dim 0 of a global batch."""
        if self.world == 1:
            return x
        n = x.shape[0] // self.world
        return x[self.rank * n:(self.rank + 1) * n]

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on any rank (all ranks get the same answer)."""
        if self.world == 1:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item() > 0)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average named floats over ranks (same keys on every rank)."""
        if self.world == 1 or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(t, group=self.control)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (JSON-like) on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier(group=self.control)


def env_world() -> int:
    """``WORLD_SIZE`` set by torchrun, or 1."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(device: torch.device, batch_size: int) -> Dist:
    """Join the torchrun job this process belongs to (if any) and return its :class:`Dist`.

    Args:
        device: the resolved device type for the run (``cpu`` or ``cuda``).
        batch_size: the global batch; must be divisible by the number of processes.

    Returns:
        ``Dist`` with this rank's device (``cuda:LOCAL_RANK`` on CUDA). Idempotent: a second
        call in the same process reuses the process group.
    """
    world = env_world()
    if world <= 1:
        return Dist(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if batch_size % world:
        raise UserError(f"batch_size {batch_size} is not divisible by {world} processes: the "
                        "global batch is split evenly; pick a multiple of --nproc")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} "
                            "visible): use at most one process per GPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    # a CPU-side group for control messages: no GPU sync for flags and stats under NCCL
    control = dist.new_group(backend="gloo") if device.type == "cuda" else dist.group.WORLD
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device, control=control)


def exit_worker(code: int, *, agreed: bool) -> NoReturn:
    """End this torchrun worker with exit status ``code``: leave the process group, flush, exit.

    Args:
        code: the exit status (0: success; 2: user error; 128 + signal: interrupted).
        agreed: True when every rank is known to reach this call (a finished or jointly
            interrupted run): the ranks then meet at a barrier first, so none tears down its
            connections while another still talks. False after a one-rank error, where a
            barrier could wait for a rank that has already left.

    The process ends with ``os._exit`` after the group is destroyed and the streams are
    flushed, skipping interpreter finalization. With a plain return, about 1 finished gloo run
    in 20 on a loaded 2-core machine aborted there (SIGABRT, "terminate called without an
    active exception", no Python frame on the stack: C++ state being destroyed at exit);
    with this exit, 0 in 80. Every file the run writes is complete by then (atomic writes,
    TensorBoard closed by the loop).
    """
    if dist.is_initialized():
        if agreed:
            dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def wrap(net: nn.Module, ctx: Dist, *, sync_bn: bool) -> nn.Module:
    """``net`` wrapped in DistributedDataParallel (BatchNorm made synchronous if asked).

    Single process: ``net`` unchanged. The parameters keep their identity, so optimizers
    built before wrapping stay valid, and the state-dict names of :func:`unwrap` are unchanged.
    """
    if ctx.world == 1:
        return net
    if sync_bn:
        net = convert_sync_batchnorm(net, cuda=ctx.device.type == "cuda")
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or ``net`` itself)."""
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


# ------------------------------------------------------------------ SyncBatchNorm on CPU


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with an all-reduce backward: differentiable to any order (R1)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverRanks.apply(grad)


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over all ranks.

    Works on any device with any backend (torch's ``SyncBatchNorm`` needs a GPU). Two
    differentiable all-reduces per forward (sum, then centred sum of squares: the two-pass
    variance, as precise as the single-process one). Gradients flow to every rank's inputs
    through the shared statistics, as in torch's. Eval mode and single-process runs use the
    plain BatchNorm path; the state dict is that of ``nn.BatchNorm2d``.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)  # broadcast per channel
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])])
        total = _SumOverRanks.apply(local)
        n = total[-1].detach()
        mean = total[:-1] / n  # (C,)
        centred = x - mean.reshape(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / n  # biased, as BN uses
        y = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), m)
        return y


def convert_sync_batchnorm(net: nn.Module, *, cuda: bool) -> nn.Module:
    """Replace every BatchNorm layer of ``net`` by a synchronous one, sharing its parameters
    and buffers (optimizers and state-dict names stay valid)."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for name, child in net.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and \
                not isinstance(child, (SyncBatchNorm, nn.SyncBatchNorm)):
            sync = SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                 child.track_running_stats)
            if child.affine:
                sync.weight, sync.bias = child.weight, child.bias
            if child.track_running_stats:
                sync.running_mean, sync.running_var = child.running_mean, child.running_var
                sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(net, name, sync)
        else:
            convert_sync_batchnorm(child, cuda=False)
    return net


# ------------------------------------------------------------------ launcher


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (the workers must not relaunch)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(argv: list[str], nproc: int) -> int:
    """Replace this process by ``torch.distributed.run`` with ``nproc`` workers on this host.

    Args:
        argv: the ``asgan-train`` arguments (``--nproc`` is removed; the rest is passed on).
        nproc: number of worker processes (>= 1); one per GPU on CUDA.

    Returns:
        Never returns when it launches (the process is replaced); returns nothing else.
        Inside a torchrun job (``WORLD_SIZE`` set) ``--nproc`` must equal that size.

    Examples:
        >>> launch(["--preset", "smoke", "--nproc", "2", "--out", "runs/ddp"], 2)
    """
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "trainers", *strip_nproc(argv)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)
    return 0  # pragma: no cover - execv does not return
