"""asgan-study end to end on a user's two-arm plan (studies/example.toml: 3 seeds, tiny nets,
20 iterations): register, run (real asgan-train runs through the local launcher, shipped with
manifest entries), report; resumption of an interrupted run; registration refusals; the claims
table's statistics against probes.core.stats on the registered seed list."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

import asgan_base.manifest as manifest
from asgan_base.errors import UserError
from probes.core.stats import paired, primary_verdicts
from probes.study import engine
from probes.study.cli import main
from trainers.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "studies" / "example.toml"


@pytest.fixture
def study(tmp_path):
    """The example plan copied into an empty folder (its own manifest, raw and ship)."""
    shutil.copy(EXAMPLE, tmp_path / "plan.toml")
    return tmp_path / "plan.toml"


@pytest.mark.slow
def test_register_run_report_end_to_end(study, capsys):
    root = study.parent
    assert main(["register", str(study)]) == 0
    reg = json.loads((root / "checkpoints/shipped/example/REGISTRATION.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{40}", reg["code_commit"])
    assert main(["run", str(study), "--jobs", "2", "--nice", "0"]) == 0
    plan = engine.load(study)
    entries = manifest.read_manifest(plan.manifest)
    assert manifest.verify(plan.manifest) == []
    for r in plan.runs():
        (rel,) = engine.ship_rels(plan, r)
        e = entries[rel]
        assert e["command"] == shlex.join(plan.command(r))
        assert (e["study"], e["group"], e["arm"], e["seed"], e["steps"]) == (
            "example", "ring8", r.arm, r.seed, 20)
        assert e["claims_sha256"] == reg["claims_sha256"]["*"]
        assert e["started_utc"] >= reg["registered_utc"] and e["resumed"] == []
        assert read_checkpoint(root / rel)[1]["stored_dtype"] == "float16"
    # once a run started, the claims cannot be registered (again) nor changed
    with pytest.raises(UserError, match="already registered"):
        engine.register(plan)
    capsys.readouterr()
    assert main(["run", str(study)]) == 0  # nothing left to train
    assert '"skipped": 6' in capsys.readouterr().out
    assert main(["report", str(study), "--out", str(root / "rep"), "--n-mixture", "500"]) == 0
    md = (root / "rep" / "report.md").read_text()
    ev = json.loads((root / "rep" / "claims.json").read_text())
    assert ev["registration"]["primary_allowed"], ev["registration"]
    (p1,) = ev["primary"]
    assert p1["n"] == p1["n_planned"] == 3 and p1["verdict"] in ("held", "inconclusive",
                                                                 "opposite")
    assert "| P1 | ring8: high_quality_pct (higher) | asgan vs baseline | 3 of 3 |" in md
    assert "Exploratory claims" in md and "| E1 |" in md
    # a claim edited after registration: the plan refuses to load, naming the line
    text = study.read_text()
    study.write_text(text.replace('expect = "higher"', 'expect = "lower"', 1))
    capsys.readouterr()
    assert main(["report", str(study), "--out", str(root / "rep2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "claim P1 changed after the claims were registered" in err and "\n" not in err
    line = int(err.split(f"{study}:")[1].split(":")[0])
    assert 'id = "P1"' in study.read_text().splitlines()[line - 1]
    assert not (root / "rep2").exists()


def test_register_refuses_once_a_run_started(study):
    plan = engine.load(study)
    run = plan.runs()[0]
    raw = plan.root / plan.raw_dir(run)
    raw.mkdir(parents=True)
    (raw / "started.json").write_text("{}")
    with pytest.raises(UserError, match=r"1 run\(s\) of the plan have started"):
        engine.register(plan)
    assert not engine.registration_file(plan).exists()


def test_the_claims_table_is_the_stats_on_the_registered_seeds(study):
    """Synthetic measurements with a fourth, unregistered seed: the report judges each claim
    on exactly its registered seeds, with the exact sign-flip test and Holm."""
    plan = engine.load(study)
    tables = {"ring8": {
        "baseline": {s: {"high_quality_pct": v, "modes": m} for s, v, m in
                     ((0, 10.0, 3), (1, 20.0, 4), (2, 15.0, 5), (3, 99.0, 8))},
        "asgan": {s: {"high_quality_pct": v, "modes": m} for s, v, m in
                  ((0, 12.0, 4), (1, 25.0, 4), (2, 16.5, 7), (3, 0.0, 0))}}}
    _, ev = engine.report_markdown(plan, tables)
    (p1,) = ev["primary"]
    a = {s: tables["ring8"]["asgan"][s]["high_quality_pct"] for s in range(3)}
    b = {s: tables["ring8"]["baseline"][s]["high_quality_pct"] for s in range(3)}
    d = paired(a, b)
    (v,) = primary_verdicts([list(d["diffs"].values())], ["higher"], alpha=0.05)
    assert (p1["n"], p1["diff"], p1["p"], p1["p_holm"]) == (3, d["mean"], d["p_greater"],
                                                            v["p_holm"])
    assert p1["p"] == pytest.approx(1 / 8)  # all 3 pairs positive: the exact floor 2^-3
    assert p1["verdict"] == "not judged"  # not registered
    assert ev["exploratory"][0]["agree"] == 2  # modes: +1, 0, +2 over seeds 0..2 only


def test_an_interrupted_run_resumes_and_keeps_its_start_facts(study):
    # one AS-GAN run of 400 iterations, the claims left out (none needed to train)
    text = study.read_text().replace('steps = "20"', 'steps = "400"').replace(
        'arms = ["baseline", "asgan"], seeds = 3', 'arms = ["asgan"], seeds = 1')
    study.write_text(text.split("[claims]")[0] + '[dropped]\n"ring8/baseline" = "test"\n')
    plan = engine.load(study)
    (run,) = plan.runs()
    res = engine.sitting(plan, options={"jobs": 1, "nice": 0},
                         should_stop=lambda: engine.raw_step(plan, run) >= 10,
                         say=lambda m: None)
    assert res["interrupted"] == [run.name] and not res["shipped"]
    step = engine.raw_step(plan, run)
    assert 10 <= step < 400, "SIGTERM makes the trainer snapshot its current step"
    started_file = plan.root / plan.raw_dir(run) / "started.json"
    started = json.loads(started_file.read_text())
    head = started["code_commit"]
    # as if the run had started at another commit: the entry must name the start's
    started_file.write_text(json.dumps(dict(started, code_commit="a" * 40)))
    done = engine.sitting(plan, options={"jobs": 1, "nice": 0}, say=lambda m: None)
    assert done["shipped"] == [run.name]
    e = manifest.read_manifest(plan.manifest)[engine.ship_rels(plan, run)[-1]]
    assert (e["started_utc"], e["code_commit"]) == (started["started_utc"], "a" * 40)
    assert [(r["from_step"], r["code_commit"]) for r in e["resumed"]] == [(step, head)]
    assert read_checkpoint(plan.root / engine.ship_rels(plan, run)[-1])[1]["step"] == 400


def test_a_sitting_past_its_deadline_starts_nothing(study):
    plan = engine.load(study)
    res = engine.sitting(plan, max_minutes=1e-9, say=lambda m: None)
    assert sorted(res["not_started"]) == sorted(r.name for r in plan.runs())
    assert list(manifest.read_manifest(plan.manifest)) == [f"{plan.ship}/PLAN.json"]
    assert not (plan.root / plan.raw / "ring8").exists()


def test_code_state_names_each_uncommitted_training_file_whole(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    for d in ("probes/study", "trainers"):
        (tmp_path / d).mkdir(parents=True)
    for f in ("probes/study/engine.py", "trainers/manifest.py", "notes.txt"):
        (tmp_path / f).write_text("a\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    monkeypatch.setattr(engine, "CODE_ROOT", tmp_path)
    assert engine.code_state()["code_dirty"] == []
    for f in ("probes/study/engine.py", "trainers/manifest.py", "notes.txt"):
        (tmp_path / f).write_text("b\n")
    (tmp_path / "trainers" / "new.py").write_text("c\n")
    state = engine.code_state()
    assert state["code_dirty"] == ["probes/study/engine.py", "trainers/manifest.py",
                                   "trainers/new.py"]
    assert re.fullmatch(r"[0-9a-f]{40}", state["code_commit"])


def test_start_facts_record_the_machine_a_run_trains_on(tmp_path):
    # CPU weights are bit-reproducible only on the same kernels: torch and its vector ISA
    import torch

    from probes.study.task import start_facts

    args, started = start_facts(tmp_path / "raw", ["asgan-train", "--preset", "smoke"], "")
    m = started["machine"]
    assert args == ["--preset", "smoke"] and m["torch"] == torch.__version__
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and m["cpu_model"]


@pytest.mark.parametrize("argv", [["bogus"], ["plan"], ["run", "x.toml", "--jobs", "two"]])
def test_a_bad_asgan_study_command_line_is_one_line(argv, capsys):
    # the same one-line parser as asgan-train and asgan-probe (asgan_base.errors.OneLineParser)
    from probes.study.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "asgan-study" in err, err
