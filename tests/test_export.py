"""trainers.checkpoint.export_snapshot: the shipped copy of a snapshot (no optimizer state,
optionally float16 weights) loads back as float32 nets that compute what the stored weights
say, and the loader refuses what it cannot read."""

from __future__ import annotations

import json

import pytest
import torch

from asgan_base.errors import UserError
from trainers import load_checkpoint, make_config, save_checkpoint
from trainers.checkpoint import (
    HALF_MIN_NUMEL,
    export_snapshot,
    optimizer_states,
    read_checkpoint,
    tensor_digest,
)
from trainers.data import load_dataset
from trainers.loop import build_models


@pytest.fixture
def snapshot(tmp_path):
    """A resumable snapshot (optimizer state included) of a small DCGAN pair after 3 Adam
    steps, so the optimizer state is not empty."""
    cfg = make_config("smoke", {"width": 8})
    ds = load_dataset(cfg.data, resolution=cfg.resolution, n=64)
    torch.manual_seed(0)
    G, D, opt_G, opt_D, g_spec, d_spec = build_models(cfg, ds, torch.device("cpu"))
    for _ in range(3):
        for net, opt in ((G, opt_G), (D, opt_D)):
            opt.zero_grad()
            out = net(torch.randn(4, cfg.z_dim)) if net is G else net(ds.get(torch.arange(4)))
            out.square().mean().backward()
            opt.step()
    meta = {"g_spec": g_spec, "d_spec": d_spec, "step": 3, "config": cfg.to_dict(),
            "pixel_range": list(ds.pixel_range)}
    return save_checkpoint(tmp_path / "ckpt-000003.safetensors", G=G, D=D, meta=meta,
                           opt_G=opt_G, opt_D=opt_D), cfg


def test_half_export_stores_big_weights_as_float16_and_loads_as_float32(snapshot, tmp_path):
    src, cfg = snapshot
    G0, D0, _ = load_checkpoint(src)
    out = export_snapshot(src, tmp_path / "half.safetensors", half=True, facts={"why": "test"})
    tensors, meta = read_checkpoint(out)  # its own checksum holds (over the float16 tensors)
    assert meta["stored_dtype"] == "float16" and meta["why"] == "test" and meta["step"] == 3
    assert not any(k.startswith("opt_") for k in tensors) and "opt_G" not in meta
    with pytest.raises(UserError, match="no optimizer state"):
        optimizer_states(tensors, meta, out)  # shipped copies cannot be resumed
    ref, _ = read_checkpoint(src)
    for name, t in tensors.items():
        big = ref[name].dtype == torch.float32 and ref[name].numel() >= HALF_MIN_NUMEL
        assert t.dtype == (torch.float16 if big else ref[name].dtype), name
        assert torch.equal(t.to(ref[name].dtype), ref[name].half().to(ref[name].dtype)
                           if big else ref[name])
    assert any(t.dtype == torch.float16 for t in tensors.values())
    assert out.stat().st_size < 0.6 * export_snapshot(src, tmp_path / "f32.safetensors"
                                                      ).stat().st_size
    G, D, meta = load_checkpoint(out)
    assert {p.dtype for p in [*G.parameters(), *D.parameters()]} == {torch.float32}
    z = torch.randn(16, cfg.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x0, x = G0(z), G(z)
        assert x.dtype == torch.float32
        assert 0 < (x - x0).abs().max() < 1e-2  # rounded, not equal: the stored weights run
        assert (D(x0) - D0(x0)).abs().max() < 1e-2 * D0(x0).abs().max().clamp(min=1)


def test_float32_export_is_the_same_nets_without_the_optimizer(snapshot, tmp_path):
    src, _ = snapshot
    out = export_snapshot(src, tmp_path / "f32.safetensors")
    tensors, meta = read_checkpoint(out)
    ref, _ = read_checkpoint(src)
    assert meta["stored_dtype"] == "float32"
    assert tensors.keys() == {k for k in ref if k[:2] in ("G.", "D.")}
    assert all(torch.equal(tensors[k], ref[k]) for k in tensors)


def _rewrite_meta(path, **changes):
    from safetensors.torch import save

    tensors, meta = read_checkpoint(path)
    meta.update(changes)
    meta["sha256"] = tensor_digest(tensors)
    path.write_bytes(save(tensors, metadata={"asgan_probe": json.dumps(meta)}))


def test_the_loader_refuses_float16_it_was_not_told_about(snapshot, tmp_path):
    src, _ = snapshot
    out = export_snapshot(src, tmp_path / "half.safetensors", half=True)
    _rewrite_meta(out, stored_dtype="float32")  # float16 tensors, meta says float32
    with pytest.raises(UserError, match="do not fit"):
        load_checkpoint(out)
    _rewrite_meta(out, stored_dtype="int4")
    with pytest.raises(UserError, match="stored_dtype"):
        load_checkpoint(out)
