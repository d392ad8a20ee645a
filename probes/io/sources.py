"""Where probe inputs come from: checkpoints, real samples and generated samples.

It rebuilds nets and loads data through :mod:`probes.io.edge` (the one door to ``trainers``); the
probe primitives themselves take plain tensors. The CLI and the notebooks both call these, so a
notebook sees exactly the inputs the CLI sees for the same seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from asgan_base.errors import UserError


def formats() -> tuple[str, ...]:
    """What ``format`` (``--format``) accepts: ``auto``, ``asgan`` and every family's names
    (:mod:`probes.io.families`)."""
    from probes.io.families import names

    return ("auto", "asgan", *names())


def load(path: str | Path, *, device: str | torch.device = "cpu", format: str = "auto",
         label: int | None = None, arch: str | None = None,
         arch_kwargs: dict[str, Any] | None = None,
         pixel_range: tuple[float, float] | None = None
         ) -> tuple[nn.Module | None, nn.Module, dict[str, Any]]:
    """``(G, D, meta)``; nets in eval mode on ``device``. The one loader the verbs use.

    Args:
        path: the file.
        device: where the nets go.
        format: ``"auto"`` (default): recognised from the file's contents: an asgan-probe
            checkpoint, else the first family of :mod:`probes.io.families` whose sniffer
            knows it (TorchScript archives are read as tensors, never run); ``"asgan"``: an
            asgan-probe checkpoint (:func:`trainers.checkpoint.load_checkpoint`); a family's
            format name (``state-dict``, ``authors``, ``mimicry``, ...: see
            :func:`formats`).
        label: the class bound for every sample of a conditional D (UserError when a
            conditional file has none, or an unconditional one gets one).
        arch, arch_kwargs: for ``state-dict``, our architecture and its kwargs; for
            ``authors``, the AS-GAN authors' family (``"resnet64_same_sn"``); else inferred.
        pixel_range: for foreign files, the input range D takes (default: the family's,
            ``desc["pixel_range"]``, (-1, 1) for GANs).

    Returns:
        For an asgan-probe checkpoint, its G, D and meta. For a foreign file G is None and D
        is the file's net returning logits ``(N,)``: its own output when that is ``(N,)``,
        else wrapped in :class:`probes.core.contract.Reduced` with the declared reduction.
        ``meta``: ``format`` (``foreign:<name>``), ``source``, ``family`` (the reader's
        ``desc``: family, resolution, conditional, num_classes, label, coupling, output
        shape and reduction, randomness, upstream, extra), ``reduction``, ``label``,
        ``pixel_range``, ``data`` (``name`` None, ``shape`` of one input), ``d_spec``,
        ``g_spec`` None, ``config`` {}, ``step`` (when the file records one).
    """
    valid = formats()
    if format not in valid:
        raise UserError(f"unknown format {format!r}; valid: {', '.join(valid)}")
    if format == "auto":
        format = detect_format(path)
    if format == "asgan":
        if arch is not None or arch_kwargs or pixel_range is not None or label is not None:
            raise UserError("--arch, --arch-kwargs, --pixel-range and --label apply to foreign "
                            "formats only: an asgan-probe checkpoint describes itself")
        from probes.io.edge import load_checkpoint

        return load_checkpoint(path, device=device)
    return _load_foreign(path, format=format, label=label, arch=arch, arch_kwargs=arch_kwargs,
                         pixel_range=pixel_range, device=device)


def _is_asgan_checkpoint(path: Path) -> bool:
    """A safetensors file whose metadata carries asgan-probe's record (header only)."""
    import json

    from probes.io.edge import MAX_HEADER

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little")
            if len(head) < 8 or not 0 < n <= MAX_HEADER:
                return False
            header = json.loads(f.read(n))
        return isinstance(header, dict) and "asgan_probe" in (header.get("__metadata__") or {})
    except (OSError, ValueError, UnicodeDecodeError, TypeError):
        return False


def detect_format(path: str | Path) -> str:
    """The format name of ``path`` from its contents (``format="auto"``): ``"asgan"`` for an
    asgan-probe checkpoint, else a family's (:func:`probes.io.families.detect`). UserError
    (one line) when nothing knows it, naming the globals a pickle would have imported."""
    from probes.io.families import detect
    from probes.io.families._common import caching, check_file

    path = check_file(path)
    if _is_asgan_checkpoint(path):
        return "asgan"
    with caching():
        found = detect(path)
    if found is not None:
        return found[1]
    from probes.io.families import modules
    from probes.io.safe_pickle import unexpected_globals

    stubs = [pattern for mod in modules() for pattern in mod.STUBS]  # a family's own classes
    try:
        bad = [g for g in unexpected_globals(path, stubs=stubs) if not g.startswith("<")]
    except Exception:  # noqa: BLE001 - the scan is a courtesy for the message
        bad = []
    if bad:
        return _refuse(path, bad)
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: the checkpoint reader says why
        return "asgan"
    what = ("a TorchScript archive or zip" if head[:2] == b"PK" else "a pickle" if
            head[:1] == b"\x80" else "a file")
    raise UserError(f"{path} is not an asgan-probe checkpoint, and {what} that no known "
                    f"discriminator family reads (truncated, or weights that fit none); name "
                    f"the format for a precise error: --format {'|'.join(formats()[1:])}")


def _refuse(path: Path, globals_: list[str]):
    names = ", ".join(globals_[:3]) + (f" (+{len(globals_) - 3} more)" if len(globals_) > 3
                                       else "")
    raise UserError(f"refusing {path}: a pickle that would import or call {names}, which no "
                    "supported format uses; nothing was run")


def _load_foreign(path: str | Path, *, format: str, label: int | None, arch: str | None,
                  arch_kwargs: dict[str, Any] | None,
                  pixel_range: tuple[float, float] | None,
                  device: str | torch.device) -> tuple[None, nn.Module, dict[str, Any]]:
    """``(None, D, meta)`` for a foreign discriminator file (:func:`load`)."""
    from probes.core.contract import Reduced
    from probes.io.families import read
    from probes.io.families._common import caching, check_file

    path = check_file(path)
    if pixel_range is not None:
        lo, hi = float(pixel_range[0]), float(pixel_range[1])
        if not hi > lo:
            raise UserError(f"pixel range must have hi > lo, got {lo},{hi}")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise UserError(f"--label must be a class index (an integer), got {label!r}")
    with caching():
        net, desc = read(path, format, label=label, arch=arch, arch_kwargs=arch_kwargs)
    lo, hi = pixel_range if pixel_range is not None else desc["pixel_range"]
    out = desc["output"]
    D = net if out["shape"] == "(N,)" else Reduced(net, out["reduction"])
    extra = desc.get("extra") or {}
    shape = extra.get("input_shape") or [desc["channels"], desc["resolution"],
                                         desc["resolution"]]
    spec = extra.get("spec") or {"arch": desc["family"], "role": "D",
                                 "kwargs": (desc.get("upstream") or {}).get("init_kwargs", {})}
    meta = {"format": f"foreign:{format}", "source": str(path), "family": desc,
            "reduction": out["reduction"], "label": desc["label"], "d_spec": spec,
            "g_spec": None, "pixel_range": [float(lo), float(hi)],
            "data": {"name": None, "shape": [int(v) for v in shape]}, "config": {},
            "step": extra.get("step")}
    return None, D.to(device).eval(), meta


def is_foreign(meta: dict[str, Any]) -> bool:
    """True for a file read by a family reader (no G, no dataset, its own pixel range)."""
    return str(meta.get("format", "")).startswith("foreign:")


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
    from probes.io.edge import canonical_name, split_of

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
    from probes.io.edge import check_split, load_dataset, split_of

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
          data_root: str | None = None, part: str | None = None, at_least: int | None = None
          ) -> torch.Tensor:
    """``n`` real samples ``(n, *shape)`` in the data's pixel range, chosen by ``seed``
    (a seeded permutation, so the same seed gives the same images whatever the batch size).

    ``part``: which reals (:func:`reals_part`): by default the held-out part when the
    checkpoint records a split, else all of the data; :func:`real_split` says which in words.
    ``at_least``: when the data hold fewer than ``n`` samples but at least this many, all of
    them (a small folder still fills a smaller reference group). For a foreign D (no dataset
    of its own) the samples are mapped to its pixel range and channel count
    (:func:`fit_to_d`).
    """
    which = reals_part(meta, part, data=data)
    ds = dataset_for(meta, data=data, data_root=data_root, part=which)
    if n > ds.n and at_least is not None and at_least <= ds.n:
        n = ds.n
    if n > ds.n:
        what = {"heldout": "the held-out part of ", "train": "the train part of "}.get(which, "")
        hint = " or pass --reals all (includes reals D trained on)" if which != "all" else ""
        raise UserError(f"asked for {n} real samples but {what}{ds.name} has {ds.n}; lower --n "
                        f"to at most {ds.n}{hint}")
    idx = torch.randperm(ds.n, generator=torch.Generator().manual_seed(seed))[:n]
    x = ds.get(idx)
    return fit_to_d(x, tuple(ds.pixel_range), meta) if is_foreign(meta) else x


def fit_to_d(x: torch.Tensor, src: tuple[float, float], meta: dict[str, Any]) -> torch.Tensor:
    """Images ``x`` in range ``src`` made into a foreign D's inputs: mapped linearly to its
    ``pixel_range``; RGB made grey (ITU-R 601 luma, as Pillow's "L") for a one-channel D, grey
    repeated for a three-channel one. Anything else is left for the shape check."""
    from probes.io.checkpoints import pixel_range

    shape = (meta.get("data") or {}).get("shape") or []
    if x.dim() == 4 and len(shape) == 3 and x.shape[1] != shape[0]:
        if x.shape[1] == 3 and shape[0] == 1:
            luma = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
            x = (x * luma).sum(dim=1, keepdim=True)  # a weighted mean: the range is kept
        elif x.shape[1] == 1 and shape[0] == 3:
            x = x.expand(-1, 3, -1, -1).clone()
    return to_pixel_range(x, src, pixel_range(meta))


def folder_samples(root: str | Path, meta: dict[str, Any], n: int, *, seed: int = 0,
                   at_least: int | None = None, flag: str = "--fakes") -> torch.Tensor:
    """``n`` images from a folder (``trainers.data``'s imagefolder: any size, recursive,
    center square crop, bilinear resize to D's side), chosen by ``seed`` and made into D's
    inputs (:func:`fit_to_d`). ``at_least`` as in :func:`reals`."""
    from probes.io.edge import load_dataset

    shape = (meta.get("data") or {}).get("shape") or []
    if len(shape) != 3:
        raise UserError(f"{flag} is a folder of images, but this D takes points {shape}")
    try:
        ds = load_dataset("imagefolder", root=root, resolution=int(shape[-1]))
    except UserError as e:
        raise UserError(f"{flag} {root}: {e}") from None
    if n > ds.n and at_least is not None and at_least <= ds.n:
        n = ds.n
    if n > ds.n:
        raise UserError(f"asked for {n} samples but {flag} {root} holds {ds.n} images; lower "
                        f"--n to at most {ds.n}")
    idx = torch.randperm(ds.n, generator=torch.Generator().manual_seed(seed))[:n]
    return fit_to_d(ds.get(idx), tuple(ds.pixel_range), meta)


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
    from asgan_base.device import resolve_device as _resolve

    return _resolve(name)


def probe_inputs(meta: dict[str, Any], G: nn.Module | None, *, population: str, n: int,
                 seed: int = 0, device: str | torch.device = "cpu", data: str | None = None,
                 data_root: str | None = None, part: str | None = None,
                 fakes_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, reference)``: ``n`` seeded samples of one population and its clean reference group.

    Reals are chosen by ``seed`` from the checkpoint's dataset (:func:`reals`; for a foreign
    D, ``data``/``data_root`` mapped to its range and channels), fakes are ``G(z)`` with ``z``
    drawn from ``seed`` (:func:`fakes`: the same ``z`` for every checkpoint), or seeded
    images of the folder ``fakes_dir`` (:func:`folder_samples`; the only fakes of a foreign
    D, which has no G). The reference group, whose BatchNorm statistics ``frozen`` mode holds
    fixed, is the first :func:`probes.io.checkpoints.group_size` samples (D's training batch
    size) of the same seeded draw: fixed by the seed, the same whatever ``n`` or the batch
    size; smaller only when the data hold fewer samples. ``part`` chooses the reals
    (:func:`reals_part`: by default the held-out part when the checkpoint records a split).
    """
    from probes.io.checkpoints import group_size

    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    m = max(n, min(group_size(meta), 1024))
    if population == "real":
        x = reals(meta, m, seed=seed, data=data, data_root=data_root, part=part, at_least=n)
    elif population == "fake" and fakes_dir is not None:
        x = folder_samples(fakes_dir, meta, m, seed=seed, at_least=n)
    elif population == "fake":
        if G is None:
            raise UserError(f"{meta.get('source', 'this file')} holds no generator (a foreign "
                            "discriminator): name a folder of generated images with --fakes "
                            "DIR, or use --population real")
        x = fakes(G, meta, m, seed=seed, device=device)
    else:
        raise UserError(f"population must be real or fake, got {population!r}")
    shape = (meta.get("data") or {}).get("shape")
    if shape and list(x.shape[1:]) != list(shape):
        raise UserError(f"the samples have shape {list(x.shape[1:])} but D takes {shape}: pick "
                        "matching --data (and resolution)")
    return x[:n], x[:group_size(meta)]


def real_split(meta: dict[str, Any], part: str | None = None, *, data: str | None = None
               ) -> str:
    """Which reals a probe of this checkpoint uses (:func:`reals` with the same ``part`` and
    ``data``), in words, for every record: e.g. "held-out 1000 of mnist10k (never trained on)",
    "train 9000 of mnist10k (trained on)", "all of ring8 (no split recorded: ...)"."""
    from probes.io.edge import canonical_name, split_of

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
