"""Published mode-coverage numbers, as data, to print beside ours.

Sources: VEEGAN (Srivastava et al., NIPS 2017) Tables 1 and 2; PacGAN (Lin et al., NeurIPS
2018) Tables 1, 2 and 3, as given in the authors' repositories (transcribed in
``../shared/references/mode-coverage.md``). Every value is ``[mean, standard error]``
(standard error None where the paper gives none). High quality is in percent, KL in nats.

Protocols differ between the papers and from ours; :data:`DIFFERENCES` says how, and every
side-by-side table carries those notes. Compare within one protocol.

Examples:
    >>> [t["name"] for t in tables_for("ring8")]
    ['VEEGAN Table 1', 'PacGAN Table 1']
    >>> print(side_by_side("ring8", [{"label": "ours", "modes_captured": 8,
    ...                                "high_quality_pct": 97.0, "reverse_kl": 0.01}]))
"""

from __future__ import annotations

from typing import Any

VEEGAN = "Srivastava et al., VEEGAN, NIPS 2017"
PACGAN = "Lin et al., PacGAN, NeurIPS 2018 (github.com/fjxmlzn/PacGAN)"


def _v(mean: float, se: float | None = None) -> list:
    return [mean, se]


TABLES: dict[str, dict[str, Any]] = {
    "veegan-table1": {
        "name": "VEEGAN Table 1", "source": VEEGAN + ", Table 1", "kind": "mixture-2d",
        "protocol": "2,500 samples; high quality within 3 std of the nearest mode; 5 runs "
                    "(mean); no KL column",
        "rows": {
            "GAN": {"ring8": {"modes": _v(1), "high_quality_pct": _v(99.3)},
                    "grid25": {"modes": _v(3.3), "high_quality_pct": _v(0.5)}},
            "ALI": {"ring8": {"modes": _v(2.8), "high_quality_pct": _v(0.13)},
                    "grid25": {"modes": _v(15.8), "high_quality_pct": _v(1.6)}},
            "Unrolled GAN": {"ring8": {"modes": _v(7.6), "high_quality_pct": _v(35.6)},
                             "grid25": {"modes": _v(23.6), "high_quality_pct": _v(16)}},
            "VEEGAN": {"ring8": {"modes": _v(8), "high_quality_pct": _v(52.9)},
                       "grid25": {"modes": _v(24.6), "high_quality_pct": _v(40)}},
        },
    },
    "pacgan-table1": {
        "name": "PacGAN Table 1", "source": PACGAN + ", Table 1", "kind": "mixture-2d",
        "protocol": "2,500 samples; high quality within 3 std of the nearest mode; reverse KL "
                    "of the high-quality mode histogram vs uniform; 10 trials, mean +- s.e.",
        "rows": {
            "GAN": {"ring8": {"modes": _v(6.3, .5), "high_quality_pct": _v(98.2, .2),
                              "reverse_kl": _v(.45, .09)},
                    "grid25": {"modes": _v(17.3, .8), "high_quality_pct": _v(94.8, .7),
                               "reverse_kl": _v(.70, .07)}},
            "ALI": {"ring8": {"modes": _v(6.6, .3), "high_quality_pct": _v(97.6, .4),
                              "reverse_kl": _v(.36, .04)},
                    "grid25": {"modes": _v(24.1, .4), "high_quality_pct": _v(95.7, .6),
                               "reverse_kl": _v(.14, .03)}},
            "PacGAN2": {"ring8": {"modes": _v(7.9, .1), "high_quality_pct": _v(95.6, 2.0),
                                  "reverse_kl": _v(.07, .03)},
                        "grid25": {"modes": _v(23.8, .7), "high_quality_pct": _v(91.3, .8),
                                   "reverse_kl": _v(.13, .04)}},
            "PacGAN3": {"ring8": {"modes": _v(7.8, .1), "high_quality_pct": _v(97.7, .3),
                                  "reverse_kl": _v(.10, .02)},
                        "grid25": {"modes": _v(24.6, .4), "high_quality_pct": _v(94.2, .4),
                                   "reverse_kl": _v(.06, .02)}},
            "PacGAN4": {"ring8": {"modes": _v(7.8, .1), "high_quality_pct": _v(95.9, 1.4),
                                  "reverse_kl": _v(.07, .02)},
                        "grid25": {"modes": _v(24.8, .2), "high_quality_pct": _v(93.6, .6),
                                   "reverse_kl": _v(.04, .01)}},
        },
    },
    "veegan-table2": {
        "name": "VEEGAN Table 2", "source": VEEGAN + ", Table 2", "kind": "stacked-mnist",
        "protocol": "stacked MNIST (full MNIST), 26,000 samples, pretrained MNIST classifier "
                    "per channel; 5 runs (mean)",
        "rows": {"DCGAN": {"stacked-mnist": {"modes": _v(99), "kl": _v(3.40)}},
                 "ALI": {"stacked-mnist": {"modes": _v(16), "kl": _v(5.40)}},
                 "Unrolled GAN": {"stacked-mnist": {"modes": _v(48.7), "kl": _v(4.32)}},
                 "VEEGAN": {"stacked-mnist": {"modes": _v(150), "kl": _v(2.95)}}},
    },
    "pacgan-table2": {
        "name": "PacGAN Table 2", "source": PACGAN + ", Table 2", "kind": "stacked-mnist",
        "protocol": "VEEGAN's stacked-MNIST setting (26,000 samples); 10 trials, mean +- s.e.",
        "rows": {"DCGAN": {"stacked-mnist": {"modes": _v(78.9, 6.46), "kl": _v(4.50, .127)}},
                 "PacDCGAN2": {"stacked-mnist": {"modes": _v(1000.0, 0.0),
                                                 "kl": _v(.06, .003)}},
                 "PacDCGAN3": {"stacked-mnist": {"modes": _v(1000.0, 0.0),
                                                 "kl": _v(.06, .003)}},
                 "PacDCGAN4": {"stacked-mnist": {"modes": _v(1000.0, 0.0),
                                                 "kl": _v(.07, .005)}}},
    },
    "pacgan-table3-d025": {
        "name": "PacGAN Table 3 (D = 1/4 G)", "source": PACGAN + ", Table 3",
        "kind": "stacked-mnist",
        "protocol": "Unrolled-GAN setting (Metz et al.): D a quarter the size of G; "
                    "mean +- s.e.",
        "rows": {"DCGAN": {"stacked-mnist": {"modes": _v(30.6, 20.73), "kl": _v(5.99, .42)}},
                 "Unrolled GAN, 10 steps": {"stacked-mnist": {"modes": _v(327.2, 74.67),
                                                              "kl": _v(4.66, .46)}},
                 "PacDCGAN4": {"stacked-mnist": {"modes": _v(667.4, 29.00),
                                                 "kl": _v(1.81, .15)}}},
    },
    "pacgan-table3-d05": {
        "name": "PacGAN Table 3 (D = 1/2 G)", "source": PACGAN + ", Table 3",
        "kind": "stacked-mnist",
        "protocol": "Unrolled-GAN setting (Metz et al.): D half the size of G; mean +- s.e.",
        "rows": {"DCGAN": {"stacked-mnist": {"modes": _v(628.0, 140.9), "kl": _v(2.58, .75)}},
                 "Unrolled GAN, 10 steps": {"stacked-mnist": {"modes": _v(817.4, 37.91),
                                                              "kl": _v(1.43, .12)}},
                 "PacDCGAN3": {"stacked-mnist": {"modes": _v(866.6, 12.10),
                                                 "kl": _v(.90, .04)}}},
    },
}

DIFFERENCES: dict[str, str] = {
    "mixture-2d": (
        "Ours uses the same mixtures (8 distinct ring modes at 2*pi*k/8, radius 1, std 0.01; "
        "25 grid modes on {-4,...,4}^2, std 0.05), 2,500 samples and PacGAN's metric code "
        "semantics (strict < 3 std, histogram of high-quality samples, empty modes add 0 to "
        "the KL). It differs in: one sample draw per checkpoint (seeded) instead of the mean "
        "+- s.e. over 10 (PacGAN) or 5 (VEEGAN) training runs; our MLP G/D widths, optimiser "
        "and training length (see each checkpoint's config), not the papers'; VEEGAN reports "
        "no KL."),
    "stacked-mnist": (
        "Indicative only, not comparable: our stacked MNIST draws its digits from the 10k-digit "
        "mnist10k subset (the papers: all of MNIST), and the digits are read by our own small "
        "CNN (its held-out accuracy is stated next to every count; classifier errors invent "
        "and hide modes), not the papers' pretrained classifier; one sample draw per "
        "checkpoint; our DCGAN sizes and training length, not the papers'."),
}


def tables_for(data: str) -> list[dict[str, Any]]:
    """The published tables with rows for ``data`` ("ring8", "grid25" or "stacked-mnist"),
    each ``{"name", "source", "protocol", "rows": {method: {metric: [mean, se]}}}``."""
    out = []
    for t in TABLES.values():
        rows = {m: r[data] for m, r in t["rows"].items() if data in r}
        if rows:
            out.append({k: t[k] for k in ("name", "source", "protocol")} | {"rows": rows})
    return out


def published(data: str) -> dict[str, Any]:
    """JSON-able block for reports: the tables for ``data`` and the protocol differences."""
    kind = "stacked-mnist" if data == "stacked-mnist" else "mixture-2d"
    return {"tables": tables_for(data), "protocol_differences": DIFFERENCES[kind]}


def _fmt(value, digits: int) -> str:
    """Published ``[mean, se]`` pairs as printed in the paper (``:g``); ours with ``digits``."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        mean, se = value
        return f"{mean:g}" + ("" if se is None else f" +- {se:g}")
    return f"{value:.{digits}f}"


def side_by_side(data: str, ours: list[dict[str, Any]]) -> str:
    """A markdown table: the published rows for ``data``, then ours, then the protocol notes.

    Args:
        data: "ring8", "grid25" or "stacked-mnist".
        ours: rows with ``label`` and ``modes_captured``, plus ``high_quality_pct`` and
            ``reverse_kl`` (2-D) or ``kl`` and ``classifier_accuracy`` (stacked MNIST).
    """
    modes_max = {"ring8": 8, "grid25": 25, "stacked-mnist": 1000}.get(data, "?")
    stacked = data == "stacked-mnist"
    head = (f"| source | method | modes (of {modes_max}) | "
            + ("KL | classifier acc. |" if stacked else "high quality % | reverse KL |"))
    lines = [head, "|---|---|---|---|---|"]
    for t in tables_for(data):
        for method, r in t["rows"].items():
            if stacked:
                cells = [_fmt(r.get("modes"), 1), _fmt(r.get("kl"), 2), "-"]
            else:
                cells = [_fmt(r.get("modes"), 1), _fmt(r.get("high_quality_pct"), 1),
                         _fmt(r.get("reverse_kl"), 2)]
            lines.append(f"| {t['name']} | {method} | " + " | ".join(cells) + " |")
    for r in ours:
        if stacked:
            acc = r.get("classifier_accuracy")
            cells = [str(r["modes_captured"]), _fmt(r.get("kl"), 2),
                     "-" if acc is None else f"{100 * acc:.1f} %"]
        else:
            cells = [str(r["modes_captured"]), _fmt(r.get("high_quality_pct"), 1),
                     _fmt(r.get("reverse_kl"), 2)]
        lines.append(f"| ours | {r['label']} | " + " | ".join(cells) + " |")
    kind = "stacked-mnist" if stacked else "mixture-2d"
    lines += ["", f"Protocol differences: {DIFFERENCES[kind]}"]
    return "\n".join(lines)
