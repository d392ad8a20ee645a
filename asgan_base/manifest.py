"""The manifest of shipped checkpoints: ``checkpoints/MANIFEST.json``.

Every file we ship under ``checkpoints/`` has an entry: its path (relative to the repo root),
SHA-256, size, the exact command that made it, and run facts (seed, steps, wall time, ...).
A test verifies every entry, so a shipped file cannot drift from what produced it.

Where the folder is (:func:`checkpoints_dir`, the one place code finds it): ``--checkpoints
DIR`` (:func:`use_checkpoints_dir`), else ``$ASGAN_PROBE_CHECKPOINTS``, else ``checkpoints/``
beside the packages, which is the repository checkout. The wheel does not carry the
checkpoints (study data of 30-60 MB, regenerated with the manifest), so an installed
``asgan-probe`` outside a clone is pointed at a clone's ``checkpoints/`` folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from asgan_base.errors import UserError
from asgan_base.files import atomic_write_bytes
from asgan_base.files import sha256_file as sha256_of

ROOT = Path(__file__).resolve().parents[1]  # the repository root in a checkout
MANIFEST = ROOT / "checkpoints" / "MANIFEST.json"  # where record() writes (scripts, a checkout)
ENV = "ASGAN_PROBE_CHECKPOINTS"

_chosen: Path | None = None  # --checkpoints DIR, set once per process by the CLI


def use_checkpoints_dir(folder: str | Path) -> Path:
    """Use ``folder`` (``--checkpoints DIR``) for every shipped file this process opens.

    A module-level choice rather than an argument threaded through every loader: the study
    functions and the classifier open shipped files many calls below the CLI.

    Raises:
        asgan_base.errors.UserError: ``folder`` holds no ``MANIFEST.json``.
    """
    global _chosen
    _chosen = _holds_manifest(Path(folder), "--checkpoints")
    return _chosen


def checkpoints_dir() -> Path:
    """The folder holding ``MANIFEST.json`` and ``shipped/``: ``--checkpoints DIR``, else
    ``$ASGAN_PROBE_CHECKPOINTS``, else ``checkpoints/`` beside the packages (a checkout).

    An explicit choice wins and is never passed over silently: a wrong one is an error, not
    a fall-back to the checkout.

    Raises:
        asgan_base.errors.UserError: one line naming every place looked at.
    """
    if _chosen is not None:
        return _chosen
    if os.environ.get(ENV):
        return _holds_manifest(Path(os.environ[ENV]), f"${ENV}")
    beside = ROOT / "checkpoints"
    if (beside / "MANIFEST.json").is_file():
        return beside
    raise UserError(f"no shipped checkpoints: --checkpoints not given, ${ENV} not set, and "
                    f"{beside} holds no MANIFEST.json (an installed wheel carries none); pass "
                    f"--checkpoints DIR or set {ENV} to the checkpoints/ folder of a clone")


def _holds_manifest(folder: Path, how: str) -> Path:
    if not (folder / "MANIFEST.json").is_file():
        raise UserError(f"{how} {folder}: no MANIFEST.json there; give the checkpoints/ folder "
                        "of a clone (it holds MANIFEST.json and shipped/)")
    return folder.resolve()


def locate(rel: str, folder: Path | None = None) -> Path:
    """Where the manifest path ``rel`` (``checkpoints/shipped/...``, relative to the repo
    root) lies under ``folder`` (default :func:`checkpoints_dir`); existence not checked."""
    folder = checkpoints_dir() if folder is None else folder
    return folder / PurePosixPath(rel).relative_to("checkpoints")


def read_manifest(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """``{relative_path: entry}`` of ``path`` (default: the manifest in
    :func:`checkpoints_dir`); empty when ``path`` does not exist yet."""
    path = checkpoints_dir() / "MANIFEST.json" if path is None else path
    if not path.exists():
        return {}
    return {e["path"]: e for e in json.loads(path.read_text())["files"]}


def record(file: str | Path, *, command: str, path: Path = MANIFEST, root: Path | None = None,
           **facts: Any) -> dict:
    """Add or replace the entry for ``file`` (hash and size computed here); its path is
    relative to ``root`` (default: the repository root, :data:`ROOT`)."""
    file = Path(file).resolve()
    rel = file.relative_to(Path(ROOT if root is None else root).resolve()).as_posix()
    entry = {"path": rel, "sha256": sha256_of(file), "bytes": file.stat().st_size,
             "command": command, **facts}
    entries = read_manifest(path)
    entries[rel] = entry
    body = {"files": [entries[k] for k in sorted(entries)]}
    atomic_write_bytes(path, (json.dumps(body, indent=2) + "\n").encode())
    return entry


def forget(rels: list[str], *, path: Path = MANIFEST) -> int:
    """Remove the entries ``rels`` from the manifest ``path`` (one atomic write); returns how
    many were listed. The files themselves are the caller's to delete."""
    entries = read_manifest(path)
    gone = [r for r in rels if entries.pop(r, None) is not None]
    body = {"files": [entries[k] for k in sorted(entries)]}
    atomic_write_bytes(path, (json.dumps(body, indent=2) + "\n").encode())
    return len(gone)


def verify(path: Path | None = None) -> list[str]:
    """Problems found (missing files, wrong hashes or sizes) in the manifest ``path``
    (default: the one in :func:`checkpoints_dir`); empty when all is well."""
    path = checkpoints_dir() / "MANIFEST.json" if path is None else path
    problems = []
    for rel, entry in read_manifest(path).items():
        f = locate(rel, path.parent)
        if not f.exists():
            problems.append(f"{rel}: listed in the manifest but missing")
        elif f.stat().st_size != entry["bytes"] or sha256_of(f) != entry["sha256"]:
            problems.append(f"{rel}: contents differ from the manifest (regenerate or re-record)")
    return problems


def shipped(rel: str) -> Path:
    """Absolute path of the shipped file ``rel`` in :func:`checkpoints_dir`, verified
    (SHA-256) against that folder's manifest."""
    folder = checkpoints_dir()
    entry = read_manifest().get(rel)
    if entry is None:
        raise UserError(f"{rel} is not in {folder / 'MANIFEST.json'}")
    f = locate(rel, folder)
    if not f.exists() or sha256_of(f) != entry["sha256"]:
        raise UserError(f"{f} is missing or differs from {folder / 'MANIFEST.json'}")
    return f
