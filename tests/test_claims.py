"""The registered claims: the committed file validates, bad files fail in one line, the
registration rule is checked in a throwaway git repository, and the two claims tables."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from asgan_base.errors import UserError
from probes.study.claims import (
    CLAIMS_FILE,
    MAX_PRIMARY,
    claims_markdown,
    evaluate_claims,
    load_claims,
    registration,
)

STUDY_ARMS = {"baseline", "asgan-eps0.5", "asgan-eps1", "twice", "gaussian-eps0.5", "r1",
              "r1-twice", "sn", "first-order-eps0.5"}


def test_committed_claims_file_is_valid_and_registers_at_most_six_primary():
    c = load_claims()
    assert c["path"] == CLAIMS_FILE and CLAIMS_FILE.parent.name == "study"
    primary = [x for x in c["claims"] if x["kind"] == "primary"]
    assert 1 <= len(primary) <= MAX_PRIMARY
    # the primary claims compare the study's arms at the paper's default eps
    assert {x["a"] for x in primary} == {"asgan-eps0.5"}
    assert {x["b"] for x in primary} <= STUDY_ARMS
    assert STUDY_ARMS <= set(c["arms"])
    assert c["min_pairs_primary"] >= 7  # 2^-n <= 0.05 / 6 needs n >= 7


def _minimal() -> dict:
    return {"alpha": 0.05, "min_pairs_primary": 8,
            "arms": {"baseline": "plain", "asgan-eps0.5": "AS-GAN", "twice": "eps 0"},
            "metrics": {"mnist10k": {"fd": "Frechet distance", "hoyer_fake": "sparsity"}},
            "claims": [
                {"id": "P1", "kind": "primary", "group": "mnist10k", "metric": "fd",
                 "a": "asgan-eps0.5", "b": "baseline", "expect": "lower", "rationale": "r"},
                {"id": "P2", "kind": "primary", "group": "mnist10k", "metric": "hoyer_fake",
                 "a": "asgan-eps0.5", "b": "baseline", "expect": "higher", "rationale": "r"},
                {"id": "E1", "kind": "exploratory", "group": "mnist10k", "metric": "fd",
                 "a": "asgan-eps0.5", "b": "twice", "expect": "lower", "rationale": "r"}]}


def _write(tmp_path, body, name="claims.json"):
    p = tmp_path / name
    p.write_text(body if isinstance(body, str) else json.dumps(body, indent=1))
    return p


def _mutated(change):
    body = _minimal()
    change(body)
    return body


def _seven_primary(b):
    b["claims"] = [dict(b["claims"][0], id=f"P{i}") for i in range(MAX_PRIMARY + 1)]


@pytest.mark.parametrize("body,message", [
    ("{not json", "not JSON"),
    ("[]", "JSON object"),
    (_mutated(lambda b: b.pop("arms")), "needs 'arms'"),
    (_mutated(lambda b: b["claims"][0].pop("rationale")), r"P1.*rationale"),
    (_mutated(lambda b: b["claims"][0].update(colour="red")), "unknown key"),
    (_mutated(lambda b: b["claims"][1].update(id="P1")), "used twice"),
    (_mutated(lambda b: b["claims"][0].update(kind="main")), "kind must be"),
    (_mutated(lambda b: b["claims"][0].update(expect="better")), "expect must be"),
    (_mutated(lambda b: b["claims"][0].update(group="cifar10")), "group 'cifar10'"),
    (_mutated(lambda b: b["claims"][0].update(metric="fid")), "metric 'fid'"),
    (_mutated(lambda b: b["claims"][0].update(b="r1")), "arm 'r1'"),
    (_mutated(lambda b: b["claims"][0].update(b="asgan-eps0.5")), "with itself"),
    (_mutated(lambda b: b.update(alpha=1.5)), "alpha"),
    (_mutated(lambda b: b.update(min_pairs_primary=1)), "min_pairs_primary"),
    (_mutated(_seven_primary), "at most 6"),
], ids=["json", "not-object", "no-arms", "missing-key", "extra-key", "dup-id", "kind", "expect",
        "group", "metric", "arm", "self", "alpha", "min-pairs", "too-many-primary"])
def test_bad_claims_files_fail_in_one_line(tmp_path, body, message):
    with pytest.raises(UserError, match=message) as err:
        load_claims(_write(tmp_path, body))
    assert "\n" not in str(err.value) and "claims.json" in str(err.value)


def test_missing_claims_file(tmp_path):
    with pytest.raises(UserError, match="no such claims file"):
        load_claims(tmp_path / "nope.json")


# ---- registration, in a throwaway repository -------------------------------------------

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo, *args, date="2030-01-01T00:00:00Z"):
    env = dict(os.environ, GIT_COMMITTER_DATE=date, GIT_AUTHOR_DATE=date)
    out = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                          "-c", "commit.gpgsign=false", *args], capture_output=True, text=True,
                         env=env, check=True)
    return out.stdout.strip()


def _commit(repo, message, date="2030-01-01T00:00:00Z"):
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", message, date=date)
    return _git(repo, "rev-parse", "HEAD")


def _entry(commit, arm="baseline", **extra):
    return {"path": f"checkpoints/shipped/mnist10k/{arm}/seed0/ckpt.safetensors",
            "group": "mnist10k", "arm": arm, "seed": 0, "code_commit": commit, **extra}


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "study").mkdir(parents=True)
    _git(root, "init", "-q")
    (root / "code.py").write_text("x = 1\n")
    _commit(root, "code before the claims", "2030-01-01T00:00:00Z")
    claims = _write(root / "study", _minimal())
    registered = _commit(root, "register claims", "2030-01-02T00:00:00Z")
    (root / "code.py").write_text("x = 2\n")
    trained = _commit(root, "code that trains", "2030-01-03T00:00:00Z")
    return root, claims, registered, trained


@needs_git
def test_claims_registered_before_the_code_that_trained_are_primary(repo):
    root, claims, registered, trained = repo
    entries = [_entry(trained[:7]), _entry(registered, arm="asgan-eps0.5"),
               {"path": "checkpoints/shipped/classifier/cnn.safetensors"}]  # not judged
    r = registration(claims, entries)
    assert r["primary_allowed"] and r["reason"] == ""
    assert r["claims_commit"] == registered and r["checkpoints"] == 2
    assert r["code_commits"] == sorted([trained[:7], registered])
    assert r["code_dirty"] == {}
    # a recorded start time after the claims' commit is fine too
    ok = registration(claims, [_entry(trained, started_utc="2030-01-03T12:00:00Z")])
    assert ok["primary_allowed"]
    # a run started with uncommitted training code is named (disclosed), not refused
    dirty = registration(claims, [_entry(trained, code_dirty=["trainers/manifest.py"]),
                                  _entry(trained, arm="asgan-eps0.5")])
    assert dirty["primary_allowed"]
    assert dirty["code_dirty"] == {
        "checkpoints/shipped/mnist10k/baseline/seed0/ckpt.safetensors": ["trainers/manifest.py"]}


@needs_git
def test_claims_newer_than_the_checkpoints_are_refused(repo):
    root, claims, registered, trained = repo
    before = _git(root, "rev-list", "--max-parents=0", "HEAD")  # claims file not there yet
    r = registration(claims, [_entry(trained), _entry(before, arm="twice")])
    assert not r["primary_allowed"] and "did not exist" in r["reason"]
    # edited (and committed) after the checkpoints' code: refused, the new commit reported
    body = _minimal()
    body["claims"][0]["expect"] = "higher"
    _write(root / "study", body)
    edited = _commit(root, "change a claim after training", "2030-01-04T00:00:00Z")
    r = registration(claims, [_entry(trained)])
    assert not r["primary_allowed"] and "edited after" in r["reason"]
    assert r["claims_commit"] == edited
    # an edit reverted to the registered text is the registered text
    _write(root / "study", _minimal())
    _commit(root, "revert", "2030-01-05T00:00:00Z")
    assert registration(claims, [_entry(trained)])["primary_allowed"]
    # an uncommitted edit is not what was registered
    claims.write_text(claims.read_text().replace('"alpha": 0.05', '"alpha": 0.1'))
    r = registration(claims, [_entry(trained)])
    assert not r["primary_allowed"] and "differs" in r["reason"]


@needs_git
def test_registration_refuses_what_it_cannot_check(repo, tmp_path):
    root, claims, registered, trained = repo
    cases = [
        ([_entry("deadbeef")], "not in this repository"),
        ([_entry(None)], "no code_commit"),
        ([_entry(trained, started_utc="2030-01-01T12:00:00Z")], "committed after the run"),
        ([_entry(trained, started_utc="yesterday")], "not ISO 8601"),
        ([], "no checkpoint"),
    ]
    for entries, reason in cases:
        r = registration(claims, entries)
        assert not r["primary_allowed"] and reason in r["reason"], reason
    loose = _write(root / "study", _minimal(), name="uncommitted.json")
    r = registration(loose, [_entry(trained)])
    assert not r["primary_allowed"] and "not committed" in r["reason"]
    outside = _write(tmp_path, _minimal(), name="outside.json")  # tmp_path is no repo
    r = registration(outside, [_entry(trained)])
    assert r["claims_commit"] == "unknown" and not r["primary_allowed"]


def test_registration_without_git_says_unknown(tmp_path, monkeypatch):
    claims = _write(tmp_path, _minimal())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git executable on the path
    r = registration(claims, [_entry("abc1234")])
    assert r["claims_commit"] == "unknown" and not r["primary_allowed"]
    assert "git is not available" in r["reason"]


# ---- the tables ------------------------------------------------------------------------

ALLOWED = {"claims_commit": "c0ffee", "code_commits": ["abc1234"], "checkpoints": 24,
           "primary_allowed": True, "reason": ""}


def _tables(n_seeds=8, seed=0):
    """FD lower for AS-GAN by a clear margin; hoyer_fake identical across arms."""
    rng = np.random.default_rng(seed)
    base = rng.normal(40, 10, n_seeds)  # seed spread, shared by the paired arms
    arms = {"baseline": base, "asgan-eps0.5": base - 5 + rng.normal(0, 1, n_seeds),
            "twice": base + rng.normal(0, 1, n_seeds)}
    return {"mnist10k": {arm: {s: {"fd": float(v[s]), "hoyer_fake": 0.3}
                               for s in range(n_seeds)} for arm, v in arms.items()}}


def _claims(tmp_path, body=None):
    return load_claims(_write(tmp_path, _minimal() if body is None else body))


def test_evaluate_claims_verdicts_and_numbers(tmp_path):
    ev = evaluate_claims(_tables(), _claims(tmp_path), ALLOWED)
    p1, p2 = ev["primary"]
    assert p1["verdict"] == "held" and p1["n"] == 8 and p1["agree"] == 8
    assert p1["p"] == 1 / 256 and p1["p_holm"] == pytest.approx(2 / 256)
    assert p1["hi"] < 0 and p1["diff"] == pytest.approx(p1["mean_a"] - p1["mean_b"])
    assert p2["verdict"] == "inconclusive" and p2["zero_variance"]
    (e1,) = ev["exploratory"]
    assert "verdict" not in e1 and "p_holm" not in e1 and e1["n"] == 8


def test_claims_markdown_prints_what_a_metric_measures_beside_its_registered_rationale(
        tmp_path):
    """A registered rationale cannot be edited (issue 24 item 7: P2's says "the gradient G
    actually receives" of a frozen-mode, G-in-eval-mode number), so the precise wording goes
    beside it, for the primary claims on that metric only; the shipped study's note says
    what the study measures."""
    from probes.study.arms import MEASURED_AS

    claims = _claims(tmp_path)
    md = claims_markdown(_tables(), claims, ALLOWED, None, {"hoyer_fake": "per-sample, frozen"})
    assert "- **P2**: r *Measured*: per-sample, frozen\n" in md
    assert "- **P1**: r\n" in md and md.count("*Measured*") == 1
    assert "*Measured*" not in claims_markdown(_tables(), claims, ALLOWED)
    note = MEASURED_AS["hoyer_fake"]
    assert all(w in note for w in ("per-sample", "`frozen`", "G in eval mode", "`batch`"))


def test_claims_markdown_primary_table_first_then_exploratory(tmp_path):
    md = claims_markdown(_tables(), _claims(tmp_path), ALLOWED)
    primary_at = md.index("| id | group: metric (expected) | A vs B | n | mean A | mean B | "
                          "A - B [95% CI] | d_z | exact p | Holm p | verdict |")
    exploratory_at = md.index("| exact p | pairs agree |")
    assert primary_at < exploratory_at
    assert "**1 of 2 primary claims held**" in md and "`c0ffee`" in md and "`abc1234`" in md
    assert "| **held** |" in md and "**inconclusive** (zero variance)" in md
    explo = md[exploratory_at:].split("How to read")[0]
    assert "held" not in explo and "8/8" in explo
    assert "2^-n" in md and "Holm" in md
    assert "uncommitted" not in md
    dirty = dict(ALLOWED, code_dirty={
        "checkpoints/shipped/v2/mnist10k/baseline/seed4/ckpt-003500.safetensors":
            ["scripts/make_checkpoints.py", "trainers/manifest.py"]})
    md = claims_markdown(_tables(), _claims(tmp_path), dirty)
    assert ("1 of them started with uncommitted changes to the training code "
            "(`scripts/make_checkpoints.py`, `trainers/manifest.py`") in md
    assert "`mnist10k/baseline/seed4`" in md


def test_claims_markdown_refuses_verdicts_when_not_registered(tmp_path):
    refused = dict(ALLOWED, primary_allowed=False, reason="claims.json differs from the "
                   "version in its code commit abc1234")
    md = claims_markdown(_tables(), _claims(tmp_path), refused)
    assert "No claim is judged as primary" in md and "differs" in md
    assert "**held**" not in md and md.count("**not judged**") == 2


def test_unmeasured_claims_stay_in_the_family_and_few_seeds_are_flagged(tmp_path):
    body = copy.deepcopy(_minimal())
    body["claims"][1]["metric"] = "fd"
    body["claims"][1]["b"] = "twice"
    tables = _tables(n_seeds=5)
    del tables["mnist10k"]["twice"]
    claims = _claims(tmp_path, body)
    ev = evaluate_claims(tables, claims, ALLOWED)
    assert [r["verdict"] for r in ev["primary"]] == ["inconclusive", "not measured"]
    assert ev["primary"][0]["p_holm"] == pytest.approx(2 / 32)  # m = 2, floor 1/32
    md = claims_markdown(tables, claims, ALLOWED)
    assert "Too few seeds" in md and "P1 (5 pairs" in md and "not measured" in md


def test_verdicts_wait_for_every_planned_seed(tmp_path):
    """With 5 of 8 planned seeds trained, even a clear effect is not judged: the family is
    judged once, at the registered number of seeds (no optional stopping)."""
    claims, planned = _claims(tmp_path), {("mnist10k", a): range(8)
                                          for a in ("baseline", "asgan-eps0.5", "twice")}
    interim = evaluate_claims(_tables(n_seeds=5), claims, ALLOWED, planned)
    assert [r["verdict"] for r in interim["primary"]] == ["pending", "pending"]
    p1 = interim["primary"][0]
    assert (p1["n"], p1["n_planned"]) == (5, 8) and p1["p"] == 1 / 32 and p1["hi"] < 0
    md = claims_markdown(_tables(n_seeds=5), claims, ALLOWED, planned)
    assert "The primary verdicts are pending" in md and "P1 5 of 8" in md
    assert "| 5 of 8 |" in md and "**held**" not in md and "Too few seeds" not in md
    # the plan complete: the same claims are judged
    full = evaluate_claims(_tables(), claims, ALLOWED, planned)
    assert [r["verdict"] for r in full["primary"]] == ["held", "inconclusive"]
    assert full["primary"][0]["n_planned"] == 8
    # a plan that gives too few seeds is flagged at its own count, before any data comes
    few = {k: range(5) for k in planned}
    md = claims_markdown(_tables(n_seeds=3), claims, ALLOWED, few)
    assert "P1 (5 pairs: floor 0.0312" in md
