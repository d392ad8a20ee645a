"""The study's registered claims (``probes/study/claims.json``, package data): loading and
validating them, checking that they were registered before the checkpoints they judge, and
the two claims tables.

A claim compares arm ``a`` with arm ``b`` in one group on one metric, paired by seed, with an
expected sign of ``a - b`` (``lower`` / ``higher``). At most 6 are ``primary``: they carry a
verdict from :func:`probes.core.stats.primary_verdicts` (one-sided exact sign-flip test in the
registered direction, Holm-adjusted across the primary claims). The others are
``exploratory``: the same numbers, no verdict and no "held" count.

**Registration rule** (:func:`registration`): the claims may be called primary only when the
file being judged is byte-identical to the claims file in the commit that trained every
checkpoint they judge (the manifest's ``code_commit`` of each entry whose group and arm a
claim names), and, where an entry records ``started_utc``, the claims file's last commit is
no later than that. Comparing contents at a commit rather than clock times makes the rule
immune to clock skew and to edits that were later reverted; a claims file edited after the
checkpoints' code was committed (or not committed at all) differs from it and is refused.
Without git, or for a commit git cannot find, registration cannot be checked and is refused.
The rule means "registered before training" only when ``code_commit`` is taken as the run
starts (a commit taken when the run is shipped would admit claims written during the run).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from asgan_base.errors import UserError
from probes.core.stats import paired, primary_verdicts

CLAIMS_FILE = Path(__file__).resolve().with_name("claims.json")  # package data: a wheel has it
MAX_PRIMARY = 6
KINDS = ("primary", "exploratory")
EXPECTS = ("lower", "higher")
_CLAIM_KEYS = ("id", "kind", "group", "metric", "a", "b", "expect", "rationale")


def _fail(path: Path, msg: str) -> UserError:
    return UserError(f"{path}: {msg}")


def load_claims(path: str | Path = CLAIMS_FILE) -> dict[str, Any]:
    """Read and validate a claims file.

    Returns:
        ``{"path", "alpha", "min_pairs_primary", "arms" {name: description}, "metrics"
        {group: {metric: description}}, "claims" [{id, kind, group, metric, a, b, expect,
        rationale}] in file order}``.

    Raises:
        asgan_base.errors.UserError: one line naming the file, the claim and what is wrong.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(path, "no such claims file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(path, f"cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise _fail(path, f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(raw, dict):
        raise _fail(path, "must hold a JSON object")
    for key, kind in (("arms", dict), ("metrics", dict), ("claims", list)):
        if not isinstance(raw.get(key), kind):
            raise _fail(path, f"needs {key!r} ({kind.__name__})")
    alpha = raw.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise _fail(path, f"alpha must be a number in (0, 1), got {alpha!r}")
    min_pairs = raw.get("min_pairs_primary", 2)
    if isinstance(min_pairs, bool) or not isinstance(min_pairs, int) or min_pairs < 2:
        raise _fail(path, f"min_pairs_primary must be an integer >= 2, got {min_pairs!r}")
    arms, metrics = raw["arms"], raw["metrics"]
    claims, seen = [], set()
    for i, c in enumerate(raw["claims"]):
        claims.append(_claim_entry(path, i, c, arms, metrics, seen))
    n_primary = sum(c["kind"] == "primary" for c in claims)
    if n_primary > MAX_PRIMARY:
        raise _fail(path, f"{n_primary} primary claims; at most {MAX_PRIMARY} (make the rest "
                    "exploratory)")
    return {"path": path, "alpha": float(alpha), "min_pairs_primary": min_pairs, "arms": arms,
            "metrics": metrics, "claims": claims}


def _claim_entry(path: Path, i: int, c: Any, arms: Mapping, metrics: Mapping,
                 seen: set) -> dict[str, str]:
    """Claim ``i`` of a claims file, checked (:func:`load_claims`); adds its id to ``seen``."""
    where = f"claim {i + 1}" + (f" ({c.get('id')})" if isinstance(c, dict) else "")
    if not isinstance(c, dict):
        raise _fail(path, f"{where} must be an object")
    missing = [k for k in _CLAIM_KEYS if not isinstance(c.get(k), str) or not c[k].strip()]
    if missing:
        raise _fail(path, f"{where} needs non-empty text for {', '.join(missing)}")
    extra = sorted(set(c) - set(_CLAIM_KEYS))
    if extra:
        raise _fail(path, f"{where}: unknown key(s) {', '.join(extra)}; known: "
                    f"{', '.join(_CLAIM_KEYS)}")
    if c["id"] in seen:
        raise _fail(path, f"{where}: id {c['id']!r} is used twice")
    seen.add(c["id"])
    if c["kind"] not in KINDS:
        raise _fail(path, f"{where}: kind must be one of {', '.join(KINDS)}, got "
                    f"{c['kind']!r}")
    if c["expect"] not in EXPECTS:
        raise _fail(path, f"{where}: expect must be one of {', '.join(EXPECTS)}, got "
                    f"{c['expect']!r}")
    if c["group"] not in metrics:
        raise _fail(path, f"{where}: group {c['group']!r} has no entry in 'metrics' "
                    f"(groups: {', '.join(metrics)})")
    if c["metric"] not in metrics[c["group"]]:
        raise _fail(path, f"{where}: metric {c['metric']!r} is not listed for group "
                    f"{c['group']!r} (listed: {', '.join(metrics[c['group']])})")
    for side in ("a", "b"):
        if c[side] not in arms:
            raise _fail(path, f"{where}: arm {c[side]!r} is not described in 'arms'")
    if c["a"] == c["b"]:
        raise _fail(path, f"{where}: compares arm {c['a']!r} with itself")
    return {k: c[k] for k in _CLAIM_KEYS}


def _git(cwd: Path, *args: str) -> str | None:
    """stdout of ``git -C cwd args`` stripped, or None when git is absent or the call fails."""
    try:
        res = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _utc(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return None


def registration(path: str | Path, entries: Mapping[str, Mapping] | Iterable[Mapping], *,
                 claims: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Whether the claims in ``path`` were registered before the checkpoints they judge.

    Applies the rule in this module's docstring to the manifest entries (``read_manifest()``'s
    dict or a list of entries) whose ``group`` and ``arm`` some claim names.

    Returns:
        ``{"claims_commit": full hash of the file's last commit (``git log -1 --format=%H``) or
        "unknown", "code_commits": sorted ``code_commit`` values of the judged checkpoints,
        "checkpoints": how many were judged, "code_dirty": ``{path: [files]}`` of the judged
        checkpoints whose run started with uncommitted training code (disclosed, not a
        reason to refuse: the rule is about the claims file), "primary_allowed": bool,
        "reason": one line, "" when allowed}``.
    """
    path = Path(path).resolve()
    claims = load_claims(path) if claims is None else claims
    judged_pairs = {(c["group"], arm) for c in claims["claims"] for arm in (c["a"], c["b"])}
    rows = list(entries.values()) if isinstance(entries, Mapping) else list(entries)
    judged = [e for e in rows if (e.get("group"), e.get("arm")) in judged_pairs]
    commits = sorted({str(e.get("code_commit") or "unknown") for e in judged})
    dirty = {str(e.get("path")): list(e["code_dirty"]) for e in judged if e.get("code_dirty")}
    out = {"claims_commit": "unknown", "code_commits": commits, "checkpoints": len(judged),
           "code_dirty": dict(sorted(dirty.items())), "primary_allowed": False, "reason": ""}
    where = path.parent
    if _git(where, "rev-parse", "--show-toplevel") is None:
        out["reason"] = (f"git is not available or {where} is not in a git repository: "
                         "registration cannot be checked")
        return out
    last = _git(where, "log", "-1", "--format=%H %ct", "--", path.name)
    if not last:
        out["reason"] = f"{path.name} is not committed: claims were not registered"
        return out
    out["claims_commit"], committed_at = last.split()[0], int(last.split()[1])
    if not judged:
        out["reason"] = "no checkpoint in the manifest belongs to an arm the claims name"
        return out
    blob = _git(where, "hash-object", "--", path.name)
    at_commit: dict[str, str | None] = {}
    for e in judged:
        out["reason"] = _entry_reason(where, path, e, blob, committed_at, at_commit)
        if out["reason"]:
            return out
    out["primary_allowed"] = True
    return out


def _entry_reason(where: Path, path: Path, e: Mapping, blob: str | None, committed_at: int,
                  at_commit: dict[str, str | None]) -> str:
    """Why checkpoint entry ``e`` breaks :func:`registration`'s rule for the claims file
    ``path`` (git blob ``blob``, last committed at ``committed_at``), or ""; ``at_commit``
    caches the file's blob per code commit."""
    k = e.get("code_commit")
    if not k:
        return f"{e.get('path')}: the manifest records no code_commit"
    if k not in at_commit:
        if _git(where, "rev-parse", "--verify", "-q", f"{k}^{{commit}}") is None:
            return (f"{e.get('path')}: its code commit {k} is not in this repository "
                    "(registration cannot be checked)")
        at_commit[k] = _git(where, "rev-parse", "--verify", "-q", f"{k}:./{path.name}")
    if at_commit[k] is None:
        return (f"{e.get('path')}: {path.name} did not exist in its code commit {k}: the "
                "claims came after the checkpoints")
    if at_commit[k] != blob:
        return (f"{e.get('path')}: {path.name} differs from the version in its code commit "
                f"{k}: the claims were edited after the checkpoints")
    started = _utc(e["started_utc"]) if e.get("started_utc") else None
    if e.get("started_utc") and started is None:
        return f"{e.get('path')}: started_utc {e['started_utc']!r} is not ISO 8601"
    if started is not None and committed_at > started:
        return (f"{e.get('path')}: {path.name} was committed after the run started "
                f"({e['started_utc']})")
    return ""


def _values(tables: Mapping, group: str, arm: str, metric: str) -> dict[int, float] | None:
    by_seed = tables.get(group, {}).get(arm)
    if not by_seed or not all(metric in m for m in by_seed.values()):
        return None
    return {int(s): float(m[metric]) for s, m in by_seed.items()}


def planned_pairs(claim: Mapping[str, Any],
                  planned: Mapping[tuple[str, str], Iterable[int]] | None) -> int | None:
    """Seed pairs the plan gives ``claim`` (seeds planned for both arms), None without a plan
    naming both arms."""
    if planned is None:
        return None
    a, b = planned.get((claim["group"], claim["a"])), planned.get((claim["group"], claim["b"]))
    return None if a is None or b is None else len(set(a) & set(b))


def evaluate_claims(tables: Mapping[str, Mapping[str, Mapping[int, Mapping[str, float]]]],
                    claims: Mapping[str, Any], registration: Mapping[str, Any],
                    planned: Mapping[tuple[str, str], Iterable[int]] | None = None
                    ) -> dict[str, list[dict[str, Any]]]:
    """The numbers of every claim, and verdicts for the primary ones when registration allows
    and every primary claim has the seeds its plan gives it.

    Args:
        tables: ``{group: {arm: {seed: {metric: value}}}}``, as ``probes.study.arms.collect``
            returns per group.
        claims: :func:`load_claims`'s result.
        registration: :func:`registration`'s result; primary claims get verdicts only when
            ``primary_allowed`` (else verdict ``"not judged"``).
        planned: ``{(group, arm): planned seeds}`` (the study's PLAN.json), or None (no plan:
            judge whatever seeds there are). A claim with ``seeds`` (a plan's claims,
            :meth:`probes.study.plan.Plan.claims`) is judged on exactly those seeds, whatever
            others are measured, and its ``n_planned`` is their number. While any primary
            claim has fewer seed pairs than its plan gives it, every primary verdict is
            ``"pending"``: the family is judged once, at the registered number of seeds,
            never at a number chosen by looking (no optional stopping); the interim numbers
            are still shown.

    Returns:
        ``{"primary": [...], "exploratory": [...]}``, rows in file order: the claim's fields,
        ``n`` (seed pairs), ``n_planned`` (pairs the plan gives it, or None), ``mean_a``,
        ``mean_b``, ``diff``, ``lo``, ``hi`` (95% t-interval), ``d_z``, ``p`` (one-sided exact
        sign-flip p in the registered direction), ``agree`` (pairs on the claimed side) and,
        for primary rows, ``p_holm`` and ``verdict``. A claim whose group, arm or metric was
        not measured has ``n = 0`` and NaN numbers.
    """
    rows = [_claim_numbers(tables, c, planned) for c in claims["claims"]]
    primary = [r for r in rows if r["kind"] == "primary"]
    verdicts = primary_verdicts([r["diffs"] for r in primary], [r["expect"] for r in primary],
                                alpha=claims["alpha"])
    pending = any(r["n_planned"] is not None and r["n"] < r["n_planned"] for r in primary)
    for r, v in zip(primary, verdicts):
        r["p_holm"], r["zero_variance"] = v["p_holm"], v["zero_variance"]
        r["verdict"] = ("not judged" if not registration["primary_allowed"]
                        else "pending" if pending else v["verdict"])
    for r in rows:
        del r["diffs"]
        r.pop("seeds", None)
    return {"primary": primary, "exploratory": [r for r in rows if r["kind"] != "primary"]}


def _claim_numbers(tables: Mapping, c: Mapping[str, Any],
                   planned: Mapping[tuple[str, str], Iterable[int]] | None) -> dict[str, Any]:
    """One claim's row of :func:`evaluate_claims` (with its ``diffs``, for the verdicts)."""
    va = _values(tables, c["group"], c["a"], c["metric"])
    vb = _values(tables, c["group"], c["b"], c["metric"])
    n_planned = planned_pairs(c, planned)
    if c.get("seeds") is not None:  # judged on exactly its registered seeds, no others
        keep = set(c["seeds"])
        va = {s: v for s, v in va.items() if s in keep} if va else va
        vb = {s: v for s, v in vb.items() if s in keep} if vb else vb
        n_planned = len(keep)
    row = dict(c, n=0, n_planned=n_planned, mean_a=math.nan,
               mean_b=math.nan, diff=math.nan, lo=math.nan, hi=math.nan, d_z=math.nan,
               p=math.nan, agree=0, diffs=None)
    common = sorted(set(va) & set(vb)) if va and vb else []
    if common:
        d = paired(va, vb)
        row.update(n=len(common), mean_a=sum(va[s] for s in common) / len(common),
                   mean_b=sum(vb[s] for s in common) / len(common), diff=d["mean"],
                   lo=d["lo"], hi=d["hi"], d_z=d["d_z"], diffs=list(d["diffs"].values()),
                   p=d["p_less"] if c["expect"] == "lower" else d["p_greater"],
                   agree=sum((x < 0) if c["expect"] == "lower" else (x > 0)
                             for x in d["diffs"].values()))
    return row


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}g}"


def _diff_cell(r: Mapping) -> str:
    if not r["n"]:
        return "not measured"
    return f"{_f(r['diff'])} [{_f(r['lo'])}, {_f(r['hi'])}]"


def _shown(path: str | Path) -> str:
    """The claims file as the report names it: relative to the repository root if inside."""
    try:
        return Path(path).resolve().relative_to(CLAIMS_FILE.parents[2]).as_posix()
    except ValueError:
        return str(path)


def _n_cell(r: Mapping) -> str:
    return f"{r['n']}" if r["n_planned"] is None else f"{r['n']} of {r['n_planned']}"


def claims_markdown(tables: Mapping[str, Mapping[str, Mapping[int, Mapping[str, float]]]],
                    claims: Mapping[str, Any], registration: Mapping[str, Any],
                    planned: Mapping[tuple[str, str], Iterable[int]] | None = None,
                    measured: Mapping[str, str] | None = None) -> str:
    """The report's claims section: registration line, the primary table (first), the
    exploratory table, and a few lines on the tests and their limits. Markdown text.

    Args: as :func:`evaluate_claims`; ``measured``: metric -> what its number measures,
    printed after the rationale of each primary claim on that metric (a registered rationale
    cannot be edited, so a precise wording goes beside it).
    """
    ev = evaluate_claims(tables, claims, registration, planned)
    prim, expl, alpha = ev["primary"], ev["exploratory"], claims["alpha"]
    lines = (_registration_lines(claims, registration, prim, alpha)
             + _primary_lines(prim, measured, alpha) + _exploratory_lines(expl)
             + _reading_lines(len(prim), alpha))
    return "\n".join(lines) + "\n"


def _registration_lines(claims: Mapping, registration: Mapping, prim: list,
                        alpha: float) -> list[str]:
    """The lines above the primary table: the claims file, the judged checkpoints' code,
    and whether the verdicts stand."""
    m = len(prim)
    lines = [f"Claims: `{_shown(claims['path'])}` at commit "
             f"`{registration['claims_commit']}`; the {registration['checkpoints']} "
             "checkpoints they judge were trained by code at "
             + (", ".join(f"`{k}`" for k in registration["code_commits"]) or "(none)") + "."]
    dirty = registration.get("code_dirty") or {}
    if dirty:
        files = sorted({f for fs in dirty.values() for f in fs})
        lines.append(f"{len(dirty)} of them started with uncommitted changes to the training "
                     f"code ({', '.join(f'`{f}`' for f in files)}; `code_dirty` in "
                     "`checkpoints/MANIFEST.json`): "
                     # the run, group/arm/seed, from .../<group>/<arm>/seed<k>/ckpt-*.safetensors
                     + ", ".join(f"`{'/'.join(Path(p).parts[-4:-1])}`" for p in dirty) + ".")
    missing = [r for r in prim if r["n_planned"] is not None and r["n"] < r["n_planned"]]
    if registration["primary_allowed"] and missing:
        lines.append(f"**The primary verdicts are pending**: {len(missing)} of the {m} "
                     "primary claims have fewer seed pairs than the plan gives them ("
                     + ", ".join(f"{r['id']} {r['n']} of {r['n_planned']}" for r in missing)
                     + "). The numbers below are interim and decide nothing; the verdicts "
                     "are computed once, when every planned seed is trained (the number of "
                     "seeds was fixed in advance: no optional stopping).")
    elif registration["primary_allowed"]:
        held = sum(r["verdict"] == "held" for r in prim)
        lines.append(f"**{held} of {m} primary claims held** (exact one-sided sign-flip test, "
                     f"Holm-adjusted across the {m}, alpha {alpha:g}).")
    else:
        lines.append(f"**No claim is judged as primary**: {registration['reason']}. The "
                     "registered primary claims are shown with their numbers only.")
    return lines


def _primary_lines(prim: list, measured: Mapping[str, str] | None, alpha: float) -> list[str]:
    """The primary table, each claim's rationale, and which claims cannot be held at their
    number of pairs."""
    m = len(prim)
    lines = ["", "| id | group: metric (expected) | A vs B | n | mean A | mean B | "
             "A - B [95% CI] | d_z | exact p | Holm p | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in prim:
        lines.append(f"| {r['id']} | {r['group']}: {r['metric']} ({r['expect']}) | {r['a']} vs "
                     f"{r['b']} | {_n_cell(r)} | {_f(r['mean_a'])} | {_f(r['mean_b'])} | "
                     f"{_diff_cell(r)} | {_f(r['d_z'], 2)} | {_f(r['p'], 2)} | "
                     f"{_f(r['p_holm'], 2)} | **{r['verdict']}**"
                     + (" (zero variance)" if r["zero_variance"] else "") + " |")
    measured = measured or {}
    lines += [""] + [f"- **{r['id']}**: {r['rationale']}"
                     + (f" *Measured*: {measured[r['metric']]}" if r["metric"] in measured
                        else "") for r in prim]
    # the floor that matters is the one at the number of pairs the verdict will use
    short = [(r, r["n_planned"] or r["n"]) for r in prim if r["n"]]
    short = [(r, k) for r, k in short if 2.0 ** -k > alpha / max(m, 1)]
    if short:
        lines.append("- Too few seeds to be held whatever the data: "
                     + ", ".join(f"{r['id']} ({k} pairs: floor {2.0 ** -k:.3g} > "
                                 f"{alpha:g}/{m})" for r, k in short) + ".")
    return lines


def _exploratory_lines(expl: list) -> list[str]:
    """The exploratory table."""
    lines = ["", "Exploratory claims (registered with the primary ones; numbers only, no "
             "verdict, p not adjusted for the many comparisons):", "",
             "| id | group: metric (expected) | A vs B | n | mean A | mean B | "
             "A - B [95% CI] | d_z | exact p | pairs agree |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in expl:
        lines.append(f"| {r['id']} | {r['group']}: {r['metric']} ({r['expect']}) | {r['a']} vs "
                     f"{r['b']} | {_n_cell(r)} | {_f(r['mean_a'])} | {_f(r['mean_b'])} | "
                     f"{_diff_cell(r)} | {_f(r['d_z'], 2)} | {_f(r['p'], 2)} | "
                     + (f"{r['agree']}/{r['n']} |" if r["n"] else "– |"))
    return lines


def _reading_lines(m: int, alpha: float) -> list[str]:
    """How to read the tables (the tests, Holm, the verdicts)."""
    lines = [
        "", "How to read these tables:",
        "- Arms are paired by seed; A - B is the mean of the per-seed differences, with a "
        "Student-t 95% interval and d_z = mean / sd of the differences. These describe; they "
        "decide nothing.",
        "- The verdict rests on the exact sign-flip test: under no effect each seed's "
        "difference is as likely negative as positive, and p is the share of all 2^n sign "
        "patterns whose sum is at least as far on the expected side as the observed one "
        "(one-sided, direction registered in advance). It assumes only that symmetry, but its "
        f"smallest possible value is 2^-n: 1/32 with 5 seeds, 1/256 with 8; with {m} claims "
        f"the first Holm step needs p <= {alpha:g}/{m}.",
        f"- Holm's step-down adjustment keeps the chance of any false *held* among the {m} "
        f"primary claims at most {alpha:g}. *held*: Holm p <= {alpha:g}; *opposite*: the "
        "same test in the other direction passes; *inconclusive*: neither, or all differences "
        "equal (zero variance), or fewer than 2 seeds; *not measured*: the arm or metric is "
        "missing (it still counts in the family); *pending*: some primary claim has fewer "
        "seed pairs than the plan gives it (n reads \"trained of planned\"), so none is "
        "judged yet.",
        "- Exploratory p-values are unadjusted and many: about one in twenty would fall below "
        "0.05 with no effect at all. Seeds vary initialisation, data order and latents only; "
        "every verdict is about this scale of model and training, not about the paper's."]
    return lines
