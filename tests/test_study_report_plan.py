"""The shipped report read from its plan file (studies/SHIPPED -> the plan) is the report the
code before it gave, number for number: on a subset of the shipped checkpoints, today's
``asgan-probe report`` path against the values stored by the report code at commit 88dcbe2
(tests/fixtures/study-report/README.md says how): every per-checkpoint number, every claim's
numbers and verdict, the report's whole text, and the checkpoints and labels each figure is
drawn from. Figures themselves are drawn in tests/test_study.py (slow); here each figure
function records its inputs, as it did when the fixture was made.

And the claims are judged on exactly the seeds the plan registers for them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "study-report" / "old-report.json"


def _rel(p) -> str:
    s = Path(p).resolve().as_posix()
    return s[s.index("checkpoints/"):] if "checkpoints/" in s else Path(p).name


def _recorders(mp, calls: list) -> None:
    """Every figure function of the report replaced by one that appends its inputs to
    ``calls`` (the same records the fixture's script made)."""
    import probes.measures.evolution as evo
    import probes.viz.gradients as vg
    import probes.viz.runs as vr
    import probes.viz.study as vs
    from probes.study import report

    def pairs(ps):
        return [[label, _rel(p)] for label, p in ps]

    mp.setattr(report, "fig_gradient_maps", lambda ps, out, population="real", **k:
               calls.append(["fig_gradient_maps", pairs(ps), Path(out).name, population]))
    mp.setattr(report, "fig_histograms", lambda ps, a, b, **k: calls.append(
        ["fig_histograms", pairs(ps), Path(a).name, Path(b).name]))
    mp.setattr(report, "fig_attack", lambda ps, out, **k: calls.append(
        ["fig_attack", pairs(ps), Path(out).name]))
    mp.setattr(report, "fig_coverage", lambda ps, out, **k: calls.append(
        ["fig_coverage", pairs(ps), Path(out).name]))
    mp.setattr(report, "fig_samples", lambda ps, out, **k: calls.append(
        ["fig_samples", pairs(ps), Path(out).name]))
    mp.setattr(evo, "evolutions", lambda dirs, **k: calls.append(
        ["evolutions", [_rel(d) for d in dirs]]) or [])
    mp.setattr(vg, "plot_evolution", lambda e, out: calls.append(
        ["plot_evolution", Path(out).name]))
    mp.setattr(vr, "read_run", _rel)
    mp.setattr(vr, "plot_curves", lambda runs, out: calls.append(
        ["plot_curves", runs, Path(out).name]))
    # each panel: its table's arms and the unit its eps axis is in, as the fixture recorded
    mp.setattr(vs, "plot_eps_sweep", lambda panels, out, title=None, baseline=None,
               ablation=(): calls.append(["plot_eps_sweep", [
                   [m, lab, sorted(t), *{u for _, u in eps.values()}]
                   for m, lab, t, eps in panels], Path(out).name, title]))
    mp.setattr(vs, "plot_arms", lambda t, metrics, out, order=None: calls.append(
        ["plot_arms", [list(m) for m in metrics], Path(out).name,
         [a for a in (order or sorted(t)) if a in t]]))


@pytest.fixture(scope="module")
def old() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def new(old, tmp_path_factory) -> dict:
    from probes.study.arms import shipped_plan
    from probes.study.report import write_study_report

    plan = shipped_plan()
    runs = [r for r in plan.runs() if r.seed in old["subset"].get(r.group, {}).get(r.arm, [])]
    out = tmp_path_factory.mktemp("report")
    calls: list = []
    with pytest.MonkeyPatch.context() as mp:
        _recorders(mp, calls)
        md = write_study_report(out, plan=plan, n_quality=old["n_quality"],
                                n_stacked=old["n_stacked"], n_mixture=old["n_mixture"],
                                seed=old["seed"], runs=runs)
    # as the old report stored them: through JSON (seeds as text, NaN as NaN)
    stored = json.loads((out / "study.json").read_text())
    return dict(stored, report_md=md.read_text(), figures=calls, out=out, runs=runs)


# The fixture was measured on an AMD EPYC (AVX2); on another CPU the float32 kernels sum in
# another order, so a measured number moves by round-off (up to 9e-5 relative on an Intel
# AVX512: SSIM of a gradient map) and a claim's interval bound near zero by 1e-5 absolute.
# A change of code moves them by far more.
REL, ABS = 1e-3, 1e-4


def _same(a, b) -> bool:
    """Equal plain values, floats to round-off (``REL``, ``ABS``), NaN equal to NaN; text,
    integers and booleans (verdicts, counts, p-value ranks) exactly."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL,
                                                                 abs_tol=ABS)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _keys_in_order(x):
    """The nesting of dicts' keys in their order (the values left out)."""
    if isinstance(x, dict):
        return [[k, _keys_in_order(v)] for k, v in x.items()]
    return [_keys_in_order(v) for v in x] if isinstance(x, list) else None


# a number standing alone (not a digit inside a word or a hex digest, which compare as text)
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")


def _same_text(new: str, old: str) -> bool:
    """The same text with every number as printed equal to round-off: integers exactly, a
    decimal within one unit of its last printed digit plus ``REL`` / ``ABS`` (the report
    prints 3 significant digits, so round-off can flip the last one)."""
    if NUMBER.split(new) != NUMBER.split(old):
        return False
    for a, b in zip(NUMBER.findall(new), NUMBER.findall(old)):
        if "." not in b and "e" not in b:
            if a != b:
                return False
            continue
        mant = b.split("e")[0]
        last = 10.0 ** -(len(mant.split(".")[1]) if "." in mant else 0)
        last *= 10.0 ** int(b.split("e")[1]) if "e" in b else 1.0
        if abs(float(a) - float(b)) > last + REL * abs(float(b)) + ABS:
            return False
    return True


def test_same_text_takes_round_off_and_nothing_else():
    assert _same_text("| lo -0.000571, 8.7 | 2/2 |", "| lo -0.000578, 8.7 | 2/2 |")
    assert _same_text("FD 61.7 (4.1e-05)", "FD 61.6 (4.2e-05)")
    assert not _same_text("FD 62.0", "FD 61.6")
    assert not _same_text("| 3/8 |", "| 2/8 |")
    assert not _same_text("held", "did not hold")
    assert not _same_text("sha 3e0985ab", "sha 3e0984ab") and _same_text("E04 x", "E04 x")
    assert _same({"p": 0.25, "d": 8.7344}, {"p": 0.25, "d": 8.7315})
    assert not _same({"verdict": True}, {"verdict": 1}) and not _same(0.5, 0.51)


def test_every_number_is_the_old_reports(old, new):
    assert _same(new["tables"], old["tables"])
    # the same groups, arms and seeds in the same order
    assert _keys_in_order(new["tables"]) == _keys_in_order(old["tables"])


def test_every_claim_and_verdict_is_the_old_reports(old, new):
    assert _same(new["claims"], old["claims"])
    assert new["registration"] == old["registration"]
    assert new["registration"]["primary_allowed"]  # the shipped runs are registered


def test_the_report_text_is_the_old_reports(old, new):
    assert _same_text(new["report_md"], old["report_md"])


def test_every_figure_is_drawn_from_the_old_checkpoints_and_labels(old, new):
    assert new["figures"] == old["figures"]


def test_every_arms_table_lists_all_shipped_arms_in_the_old_order(old):
    """Beyond the subset: the old report's row order of every arms table over all shipped
    arms (its MNIST_ORDER / GRID_ORDER rule) is the plan's order, which the report now uses."""
    from probes.study.arms import shipped_plan, shipped_runs

    plan = shipped_plan()
    assert list(old["arm_order"]) == list(plan.groups)
    for g, order in old["arm_order"].items():
        assert [a for a in plan.arms(g) if a in shipped_runs(g, plan)] == order, g


def test_asgan_study_report_on_the_shipped_plan_is_the_same_report(old, new):
    """``asgan-study report studies/v2.toml`` (engine.write_report) takes the same path: the
    plan's ``[report]`` table asks for the full report (measurements cached in the folder by
    the first report, so nothing is measured again)."""
    from probes.study import engine
    from probes.study.arms import shipped_plan

    plan = engine.load(shipped_plan().path)  # as the CLI loads it: the plan's own root
    assert plan.root == shipped_plan().root
    md = engine.write_report(plan, new["out"], n_quality=old["n_quality"],
                             n_stacked=old["n_stacked"], n_mixture=old["n_mixture"],
                             seed=old["seed"], runs=new["runs"], figures=False)
    assert md.read_text() == new["report_md"]  # this machine's report, to the last digit


def test_claims_are_judged_on_exactly_their_registered_seeds(new):
    """Each claim of the shipped plan carries the seed list the plan registers for it (the
    seeds planned for both its arms), and a seed outside that list, however extreme, changes
    nothing; a registered seed that is missing leaves the verdicts pending."""
    from probes.study.arms import shipped_plan
    from probes.study.claims import evaluate_claims

    plan = shipped_plan()
    claims = plan.claims()
    planned = plan.planned_seeds()
    for c in claims["claims"]:
        assert c["seeds"] == sorted(set(planned[(c["group"], c["a"])])
                                    & set(planned[(c["group"], c["b"])])), c["id"]
    tables = {g: {a: {int(s): m for s, m in by.items()} for a, by in t.items()}
              for g, t in new["tables"].items()}
    reg = {"primary_allowed": True}
    before = evaluate_claims(tables, claims, reg)
    # seed 99, outside every registered list, with numbers far beyond any seed's
    extra = {g: {a: {**by, 99: {k: (1e9 if isinstance(v, float) else v)
                                for k, v in by[0].items()}} for a, by in t.items()}
             for g, t in tables.items()}
    assert _same(evaluate_claims(extra, claims, reg), before)
    # the subset lacks registered seeds: every primary verdict waits for them
    assert {r["verdict"] for r in before["primary"]} == {"pending"}
    assert all(r["n_planned"] == len(c["seeds"]) for r, c in zip(
        before["primary"] + before["exploratory"],
        [c for c in claims["claims"] if c["kind"] == "primary"]
        + [c for c in claims["claims"] if c["kind"] != "primary"]))


@pytest.mark.parametrize("edit,line_has,says", [
    ('main = "asgan-eps0.5"', 'main = "nope"', "main = 'nope' is not an arm of group"),
    ('sweep = "grid25"', 'sweep = "mnist10k"', "measured as 'mixture'"),
    ('ablation = ["gaussian-eps0.5"]', 'colour = "red"', "unknown key 'colour'")])
def test_a_bad_report_table_is_one_line_naming_its_line(tmp_path, edit, line_has, says):
    from asgan_base.errors import UserError
    from probes.study.arms import shipped_plan
    from probes.study.plan import load_plan
    from probes.study.report import report_spec

    shipped = shipped_plan()
    text = shipped.path.read_text()
    assert edit in text
    f = tmp_path / "plan.toml"
    f.write_text(text.replace(edit, line_has).replace(
        'file = "../probes/study/claims.json"', f'file = "{shipped.path.parent}/../probes/'
        'study/claims.json"'))
    plan = load_plan(f, shipped.root)
    with pytest.raises(UserError, match=says) as e:
        report_spec(plan)
    where, _, msg = str(e.value).partition(": ")
    assert "\n" not in str(e.value)
    assert line_has in f.read_text().splitlines()[int(where.rsplit(":", 1)[1]) - 1]
