"""Files written so a crash never leaves a torn one: temp file, fsync, rename, fsync of the
folder; a failed write is one line naming the reason (disk full, read-only, permission). Also the
SHA-256 of a file, which the manifest, the data registry and the study records share."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from asgan_base.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it


_WRITE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EROFS: "the folder is read-only",
                 errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}


def write_error(path: str | Path, e: OSError) -> UserError:
    """The one-line error for a failed write of ``path`` (disk full, read-only, ...)."""
    reason = _WRITE_ERRORS.get(e.errno, e.strerror or str(e))
    return UserError(f"cannot write {path}: {reason}; free space or choose another --out "
                     "(earlier snapshots are untouched)")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename; UserError on I/O failure."""
    path = Path(path)
    fd, tmp = None, None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
