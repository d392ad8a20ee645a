"""Held-out splits (issue 12, item 4) and eps units of the 2-D mixtures (issue 15, item 4).

The split: disjoint, deterministic, 9,000 / 1,000 on mnist10k (the classifier's indices),
stacked-mnist built from the parts, 2-D mixtures sampled from separate seed streams; the
record a smoke-trained checkpoint carries; the probes' reals drawn from the held-out part.
The eps conversion: one function, eps * (hi - lo) for pixels, eps * std for the mixtures.
"""

from __future__ import annotations

import pytest
import torch

from asgan_base.errors import UserError
from trainers.data import (
    MNIST10K_SPLIT,
    check_split,
    eps_units,
    eps_units_of,
    load_dataset,
    mnist10k_split,
    split_of,
    training_part,
)

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


# ----------------------------------------------------------------------------- probes' reals


def test_reals_default_to_the_held_out_part(smoke_ckpts):
    from probes.io.sources import real_split, reals

    meta = _meta(smoke_ckpts["auto"])
    held = _rows(load_dataset("mnist10k", part="heldout").get(torch.arange(1000)))
    train_rows = _rows(load_dataset("mnist10k", part="train").get(torch.arange(9000)))
    assert _rows(reals(meta, 1000, seed=0)) == held  # all of it, nothing else
    assert _rows(reals(meta, 200, seed=3)).isdisjoint(train_rows)
    assert torch.equal(reals(meta, 50, seed=3), reals(meta, 50, seed=3))
    assert real_split(meta) == "held-out 1000 of mnist10k (never trained on)"
    with pytest.raises(UserError, match="lower --n to at most 1000") as e:
        reals(meta, 1001)
    assert "\n" not in str(e.value) and "--reals all" in str(e.value)
    # the explicit choices (the CLI's --reals)
    assert _rows(reals(meta, 300, part="train")) <= train_rows
    assert reals(meta, 5000, part="all").shape[0] == 5000
    assert real_split(meta, "train") == "train 9000 of mnist10k (trained on)"
    assert real_split(meta, "all").startswith("all of mnist10k (a split is recorded")
    with pytest.raises(UserError, match="--reals must be"):
        reals(meta, 4, part="test")


def test_reals_without_a_split_are_the_old_choice(smoke_ckpts):
    from probes.io.sources import real_split, reals

    meta = _meta(smoke_ckpts["none"])
    full = load_dataset("mnist10k")
    idx = torch.randperm(full.n, generator=torch.Generator().manual_seed(5))[:64]
    assert torch.equal(reals(meta, 64, seed=5), full.get(idx))  # as before splits existed
    assert real_split(meta) == "all of mnist10k (no split recorded: D may have trained on them)"
    with pytest.raises(UserError, match="records no train/held-out split"):
        reals(meta, 4, part="held-out")
    # a checkpoint written before splits were recorded reads the same way
    old = _meta(smoke_ckpts["auto"])
    old["data"] = {"name": "mnist10k", "shape": old["data"]["shape"]}
    assert torch.equal(reals(old, 64, seed=5), full.get(idx))
    # reals of another dataset than D's: the split does not apply
    assert real_split(_meta(smoke_ckpts["auto"]), data="digits") == \
        "all of digits (not the data D trained on)"


# ----------------------------------------------------------------------------- eps units


@pytest.mark.parametrize("name,std", [("ring8", 0.01), ("grid25", 0.05)])
def test_mixture_eps_is_in_mode_std(name, std):
    from probes.core.attacks import eps_to_abs

    units = eps_units(load_dataset(name, n=10), "mode-std")
    assert units == {"eps_unit": "mode-std", "eps_scale": std}
    for eps in (0.25, 1.0, 1.5):
        assert eps_to_abs(eps, (-5.0, 5.0), scale=units["eps_scale"]) == pytest.approx(eps * std)


def test_pixel_eps_is_a_fraction_of_the_range():
    from probes.core.attacks import eps_to_abs

    units = eps_units(load_dataset("mnist10k", n=10), "pixel")
    assert units == {"eps_unit": "pixel", "eps_scale": 2.0}
    assert eps_to_abs(2 / 255, (-1.0, 1.0), scale=units["eps_scale"]) == pytest.approx(4 / 255)
    assert eps_to_abs(2 / 255, (-1.0, 1.0)) == pytest.approx(4 / 255)  # no scale: (hi - lo)
    per_sample = torch.tensor([0.5, 1.5])
    got = eps_to_abs(per_sample, (-5.0, 5.0), like=torch.zeros(2, 2), scale=0.05)
    assert torch.allclose(got.flatten(), per_sample * 0.05)


def test_old_checkpoints_read_as_the_old_unit_and_say_so():
    old_ring = {"pixel_range": [-1.5, 1.5], "data": {"name": "ring8", "shape": [2]}}
    u = eps_units_of(old_ring)
    assert (u["unit"], u["scale"], u["recorded"]) == ("pixel", 3.0, False)
    assert "plotting box" in u["text"] and "not recorded" in u["text"]
    new_ring = dict(old_ring, eps_unit="mode-std", eps_scale=0.01)
    assert eps_units_of(new_ring)["scale"] == 0.01 and eps_units_of(new_ring)["recorded"]


def _ring_run(root, name, **over):
    """One AS-GAN iteration of a tiny ring8 MLP; returns the checkpoint."""
    from trainers import make_config, train

    cfg = make_config(None, dict(data="ring8", arch="mlp", width=8, z_dim=2, batch_size=32,
                                 steps=1, trainer="asgan", snapshot_every=1, sample_every=0,
                                 log_every=1, tensorboard=False, **over))
    return train(cfg, root / name, progress=False)


def test_training_fgsm_converts_with_the_recorded_scale(tmp_path):
    from trainers.checkpoint import load_checkpoint

    std = _ring_run(tmp_path, "std", eps=1.5)  # mode-std (auto): 1.5 * 0.01 = 0.015
    box = _ring_run(tmp_path, "box", eps=0.005, eps_unit="pixel")  # 0.005 * 3 = 0.015
    other = _ring_run(tmp_path, "other", eps=0.5)  # 0.005: another step
    assert (_meta(std)["eps_unit"], _meta(std)["eps_scale"]) == ("mode-std", 0.01)
    assert (_meta(box)["eps_unit"], _meta(box)["eps_scale"]) == ("pixel", 3.0)
    w = {k: load_checkpoint(p)[1].state_dict() for k, p in
         (("std", std), ("box", box), ("other", other))}
    # the same absolute step gives the same D; another one does not
    assert all(torch.allclose(w["std"][k], w["box"][k], atol=1e-6) for k in w["std"])
    assert any(not torch.allclose(w["std"][k], w["other"][k], atol=1e-6) for k in w["std"])


def test_config_eps_units_and_legacy_configs():
    from trainers.config import config_from_dict, make_config

    assert make_config("ring8-mlp").eps == 0.5 and make_config("grid25-mlp").eps == 0.5
    assert make_config("ring8-mlp", {"eps": "1.5"}).eps == 1.5  # mode-std: beyond 1 is fine
    with pytest.raises(UserError, match="outside \\[0, 1\\]"):
        make_config("smoke", {"eps": "1.5"})  # pixels stop at 1
    with pytest.raises(UserError, match="needs a 2-D mixture"):
        make_config("smoke", {"eps_unit": "mode-std"})
    # a stored 2-D config from before eps units: its eps stays in the old (box) unit on resume
    old = {k: v for k, v in make_config("ring8-mlp", {"eps": 2 / 255}).to_dict().items()
           if k != "eps_unit"}
    assert config_from_dict(old).eps_unit == "pixel"


def test_shipped_2d_checkpoints_load_and_say_their_unit():
    from probes.study.arms import shipped_runs
    from trainers.checkpoint import load_checkpoint

    # through the manifest: the folder layout changed with study v2 (a glob on the v1 folder
    # found nothing once v1 was retired, and the test skipped itself)
    path = shipped_runs("ring8")["baseline"][0]
    _, _, meta = load_checkpoint(path)
    # the shipped 2-D runs (study v2) record their unit: a ring8 mode's std, 0.01
    assert (meta["eps_unit"], meta["eps_scale"]) == ("mode-std", 0.01)
    u = eps_units_of(meta)
    assert (u["unit"], u["scale"], u["recorded"]) == ("mode-std", 0.01, True)
    assert "not recorded" not in u["text"]
    # the same checkpoint as written before eps units: its eps reads in the old unit, a
    # fraction of the plotting box (-1.5, 1.5), and the text says the unit was not recorded
    old = {k: v for k, v in meta.items() if k not in ("eps_unit", "eps_scale")}
    u = eps_units_of(old)
    assert (u["unit"], u["scale"], u["recorded"]) == ("pixel", 3.0, False)
    assert "not recorded" in u["text"]

