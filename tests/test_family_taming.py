"""probes.io.families.taming: taming-transformers / latent-diffusion PatchGAN files.

Fixtures (tests/fixtures/taming/README.md) were written by the upstream code and a real
pytorch-lightning Trainer: our rebuilt D must give upstream's eval-mode patch map to 1e-5.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from payload import Payload as _Payload
from safetensors.torch import load_file

from asgan_base.errors import UserError
from probes.core.contract import Reduced
from probes.io.families import taming
from probes.io.safe_pickle import scan_globals

FIX = Path(__file__).parent / "fixtures" / "taming"
IO = load_file(FIX / "io.safetensors")
ROOT = Path(__file__).resolve().parents[1]
CASES = [("bn.ckpt", "bn"), ("actnorm.ckpt", "actnorm"), ("bn_state_dict.pt", "bn")]


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("name,key", CASES)
def test_matches_upstream(name, key):
    D, desc = taming.read(FIX / name)
    x, y_up = IO[f"x_{key}"], IO[f"y_{key}"]
    with torch.no_grad():
        y = D(x)
    assert y.shape == y_up.shape and y.dtype == torch.float32
    torch.testing.assert_close(y, y_up, rtol=1e-5, atol=1e-5 * y_up.abs().max().item())
    assert not D.training and not any(p.requires_grad for p in D.parameters())
    # the declared reduction: mean over positions -> (N,), sample i from row i only
    r = Reduced(D, desc["output"]["reduction"])
    with torch.no_grad():
        torch.testing.assert_close(r(x), y_up.flatten(1).mean(1), rtol=1e-5, atol=1e-6)


def test_desc_facts():
    _, bn = taming.read(FIX / "bn.ckpt")
    _, an = taming.read(FIX / "actnorm.ckpt")
    for d in (bn, an):
        assert d["family"] == "taming-patchgan" and d["pixel_range"] == [-1.0, 1.0]
        assert d["output"]["reduction"] == "mean" and d["output"]["shape"] == "(N, 1, h, w)"
        assert d["conditional"] is False and d["num_classes"] is None and d["channels"] == 3
        assert d["randomness"] == "none" and d["extra"]["container"] == "lightning-ckpt"
        assert d["extra"]["prefix"] == "loss.discriminator."
        assert d["extra"]["global_step"] == 6
    assert bn["coupling"] == [{"kind": "batchnorm", "layers": 2}]
    assert an["coupling"] == []
    assert bn["upstream"]["init_kwargs"] == {"input_nc": 3, "ndf": 8, "n_layers": 2,
                                             "use_actnorm": False}
    assert an["upstream"]["init_kwargs"] == {"input_nc": 3, "ndf": 4, "n_layers": 3,
                                             "use_actnorm": True}
    assert an["extra"]["actnorm_initialized"] == [True, True, True]
    assert bn["extra"]["lightning_version"] == "2.6.6"
    # the map side formula agrees with the net, and min_side is the smallest that works
    D, _ = taming.read(FIX / "actnorm.ckpt")
    for side in (24, 32, 41):
        with torch.no_grad():
            assert D(torch.zeros(1, 3, side, side)).shape[-1] == taming.map_side(side, 3)
    assert an["extra"]["min_side"] == 24 and taming.map_side(23, 3) < 1


def test_fixtures_are_off_init():
    D, _ = taming.read(FIX / "bn.ckpt")
    bn = [m for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all((m.running_var - 1).abs().max() > 0.1 and m.running_mean.abs().max() > 0.05
               for m in bn)
    D, _ = taming.read(FIX / "actnorm.ckpt")
    acts = [m for m in D.modules() if isinstance(m, taming.ActNorm)]
    assert len(acts) == 3 and all((m.scale - 1).abs().max() > 0.1 for m in acts)


def test_actnorm_is_never_reinitialised():
    D, _ = taming.read(FIX / "actnorm.ckpt")
    before = {k: v.clone() for k, v in D.state_dict().items()}
    D.train()
    D(IO["x_actnorm"])
    assert all(torch.equal(before[k], v) for k, v in D.state_dict().items())


def test_sniff(tmp_path):
    for name, _ in CASES:
        assert taming.sniff(FIX / name) == "taming-patchgan"
    garbage = tmp_path / "g.ckpt"
    garbage.write_bytes(os.urandom(512))
    empty = tmp_path / "e.ckpt"
    empty.write_bytes(b"")
    other_zip = tmp_path / "z.ckpt"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("a/data.pkl", b"not a pickle main.0.bias")
    # a DCGAN netD (pytorch/examples layout: main.* but no bias on main.0)
    dcgan = tmp_path / "dcgan.pth"
    torch.save({"main.0.weight": torch.zeros(8, 3, 4, 4), "main.2.weight": torch.zeros(16, 8, 4, 4),
                "main.3.weight": torch.ones(16), "main.3.bias": torch.zeros(16),
                "main.3.running_mean": torch.zeros(16), "main.3.running_var": torch.ones(16),
                "main.5.weight": torch.zeros(1, 16, 4, 4)}, dcgan)
    basicsr = tmp_path / "net_d.pth"
    torch.save({"params": {"conv0.weight": torch.zeros(8, 3, 3, 3),
                           "conv0.bias": torch.zeros(8)}}, basicsr)
    for p in (garbage, empty, other_zip, dcgan, basicsr, tmp_path / "missing.ckpt", tmp_path):
        assert taming.sniff(p) is None


def test_label_refused():
    with pytest.raises(UserError) as e:
        taming.read(FIX / "bn.ckpt", label=0)
    assert "unconditional" in _one_line(e)


def test_code_payload_refused(tmp_path):
    marker = tmp_path / "PWNED"
    sd = torch.load(FIX / "bn_state_dict.pt", weights_only=True)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {f"loss.discriminator.{k}": v for k, v in sd.items()},
                "global_step": 1, "callbacks": {"x": _Payload(marker)}}, evil)
    assert f"{os.system.__module__}.system" in scan_globals(evil)
    with pytest.raises(UserError) as e:
        taming.read(evil)
    assert f"{os.system.__module__}.system" in _one_line(e)
    assert not marker.exists()


def test_lightning_objects_never_imported():
    """The fixtures name Lightning / omegaconf globals; reading them imports none of those
    modules (an import hook records even attempts, so this holds with Lightning installed
    or not)."""
    assert "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" in scan_globals(
        FIX / "actnorm.ckpt")
    assert "omegaconf.dictconfig.DictConfig" in scan_globals(FIX / "bn.ckpt")
    code = (
        "import sys\n"
        "tried = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pytorch_lightning', 'lightning', 'lightning_fabric',"
        " 'omegaconf'):\n"
        "            tried.append(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "from probes.io.families import taming\n"
        f"for f in ('bn.ckpt', 'actnorm.ckpt'):\n"
        f"    taming.read({str(FIX)!r} + '/' + f)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning',"
        " 'lightning_fabric', 'omegaconf')]\n"
        "print('TRIED', tried, 'LOADED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TRIED [] LOADED []" in out.stdout


def test_bad_files(tmp_path):
    whole = (FIX / "bn.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole[: len(whole) // 2])
    sd = torch.load(FIX / "bn_state_dict.pt", weights_only=True)
    wrong = tmp_path / "wrong.pt"
    torch.save({**sd, "main.2.weight": sd["main.2.weight"][:, :4]}, wrong)
    missing = tmp_path / "missing.pt"
    torch.save({k: v for k, v in sd.items() if k != "main.3.running_var"}, missing)
    legacy = tmp_path / "legacy.pt"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    for p, words in ((cut, ""), (wrong, "shape"), (missing, "do not fit"), (legacy, "legacy"),
                     (tmp_path / "nope.ckpt", "no such file")):
        with pytest.raises(UserError) as e:
            taming.read(p)
        assert words in _one_line(e)
