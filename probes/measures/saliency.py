"""captum attributions of one discriminator checkpoint: the ``asgan-probe saliency``
measurement (figures are the CLI's; the numbers and the maps are here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from asgan_base.errors import UserError
from probes.io.checkpoints import facts, group_size, is_image, pixel_range


def saliency(path: Any, *, methods: Sequence[str] = ("saliency",), n: int = 16,
             population: str = "real", mode: str = "auto", baseline: str = "black",
             steps: int = 50, noise: float = 0.15, nt_samples: int = 16, seed: int = 0,
             device: str = "cpu", data: str | None = None, data_root: str | None = None,
             format: str = "auto", label: int | None = None, fakes: str | None = None,
             x: torch.Tensor | None = None
             ) -> tuple[dict[str, Any], torch.Tensor, list]:
    """Attributions of D's raw logit on ``n`` seeded inputs, per method
    (:func:`probes.adapters.captum.attribute`, against the clean reference group of
    :func:`probes.io.sources.probe_inputs` in ``frozen`` mode). ``data``/``data_root``: the
    reals, ``fakes``: a folder of generated images (a discriminator file has neither dataset
    nor G); ``format``/``label``: :func:`probes.io.sources.load`.

    ``path``: a file, a ``(D, meta)`` pair from ``probes.discriminator(module, ...)`` or a
    module; ``x``: reals to attribute (in D's range; the first ``n``, and the first
    :func:`probes.io.checkpoints.group_size` as the reference group) instead of drawn ones.

    Returns:
        ``(result, x, [(method, attributions (n, C, H, W))])``; ``result`` holds the
        checkpoint's facts, its ``contract`` (reduction, dtype), the ``coupling`` check run
        before the maps (a per-sample mode that cannot make D per-sample is a UserError)
        and, per method, the mode, parameters, sparsity summaries of the maps and IG's
        completeness error.
    """
    from probes.adapters.captum import attribute
    from probes.core.sparsity import sparsity, summarize
    from probes.io.sources import load, probe_inputs, real_split
    from probes.measures.contract import contract_record, coupling_record, resolve

    G, D, meta, path = resolve(path, lambda q: load(q, device=device, format=format,
                                                   label=label), x=x)
    if not is_image(meta):
        raise UserError("saliency maps need image data; this checkpoint's data are points")
    given = x
    if x is not None:
        if population != "real":
            raise UserError("x gives reals: use population='real' with your samples")
        x, ref = x[:n], x[:group_size(meta)]
    else:
        x, ref = probe_inputs(meta, G, population=population, n=n, seed=seed, device=device,
                              data=data, data_root=data_root, fakes_dir=fakes)
    coupling = coupling_record(D, x, mode=mode, reference=ref, name=str(path))
    rows, attrs = [], []
    for m in methods:
        res = attribute(D, x, method=m, mode=mode, pixel_range=pixel_range(meta),
                        baseline=baseline, steps=steps, noise=noise, nt_samples=nt_samples,
                        seed=seed, reference=ref)
        row = {"method": m, "mode": res["mode"], "params": res["params"],
               "reference_n": int(ref.shape[0]) if res["mode"] == "frozen" else None,
               "measures": summarize(sparsity(res["attr"]), n_boot=0)}
        if "delta" in res:  # IG completeness error, logit units
            row["ig_abs_delta_mean"] = float(res["delta"].abs().mean())
            row["ig_delta_sum"] = float(res["delta"].sum())
        if "guided_relus" in res:
            row["guided_relus"] = res["guided_relus"]
        rows.append(row)
        attrs.append((m, res["attr"]))
    result = {"probe": "saliency", **facts(meta, path), "pixel_range": list(pixel_range(meta)),
              "population": population, "n": n,
              "seed": seed, "reals": (real_split(meta, data=data) if given is None else
                                      "given by the caller") if population == "real" else None,
              **({"fakes": str(fakes)} if population == "fake" and fakes else {}),
              "contract": contract_record(meta, D), "coupling": coupling, "methods": rows}
    return result, x, attrs
