"""Where probe inputs come from: checkpoints, real samples and generated samples.

This is an *edge* module (it imports ``trainers`` to rebuild nets and load data); the probe
primitives themselves take plain tensors. The CLI and the notebooks both call these, so a
notebook sees exactly the inputs the CLI sees for the same seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.errors import UserError

FORMATS = ("asgan", "state-dict", "authors", "authors-dcgan", "mimicry")


def load(path: str | Path, *, device: str | torch.device = "cpu", format: str = "asgan",
         arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
         pixel_range: tuple[float, float] | None = None
         ) -> tuple[nn.Module | None, nn.Module, dict[str, Any]]:
    """``(G, D, meta)``; nets in eval mode on ``device``.

    Args:
        path: the file.
        device: where the nets go.
        format: ``"asgan"`` (default): an asgan-probe checkpoint (:func:`load_checkpoint`);
            ``"state-dict"``, ``"authors"``, ``"authors-dcgan"``, ``"mimicry"``: a foreign
            discriminator (:mod:`probes.io.foreign`; G is None and ``meta`` names no dataset).
        arch, arch_kwargs: for ``state-dict``, our architecture and its kwargs; for
            ``authors``, the AS-GAN authors' family (``"resnet64_same_sn"``); else inferred.
        pixel_range: for foreign files, the input range D expects (default (-1, 1)).
    """
    if format not in FORMATS:
        raise UserError(f"unknown format {format!r}; valid: {', '.join(FORMATS)}")
    if format == "asgan":
        if arch is not None or arch_kwargs or pixel_range is not None:
            raise UserError("--arch, --arch-kwargs and --pixel-range apply to foreign formats "
                            "only: an asgan-probe checkpoint describes itself")
        from trainers.checkpoint import load_checkpoint

        return load_checkpoint(path, device=device)
    from probes.io.foreign import load_foreign

    return load_foreign(path, format=format, arch=arch, arch_kwargs=arch_kwargs,
                        pixel_range=pixel_range, device=device)


def to_pixel_range(x: torch.Tensor, src: tuple[float, float], dst: tuple[float, float]
                   ) -> torch.Tensor:
    """Map samples linearly from range ``src`` to ``dst`` (e.g. [-1, 1] data for a D trained on
    [0, 1]); returns ``x`` itself when the ranges agree."""
    (a, b), (c, d) = (float(v) for v in src), (float(v) for v in dst)
    if (a, b) == (c, d):
        return x
    return (x - a) * ((d - c) / (b - a)) + c


def dataset_for(meta: dict[str, Any], *, data: str | None = None, data_root: str | None = None):
    """The dataset a checkpoint was trained on (or ``data``/``data_root`` when given)."""
    from trainers.data import load_dataset

    cfg = meta.get("config", {})
    name = data or cfg.get("data")
    if name is None:
        raise UserError("this checkpoint does not name its dataset; pass --data")
    root = data_root if data_root is not None else cfg.get("data_root")
    resolution = cfg.get("resolution")
    shape = meta.get("data", {}).get("shape")
    if resolution is None and shape and len(shape) == 3:
        resolution = shape[-1]
    return load_dataset(name, root=root, resolution=resolution, seed=cfg.get("seed", 0))


def reals(meta: dict[str, Any], n: int, *, seed: int = 0, data: str | None = None,
          data_root: str | None = None) -> torch.Tensor:
    """``n`` real samples ``(n, *shape)`` in the data's pixel range, chosen by ``seed``
    (a seeded permutation, so the same seed gives the same images whatever the batch size)."""
    ds = dataset_for(meta, data=data, data_root=data_root)
    if n > ds.n:
        raise UserError(f"asked for {n} real samples but {ds.name} has {ds.n}; lower --n")
    idx = torch.randperm(ds.n, generator=torch.Generator().manual_seed(seed))[:n]
    return ds.get(idx)


@torch.no_grad()
def fakes(G: nn.Module, meta: dict[str, Any], n: int, *, seed: int = 0, batch_size: int = 256,
          device: str | torch.device = "cpu") -> torch.Tensor:
    """``n`` generated samples ``G(z)`` on CPU; ``z`` is drawn per sample from ``seed`` on the
    CPU, so the samples do not depend on ``batch_size`` or the device's RNG."""
    z_dim = meta["g_spec"]["kwargs"]["z_dim"]
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    was_training = G.training
    G.eval()
    out = [G(z[i:i + batch_size].to(device)).cpu() for i in range(0, n, batch_size)]
    G.train(was_training)
    return torch.cat(out)


def resolve_device(name: str) -> torch.device:
    from trainers.loop import resolve_device as _resolve

    return _resolve(name)


def probe_inputs(meta: dict[str, Any], G: nn.Module | None, *, population: str, n: int,
                 seed: int = 0, device: str | torch.device = "cpu", data: str | None = None,
                 data_root: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, reference)``: ``n`` seeded samples of one population and its clean reference group.

    Reals are chosen by ``seed`` from the checkpoint's dataset (:func:`reals`), fakes are
    ``G(z)`` with ``z`` drawn from ``seed`` (:func:`fakes`: the same ``z`` for every
    checkpoint). The reference group, whose BatchNorm statistics ``frozen`` mode holds fixed,
    is the first :func:`probes.io.checkpoints.group_size` samples (D's training batch size)
    of the same seeded draw: fixed by the seed, the same whatever ``n`` or the batch size.
    """
    from probes.io.checkpoints import group_size

    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    m = max(n, min(group_size(meta), 1024))
    if population == "real":
        x = reals(meta, m, seed=seed, data=data, data_root=data_root)
    elif population == "fake":
        if G is None:
            raise UserError(f"{meta.get('source', 'this file')} holds no generator (a foreign "
                            "discriminator): use --population real")
        x = fakes(G, meta, m, seed=seed, device=device)
    else:
        raise UserError(f"population must be real or fake, got {population!r}")
    return x[:n], x[:group_size(meta)]


def real_split(meta: dict[str, Any]) -> str:
    """Which reals a probe of this checkpoint uses, in words, for every record: the held-out
    part when the checkpoint records a split (reals D never trained on), else all its data."""
    from trainers.data import split_of

    split = split_of(meta)
    name = meta.get("data", {}).get("name") or meta.get("config", {}).get("data") or "?"
    if split is None:
        return f"all of {name} (no split recorded: D may have trained on them)"
    return f"held-out part of {name} ({split.get('n_heldout', '?')} samples, never trained on)"
