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


# what --reals accepts, and the data part each choice loads
REALS = {"held-out": "heldout", "heldout": "heldout", "train": "train", "all": "all"}


def reals_part(meta: dict[str, Any], reals: str | None = None, *, data: str | None = None
               ) -> str:
    """The part of the data a probe of this checkpoint takes its reals from: ``"heldout"``,
    ``"train"`` or ``"all"``.

    ``reals`` None (the default): the held-out part when the checkpoint records a split (reals
    D never trained on), else all of the data. ``"held-out"``, ``"train"`` or ``"all"`` ask
    for one; a part needs a recorded split (UserError otherwise). ``data`` naming another
    dataset than the checkpoint's makes the split meaningless: all of it.
    """
    from trainers.data import canonical_name, split_of

    if reals is not None and reals not in REALS:
        raise UserError(f"--reals must be held-out, train or all; got {reals!r}")
    split = split_of(meta)
    trained = (meta.get("data") or {}).get("name") or meta.get("config", {}).get("data")
    if split is not None and data is not None and trained is not None \
            and canonical_name(data) != canonical_name(trained):
        split = None  # reals of another dataset: D trained on none of them
    if reals is None:
        return "heldout" if split is not None else "all"
    part = REALS[reals]
    if part != "all" and split is None:
        raise UserError(f"--reals {reals}: this checkpoint records no train/held-out split "
                        "(trained on all its data, or before splits were recorded); use "
                        "--reals all")
    return part


def dataset_for(meta: dict[str, Any], *, data: str | None = None, data_root: str | None = None,
                part: str = "all"):
    """The dataset a checkpoint was trained on (or ``data``/``data_root`` when given).

    ``part`` ("all", "train", "heldout"; see :func:`reals_part`): a part of the split the
    checkpoint records, rebuilt here and checked against the record (same held-out samples,
    ``trainers.data.check_split``).
    """
    from trainers.data import check_split, load_dataset, split_of

    cfg = meta.get("config", {})
    name = data or cfg.get("data")
    if name is None:
        raise UserError("this checkpoint does not name its dataset; pass --data")
    root = data_root if data_root is not None else cfg.get("data_root")
    resolution = cfg.get("resolution")
    shape = meta.get("data", {}).get("shape")
    if resolution is None and shape and len(shape) == 3:
        resolution = shape[-1]
    ds = load_dataset(name, root=root, resolution=resolution, seed=cfg.get("seed", 0),
                      part=part)
    if part != "all":
        check_split(ds, split_of(meta))
    return ds


def reals(meta: dict[str, Any], n: int, *, seed: int = 0, data: str | None = None,
          data_root: str | None = None, part: str | None = None) -> torch.Tensor:
    """``n`` real samples ``(n, *shape)`` in the data's pixel range, chosen by ``seed``
    (a seeded permutation, so the same seed gives the same images whatever the batch size).

    ``part``: which reals (:func:`reals_part`): by default the held-out part when the
    checkpoint records a split, else all of the data; :func:`real_split` says which in words.
    """
    which = reals_part(meta, part, data=data)
    ds = dataset_for(meta, data=data, data_root=data_root, part=which)
    if n > ds.n:
        what = {"heldout": "the held-out part of ", "train": "the train part of "}.get(which, "")
        hint = " or pass --reals all (includes reals D trained on)" if which != "all" else ""
        raise UserError(f"asked for {n} real samples but {what}{ds.name} has {ds.n}; lower --n "
                        f"to at most {ds.n}{hint}")
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
                 data_root: str | None = None, part: str | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, reference)``: ``n`` seeded samples of one population and its clean reference group.

    Reals are chosen by ``seed`` from the checkpoint's dataset (:func:`reals`), fakes are
    ``G(z)`` with ``z`` drawn from ``seed`` (:func:`fakes`: the same ``z`` for every
    checkpoint). The reference group, whose BatchNorm statistics ``frozen`` mode holds fixed,
    is the first :func:`probes.io.checkpoints.group_size` samples (D's training batch size)
    of the same seeded draw: fixed by the seed, the same whatever ``n`` or the batch size.
    ``part`` chooses the reals (:func:`reals_part`: by default the held-out part when the
    checkpoint records a split).
    """
    from probes.io.checkpoints import group_size

    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    m = max(n, min(group_size(meta), 1024))
    if population == "real":
        x = reals(meta, m, seed=seed, data=data, data_root=data_root, part=part)
    elif population == "fake":
        if G is None:
            raise UserError(f"{meta.get('source', 'this file')} holds no generator (a foreign "
                            "discriminator): use --population real")
        x = fakes(G, meta, m, seed=seed, device=device)
    else:
        raise UserError(f"population must be real or fake, got {population!r}")
    return x[:n], x[:group_size(meta)]


def real_split(meta: dict[str, Any], part: str | None = None, *, data: str | None = None
               ) -> str:
    """Which reals a probe of this checkpoint uses (:func:`reals` with the same ``part`` and
    ``data``), in words, for every record: e.g. "held-out 1000 of mnist10k (never trained on)",
    "train 9000 of mnist10k (trained on)", "all of ring8 (no split recorded: ...)"."""
    from trainers.data import canonical_name, split_of

    which = reals_part(meta, part, data=data)
    split = split_of(meta)
    trained = meta.get("data", {}).get("name") or meta.get("config", {}).get("data")
    name = data or trained or "?"
    if which == "heldout":
        fresh = ", fresh samples" if split.get("kind") == "sampled" else ""
        return f"held-out {split['n_heldout']} of {name} (never trained on{fresh})"
    if which == "train":
        return f"train {split['n_train']} of {name} (trained on)"
    if data is not None and trained is not None and canonical_name(data) != canonical_name(trained):
        return f"all of {name} (not the data D trained on)"
    if split is not None:
        return f"all of {name} (a split is recorded; this includes the reals D trained on)"
    return f"all of {name} (no split recorded: D may have trained on them)"
