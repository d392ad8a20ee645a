"""Robustness of discriminator checkpoints: FGSM/BIM/PGD-L2 (or foolbox) sweeps, transfer, min eps.

:func:`attack` is the measurement behind ``asgan-probe attack``, the study's robustness numbers
and notebook 02: load, draw seeded inputs (with their clean reference group), call
:func:`probes.core.sweep.attack_sweep` / :func:`probes.core.sweep.min_flip_eps`, and return the
JSON-able record. Defaults live here, once (``asgan-probe attack`` reads them); the attacks by
name live in :data:`probes.core.sweep.ATTACKS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from asgan_base.eps import DEFAULT_GRID, EpsUnit, of_meta
from asgan_base.errors import UserError
from probes.core.sweep import ATTACKS
from probes.io.checkpoints import facts, group_size, pixel_range
from probes.measures.envelope import envelope

DEFAULT_EPS = DEFAULT_GRID["pixel"]  # eps=None: each checkpoint's unit's grid (DEFAULT_GRID)
N = 1000  # samples per population: mnist10k's held-out reals
STEPS = ATTACKS["bim"].steps  # iterations of bim and pgd-l2 (their registered default)
BATCH_SIZE = 256  # samples per pass in per-sample modes (memory only)
BISECT_STEPS = 10  # minimal-eps bisection iterations
# attack()'s arguments that are no option of the measurement: where, how it reports, the
# samples themselves, and batch_size (memory only: the same JSON for any batch size)
NOT_OPTIONS = ("paths", "device", "progress", "x", "batch_size")
METHODS = f"{', '.join(ATTACKS)} or foolbox:<AttackName>"  # what --method takes
UNITS = {"eps": "each checkpoint's eps unit (its records' eps_unit): [0, 1] pixel units on "
                "images (1/255 = one grey level), a mode's std on the 2-D mixtures; a radius "
                "in the method's norm",
         "flip_rate": "share of the samples D scored right (clean) that the attack pushes "
                      "across logit 0",
         "mean_logit_shift": "logit units, > 0 = toward the attacked side",
         "mean_loss_increase": "nats: the population's own L_D term (softplus(-D) for "
                               "reals, softplus(D) for fakes), attacked - clean",
         "mean_linf": "eps units (divided by hi - lo, or by the eps unit's scale)"}


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


def _resolve_sources(paths, load, x, populations, fakes):
    """``(names, [(G, D, meta)])`` of the items to attack (:func:`probes.measures.contract.
    resolve`); a UserError for a G-less discriminator asked for fakes it has no source of."""
    from probes.measures.contract import resolve

    resolved = [resolve(p, load, x=given_samples(x, populations[0]) if populations else None)
                for p in paths]
    sources = [(G, D, meta) for G, D, meta, _ in resolved]
    names = unique_names([src for *_, src in resolved])
    for path, (G, _, _) in zip(names, sources):
        if G is None and "fake" in populations and fakes is None and \
                given_samples(x, "fake") is None:
            raise UserError(f"{path} is a discriminator with no generator: name a folder of "
                            "generated images with --fakes DIR (in Python: x={'fake': ...}), "
                            "or use --population real")
    return names, sources


def _checkpoint_info(path, name, D, meta, unit: EpsUnit) -> dict[str, Any]:
    """The facts every record of one checkpoint starts with."""
    from probes.measures.contract import contract_record

    info = {"checkpoint": str(path), "label": name, "eps_unit": unit.to_dict(),
            "contract": contract_record(meta, D)}
    if "family" in meta:  # a discriminator file: which family, reduction and class
        info.update({k: v for k, v in facts(meta, path).items()
                     if k in ("format", "family", "reduction", "class_label")})
    return info


def _population(G, meta, pop: str, o: dict[str, Any]):
    """``(x, reference, inputs)`` of one population: the samples, their clean reference group
    and the record's ``reals`` / ``fakes`` entries (which samples they are)."""
    from probes.io.sources import real_split

    given = given_samples(o["x"], pop)
    xs, ref = samples(G, meta, pop, n=o["n"], seed=o["seed"], device=o["device"],
                      data=o["data"], data_root=o["data_root"], reals=o["reals"],
                      fakes=o["fakes"], given=given)
    inputs = {"reals": (real_split(meta, o["reals"], data=o["data"]) if given is None
                        else "given by the caller") if pop == "real" else None,
              **({"fakes": str(o["fakes"])} if pop == "fake" and o["fakes"] and given is None
                 else {})}
    return xs, ref, inputs


def _one_checkpoint(path, name, source, plan, transfer, o: dict[str, Any]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(records, min-eps rows)`` of one checkpoint: every population, method and eps,
    scored on itself and on the ``transfer`` targets (``{label: (path, D)}``)."""
    from probes.core.sweep import attack_sweep, min_flip_eps
    from probes.measures.contract import coupling_record

    (G, D, meta), (unit, grid, top) = source, plan
    info = _checkpoint_info(path, name, D, meta, unit)
    common = dict(steps=o["steps"], step_size=o["step_size"], mode=o["mode"],
                  pixel_range=pixel_range(meta), batch_size=o["batch_size"],
                  bn_group=o["bn_group"] or group_size(meta),
                  eps_scale=None if unit.name == "pixel" else unit.scale,
                  progress=o["progress"])
    records, min_rows = [], []
    for pop in o["populations"]:
        xs, ref, inputs = _population(G, meta, pop, o)
        coupling = {k: coupling_record(T, xs, mode=o["mode"], reference=ref, name=k)
                    for k, T in [(name, D)] + [(k, v[1]) for k, v in transfer.items()]}
        for method in o["methods"]:
            recs = attack_sweep(D, xs, eps=grid, population=pop, method=o["crafters"][method],
                                random_start=o["random_start"], seed=o["seed"], reference=ref,
                                transfer_to={k: v[1] for k, v in transfer.items()}, **common)
            for r in recs:
                on = r.pop("evaluated_on")
                tpath, tlabel = (path, name) if on == "self" else (transfer[on][0], on)
                records.append({**info, "evaluated_on": str(tpath),
                                "evaluated_on_label": tlabel, "transfer": on != "self",
                                **inputs, **r, "eps_label": unit.label(r["eps"]),
                                "coupling": coupling[tlabel]})
            if o["min_eps"] and method in ATTACKS and ATTACKS[method].min_eps:
                out = min_flip_eps(D, xs, population=pop, method=method, eps_max=top,
                                   iters=o["bisect_steps"], reference=ref, **common)
                out.pop("per_sample")
                min_rows.append({**info, **inputs, **out, "coupling": coupling[name]})
    return records, min_rows


def _attack_all(paths, names, sources, targets, o: dict[str, Any]):
    """``(shared eps grid or None, records, min-eps rows)`` of every checkpoint; each one's
    eps in its own unit, all checked before the first attack runs."""
    o = {**o, "crafters": {m: crafter(m, seed=o["seed"], steps=o["steps"],
                                      foolbox_kwargs=o["foolbox_kwargs"]) for m in o["methods"]}}
    plans = [_eps_in_unit(of_meta(meta), path, o["eps"], o["step_size"], o["eps_max"])
             for path, (_, _, meta) in zip(paths, sources)]
    records, min_rows = [], []
    for path, name, source, plan in zip(paths, names, sources, plans):
        transfer = _transfer_targets(path, source[2], name, targets)
        recs, mins = _one_checkpoint(path, name, source, plan, transfer, o)
        records += recs
        min_rows += mins
    # the grid every checkpoint shares (None when their units gave them different ones)
    return (plans[0][1] if all(p[1] == plans[0][1] for p in plans) else None), records, min_rows


def attack(
    paths: Sequence[Any], *, eps: Sequence[float] | None = None,
    methods: Sequence[str] = ("fgsm",), populations: Sequence[str] = ("real", "fake"),
    n: int = N, steps: int = STEPS, step_size: float | None = None, random_start: bool = False,
    mode: str = "auto", seed: int = 0, batch_size: int = BATCH_SIZE, bn_group: int | None = None,
    transfer_to: Sequence[str] = (), min_eps: bool = False, eps_max: float | None = None,
    bisect_steps: int = BISECT_STEPS, data: str | None = None, data_root: str | None = None,
    reals: str | None = None, format: str = "auto", label: int | None = None,
    fakes: str | None = None, arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
    foreign_range: tuple[float, float] | None = None, foolbox_kwargs: dict | None = None,
    device: str = "cpu", progress: Callable[[int], None] | None = None,
    x: torch.Tensor | Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Attack every checkpoint in ``paths`` on each population, method and eps.

    Args:
        paths: checkpoint files (``format`` says how to read them; foreign files carry no G),
            ``(D, meta)`` pairs from ``probes.discriminator(module, ...)``, or bare modules.
        eps: sizes in each checkpoint's eps unit (:func:`asgan_base.eps.of_meta`): [0, 1] pixel
            units for images, multiples of a mode's std on the 2-D mixtures; a radius in the
            method's norm (``pgd-l2``, foolbox L2/L1: ``||x_adv - x||_2 <= eps * (hi - lo)``).
            Checked against each unit's range before any attack. None: each unit's default
            grid (``asgan_base.eps.DEFAULT_GRID``: 0 ... 8/255 pixel units, 0 ... 1.5 std).
        methods: names in :data:`probes.core.sweep.ATTACKS` or ``"foolbox:<Attack>"``.
        populations: ``"real"`` (pushed toward "fake") and/or ``"fake"`` (toward "real").
        n: samples per population, seeded (the same reals for every checkpoint).
        mode: probe mode (:mod:`probes.core.modes`; ``auto``: ``frozen`` for BatchNorm Ds).
        bn_group: BatchNorm group size (default: each checkpoint's training batch size).
        transfer_to: checkpoints on which the perturbations crafted on each one are scored.
        min_eps, eps_max, bisect_steps: also bisect each sample's minimal flipping eps on
            ``[0, eps_max]`` (default: the largest eps, or the top of the unit's grid) for the
            methods whose registry entry allows it; ``eps_max``, ``step_size``: eps units.
        reals: which reals (held-out, train or all; default held-out when split).
        format, label, fakes: how to read files (:func:`probes.io.sources.load`), the class of
            a conditional D, a folder of generated images (the fakes of a G-less file).
        x: samples in D's pixel range instead of drawn ones: reals, or ``{"real", "fake"}``
            (the first ``n`` probed, the first ``group_size`` the reference group).
        Others: as in :func:`probes.core.sweep.attack_sweep` and :func:`probes.io.sources.load`.

    Returns:
        The ``asgan-probe attack`` JSON (:func:`probes.measures.envelope.envelope` keys, then
        ``"eps"``: the grid all checkpoints share or None, ``"records"``[, ``"min_eps"``]):
        one record per (checkpoint, population, method, eps, evaluated-on) with the facts,
        ``eps_unit`` and ``eps_label`` ("1/255", "0.5 std"), mode, reference size, reals,
        ``contract`` and the ``coupling`` check run first (UserError if D is not per-sample).
    """
    options = {k: v for k, v in locals().items() if k not in NOT_OPTIONS}  # the call's, as given
    from probes.io.sources import load, resolve_device

    dev = resolve_device(device)
    _load = partial(load, device=dev, format=format, label=label, arch=arch,
                    arch_kwargs=arch_kwargs, pixel_range=foreign_range)
    paths, sources = _resolve_sources(paths, _load, x, populations, fakes)
    names = labels_for(list(paths) + list(transfer_to))
    targets = list(zip(transfer_to, names[len(paths):], [_load(p) for p in transfer_to]))
    o = {**options, "device": dev, "progress": progress, "x": x, "batch_size": batch_size}
    grid, records, min_rows = _attack_all(paths, names, sources, targets, o)
    return {**envelope("attack", inputs=paths, options=options, seed=seed, units=UNITS),
            "eps": grid, "records": records, **({"min_eps": min_rows} if min_eps else {})}
