"""Held-out splits: which reals a run trains on and which a probe may use as never seen.

Probes that speak of D's robustness need reals D never trained on. Four sets have a fixed,
recorded split (SPEC section 4): mnist10k (9,000 train / 1,000 held out, the digit
classifier's split), stacked-mnist (built from those two parts) and the 2-D mixtures
(sampled, not split: the held-out part is fresh samples of a different seed stream);
fashion-mnist has its official train / t10k split. A ``part`` ("all", "train" or "heldout")
selects what ``load_dataset`` returns; the training loop records ``info["split"]`` in the
checkpoint so a probe can rebuild the held-out part and check it is the same one
(``heldout_sha256``).
"""

from __future__ import annotations

import hashlib

import torch

from asgan_base.errors import UserError
from trainers.data.dataset import Dataset, canonical_name

PARTS = ("all", "train", "heldout")
SPLIT_DATASETS = ("mnist10k", "stacked-mnist", "ring8", "grid25", "fashion-mnist")
# the digit classifier's split (scripts/train_classifier.py): one definition for both
MNIST10K_SPLIT = {"n": 10_000, "n_heldout": 1_000, "seed": 0}


def mnist10k_split(n: int = MNIST10K_SPLIT["n"], n_heldout: int = MNIST10K_SPLIT["n_heldout"],
                   seed: int = MNIST10K_SPLIT["seed"]) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed split of mnist10k used by the digit classifier and the GAN trainers.

    ``perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))``; train =
    ``perm[:n - n_heldout]``, held out = ``perm[n - n_heldout:]`` (int64 indices, in ``perm``
    order). The defaults give 9,000 / 1,000.
    """
    if not 0 < n_heldout < n:
        raise ValueError(f"need 0 < n_heldout < n, got n_heldout={n_heldout}, n={n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n - n_heldout], perm[n - n_heldout:]


def heldout_generator(seed: int) -> torch.Generator:
    """The seed stream of the sampled held-out parts (2-D mixtures, stacked-mnist triples):
    seeded by the first 8 bytes of SHA-256(``repr((seed, "heldout"))``), so it shares no
    prefix with ``torch.Generator().manual_seed(seed)``, which draws the training part."""
    digest = hashlib.sha256(repr((int(seed), "heldout")).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _sha256_tensor(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's values, little-endian, C order (same digest on every machine)."""
    a = t.detach().cpu().contiguous().numpy()
    return hashlib.sha256(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest()


def _mnist10k_part(part: str) -> torch.Tensor:
    """Indices of a part of the mnist10k split, ascending (so the first n stay class-balanced)."""
    train, held = mnist10k_split()
    return (train if part == "train" else held).sort().values


def mnist10k_split_record() -> dict:
    """JSON-able description of the mnist10k split (what a checkpoint records)."""
    n, n_held, seed = MNIST10K_SPLIT["n"], MNIST10K_SPLIT["n_heldout"], MNIST10K_SPLIT["seed"]
    return {
        "name": "mnist10k-classifier", "dataset": "mnist10k", "kind": "index", "seed": seed,
        "n_train": n - n_held, "n_heldout": n_held,
        "rule": f"the digit classifier's split (trainers.data.mnist10k_split): perm = "
                f"torch.randperm({n}, generator=torch.Generator().manual_seed({seed})); "
                f"train = perm[:{n - n_held}], held-out = perm[{n - n_held}:]",
        "heldout_sha256": _sha256_tensor(_mnist10k_part("heldout")),
        "heldout_sha256_of": "the held-out mnist10k indices, ascending, int64",
    }


def check_part(name: str, part: str) -> None:
    """UserError unless ``part`` is one of PARTS and ``name`` (a canonical registry name) has
    it: only SPLIT_DATASETS have a train / held-out part."""
    if part not in PARTS:
        raise UserError(f"unknown part {part!r} of {name}; valid: {', '.join(PARTS)}")
    if part != "all" and name not in SPLIT_DATASETS:
        raise UserError(f"{name} has no fixed train/held-out split (only "
                        f"{', '.join(SPLIT_DATASETS)} do); use all of it (split=none)")


def training_part(name: str, split: str) -> str:
    """The part a run trains on for config ``split``: ``auto`` -> "train" where ``name`` has a
    split, else "all"; ``train`` -> "train" (UserError if it has none); ``none`` -> "all"."""
    key = canonical_name(name)
    if split == "none":
        return "all"
    if split == "auto":
        return "train" if key in SPLIT_DATASETS else "all"
    if split != "train":
        raise UserError(f"split must be one of auto, train, none; got {split!r}")
    check_part(key, "train")
    return "train"


def split_of(meta: dict) -> dict | None:
    """The split a checkpoint records (``meta["data"]["split"]``), or None: trained on all of
    its data, or written before splits were recorded (both mean: no held-out part)."""
    data = meta.get("data") if isinstance(meta, dict) else None
    split = data.get("split") if isinstance(data, dict) else None
    return split if isinstance(split, dict) else None


def check_split(ds: Dataset, recorded: dict) -> None:
    """UserError unless ``ds`` (a part loaded here) belongs to the split ``recorded`` in a
    checkpoint: same rule and the same held-out samples (SHA-256). A mismatch means this
    machine's torch draws other indices or points than the training machine did."""
    here = ds.info.get("split") or {}
    for key in ("name", "dataset", "n_heldout", "heldout_sha256"):
        if here.get(key) != recorded.get(key):
            raise UserError(
                f"{ds.name}: the held-out part rebuilt here differs from the one the checkpoint "
                f"records ({key}: {here.get(key)!r} here, {recorded.get(key)!r} recorded; "
                "another torch version?); use --reals all or train on this machine")
