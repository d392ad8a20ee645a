"""Checkpoints: round trip, atomic writes, and clear errors for bad or hostile files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from payload import Payload as _Payload

from asgan_base.errors import UserError
from trainers.checkpoint import list_snapshots, load_checkpoint, read_checkpoint, save_checkpoint
from trainers.nets import build_net, net_specs


def _nets():
    g_spec, d_spec = net_specs("dcgan", shape=(1, 28, 28), z_dim=8, width=4)
    torch.manual_seed(0)
    return build_net(g_spec), build_net(d_spec), g_spec, d_spec


@pytest.fixture
def ckpt(tmp_path) -> Path:
    G, D, g_spec, d_spec = _nets()
    meta = {"g_spec": g_spec, "d_spec": d_spec, "step": 7, "config": {"data": "mnist10k"},
            "pixel_range": [-1.0, 1.0]}
    return save_checkpoint(tmp_path / "ckpt-000007.safetensors", G=G, D=D, meta=meta)


def test_round_trip_gives_identical_nets(ckpt):
    G0, D0, _, _ = _nets()
    G, D, meta = load_checkpoint(ckpt)
    assert meta["step"] == 7 and meta["pixel_range"] == [-1.0, 1.0]
    z = torch.randn(3, 8)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    G0.eval(), D0.eval()
    assert torch.equal(G(z), G0(z)) and torch.equal(D(x), D0(x))
    assert D(x).shape == (3,)


def test_no_temp_files_left(ckpt):
    assert [p.name for p in ckpt.parent.iterdir()] == [ckpt.name]
    assert list_snapshots(ckpt.parent) == [ckpt]


def _corrupt(path: Path, how: str) -> Path:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "bitflip":
        data[-100] ^= 0xFF  # inside a tensor: the checksum must catch it
    elif how == "header-size":
        data[:8] = (10**15).to_bytes(8, "little")
    elif how == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how", ["truncated", "bitflip", "header-size", "empty"])
def test_corrupt_files_give_one_line_errors(ckpt, how):
    with pytest.raises(UserError) as e:
        load_checkpoint(_corrupt(ckpt, how))
    assert "\n" not in str(e.value) and str(ckpt) in str(e.value)


@pytest.mark.parametrize("content,word", [
    (b"hello, I am a text file\n", "not an asgan-probe checkpoint"),
    (None, "torch.save"),
], ids=["text", "torch-save"])
def test_foreign_files_are_named(tmp_path, content, word):
    path = tmp_path / "x.safetensors"
    if content is None:
        torch.save({"w": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=word):
        load_checkpoint(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_pickle_payload_is_never_executed(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UserError):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(UserError, match="folder"):
        load_checkpoint(tmp_path)


def test_meta_checksum_covers_tensors(ckpt):
    tensors, meta = read_checkpoint(ckpt)
    assert len(meta["sha256"]) == 64 and any(k.startswith("D.") for k in tensors)


def test_unwritable_target_is_a_user_error_and_keeps_the_old_file(tmp_path, ckpt):
    G, D, g_spec, d_spec = _nets()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(UserError, match="cannot write"):
        save_checkpoint(blocker / "c.safetensors", G=G, D=D,
                        meta={"g_spec": g_spec, "d_spec": d_spec, "step": 0})
    load_checkpoint(ckpt)  # the earlier snapshot is untouched


def test_header_length_with_a_pickle_like_first_byte_is_still_read(tmp_path):
    """Regression: a safetensors header of 128 + 256k bytes starts with 0x80, a pickle's first
    byte; such (perfectly valid) snapshots, about 1 in 256, used to be refused."""
    G, D, g_spec, d_spec = _nets()
    for pad in range(300):
        path = save_checkpoint(tmp_path / "c.safetensors", G=G, D=D,
                               meta={"g_spec": g_spec, "d_spec": d_spec, "step": 1,
                                     "note": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert load_checkpoint(path)[2]["note"] == "x" * pad


def test_a_spec_asking_for_a_huge_net_is_refused_before_allocating(tmp_path):
    """An attacker re-signs a file whose spec says width 2**20 (a 10**13-parameter net): the
    reader compares against a meta-device build and refuses without allocating."""
    import json

    from safetensors.torch import save

    from trainers.checkpoint import tensor_digest

    G, D, g_spec, d_spec = _nets()
    path = save_checkpoint(tmp_path / "c.safetensors", G=G, D=D,
                           meta={"g_spec": g_spec, "d_spec": d_spec, "step": 1})
    tensors, meta = read_checkpoint(path)
    for width, word in ((2**20, "more than its"), (16, "do not fit")):
        meta["d_spec"]["kwargs"]["width"] = width
        meta["sha256"] = tensor_digest(tensors)
        path.write_bytes(save(tensors, metadata={"asgan_probe": json.dumps(meta)}))
        with pytest.raises(UserError, match=word):
            load_checkpoint(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    fifo = tmp_path / "ckpt.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        load_checkpoint(fifo)
