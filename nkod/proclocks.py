"""Who holds the data directory's lock (nkod/lock.py), asked without taking it: the holder's POSIX lock on
``nkod.lock`` (F_GETLK) when it answers, else ``/proc/locks``, read early if asked.

The first read of /proc/locks in a process can wait a scheduler tick or more (here 10–20 ms): the kernel
takes its file-lock lock for writing, which waits for an RCU grace period. So the holder also takes a POSIX
write lock on ``nkod.lock`` (nkod.lock), which F_GETLK names with its PID without that wait (it takes
nothing: status must not race a starting daemon). Only a living process holds a POSIX lock, so a holder
named so is an answer. "No POSIX lock" is one only when the PID written in ``nkod.lock`` (every holder
writes its own) is no living process's: the last holder has exited (`EXITED`; status's display takes it).
Otherwise (an older nkod, a holder that lost its POSIX lock, a holder in another PID namespace...)
/proc/locks decides, as `nkoctl status` starts reading it in a thread before it
imports anything (`prefetch`): the answer is the one of that moment, tens of milliseconds earlier, as if
status had run then.

Light on purpose (``_thread``, ``fcntl``, ``os``: no threading, pathlib, struct): `nkoctl status`'s fast
path imports it first.
"""

from __future__ import annotations

import _thread
import fcntl
import os
import stat
import sys

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


def prefetch(lock_file: str) -> None:
    """Start reading /proc/locks now, unless `lock_file` answers who holds the lock (`posix_answer`: then
    `holder_pid(..., trust_exited=True)` asks that again, and never reads /proc/locks); the next `read` in
    this process returns that text."""
    global _early
    if posix_answer(lock_file) is not None:
        return
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
        return _pid_in_fd(fd)
    finally:
        os.close(fd)


def _pid_in_fd(fd: int) -> int | None:
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 64:
            return None
        data = os.pread(fd, 65, 0)
        if len(data) > 64:
            return None
        text = data.decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


# struct flock as F_GETLK fills it on 64-bit Linux: l_type (short) at 0, l_pid (pid_t) at 24, 32 bytes.
_FLOCK_SIZE, _L_PID = 32, 24
_ASK_WRITE_LOCK = fcntl.F_WRLCK.to_bytes(2, sys.byteorder) + bytes(_FLOCK_SIZE - 2)  # whole file, from 0
POSIX_QUERY = sys.platform == "linux" and sys.maxsize > 2**32


EXITED = 0  # `posix_answer`: nkod.lock's last holder has exited and nobody took the lock since


def posix_answer(lock_file: str) -> int | None:
    """Who holds the lock, from `lock_file` alone (no /proc/locks): the holder's PID from its POSIX write lock
    (asked with F_GETLK, which takes nothing) when that PID is also the one written in the file; EXITED when
    there is no POSIX lock on the file and the PID written in it is no living process's (every holder writes
    its PID first, so the last one has exited: a clean stop or a crash); None when it cannot tell (an older
    nkod holds no POSIX lock; a PID from another namespace; no file), which says nothing either way. Never
    creates the file; a FIFO does not block it."""
    if not POSIX_QUERY:
        return None
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, _ASK_WRITE_LOCK)
        written = _pid_in_fd(fd)
        if written is None or written <= 0:
            return None
        if int.from_bytes(answer[:2], sys.byteorder) == fcntl.F_UNLCK:
            try:
                os.kill(written, 0)  # (signal 0: only whether the process exists)
            except ProcessLookupError:
                return EXITED
            except OSError:  # (EPERM: it exists, another user's)
                return None
            return None  # alive: an older nkod (flock only) may be holding
        pid = int.from_bytes(answer[_L_PID : _L_PID + 4], sys.byteorder, signed=True)
        # The PID the holder wrote before it took the POSIX lock: another process's lock on the file, or a PID
        # from another namespace (0), is no answer.
        return pid if pid > 0 and pid == written else None
    except OSError:
        return None
    finally:
        os.close(fd)


def posix_holder(lock_file: str) -> int | None:
    """The holder's PID as `posix_answer` gives it; None otherwise, which says nothing about whether the lock
    is held."""
    return posix_answer(lock_file) or None


def holder_pid(root: str, lock_file: str, dir_lock: bool = True, trust_exited: bool = False) -> int | None:
    """PID holding the lock on data directory `root` (its flock, or `lock_file`'s), from the holder's POSIX
    lock on `lock_file` or else /proc/locks; None when nobody does. See nkod.lock.holder_pid.
    `trust_exited`: also take `posix_answer`'s EXITED (the PID in `lock_file` is no living process's, and no
    POSIX lock) as nobody, without /proc/locks. Only status's display takes it: it could be wrong for an
    older nkod (no POSIX lock) in another PID namespace, or for the moment between a hand-made `lock_file`
    and the daemon's next loop pass, which puts its own back."""
    pid = posix_answer(lock_file)
    if pid:
        return pid
    if pid == EXITED and trust_exited:
        return None
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
