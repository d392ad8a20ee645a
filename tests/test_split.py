"""Held-out splits (issue 12, item 4).

The split: disjoint, deterministic, 9,000 / 1,000 on mnist10k (the classifier's indices),
stacked-mnist built from the parts, 2-D mixtures sampled from separate seed streams; the
record a smoke-trained checkpoint carries.
"""

from __future__ import annotations

import pytest
import torch

from trainers.data import (
    MNIST10K_SPLIT,
    check_split,
    load_dataset,
    mnist10k_split,
    split_of,
    training_part,
)
from trainers.errors import UserError

SMOKE = {"steps": 2, "snapshot_every": 2, "sample_every": 0, "log_every": 1}


@pytest.fixture(scope="module")
def smoke_ckpts(tmp_path_factory):
    """Two tiny mnist10k runs: the default split (auto: the train part) and split=none."""
    from trainers import make_config, train

    root = tmp_path_factory.mktemp("split-runs")
    return {split: train(make_config("smoke", dict(SMOKE, split=split)), root / split,
                         progress=False) for split in ("auto", "none")}


def _meta(path):
    from trainers.checkpoint import read_checkpoint

    return read_checkpoint(path)[1]


def _rows(x: torch.Tensor) -> set[bytes]:
    """Each sample's bytes: compares sets of images or points exactly."""
    return {r.numpy().tobytes() for r in x.flatten(1)}


# ----------------------------------------------------------------------------- mnist10k


def test_mnist10k_split_is_disjoint_deterministic_9000_1000():
    train, held = mnist10k_split()
    assert (len(train), len(held)) == (9000, 1000)
    assert set(train.tolist()).isdisjoint(held.tolist())
    assert sorted(train.tolist() + held.tolist()) == list(range(10_000))
    again = mnist10k_split()
    assert torch.equal(train, again[0]) and torch.equal(held, again[1])
    other = mnist10k_split(seed=1)  # the seed matters: a fixed split, not any split
    assert not torch.equal(held, other[1])


def test_mnist10k_split_is_the_classifiers():
    # one definition: the digit classifier's held-out digits are the GAN's held-out digits
    from probes.adapters import classifier as C

    for ours, theirs in zip(mnist10k_split(), C.heldout_split()):
        assert torch.equal(ours, theirs)
    assert {k: C.SPLIT[k] for k in MNIST10K_SPLIT} == MNIST10K_SPLIT


def test_mnist10k_parts_hold_the_split_images():
    full = load_dataset("mnist10k")
    train, held = (load_dataset("mnist10k", part=p) for p in ("train", "heldout"))
    assert (train.n, held.n) == (9000, 1000) and train.info["part"] == "train"
    tr_idx, he_idx = mnist10k_split()
    x_full = full.get(torch.arange(full.n))
    x_held = held.get(torch.arange(held.n))
    assert torch.equal(x_held, x_full[he_idx.sort().values])  # ascending file order
    assert torch.equal(held.labels, full.labels[he_idx.sort().values])
    assert torch.equal(train.get(torch.arange(train.n)), x_full[tr_idx.sort().values])
    assert train.info["split"] == held.info["split"]
    rec = held.info["split"]
    assert (rec["n_train"], rec["n_heldout"], rec["dataset"]) == (9000, 1000, "mnist10k")
    assert len(rec["heldout_sha256"]) == 64
    assert load_dataset("mnist10k", part="heldout", n=100).n == 100  # first n of the part


# ----------------------------------------------------------------------------- stacked-mnist


def test_stacked_mnist_parts_use_only_their_digits():
    mnist = load_dataset("mnist10k")
    pool = mnist.get(torch.arange(mnist.n))[:, 0]  # (10000, 28, 28)
    tr_idx, he_idx = mnist10k_split()
    train_digits, held_digits = _rows(pool[tr_idx]), _rows(pool[he_idx])
    for part, own, other in (("train", train_digits, held_digits),
                             ("heldout", held_digits, train_digits)):
        ds = load_dataset("stacked-mnist", part=part, seed=4, n=300)
        channels = ds.get(torch.arange(ds.n)).reshape(-1, 28, 28)  # (900, 28, 28)
        seen = _rows(channels)  # (no two mnist10k digits are byte-identical across parts)
        assert seen <= own and seen.isdisjoint(other) and len(seen) > 200
    # "all" is unchanged by the split machinery: the same triples as a plain load
    assert torch.equal(load_dataset("stacked-mnist", seed=4, n=50).get(torch.arange(50)),
                       load_dataset("stacked-mnist", seed=4, n=50, part="all")
                       .get(torch.arange(50)))


def test_stacked_mnist_heldout_is_deterministic_and_seeded():
    a, b, c = (load_dataset("stacked-mnist", part="heldout", seed=s, n=200) for s in (1, 1, 2))
    assert torch.equal(a.labels, b.labels) and not torch.equal(a.labels, c.labels)
    assert a.info["split"]["heldout_sha256"] != c.info["split"]["heldout_sha256"]
    train = load_dataset("stacked-mnist", part="train", seed=1, n=200)
    assert train.info["split"] == a.info["split"]


# ----------------------------------------------------------------------------- 2-D mixtures


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixtures_are_sampled_not_split(name):
    full = load_dataset(name, seed=3, n=2000)
    train = load_dataset(name, seed=3, n=2000, part="train")
    held = load_dataset(name, seed=3, n=2000, part="heldout")
    idx = torch.arange(2000)
    assert torch.equal(train.get(idx), full.get(idx))  # training data: exactly as before
    assert _rows(held.get(idx)).isdisjoint(_rows(train.get(idx)))  # fresh samples
    assert held.info["split"]["kind"] == "sampled"
    again = load_dataset(name, seed=3, n=2000, part="heldout")
    assert torch.equal(again.get(idx), held.get(idx))
    # the held-out stream is not another run's training stream
    assert _rows(held.get(idx)).isdisjoint(_rows(load_dataset(name, seed=4, n=2000).get(idx)))


# ----------------------------------------------------------------------------- parts and records


def test_parts_only_where_a_split_exists():
    with pytest.raises(UserError, match="no fixed train/held-out split"):
        load_dataset("digits", part="heldout")
    with pytest.raises(UserError, match="unknown part"):
        load_dataset("mnist10k", part="test")
    assert training_part("mnist10k", "auto") == "train"
    assert training_part("digits", "auto") == "all"
    assert training_part("Stacked_MNIST", "train") == "train"
    assert training_part("mnist10k", "none") == "all"
    with pytest.raises(UserError, match="no fixed"):
        training_part("cifar10", "train")


def test_check_split_refuses_another_split():
    held = load_dataset("stacked-mnist", part="heldout", seed=1, n=100)
    check_split(held, held.info["split"])
    other = load_dataset("stacked-mnist", part="heldout", seed=2, n=100).info["split"]
    with pytest.raises(UserError, match="differs from the one the checkpoint records"):
        check_split(held, other)
    assert split_of({"data": {"name": "mnist10k", "shape": [1, 28, 28]}}) is None  # old meta


# ----------------------------------------------------------------------------- training


def test_smoke_checkpoint_records_the_split(smoke_ckpts):
    from trainers.data import mnist10k_split_record

    meta = _meta(smoke_ckpts["auto"])
    assert meta["config"]["split"] == "auto" and meta["data"]["part"] == "train"
    assert split_of(meta) == mnist10k_split_record()
    assert (split_of(meta)["n_train"], split_of(meta)["n_heldout"]) == (9000, 1000)
    plain = _meta(smoke_ckpts["none"])
    assert plain["data"]["part"] == "all" and split_of(plain) is None


def test_split_config_field_and_legacy_configs():
    from trainers.config import TrainConfig, config_from_dict, make_config

    assert TrainConfig().split == "auto"
    for preset in ("mnist10k-dcgan", "ring8-mlp", "grid25-mlp"):
        assert make_config(preset).split == "train"
    stacked = make_config("mnist10k-dcgan", {"data": "stacked-mnist"})
    assert training_part(stacked.data, stacked.split) == "train"
    with pytest.raises(UserError, match="no fixed train/held-out split"):
        make_config(None, {"data": "cifar10", "split": "train"})
    with pytest.raises(UserError, match="split must be one of"):
        make_config(None, {"split": "heldout"})
    # a config stored before the field existed trained on all of its data: a resumed old run
    # must go on with all of it, not switch to today's default
    old = {k: v for k, v in make_config("smoke").to_dict().items() if k != "split"}
    assert config_from_dict(old).split == "none"
    assert config_from_dict(dict(old, split="auto")).split == "auto"
