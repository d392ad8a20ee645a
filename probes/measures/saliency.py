"""captum attributions of one discriminator checkpoint: the ``asgan-probe saliency``
measurement (figures are the CLI's; the numbers and the maps are here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from probes.io.checkpoints import facts, is_image, pixel_range
from trainers.errors import UserError


def saliency(path: str, *, methods: Sequence[str] = ("saliency",), n: int = 16,
             population: str = "real", mode: str = "auto", baseline: str = "black",
             steps: int = 50, noise: float = 0.15, nt_samples: int = 16, seed: int = 0,
             device: str = "cpu", data: str | None = None, data_root: str | None = None,
             format: str = "auto", label: int | None = None, fakes: str | None = None
             ) -> tuple[dict[str, Any], torch.Tensor, list]:
    """Attributions of D's raw logit on ``n`` seeded inputs, per method
    (:func:`probes.adapters.captum.attribute`, against the clean reference group of
    :func:`probes.io.sources.probe_inputs` in ``frozen`` mode). ``data``/``data_root``: the
    reals, ``fakes``: a folder of generated images (a discriminator file has neither dataset
    nor G); ``format``/``label``: :func:`probes.io.sources.load`.

    Returns:
        ``(result, x, [(method, attributions (n, C, H, W))])``; ``result`` holds the
        checkpoint's facts and, per method, the mode, parameters, sparsity summaries of the
        maps and IG's completeness error.
    """
    from probes.adapters.captum import attribute
    from probes.core.sparsity import sparsity, summarize
    from probes.io.sources import load, probe_inputs, real_split

    G, D, meta = load(path, device=device, format=format, label=label)
    if not is_image(meta):
        raise UserError("saliency maps need image data; this checkpoint's data are points")
    x, ref = probe_inputs(meta, G, population=population, n=n, seed=seed, device=device,
                          data=data, data_root=data_root, fakes_dir=fakes)
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
              "seed": seed,
              "reals": real_split(meta, data=data) if population == "real" else None,
              **({"fakes": str(fakes)} if population == "fake" and fakes else {}),
              "methods": rows}
    return result, x, attrs
