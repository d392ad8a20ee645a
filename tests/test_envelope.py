"""One JSON envelope per ``asgan-probe`` verb, the same from Python (issue 24 item 6).

Each verb's CLI and the Python function in ``probes.measures.<verb>`` called with the same
arguments give the identical JSON object (apart from :data:`probes.measures.envelope.VARYING`,
which is empty: nothing in a record varies between identical calls); every record starts with
the common keys built in :func:`probes.measures.envelope.envelope`; and every CLI default
equals the default of the measure it feeds (no literal repeated in ``probes/cli``).
Small n, shipped checkpoints, CPU: seconds per verb.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from probes.cli import build_parser, main
from probes.io.outputs import write_json
from probes.measures import envelope as env

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "shipped" / "v2"
MNIST = SHIPPED / "mnist10k" / "asgan-eps0.5" / "seed0" / "ckpt-003500.safetensors"
RING = SHIPPED / "ring8" / "baseline" / "seed0" / "ckpt-005000.safetensors"
COMMON = ("tool", "version", "verb", "inputs", "options", "seed", "units", "probe_contract")


def _attack():
    from probes.measures.attack import attack

    return (["attack", MNIST, "--n", 6, "--eps", "0,2/255", "--method", "fgsm,bim",
             "--steps", 2, "--no-progress"],
            lambda: attack([str(MNIST)], n=6, eps=[0, 2 / 255], methods=["fgsm", "bim"],
                           steps=2))


def _gradients():
    from probes.measures.gradients import gradients

    return (["gradients", MNIST, "--n", 6, "--boot", 20],
            lambda: gradients([str(MNIST)], n=6, boot=20)[0])


def _saliency(tmp):
    from probes.measures.saliency import saliency

    png = str(tmp / "sal.png")
    return (["saliency", MNIST, "--n", 2, "--out", png],
            lambda: saliency(str(MNIST), n=2, figure=png)[0], "--json")


def _coverage():
    from probes.measures.coverage import coverage

    return (["coverage", RING, "--n", 200], lambda: coverage([str(RING)], n=200)[0])


def _quality():
    from probes.measures.quality import quality

    return (["quality", RING, "--n", 100, "--kid-subsets", 2, "--kid-subset-size", 50],
            lambda: quality([str(RING)], n=100, kid_subsets=2, kid_subset_size=50))


def _evolution():
    from probes.measures.evolution import evolution_record, evolutions

    run = str(MNIST.parent)
    return (["evolution", run, "--n", 4, "--boot", 10, "--no-structure"],
            lambda: evolution_record(evolutions([run], n=4, n_boot=10, with_structure=False),
                                     n=4, n_boot=10, with_structure=False))


def _fidelity():
    from probes.measures.fidelity import fidelity_sweep

    return (["fidelity", RING, "--n", 20, "--n-kde", 200, "--bandwidth", 0.1],
            lambda: fidelity_sweep([str(RING)], n=20, n_kde=200, bandwidth=0.1))


def _info():
    from probes.measures.info import info

    return (["info", MNIST], lambda: info(str(MNIST)))


CASES = {"attack": _attack, "gradients": _gradients, "saliency": _saliency,
         "coverage": _coverage, "quality": _quality, "evolution": _evolution,
         "fidelity": _fidelity, "info": _info}


def test_every_json_verb_has_a_case():
    from probes.cli import VERBS

    assert set(VERBS) - {"report"} == set(CASES)  # report writes markdown, not a JSON record


@pytest.mark.parametrize("verb", sorted(CASES))
def test_cli_json_equals_the_python_function(verb, tmp_path, capsys):
    case = CASES[verb]
    argv, call, *flag = case(tmp_path) if verb == "saliency" else case()
    cli_out = tmp_path / "cli.json"
    assert main([str(a) for a in argv] + [flag[0] if flag else "--out", str(cli_out)]) == 0
    capsys.readouterr()
    write_json(call(), str(tmp_path / "py.json"))  # the same writer, so the same JSON text
    cli = json.loads(cli_out.read_text())
    py = json.loads((tmp_path / "py.json").read_text())
    assert env.strip_varying(cli) == env.strip_varying(py)
    assert list(cli)[:len(COMMON)] == list(COMMON)  # the envelope first, in one order
    assert cli["tool"] == "asgan-probe" and cli["verb"] == verb and cli["inputs"]
    assert (cli["probe_contract"] is None) == (verb in ("coverage", "quality", "info"))


def test_a_changed_option_changes_the_record(tmp_path):
    """The comparison above can fail: another seed is another record, and says so."""
    from probes.measures.coverage import coverage

    a, b = coverage([str(RING)], n=50)[0], coverage([str(RING)], n=50, seed=1)[0]
    assert a["seed"] == 0 and b["seed"] == 1 and a["results"] != b["results"]
    assert env.strip_varying(a) != env.strip_varying(b)


def test_options_are_recorded_as_given_and_plain():
    rec = env.envelope("attack", inputs=[Path("a.safetensors")], seed=3, units={"eps": "px"},
                       options={"eps": (0, 0.5), "root": Path("/d"), "kw": {"s": (1,)},
                                "seed": 3})
    assert rec["inputs"] == ["a.safetensors"] and rec["seed"] == 3
    assert rec["options"] == {"eps": [0, 0.5], "root": "/d", "kw": {"s": [1]}}  # seed: own key
    assert json.loads(json.dumps(rec)) == rec  # JSON as it is
    assert rec["units"]["eps"] == "px" and "logit" in rec["units"]
    assert env.VARYING == () and env.strip_varying({"a": [{"b": 1}]}) == {"a": [{"b": 1}]}


# ------------------------------------------------------------------ CLI defaults = measures
def _measure_defaults() -> dict[str, tuple]:
    """verb -> (the function its CLI calls, the minimal argv, {cli dest: parameter name}
    where the two names differ; None: a same-named option that means another thing)."""
    from probes.measures import (
        attack,
        coverage,
        evolution,
        fidelity,
        gradients,
        info,
        quality,
        saliency,
    )
    from probes.study.report import write_study_report

    return {"attack": (attack.attack, ["x"], {}),
            "gradients": (gradients.gradients, ["x"], {"hist": None}),  # a PNG path
            "saliency": (saliency.saliency, ["x", "--out", "y"], {}),
            "coverage": (coverage.coverage, ["x"], {}),
            "quality": (quality.quality, ["x"], {}),
            "evolution": (evolution.evolution, ["x"], {"boot": "n_boot"}),
            "fidelity": (fidelity.fidelity_sweep, ["x"], {"per_sample": "keep"}),
            "info": (info.info, ["x"], {}),
            "report": (write_study_report, ["--out", "y"], {"runs": None})}


# options whose CLI default is a rule the CLI applies before the call (device "auto" ->
# resolved), or that no measure takes (figures, output files)
CLI_ONLY = {"device", "out", "checkpoints_dir", "verb"}
MIN_COMPARED = {"attack": 15, "gradients": 15, "saliency": 12, "coverage": 3, "quality": 8,
                "evolution": 6, "fidelity": 5, "info": 3, "report": 3}


@pytest.mark.parametrize("verb", sorted(_measure_defaults()))
def test_cli_defaults_are_the_measures(verb):
    fn, argv, rename = _measure_defaults()[verb]
    args = vars(build_parser().parse_args([verb, *argv]))
    params = inspect.signature(fn).parameters
    compared = 0
    for dest, value in args.items():
        name = rename.get(dest, dest)
        if dest in CLI_ONLY or name is None or name not in params:
            continue
        default = params[name].default
        assert default is not inspect.Parameter.empty, (verb, dest)
        assert env.plain(value) == env.plain(default), \
            f"{verb} --{dest}: CLI {value!r}, {fn.__name__} {default!r}"
        compared += 1
    assert compared >= MIN_COMPARED[verb], (verb, compared)  # the check reached the options


def test_figure_only_defaults_come_from_the_measures():
    from probes.measures import attack, gradients

    args = vars(build_parser().parse_args(["gradients", "x"]))
    assert args["n_maps"] == gradients.N_MAPS
    args = vars(build_parser().parse_args(["attack", "x"]))
    assert args["eps"] is None and attack.DEFAULT_EPS[0] == 0  # None: each unit's grid
