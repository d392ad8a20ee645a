"""Gradient fidelity of 2-D mixture checkpoints: the ``asgan-probe fidelity`` measurement.

Per generated sample, the cosine between D's input gradient (of the raw logit) and the ideal
direction ``grad_x [log p_data(x) - log p_g(x)]``, and the share of the gradient's energy
orthogonal to it (the "adversarial noise" measured against the truth); estimator, bandwidth and
caveats in :mod:`probes.core.fidelity`. Defaults live here, once.

Samples (all from the probe ``seed``, none from the training seed): the probed fakes are
``G(z)`` with ``z`` drawn as every other probe draws them (:func:`probes.io.sources.fakes`, so
they are the fakes ``gradients`` and ``coverage`` see for the same seed); the KDE of ``p_g``
and the bandwidth's held-out set come from a second, disjoint latent stream
(``torch.Generator().manual_seed(KDE_STREAM + seed)``).
"""

from __future__ import annotations

from typing import Any

import torch

from asgan_base.errors import UserError
from probes.io.checkpoints import facts
from probes.measures.envelope import envelope

DEFAULT_N = 1000  # probed fakes per checkpoint
DEFAULT_N_KDE = 20_000  # G samples in the KDE of p_g
DEFAULT_N_HELD = 2_000  # G samples scoring the bandwidth grid
KDE_STREAM = 2 ** 31  # offset of the KDE's latent stream from the probe seed
MIXTURES = ("ring8", "grid25")
NOT_OPTIONS = ("paths", "device")  # fidelity_sweep()'s arguments that are no option
UNITS = {"data": "data units of the mixture; bandwidth in data units",
         "cos": "cosine of D's input gradient with the ideal direction, in [-1, 1]",
         "noise": "share of the gradient's squared norm orthogonal to it, in [0, 1]"}


def _latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(KDE_STREAM + seed))


@torch.no_grad()
def _generate(G, z: torch.Tensor, device, batch: int = 4096) -> torch.Tensor:
    was = G.training
    G.eval()
    out = torch.cat([G(z[i:i + batch].to(device)).cpu() for i in range(0, len(z), batch)])
    G.train(was)
    return out


def fidelity_one(G, D, meta: dict[str, Any], *, n: int = DEFAULT_N, n_kde: int = DEFAULT_N_KDE,
                 n_held: int = DEFAULT_N_HELD, seed: int = 0, bandwidth: float | None = None,
                 mode: str = "auto", device="cpu", keep: bool = False) -> dict[str, Any]:
    """Gradient fidelity of one 2-D checkpoint's D at its own G's samples.

    Returns the JSON-able record (``per_sample`` lists only when ``keep``): ``bandwidth`` (and
    the CV ``curve`` when chosen here), ``summary`` per measure (mean with a percentile-bootstrap
    95% CI over samples, median, n finite), ``mode``.
    """
    from probes.core.fidelity import fidelity, ideal_direction, select_bandwidth
    from probes.core.gradients import input_gradients
    from probes.core.sparsity import summarize
    from probes.io.sources import dataset_for, fakes

    ds = dataset_for(meta)
    modes = torch.tensor(ds.info["modes"], dtype=torch.float64)
    std = float(ds.info["std"])
    x = fakes(G, meta, n, seed=seed, device=device)
    z = _latents(n_kde + n_held, meta["g_spec"]["kwargs"]["z_dim"], seed)
    pool = _generate(G, z, device).double()
    kde, held = pool[:n_kde], pool[n_kde:]
    curve = None
    if bandwidth is None:
        bandwidth, curve = select_bandwidth(kde, held)
    ideal = ideal_direction(x.double(), modes, std, kde, bandwidth)
    out = input_gradients(D, x.to(device), wrt="logit", population="fake", mode=mode,
                          reference=x[:64].to(device), reduce=None, keep=True)
    res = fidelity(out["grad"].double(), ideal)
    per = {"cos": res["cos"], "noise": res["noise"], "grad_norm": res["grad_norm"],
           "ideal_norm": res["ideal_norm"]}
    record = {
        "mode": out["mode"], "n": n, "n_kde": n_kde, "n_held": n_held,
        "bandwidth": float(bandwidth), "bandwidth_rule": "given" if curve is None else
        "max held-out log-likelihood (likelihood CV)", "mode_std": std,
        "summary": summarize(per, seed=seed),
        "share_cos_positive": float((res["cos"] > 0).double().nanmean()),
    }
    if curve is not None:
        record["bandwidth_curve"] = curve
    if keep:
        record["per_sample"] = {k: v.tolist() for k, v in per.items()}
    return record


def fidelity_sweep(paths: list[str], *, n: int = DEFAULT_N, n_kde: int = DEFAULT_N_KDE,
                   seed: int = 0, bandwidth: float | None = None, mode: str = "auto",
                   device: str = "cpu", keep: bool = False) -> dict[str, Any]:
    """:func:`fidelity_one` for every checkpoint in ``paths`` (2-D mixtures only): the
    ``asgan-probe fidelity`` JSON (:func:`probes.measures.envelope.envelope` keys, ``wrt``,
    one ``checkpoints`` row each)."""
    options = {k: v for k, v in locals().items() if k not in NOT_OPTIONS}  # the call's, as given
    from probes.io import sources

    for name, value, least in (("n", n, 2), ("n-kde", n_kde, 100)):
        if value < least:
            raise UserError(f"--{name} must be >= {least}, got {value}")
    if bandwidth is not None and not bandwidth > 0:
        raise UserError(f"--bandwidth must be > 0 (data units), got {bandwidth}")
    dev = sources.resolve_device(device)
    loaded = []
    for path in paths:
        G, D, meta = sources.load(path, device=dev)
        info = facts(meta, path)
        if info["data"] not in MIXTURES or G is None:
            raise UserError(f"{path} was trained on {info['data']!r}; gradient fidelity needs "
                            "a ring8 or grid25 checkpoint (its data density is known)")
        loaded.append((path, G, D, meta, info))
    rows = []
    for path, G, D, meta, info in loaded:
        rec = fidelity_one(G, D, meta, n=n, n_kde=n_kde, seed=seed, bandwidth=bandwidth,
                           mode=mode, device=dev, keep=keep)
        rows.append({**info, "path": str(path), **rec})
    return {**envelope("fidelity", inputs=paths, options=options, seed=seed, units=UNITS),
            "wrt": "logit", "checkpoints": rows}
