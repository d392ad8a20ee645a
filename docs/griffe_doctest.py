"""A Griffe extension for the API pages: doctest lines in a docstring become a code block.

The project's docstrings are plain prose with ``>>>`` examples, not Google/NumPy sections.
Rendered as Markdown, an example such as ``out["per_image"]["hoyer"]`` reads as a reference
link and an indented one as text; wrapping each run of ``>>>`` lines (with the output lines
that follow, up to a blank line) in a ``pycon`` fence renders it as the code it is. Only the
rendered page changes; the source stays as it is. Loaded by ``mkdocs.yml`` (mkdocstrings'
python handler, ``extensions``).
"""

from __future__ import annotations

import textwrap

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with every doctest run (``>>>`` to the next blank line) in a fenced block."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].lstrip().startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        out += ["", "```pycon", *textwrap.dedent("\n".join(lines[i:j])).splitlines(), "```", ""]
        i = j
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fence the doctest runs of every docstring (see the module docstring)."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
