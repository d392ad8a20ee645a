"""Every figure function leaves the global matplotlib backend alone: in a fresh process with a
non-Agg backend selected (as a notebook's inline one would be), each public plot function of
``probes.viz`` and ``trainers.plots`` is called once on small seeded inputs; afterwards the
backend is still the one selected, pyplot was never imported (figures are
``matplotlib.figure.Figure`` objects, which render with the Agg canvas on ``savefig`` without
global state), and every file written is a whole PNG.

The check runs in a subprocess because pyplot, once imported by any other test, stays in
``sys.modules``; seaborn imports pyplot itself, so the pyplot check is made before the two
seaborn-drawn study figures, and the backend check after all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records() -> list[dict]:
    """Attack-sweep-like records: 2 checkpoints x 2 methods x 2 populations x 3 eps; one
    point with a clean-accuracy warning (drawn as a cross, with a legend entry)."""
    rng = np.random.default_rng(0)
    out = []
    for label in ("base", "asgan"):
        for method in ("fgsm", "bim"):
            for pop in ("real", "fake"):
                for j, eps in enumerate((1 / 255, 2 / 255, 4 / 255)):
                    warn = "clean accuracy 0.40 < 0.5" if (j, label) == (0, "base") else None
                    out.append({"label": label, "method": method, "population": pop,
                                "eps": eps, "flip_rate": min(1.0, 0.2 * j + rng.random() / 5),
                                "warning": warn})
    return out


def _mixture_panels() -> list[dict]:
    """Two generators on a ring of 8 modes (std 0.02), 400 points each."""
    from probes.core.coverage import mixture_coverage

    g = torch.Generator().manual_seed(0)
    angles = torch.arange(8) * (2 * torch.pi / 8)
    modes = torch.stack([2 * angles.cos(), 2 * angles.sin()], 1)
    panels = []
    for title, spread in (("tight", 0.02), ("loose", 0.3)):
        x = modes[torch.randint(0, 8, (400,), generator=g)]
        x = x + spread * torch.randn(400, 2, generator=g)
        panels.append({"title": title, "data": "ring8", "x": x.numpy(), "modes": modes.numpy(),
                       "std": 0.02, "result": mixture_coverage(x, modes, 0.02)})
    return panels


def _stacked_entries() -> list[dict]:
    from probes.core.coverage import stacked_coverage

    g = torch.Generator().manual_seed(1)
    real = torch.randint(0, 10, (3000, 3), generator=g)
    collapsed = torch.randint(0, 3, (3000, 3), generator=g)
    return [{"label": "real", "reference": True, "result": stacked_coverage(real)},
            {"label": "G", "result": stacked_coverage(collapsed)}]


def _histograms() -> list[dict]:
    edges = np.linspace(-1, 1, 22)
    rng = np.random.default_rng(2)
    return [{"label": f"run {s}", "edges": edges,
             "counts": np.histogram(rng.normal(0, s, 2000), edges)[0], "under": 3, "over": 1}
            for s in (0.2, 0.4)]


def _evolutions() -> list[dict]:
    rng = np.random.default_rng(3)

    def snap(step):
        return {"step": step, "measures": {k: {"mean": m, "ci_low": m - 0.1, "ci_high": m + 0.1}
                                           for k in ("l1", "hoyer") for m in [rng.random()]}}

    return [{"label": lab, "n": 16, "population": "real", "wrt": "logit",
             "snapshots": [snap(s) for s in (0, 10, 20)]} for lab in ("base", "asgan")]


def _table() -> dict:
    """``{arm: {seed: {"fd": ...}}}``, 3 seeds per arm."""
    rng = np.random.default_rng(4)
    arms = ("baseline", "twice", "asgan-eps0.5", "asgan-eps2", "gaussian-eps2")
    return {arm: {s: {"fd": float(10 + i + rng.normal())} for s in range(3)}
            for i, arm in enumerate(arms)}


def _runs(out: Path) -> list[dict]:
    """Two run records as :func:`probes.viz.runs.read_run` returns them, with sample grids."""
    from trainers.plots import grid_png

    g = torch.Generator().manual_seed(5)
    runs = []
    for name, config in (("base", {"trainer": "baseline"}),
                         ("as", {"trainer": "asgan", "eps": 2 / 255, "perturbation": "fgsm"})):
        grid = out / f"{name}-step-00000010.png"
        grid.write_bytes(grid_png(torch.rand(16, 1, 8, 8, generator=g) * 2 - 1, (-1.0, 1.0)))
        rows = [{"step": s, "loss_d": 1.0 / (s + 1), "loss_g": 0.5 + s / 100,
                 "logits_real": 0.1 * s, "logits_fake": -0.1 * s} for s in (0, 5, 10)]
        runs.append({"dir": out, "name": name, "config": config, "rows": rows,
                     "samples": grid})
    return runs


def draw_all(out: Path, check: bool = True) -> list[str]:
    """Call every public plot function once, writing into ``out``; returns the PNGs written.
    With ``check``, asserts that pyplot has not been imported (before the seaborn figures)
    and that the backend is unchanged (after all); without, it only draws (to compare the
    renders of two versions of the code)."""
    import matplotlib

    from probes.viz import attack, coverage, gradients, runs, study
    from trainers import plots

    backend = matplotlib.get_backend()
    g = torch.Generator().manual_seed(6)
    x = torch.rand(8, 1, 8, 8, generator=g) * 2 - 1
    grads = [("base", torch.randn(8, 1, 8, 8, generator=g)),
             ("asgan", torch.randn(8, 1, 8, 8, generator=g))]
    written = [
        attack.plot_flip_curves(_records(), out / "flip.png", title="flip"),
        coverage.plot_mixtures(_mixture_panels(), out / "mixtures.png"),
        coverage.plot_stacked(_stacked_entries(), out / "stacked.png"),
        gradients.plot_histograms(_histograms(), out / "hist.png", title="hist"),
        gradients.plot_maps(x, grads, out / "maps.png"),
        gradients.plot_saliency(x, grads, out / "saliency.png", n=8),
        gradients.plot_rows([("input", "image", x), ("map", "map", x[:, 0].abs())],
                            out / "rows.png"),
        gradients.plot_evolution(_evolutions(), out / "evolution.png"),
        study.plot_sample_grids([("a", x), ("b", -x)], out / "grids.png", nrow=4),
    ]
    run_records = _runs(out)
    runs.plot_curves(run_records, out / "curves.png")
    assert runs.plot_samples(run_records, out / "samples.png")
    written += [out / "curves.png", out / "samples.png"]
    (out / "scatter.png").write_bytes(plots.scatter_png(torch.randn(50, 2, generator=g),
                                                        torch.randn(80, 2, generator=g), "s"))
    written.append(out / "scatter.png")
    assert not check or "matplotlib.pyplot" not in sys.modules, "a figure function imported pyplot"
    table = _table()
    eps = {"twice": (0.0, "pixel"), "asgan-eps0.5": (0.5, "pixel"), "asgan-eps2": (2.0, "pixel"),
           "gaussian-eps2": (2.0, "pixel")}
    written += [study.plot_eps_sweep([("fd", "FD", table, eps)], out / "sweep.png", title="t",
                                     baseline="baseline", ablation=["gaussian-eps2"]),
                study.plot_arms(table, [("fd", "FD")], out / "arms.png")]
    assert not check or matplotlib.get_backend() == backend, \
        f"backend switched from {backend} to {matplotlib.get_backend()}"
    return [str(p) for p in written]


def test_figures_leave_the_global_backend_alone_and_write_whole_pngs(tmp_path):
    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import test_viz_backend as T; "
            "import matplotlib; assert matplotlib.get_backend() == 'svg'; "
            "print(json.dumps(T.draw_all(Path(sys.argv[2]))))")
    env = dict(os.environ, MPLBACKEND="svg")
    proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(written) == 14
    for path in map(Path, written):
        assert path.read_bytes()[:8] == PNG_MAGIC, path.name
        with Image.open(path) as im:
            im.load()  # the whole stream decodes, not just the header
            assert min(im.size) > 50, (path.name, im.size)
