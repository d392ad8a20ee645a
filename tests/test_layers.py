"""The folder layout is a contract: each layer of ``probes`` imports only the layers below it.

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

ROOT = Path(__file__).resolve().parents[1] / "probes"
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
# numerical libraries only (the t-distribution, SSIM): no model, plotting or training code
CORE_THIRD_PARTY = {"torch", "numpy", "scipy", "skimage"}
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
        if name.startswith("probes.core") or top in CORE_THIRD_PARTY:
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
                 "    from trainers.errors import UserError\n")
    assert {"matplotlib.pyplot", "probes.cli", "trainers.errors"} <= _imports(f)
