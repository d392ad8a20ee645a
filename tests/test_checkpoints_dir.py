"""Finding the shipped checkpoints from anywhere: ``--checkpoints DIR``, then
``$ASGAN_PROBE_CHECKPOINTS``, then ``checkpoints/`` beside the packages (a checkout), through the
one function ``asgan_base.manifest.checkpoints_dir``; an installed wheel carries none, so the error
says where it looked and what to pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import asgan_base.manifest as manifest
from asgan_base.errors import UserError
from probes.adapters import classifier as C
from probes.cli import main
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def _nothing_chosen(monkeypatch):
    """No --checkpoints choice or environment variable leaks in (or out: monkeypatch restores)."""
    monkeypatch.setattr(manifest, "_chosen", None)
    monkeypatch.delenv(manifest.ENV, raising=False)


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A checkpoints folder outside the checkout (not named ``checkpoints``) holding the
    classifier and a manifest listing only it, as a user's copy of a clone's folder would."""
    folder = tmp_path / "my-copy"
    dest = manifest.locate(C.SHIPPED, folder)
    dest.parent.mkdir(parents=True)
    shutil.copyfile(manifest.locate(C.SHIPPED, manifest.ROOT / "checkpoints"), dest)
    entry = manifest.read_manifest(manifest.MANIFEST)[C.SHIPPED]
    (folder / "MANIFEST.json").write_text(json.dumps({"files": [entry]}))
    return folder


def test_a_checkout_finds_its_own_folder():
    assert manifest.checkpoints_dir() == manifest.ROOT / "checkpoints"
    assert manifest.shipped(C.SHIPPED) == manifest.ROOT / C.SHIPPED


def test_the_environment_variable_points_elsewhere_and_is_still_verified(elsewhere,
                                                                         monkeypatch):
    monkeypatch.setenv(manifest.ENV, str(elsewhere))
    assert manifest.checkpoints_dir() == elsewhere.resolve()
    net, meta = C.load_classifier()
    assert Path(meta["file"]).is_relative_to(elsewhere.resolve())
    assert C.classifier_summary(meta)["file"] == C.SHIPPED  # provenance names the shipped file
    assert manifest.verify() == []
    dest = manifest.locate(C.SHIPPED)
    dest.write_bytes(dest.read_bytes()[:-1] + bytes([dest.read_bytes()[-1] ^ 1]))
    with pytest.raises(UserError, match="differs"):
        C.load_classifier()
    assert len(manifest.verify()) == 1


def test_an_explicit_choice_wins_and_a_wrong_one_is_not_passed_over(elsewhere, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv(manifest.ENV, str(tmp_path / "nowhere"))
    with pytest.raises(UserError) as e:
        manifest.checkpoints_dir()  # no fall-back to the checkout
    assert "$ASGAN_PROBE_CHECKPOINTS" in str(e.value) and "nowhere" in str(e.value)
    assert manifest.use_checkpoints_dir(elsewhere) == elsewhere.resolve()
    assert manifest.checkpoints_dir() == elsewhere.resolve()  # --checkpoints over the variable
    with pytest.raises(UserError, match="--checkpoints .*no MANIFEST.json"):
        manifest.use_checkpoints_dir(tmp_path)


def test_without_a_checkout_the_error_says_where_it_looked_and_what_to_pass(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(manifest, "ROOT", tmp_path)  # what an installed wheel sees
    with pytest.raises(UserError) as e:
        C.load_classifier()
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "checkpoints") in msg
    assert "--checkpoints DIR" in msg and manifest.ENV in msg


def test_cli_report_and_checkpoints_option(elsewhere, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(manifest, "ROOT", tmp_path / "site-packages")
    code, _, err = run_cli(main, ["report", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and "--checkpoints DIR" in err, err
    code, _, err = run_cli(main, ["report", "--out", str(tmp_path / "r"),
                                  "--checkpoints", str(tmp_path / "empty")], capsys)
    assert code == 2 and err.count("\n") == 1 and "no MANIFEST.json" in err, err
    # a folder that holds the classifier but no study: found, then the study's plan is missing
    # (the report is the shipped plan's; a clone keeps studies/ beside checkpoints/)
    code, _, err = run_cli(main, ["report", "--out", str(tmp_path / "r"),
                                  "--checkpoints", str(elsewhere)], capsys)
    assert code == 2 and err.count("\n") == 1 and "studies/SHIPPED: missing" in err, err
    assert manifest.checkpoints_dir() == elsewhere.resolve()


def test_studies_shipped_names_every_shipped_study_in_order(tmp_path, monkeypatch):
    """The first plan is the main report's; each later one gets its own folder."""
    from probes.study.arms import shipped_plan, shipped_plans

    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "MANIFEST.json").write_text('{"files": []}\n')
    (tmp_path / "studies").mkdir()
    for name in ("one", "two"):
        text = (manifest.ROOT / "studies" / "example.toml").read_text()
        (tmp_path / "studies" / f"{name}.toml").write_text(
            text.replace('name = "example"', f'name = "{name}"', 1))
    (tmp_path / "studies" / "SHIPPED").write_text("# the shipped studies\ntwo.toml\none.toml\n")
    monkeypatch.setenv(manifest.ENV, str(ckpt))
    assert [p.name for p in shipped_plans()] == ["two", "one"]
    assert shipped_plan().name == "two" and shipped_plan().root == tmp_path.resolve()
