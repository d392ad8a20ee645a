"""A study plan: a TOML file a researcher writes (``asgan-study``), read and checked here.

A plan names everything about a study, and nothing about a study lives in code:

- ``[study]``: ``name`` (the manifest's ``study`` field of every run), ``raw`` (raw runs,
  resumable, with optimizer state; not shipped), ``ship`` (shipped copies: float16, no
  optimizer state), ``manifest`` (default ``checkpoints/MANIFEST.json``), all relative to the
  study's root (``--root``, else ``root``: a folder relative to the plan's, default the
  plan's own folder); ``budget_mb`` (the shipped size the plan must fit), ``jobs`` (runs in
  parallel the cost model assumes, default 2), ``about`` (optional: the first line of
  ``PLAN.json``).
- ``[groups.<name>]``: ``preset`` (an ``asgan-train`` preset), ``measure`` (which metrics the
  report takes: ``image``, ``mixture`` or ``stacked``), ``s_per_it`` (estimated wall seconds of
  one baseline iteration with ``jobs`` runs side by side, one thread each), ``options`` (base
  ``asgan-train`` options, ``--name value`` without the dashes; ``steps`` required) and
  ``arms.<arm> = {options = {...}, cost = <factor of the baseline's iteration>, about = "..."}``
  (an arm's options are laid over the group's; options are strings, as on the command line).
- Per-snapshot numbers, shipped weights and non-finite stops (optional ``[groups.<name>]``
  keys; a plan without them ships exactly what it did before):

  - ``measure_every = N``: the sitting that trains a run measures its snapshots at every
    ``N`` iterations and its last one (:mod:`probes.study.snapshots`: image groups FD etc. in
    the dataset's classifier features from 2,000 fakes against 2,000 reals, seed 0, as
    ``probes.measures.quality.scores``; mixtures the coverage numbers of
    ``probes.measures.coverage`` from 2,500 points, seed 0; stacked its 1000-mode numbers)
    and writes them to the run's results file ``<ship>/<group>/<arm>/seed<k>/results.json``,
    listed in the manifest (the controller is its one writer). The runs must keep those
    snapshots: the group's (and each arm's) ``snapshot-every`` must divide ``N`` and
    ``keep-snapshots`` must be ``"0"``; once the numbers are written the raw run keeps only
    its last snapshot, as a ``keep-snapshots = "1"`` run does. ``measure_metrics = [...]``:
    which numbers (default: the group's ``measure`` kind's :data:`DEFAULT_METRICS`; any of
    :data:`SNAPSHOT_METRICS`). ``final_metrics = [...]``: numbers taken at the final (or last
    good) snapshot only, in addition (a mixture's gradient fidelity, ~25 s a snapshot, is
    too slow to take at every one).
  - ``ship_weights_seeds = [0, 1, 2]`` (on a group, or on an arm, which then wins): only
    these seeds ship weights; every other run ships its results file (per-snapshot numbers,
    the outcome, the SHA-256 of its final weights: :func:`trainers.checkpoint.tensor_digest`
    of the final raw snapshot's float32 G and D tensors), its ``stats.jsonl`` and
    ``config.json``, and no weights (``asgan-study verify`` retrains one and checks the
    hash). Absent: every seed ships weights. An ``[[evolution]]`` run must ship weights.
  - ``nonfinite = "outcome"`` (default ``"error"``): a run that ``asgan-train`` stops on a
    non-finite value (exit 2, ``training diverged: non-finite ...``) is recorded as finished
    with outcome ``nonfinite`` (its results file: the numbers of its snapshots up to the last
    good one, that one's weights hash, the trainer's message; no weights shipped) and is not
    retried; with ``"error"`` it is a failed run, retried next sitting.

  A group with any of these keys gets a results file for every run (``outcome``
  ``finished`` or ``nonfinite``); ``PLAN.json`` lists the keys used.
- ``[[evolution]]``: ``group``, ``arm``, ``seed``, ``every``: that run keeps and ships a
  snapshot every ``every`` iterations (all other runs ship their final snapshot).
- ``[[tiers]]``: ``name`` and ``runs = [{group, arms = [...], seeds = N or [...]}]``, in work
  order; within a tier the work is seed-major, so an interrupted plan leaves complete pairs.
- ``[dropped]``: ``"group/arm" = "why"``, arms taken out (listed in ``PLAN.json``).
- ``[claims]``: either ``file = "claims.json"`` (a claims file of
  :func:`probes.study.claims.load_claims`, relative to the plan; registered by the git rule of
  :func:`probes.study.claims.registration`; each claim is judged on the seeds the plan gives
  both its arms) or ``alpha`` (default 0.05) with the claims inline as ``[[claim]]`` tables:
  ``id``, ``kind`` (primary/exploratory), ``group``, ``metric``, ``a``, ``b``, ``expect``
  (lower/higher: the sign of a - b), ``seeds`` (the exact seed list it is judged on) and
  ``rationale``; registered by ``asgan-study register`` (:mod:`probes.study.engine`).
- ``[analysis]`` (optional; study v3, :mod:`probes.study.analysis`): the thresholds of the
  metrics derived from each run's results file, all registered with the claims:
  ``fd_fill`` (the FD counted for a step with no number, >= ``collapse.fd_max``),
  ``fd_threshold`` (``iters_to_fd``: first measured iteration with FD <= it),
  ``iters_ceiling`` ('never reached': above the steps of every group an ``iters_to_fd``
  claim names; a run of a group as long or longer has no ``iters_to_fd``), ``collapse =
  {fd_max, min_classes, nonfinite}`` (the collapse rule), ``spread`` (``range`` or ``sd``
  of a seed's final FD across settings), ``bootstrap_seed``, ``about``. With it, a claim on
  an image group with ``measure_every`` may name a derived metric (``fd_final``,
  ``classes_final``, ``fd_auc``, ``iters_to_fd``, ``collapsed``, ``fd_spread``), a claim on
  a mixture group ``fidelity_cos`` / ``fidelity_noise``, and inline claims take the optional
  keys ``test`` (``sign-flip``, default; ``mcnemar`` on ``collapsed`` of one group; ``tost``, with a
  registered ``margin`` > 0 and ``expect = "equivalent"``: equivalence is stated only so),
  ``groups`` (the settings a claim pools: the unit stays the seed, its value the mean of the
  metric over the settings; for ``fd_spread`` the settings the spread is taken across; not
  with ``mcnemar``) and ``kind = "secondary"`` (registered, reported
  apart from the primary family, no verdict); ``[claims] family`` is ``one-sided`` (default:
  the default rule, a one-sided Holm family and its reverse) or ``two-sided`` (one two-sided Holm
  family over the primary claims). ``asgan-study report`` then writes the v3 report
  (:func:`probes.study.report.write_analysis_report`), whose ``[report]`` keys are
  ``baseline``, ``main``, ``curves`` (groups of the FD figure), ``collapse`` (groups of the
  collapse table), ``samples`` (the group of the sample grid).
- ``[report]`` (optional): the figures and prose of the full study report
  (:func:`probes.study.report.report_spec` says what each key means); a plan without it gets
  the plain report of :func:`probes.study.engine.report_markdown`. Groups and arms are shown
  in the order the plan writes them.

Every mistake is a one-line :class:`asgan_base.errors.UserError` naming the plan file and line.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgan_base.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MEASURES = ("image", "mixture", "stacked")
# the numbers ``measure_every`` can take at each snapshot, per ``measure`` kind
# (probes.study.snapshots computes them)
SNAPSHOT_METRICS = {"image": ("fd", "kid", "precision", "recall", "density", "coverage",
                              "classes"),
                    "mixture": ("modes", "high_quality_pct", "reverse_kl", "fidelity_cos",
                                "fidelity_noise"),
                    "stacked": ("modes", "kl")}
# what ``measure_every`` takes when ``measure_metrics`` is not given: all but the slow ones
DEFAULT_METRICS = {k: tuple(m for m in v if not m.startswith("fidelity_"))
                   for k, v in SNAPSHOT_METRICS.items()}
NONFINITE = ("error", "outcome")
KINDS = ("primary", "exploratory")
EXPECTS = ("lower", "higher")
MAX_PRIMARY = 6
CLAIM_KEYS = ("id", "kind", "group", "metric", "a", "b", "expect", "seeds", "rationale")
# optional keys of a claim in a plan with an [analysis] table (probes.study.analysis)
CLAIM_V3_KEYS = ("test", "margin", "groups")
TESTS = ("sign-flip", "mcnemar", "tost")
FAMILIES = ("one-sided", "two-sided")
SPREADS = ("range", "sd")
_ANALYSIS = ("fd_fill", "fd_threshold", "iters_ceiling", "collapse", "spread",
             "bootstrap_seed", "about")
_COLLAPSE = ("fd_max", "min_classes", "nonfinite")
_TOP = ("study", "groups", "evolution", "tiers", "dropped", "claims", "claim", "report",
        "analysis")
_STUDY = ("name", "raw", "ship", "manifest", "budget_mb", "jobs", "about", "root")
_GROUP = ("preset", "measure", "s_per_it", "options", "arms", "about", "measure_every",
          "measure_metrics", "final_metrics", "ship_weights_seeds", "nonfinite")
_ARM = ("options", "cost", "about", "ship_weights_seeds")
_RESULTS_KEYS = ("measure_every", "measure_metrics", "final_metrics", "ship_weights_seeds",
                 "nonfinite")


@dataclass(frozen=True)
class Run:
    """One planned run: ``group/arm/seed<k>``, trained in tier ``tier``."""

    tier: str
    group: str
    arm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.group}/{self.arm}/seed{self.seed}"


@dataclass(frozen=True)
class Plan:
    """A loaded, checked plan (module docstring). ``data``: the TOML as parsed."""

    path: Path
    root: Path
    data: dict

    # ---- study facts
    @property
    def name(self) -> str:
        return self.data["study"]["name"]

    @property
    def raw(self) -> str:
        return self.data["study"]["raw"]

    @property
    def ship(self) -> str:
        return self.data["study"]["ship"]

    @property
    def manifest(self) -> Path:
        return self.root / self.data["study"].get("manifest", "checkpoints/MANIFEST.json")

    @property
    def groups(self) -> dict[str, dict]:
        return self.data["groups"]

    @property
    def dropped(self) -> dict[str, str]:
        return self.data.get("dropped", {})

    @property
    def jobs(self) -> int:
        return int(self.data["study"].get("jobs", 2))

    @property
    def budget_mb(self) -> float | None:
        b = self.data["study"].get("budget_mb")
        return None if b is None else float(b)

    def arms(self, group: str) -> dict[str, dict]:
        return self.groups[group]["arms"]

    # ---- runs
    def runs(self) -> list[Run]:
        """Every planned run in work order (tiers in order, seed-major within a tier)."""
        out = []
        for t in self.data["tiers"]:
            rows = [(r["group"], r["arms"], _seed_list(r["seeds"])) for r in t["runs"]]
            for seed in sorted({s for _, _, seeds in rows for s in seeds}):
                for group, arms, seeds in rows:
                    out += [Run(t["name"], group, arm, seed) for arm in arms
                            if seed in seeds and f"{group}/{arm}" not in self.dropped]
        return out

    def evolution_every(self, run: Run) -> int | None:
        for e in self.data.get("evolution", []):
            if (e["group"], e["arm"], e["seed"]) == (run.group, run.arm, run.seed):
                return int(e["every"])
        return None

    def options(self, run: Run) -> dict[str, str]:
        """The run's ``asgan-train`` options in command order: the group's, then the arm's
        (an arm's value replaces the group's in place), then the evolution snapshots."""
        g = self.groups[run.group]
        opts = {**g["options"], **g["arms"][run.arm].get("options", {})}
        every = self.evolution_every(run)
        if every is not None:
            opts.update({"snapshot-every": str(every), "keep-snapshots": "0"})
        return opts

    def raw_dir(self, run: Run) -> str:
        return f"{self.raw}/{run.name}"

    def command(self, run: Run) -> list[str]:
        """The ``asgan-train`` argv of ``run`` (recorded verbatim in the manifest)."""
        cmd = ["asgan-train", "--preset", self.groups[run.group]["preset"], "--seed",
               str(run.seed)]
        for k, v in self.options(run).items():
            cmd += [f"--{k}", v]
        return cmd + ["--out", self.raw_dir(run), "--no-progress"]

    def config(self, run: Run):
        """The validated :class:`trainers.config.TrainConfig` that ``command(run)`` trains."""
        from probes.io.edge import make_config

        opts = {k.replace("-", "_"): v for k, v in self.options(run).items()}
        return make_config(self.groups[run.group]["preset"], {**opts, "seed": run.seed})

    def steps(self, run: Run) -> int:
        return int(self.options(run)["steps"])

    def shipped_steps(self, run: Run) -> list[int]:
        """The snapshot steps shipped for ``run``: the final one, and for an evolution run
        every ``every`` iterations; none when the run ships no weights."""
        if not self.ships_weights(run):
            return []
        steps, every = self.steps(run), self.evolution_every(run)
        return sorted({*range(every, steps, every), steps}) if every else [steps]

    # ---- per-snapshot numbers, shipped weights, non-finite outcomes (module docstring)
    def ships_weights(self, run: Run) -> bool:
        """Whether ``run`` ships weights (``ship_weights_seeds`` of its arm, else its group;
        every seed when neither names any)."""
        g = self.groups[run.group]
        seeds = g["arms"][run.arm].get("ship_weights_seeds", g.get("ship_weights_seeds"))
        return seeds is None or run.seed in seeds

    def measure_every(self, run: Run) -> int | None:
        every = self.groups[run.group].get("measure_every")
        return None if every is None else int(every)

    def measure_metrics(self, run: Run) -> list[str]:
        """The numbers taken at each measured snapshot of ``run`` ([] without
        ``measure_every``)."""
        g = self.groups[run.group]
        if self.measure_every(run) is None:
            return []
        return list(g.get("measure_metrics", DEFAULT_METRICS[g["measure"]]))

    def final_metrics(self, run: Run) -> list[str]:
        """The numbers taken at the final (or last good) snapshot of ``run`` only, beyond
        :meth:`measure_metrics` ([] without ``measure_every``)."""
        if self.measure_every(run) is None:
            return []
        return [m for m in self.groups[run.group].get("final_metrics", [])
                if m not in self.measure_metrics(run)]

    def nonfinite_outcome(self, run: Run) -> bool:
        return self.groups[run.group].get("nonfinite", "error") == "outcome"

    def has_results(self, run: Run) -> bool:
        """Whether ``run`` ships a results file: its group uses any key of the module
        docstring's per-snapshot / shipped-weights / non-finite list."""
        g = self.groups[run.group]
        return any(k in g for k in _RESULTS_KEYS) or \
            "ship_weights_seeds" in g["arms"][run.arm]

    def est_seconds(self, run: Run) -> float:
        """Estimated wall seconds of ``run`` beside ``jobs - 1`` others, 1 thread each."""
        g = self.groups[run.group]
        return self.steps(run) * float(g["s_per_it"]) * float(g["arms"][run.arm]["cost"])

    def planned_seeds(self) -> dict[tuple[str, str], list[int]]:
        """``{(group, arm): [seeds]}`` of the plan (what PLAN.json records)."""
        out: dict[tuple[str, str], list[int]] = {}
        for r in self.runs():
            out.setdefault((r.group, r.arm), []).append(r.seed)
        return out

    def plan_json(self) -> str:
        """``PLAN.json``'s text: what the study holds (groups -> steps, arms -> seeds, tier,
        options), so the reading code knows when a group is complete."""
        body: dict[str, Any] = {"study": self.name, "about": self.data["study"].get(
            "about", f"asgan-study's plan {self.path.name}: a group is complete when every "
            "(arm, seed) below is shipped"), "groups": {}, "dropped": self.dropped}
        for r in self.runs():
            g = body["groups"].setdefault(r.group, {"steps": self.steps(r), "arms": {}})
            g.update({k: self.groups[r.group][k] for k in _RESULTS_KEYS
                      if k in self.groups[r.group]})
            a = g["arms"].setdefault(r.arm, {"tier": r.tier, "seeds": [], "options":
                                             self.arms(r.group)[r.arm].get("options", {})})
            if "ship_weights_seeds" in self.arms(r.group)[r.arm]:
                a["ship_weights_seeds"] = self.arms(r.group)[r.arm]["ship_weights_seeds"]
            a["seeds"].append(r.seed)
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    # ---- claims
    def claims(self) -> dict[str, Any]:
        """The registered claims in the form of :func:`probes.study.claims.load_claims`, each
        claim with ``seeds``: the exact seed list it is judged on (inline: as written; from a
        claims file: the seeds the plan gives both arms)."""
        from probes.study.claims import load_claims

        c = self.data.get("claims", {})
        if "file" in c:
            claims = load_claims((self.path.parent / c["file"]).resolve())
            planned = self.planned_seeds()
            for cl in claims["claims"]:
                both = set(planned.get((cl["group"], cl["a"]), [])) & set(
                    planned.get((cl["group"], cl["b"]), []))
                cl["seeds"] = sorted(both)
            return dict(claims, registration="git")
        return {"path": self.path, "alpha": float(c.get("alpha", 0.05)),
                "min_pairs_primary": 2, "registration": "asgan-study",
                "arms": {a: d.get("about", "") for g in self.groups.values()
                         for a, d in g["arms"].items()},
                **({"family": c["family"]} if "family" in c else {}),
                "claims": [{k: (list(cl[k]) if isinstance(cl[k], list) else cl[k])
                            for k in CLAIM_KEYS + CLAIM_V3_KEYS if k in cl}
                           for cl in self.data.get("claim", [])]}

    def claim_hashes(self) -> dict[str, str]:
        """SHA-256 of each inline claim's canonical JSON, and ``"*"`` of all of them with
        ``alpha`` (and, where the plan has them, ``family`` and the ``[analysis]`` table:
        what ``asgan-study register`` freezes)."""
        claims = self.claims()
        one = {c["id"]: _sha(c) for c in claims["claims"]}
        frozen = {"alpha": claims["alpha"], "claims": claims["claims"]}
        if "family" in claims:  # absent (the shipped plan, the example): the hash they registered
            frozen["family"] = claims["family"]
        if "analysis" in self.data:  # the derived metrics' thresholds are registered too
            frozen["analysis"] = self.data["analysis"]
        return {**one, "*": _sha(frozen)}

    def line_of(self, *keys: str) -> int:
        return _line_of(self.path.read_text(encoding="utf-8"), keys)


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _seed_list(seeds: int | list[int]) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else sorted(seeds)


# ---- loading and checking


def _line_of(text: str, keys: tuple[str, ...]) -> int:
    """1-based line of the last of ``keys`` as a TOML key or table name, searched after the
    line of each earlier one (``("groups", "toy", "arms", "adv")``); the last line
    found when a key is not written out (1 when none is)."""
    lines, at = text.splitlines(), 0
    for key in keys:
        pat = re.compile(r'(^|[\[.{,]\s*)"?' + re.escape(str(key)) + r'"?\s*(=|\]|\.)')
        if isinstance(key, _Value):  # the line that sets key = value (a claim's id)
            pat = re.compile(r'^\s*' + re.escape(key.key) + r'\s*=\s*"' + re.escape(key.value)
                             + '"')
        for i in range(at, len(lines)):
            if pat.search(lines[i].split("#")[0]):
                at = i
                break
    return at + 1


@dataclass(frozen=True)
class _Value:
    """A key of :func:`_line_of` found by its value: ``id = "P1"`` of one [[claim]]."""

    key: str
    value: str

    def __str__(self) -> str:  # as messages name it: claim.id.P1
        return f"{self.key}.{self.value}"


def _claim_at(cid: str) -> tuple:
    """Keys of :func:`_line_of` that find claim ``cid``'s table (then a key after it)."""
    return ("claim", _Value("id", str(cid)))


class _Checker:
    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def fail(self, keys: tuple, msg: str) -> UserError:
        return UserError(f"{self.path}:{_line_of(self.text, tuple(keys))}: {msg}")

    def table(self, obj: Any, keys: tuple, allowed: tuple[str, ...], required=()) -> dict:
        if not isinstance(obj, dict):
            raise self.fail(keys, f"{'.'.join(map(str, keys)) or 'the plan'} must be a table")
        for k in obj:
            if k not in allowed:
                raise self.fail((*keys, k), f"unknown key {k!r} in "
                                f"[{'.'.join(map(str, keys)) or 'top level'}]; known: "
                                f"{', '.join(allowed)}")
        for k in required:
            if k not in obj:
                raise self.fail(keys, f"[{'.'.join(map(str, keys))}] needs {k!r}")
        return obj

    def text_value(self, v: Any, keys: tuple) -> str:
        if not isinstance(v, str) or not v.strip():
            raise self.fail(keys, f"{keys[-1]} must be non-empty text, got {v!r}")
        return v

    def number(self, v: Any, keys: tuple, *, positive=True) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (positive and v <= 0):
            raise self.fail(keys, f"{keys[-1]} must be a positive number, got {v!r}")
        return float(v)


def load_plan(path: str | Path, root: str | Path | None = None, *,
              check_configs: bool = True) -> Plan:
    """Read and check the plan at ``path`` (module docstring); ``root`` (default the plan's
    folder) is where the raw, shipped and manifest paths lie. ``check_configs``: build every
    (group, arm)'s training config, so an unknown or bad option fails here, at its line.

    Raises:
        asgan_base.errors.UserError: ``<plan>:<line>: what is wrong``.
    """
    path = Path(path).resolve()
    text, data = _read_toml(path)
    ck = _Checker(path, text)
    ck.table(data, (), _TOP, required=("study", "groups", "tiers"))
    study = _check_study(ck, data)
    groups = _check_groups(ck, data)
    seeded = _check_tiers(ck, data, groups)
    dropped = ck.table(data.get("dropped", {}), ("dropped",), tuple(data.get("dropped", {})))
    for gname, g in groups.items():
        for aname in g["arms"]:
            if (gname, aname) not in seeded and f"{gname}/{aname}" not in dropped:
                raise ck.fail(("groups", gname, "arms", aname), f"arm {gname}/{aname} has no "
                              "seeds: no tier runs it (add it to a tier, or to [dropped])")
    for e in data.get("evolution", []):
        _check_evolution(ck, e, groups, seeded)
    plan = Plan(path, Path(root).resolve() if root is not None
                else (path.parent / study.get("root", ".")).resolve(), data)
    if "analysis" in data:
        _check_analysis(ck, data["analysis"], groups)
    _check_claims(ck, plan, seeded)
    if check_configs:
        _check_configs(ck, plan, seeded)
    return plan


def _read_toml(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+)", str(e))
        raise UserError(f"{path}:{m[1] if m else 1}: not TOML: {e}") from None


def _check_study(ck: _Checker, data: dict) -> dict:
    study = ck.table(data["study"], ("study",), _STUDY, required=("name", "raw", "ship"))
    for k in ("name", "raw", "ship"):
        ck.text_value(study[k], ("study", k))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", study["name"]):
        raise ck.fail(("study", "name"), f"name {study['name']!r}: letters, digits, . _ - only")
    if "budget_mb" in study:
        ck.number(study["budget_mb"], ("study", "budget_mb"))
    return study


def _check_groups(ck: _Checker, data: dict) -> dict:
    groups = ck.table(data["groups"], ("groups",), tuple(data["groups"]))
    if not groups:
        raise ck.fail(("groups",), "the plan needs at least one group")
    for gname, g in groups.items():
        gk = ("groups", gname)
        ck.table(g, gk, _GROUP, required=("preset", "measure", "s_per_it", "options", "arms"))
        if g["measure"] not in MEASURES:
            raise ck.fail((*gk, "measure"), f"measure must be one of {', '.join(MEASURES)}, "
                          f"got {g['measure']!r}")
        ck.number(g["s_per_it"], (*gk, "s_per_it"))
        _options(ck, g["options"], (*gk, "options"))
        if "steps" not in g["options"]:
            raise ck.fail((*gk, "options"), f"group {gname!r} needs options.steps")
        arms = ck.table(g["arms"], (*gk, "arms"), tuple(g["arms"]))
        if not arms:
            raise ck.fail((*gk, "arms"), f"group {gname!r} has no arms")
        for aname, a in arms.items():
            ak = (*gk, "arms", aname)
            ck.table(a, ak, _ARM, required=("cost",))
            ck.number(a["cost"], (*ak, "cost"))
            _options(ck, a.get("options", {}), (*ak, "options"))
            if "ship_weights_seeds" in a:
                _seed_values(ck, a["ship_weights_seeds"], (*ak, "ship_weights_seeds"))
        _check_results_keys(ck, g, gk)
    return groups


def _check_tiers(ck: _Checker, data: dict, groups: dict) -> dict[tuple[str, str], list[int]]:
    """The tiers; returns ``{(group, arm): seeds}`` they plan."""
    seeded: dict[tuple[str, str], list[int]] = {}
    tiers = data["tiers"]
    if not isinstance(tiers, list) or not tiers:
        raise ck.fail(("tiers",), "tiers must be a non-empty array of [[tiers]] tables")
    for t in tiers:
        ck.table(t, ("tiers",), ("name", "runs"), required=("name", "runs"))
        ck.text_value(t["name"], ("tiers", "name"))
        if not isinstance(t["runs"], list) or not t["runs"]:
            raise ck.fail(("tiers", t["name"]), f"tier {t['name']!r} needs runs")
        for r in t["runs"]:
            _check_tier_row(ck, t["name"], r, groups)
            for arm in r["arms"]:
                have = seeded.setdefault((r["group"], arm), [])
                twice = set(have) & set(_seed_list(r["seeds"]))
                if twice:
                    raise ck.fail(("tiers", t["name"], "seeds"), f"{r['group']}/{arm} "
                                  f"seed(s) {sorted(twice)} planned twice")
                have += _seed_list(r["seeds"])
    return seeded


def _check_tier_row(ck: _Checker, tier: str, r: Any, groups: dict) -> None:
    where = ("tiers", tier)
    ck.table(r, where, ("group", "arms", "seeds"), required=("group", "arms", "seeds"))
    if r["group"] not in groups:
        raise ck.fail((*where, "group"), f"tier {tier!r}: unknown group "
                      f"{r['group']!r} (groups: {', '.join(groups)})")
    if not isinstance(r["arms"], list) or not r["arms"]:
        raise ck.fail((*where, "arms"), f"tier {tier!r}: arms must be a list")
    for arm in r["arms"]:
        if arm not in groups[r["group"]]["arms"]:
            raise ck.fail((*where, "arms"), f"tier {tier!r}: arm {arm!r} is not "
                          f"an arm of group {r['group']!r}")
    s = r["seeds"]
    ok = (isinstance(s, int) and not isinstance(s, bool) and s > 0) or (
        isinstance(s, list) and s and all(isinstance(x, int) and x >= 0 for x in s)
        and len(set(s)) == len(s))
    if not ok:
        raise ck.fail((*where, "seeds"), f"tier {tier!r}: seeds must be a count "
                      f">= 1 or a list of distinct seeds >= 0, got {s!r}")


def _check_evolution(ck: _Checker, e: Any, groups: dict, seeded: dict) -> None:
    ck.table(e, ("evolution",), ("group", "arm", "seed", "every"),
             required=("group", "arm", "seed", "every"))
    if (e["group"], e["arm"]) not in seeded or e["seed"] not in seeded[(e["group"],
                                                                         e["arm"])]:
        raise ck.fail(("evolution",), f"evolution run {e['group']}/{e['arm']}/seed"
                      f"{e['seed']} is not in the plan")
    if isinstance(e["every"], bool) or not isinstance(e["every"], int) or e["every"] < 1:
        raise ck.fail(("evolution", "every"), "every must be an integer >= 1")
    g = groups[e["group"]]
    if g.get("measure_every", e["every"]) % e["every"]:
        raise ck.fail(("evolution", "every"), f"every {e['every']} must divide group "
                      f"{e['group']!r}'s measure_every {g['measure_every']}")
    ship = g["arms"][e["arm"]].get("ship_weights_seeds", g.get("ship_weights_seeds"))
    if ship is not None and e["seed"] not in ship:
        raise ck.fail(("evolution",), f"evolution run {e['group']}/{e['arm']}/seed"
                      f"{e['seed']} ships snapshots: add seed {e['seed']} to its "
                      "ship_weights_seeds")


def _check_configs(ck: _Checker, plan: Plan, seeded: dict) -> None:
    """Build each (group, arm)'s training config: a bad option fails at its line."""
    for (gname, aname), seeds in seeded.items():
        try:
            plan.config(Run("", gname, aname, seeds[0]))
        except UserError as e:
            bad = re.search(r"'([^']+)'", str(e))
            key = bad[1].replace("_", "-") if bad else "options"
            a_opts = plan.groups[gname]["arms"][aname].get("options", {})
            keys = (("groups", gname, "arms", aname, key) if key in a_opts
                    else ("groups", gname, "options", key))
            raise ck.fail(keys, f"{gname}/{aname}: {e}") from None


def _check_analysis(ck: _Checker, a: Any, groups: dict) -> None:
    """The ``[analysis]`` table (:mod:`probes.study.analysis`): every threshold a number."""
    ck.table(a, ("analysis",), _ANALYSIS, required=("fd_fill", "fd_threshold",
                                                     "iters_ceiling", "collapse"))
    for k in ("fd_fill", "fd_threshold", "iters_ceiling"):
        ck.number(a[k], ("analysis", k))
    col = ck.table(a["collapse"], ("analysis", "collapse"), _COLLAPSE,
                   required=("fd_max", "min_classes"))
    ck.number(col["fd_max"], ("analysis", "collapse", "fd_max"))
    ck.number(col["min_classes"], ("analysis", "collapse", "min_classes"))
    if not isinstance(col.get("nonfinite", True), bool):
        raise ck.fail(("analysis", "collapse", "nonfinite"), "nonfinite must be true or false")
    if a["fd_fill"] < col["fd_max"]:
        raise ck.fail(("analysis", "fd_fill"), f"fd_fill {a['fd_fill']} must be at least "
                      f"collapse.fd_max {col['fd_max']} (a missing FD is never a good one)")
    if a.get("spread", "range") not in SPREADS:
        raise ck.fail(("analysis", "spread"), f"spread must be one of {', '.join(SPREADS)}, "
                      f"got {a['spread']!r}")


def _seed_values(ck: _Checker, s: Any, keys: tuple) -> list[int]:
    if not (isinstance(s, list) and len(set(s)) == len(s) and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in s)):
        raise ck.fail(keys, f"{keys[-1]} must list distinct seeds >= 0, got {s!r}")
    return s


def _check_results_keys(ck: _Checker, g: dict, gk: tuple) -> None:
    """``measure_every``, ``measure_metrics``, ``ship_weights_seeds`` and ``nonfinite`` of
    group ``g`` (module docstring)."""
    if "ship_weights_seeds" in g:
        _seed_values(ck, g["ship_weights_seeds"], (*gk, "ship_weights_seeds"))
    if g.get("nonfinite", "error") not in NONFINITE:
        raise ck.fail((*gk, "nonfinite"), f"nonfinite must be one of {', '.join(NONFINITE)}, "
                      f"got {g['nonfinite']!r}")
    for key in ("measure_metrics", "final_metrics"):
        if key in g and "measure_every" not in g:
            raise ck.fail((*gk, key), f"{key} needs measure_every")
    if "measure_every" not in g:
        return
    every = g["measure_every"]
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ck.fail((*gk, "measure_every"), f"measure_every must be an integer >= 1, got "
                      f"{every!r}")
    known = SNAPSHOT_METRICS[g["measure"]]
    for key in ("measure_metrics", "final_metrics"):
        metrics = g.get(key, list(known))
        if not (isinstance(metrics, list) and metrics and all(m in known for m in metrics)
                and len(set(metrics)) == len(metrics)):
            raise ck.fail((*gk, key), f"{key} must list distinct numbers of measure "
                          f"{g['measure']!r} ({', '.join(known)}), got {metrics!r}")
    for where, opts in [((*gk, "options"), g["options"])] + [
            ((*gk, "arms", a, "options"), d.get("options", {})) for a, d in g["arms"].items()]:
        snap = opts.get("snapshot-every")
        if snap is not None and (not snap.isdigit() or int(snap) < 1 or every % int(snap)):
            raise ck.fail((*where, "snapshot-every"), f"snapshot-every {snap!r} must divide "
                          f"measure_every {every} (the runs keep the snapshots it measures)")
        if opts.get("keep-snapshots", "0") != "0":
            raise ck.fail((*where, "keep-snapshots"), f"keep-snapshots "
                          f"{opts['keep-snapshots']!r}: with measure_every the runs keep every "
                          'snapshot until it is measured; set keep-snapshots = "0"')
    if g["options"].get("keep-snapshots") != "0" or "snapshot-every" not in g["options"]:
        raise ck.fail((*gk, "options"), 'measure_every needs options snapshot-every (a divisor '
                      'of it) and keep-snapshots = "0"')


def _options(ck: _Checker, opts: Any, keys: tuple) -> None:
    ck.table(opts, keys, tuple(opts) if isinstance(opts, dict) else ())
    for k, v in opts.items():
        if not isinstance(v, str):
            raise ck.fail((*keys, k), f"option {k} = {v!r}: options are text as on the "
                          f'command line, e.g. {k} = "{v}"')


def _check_claims(ck: _Checker, plan: Plan, seeded: dict) -> None:
    """The ``[claims]`` table and the claims, from a file or inline (module docstring)."""
    data = plan.data
    c = data.get("claims", {})
    ck.table(c, ("claims",), ("file", "alpha", "family"))
    if "file" in c:
        if data.get("claim"):
            raise ck.fail(("claim",), "claims come from [claims] file or from [[claim]] "
                          "tables, not both")
        if "family" in c:
            raise ck.fail(("claims", "family"), "family is a key of inline claims; a claims "
                          "file keeps its registered one-sided rule")
        try:
            rows = plan.claims()["claims"]
        except UserError as e:
            raise ck.fail(("claims", "file"), str(e)) from None
    else:
        rows = _check_inline_claims(ck, plan, c)
    for cl in rows:
        _check_claim_target(ck, plan, cl, seeded, inline="file" not in c)


def _check_inline_claims(ck: _Checker, plan: Plan, c: dict) -> list:
    if "alpha" in c and not 0 < ck.number(c["alpha"], ("claims", "alpha")) < 1:
        raise ck.fail(("claims", "alpha"), "alpha must be in (0, 1)")
    if c.get("family", "one-sided") not in FAMILIES:
        raise ck.fail(("claims", "family"), f"family must be one of {', '.join(FAMILIES)}, "
                      f"got {c['family']!r}")
    rows = plan.data.get("claim", [])
    if not isinstance(rows, list):
        raise ck.fail(("claim",), "claims are [[claim]] tables")
    seen: set = set()
    for cl in rows:
        cid = cl.get("id", "?") if isinstance(cl, dict) else "?"
        if cid in seen:
            raise ck.fail(_claim_at(cid), f"claim id {cid!r} is used twice")
        seen.add(cid)
        _check_claim_row(ck, cl, cid, "analysis" in plan.data)
        if cl.get("test") == "tost" and cl["kind"] == "primary" and \
                c.get("family", "one-sided") == "one-sided":
            raise ck.fail((*_claim_at(cid), "test"), f"claim {cid}: a primary TOST claim needs "
                          '[claims] family = "two-sided" (the one-sided family has no '
                          "equivalence verdict)")
    if sum(cl["kind"] == "primary" for cl in rows) > MAX_PRIMARY:
        raise ck.fail(("claim",), f"more than {MAX_PRIMARY} primary claims; make the "
                      "rest exploratory")
    return rows


def _check_claim_row(ck: _Checker, cl: Any, cid: str, v3: bool) -> None:
    """One inline claim's own keys (not yet whether its group, arms and seeds exist)."""
    where = _claim_at(cid)
    ck.table(cl, where, CLAIM_KEYS + (CLAIM_V3_KEYS if v3 else ()), required=CLAIM_KEYS)
    for k in CLAIM_KEYS:
        if k != "seeds":
            ck.text_value(cl[k], (*where, k))
    kinds = KINDS + (("secondary",) if v3 else ())
    if cl["kind"] not in kinds:
        raise ck.fail((*where, "kind"), f"claim {cid}: kind must be one of "
                      f"{', '.join(kinds)}, got {cl['kind']!r}")
    test = cl.get("test", "sign-flip")
    if test not in TESTS:
        raise ck.fail((*where, "test"), f"claim {cid}: test must be one of {', '.join(TESTS)}, "
                      f"got {test!r}")
    expects = ("equivalent",) if test == "tost" else EXPECTS
    if cl["expect"] not in expects:
        raise ck.fail((*where, "expect"), f"claim {cid}: expect must be one of "
                      f"{', '.join(expects)} for test {test}, got {cl['expect']!r}")
    if (test == "tost") != ("margin" in cl):
        raise ck.fail((*where, "margin" if "margin" in cl else "test"), f"claim {cid}: a "
                      "margin (> 0, registered) goes with test = \"tost\" and only with it")
    if "margin" in cl:
        ck.number(cl["margin"], (*where, "margin"))
    if test == "mcnemar" and (cl.get("metric") != "collapsed" or "groups" in cl):
        # one binary outcome per seed: runs of a seed under two settings are not independent
        raise ck.fail((*where, "test"), f"claim {cid}: mcnemar tests one binary outcome "
                      "(metric = \"collapsed\") of one group per seed; a claim pooling "
                      "settings (groups) averages them per seed: use test = \"sign-flip\"")
    s = cl["seeds"]
    if not (isinstance(s, list) and len(s) >= 2 and len(set(s)) == len(s)
            and all(isinstance(x, int) and not isinstance(x, bool) for x in s)):
        raise ck.fail((*where, "seeds"), f"claim {cid}: seeds must list at least 2 "
                      f"distinct seeds, got {s!r}")
    g = cl.get("groups")
    if g is not None and not (isinstance(g, list) and len(g) >= 2 and len(set(g)) == len(g)
                              and all(isinstance(x, str) for x in g)):
        raise ck.fail((*where, "groups"), f"claim {cid}: groups must list at least 2 "
                      f"distinct groups (the settings it pools), got {g!r}")


def _claim_metrics(plan: Plan, group: str) -> tuple[str, ...]:
    """The metrics a claim on ``group`` may name: the report's measures, and with an
    ``[analysis]`` table the derived ones of a measured image group (and gradient fidelity
    of a mixture group)."""
    from probes.study.analysis import DERIVED, FIDELITY
    from probes.study.arms import METRIC_NAMES

    g = plan.groups[group]
    names = METRIC_NAMES[g["measure"]]
    if "analysis" in plan.data and g["measure"] == "image" and "measure_every" in g:
        names += DERIVED
    if "analysis" in plan.data and g["measure"] == "mixture":
        names += FIDELITY
    return names


def _check_claim_target(ck: _Checker, plan: Plan, cl: dict, seeded: dict, *,
                        inline: bool) -> None:
    """A claim's groups, metric, arms and seeds against the plan."""
    where = _claim_at(cl["id"])
    groups = list(cl.get("groups") or [cl["group"]])
    for g in groups:
        if g not in plan.groups:
            raise ck.fail((*where, "groups" if cl.get("groups") else "group"), f"claim "
                          f"{cl['id']}: unknown group {g!r} (groups: {', '.join(plan.groups)})")
        names = _claim_metrics(plan, g)
        if cl["metric"] not in names:
            raise ck.fail((*where, "metric"), f"claim {cl['id']}: metric {cl['metric']!r} is "
                          f"not measured for group {g!r} (measured: {', '.join(names)})")
    if cl["metric"] == "iters_to_fd":
        ceiling = plan.data["analysis"]["iters_ceiling"]
        longest = max(int(plan.groups[g]["options"]["steps"]) for g in groups)
        if ceiling <= longest:
            raise ck.fail(("analysis", "iters_ceiling"), f"iters_ceiling {ceiling} must exceed "
                          f"the steps of every group an iters_to_fd claim names ({longest}, "
                          f"claim {cl['id']}): it stands for 'never reached'")
    if cl["metric"] == "fd_spread" and not cl.get("groups"):
        raise ck.fail((*where, "metric"), f"claim {cl['id']}: fd_spread is a spread across "
                      "settings: name them in groups = [...]")
    if cl["a"] == cl["b"]:
        raise ck.fail((*where, "b"), f"claim {cl['id']}: compares {cl['a']!r} with itself")
    for g in groups:
        for side in ("a", "b"):
            have = seeded.get((g, cl[side]))
            if have is None:
                raise ck.fail((*where, side), f"claim {cl['id']}: arm {cl[side]!r} is not "
                              f"planned in group {g!r}")
            if inline and not set(cl["seeds"]) <= set(have):
                raise ck.fail((*where, "seeds"), f"claim {cl['id']}: seeds "
                              f"{sorted(set(cl['seeds']) - set(have))} are not planned for "
                              f"{g}/{cl[side]}")


def shell_command(plan: Plan, run: Run) -> str:
    return shlex.join(plan.command(run))
