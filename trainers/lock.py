"""One writer at a time: an exclusive lock on a run directory, and folders built whole.

A training process holds ``fcntl.flock(LOCK_EX)`` on ``RUN_DIR/.lock`` for as long as it
trains (:func:`acquire`; the loop takes it before it writes anything). The kernel drops a
flock when the last descriptor of its open file closes, which includes the holder dying by
``kill -9``, a crash or a lost node's reboot: a lock never outlives its process, so there is
no stale lock to clean up and no timeout to guess. A second writer asks without waiting
(``LOCK_NB``) and gets a one-line :class:`UserError` naming the directory and the PID that
holds it, having created or changed nothing in the directory (the lock file already exists:
its holder made it).

The PID and host written into the lock file only feed that message; what decides is the
lock itself, never the file's content (a PID left there by a finished run means nothing).

A descriptor inherited by ``fork`` shares the lock, so a child forked *during* training
(not exec'd) holds it as long as it lives; the loop forks nothing. On NFS, Linux emulates
flock with byte-range locks the server sees, so writers on two nodes exclude each other too;
where the filesystem has no locks at all (``ENOLCK``), training goes on with a warning.

:func:`replace_dir` is the same discipline for output folders (report folders): the folder
is built under a temp name beside its destination and renamed into place, so a reader, or a
second writer, never sees a mix of two builds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from trainers.errors import UserError

LOCK_NAME = ".lock"
_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it
# filesystems without locks: warn and go on rather than refuse to train there
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP}


class DirLock:
    """A held lock (``fd`` open, flock'd) on ``path``; :meth:`release` or ``with`` drops it.

    ``fd`` is None when the filesystem has no locks (a warning was printed).
    """

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _open_lock_file(path: Path, *, create: bool) -> int | None:
    """A descriptor of the lock file: read-write (created if ``create``), else read-only (a
    read-only folder still takes a flock; its run then fails on its first real write with
    the usual one-line message). None when it does not exist and may not be created."""
    try:
        return os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
    except FileNotFoundError:
        if not create:
            return None
        raise
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not path.exists():
            raise
    return os.open(path, os.O_RDONLY)


def _holder(path: Path) -> str:
    """Who holds the lock on ``path``: ``process PID on HOST``, from the file's content.

    The holder writes its PID just after it gets the lock, so a reader that comes between
    the two sees an empty file or (if the previous holder's line is still there) a PID that
    has exited: it reads again for up to 1 s.
    """
    here = socket.gethostname()
    for _ in range(50):
        try:
            pid, host = path.read_text()[:300].split()[:2]
            pid_n = int(pid)
        except (OSError, ValueError):  # empty or being written
            time.sleep(0.02)
            continue
        if host == here:
            try:
                os.kill(pid_n, 0)
            except ProcessLookupError:  # the previous holder's line: not written yet
                time.sleep(0.02)
                continue
            except PermissionError:  # alive, another user's
                pass
            return f"process {pid_n}"
        return f"process {pid_n} on host {host}"
    return "another process"


def _in_use(folder: Path, lock_path: Path) -> UserError:
    return UserError(f"run directory {folder} is in use by {_holder(lock_path)} (one writer "
                     "per run directory); wait for it to end or stop it, then "
                     f"asgan-train --resume {folder}")


def acquire(folder: str | Path) -> DirLock:
    """Take the exclusive lock on run directory ``folder`` (created if missing), or fail.

    Returns:
        the held :class:`DirLock`; release it (or use ``with``) when the process stops
        writing. The OS releases it anyway when the process ends, however it ends.

    Raises:
        UserError: another process holds it (the message names the directory and the
            holder's PID; nothing in ``folder`` was changed), or ``folder`` cannot be
            created or its lock file opened.
    """
    folder = Path(folder)
    lock_path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run directory {folder}: {e.strerror or e}; "
                        "choose another --out") from None
    try:
        fd = _open_lock_file(lock_path, create=True)
    except OSError as e:
        from trainers.checkpoint import write_error

        raise write_error(lock_path, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _in_use(folder, lock_path) from None
    except OSError as e:
        os.close(fd)
        if e.errno not in _NO_LOCKS:
            raise UserError(f"cannot lock {lock_path}: {e.strerror or e}") from None
        print(f"asgan-train: warning: {folder} is on a filesystem without locks "
              f"({e.strerror}): nothing stops a second writer of this run", file=sys.stderr)
        return DirLock(lock_path, None)
    try:  # only for the message a second writer prints; the lock already holds
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    except OSError:  # read-only or full: the run's own first write reports it
        pass
    return DirLock(lock_path, fd)


def check_free(folder: str | Path) -> None:
    """Raise the "in use" UserError when another process holds ``folder``'s lock; create
    nothing. For a one-line refusal before slower start-up work (the ``--nproc`` launcher);
    only :func:`acquire` guarantees anything. Never call it while this process holds the
    lock: it would find the lock taken."""
    folder = Path(folder)
    lock_path = folder / LOCK_NAME
    try:
        fd = _open_lock_file(lock_path, create=False)
    except OSError:
        return  # cannot tell from here: acquire() decides
    if fd is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(folder, lock_path) from None
    except OSError:
        return
    finally:
        os.close(fd)


@contextlib.contextmanager
def replace_dir(dest: str | Path) -> Iterator[Path]:
    """Build a folder whole: yields an empty temp folder beside ``dest``; on normal exit it
    replaces ``dest`` (renames, never copies), on an exception it is deleted and ``dest`` is
    untouched.

    Two builds of one ``dest`` at once each fill their own temp folder; their final swaps
    take turns under a flock on the parent folder, so ``dest`` ends as one build, whole (the
    last to finish), never a mix. A reader sees the old folder, the new one, or (for the
    moment between the two renames) none. Files inside should still be written with
    :func:`trainers.checkpoint.atomic_write_bytes` (they are fsynced; the renames are then
    made durable by an fsync of the parent).

    Raises:
        UserError: ``dest``'s parent cannot be created or written.
    """
    dest = Path(dest)
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=parent))
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; outputs are ordinary folders
    except OSError as e:
        from trainers.checkpoint import write_error

        raise write_error(dest, e) from None
    try:
        yield tmp
        old = None
        parent_fd = os.open(parent, os.O_RDONLY)
        try:
            fcntl.flock(parent_fd, fcntl.LOCK_EX)  # brief: two renames, then it is released
            if dest.exists() or dest.is_symlink():
                old = Path(tempfile.mkdtemp(prefix=f".tmp-old-{dest.name}-", dir=parent))
                os.rename(dest, old / dest.name)
            os.rename(tmp, dest)
            os.fsync(parent_fd)
        finally:
            os.close(parent_fd)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
