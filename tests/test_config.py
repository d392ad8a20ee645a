"""Config: presets, overrides, validation, and every field reaching the code."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from asgan_base.errors import UserError
from tests.conftest import run_cli
from trainers.cli import main as cli_main
from trainers.config import PRESETS, TrainConfig, config_fields, make_config, parse_eps

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text,value", [("1/255", 1 / 255), ("0.5/255", 0.5 / 255),
                                        ("0", 0.0), ("0.01", 0.01), (2 / 255, 2 / 255)],
                         ids=["frac", "half-frac", "zero", "decimal", "float"])
def test_parse_eps(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["-1/255", "2", "abc", "1/0", "nan"],
                         ids=["negative", "above-one", "word", "div-zero", "nan"])
def test_parse_eps_rejects(text):
    with pytest.raises(UserError) as e:
        parse_eps(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid(name):
    cfg = make_config(name)
    assert isinstance(cfg, TrainConfig)


def test_paper_preset_uses_half_grey_level():
    # the authors applied 1/255 in [-1, 1] space: 0.5/255 in our pixel units (SPEC 1)
    cfg = make_config("paper-cifar10")
    assert cfg.eps == pytest.approx(0.5 / 255) and cfg.trainer == "asgan"
    assert cfg.eps_epoch_off == 300 and cfg.second_step == "real"


def test_defaults_match_the_dcgan_recipe():
    cfg = TrainConfig()
    assert (cfg.lr_g, cfg.lr_d, cfg.beta1) == (2e-4, 2e-4, 0.5)


@pytest.mark.parametrize("overrides", [{"nope": 1}, {"steps": 0}, {"steps": -3},
                                       {"eps": "-1"}, {"trainer": "wgan"},
                                       {"second_step": "fake"}, {"batch_size": "x"},
                                       {"beta1": 1.5}],
                         ids=["unknown-key", "zero-steps", "neg-steps", "neg-eps",
                              "bad-trainer", "bad-second-step", "non-int", "bad-beta"])
def test_bad_overrides_are_user_errors(overrides):
    with pytest.raises(UserError):
        make_config("smoke", overrides)


@pytest.mark.parametrize("over", [
    {"trainer": "asgan", "perturbation": "first-order"},
    {"trainer": "asgan", "perturbation": "none", "r1_gamma": "10"},
], ids=["first-order", "r1-twice"])
def test_study_arms_resolve_in_a_dry_run(over, capsys):
    argv = ["--preset", "mnist10k-dcgan", "--dry-run"]
    argv += [a for k, v in over.items() for a in ("--" + k.replace("_", "-"), v)]
    code, out, err = run_cli(cli_main, argv, capsys)
    assert code == 0, err
    cfg = json.loads(out)
    assert all(str(cfg[k]) == str(make_config(None, {k: v}).to_dict()[k])
               for k, v in over.items())


def test_first_order_with_an_eval_mode_attack_is_a_one_line_error(capsys):
    argv = ["--preset", "smoke", "--trainer", "asgan", "--perturbation", "first-order",
            "--attack-mode", "eval", "--dry-run"]
    code, _, err = run_cli(cli_main, argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "first-order" in err


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().steps = 3


def test_every_field_is_read_in_trainers():
    source = "\n".join(p.read_text() for p in (ROOT / "trainers").glob("*.py")
                       if p.name != "config.py")
    unread = [f for f in config_fields() if not re.search(rf"cfg\.{f}\b", source)]
    assert unread == [], f"config fields never read by the trainers: {unread}"
