"""Integrity of shipped checkpoints: checkpoints/MANIFEST.json against the files on disk.

Every entry's file exists with the recorded size and SHA-256; every checkpoint under
checkpoints/shipped/ is listed; every listed asgan-probe snapshot loads (its own tensor
checksum checked). A tampered, truncated or missing copy is detected, by the manifest and
by the snapshot's own checksum.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import asgan_base.manifest as manifest
from asgan_base.errors import UserError
from trainers import load_checkpoint, save_checkpoint
from trainers.nets import build_net, net_specs

SHIPPED = manifest.ROOT / "checkpoints" / "shipped"


def _entries() -> dict[str, dict]:
    return manifest.read_manifest()


def test_manifest_entries_match_the_files():
    assert manifest.verify() == []
    for rel, entry in _entries().items():
        assert {"path", "sha256", "bytes", "command"} <= entry.keys(), rel
        assert len(entry["sha256"]) == 64 and entry["bytes"] > 0 and entry["command"].strip()


def test_every_shipped_checkpoint_is_in_the_manifest():
    listed = set(_entries())
    on_disk = {p.relative_to(manifest.ROOT).as_posix() for p in SHIPPED.rglob("*.safetensors")
               if p.is_file()} if SHIPPED.is_dir() else set()
    assert sorted(on_disk - listed) == [], "shipped checkpoints missing from MANIFEST.json"


def _is_snapshot(path: Path) -> bool:
    """An asgan-probe snapshot (safetensors carrying our metadata), not another shipped file."""
    from safetensors import safe_open

    if path.suffix != ".safetensors":
        return False
    with safe_open(str(path), framework="pt") as f:
        return "asgan_probe" in (f.metadata() or {})


# safetensors entries only: results files, plans and logs are checked by manifest.verify, and
# one skip line each would bury the summary (a study ships hundreds)
@pytest.mark.parametrize("rel", sorted(r for r in _entries() if r.endswith(".safetensors"))
                         or [None], ids=str)
def test_listed_snapshots_load_and_pass_their_checksum(rel):
    if rel is None:
        pytest.skip("the manifest lists no files yet")
    path = manifest.ROOT / rel
    if not _is_snapshot(path):
        pytest.skip(f"{rel} is not an asgan-probe snapshot")
    _, D, meta = load_checkpoint(path)
    assert meta["sha256"] and sum(p.numel() for p in D.parameters()) > 0


@pytest.fixture
def fake_repo(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A repo root in tmp with one recorded snapshot; the module's ROOT points at it."""
    monkeypatch.setattr(manifest, "ROOT", tmp_path)
    g_spec, d_spec = net_specs("mlp", shape=(2,), z_dim=2, width=4)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "checkpoints" / "shipped" / "a.safetensors",
                           G=build_net(g_spec), D=build_net(d_spec),
                           meta={"g_spec": g_spec, "d_spec": d_spec, "step": 3})
    man = tmp_path / "checkpoints" / "MANIFEST.json"
    manifest.record(ckpt, command="asgan-train --preset test", path=man, seed=0)
    return ckpt, man


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # same size: only the hash can tell
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tamper,word", [
    (_flip_last_byte, "contents differ"),
    (lambda p: p.write_bytes(p.read_bytes()[:-16]), "contents differ"),
    (lambda p: p.unlink(), "missing"),
], ids=["same-size-bit-flip", "truncated", "deleted"])
def test_tampered_copy_is_detected(fake_repo, tamper, word):
    ckpt, man = fake_repo
    assert manifest.verify(man) == []
    entry = json.loads(man.read_text())["files"][0]
    assert entry["path"] == "checkpoints/shipped/a.safetensors" and entry["seed"] == 0
    tamper(ckpt)
    problems = manifest.verify(man)
    assert len(problems) == 1 and word in problems[0]
    if ckpt.exists():  # the snapshot's own checksum (or parser) refuses it as well
        with pytest.raises(UserError):
            load_checkpoint(ckpt)


def test_shipped_refuses_a_tampered_file(fake_repo, monkeypatch):
    ckpt, man = fake_repo
    real = manifest.read_manifest  # shipped() reads the default manifest: point it at ours
    monkeypatch.setattr(manifest, "read_manifest", lambda path=man: real(path))
    assert manifest.shipped("checkpoints/shipped/a.safetensors") == ckpt
    _flip_last_byte(ckpt)
    with pytest.raises(UserError, match="differs"):
        manifest.shipped("checkpoints/shipped/a.safetensors")
    with pytest.raises(UserError, match="not in"):
        manifest.shipped("checkpoints/shipped/other.safetensors")
