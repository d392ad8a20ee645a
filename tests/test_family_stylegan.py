"""StyleGAN2-ADA / StyleGAN3 snapshot reader: upstream outputs, never running the file's code.

Fixtures (tests/fixtures/stylegan/README.md) were written by the upstream code with perturbed
weights and filters; ``y``, ``y4``, ``y2`` are upstream's ``D(x, c)`` for 8, 4 and 2 samples.
Crafted pickles are built here at runtime: :func:`_roundtrip` re-pickles a fixture's records
as ``torch_utils.persistence`` records (a throwaway module object stands in for that global
while *writing*; the reader only ever sees its name).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from payload import Payload as _Payload
from safetensors.torch import load_file

from asgan_base.errors import UserError
from probes.core.contract import reduce_output
from probes.core.coupling import MinibatchStd
from probes.io.families import stylegan as S
from probes.io.safe_pickle import Stub, read_any

FIX = Path(__file__).parent / "fixtures" / "stylegan"
CASES = [("sg2ada_resnet32", None, "stylegan2-ada"), ("sg2ada_cond_skip32", 3, "stylegan2-ada"),
         ("sg2ada_cond_skip32", 7, "stylegan2-ada"), ("sg3_orig64", 3, "stylegan3"),
         ("sg3_orig64", 4, "stylegan3")]
DESC_KEYS = {"family", "format", "resolution", "channels", "conditional", "num_classes", "label",
             "pixel_range", "output", "coupling", "randomness", "upstream", "extra"}


def _io(name: str) -> dict[str, torch.Tensor]:
    return load_file(FIX / f"{name}.io.safetensors")


def _ref(t: dict, key: str, label: int | None) -> torch.Tensor:
    if label is None:
        return t[key]
    return t[key][t["labels"].tolist().index(label)]


def _close(y: torch.Tensor, ref: torch.Tensor) -> None:
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


# ----------------------------------------------------------------------------- upstream
@pytest.mark.parametrize("name,label,family", CASES)
def test_matches_upstream(name, label, family):
    t = _io(name)
    D, desc = S.read(FIX / f"{name}.pkl", label=label)
    assert desc["family"] == family and desc["label"] == label
    x = t["x"]
    with torch.no_grad():
        for key, n in (("y", 8), ("y4", 4), ("y2", 2)):
            y = D(x[:n])
            assert y.shape == (n, 1) and y.dtype == torch.float32
            _close(y, _ref(t, key, label))


def test_other_labels_change_the_logits():
    # the bound class really reaches the projection: labels 3 and 7 give different outputs
    t = _io("sg2ada_cond_skip32")
    ys = [S.read(FIX / "sg2ada_cond_skip32.pkl", label=k)[0](t["x"]) for k in (3, 7)]
    assert not torch.allclose(ys[0], ys[1])


def test_every_stored_constant_matters():
    """The fixtures exercise the clamp and the (perturbed) filters: replacing them by
    upstream's defaults moves the output, so the equality above depends on reading them."""
    t = _io("sg2ada_resnet32")
    D, _ = S.read(FIX / "sg2ada_resnet32.pkl")
    x = t["x"]
    with torch.no_grad():
        for m in D.modules():
            if isinstance(m, S.Conv):
                m.conv_clamp = None
        assert (D(x) - t["y"]).abs().max() > 1e-3
        D, _ = S.read(FIX / "sg2ada_resnet32.pkl")
        f = torch.tensor([1.0, 3.0, 3.0, 1.0])
        f = torch.outer(f, f) / 64
        for m in D.modules():
            if "resample_filter" in dict(m.named_buffers(recurse=False)):
                m.resample_filter.copy_(f)
        assert (D(x) - t["y"]).abs().max() > 1e-3


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name,label,family", CASES[:2] + CASES[3:4])
def test_desc_and_module_contract(name, label, family):
    D, desc = S.read(FIX / f"{name}.pkl", label=label)
    assert set(desc) == DESC_KEYS
    json.dumps(desc)
    assert desc["pixel_range"] == [-1.0, 1.0] and desc["randomness"] == "none"
    assert desc["output"]["shape"] == "(N, 1)" and desc["output"]["reduction"] == "squeeze"
    assert desc["conditional"] == (label is not None)
    assert desc["upstream"]["init_kwargs"]["img_resolution"] == desc["resolution"]
    assert not D.training and all(not p.requires_grad for p in D.parameters())
    assert all(p.dtype == torch.float32 for p in D.parameters())
    mb = [m for m in D.modules() if isinstance(m, MinibatchStd)]
    assert len(mb) == 1 and mb[0].group_size == 4
    assert desc["coupling"] == [{"kind": "minibatch-stddev", "group_size": 4,
                                 "num_channels": mb[0].num_channels}]
    # the placeholder is no upstream release, and is reported as not run
    assert desc["extra"]["module_src"].startswith("differs") and "not run" in \
        desc["extra"]["module_src"]
    t = _io(name)
    x = t["x"][:4]
    assert reduce_output(D(x), desc["output"]["reduction"]).shape == (4,)


def test_skip_and_cond_facts():
    _, desc = S.read(FIX / "sg2ada_cond_skip32.pkl", label=0)
    assert desc["coupling"][0]["num_channels"] == 2 and desc["num_classes"] == 10
    assert desc["extra"]["architecture"] == "skip" and desc["extra"]["cmap_dim"] == 16
    _, desc = S.read(FIX / "sg3_orig64.pkl", label=0)
    assert desc["channels"] == 1 and desc["resolution"] == 64
    assert desc["extra"]["fp16_resolutions"] == [64, 32, 16, 8]
    assert desc["upstream"]["class"] == "training.networks_stylegan2.Discriminator"


def test_minibatch_std_batch_groups_are_strided():
    """N = 8, G = 4: samples {0, 2, 4, 6} and {1, 3, 5, 7} share the group statistic (the
    upstream reshape(G, -1)); N = 4: all four share one group."""
    t = _io("sg2ada_resnet32")
    D, _ = S.read(FIX / "sg2ada_resnet32.pkl")
    x = t["x"]
    x2 = x.clone()
    x2[1] = -x2[1]
    with torch.no_grad():
        d = (D(x2) - D(x)).abs()[:, 0]
    assert torch.all(d[[0, 2, 4, 6]] == 0) and torch.all(d[[3, 5, 7]] > 0)
    with torch.no_grad():
        d4 = (D(x2[:4]) - D(x[:4])).abs()[:, 0]
    assert torch.all(d4[[0, 2, 3]] > 0)


def test_per_sample_reference_decouples():
    # the per-sample form of the class the coupling code sets: logit i depends on sample i only
    t = _io("sg2ada_resnet32")
    D, _ = S.read(FIX / "sg2ada_resnet32.pkl")
    mb = next(m for m in D.modules() if isinstance(m, MinibatchStd))
    mb.reference = torch.randn(3, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    x = t["x"]
    x2 = x.clone()
    x2[1] = -x2[1]
    with torch.no_grad():
        y, y2 = D(x), D(x2)
    assert torch.equal(y[[0, 2, 3, 4, 5, 6, 7]], y2[[0, 2, 3, 4, 5, 6, 7]])
    assert not torch.equal(y[1], y2[1])


# ----------------------------------------------------------------------------- labels
def test_label_rules():
    with pytest.raises(UserError) as e:
        S.read(FIX / "sg2ada_cond_skip32.pkl")
    assert "conditional" in _one_line(e) and "0..9" in str(e.value)
    with pytest.raises(UserError) as e:
        S.read(FIX / "sg2ada_resnet32.pkl", label=0)
    assert "unconditional" in _one_line(e)
    for bad in (10, -1):
        with pytest.raises(UserError) as e:
            S.read(FIX / "sg2ada_cond_skip32.pkl", label=bad)
        assert "out of range" in _one_line(e)
    with pytest.raises(UserError) as e:
        S.read(FIX / "sg3_orig64.pkl", label=True)
    _one_line(e)


# ----------------------------------------------------------------------------- crafted files
class _Persistent:
    """Pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


def _reconstruct_persistent_obj(meta):  # never called: only its name is pickled
    raise AssertionError("not for calling")


def _convert(obj, src: str | None):
    if isinstance(obj, Stub) and obj.global_name == S.STUBS[0]:
        meta = dict(obj.args[0])
        meta["state"] = _convert(meta["state"], src)
        if src is not None:
            meta["module_src"] = src
        return _Persistent(meta)
    if isinstance(obj, Stub):  # EasyDict: a plain dict does as well
        return {k: _convert(v, src) for k, v in obj.items.items()}
    if isinstance(obj, dict):
        return type(obj)((k, _convert(v, src)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert(v, src) for v in obj)
    return obj


def _dump(obj, path: Path) -> Path:
    """pickle ``obj`` with ``_reconstruct_persistent_obj`` named as upstream's global."""
    mod = types.ModuleType("torch_utils.persistence")
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    saved = _reconstruct_persistent_obj.__module__, _reconstruct_persistent_obj.__qualname__
    sys.modules["torch_utils"] = types.ModuleType("torch_utils")
    sys.modules["torch_utils.persistence"] = mod
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    try:
        path.write_bytes(pickle.dumps(obj, protocol=4))
    finally:
        _reconstruct_persistent_obj.__module__, _reconstruct_persistent_obj.__qualname__ = saved
        del sys.modules["torch_utils.persistence"], sys.modules["torch_utils"]
    return path


def _roundtrip(name: str, path: Path, *, src: str | None = None, edit=None) -> Path:
    top = read_any(FIX / f"{name}.pkl", stubs=S.STUBS)
    obj = _convert(top, src)
    if edit is not None:
        edit(obj)
    return _dump(obj, path)


def _conv1(obj):
    return obj["D"].meta["state"]["_modules"]["b32"].meta["state"]["_modules"]["conv1"].meta


def test_roundtrip_reads_the_same(tmp_path):
    p = _roundtrip("sg2ada_resnet32", tmp_path / "rt.pkl")
    D, desc = S.read(p)
    _close(D(_io("sg2ada_resnet32")["x"]), _io("sg2ada_resnet32")["y"])
    assert desc["family"] == "stylegan2-ada"


def test_embedded_source_is_never_run(tmp_path):
    marker = tmp_path / "SOURCE_RAN"
    src = (f"import os\nopen({str(marker)!r}, 'w').write('ran')\nos.system('touch {marker}')\n"
           "class Discriminator: pass\n")
    p = _roundtrip("sg2ada_cond_skip32", tmp_path / "src.pkl", src=src)
    assert S.sniff(p) == "stylegan2-ada"
    D, desc = S.read(p, label=3)
    t = _io("sg2ada_cond_skip32")
    _close(D(t["x"]), _ref(t, "y", 3))
    assert "not run" in desc["extra"]["module_src"] and desc["extra"]["module_src_sha256"]
    assert not marker.exists()


def test_known_source_is_named(tmp_path, monkeypatch):
    src = "# a stand-in for upstream's networks.py\n"
    import hashlib

    sha = hashlib.sha256(src.encode()).hexdigest()
    monkeypatch.setitem(S.KNOWN_SOURCES, sha, ("stylegan3", "NVlabs/stylegan3@test networks"))
    p = _roundtrip("sg2ada_resnet32", tmp_path / "known.pkl", src=src)
    _, desc = S.read(p)
    assert desc["extra"]["module_src"] == "matches NVlabs/stylegan3@test networks; not run"
    assert desc["family"] == "stylegan3" and desc["extra"]["module_src_sha256"] == sha


@pytest.mark.parametrize("where", ["top", "nested"])
def test_code_payload_is_refused(tmp_path, where):
    marker = tmp_path / "PAYLOAD_RAN"
    if where == "top":
        p = _dump({"D": _Payload(marker)}, tmp_path / "evil.pkl")
    else:  # hidden in a layer's hooks, inside an otherwise real snapshot
        p = _roundtrip("sg2ada_resnet32", tmp_path / "evil.pkl",
                       edit=lambda o: _conv1(o)["state"].__setitem__("_forward_hooks",
                                                                     {0: _Payload(marker)}))
    for call in (lambda: S.read(p), lambda: S.read(p, label=1)):
        with pytest.raises(UserError) as e:
            call()
        assert "posix.system" in _one_line(e) or "nt.system" in str(e.value)
    assert S.sniff(p) is None
    assert not marker.exists()


def test_weights_that_do_not_fit(tmp_path):
    def edit(o):
        st = _conv1(o)["state"]
        st["_parameters"]["weight"] = torch.zeros(16, 5, 3, 3)

    p = _roundtrip("sg2ada_resnet32", tmp_path / "bad.pkl", edit=edit)
    with pytest.raises(UserError) as e:
        S.read(p)
    assert "don't fit" in _one_line(e) and "conv1" in str(e.value)


def test_truncated_and_foreign_files(tmp_path):
    data = (FIX / "sg2ada_resnet32.pkl").read_bytes()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as e:
        S.read(cut)
    _one_line(e)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"D": {"weight": [1.0]}}))
    with pytest.raises(UserError) as e:
        S.read(plain)
    assert "persistence" in _one_line(e)
    no_d = _dump({"G": 1}, tmp_path / "nod.pkl")
    with pytest.raises(UserError) as e:
        S.read(no_d)
    assert "'D'" in _one_line(e)


def test_sniff(tmp_path):
    assert S.sniff(FIX / "sg2ada_resnet32.pkl") == "stylegan2-ada"
    assert S.sniff(FIX / "sg2ada_cond_skip32.pkl") == "stylegan2-ada"
    assert S.sniff(FIX / "sg3_orig64.pkl") == "stylegan3"
    files = {"garbage.pkl": os.urandom(2048), "empty.pkl": b"",
             "dict.pkl": pickle.dumps({"a": 1, "D": [1, 2]}), "head.pkl": b"\x80\x04garbage"}
    for n, b in files.items():
        (tmp_path / n).write_bytes(b)
        assert S.sniff(tmp_path / n) is None, n
    torch.save({"weight": torch.zeros(2)}, tmp_path / "sd.pt")
    assert S.sniff(tmp_path / "sd.pt") is None
    assert S.sniff(tmp_path / "missing.pkl") is None
    assert S.sniff(tmp_path) is None
    # a persistence snapshot whose D is some other network (e.g. R3GAN's) is not ours
    other = _Persistent({"type": "class", "version": 6, "module_src": "", "class_name":
                         "Discriminator", "state": {"_modules": {"Model": None}}})
    assert S.sniff(_dump({"D": other}, tmp_path / "other.pkl")) is None
    # truncated snapshot
    data = (FIX / "sg3_orig64.pkl").read_bytes()
    (tmp_path / "cut.pkl").write_bytes(data[:5000])
    assert S.sniff(tmp_path / "cut.pkl") is None


def test_damaged_files_give_one_line_or_load(tmp_path):
    """Seeded byte damage anywhere in a snapshot: a one-line UserError or a D that loads
    (e.g. a changed weight value); never another exception; sniff never raises."""
    data = bytearray((FIX / "sg2ada_cond_skip32.pkl").read_bytes())
    g = torch.Generator().manual_seed(0)
    p = tmp_path / "damaged.pkl"
    for _ in range(40):
        bad = bytearray(data)
        for pos in torch.randint(0, len(bad), (3,), generator=g).tolist():
            bad[pos] = int(torch.randint(0, 256, (1,), generator=g))
        p.write_bytes(bytes(bad))
        assert S.sniff(p) in (None, *S.NAMES)
        try:
            S.read(p, label=1)
        except UserError as e:
            assert str(e) and "\n" not in str(e)
