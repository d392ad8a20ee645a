"""captum attributions of one discriminator checkpoint: the ``asgan-probe saliency``
measurement (figures are the CLI's; the numbers and the maps are here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from asgan_base.errors import UserError
from probes.io.checkpoints import facts, group_size, is_image, pixel_range
from probes.measures.envelope import envelope

N = 16  # images
IG_STEPS = 50  # integrated-gradients steps
NOISE = 0.15  # SmoothGrad noise std, [0, 1] pixel units
NT_SAMPLES = 16  # SmoothGrad noisy copies
NOT_OPTIONS = ("path", "device", "x", "figure")  # saliency()'s arguments that are no option
UNITS = {"attribution": "captum's attribution of D's raw logit per input coordinate (logit "
                        "units per unit of D's pixel range; ig: logit units)",
         "noise": "SmoothGrad noise std in [0, 1] pixel units",
         "ig_abs_delta_mean": "logit units (IG completeness error)"}


def _inputs(G, meta, o: dict[str, Any]):
    """``(x, reference)``: the caller's reals (the first ``n``; the first group as the
    reference) or seeded draws (:func:`probes.io.sources.probe_inputs`)."""
    from probes.io.sources import probe_inputs

    x = o["x"]
    if x is not None:
        if o["population"] != "real":
            raise UserError("x gives reals: use population='real' with your samples")
        return x[:o["n"]], x[:group_size(meta)]
    return probe_inputs(meta, G, population=o["population"], n=o["n"], seed=o["seed"],
                        device=o["device"], data=o["data"], data_root=o["data_root"],
                        fakes_dir=o["fakes"])


def _method_row(D, x, ref, meta, method: str, o: dict[str, Any]):
    """``(row, attributions)`` of one captum method: mode, parameters, reference size,
    sparsity summaries of the maps, IG's completeness error, guided ReLUs."""
    from probes.adapters.captum import attribute
    from probes.core.sparsity import sparsity, summarize

    res = attribute(D, x, method=method, mode=o["mode"], pixel_range=pixel_range(meta),
                    baseline=o["baseline"], steps=o["steps"], noise=o["noise"],
                    nt_samples=o["nt_samples"], seed=o["seed"], reference=ref)
    row = {"method": method, "mode": res["mode"], "params": res["params"],
           "reference_n": int(ref.shape[0]) if res["mode"] == "frozen" else None,
           "measures": summarize(sparsity(res["attr"]), n_boot=0)}
    if "delta" in res:  # IG completeness error, logit units
        row["ig_abs_delta_mean"] = float(res["delta"].abs().mean())
        row["ig_delta_sum"] = float(res["delta"].sum())
    if "guided_relus" in res:
        row["guided_relus"] = res["guided_relus"]
    return row, res["attr"]


def saliency(path: Any, *, methods: Sequence[str] = ("saliency",), n: int = N,
             population: str = "real", mode: str = "auto", baseline: str = "black",
             steps: int = IG_STEPS, noise: float = NOISE, nt_samples: int = NT_SAMPLES,
             seed: int = 0, device: str = "cpu", data: str | None = None,
             data_root: str | None = None, format: str = "auto", label: int | None = None,
             fakes: str | None = None, x: torch.Tensor | None = None, figure: str | None = None
             ) -> tuple[dict[str, Any], torch.Tensor, list]:
    """Attributions of D's raw logit on ``n`` seeded inputs, per method
    (:func:`probes.adapters.captum.attribute`, against the clean reference group of
    :func:`probes.io.sources.probe_inputs` in ``frozen`` mode). ``data``/``data_root``: the
    reals, ``fakes``: a folder of generated images (a discriminator file has neither dataset
    nor G); ``format``/``label``: :func:`probes.io.sources.load`.

    ``path``: a file, a ``(D, meta)`` pair from ``probes.discriminator(module, ...)`` or a
    module; ``x``: reals to attribute (in D's range; the first ``n``, and the first
    :func:`probes.io.checkpoints.group_size` as the reference group) instead of drawn ones.
    ``figure``: where the caller draws the maps (recorded as the record's ``figure``).

    Returns:
        ``(result, x, [(method, attributions (n, C, H, W))])``; ``result`` is the
        ``asgan-probe saliency`` JSON (:func:`probes.measures.envelope.envelope` keys, the
        checkpoint's facts, its ``contract``, the ``coupling`` check run before the maps (a
        per-sample mode that cannot make D per-sample is a UserError) and, per method, the
        mode, parameters, sparsity summaries of the maps and IG's completeness error).
    """
    options = {k: v for k, v in locals().items() if k not in NOT_OPTIONS}  # the call's, as given
    from probes.io.sources import load, real_split
    from probes.measures.contract import contract_record, coupling_record, resolve

    G, D, meta, path = resolve(path, lambda q: load(q, device=device, format=format,
                                                   label=label), x=x)
    if not is_image(meta):
        raise UserError("saliency maps need image data; this checkpoint's data are points")
    o = {**options, "x": x, "device": device}
    xs, ref = _inputs(G, meta, o)
    coupling = coupling_record(D, xs, mode=mode, reference=ref, name=str(path))
    rows, attrs = [], []
    for m in methods:
        row, attr = _method_row(D, xs, ref, meta, m, o)
        rows.append(row)
        attrs.append((m, attr))
    result = {**envelope("saliency", inputs=[path], options=options, seed=seed, units=UNITS),
              **facts(meta, path), "pixel_range": list(pixel_range(meta)),
              "population": population, "n": n, "seed": seed,
              "reals": (real_split(meta, data=data) if x is None else
                        "given by the caller") if population == "real" else None,
              **({"fakes": str(fakes)} if population == "fake" and fakes else {}),
              "contract": contract_record(meta, D), "coupling": coupling, "methods": rows,
              "figure": figure}
    return result, xs, attrs
