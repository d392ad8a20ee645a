"""The training loop: one function that reads top to bottom (``train``), plus small helpers.

All randomness of an iteration (its batch order, latents, gaussian noise) is derived from
``(seed, step)``, never from a global RNG that advances, so a run resumed from any snapshot
replays exactly the iterations an uninterrupted run would have made: on CPU the final weights
are bit-identical.

Run directory (``--out``):
``config.json`` (the resolved config), ``stats.jsonl`` (one line per log window), TensorBoard
events, ``samples/step-XXXXXX.png`` and snapshots ``ckpt-XXXXXX.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from trainers.checkpoint import (
    atomic_write_bytes,
    list_snapshots,
    load_optimizer_states,
    read_checkpoint,
    save_checkpoint,
    snapshot_name,
)
from trainers.config import TrainConfig, config_from_dict
from trainers.data import Dataset, load_dataset
from trainers.errors import UserError
from trainers.nets import build_net, net_specs
from trainers.steps import D_STEPS, eps_in_force, frozen, g_loss


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is visible; use --device cpu or auto")
    return torch.device(name)


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


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def _stats_upto(path: Path, step: int) -> list[dict]:
    """Lines of ``stats.jsonl`` up to ``step`` (a resumed run drops the lost tail)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("step", 0) <= step]


def build_models(cfg: TrainConfig, data: Dataset, device: torch.device):
    """Seeded G, D and their Adam optimizers for ``cfg`` on ``data``."""
    g_spec, d_spec = net_specs(cfg.arch, shape=data.shape, z_dim=cfg.z_dim, width=cfg.width,
                               d_spectral_norm=cfg.d_spectral_norm)
    torch.manual_seed(cfg.seed)
    G, D = build_net(g_spec).to(device), build_net(d_spec).to(device)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    return G, D, opt_G, opt_D, g_spec, d_spec


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
          ) -> Path:
    """Train G and D with ``cfg``; write the run directory ``out``. Returns the last snapshot.

    With ``resume=True`` the newest complete snapshot in ``out`` is loaded (weights,
    optimizer state) and training continues to ``cfg.steps``.

    Examples:
        >>> from trainers import make_config, train
        >>> train(make_config("smoke", {"trainer": "asgan"}), "runs/smoke")
    """
    out = Path(out)
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.data, root=cfg.data_root, resolution=cfg.resolution, seed=cfg.seed)
    G, D, opt_G, opt_D, g_spec, d_spec = build_models(cfg, data, device)
    start, wall_before = 0, 0.0
    if resume:
        last = list_snapshots(out)[-1]
        tensors, meta = read_checkpoint(last)
        G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
        D.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
        states = load_optimizer_states(last)
        opt_G.load_state_dict(states["opt_G"])
        opt_D.load_state_dict(states["opt_D"])
        start, wall_before = meta["step"], meta.get("wall_time_s", 0.0)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.json", json.dumps(cfg.to_dict(), indent=2).encode())
    stats_path = out / "stats.jsonl"
    rows = _stats_upto(stats_path, start)
    _write_jsonl(stats_path, rows)
    writer = _tensorboard(cfg, out)

    d_step = D_STEPS[cfg.trainer]
    order = BatchOrder(data.n, cfg.batch_size, cfg.seed)
    z_fixed = latents(cfg, 64, "samples").to(device)
    meta_base = {"config": cfg.to_dict(), "g_spec": g_spec, "d_spec": d_spec,
                 "pixel_range": list(data.pixel_range),
                 "data": {"name": data.name, "shape": list(data.shape)},
                 "torch": torch.__version__}
    window: dict[str, list[torch.Tensor]] = {}
    t_window, t_start = time.perf_counter(), time.perf_counter()
    last_snapshot = None
    bar = _progress(progress, start, cfg.steps)
    G.train()
    D.train()
    for step in range(start, cfg.steps):
        idx, pos = order(step)
        x_real = data.get(idx).to(device, non_blocking=True)  # (B, *shape) in pixel_range
        z = latents(cfg, cfg.batch_size, step).to(device)  # (B, z_dim)
        x_fake = G(z)
        eps = eps_in_force(cfg, step, pos)
        stats = d_step(D, opt_D, x_real, x_fake, cfg=cfg, eps=eps,
                       pixel_range=data.pixel_range, generator=rng(cfg.seed, "noise", step))

        opt_G.zero_grad(set_to_none=True)
        with frozen(D):
            loss_g, _ = g_loss(D, x_fake)
            loss_g.backward()
        opt_G.step()

        stats["loss_g"] = loss_g.detach()
        for key, value in stats.items():
            window.setdefault(key, []).append(value)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            elapsed = time.perf_counter() - t_window
            row = {"step": done, "eps": eps, "eps_255": round(eps * 255, 4)}
            row.update({k: float(torch.stack(v).float().mean()) for k, v in window.items()})
            row["images_per_s"] = len(window["loss_g"]) * cfg.batch_size / max(elapsed, 1e-9)
            _check_finite(row, out)
            rows.append(row)
            _write_jsonl(stats_path, rows)
            if writer is not None:
                for k, v in row.items():
                    if k != "step":
                        writer.add_scalar(k, v, done)
            window, t_window = {}, time.perf_counter()
        if (cfg.sample_every and done % cfg.sample_every == 0) or done == cfg.steps:
            save_samples(G, z_fixed, data, out / "samples" / f"step-{done:06d}.png")
        if (cfg.snapshot_every and done % cfg.snapshot_every == 0) or done == cfg.steps:
            meta = dict(meta_base, step=done,
                        wall_time_s=wall_before + time.perf_counter() - t_start)
            last_snapshot = save_checkpoint(out / snapshot_name(done), G=G, D=D, meta=meta,
                                            opt_G=opt_G, opt_D=opt_D)
            _prune(out, cfg.keep_snapshots)
        bar.update(1)
    bar.close()
    if writer is not None:
        writer.close()
    return last_snapshot or list_snapshots(out)[-1]


def _check_finite(row: dict, out: Path) -> None:
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        snaps = list_snapshots(out)
        keep = snaps[-1].name if snaps else "none yet"
        raise UserError(f"training diverged at step {row['step']}: non-finite {', '.join(bad)};"
                        f" last good snapshot: {keep} (lower the learning rates or eps)")


def _prune(out: Path, keep: int) -> None:
    if keep > 0:
        for old in list_snapshots(out)[:-keep]:
            old.unlink(missing_ok=True)


def _tensorboard(cfg: TrainConfig, out: Path):
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a broken install should not stop
        print("warning: tensorboard not importable; no events written", file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(out / "tb"))


def _progress(enabled: bool, start: int, total: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, file=sys.stderr,
                unit="it", dynamic_ncols=True, mininterval=1.0, desc="train")


def resume_config(out: str | Path, overrides: dict[str, Any]) -> TrainConfig:
    """The config of the run in ``out`` with the few fields a resume may change."""
    out = Path(out)
    if not out.is_dir():
        raise UserError(f"--resume {out}: no such run directory")
    if not list_snapshots(out):
        raise UserError(f"--resume {out}: no complete snapshot (ckpt-*.safetensors) to resume")
    try:
        stored = json.loads((out / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        _, meta = read_checkpoint(list_snapshots(out)[-1])
        stored = meta["config"]
    allowed = {"steps", "device", "log_every", "sample_every", "snapshot_every",
               "keep_snapshots", "tensorboard"}
    changed = sorted(k for k in overrides if k not in allowed and overrides[k] != stored.get(k))
    if changed:
        raise UserError(f"a resumed run keeps its config; cannot change {', '.join(changed)} "
                        f"(only {', '.join(sorted(allowed))})")
    stored.update(overrides)
    return config_from_dict(stored)
