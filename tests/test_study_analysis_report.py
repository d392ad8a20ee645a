"""Study v3's plan keys, claim evaluation and report on a small synthetic study: a plan with an
[analysis] table and results files constructed here (recorded in a manifest as the engine
records them), every number checked against an independent computation from the constructed
values (scipy's binomial test, numpy's trapezoid, the sign-flip test on hand-paired lists)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from asgan_base.errors import UserError
from probes.core.stats import holm, sign_flip_p

SEEDS = list(range(8))
STEPS, EVERY = 2000, 500
FD_MAX, MIN_CLASSES = 78.8, 9
PLAN = """
[study]
name = "toy3"
raw = "runs/toy3"
ship = "ship/toy3"
manifest = "MANIFEST.json"

[analysis]
fd_fill = 1000.0
fd_threshold = 60.0
iters_ceiling = 2500
collapse = {fd_max = 78.8, min_classes = 9, nonfinite = true}

[groups.s0]
preset = "mnist10k-dcgan"
measure = "image"
s_per_it = 0.1
measure_every = 500
measure_metrics = ["fd", "classes"]
ship_weights_seeds = []
nonfinite = "outcome"
options = {steps = "2000", snapshot-every = "500", keep-snapshots = "0"}

[groups.s0.arms]
baseline = {cost = 1.0, options = {trainer = "baseline"}}
asgan = {cost = 1.5, options = {trainer = "asgan", eps = "0.5/255"}}

[groups.s1]
preset = "mnist10k-dcgan"
measure = "image"
s_per_it = 0.1
measure_every = 500
measure_metrics = ["fd", "classes"]
ship_weights_seeds = []
nonfinite = "outcome"
options = {steps = "2000", lr-g = "2e-3", snapshot-every = "500", keep-snapshots = "0"}

[groups.s1.arms]
baseline = {cost = 1.0, options = {trainer = "baseline"}}
asgan = {cost = 1.5, options = {trainer = "asgan", eps = "0.5/255"}}

[[tiers]]
name = "all"
runs = [{group = "s0", arms = ["baseline", "asgan"], seeds = 8},
        {group = "s1", arms = ["baseline", "asgan"], seeds = 8}]

[claims]
alpha = 0.05
family = "two-sided"

[[claim]]
id = "P1"
kind = "primary"
group = "s1"
groups = ["s0", "s1"]
metric = "collapsed"
a = "asgan"
b = "baseline"
expect = "lower"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
rationale = "fewer collapses"

[[claim]]
id = "P2"
kind = "primary"
group = "s0"
metric = "fd_auc"
a = "asgan"
b = "baseline"
expect = "lower"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
rationale = "faster"

[[claim]]
id = "P3"
kind = "primary"
group = "s0"
groups = ["s0", "s1"]
metric = "fd_spread"
a = "asgan"
b = "baseline"
expect = "lower"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
rationale = "less sensitive"

[[claim]]
id = "E1"
kind = "exploratory"
group = "s0"
metric = "fd_final"
a = "asgan"
b = "baseline"
test = "tost"
margin = 30.0
expect = "equivalent"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
rationale = "within 30 FD"

[[claim]]
id = "E2"
kind = "exploratory"
group = "s1"
metric = "collapsed"
test = "mcnemar"
a = "asgan"
b = "baseline"
expect = "lower"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
rationale = "fewer collapses under s1"

[[claim]]
id = "E3"
kind = "exploratory"
group = "s0"
metric = "iters_to_fd"
a = "asgan"
b = "baseline"
expect = "lower"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
rationale = "sooner under FD 60"

[report]
baseline = "baseline"
fidelity = "fid.json"
curves = ["s0", "s1"]
collapse = ["s0", "s1"]
"""


def _curves() -> dict:
    """``{(group, arm, seed): (outcome, {step: fd}, classes)}``, seeded: FD falls as a
    power of the step; stress setting s1 makes half the baseline runs blow up."""
    rng = np.random.default_rng(7)
    out = {}
    for g in ("s0", "s1"):
        for arm in ("baseline", "asgan"):
            for s in SEEDS:
                end = 40 + rng.normal(0, 6) - (5 if arm == "asgan" else 0)
                end += 30 * (g == "s1") * (arm == "baseline")
                fds = {t: end * (STEPS / t) ** 0.9 for t in range(EVERY, STEPS + 1, EVERY)}
                outcome, classes = "finished", 10 - int(rng.random() < 0.2)
                if g == "s1" and arm == "baseline" and s % 2 == 0:
                    outcome, fds = "nonfinite", {500: fds[500], 1000: fds[1000]}
                out[(g, arm, s)] = (outcome, fds, classes)
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from asgan_base.manifest import record
    from probes.study.engine import load, register

    root = tmp_path_factory.mktemp("toy3")
    (root / "plan.toml").write_text(PLAN)
    plan = load(root / "plan.toml")
    body = register(plan)
    runs = _curves()
    for (g, arm, s), (outcome, fds, classes) in runs.items():
        f = root / "ship" / "toy3" / g / arm / f"seed{s}" / "results.json"
        f.parent.mkdir(parents=True)
        nums = {str(t): {"fd": v, "classes": classes} for t, v in fds.items()}
        f.write_text(json.dumps({"outcome": outcome, "final_step": max(fds),
                                 "numbers": nums}))
        record(f, command="test", path=plan.manifest, root=root, seed=s, group=g, arm=arm,
               study="toy3", outcome=outcome, started_utc="2999-01-01T00:00:00Z",
               claims_sha256=body["claims_sha256"]["*"])
    return plan, runs


def _collapsed(runs, g, arm, s) -> bool:
    outcome, fds, classes = runs[(g, arm, s)]
    return outcome == "nonfinite" or fds[max(fds)] > FD_MAX or classes < MIN_CLASSES


def _final(runs, g, arm, s) -> float:
    outcome, fds, _ = runs[(g, arm, s)]
    return 1000.0 if outcome == "nonfinite" else fds[max(fds)]


def test_claims_are_judged_by_their_registered_tests(study):
    from probes.study.analysis import evaluate
    from probes.study.engine import registration_state
    from probes.study.report import analysis_inputs

    plan, runs = study
    inp = analysis_inputs(plan)
    reg = registration_state(plan, inp["entries"])
    assert reg["primary_allowed"], reg["reason"]
    ev = evaluate(inp["tables"], plan.claims(), plan.data["analysis"], reg)
    p1, p2, p3 = ev["primary"]
    # P1 pools s0 and s1, but the unit stays the seed (its two runs share their initial
    # weights): per seed the share of the settings collapsed, exact sign-flip over 8 seeds
    def share(arm, s):
        return np.mean([_collapsed(runs, g, arm, s) for g in ("s0", "s1")])

    d1 = [share("asgan", s) - share("baseline", s) for s in SEEDS]
    assert p1["n"] == p1["n_planned"] == len(SEEDS)
    assert p1["diff"] == pytest.approx(np.mean(d1)) and p1["diff"] < 0
    assert p1["p"] == pytest.approx(sign_flip_p(d1, "two-sided"))
    assert -1 <= p1["lo"] <= p1["diff"] <= p1["hi"] <= 1   # bootstrap interval stays in range
    # P2: FD-AUC by numpy's trapezoid over the planned steps (missing steps at fd_fill)
    steps = [500, 1000, 1500, 2000]

    def auc(arm, s):
        fds = runs[("s0", arm, s)][1]
        return np.trapezoid([fds.get(t, 1000.0) for t in steps], steps) / 1500

    d2 = [auc("asgan", s) - auc("baseline", s) for s in SEEDS]
    assert p2["diff"] == pytest.approx(np.mean(d2))
    assert p2["p"] == pytest.approx(sign_flip_p(d2, "two-sided"))
    # P3: per-seed range of final FD across s0, s1 (non-finite runs at fd_fill)
    d3 = [abs(_final(runs, "s0", "asgan", s) - _final(runs, "s1", "asgan", s))
          - abs(_final(runs, "s0", "baseline", s) - _final(runs, "s1", "baseline", s))
          for s in SEEDS]
    assert p3["diff"] == pytest.approx(np.mean(d3))
    # one Holm family over the three two-sided p-values
    want = holm([p1["p"], p2["p"], p3["p"]])
    assert [r["p_holm"] for r in ev["primary"]] == pytest.approx(list(want))
    for r in ev["primary"]:
        assert r["verdict"] == ("inconclusive" if r["p_holm"] > 0.05 else
                                "held" if r["diff"] < 0 else "opposite")
    assert p3["verdict"] == "held"   # the stressed baseline's FD moves by ~30 or to 1000
    e1, e2, e3 = ev["exploratory"]
    assert e3["n"] == 8 and e3["mean_a"] <= 2500   # reached or censored at iters_ceiling
    assert e1["test"] == "tost" and 0 < e1["p"] <= 1
    # E2: McNemar on one setting's paired collapse outcomes = scipy's exact binomial on the
    # discordant pairs
    a = [_collapsed(runs, "s1", "asgan", s) for s in SEEDS]
    b = [_collapsed(runs, "s1", "baseline", s) for s in SEEDS]
    n10 = sum(x and not y for x, y in zip(a, b))
    n01 = sum(y and not x for x, y in zip(a, b))
    assert e2["n"] == 8 and n01 >= 4
    assert e2["p"] == pytest.approx(binomtest(n10, n10 + n01, 0.5).pvalue)


def test_report_leads_with_the_primary_claims_and_names_its_seeds(study, tmp_path):
    from PIL import Image

    from probes.study.engine import write_report

    plan, _ = study
    text = write_report(plan, tmp_path).read_text()
    first_table = text[text.index("\n|"):].split("\n\n")[0]
    assert [ln.split("|")[1].strip() for ln in first_table.strip().splitlines()[2:]] == \
        ["P1", "P2", "P3"]
    assert "one two-sided Holm family" in text
    assert "| s1 | baseline | 4 of 8 |" in text      # the even seeds stopped non-finite
    assert "Runs shown: s0 baseline: seeds 0-7" in text
    assert "Seeds (8, each the mean over s0, s1): 0, 1, 2" in text
    assert "Not measured yet (`fid.json`" in text   # the fidelity file is not shipped
    for name in ("fd_curves.png", "claim-P1.png", "claim-P2.png", "claim-P3.png"):
        assert Image.open(tmp_path / name).size[0] <= 1600
    ev = json.loads((tmp_path / "claims.json").read_text())
    assert ev["registration"]["primary_allowed"] is True


def test_sample_grids_wrap_to_page_width(tmp_path):
    import torch
    from PIL import Image

    from probes.viz.study import plot_sample_grids

    g = torch.Generator().manual_seed(0)
    grids = [(f"arm {i}", torch.rand(32, 1, 32, 32, generator=g) * 2 - 1) for i in range(9)]
    w, h = Image.open(plot_sample_grids(grids, tmp_path / "s.png")).size
    assert w <= 1600 and h > 2 * 390 * 0.5   # 9 panels: 3 rows of at most 4


@pytest.mark.parametrize("old,new,msg,at", [
    ('test = "mcnemar"', 'test = "wilcoxon"', "test must be one of sign-flip, mcnemar, tost",
     'test = "wilcoxon"'),
    ('metric = "collapsed"\na = "asgan"', 'metric = "collapsed"\ntest = "mcnemar"\na = "asgan"',
     "a claim pooling settings (groups) averages them per seed", 'test = "mcnemar"'),
    ('margin = 30.0\n', "", "a margin (> 0, registered) goes with test", 'test = "tost"'),
    ('expect = "equivalent"', 'expect = "lower"', "expect must be one of equivalent",
     'expect = "lower"'),
    ('groups = ["s0", "s1"]\nmetric = "fd_spread"', 'metric = "fd_spread"',
     "fd_spread is a spread across settings", 'metric = "fd_spread"'),
    ('metric = "fd_auc"', 'metric = "fd_aux"', "metric 'fd_aux' is not measured",
     'metric = "fd_aux"'),
    ('family = "two-sided"', 'family = "both"', "family must be one of", "family"),
    ("iters_ceiling = 2500", "iters_ceiling = 2000", "iters_ceiling 2000 must exceed the steps "
     "of every group an iters_to_fd claim names (2000, claim E3)", "iters_ceiling"),
    ("fd_fill = 1000.0", "fd_fill = 50.0", "fd_fill 50.0 must be at least", "fd_fill"),
    ("min_classes = 9", "min_classes = 9, minimum = 3", "unknown key 'minimum'", "minimum")])
def test_a_bad_v3_key_is_one_line_naming_its_plan_line(tmp_path, old, new, msg, at):
    from probes.study.plan import load_plan

    assert old in PLAN
    text = PLAN.replace(old, new, 1)
    (tmp_path / "plan.toml").write_text(text)
    with pytest.raises(UserError) as e:
        load_plan(tmp_path / "plan.toml", check_configs=False)
    assert msg in str(e.value) and "\n" not in str(e.value)
    line = int(str(e.value).split(":")[1])
    assert at in text.splitlines()[line - 1]


def test_a_bad_v3_report_key_is_one_line_naming_its_plan_line(tmp_path):
    from probes.study.plan import load_plan
    from probes.study.report import analysis_spec

    text = PLAN.replace('curves = ["s0", "s1"]', 'curves = ["s0", "s9"]')
    (tmp_path / "plan.toml").write_text(text)
    with pytest.raises(UserError) as e:
        analysis_spec(load_plan(tmp_path / "plan.toml", check_configs=False))
    line = int(str(e.value).split(":")[1])
    assert "curves = ['s0', 's9']: name groups" in str(e.value)
    assert text.splitlines()[line - 1].startswith("curves")


def test_a_primary_equivalence_claim_needs_the_two_sided_family(tmp_path):
    from probes.study.plan import load_plan

    text = PLAN.replace('family = "two-sided"\n', "").replace(
        'id = "E1"\nkind = "exploratory"', 'id = "E1"\nkind = "primary"')
    (tmp_path / "plan.toml").write_text(text)
    with pytest.raises(UserError) as e:
        load_plan(tmp_path / "plan.toml", check_configs=False)
    line = int(str(e.value).split(":")[1])
    assert "claim E1: a primary TOST claim needs" in str(e.value)
    assert text.splitlines()[line - 1] == 'test = "tost"'


def test_registration_freezes_the_analysis_thresholds(tmp_path):
    from probes.study.plan import load_plan

    hashes = []
    for text in (PLAN, PLAN.replace("fd_threshold = 60.0", "fd_threshold = 50.0"),
                 PLAN.replace('family = "two-sided"', 'family = "one-sided"')):
        (tmp_path / "plan.toml").write_text(text)
        hashes.append(load_plan(tmp_path / "plan.toml", check_configs=False)
                      .claim_hashes()["*"])
    assert len(set(hashes)) == 3


def test_the_fidelity_file_table_is_seed_paired_and_sha_checked(study):
    from asgan_base.manifest import record
    from probes.study.report import _fmt, fidelity_file_lines

    plan, _ = study
    rng = np.random.default_rng(3)
    runs = {f"ring8/{arm}/seed{s}": {"fidelity_cos": float(rng.uniform(-1, 1)),
                                     "fidelity_noise": float(rng.uniform(0, 1))}
            for arm in ("baseline", "twice", "asgan") for s in range(6)}
    f = plan.root / "fid-test.json"
    f.write_text(json.dumps({"runs": runs}))
    assert "Not measured yet" in "\n".join(fidelity_file_lines(plan, "fid-test.json", "baseline"))
    record(f, command="test", path=plan.manifest, root=plan.root)
    rows = [ln for ln in fidelity_file_lines(plan, "fid-test.json", "baseline")
            if ln.startswith("| ring8 | fidelity_cos")]
    (row,) = rows
    d = [runs[f"ring8/twice/seed{s}"]["fidelity_cos"] - runs[f"ring8/baseline/seed{s}"]
         ["fidelity_cos"] for s in range(6)]
    assert f"| twice - baseline | {_fmt(float(np.mean(d)))} [" in row
    assert row.endswith(f"| {_fmt(sign_flip_p(d, 'two-sided'), 2)} |")
    text = "\n".join(fidelity_file_lines(plan, "fid-test.json", "baseline"))
    assert "asgan - baseline" in text and "asgan - twice" in text   # the last arm vs the rest
    f.write_text(json.dumps({"runs": {}}))   # changed after recording: not read
    assert "Not measured yet" in "\n".join(fidelity_file_lines(plan, "fid-test.json", "baseline"))
