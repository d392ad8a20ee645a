"""The A/B timing harness every bench script uses: interleaved repetitions, medians, ratios.

Absolute seconds on a shared CPU mean little (other processes come and go), but two cases
timed *alternately* in the same run see the same load. So each repetition times every case
once, in an order that reverses every other repetition (A B C, C B A, ...: a linear drift in
load cancels), after a warm-up round. Results are per-case medians and, for each named pair,
the median of the **per-repetition** ratios ``t_a[r] / t_b[r]`` with its quartiles: a pair
timed within a second of each other shares its load, so the ratio is stable where the
seconds are not.

Every script prints one JSON line on stdout (machine, settings, results, targets) and a short
human table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
CLOCKS = ("wall", "cpu")


def add_common_args(p: argparse.ArgumentParser, *, reps: int, warmup: int = 1,
                    timing: bool = True) -> None:
    """``--reps --threads --quick --out`` and, for timed scripts, ``--warmup --clock``."""
    p.add_argument("--reps", type=int, default=reps,
                   help=f"repetitions per case, interleaved (default {reps})")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice, usually the cores)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, few repetitions: checks that the script runs (smoke test)")
    p.add_argument("--out", default=None, help="also write the JSON object to this file")
    if timing:
        p.add_argument("--warmup", type=int, default=warmup,
                       help=f"untimed rounds of every case first (default {warmup})")
        p.add_argument("--clock", choices=CLOCKS, default="wall",
                       help="which clock the headline ratios use (both are recorded): wall "
                            "(perf_counter) or cpu (process_time: immune to being descheduled "
                            "on a loaded machine; use it with --threads 1, since with more "
                            "threads it also counts OpenMP spin-waits)")


def setup_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def interleave(cases: dict[str, Callable[[], Any]], *, reps: int, warmup: int = 1,
               inner: int | dict[str, int] = 1,
               progress: Callable[[str], None] | None = None
               ) -> dict[str, dict[str, list[float]]]:
    """Time ``cases`` alternately, on both clocks; seconds per call per repetition and case.

    Args:
        cases: name -> zero-argument callable (one iteration, one attack call, ...).
        reps: timed repetitions; each times every case once (order reversed every other rep).
        warmup: untimed rounds of every case before the first timed one.
        inner: calls per timed sample (an int, or per case), so that one sample lasts long
            enough for the clock and short enough to stay next to its partner.
        progress: optional callback for a one-line status after each repetition.

    Returns:
        ``{"wall": {name: [reps floats]}, "cpu": {...}}``: ``wall`` from ``perf_counter``,
        ``cpu`` from ``process_time`` (the seconds this process ran: not inflated when other
        processes take the cores, but meaningful only single-threaded, since with more
        threads it also counts OpenMP spin-waits).
    """
    names = list(cases)
    per = {n: (inner[n] if isinstance(inner, dict) else inner) for n in names}
    for _ in range(warmup):
        for n in names:
            for _ in range(per[n]):
                cases[n]()
    times: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in CLOCKS}
    for r in range(reps):
        for n in (names if r % 2 == 0 else names[::-1]):
            fn, k = cases[n], per[n]
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(k):
                fn()
            c1, w1 = time.process_time(), time.perf_counter()
            times["wall"][n].append((w1 - w0) / k)
            times["cpu"][n].append((c1 - c0) / k)
        if progress is not None:
            progress(f"rep {r + 1}/{reps}")
    return times


def quartiles(values: Sequence[float]) -> dict[str, float]:
    """Median and inter-quartile range of ``values`` (inclusive method; one value: itself)."""
    v = sorted(values)
    if len(v) < 2:
        return {"median": v[0], "q1": v[0], "q3": v[0]}
    q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return {"median": statistics.median(v), "q1": q1, "q3": q3}


def pair_ratio(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Per-repetition ratios ``a[r] / b[r]``: median, quartiles and the ratios themselves."""
    ratios = [x / y for x, y in zip(a, b)]
    return {**quartiles(ratios), "per_rep": [round(x, 4) for x in ratios]}


def per_rep(fn: Callable[..., float], *series: Sequence[float]) -> dict[str, Any]:
    """Any per-repetition statistic ``fn(a[r], b[r], ...)``: median, quartiles, values."""
    values = [fn(*xs) for xs in zip(*series)]
    return {**quartiles(values), "per_rep": [round(x, 4) for x in values]}


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {n: statistics.median(t) for n, t in times.items()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """What produced the numbers: CPU, cores, torch threads, versions, load, GPU (if any)."""
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg_1_5_15": loadavg(),
    }


def emit(bench: str, payload: dict[str, Any], table: list[list[str]], *,
         out: str | None = None, notes: Sequence[str] = ()) -> dict[str, Any]:
    """Print the JSON line (stdout) and the table (stderr); optionally write ``out``.

    ``payload`` holds ``settings``, ``results`` and ``targets``; machine info (with the load
    average at the end of the run) is added here.
    """
    record = {"bench": bench, "machine": machine_info(), **payload}
    line = json.dumps(record, sort_keys=False, default=float)
    print(render_table(table), file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(line, flush=True)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=2, default=float) + "\n")
    return record


def render_table(rows: list[list[str]]) -> str:
    """A markdown table (first row = header), columns padded for a terminal."""
    if not rows:
        return ""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    fmt = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(rows[0]), sep, *map(fmt, rows[1:])])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt_ratio(q: dict[str, float], digits: int = 3) -> str:
    """``1.234 [1.20-1.26]``: median and inter-quartile range."""
    return f"{q['median']:.{digits}f} [{q['q1']:.{digits}f}-{q['q3']:.{digits}f}]"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")
