"""Where probe results go: JSON (atomically, or to stdout) and the human log on stderr.

Used by the CLI verbs and by the measurements (progress lines), so the log format and the
JSON encoding of tensors and paths live in one place.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def write_json(obj: Any, out: str | None) -> None:
    """Pretty JSON to ``out`` (atomically) or to stdout."""
    text = json.dumps(obj, indent=2, default=_jsonable) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    from asgan_base.files import atomic_write_bytes

    atomic_write_bytes(Path(out), text.encode())
    print(f"wrote {out}", file=sys.stderr)


def _jsonable(x: Any):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON-able: {type(x).__name__}")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
