"""``asgan-probe report``: a markdown report with figures comparing training runs.

For each run directory it reads ``config.json``, ``stats.jsonl`` and the newest sample grid,
and writes ``report.md``, ``training-curves.png`` (losses and D logits against step) and
``samples.png`` (the final sample grids side by side, when a run has one) into the output
folder, built whole (:func:`asgan_base.lock.build_into`): two reports into one folder at once
leave one of them, complete. Figures are ``matplotlib.figure.Figure`` objects
(:mod:`asgan_base.figures`): the global backend is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asgan_base.errors import UserError
from asgan_base.figures import PALETTE, figure, save_figure
from probes.io.edge import eps_unit_of_config as of_config

CURVES = (("loss_d", "D loss"), ("loss_g", "G loss (non-saturating)"),
          ("logits_real", "mean D logit"))
REPORT_FILES = ("report.md", "training-curves.png", "samples.png")  # what a report may write


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """Config, stats rows and the newest sample grid of a run directory."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        rows = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()
                if line.strip()]
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{run_dir} is not a complete run directory (config.json and "
                        f"stats.jsonl expected): {type(e).__name__}") from None
    grids = sorted((run_dir / "samples").glob("step-*.png"))
    return {"dir": run_dir, "name": run_dir.name, "config": config, "rows": rows,
            "samples": grids[-1] if grids else None}


def _label(run: dict) -> str:
    c = run["config"]
    if c.get("trainer") == "asgan":
        return f"{run['name']} (asgan, eps {of_config(c).label(c['eps'])}, {c['perturbation']})"
    return f"{run['name']} (baseline)"


def plot_curves(runs: list[dict], path: Path) -> None:
    """D and G losses and the mean D logits (real solid, fake dashed) of ``runs`` (from
    :func:`read_run`) against the training step, one colour per run, written to ``path``."""
    fig, axes = figure(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.2), dpi=120)
    for ax, (key, title) in zip(axes, CURVES):
        for i, run in enumerate(runs):
            steps = [r["step"] for r in run["rows"] if key in r]
            values = [r[key] for r in run["rows"] if key in r]
            ax.plot(steps, values, color=PALETTE[i % len(PALETTE)], label=_label(run), lw=1.4)
            if key == "logits_real":
                fake = [r["logits_fake"] for r in run["rows"] if "logits_fake" in r]
                ax.plot(steps, fake, color=PALETTE[i % len(PALETTE)], ls="--", lw=1.0)
        ax.set_xlabel("iteration")
        ax.set_ylabel(title)
        ax.set_title(title + (" (solid real, dashed fake)" if key == "logits_real" else ""),
                     fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def plot_samples(runs: list[dict], path: Path) -> bool:
    """The newest sample grid of each run side by side; False (nothing written) when no
    run has one."""
    from PIL import Image

    with_grids = [r for r in runs if r["samples"] is not None]
    if not with_grids:
        return False
    fig, axes = figure(1, len(with_grids), figsize=(4 * len(with_grids), 4.3), dpi=120,
                       squeeze=False)
    for ax, run in zip(axes[0], with_grids):
        ax.imshow(Image.open(run["samples"]))
        ax.set_title(_label(run) + f"\n{run['samples'].stem}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
    return True


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write ``report.md`` and its figures for ``run_dirs`` into ``out``; returns the md path.

    Other files in ``out`` are kept; the report's own files all come from this build."""
    from asgan_base.lock import build_into

    runs = [read_run(d) for d in run_dirs]
    with build_into(out, last=["report.md"], owned=REPORT_FILES) as tmp:
        _build_report(runs, tmp)
    return Path(out) / "report.md"


def _build_report(runs: list[dict], out: Path) -> None:
    from asgan_base.files import atomic_write_bytes

    plot_curves(runs, out / "training-curves.png")
    samples = plot_samples(runs, out / "samples.png")
    lines = ["# asgan-probe report", "",
             "Runs compared (final log window; losses are non-saturating GAN losses, logits "
             "are D's raw outputs):", "",
             "| run | trainer | eps | steps | D loss | G loss | D(real) | D(fake) "
             "| images/s |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        c, last = run["config"], run["rows"][-1] if run["rows"] else {}
        eps = of_config(c).label(c["eps"]) if c.get("trainer") == "asgan" else "-"
        lines.append(f"| {run['name']} | {c.get('trainer')} | {eps} | {last.get('step', 0)} | "
                     f"{last.get('loss_d', float('nan')):.3f} | "
                     f"{last.get('loss_g', float('nan')):.3f} | "
                     f"{last.get('logits_real', float('nan')):.2f} | "
                     f"{last.get('logits_fake', float('nan')):.2f} | "
                     f"{last.get('images_per_s', float('nan')):.0f} |")
    lines += ["", "![training curves](training-curves.png)", ""]
    if samples:
        lines += ["![final samples](samples.png)", ""]
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
