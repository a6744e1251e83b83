"""``/proc/locks``, which says who holds the data directory's lock (nkod/lock.py), read early if asked.

The first read of /proc/locks in a process can wait a scheduler tick or more (here 10–15 ms): the kernel
takes its file-lock lock for writing, which waits for an RCU grace period. That is a wait, not work, so
`nkoctl status` starts the read in a thread before it imports anything and uses the text when it needs
it: the answer is the one of that moment, tens of milliseconds earlier, as if status had run then.

Light on purpose (``_thread``, ``os``: no threading, pathlib): `nkoctl status`'s fast path imports it first.
"""

from __future__ import annotations

import _thread
import os
import stat

PROC_LOCKS = "/proc/locks"

_early: tuple[_thread.LockType, list[str | OSError]] | None = None


def _read_into(box: list[str | OSError], done: _thread.LockType | None = None) -> None:
    try:
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as f:
            box.append(f.read())
    except OSError as exc:
        box.append(exc)
    finally:
        if done is not None:
            done.release()


def prefetch() -> None:
    """Start reading /proc/locks now; the next `read` in this process returns that text."""
    global _early
    box: list[str | OSError] = []
    done = _thread.allocate_lock()
    done.acquire()
    _thread.start_new_thread(_read_into, (box, done))
    _early = (done, box)


def read() -> str:
    """/proc/locks' text: the prefetched one once (then fresh reads). Raises OSError if unreadable."""
    global _early
    box: list[str | OSError] = []
    if _early is not None:
        done, box = _early
        _early = None
        done.acquire()  # released by the reading thread once its text is in the box
    if not box:
        _read_into(box)
    result = box[0]
    if isinstance(result, OSError):
        raise result
    return result


def pid_in_file(path: str) -> int | None:
    """The PID written in ``nkod.lock`` (a regular file of at most 64 bytes: a FIFO put there must not hang
    nkoctl status), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 64:
            return None
        data = os.read(fd, 65)
        if len(data) > 64:
            return None
        text = data.decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else None


def holder_pid(root: str, lock_file: str, dir_lock: bool = True) -> int | None:
    """PID holding the lock on data directory `root` (its flock, or `lock_file`'s), from /proc/locks; None
    when nobody does. See nkod.lock.holder_pid."""
    targets: list[os.stat_result] = []
    for path, wanted in ((root, dir_lock), (lock_file, True)):
        if not wanted:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        targets.append(st)
    if not targets:
        return None
    try:
        locks = read()
    except OSError:
        return None
    written = pid_in_file(lock_file)
    found: dict[int, int] = {}  # index in targets -> pid: the directory's holder wins
    for line in locks.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (blocked waiters have a "->" field)
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        maj, _, rest = parts[5].partition(":")
        mnr, _, ino = rest.partition(":")
        try:
            for i, st in enumerate(targets):
                if int(ino) != st.st_ino:
                    continue
                pid = int(parts[4])
                same_dev = (int(maj, 16), int(mnr, 16)) == (os.major(st.st_dev), os.minor(st.st_dev))
                if same_dev or pid == written:
                    found.setdefault(i, pid)
        except ValueError:
            pass
    return found[min(found)] if found else None
