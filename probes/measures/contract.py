"""How the measures see any discriminator: a file, a ``(D, meta)`` pair or a module, its
declared contract, and the coupling check every probe runs first.

- :func:`discriminator` (exposed as ``probes.discriminator``) brings a module a researcher
  holds in Python under the contract of SPEC section 1 (:func:`probes.core.contract.wrap`)
  and returns ``(D, meta)`` in the form :func:`probes.io.sources.load` returns for files, so
  every measure takes either.
- :func:`resolve` turns one item a measure was given into ``(G, D, meta, name)``.
- :func:`coupling_record` runs :func:`probes.core.coupling.check` in the probe's mode (a
  one-line :class:`UserError` when a per-sample probe cannot be made per-sample) and
  :func:`contract_record` says how the output became one logit per sample: both go into every
  record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asgan_base.errors import UserError
from probes.io.checkpoints import DEFAULT_GROUP

Item = str | Path | tuple[nn.Module, dict] | nn.Module


def discriminator(module: nn.Module, *, shape: tuple[int, ...] | None = None,
                  pixel_range: tuple[float, float] = (-1.0, 1.0), reduction: str = "auto",
                  label: int | None = None, label_as: str | Callable | None = "onehot",
                  num_classes: int | None = None, seed: int = 0, group_size: int | None = None,
                  name: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Any ``nn.Module`` as a probe-ready discriminator: ``(D, meta)``.

    Args:
        module: the discriminator, in the user's own code; never modified.
        shape: one sample's shape, e.g. ``(3, 32, 32)`` (required).
        pixel_range: the input range D was trained on (BasicSR: ``(0, 1)``).
        reduction: ``"auto"`` (``(N,)``/``(N, 1)`` squeezed, a map averaged over positions),
            ``"squeeze"``, ``"mean"`` or ``"key:<k>"`` for dict outputs.
        label, label_as, num_classes: the class bound for every sample of a conditional D:
            ``label_as="onehot"`` (``D(x, c)``, ``c`` one-hot of ``num_classes``),
            ``"index"`` (``D(x, y)``, ``y`` long class ids) or a callable ``f(net, x)``.
        seed: seeds every forward when D's ``forward`` draws random numbers (detected).
        group_size: D's training batch size: the clean reference group of ``frozen`` mode and
            the groups of ``batch`` mode (default 64).
        name: how records name D (default ``python:<ClassName>``).

    Returns:
        ``D`` (``D(x)`` -> logits ``(N,)``) and ``meta`` as :func:`probes.io.sources.load`
        gives for a foreign file (``format`` ``"module"``, ``source``, ``d_spec``,
        ``g_spec`` None, ``pixel_range``, ``data`` ``{"name": None, "shape"}``, ``config``
        ``{"batch_size"}``, ``step`` None) plus ``contract`` (the declared facts:
        :func:`probes.core.contract.wrap`).

    Examples:
        >>> D, meta = probes.discriminator(my_d, shape=(3, 32, 32), pixel_range=(-1, 1))
        >>> attack([(D, meta)], x=reals, populations=("real",))
    """
    from probes.core.contract import wrap

    if shape is None:
        raise UserError("probes.discriminator needs shape=, one sample's shape, e.g. "
                        "(3, 32, 32)")
    if group_size is not None and group_size < 1:
        raise UserError(f"group_size must be >= 1, got {group_size}")
    try:
        D, facts = wrap(module, shape=shape, pixel_range=pixel_range, reduction=reduction,
                        label=label, label_as=label_as, num_classes=num_classes, seed=seed)
    except ValueError as e:
        raise UserError(str(e)) from None
    cls = type(module).__name__
    meta = {"format": "module", "source": name or f"python:{cls}",
            "d_spec": {"arch": f"python:{cls}", "kwargs": {}}, "g_spec": None,
            "pixel_range": facts["pixel_range"],
            "data": {"name": None, "shape": facts["shape"]},
            "config": {"batch_size": int(group_size or DEFAULT_GROUP)}, "step": None,
            "contract": facts}
    return D, meta


def resolve(item: Item, load: Callable[[str | Path], tuple], *,
            x: torch.Tensor | None = None) -> tuple[nn.Module | None, nn.Module, dict, str]:
    """``(G, D, meta, source)`` for one item: a path (read by ``load``), a ``(D, meta)`` pair
    or a bare module (:func:`discriminator` with defaults and the shape of ``x``)."""
    if isinstance(item, (str, Path)):
        G, D, meta = load(item)
        return G, D, meta, str(item)
    if isinstance(item, nn.Module):
        if x is None:
            raise UserError(f"a bare {type(item).__name__} needs inputs (x=...) to read its "
                            "shape from, or declare it with probes.discriminator(module, "
                            "shape=..., pixel_range=...)")
        item = discriminator(item, shape=tuple(x.shape[1:]))
    if (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], nn.Module)
            and isinstance(item[1], dict)):
        D, meta = item
        return None, D, meta, str(meta.get("source") or f"python:{type(D).__name__}")
    raise UserError(f"cannot probe a {type(item).__name__}: pass a file path, a module or "
                    "(D, meta) from probes.discriminator(...)")


def coupling_record(D: nn.Module, x: torch.Tensor, *, mode: str,
                    reference: torch.Tensor | None, name: str) -> dict[str, Any]:
    """:func:`probes.core.coupling.check` of D on the probe's own inputs ``x`` in ``mode``;
    a :class:`UserError` naming ``name`` when a per-sample mode leaves a coupling, D's forward
    is random, or the probe cannot be set up (e.g. fewer clean reference samples than a
    minibatch-stddev group needs)."""
    from probes.core.coupling import CouplingError, check

    try:
        return check(D, x, mode=mode, reference=reference)
    except CouplingError as e:
        raise UserError(f"{name}: {e}") from None
    except ValueError as e:  # too few reference samples for a group, a D that is not (N,)
        raise UserError(f"{name}: {' '.join(str(e).split())}") from None


def contract_record(meta: dict[str, Any], D: nn.Module) -> dict[str, Any]:
    """How D's output became one logit per sample, and its dtype, for every record:
    ``{"reduction", "output_shape", "dtype", "label", "randomness"}``. A module's declared
    contract (:func:`discriminator`), a family reader's description (``meta["family"]``:
    ``output``, ``randomness``), or our own nets (``(N,)`` logits as they are)."""
    from probes.core.contract import float_dtype

    c = meta.get("contract") or {}
    # a family reader's desc sits under meta["family"] (probes.io.sources.load)
    desc = meta["family"] if isinstance(meta.get("family"), dict) else {}
    out = c.get("output") or meta.get("output") or desc.get("output") or {}
    dtype = c.get("dtype") or meta.get("dtype") or str(float_dtype(D) or "").replace(
        "torch.", "") or None
    return {"reduction": out.get("reduction", "none: D returns (N,) logits"),
            "output_shape": out.get("shape", "(N,)"), "dtype": dtype,
            "label": c.get("label", meta.get("label")),
            "randomness": c.get("randomness",
                                meta.get("randomness", desc.get("randomness", "none")))}
