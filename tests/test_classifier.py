"""The shipped digit classifier: held-out accuracy re-measured, manifest entry, split, features."""

from __future__ import annotations

import pytest
import torch

from asgan_base.manifest import ROOT, read_manifest
from probes.adapters import classifier as C
from trainers.data import load_dataset, read_mnist10k


@pytest.fixture(scope="module")
def shipped():
    return C.load_classifier()  # verified against checkpoints/MANIFEST.json


@pytest.fixture(scope="module")
def mnist():
    images, labels = read_mnist10k()
    return (torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1),
            torch.from_numpy(labels).long())


def test_split_is_fixed_disjoint_and_documented(shipped):
    train, held = C.heldout_split()
    assert len(train) == 9000 and len(held) == 1000
    assert torch.equal(torch.sort(torch.cat([train, held])).values, torch.arange(10_000))
    again = C.heldout_split()
    assert torch.equal(again[1], held)
    _, meta = shipped
    assert {k: meta["split"][k] for k in ("n", "n_heldout", "seed")} == C.SPLIT
    assert "randperm" in meta["split"]["rule"]


def test_shipped_classifier_heldout_accuracy_is_at_least_97_percent(shipped, mnist):
    net, meta = shipped
    x, y = mnist
    _, held = C.heldout_split(**{k: meta["split"][k] for k in ("n", "n_heldout", "seed")})
    acc = C.accuracy(net, x[held], y[held])
    assert acc >= 0.97
    # the number in the file is what the test measures (up to one digit of 1000 on another
    # thread count / BLAS)
    assert acc == pytest.approx(meta["heldout_accuracy"], abs=0.0015)


def test_manifest_entry_matches_the_file(shipped):
    _, meta = shipped
    entry = read_manifest()[C.SHIPPED]
    assert entry["heldout_accuracy"] == meta["heldout_accuracy"]
    assert entry["command"] == meta["command"]
    assert entry["command"].startswith("OMP_NUM_THREADS=1 python scripts/train_classifier.py")
    assert entry["seed"] == meta["training"]["seed"]
    assert entry["split"] == meta["split"]
    assert entry["bytes"] == (ROOT / C.SHIPPED).stat().st_size < 1_000_000
    assert meta["data"]["name"] == "mnist10k" and meta["feature_dim"] == C.FEATURE_DIM


def test_features_are_batch_size_independent_and_leave_the_net_alone(shipped, mnist):
    net, _ = shipped
    x = mnist[0][:64]
    before = x.clone()
    net.train()
    try:
        a = C.features(net, x, batch_size=7)
        b = C.features(net, x, batch_size=64)
        assert net.training  # the flag is restored
    finally:
        net.eval()
    assert a.shape == (64, C.FEATURE_DIM) and (a >= 0).all()
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(x, before)


def test_32px_inputs_are_resized_to_28(shipped):
    net, _ = shipped
    ds = load_dataset("mnist10k", resolution=32)
    x32, y = ds.get(torch.arange(200)), ds.labels[:200]
    assert C.to_input(x32).shape == (200, 1, 28, 28)
    assert C.accuracy(net, x32, y) > 0.95  # a resize round trip keeps the digits readable
    with pytest.raises(ValueError):
        C.to_input(torch.zeros(2, 3, 28, 28))


def test_stacked_mnist_channels_are_read_as_digit_triples(shipped):
    net, _ = shipped
    ds = load_dataset("stacked-mnist", seed=0, n=300)
    digits = C.predict_channels(net, ds.get(torch.arange(300)))
    codes = digits @ torch.tensor([100, 10, 1])
    assert digits.shape == (300, 3)
    assert (codes == ds.labels).float().mean() > 0.93  # ~ accuracy cubed


def test_training_is_seeded(mnist):
    x, y = mnist[0][:128], mnist[1][:128]
    a = C.train_classifier(x, y, epochs=1, batch_size=32, width=4, seed=3)
    b = C.train_classifier(x, y, epochs=1, batch_size=32, width=4, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                 b.state_dict().values()))
    assert not a.training


def test_round_trip_and_foreign_files(tmp_path, mnist):
    net = C.build_classifier(width=4)
    path = C.save_classifier(tmp_path / "c.safetensors", net,
                             {"arch": {"name": "DigitCNN", "kwargs": {"width": 4}}})
    back, meta = C.read_classifier(path)
    assert meta["format"] == C.FORMAT
    assert torch.equal(C.logits(back, mnist[0][:5]), C.logits(net, mnist[0][:5]))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an asgan-probe classifier"):
        C.read_classifier(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable"):
        C.read_classifier(tmp_path / "junk.safetensors")


def _module_forward(net, x, batch_size=500):
    """The reference: the plain nn.Module forward, ``(features, predicted digits)``."""
    with torch.no_grad():
        f = torch.cat([net.body(C.to_input(x[i:i + batch_size]))
                       for i in range(0, len(x), batch_size)])
    return f, net.head(f).argmax(dim=1)


def _same_as_module_forward(net, x):
    ref_f, ref_d = _module_forward(net, x)
    f = C.features(net, x)
    torch.testing.assert_close(f, ref_f, rtol=1e-5, atol=1e-5 * float(ref_f.abs().max()))
    assert torch.equal(C.predict(net, x), ref_d)
    return ref_d


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
def test_onednn_path_is_the_module_forward_on_every_digit_and_stacked_g_samples(shipped, mnist):
    from probes.io import sources
    from probes.study.arms import shipped_runs

    net, _ = shipped
    assert C._onednn_body(net) is not None  # the path under test is the one taken
    _same_as_module_forward(net, mnist[0])  # all 10,000 mnist10k digits, 28 px
    # G samples at 32 px (resized), as stacked-MNIST coverage reads them, channel by channel
    G, _, meta = sources.load(shipped_runs("stacked-mnist")["baseline"][0])
    x = sources.fakes(G, meta, 2000, seed=0)
    digits = _same_as_module_forward(net, x.reshape(-1, 1, *x.shape[-2:]))
    assert torch.equal(C.predict_channels(net, x), digits.reshape(-1, 3))
    assert len(digits.unique()) == 10  # G's samples exercise every class


def test_onednn_path_applies_only_to_the_layer_stack_it_knows(mnist):
    net = C.build_classifier(width=4).eval()
    if torch.backends.mkldnn.is_available():
        assert C._onednn_body(net) is not None
    _same_as_module_forward(net, mnist[0][:300])  # a fresh net of another width
    net.body[8] = torch.nn.MaxPool2d(2, ceil_mode=True)  # 7 -> 4: not what the path does
    assert C._onednn_body(net) is None
    with pytest.raises(RuntimeError, match="shapes"):  # the module's forward ran: 4x4 maps
        C.features(net, mnist[0][:4])                   # no longer fit the Linear layer
    assert C._onednn_body(C.build_classifier(width=4).double()) is None


# ---- Fashion-MNIST's own classifier (its FD's feature space; study v3)

FASHION = C.SHIPPED_FOR["fashion-mnist"]


def _fashion_parts():
    from asgan_base.errors import UserError

    try:
        return load_dataset("fashion-mnist", part="train"), load_dataset("fashion-mnist",
                                                                         part="heldout")
    except UserError as e:  # .ci/run installs Debian's dataset-fashion-mnist
        pytest.skip(f"Fashion-MNIST is not on this machine ({e})")


def test_fashion_classifier_is_shipped_from_its_recorded_command():
    net, meta = C.load_classifier(data="fashion-mnist")  # verified against the manifest
    entry = read_manifest()[FASHION]
    assert entry["command"] == meta["command"] and "--data fashion-mnist" in entry["command"]
    assert entry["data"] == meta["data"]["name"] == "fashion-mnist"
    assert entry["heldout_accuracy"] == meta["heldout_accuracy"] >= 0.88
    assert meta["split"]["n_heldout"] == 10_000 and meta["split"]["n"] == 70_000
    summary = C.classifier_summary(dict(meta, shipped=True))
    assert summary["file"] == FASHION and "official test set" in summary["heldout"]


def test_fashion_classifier_accuracy_on_the_official_test_set():
    train, held = _fashion_parts()
    net, meta = C.load_classifier(data="fashion-mnist")
    assert held.info["split"]["heldout_sha256"] == meta["split"]["heldout_sha256"]
    x, y = held.get(torch.arange(held.n)), held.labels.long()
    acc = C.accuracy(net, x, y)
    assert acc >= 0.88 and acc == pytest.approx(meta["heldout_accuracy"], abs=0.002)


def test_quality_measures_fashion_in_its_own_features():
    from probes.measures.coverage import load_digit_classifier

    _, digits = load_digit_classifier(None, "cpu")
    _, fashion = load_digit_classifier(None, "cpu", data="fashion-mnist")
    _, other = load_digit_classifier(None, "cpu", data="cifar10")
    assert digits["data"] == other["data"] == "mnist10k" and fashion["data"] == "fashion-mnist"
