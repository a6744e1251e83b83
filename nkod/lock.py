"""``nkod.lock``: a kernel flock held by the running daemon. The kernel drops it when the process dies,
so a crash or power cut never leaves a stale lock. Who holds it is read from ``/proc/locks`` (and the
PID the holder wrote into the file), never by trying to take it: status must not race a starting daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from nkod.errors import LockHeldError
from nkod.fsutil import read_regular


def _pid_in_file(path: Path) -> int | None:
    try:
        text = read_regular(path, 64).decode().strip()  # a FIFO put there must not hang nkoctl status
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def acquire(path: Path) -> int:
    """Take the lock or raise LockHeldError naming the holder. Returns the fd to keep open."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockHeldError(path, holder_pid(path) or _pid_in_file(path)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def holder_pid(path: Path) -> int | None:
    """PID holding an flock on `path`, from /proc/locks; None when nobody does.

    /proc/locks names the file by device and inode. On overlayfs (containers) its device number is not
    the one stat() reports, so a line whose inode matches also counts when its PID is the one the holder
    wrote into the file.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    try:
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    written = _pid_in_file(path)
    for line in locks.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (blocked waiters have a "->" field)
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        maj, _, rest = parts[5].partition(":")
        mnr, _, ino = rest.partition(":")
        with contextlib.suppress(ValueError):
            if int(ino) != st.st_ino:
                continue
            pid = int(parts[4])
            same_dev = (int(maj, 16), int(mnr, 16)) == (os.major(st.st_dev), os.minor(st.st_dev))
            if same_dev or pid == written:
                return pid
    return None
