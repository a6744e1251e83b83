"""The single-writer lock: a kernel flock on the data directory itself, plus ``nkod.lock``.

The exclusion is the flock on the directory: a directory with entries cannot be unlinked, so nobody can
delete the lock from under its holder (people were taught to remove "stale locks"; flock never goes
stale: the kernel drops it when the process dies). ``nkod.lock`` is kept beside it, flocked too and
holding the PID, for people and older tooling; the holder puts it back if it is deleted or replaced
(:meth:`DataDirLock.refresh`, on every loop pass).

The holder also takes a POSIX write lock (fcntl F_SETLK, the whole file) on ``nkod.lock``, so who holds the
lock can be asked with F_GETLK, which answers with the holder's PID (and status takes no POSIX lock plus a
PID in the file that is no living process's as nobody); otherwise (an older nkod, a POSIX lock lost) who
holds the lock is read from ``/proc/locks`` (nkod/proclocks.py). Never
by trying to take it: status must not race a starting daemon. A POSIX lock is dropped when its process
closes any fd of the file, so the holder opens ``nkod.lock`` only through this module and takes it again on
every :meth:`DataDirLock.refresh` (one fcntl; the flocks are what exclude, the POSIX lock only answers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from nkod import proclocks
from nkod.errors import LockHeldError
from nkod.fsutil import owner_for
from nkod.paths import Paths


def _pid_in_file(path: Path) -> int | None:
    return proclocks.pid_in_file(str(path))


def _lock_file(path: Path) -> int:
    """Open (creating) and flock `path`, then write our PID into it. Raises BlockingIOError if held.

    Group-writable (the umask decides: 0660 under the unit's UMask=0007), so an operator in group nkod can
    take the lock for `nkoctl reset`/`fsck --repair`; made by root (sudo nkoctl) it gets the data dir's
    owner, so the service can open it afterwards."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o664)
    try:
        owner = owner_for(path.parent)
        if owner is not None:
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != owner:
                os.fchown(fd, *owner)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    _posix_lock(fd)  # after the PID is written: status trusts F_GETLK's PID only when the file says the same
    return fd


def _posix_lock(fd: int) -> None:
    """Take (again) the POSIX write lock on nkod.lock that answers F_GETLK (see the module's docstring). Best
    effort: where it cannot be had, status reads /proc/locks."""
    with contextlib.suppress(OSError):
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class DataDirLock:
    """The held lock: the directory's fd (the exclusion) and ``nkod.lock``'s fd (the PID)."""

    def __init__(self, root: Path, dir_fd: int, file_fd: int) -> None:
        self.root = root
        self.path = Paths(root).lock
        self._dir_fd = dir_fd
        self._file_fd = file_fd
        self._file_id = self._identity(file_fd)
        self._restore_failed = False

    @staticmethod
    def _identity(fd: int) -> tuple[int, int]:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino

    def refresh(self) -> str | None:
        """Put ``nkod.lock`` back if it was deleted or replaced (one stat when it is intact), and take its
        POSIX lock again (one fcntl: it is lost if this process closed any fd of the file meanwhile).

        Returns what was found and done, for a warning; None when the file is intact, or when putting it
        back failed again after a failure already reported (it is tried again on the next call).
        """
        try:
            return self._refresh()
        finally:
            _posix_lock(self._file_fd)  # after _refresh, which may have opened and closed the file

    def _refresh(self) -> str | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            found = "deleted"
        except OSError as exc:
            found = f"unreadable ({exc.strerror or exc})"
        else:
            if (st.st_dev, st.st_ino) == self._file_id:
                return None
            found = "replaced"
        try:
            fd = _lock_file(self.path)
        except BlockingIOError:
            # Only a process that ignores the directory lock (an nkod from before it) can hold the new file.
            pid = holder_pid(self.root, _dir=False)
            return self._failed(f"{found}; the new file is locked by {f'PID {pid}' if pid else 'another process'}")
        except OSError as exc:
            return self._failed(f"{found}; cannot recreate it: {exc.strerror or exc}")
        os.close(self._file_fd)
        self._file_fd, self._file_id = fd, self._identity(fd)
        self._restore_failed = False
        return f"{found}; recreated with PID {os.getpid()}"

    def _failed(self, what: str) -> str | None:
        first = not self._restore_failed
        self._restore_failed = True
        return what if first else None

    def release(self) -> None:
        os.close(self._file_fd)
        os.close(self._dir_fd)


def acquire(root: Path) -> DataDirLock:
    """Take the lock on data directory `root` or raise LockHeldError naming the holder."""
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # nkod.lock as well: an older nkod, which locks only the file, is kept off (and keeps us off).
        file_fd = _lock_file(Paths(root).lock)
    except BlockingIOError:
        os.close(dir_fd)
        raise LockHeldError(root, holder_pid(root) or _pid_in_file(Paths(root).lock)) from None
    except BaseException:
        os.close(dir_fd)
        raise
    return DataDirLock(root, dir_fd, file_fd)


def holder_pid(root: Path, *, _dir: bool = True, trust_exited: bool = False) -> int | None:
    """PID holding the lock on data directory `root`, from /proc/locks; None when nobody does.

    The directory's flock decides; ``nkod.lock``'s counts too (an nkod from before the directory lock).
    /proc/locks names a file by device and inode. On overlayfs (containers) its device number may not be
    the one stat() reports, so a line whose inode matches also counts when its PID is the one the holder
    wrote into ``nkod.lock``. `trust_exited`: see `proclocks.holder_pid` (status's display only).
    """
    return proclocks.holder_pid(str(root), str(Paths(root).lock), _dir, trust_exited)
