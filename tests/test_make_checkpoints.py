"""scripts/make_checkpoints.py: the study plan against the registered claims, and sittings
that train, ship and record runs resumably (real ``asgan-train`` runs on the smoke preset in a
temporary out root; the manifest written there is checked entry by entry)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shlex
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch

import trainers.manifest as manifest
from trainers import load_checkpoint, make_config
from trainers.checkpoint import export_snapshot, read_checkpoint, save_checkpoint
from trainers.data import sha256_file

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("make_checkpoints",
                                                  ROOT / "scripts" / "make_checkpoints.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


mc = _load_script()
CLAIMS = json.loads((ROOT / "probes" / "study" / "claims.json").read_text())


# ---- the plan


def _seeds(runs) -> dict[tuple[str, str], set[int]]:
    out: dict[tuple[str, str], set[int]] = {}
    for r in runs:
        out.setdefault((r.group, r.arm), set()).add(r.seed)
    return out


def test_plan_covers_every_claimed_arm_with_enough_paired_seeds():
    runs = mc.plan()
    seeds = _seeds(runs)
    assert len(set(runs)) == len(runs), "a run is planned twice"
    for c in CLAIMS["claims"]:
        for arm in (c["a"], c["b"]):
            have = seeds.get((c["group"], arm), set())
            need = CLAIMS["min_pairs_primary"] if c["kind"] == "primary" else 5
            need = max(need, 10) if c["group"] == "ring8" else need
            assert len(have) >= need, (c["id"], c["group"], arm, sorted(have))
            assert have == set(range(len(have))), "seeds 0..n-1, so arms pair by seed"
    assert {a for (g, a) in seeds if g == "grid25"} >= {
        "baseline", "twice", "asgan-eps0.25", "asgan-eps0.5", "asgan-eps1", "asgan-eps1.5"}
    assert all(arm in CLAIMS["arms"] for (_, arm) in seeds), "arm names as in claims.json"


def test_work_order_primary_first_and_the_droppable_arms_last():
    runs = mc.plan()
    primary = {(c["group"], arm) for c in CLAIMS["claims"] if c["kind"] == "primary"
               for arm in (c["a"], c["b"])}
    first = [(r.group, r.arm) in primary for r in runs]
    n_primary = sum(first)
    assert all(first[:n_primary]) and not any(first[n_primary:])
    # seed-major: the first runs are seed 0 of every primary arm, so pairs complete early
    assert {(r.group, r.arm) for r in runs[:len(primary)]} == primary
    assert {r.seed for r in runs[:len(primary)]} == {0}
    tail = {(r.group, r.arm) for r in runs if r.tier == runs[-1].tier}
    assert tail == {("mnist10k", "asgan-eps1"), ("mnist10k", "r1")}
    matched = [r.tier for r in runs if r.arm in ("r1-twice", "gaussian-eps0.5")]
    assert set(matched) == {"2-matched"}


def test_every_planned_command_is_a_valid_config_on_the_train_split():
    for r in mc.plan():
        cmd = mc.command(r)
        assert cmd[:2] == ["asgan-train", "--preset"] and "--out" in cmd
        cfg = mc.config(r)  # raises on any bad option
        assert cfg == make_config(cmd[2], {k[2:].replace("-", "_"): v for k, v in
                                          zip(cmd[3:cmd.index("--out")][::2],
                                              cmd[3:cmd.index("--out")][1::2])})
        assert cfg.split == "train" and cfg.seed == r.seed
        if r.group in ("ring8", "grid25") and cfg.trainer == "asgan":
            # mode-std units: the arm's number is the eps, and the L2 size of the largest
            # step stays inside the coverage metric's 3-std radius
            expect = 0.0 if r.arm == "twice" else float(r.arm.removeprefix("asgan-eps"))
            assert cfg.eps == pytest.approx(expect)
            assert cfg.eps * math.sqrt(2) < 3
        if r.group in ("mnist10k", "stacked-mnist") and "eps" in r.arm:
            assert cfg.eps == pytest.approx(float(re.search(r"eps([\d.]+)", r.arm)[1]) / 255)


def test_the_plan_is_estimated_and_sized(tmp_path):
    runs = mc.plan()
    base = next(r for r in runs if r.group == "mnist10k" and r.arm == "baseline" and r.seed)
    assert mc.est_seconds(base) == pytest.approx(mc.PILOT_WALL_S)
    twice = next(r for r in runs if r.arm == "r1-twice")
    assert mc.est_seconds(twice) == pytest.approx(2.9 * mc.PILOT_WALL_S)
    evo = next(r for r in runs if r.evolution)
    assert mc.shipped_steps(evo)[-1] == mc.steps_of(evo) and len(mc.shipped_steps(evo)) > 1
    assert mc.est_bytes(evo) == len(mc.shipped_steps(evo)) * mc.est_bytes(base)
    # the size model against a real float16 export of the same nets (untrained: same bytes)
    from trainers.data import load_dataset
    from trainers.loop import build_models

    for run in (base, next(r for r in runs if r.arm == "sn"),
                next(r for r in runs if r.group == "grid25")):
        cfg = mc.config(run)
        ds = load_dataset(cfg.data, resolution=cfg.resolution, n=256)
        G, D, _, _, g_spec, d_spec = build_models(cfg, ds, torch.device("cpu"))
        raw = save_checkpoint(tmp_path / "raw.safetensors", G=G, D=D,
                              meta={"g_spec": g_spec, "d_spec": d_spec, "step": 0,
                                    "config": cfg.to_dict()})
        half = export_snapshot(raw, tmp_path / "half.safetensors", half=True)
        header = 8 + int.from_bytes(half.read_bytes()[:8], "little")
        assert mc.est_bytes(run, header=0) == half.stat().st_size - header, run


# ---- sittings on the smoke preset


@pytest.fixture
def out_root(tmp_path, monkeypatch):
    """An out root in tmp that the manifest functions treat as the repository root."""
    monkeypatch.setattr(manifest, "ROOT", tmp_path)
    monkeypatch.setattr(manifest, "_chosen", None)
    monkeypatch.delenv(manifest.ENV, raising=False)
    monkeypatch.setattr(mc, "EVOLUTION", {("tiny", "baseline", 0)})
    monkeypatch.setattr(mc, "EVOLUTION_EVERY", 10)
    (tmp_path / "checkpoints").mkdir()
    return tmp_path


def _groups(steps: int) -> dict:
    return {"tiny": {"preset": "smoke", "arms": mc.ARMS,
                     "common": {"steps": str(steps), "split": "train", "snapshot-every": "10",
                                "keep-snapshots": "1", "sample-every": "0",
                                "tensorboard": "false"}}}


def _runs(arms=("baseline", "asgan-eps0.5")):
    return mc.plan(tiers=[("1-primary", [("tiny", arms, 1)])], dropped={})


def _manifest(root: Path) -> dict:
    return manifest.read_manifest(root / "checkpoints" / "MANIFEST.json")


def test_a_sitting_ships_and_records_each_run_then_skips_it(out_root):
    groups, runs = _groups(20), _runs()
    v1 = _v1_copy(out_root, save_checkpoint(out_root / "x.safetensors", **_tiny_nets()))
    res = mc.sitting(runs, root=out_root, jobs=2, nice=0, groups=groups, poll_s=0.2,
                     say=lambda m: None)
    assert sorted(res["shipped"]) == sorted(r.name for r in runs) and not res["failed"]
    entries = _manifest(out_root)
    # v2's baseline and main arm have seed 0: the study reads "tiny" from v2, and the sitting
    # retired the v1 group's files and entries (dead weight against the size cap)
    assert not v1.exists() and v1.relative_to(out_root).as_posix() not in entries
    assert manifest.verify(out_root / "checkpoints" / "MANIFEST.json") == []
    for r in runs:
        rels = mc.ship_rels(r, groups)
        assert len(rels) == (2 if r.arm == "baseline" else 1)  # evolution: steps 10 and 20
        for rel in rels:
            e = entries[rel]
            assert e["command"] == shlex.join(mc.command(r, groups))
            assert (e["seed"], e["group"], e["arm"], e["study"]) == (0, "tiny", r.arm, "v2")
            assert e["sha256"] == sha256_file(out_root / rel)
            assert re.fullmatch(r"[0-9a-f]{40}", e["code_commit"])
            started = datetime.fromisoformat(e["started_utc"].replace("Z", "+00:00"))
            assert started <= datetime.fromisoformat(e["shipped_utc"].replace("Z", "+00:00"))
            assert e["stored_dtype"] == "float16" and e["resumed"] == []
            G, D, meta = load_checkpoint(out_root / rel)
            assert meta["step"] == e["steps"] and "opt_G" not in meta
            assert {p.dtype for p in [*G.parameters(), *D.parameters()]} == {torch.float32}
        assert entries[rels[-1]]["steps"] == 20
    plan_rel = f"{mc.SHIP}/PLAN.json"
    assert plan_rel in entries
    progress = manifest.study_progress("tiny", "v2", entries)
    assert progress and all(p["planned"] == p["shipped"] for p in progress.values())
    # a second sitting trains nothing
    before = {rel: (out_root / rel).stat().st_mtime_ns for rel in entries}
    again = mc.sitting(runs, root=out_root, groups=groups, poll_s=0.2, say=lambda m: None)
    assert sorted(again["skipped"]) == sorted(r.name for r in runs) and not again["shipped"]
    assert {rel: (out_root / rel).stat().st_mtime_ns for rel in entries
            if rel != plan_rel} == {k: v for k, v in before.items() if k != plan_rel}
    # a shipped file that no longer matches its entry is shipped again (from the raw run)
    damaged = out_root / mc.ship_rels(runs[1], groups)[-1]
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    third = mc.sitting(runs, root=out_root, groups=groups, poll_s=0.2, say=lambda m: None)
    assert third["shipped"] == [runs[1].name] and third["skipped"] == [runs[0].name]
    assert manifest.verify(out_root / "checkpoints" / "MANIFEST.json") == []
    # retiring again finds nothing to do, and v2's files and entries stay
    assert mc.retire_v1(out_root, say=lambda m: None) == []
    assert set(_manifest(out_root)) == set(entries)
    assert manifest.verify(out_root / "checkpoints" / "MANIFEST.json") == []


def _v1_copy(root: Path, src: Path) -> Path:
    """A first-study entry of group "tiny" (no study field), a copy of ``src``."""
    v1 = root / "checkpoints" / "shipped" / "tiny" / "baseline" / "seed0" / src.name
    v1.parent.mkdir(parents=True)
    v1.write_bytes(src.read_bytes())
    manifest.record(v1, command="asgan-train ...", path=root / "checkpoints" / "MANIFEST.json",
                    group="tiny", arm="baseline", seed=0, steps=20)
    return v1


def test_a_sitting_past_its_deadline_starts_nothing(out_root):
    runs = _runs()
    res = mc.sitting(runs, root=out_root, groups=_groups(20), max_minutes=1e-9,
                     say=lambda m: None)
    assert sorted(res["not_started"]) == sorted(r.name for r in runs)
    assert [rel for rel in _manifest(out_root)] == [f"{mc.SHIP}/PLAN.json"]
    assert not (out_root / mc.RAW / "tiny").exists()
    # nothing of v2 shipped: the v1 group stays
    src = save_checkpoint(out_root / "x.safetensors", **_tiny_nets())
    v1 = _v1_copy(out_root, src)
    assert mc.retire_v1(out_root, say=lambda m: None) == [] and v1.exists()


def _tiny_nets() -> dict:
    from trainers.nets import build_net, net_specs

    g_spec, d_spec = net_specs("mlp", shape=(2,), z_dim=2, width=4)
    return {"G": build_net(g_spec), "D": build_net(d_spec),
            "meta": {"g_spec": g_spec, "d_spec": d_spec, "step": 20}}


def test_an_interrupted_run_resumes_and_keeps_its_start_facts(out_root, monkeypatch):
    groups, runs = _groups(400), _runs(("asgan-eps0.5",))
    (run,) = runs
    # HEAD moves between the start and the resume: the entry must name the start's commit
    head = ["a" * 40]
    monkeypatch.setattr(mc, "code_state", lambda: {"code_commit": head[0], "code_dirty": []})
    res = mc.sitting(runs, root=out_root, groups=groups, nice=0, poll_s=0.1,
                     should_stop=lambda: mc.raw_step(out_root, run) >= 10, say=lambda m: None)
    assert res["interrupted"] == [run.name] and not res["shipped"]
    step = mc.raw_step(out_root, run)
    assert 10 <= step < 400, "SIGTERM makes the trainer snapshot its current step"
    started = json.loads((out_root / mc.RAW / run.name / "started.json").read_text())
    assert list(_manifest(out_root)) == [f"{mc.SHIP}/PLAN.json"]
    head[0] = "b" * 40
    done = mc.sitting(runs, root=out_root, groups=groups, nice=0, poll_s=0.2,
                      say=lambda m: None)
    assert done["shipped"] == [run.name]
    e = _manifest(out_root)[mc.ship_rels(run, groups)[-1]]
    assert (e["started_utc"], e["code_commit"]) == (started["started_utc"], "a" * 40)
    assert [(r["from_step"], r["code_commit"]) for r in e["resumed"]] == [(step, "b" * 40)]
    _, meta = read_checkpoint(out_root / mc.ship_rels(run, groups)[-1])
    assert meta["step"] == 400


def test_code_state_names_each_uncommitted_training_file_whole(tmp_path, monkeypatch):
    # " M path" (modified, not staged) starts with a blank: the first path listed lost its
    # first letter when the porcelain output was stripped as a whole
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "scripts").mkdir()
    (tmp_path / "trainers").mkdir()
    for f in ("scripts/make_checkpoints.py", "trainers/manifest.py", "notes.txt"):
        (tmp_path / f).write_text("a\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    monkeypatch.setattr(mc, "CODE_ROOT", tmp_path)
    assert mc.code_state()["code_dirty"] == []
    for f in ("scripts/make_checkpoints.py", "trainers/manifest.py", "notes.txt"):
        (tmp_path / f).write_text("b\n")
    (tmp_path / "trainers" / "new.py").write_text("c\n")
    state = mc.code_state()
    assert state["code_dirty"] == ["scripts/make_checkpoints.py", "trainers/manifest.py",
                                   "trainers/new.py"]
    assert re.fullmatch(r"[0-9a-f]{40}", state["code_commit"])
