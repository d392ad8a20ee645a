"""The folder layout is a contract, for the whole tree: ``asgan_base`` imports neither
``trainers`` nor ``probes``; ``trainers`` stands on ``asgan_base`` and never imports ``probes``;
``probes`` reaches ``trainers`` through one module, ``probes/io/edge.py``; and each layer of
``probes`` imports only the layers below it.

Walks every import statement (module level and inside functions) of every module with ``ast``,
so a lazy import cannot hide a dependency. The primitives (``probes/core``) may import only the
standard library, torch, numpy, the numerical libraries scipy and scikit-image, and each
other; in particular not ``trainers``, matplotlib, the CLI, an adapter, or ctypes (a platform
call belongs to ``probes/io``).
"""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "probes"
EDGE = ROOT / "io" / "edge.py"  # the one door from the probes to the trainers
LAYERS = ("core", "io", "adapters", "measures", "viz", "study", "cli")
# which probes layers each layer may import (besides itself)
ALLOWED = {
    "core": set(),
    "io": {"core"},
    "adapters": {"core", "io"},
    "measures": {"core", "adapters", "io"},
    "viz": {"core", "io"},
    "study": {"core", "adapters", "io", "measures", "viz"},
    "cli": {"core", "adapters", "io", "measures", "viz", "study"},
}
# numerical libraries only (the t-distribution, SSIM): no model, plotting or training code;
# from the base only the L-inf step both sides take (tensor math, no I/O)
CORE_THIRD_PARTY = {"torch", "numpy", "scipy", "skimage"}
CORE_BASE = {"asgan_base.linf"}
CORE_FORBIDDEN_STDLIB = {"ctypes"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "probes":  # from probes import core
                names |= {f"probes.{a.name}" for a in node.names}
    return names


def _modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def test_every_module_lives_in_a_layer():
    loose = [p.name for p in ROOT.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert not loose, f"modules outside the layers: {loose}"
    assert {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_the_layers_below_it(layer):
    bad = []
    for path in _modules(layer):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "probes" and len(parts) > 1 and parts[1] in LAYERS:
                if parts[1] != layer and parts[1] not in ALLOWED[layer]:
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_primitives_import_only_numerical_libraries_and_the_standard_library(path):
    bad = []
    for name in _imports(path):
        top = name.split(".")[0]
        if name.startswith("probes.core") or top in CORE_THIRD_PARTY or name in CORE_BASE:
            continue
        if top in sys.stdlib_module_names and top not in CORE_FORBIDDEN_STDLIB:
            continue
        bad.append(name)
    assert not bad, f"{path.name} imports {sorted(bad)} (trainers, matplotlib, the CLI, " \
                    "adapters and platform calls belong to higher layers)"


def test_the_check_would_catch_a_violation(tmp_path):
    """The walker sees function-level imports and ``from probes import x`` forms."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import matplotlib.pyplot as plt\n    from probes import cli\n"
                 "    from asgan_base.errors import UserError\n")
    assert {"matplotlib.pyplot", "probes.cli", "asgan_base.errors"} <= _imports(f)


def _package(name: str) -> list[Path]:
    return sorted((REPO / name).rglob("*.py"))


def _tops(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imports(path)}


def test_the_base_imports_neither_trainers_nor_probes():
    bad = [f"{p.relative_to(REPO)} imports {sorted(_tops(p) & {'trainers', 'probes'})}"
           for p in _package("asgan_base") if _tops(p) & {"trainers", "probes"}]
    assert not bad, "\n".join(bad)


def test_trainers_never_import_probes():
    bad = [str(p.relative_to(REPO)) for p in _package("trainers") if "probes" in _tops(p)]
    assert not bad, f"trainers modules importing probes: {bad} (shared code goes in asgan_base)"


def test_probes_reach_trainers_only_through_the_edge():
    bad = [str(p.relative_to(REPO)) for p in _package("probes")
           if p != EDGE and "trainers" in _tops(p)]
    assert not bad, f"import trainers through probes.io.edge, not directly: {bad}"
    assert "trainers" in _tops(EDGE)  # the edge is real, not a leftover name


def test_the_edge_check_would_catch_a_direct_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from trainers.nets import build_net\n")
    assert "trainers" in _tops(f)



MAX_FUNCTION_LINES = 60  # one screen: a longer function hides its steps (issue 24)
SIZED = ("asgan_base", "trainers", "probes", "scripts", "tests")  # bench/ mains excluded


def _long_functions(path: Path, root: Path = REPO) -> list[str]:
    """``file:line name (n lines)`` for every function of ``path`` longer than the limit
    (decorators excluded, docstring included)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_is_longer_than_a_screen():
    long = [row for top in SIZED for p in sorted((REPO / top).rglob("*.py"))
            for row in _long_functions(p)]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_the_length_check_would_catch_a_long_function(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES - 1) + "\n"
                 "def g():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert _long_functions(f, tmp_path) == [f"m.py:{MAX_FUNCTION_LINES + 2} g "
                                           f"({MAX_FUNCTION_LINES + 1} lines)"]
