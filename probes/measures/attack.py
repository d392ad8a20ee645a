"""Robustness of discriminator checkpoints: FGSM/BIM/PGD-L2 (or foolbox) sweeps, transfer, min eps.

:func:`attack` is the measurement behind ``asgan-probe attack``, the study's robustness numbers
and notebook 02: load, draw seeded inputs (with their clean reference group), call
:func:`probes.core.sweep.attack_sweep` / :func:`probes.core.sweep.min_flip_eps`, and return the
JSON-able record. Defaults live here, once (``asgan-probe attack`` reads them); the attacks by
name live in :data:`probes.core.sweep.ATTACKS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from asgan_base.eps import DEFAULT_GRID, EpsUnit, of_meta
from asgan_base.errors import UserError
from probes.core.sweep import ATTACKS
from probes.io.checkpoints import facts, group_size, pixel_range

DEFAULT_EPS = DEFAULT_GRID["pixel"]  # eps=None: each checkpoint's unit's grid (DEFAULT_GRID)
N = 1000  # samples per population: mnist10k's held-out reals
STEPS = ATTACKS["bim"].steps  # iterations of bim and pgd-l2 (their registered default)
BATCH_SIZE = 256  # samples per pass in per-sample modes (memory only)
BISECT_STEPS = 10  # minimal-eps bisection iterations
METHODS = f"{', '.join(ATTACKS)} or foolbox:<AttackName>"  # what --method takes


def crafter(method: str, *, seed: int = 0, steps: int | None = None,
            foolbox_kwargs: dict[str, Any] | None = None):
    """A name of :data:`probes.core.sweep.ATTACKS` as it is, or a foolbox crafter for
    ``"foolbox:<Attack>"``."""
    if method in ATTACKS:
        return method
    from probes.adapters.foolbox import accepts, attack_names, foolbox_crafter

    name = method[len("foolbox:"):] if method.startswith("foolbox:") else None
    if name is None or name not in attack_names():
        raise UserError(f"unknown method {method!r}; use {METHODS} "
                        f"(foolbox attacks: {', '.join(attack_names())})")
    kwargs = dict(foolbox_kwargs or {})
    if steps is not None and "steps" not in kwargs and accepts(name, "steps"):
        kwargs["steps"] = steps
    return foolbox_crafter(name, seed=seed, **kwargs)


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with a ``#k`` suffix on the second and later repeats (two modules of one
    class passed side by side)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def labels_for(paths: Sequence[str]) -> list[str]:
    """Shortest unique ``parent/stem`` style names for a table and a legend (the same path
    always gets the same name)."""
    unique = list(dict.fromkeys(str(Path(p).resolve()) for p in paths))
    parts = [Path(p).with_suffix("").parts for p in unique]
    names = unique
    for k in range(1, max(len(p) for p in parts) + 1):
        cand = ["/".join(p[-k:]) for p in parts]
        if len(set(cand)) == len(cand):
            names = cand
            break
    by_path = dict(zip(unique, names))
    return [by_path[str(Path(p).resolve())] for p in paths]


def samples(G, meta: dict[str, Any], population: str, *, n: int, seed: int, device="cpu",
            data: str | None = None, data_root: str | None = None, reals: str | None = None,
            fakes: str | None = None, given: torch.Tensor | None = None):
    """``(x, reference)`` for one checkpoint and population (:func:`probes.io.sources.
    probe_inputs`: a foreign D's reals mapped into its range, fakes from the ``fakes``
    folder when given). ``given``: the samples the caller passed (in D's range): the first
    ``n`` are probed and the first :func:`probes.io.checkpoints.group_size` form the
    reference group, as for drawn ones."""
    from probes.io.sources import probe_inputs

    if given is not None:
        if given.shape[0] < 1:
            raise UserError(f"no {population} samples given")
        x, ref = given[:n], given[:group_size(meta)]
    else:
        x, ref = probe_inputs(meta, G, population=population, n=n, seed=seed, device=device,
                              data=data, data_root=data_root, part=reals, fakes_dir=fakes)
    shape = meta.get("data", {}).get("shape")
    if shape and list(x.shape[1:]) != list(shape):
        raise UserError(f"the samples have shape {list(x.shape[1:])} but D takes {shape}: pick "
                        "matching --data (and resolution)")
    return x, ref


def given_samples(x, population: str):
    """The caller's samples for ``population``: ``x`` a tensor (reals) or a mapping
    ``{"real": tensor, "fake": tensor}``; None when none were given for it."""
    if x is None:
        return None
    if isinstance(x, Mapping):
        bad = set(x) - {"real", "fake"}
        if bad:
            raise UserError(f"x keys must be 'real' and/or 'fake', got {sorted(bad)}")
        return x.get(population)
    return x if population == "real" else None


def _transfer_targets(path, meta, label, targets) -> dict[str, tuple[str, Any]]:
    out = {}
    for tpath, tlabel, (_, D2, meta2) in targets:
        if tlabel == label:  # a checkpoint is not "transferred" to itself
            continue
        if meta2.get("data", {}).get("shape") != meta.get("data", {}).get("shape"):
            raise UserError(f"cannot transfer from {path} to {tpath}: input shapes "
                            f"{meta.get('data', {}).get('shape')} and "
                            f"{meta2.get('data', {}).get('shape')} differ")
        out[tlabel] = (tpath, D2)
    return out


def _eps_in_unit(unit: EpsUnit, path, eps: Sequence[float] | None,
                step_size: float | None, eps_max: float | None
                ) -> tuple[EpsUnit, list[float], float]:
    """``(unit, eps grid, bisection top)`` of one checkpoint, each size checked against the
    unit's range (a UserError naming the checkpoint)."""
    grid = list(unit.default_grid() if eps is None else eps)
    try:
        grid = [unit.check(e) for e in grid]
        if step_size is not None:
            unit.check(step_size, "step size")
        top = unit.check(eps_max if eps_max is not None
                         else (max(grid) or max(unit.default_grid())), "eps max")
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return unit, grid, top


def attack(
    paths: Sequence[Any],
    *,
    eps: Sequence[float] | None = None,
    methods: Sequence[str] = ("fgsm",),
    populations: Sequence[str] = ("real", "fake"),
    n: int = N,
    steps: int = STEPS,
    step_size: float | None = None,
    random_start: bool = False,
    mode: str = "auto",
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    bn_group: int | None = None,
    transfer_to: Sequence[str] = (),
    min_eps: bool = False,
    eps_max: float | None = None,
    bisect_steps: int = BISECT_STEPS,
    data: str | None = None,
    data_root: str | None = None,
    reals: str | None = None,
    format: str = "auto",
    label: int | None = None,
    fakes: str | None = None,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    foreign_range: tuple[float, float] | None = None,
    foolbox_kwargs: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
    x: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Attack every checkpoint in ``paths`` on each population, method and eps.

    Args:
        paths: discriminators: checkpoint files (``format`` says how to read them; foreign
            files carry no G), ``(D, meta)`` pairs from ``probes.discriminator(module, ...)``,
            or bare modules (declared with defaults and the shape of ``x``).
        eps: sizes in each checkpoint's eps unit (:func:`asgan_base.eps.of_meta`): [0, 1] pixel
            units for images, multiples of a mode's std on the 2-D mixtures (their old
            checkpoints: pixel units of the plotting box, as recorded); a radius in the
            method's norm: for ``pgd-l2`` and foolbox L2/L1 attacks the norm of the whole
            perturbation in that unit (``||x_adv - x||_2 <= eps * (hi - lo)``). Checked
            against each unit's range before any attack (UserError). None: each unit's default
            grid (``asgan_base.eps.DEFAULT_GRID``: 0 ... 8/255 in pixel units, 0 ... 1.5 std).
        methods: names in :data:`probes.core.sweep.ATTACKS` (``"fgsm"``, ``"bim"``,
            ``"pgd-l2"``) or ``"foolbox:<Attack>"``.
        populations: ``"real"`` (pushed toward "fake") and/or ``"fake"`` (toward "real").
        n: samples per population, seeded (the same reals for every checkpoint).
        mode: probe mode (:mod:`probes.core.modes`); ``auto`` is per-sample ``frozen`` for
            BatchNorm discriminators, with the reference group of
            :func:`probes.io.sources.probe_inputs`.
        bn_group: BatchNorm group size (default: each checkpoint's training batch size).
        transfer_to: checkpoints on which the perturbations crafted on each one are scored.
        min_eps, eps_max, bisect_steps: also bisect each sample's minimal flipping eps on
            ``[0, eps_max]`` (default: the largest eps, or the top of the unit's default
            grid) for the methods whose registry entry allows it (fgsm, bim, pgd-l2);
            ``eps_max`` and ``step_size`` are in the checkpoint's unit.
        reals: which reals (``--reals``: held-out, train or all; default the held-out part
            when the checkpoint records a split).
        format, label: how to read the files (:func:`probes.io.sources.load`: default auto;
            the class bound for a conditional D).
        fakes: a folder of generated images, the fakes instead of G's (a discriminator file
            has no G: without it only ``populations=("real",)`` works for one).
        x: samples to probe instead of drawn ones, in D's pixel range: a tensor of reals or
            ``{"real": ..., "fake": ...}`` (the first ``n`` are probed; the first
            ``group_size`` form the clean reference group); the way to feed a module D.
        Others: as in :func:`probes.core.sweep.attack_sweep` and :func:`probes.io.sources.load`.

    Returns:
        ``{"command": "attack", "settings", "records"[, "min_eps"]}``: one record per
        (checkpoint, population, method, eps, evaluated-on), each with the checkpoint's facts,
        its ``eps_unit`` (:meth:`asgan_base.eps.EpsUnit.to_dict`) and ``eps_label`` ("1/255",
        "0.5 std"),
        the probe mode, the reference group's size, which reals were used, the ``contract``
        (:func:`probes.measures.contract.contract_record`: reduction, dtype) and the
        ``coupling`` check of D in the probe's mode (:func:`probes.measures.contract.
        coupling_record`, run before the probe; a per-sample mode that cannot make D
        per-sample is a UserError).
    """
    from probes.core.sweep import attack_sweep, min_flip_eps
    from probes.io.sources import load, real_split, resolve_device
    from probes.measures.contract import contract_record, coupling_record, resolve

    dev = resolve_device(device)

    def _load(path):
        return load(path, device=dev, format=format, label=label, arch=arch,
                    arch_kwargs=arch_kwargs, pixel_range=foreign_range)

    resolved = [resolve(p, _load, x=given_samples(x, populations[0]) if populations else None)
                for p in paths]
    sources = [(G, D, meta) for G, D, meta, _ in resolved]
    paths = unique_names([src for *_, src in resolved])
    for path, (G, _, _) in zip(paths, sources):
        if G is None and "fake" in populations and fakes is None and \
                given_samples(x, "fake") is None:
            raise UserError(f"{path} is a discriminator with no generator: name a folder of "
                            "generated images with --fakes DIR (in Python: x={'fake': ...}), "
                            "or use --population real")
    names = labels_for(list(paths) + list(transfer_to))
    targets = list(zip(transfer_to, names[len(paths):], [_load(p) for p in transfer_to]))
    crafters = {m: crafter(m, seed=seed, steps=steps, foolbox_kwargs=foolbox_kwargs)
                for m in methods}
    records, min_rows = [], []
    # every checkpoint's eps in its own unit, checked before the first attack runs
    plans = [_eps_in_unit(of_meta(meta), path, eps, step_size, eps_max)
             for path, (_, _, meta) in zip(paths, sources)]
    for path, name, (G, D, meta), (unit, grid, top) in zip(paths, names, sources, plans):
        pr, group = pixel_range(meta), bn_group or group_size(meta)
        scale = None if unit.name == "pixel" else unit.scale
        transfer = _transfer_targets(path, meta, name, targets)
        info = {"checkpoint": str(path), "label": name, "eps_unit": unit.to_dict(),
                "contract": contract_record(meta, D)}
        if "family" in meta:  # a discriminator file: which family, reduction and class
            info.update({k: v for k, v in facts(meta, path).items()
                         if k in ("format", "family", "reduction", "class_label")})
        for pop in populations:
            given = given_samples(x, pop)
            xs, ref = samples(G, meta, pop, n=n, seed=seed, device=dev, data=data,
                              data_root=data_root, reals=reals, fakes=fakes, given=given)
            inputs = {"reals": (real_split(meta, reals, data=data) if given is None
                                else "given by the caller") if pop == "real" else None,
                      **({"fakes": str(fakes)} if pop == "fake" and fakes and given is None
                         else {})}
            coupling = {k: coupling_record(T, xs, mode=mode, reference=ref, name=k)
                        for k, T in [(name, D)] + [(k, v[1]) for k, v in transfer.items()]}
            for method in methods:
                recs = attack_sweep(
                    D, xs, eps=grid, population=pop, method=crafters[method], steps=steps,
                    step_size=step_size, random_start=random_start, seed=seed, mode=mode,
                    pixel_range=pr, batch_size=batch_size, bn_group=group, reference=ref,
                    transfer_to={k: v[1] for k, v in transfer.items()}, eps_scale=scale,
                    progress=progress)
                for r in recs:
                    on = r.pop("evaluated_on")
                    tpath, tlabel = (path, name) if on == "self" else (transfer[on][0], on)
                    records.append({**info, "evaluated_on": str(tpath),
                                    "evaluated_on_label": tlabel, "transfer": on != "self",
                                    **inputs, **r, "eps_label": unit.label(r["eps"]),
                                    "coupling": coupling[tlabel]})
                if min_eps and method in ATTACKS and ATTACKS[method].min_eps:
                    out = min_flip_eps(D, xs, population=pop, method=method, eps_max=top,
                                       iters=bisect_steps, steps=steps, step_size=step_size,
                                       mode=mode, pixel_range=pr, batch_size=batch_size,
                                       bn_group=group, reference=ref, eps_scale=scale,
                                       progress=progress)
                    out.pop("per_sample")
                    min_rows.append({**info, **inputs, **out, "coupling": coupling[name]})
    # the grid every checkpoint shares (None when their units gave them different ones)
    settings = {"eps": plans[0][1] if all(p[1] == plans[0][1] for p in plans) else None,
                "methods": list(methods), "populations": list(populations),
                "n": n, "steps": steps, "step_size": step_size, "random_start": random_start,
                "mode": mode, "seed": seed, "format": format, "label": label,
                "checkpoints": [str(p) for p in paths],
                "transfer_to": [str(p) for p in transfer_to]}
    result = {"command": "attack", "settings": settings, "records": records}
    if min_eps:
        result["min_eps"] = min_rows
    return result
