"""The manifest of shipped checkpoints: ``checkpoints/MANIFEST.json``.

Every file we ship under ``checkpoints/`` has an entry: its path (relative to the repo root),
SHA-256, size, the exact command that made it, and run facts (seed, steps, wall time, ...).
A test verifies every entry, so a shipped file cannot drift from what produced it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainers.checkpoint import atomic_write_bytes
from trainers.data import sha256_file as sha256_of
from trainers.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "checkpoints" / "MANIFEST.json"


def read_manifest(path: Path = MANIFEST) -> dict[str, dict[str, Any]]:
    """``{relative_path: entry}``; empty when there is no manifest yet."""
    if not path.exists():
        return {}
    return {e["path"]: e for e in json.loads(path.read_text())["files"]}


def record(file: str | Path, *, command: str, path: Path = MANIFEST, **facts: Any) -> dict:
    """Add or replace the entry for ``file`` (hash and size computed here)."""
    file = Path(file).resolve()
    rel = file.relative_to(ROOT).as_posix()
    entry = {"path": rel, "sha256": sha256_of(file), "bytes": file.stat().st_size,
             "command": command, **facts}
    entries = read_manifest(path)
    entries[rel] = entry
    body = {"files": [entries[k] for k in sorted(entries)]}
    atomic_write_bytes(path, (json.dumps(body, indent=2) + "\n").encode())
    return entry


def verify(path: Path = MANIFEST) -> list[str]:
    """Problems found (missing files, wrong hashes or sizes); empty when all is well."""
    problems = []
    for rel, entry in read_manifest(path).items():
        f = ROOT / rel
        if not f.exists():
            problems.append(f"{rel}: listed in the manifest but missing")
        elif f.stat().st_size != entry["bytes"] or sha256_of(f) != entry["sha256"]:
            problems.append(f"{rel}: contents differ from the manifest (regenerate or re-record)")
    return problems


def shipped(rel: str) -> Path:
    """Absolute path of a shipped file, verified against the manifest."""
    entry = read_manifest().get(rel)
    if entry is None:
        raise UserError(f"{rel} is not in checkpoints/MANIFEST.json")
    f = ROOT / rel
    if not f.exists() or sha256_of(f) != entry["sha256"]:
        raise UserError(f"{rel} is missing or differs from checkpoints/MANIFEST.json")
    return f
