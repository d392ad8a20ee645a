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

:func:`build_into` is the same discipline for output folders (report folders): the files
are built in a private folder inside the destination and moved into place under a lock, so
two builds never leave a mix of their files.
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
from collections.abc import Iterator, Sequence
from pathlib import Path

from asgan_base.errors import UserError

LOCK_NAME = ".lock"
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
        from asgan_base.files import write_error

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
def build_into(dest: str | Path, *, last: Sequence[str] = (), owned: Sequence[str] = ()
               ) -> Iterator[Path]:
    """Build a folder's files whole: yields an empty private folder ``dest/.tmp-build-*``;
    on normal exit its files are moved into ``dest``, on an exception they are deleted and
    ``dest`` keeps what it had.

    Args:
        dest: the output folder (created; files there that this build does not make are
            kept, so an existing folder with other files in it is safe to use).
        last: names moved after all others (the entry point, ``report.md``: a reader who
            finds the new one finds the new files it links to).
        owned: names this kind of build may make: those this build did not make are removed
            from ``dest``, so no file of an earlier build is left beside the new ones.

    Two builds of one ``dest`` at once each fill their own folder, and move their files
    in turn under a blocking flock on ``dest/.lock`` (a few renames: milliseconds), so
    ``dest`` ends as one build, whole (the last to finish), never a mix. Every move is a
    rename on one filesystem (atomic). Write the files with
    :func:`asgan_base.files.atomic_write_bytes` (fsynced; the renames are then made
    durable by an fsync of ``dest``). The build holds a flock on its own folder too: a
    folder of a build that was killed is found unlocked and removed by the next build.

    Raises:
        UserError: ``dest`` cannot be created or written.
    """
    from asgan_base.files import write_error

    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-build-", dir=dest))
        alive = os.open(tmp, os.O_RDONLY)
    except OSError as e:
        raise write_error(dest, e) from None
    try:
        with contextlib.suppress(OSError):  # without dir locks: only cleanup is lost
            fcntl.flock(alive, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield tmp
        names = sorted(p.name for p in tmp.iterdir())
        order = [n for n in names if n not in last] + [n for n in last if n in names]
        try:
            with _held(dest / LOCK_NAME):
                for name in order:
                    os.replace(tmp / name, dest / name)
                for name in owned:
                    if name not in names:
                        (dest / name).unlink(missing_ok=True)
                _fsync_dir(dest)
        except OSError as e:
            raise write_error(dest / (order[0] if order else LOCK_NAME), e) from None
        _remove_abandoned(dest)
    finally:
        os.close(alive)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _held(lock_path: Path) -> Iterator[None]:
    """A blocking exclusive flock on ``lock_path`` (created) while the body runs."""
    fd = _open_lock_file(lock_path, create=True)
    try:
        with contextlib.suppress(OSError):  # no locks on this filesystem: go on unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_abandoned(dest: Path, min_age_s: float = 60.0) -> None:
    """Delete ``dest/.tmp-build-*`` folders of killed builds: unlocked (their process is
    gone) and older than ``min_age_s`` (a build between ``mkdtemp`` and its flock is not
    yet locked)."""
    for folder in dest.glob(".tmp-build-*"):
        try:
            if time.time() - folder.stat().st_mtime < min_age_s:
                continue
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a build in progress (or no dir locks here: leave it)
            continue
        else:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
