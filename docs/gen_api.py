"""Write one API page per module of the project's packages, from their docstrings.

Run by the mkdocs-gen-files plugin at build time (nothing is written into ``docs/``): it walks
the top-level packages that are there (``asgan_base`` when present, ``trainers``, ``probes``),
so a module moving between packages changes the pages, never breaks the build. Each page is a
``::: dotted.name`` block for mkdocstrings; ``api/SUMMARY.md`` is the section's navigation
(mkdocs-literate-nav). Private modules (``_name``) and ``__main__`` are left out.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("asgan_base", "trainers", "probes")


def _members(folder: Path) -> list[tuple[str, str]]:
    """(name, relative link) of the public modules and subpackages directly in ``folder``."""
    out = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("_"):
            continue
        if child.suffix == ".py":
            out.append((child.stem, f"{child.stem}.md"))
        elif (child / "__init__.py").is_file():
            out.append((child.name, f"{child.name}/index.md"))
    return out


nav = mkdocs_gen_files.Nav()
for package in PACKAGES:
    if not (ROOT / package / "__init__.py").is_file():
        continue
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        index = parts[-1] == "__init__"
        if index:
            parts = parts[:-1]
        # private modules, and anything in a folder that is not a package, are left out
        if any(p.startswith("_") for p in parts) or not all(
                (ROOT.joinpath(*parts[:i]) / "__init__.py").is_file()
                for i in range(1, len(parts))):
            continue
        # a package's page is its folder's index.md, so its modules' pages sit under it
        doc = Path(*parts, "index.md") if index else Path(*parts).with_suffix(".md")
        page = Path("api", doc)
        nav[tuple(parts)] = doc.as_posix()
        with mkdocs_gen_files.open(page, "w") as f:
            f.write(f"# `{'.'.join(parts)}`\n\n::: {'.'.join(parts)}\n")
            if index:  # a package's page lists its modules (some packages have no docstring)
                f.write("\n## Modules\n\n" + "".join(
                    f"- [`{'.'.join(parts)}.{name}`]({link})\n"
                    for name, link in _members(path.parent)))
        mkdocs_gen_files.set_edit_path(page, path.relative_to(ROOT))

with mkdocs_gen_files.open("api/SUMMARY.md", "w") as f:
    f.writelines(nav.build_literate_nav())
