"""The training loop: ``train`` sets a run up (``_train``) and ``_iterate`` runs its
iterations, each one screen: a batch, :func:`trainers.steps.train_step` (the D step(s) and the
G step, which ``bench/asgan_overhead.py`` times too), skip accounting, the log window, samples,
snapshots, signals; every part in a small function of its own.

All randomness of an iteration (its batch order, latents, gaussian noise) is derived from
``(seed, step)``, never from a global RNG that advances, so a run resumed from any snapshot
replays exactly the iterations an uninterrupted run would have made: on CPU the final weights
are bit-identical. The same function is one rank of a multi-process run under torchrun
(:mod:`trainers.distributed`: every rank takes its slice of the same global batch and
latents); what it does on signals, non-finite values and leftovers of a killed process is in
:mod:`trainers.faults`.

Run directory (``--out``):
``config.json`` (the resolved config), ``stats.jsonl`` (one line per log window, appended and
fsynced; a restart cuts it back to the resumed step), TensorBoard events,
``samples/step-XXXXXX.png``, snapshots ``ckpt-XXXXXX.safetensors`` and ``.lock``, which the
training process holds for as long as it writes (:mod:`asgan_base.lock`: one writer per run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from asgan_base.device import resolve_device
from asgan_base.errors import UserError
from asgan_base.files import atomic_write_bytes, write_error
from asgan_base.lock import acquire
from trainers.checkpoint import (
    list_snapshots,
    optimizer_states,
    read_checkpoint,
    save_checkpoint,
    snapshot_name,
)
from trainers.config import TrainConfig, config_from_dict
from trainers.data import Dataset, eps_units, load_dataset, resolve_eps_unit, training_part
from trainers.distributed import Dist, setup, unwrap, wrap
from trainers.faults import (
    SKIP_LIMIT,
    Interrupted,
    SkipNonFinite,
    StopSignals,
    all_buffers,
    nonfinite_names,
    remove_partial_files,
)
from trainers.nets import build_net, config_specs
from trainers.steps import eps_in_force, train_step


def rng(seed: int, *keys: Any) -> torch.Generator:
    """A CPU generator determined by ``seed`` and ``keys`` (e.g. ``("z", step)``)."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class BatchOrder:
    """Epoch-wise shuffled batches; batch ``step`` is a pure function of ``(seed, step)``."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < batch_size:
            raise UserError(f"the dataset has {n} samples, fewer than batch_size={batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size  # drop the ragged last batch
        self._epoch, self._perm = -1, None

    def __call__(self, step: int) -> tuple[torch.Tensor, int]:
        """Indices ``(batch_size,)`` for iteration ``step`` and its position in the epoch."""
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.n, generator=rng(self.seed, "order", epoch))
        return self._perm[pos * self.batch_size:(pos + 1) * self.batch_size], pos


def latents(cfg: TrainConfig, n: int, *keys: Any) -> torch.Tensor:
    """Standard-normal latents ``(n, z_dim)`` from ``rng(cfg.seed, "z", *keys)``."""
    return torch.randn(n, cfg.z_dim, generator=rng(cfg.seed, "z", *keys))


def save_samples(G: torch.nn.Module, z: torch.Tensor, data: Dataset, path: Path) -> None:
    """Image grid (or a 2-D scatter beside the data) of ``G(z)``, written atomically."""
    was_training = G.training
    G.eval()
    with torch.no_grad():
        x = G(z).cpu()
    G.train(was_training)
    if len(data.shape) == 1:
        from trainers.plots import scatter_png

        data_xy = data.get(torch.arange(min(data.n, 2000)))
        png = scatter_png(x, data_xy, title=path.stem)
    else:
        from trainers.plots import grid_png

        png = grid_png(x, data.pixel_range)
    atomic_write_bytes(path, png)


def _append_jsonl(path: Path, row: dict) -> None:
    """Append one line to ``path`` and make it durable (flush + fsync): each log window costs
    one small write, not a rewrite of the whole file. A kill mid-write can only tear this
    last line, which :func:`_truncate_stats` drops at the next start."""
    line = (json.dumps(row) + "\n").encode()
    try:
        with open(path, "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise write_error(path, e) from None


def _truncate_stats(path: Path, step: int) -> None:
    """Rewrite ``stats.jsonl`` (atomically, once per start) keeping only its complete lines
    with ``"step" <= step``: rows a resumed run will log again, and a last line torn by a
    kill mid-append, are dropped. A fresh run (``step`` 0) starts an empty file."""
    kept = []
    if step > 0 and path.exists():
        with open(path, "rb") as f:
            for line in f:  # one line at a time: no parsed copy of the whole history
                if not line.endswith(b"\n"):
                    continue  # torn: the process died while appending it
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError):  # torn mid-file, or hand-edited
                    continue
                if isinstance(row, dict) and type(row.get("step")) is int \
                        and row["step"] <= step:
                    kept.append(line)
    atomic_write_bytes(path, b"".join(kept))


def preflight(cfg: TrainConfig) -> None:
    """Raise the UserErrors a run would hit at start-up (device, data, architecture, batch
    size) without training: the ``--nproc`` launcher calls it, so a mistake is one line
    before any worker starts rather than one per worker plus torchrun's failure report."""
    resolve_device(cfg.device)
    data = load_dataset(cfg.data, root=cfg.data_root, resolution=cfg.resolution, seed=cfg.seed,
                        part=training_part(cfg.data, cfg.split))
    config_specs(cfg, data.shape)
    BatchOrder(data.n, cfg.batch_size, cfg.seed)


def _nhwc(cfg: TrainConfig, data: Dataset) -> bool:
    """channels_last applies to image data only (2-D mixtures have no channels)."""
    return cfg.channels_last and len(data.shape) == 3


def build_models(cfg: TrainConfig, data: Dataset, device: torch.device):
    """Seeded G, D and their Adam optimizers for ``cfg`` on ``data``."""
    g_spec, d_spec = config_specs(cfg, data.shape)
    torch.manual_seed(cfg.seed)
    G, D = build_net(g_spec).to(device), build_net(d_spec).to(device)
    if _nhwc(cfg, data):  # in place, before the optimizers see the parameters
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    return G, D, opt_G, opt_D, g_spec, d_spec


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
          ) -> Path:
    """Train G and D with ``cfg``; write the run directory ``out``. Returns the last snapshot.

    With ``resume=True`` the newest complete snapshot in ``out`` that passes its checksum is
    loaded (weights, optimizer state; the step fixes data order and every random draw) and
    training continues to ``cfg.steps``; a run with no snapshot yet starts from step 0.
    Under torchrun (``WORLD_SIZE`` > 1) this is one rank of a data-parallel run
    (:mod:`trainers.distributed`): only rank 0 writes files.

    Raises:
        UserError: another process writes ``out`` (raised before anything is written),
            bad data or config, unwritable output, or divergence (non-finite values with
            ``on_nonfinite=stop``); the message names the last good snapshot.
        trainers.faults.Interrupted: after SIGINT/SIGTERM, once a snapshot of the current
            step is on disk.

    Examples:
        >>> from trainers import make_config, train
        >>> train(make_config("smoke", {"trainer": "asgan"}), "runs/smoke")
    """
    out = Path(out)
    ctx = setup(resolve_device(cfg.device), cfg.batch_size)
    with _sole_writer(ctx, out):  # before anything is written, by this process or another
        return _train(cfg, out, ctx, resume=resume, progress=progress)


@contextlib.contextmanager
def _sole_writer(ctx: Dist, out: Path):
    """Rank 0 holds ``out``'s lock (:mod:`asgan_base.lock`) while the body runs; a refusal
    (another process writes ``out``) is the same UserError on every rank, so all ranks stop
    together before any collective that would wait for rank 0."""
    lock, refusal = None, None
    if ctx.main:
        try:
            lock = acquire(out)
        except UserError as e:
            refusal = str(e)
    refusal = ctx.broadcast(refusal)
    if refusal is not None:
        raise UserError(refusal)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, out: Path, ctx: Dist, *, resume: bool, progress: bool) -> Path:
    """The body of :func:`train`, run while this process (rank 0) holds ``out``'s lock."""
    data = load_dataset(cfg.data, root=cfg.data_root, resolution=cfg.resolution, seed=cfg.seed,
                        part=training_part(cfg.data, cfg.split))
    G, D, opt_G, opt_D, g_spec, d_spec = build_models(cfg, data, ctx.device)
    start, wall_before = _open_run_dir(cfg, out, ctx, resume, G, D, opt_G, opt_D)
    writer = _tensorboard(cfg, out, start) if ctx.main else None
    G, D = wrap(G, ctx, sync_bn=cfg.sync_bn), wrap(D, ctx, sync_bn=cfg.sync_bn)
    skip = cfg.on_nonfinite == "skip"
    # skip: optimizers that refuse non-finite gradients; stop: the plain ones (no extra sync)
    step_G, step_D = (SkipNonFinite(opt_G), SkipNonFinite(opt_D)) if skip else (opt_G, opt_D)
    # eps's unit on this data and the absolute size of eps = 1 (hi - lo for pixels, the mode
    # std on 2-D mixtures): the training FGSM converts with it and every probe reads it back
    units = eps_units(data, resolve_eps_unit(cfg.data, cfg.eps_unit))
    run = _Run(cfg=cfg, out=out, ctx=ctx, data=data, G=G, D=D, opt_G=opt_G, opt_D=opt_D,
               step_G=step_G, step_D=step_D, units=units, writer=writer,
               meta_base=_meta_base(cfg, data, units, g_spec, d_spec, ctx),
               wall_before=wall_before)
    order = BatchOrder(data.n, cfg.batch_size, cfg.seed)  # a bad batch size: before the bar
    bar = _progress(progress and ctx.main, start, cfg.steps)
    with StopSignals() as stop, _closing(bar, writer):
        return _iterate(run, order, start, bar, stop)


@dataclasses.dataclass
class _Run:
    """What every iteration of one run reads (set up once by :func:`_train`)."""

    cfg: TrainConfig
    out: Path
    ctx: Dist
    data: Dataset
    G: torch.nn.Module  # wrapped for data-parallel runs (trainers.distributed.wrap)
    D: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    step_G: Any  # opt_G, or SkipNonFinite(opt_G) with on_nonfinite=skip
    step_D: Any
    units: dict  # {"eps_unit", "eps_scale"} (trainers.data.eps_units)
    writer: Any  # TensorBoard SummaryWriter or None
    meta_base: dict  # every snapshot's meta, less its step and wall time
    wall_before: float  # seconds trained before this start (a resumed run)
    t_start: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def skip(self) -> bool:
        return self.cfg.on_nonfinite == "skip"


@dataclasses.dataclass
class _Window:
    """The iterations since the last stats line: their scalars (one list of 0-d tensors per
    name), how many updates ``on_nonfinite=skip`` refused, and when the window began."""

    start: int  # iterations done before the window
    values: dict[str, list[torch.Tensor]] = dataclasses.field(default_factory=dict)
    skipped: int = 0
    t0: float = dataclasses.field(default_factory=time.perf_counter)

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for key, value in stats.items():
            self.values.setdefault(key, []).append(value)


def _iterate(run: _Run, order: BatchOrder, start: int, bar, stop: StopSignals) -> Path:
    """Iterations ``start .. cfg.steps - 1``: train, log, sample, snapshot, stop on a signal.
    Returns the last snapshot written."""
    cfg, ctx, data = run.cfg, run.ctx, run.data
    z_fixed = latents(cfg, 64, "samples").to(ctx.device)
    buffers = all_buffers(run.G, run.D) if run.skip else []
    window, in_a_row, last, last_step = _Window(start), 0, None, None
    run.G.train()
    run.D.train()
    for step in range(start, cfg.steps):
        x_real, z, pos = _batch(run, order, step)
        saved = [b.clone() for b in buffers]  # BatchNorm buffers, if the update is refused
        eps = eps_in_force(cfg, step, pos)
        window.add(train_step(run.G, run.D, run.step_G, run.step_D, x_real, z, cfg=cfg,
                              eps=eps, pixel_range=data.pixel_range,
                              generator=rng(cfg.seed, "noise", step),
                              shard=(ctx.rank, ctx.world), eps_scale=run.units["eps_scale"]))
        if run.skip:
            in_a_row = _count_skips(run, window, buffers, saved, in_a_row, step)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            _log_window(run, window, done, eps)
            window = _Window(done)
        if ctx.main and ((cfg.sample_every and done % cfg.sample_every == 0)
                         or done == cfg.steps):
            save_samples(unwrap(run.G), z_fixed, data, run.out / "samples" / f"step-{done:06d}.png")
        if (cfg.snapshot_every and done % cfg.snapshot_every == 0) or done == cfg.steps:
            last, last_step = _snapshot(run, done, window), done
        bar.update(1)
        # all ranks stop at the same step; a signal during the last step changes nothing
        if ctx.any(stop.signum is not None) and done < cfg.steps:
            if last_step != done:
                last = _snapshot(run, done, window)
            ctx.barrier()  # rank 0's snapshot is on disk before anyone exits
            raise Interrupted(stop.signum or signal.SIGTERM, done, last)
    return last or list_snapshots(run.out)[-1]


def _open_run_dir(cfg: TrainConfig, out: Path, ctx: Dist, resume: bool, G, D, opt_G, opt_D
                  ) -> tuple[int, float]:
    """Remove a killed process's debris, load the newest good snapshot when resuming, write
    ``config.json`` and cut ``stats.jsonl`` back to the start step (rank 0 writes).
    Returns (start step, wall time trained before it)."""
    start, wall_before = 0, 0.0
    if ctx.main:
        remove_partial_files(out)  # debris of a process killed mid-write
    if resume:
        # rank 0 chooses, every rank loads the same file: all ranks agree on the step
        last = ctx.broadcast(_newest_good_snapshot(out) if ctx.main else None)
        if last is None:
            _log(ctx, f"no complete snapshot in {out} yet: starting from step 0")
        else:
            start, wall_before = _restore(Path(last), G, D, opt_G, opt_D)
    if ctx.main:
        atomic_write_bytes(out / "config.json", json.dumps(cfg.to_dict(), indent=2).encode())
        _truncate_stats(out / "stats.jsonl", start)
    return start, wall_before


def _meta_base(cfg: TrainConfig, data: Dataset, units: dict, g_spec, d_spec, ctx: Dist) -> dict:
    """The meta every snapshot of the run records (its step and wall time are added)."""
    return {"config": cfg.to_dict(), "g_spec": g_spec, "d_spec": d_spec,
            "pixel_range": list(data.pixel_range), **units,
            # the part trained on and the split it belongs to (absent: all of the data),
            # so a probe rebuilds the held-out part without reading the config
            "data": {"name": data.name, "shape": list(data.shape),
                     "part": data.info.get("part", "all"),
                     **({"split": data.info["split"]} if "split" in data.info else {})},
            "torch": torch.__version__, "world_size": ctx.world}


def _batch(run: _Run, order: BatchOrder, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """This process's slice of iteration ``step``: reals ``(B/W, *shape)`` and latents
    ``(B/W, z_dim)`` on the device, and the batch's position in its epoch."""
    cfg, ctx = run.cfg, run.ctx
    idx, pos = order(step)
    # every rank draws the global batch and latents and takes its slice: the data order and
    # the noise are the single-process ones
    x_real = run.data.get(ctx.shard(idx)).to(ctx.device, non_blocking=True)
    if _nhwc(cfg, run.data):
        x_real = x_real.contiguous(memory_format=torch.channels_last)
    z = ctx.shard(latents(cfg, cfg.batch_size, step)).to(ctx.device)
    return x_real, z, pos


def _count_skips(run: _Run, window: _Window, buffers: list[torch.Tensor],
                 saved: list[torch.Tensor], in_a_row: int, step: int) -> int:
    """``on_nonfinite=skip``: add this iteration's refused updates to the window, put back the
    buffers its forward changed if one was refused, and stop after ``SKIP_LIMIT`` iterations
    in a row with one. Returns the new count of such iterations in a row."""
    skipped = run.step_G.skipped + run.step_D.skipped
    run.step_G.skipped = run.step_D.skipped = 0
    window.skipped += skipped
    in_a_row = in_a_row + 1 if skipped else 0
    if skipped:  # BatchNorm stats of a non-finite forward are not kept either
        with torch.no_grad():
            for buf, old in zip(buffers, saved):
                buf.copy_(old)
    if in_a_row >= SKIP_LIMIT:
        raise UserError(f"training diverged: {SKIP_LIMIT} iterations in a row had "
                        f"non-finite gradients up to step {step + 1}; last good "
                        f"snapshot: {_last_name(run.out)} (lower the learning rates "
                        "or eps)")
    return in_a_row


def _log_window(run: _Run, window: _Window, done: int, eps: float) -> None:
    """One ``stats.jsonl`` line (and TensorBoard scalars) for the window ending at ``done``:
    means over its iterations and the ranks. A non-finite mean is an error naming the first
    bad step (``on_nonfinite=stop``) or null (``skip``, finite values only)."""
    elapsed = time.perf_counter() - window.t0
    row = {"step": done, "eps": eps}  # in the unit meta["eps_unit"] names
    if run.units["eps_unit"] == "pixel":
        row["eps_255"] = round(eps * 255, 4)  # grey levels: pixel units only
    row.update(run.ctx.mean({k: _window_mean(v, finite_only=run.skip)
                             for k, v in window.values.items()}))
    row["images_per_s"] = (len(window.values["loss_g"]) * run.cfg.batch_size
                           / max(elapsed, 1e-9))
    if run.skip:
        row["skipped"] = window.skipped
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in row.items()}
    else:
        _check_finite(row, run.out, window.values, window.start)
    if run.ctx.main:
        _append_jsonl(run.out / "stats.jsonl", row)
        if run.writer is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    run.writer.add_scalar(k, v, done)


def _snapshot(run: _Run, done: int, window: _Window) -> Path:
    """Write ``ckpt-<done>`` (rank 0) with weights, optimizer state and meta; its path."""
    G, D = unwrap(run.G), unwrap(run.D)
    # never write non-finite state: the previous snapshot stays the last good one
    _check_state(run.ctx, run.out, done, window.values, window.start, G, D,
                 losses=not run.skip)
    path = run.out / snapshot_name(done)
    if run.ctx.main:
        meta = dict(run.meta_base, step=done,
                    wall_time_s=run.wall_before + time.perf_counter() - run.t_start)
        save_checkpoint(path, G=G, D=D, meta=meta, opt_G=run.opt_G, opt_D=run.opt_D)
        _prune(run.out, run.cfg.keep_snapshots)
    return path


@contextlib.contextmanager
def _closing(bar, writer):
    """Close the progress bar and flush TensorBoard however the loop ends."""
    try:
        yield
    finally:
        bar.close()
        if writer is not None:
            writer.close()


def _log(ctx: Dist, msg: str) -> None:
    if ctx.main:
        print(f"asgan-train: {msg}", file=sys.stderr, flush=True)


def _newest_good_snapshot(out: Path) -> str | None:
    """The newest snapshot in ``out`` that passes its checksum and holds optimizer state."""
    for path in reversed(list_snapshots(out)):
        try:
            _, meta = read_checkpoint(path)
            if "opt_G" in meta and "opt_D" in meta:
                return str(path)
            print(f"asgan-train: warning: {path.name} holds no optimizer state; skipped",
                  file=sys.stderr)
        except UserError as e:
            print(f"asgan-train: warning: skipping {path.name}: {e}", file=sys.stderr)
    return None


def _restore(path: Path, G, D, opt_G, opt_D) -> tuple[int, float]:
    """Load weights and optimizer state from ``path``; return (step, wall time so far)."""
    tensors, meta = read_checkpoint(path)
    states = optimizer_states(tensors, meta, path)
    try:
        G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
        D.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
        opt_G.load_state_dict(states["opt_G"])
        opt_D.load_state_dict(states["opt_D"])
        _check_adam_state(opt_G)
        _check_adam_state(opt_D)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} does not fit this run's nets or optimizers ({first[:120]}); "
                        "resume with the config it was written with") from None
    return int(meta["step"]), float(meta.get("wall_time_s", 0.0))


def _check_adam_state(opt: torch.optim.Optimizer) -> None:
    """ValueError unless every restored Adam state has its moments shaped like the parameter
    (``load_state_dict`` checks none of it: a bad file would crash the first ``step()``)."""
    for group in opt.param_groups:
        moments = {"exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if group.get("amsgrad")
                                               else set())
        for p in group["params"]:
            state = opt.state.get(p)
            if not state:
                continue  # no state yet: Adam initialises it on the first step
            if set(state) != moments | {"step"}:
                raise ValueError(f"Adam state has keys {sorted(state)}")
            for key in moments:
                if not (torch.is_tensor(state[key]) and state[key].shape == p.shape):
                    raise ValueError(f"Adam {key} does not match its parameter's shape")
            step = state["step"]
            value = float(step) if torch.is_tensor(step) and step.numel() == 1 else step
            if not isinstance(value, (int, float)) or not 0 <= value < 2**53:
                raise ValueError("Adam step is not a count")


def _window_mean(values: list[torch.Tensor], *, finite_only: bool) -> float:
    v = torch.stack(values).float()
    if finite_only:
        v = v[v.isfinite()]
        return float(v.mean()) if v.numel() else math.nan
    return float(v.mean())


def _first_bad(window: dict[str, list[torch.Tensor]], window_start: int) -> tuple[int, list]:
    """(iteration, names) of the first non-finite value in the window; (0, []) if none."""
    if not window:
        return 0, []
    bad = {k: (~torch.stack(v).float().isfinite()).nonzero().flatten().tolist()
           for k, v in window.items()}
    bad = {k: i for k, i in bad.items() if i}
    if not bad:
        return 0, []
    first = min(i[0] for i in bad.values())
    return window_start + first + 1, sorted(k for k, i in bad.items() if first in i)


def _last_name(out: Path) -> str:
    snaps = list_snapshots(out)
    return str(snaps[-1]) if snaps else "none yet"


def _check_finite(row: dict, out: Path, window: dict, window_start: int) -> None:
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        at, names = _first_bad(window, window_start)
        where = f"step {at} ({', '.join(names)})" if at else f"the window ending at step " \
            f"{row['step']} ({', '.join(bad)})"
        raise UserError(f"training diverged: non-finite values at {where}; last good snapshot: "
                        f"{_last_name(out)} (lower the learning rates or eps, or pass "
                        "--on-nonfinite skip)")


def _check_state(ctx: Dist, out: Path, done: int, window: dict, window_start: int, G, D, *,
                 losses: bool) -> None:
    """Before a snapshot: losses (``losses=True``) and every weight and buffer finite on all
    ranks, or a UserError naming the last good snapshot."""
    at, names = _first_bad(window, window_start) if losses else (0, [])
    tensors = nonfinite_names(G=G, D=D)
    if ctx.any(bool(names or tensors)):
        what = f"non-finite {', '.join(names)} at step {at}" if names else \
            f"non-finite {', '.join(tensors[:3]) or 'values on another rank'} at step {done}"
        raise UserError(f"training diverged: {what}; not saving step {done}; last good "
                        f"snapshot: {_last_name(out)} (lower the learning rates or eps, or "
                        "pass --on-nonfinite skip)")


def _prune(out: Path, keep: int) -> None:
    if keep > 0:
        for old in list_snapshots(out)[:-keep]:
            old.unlink(missing_ok=True)


def _tensorboard(cfg: TrainConfig, out: Path, start: int = 0):
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a broken install should not stop
        print("warning: tensorboard not importable; no events written", file=sys.stderr)
        return None
    # purge_step: events a killed run logged after its last snapshot are dropped on resume
    return SummaryWriter(log_dir=str(out / "tb"), purge_step=start or None)


def _progress(enabled: bool, start: int, total: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, file=sys.stderr,
                unit="it", dynamic_ncols=True, mininterval=1.0, desc="train")


def resume_config(out: str | Path, overrides: dict[str, Any]) -> TrainConfig:
    """The config of the run in ``out`` with the few fields a resume may change."""
    out = Path(out)
    if not out.is_dir():
        raise UserError(f"--resume {out}: no such run directory")
    try:
        stored = json.loads((out / "config.json").read_text())
        if not isinstance(stored, dict):
            raise ValueError
    except (OSError, ValueError):  # config.json is written first; fall back to a snapshot
        last = _newest_good_snapshot(out)
        if last is None:
            raise UserError(f"--resume {out}: neither a readable config.json nor a complete "
                            "snapshot (ckpt-*.safetensors): start a new run with --out") from None
        _, meta = read_checkpoint(last)
        stored = meta["config"]
    allowed = {"steps", "device", "log_every", "sample_every", "snapshot_every",
               "keep_snapshots", "tensorboard"}
    changed = sorted(k for k in overrides if k not in allowed and overrides[k] != stored.get(k))
    if changed:
        raise UserError(f"a resumed run keeps its config; cannot change {', '.join(changed)} "
                        f"(only {', '.join(sorted(allowed))})")
    stored.update(overrides)
    return config_from_dict(stored)
