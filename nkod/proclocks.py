"""``/proc/locks``, which says who holds the data directory's lock (nkod/lock.py), read early if asked.

The first read of /proc/locks in a process can wait a scheduler tick or more (here 10–15 ms): the kernel
takes its file-lock lock for writing, which waits for an RCU grace period. That is a wait, not work, so
`nkoctl status` starts the read in a thread before it imports anything and uses the text when it needs
it: the answer is the one of that moment, tens of milliseconds earlier, as if status had run then.
"""

from __future__ import annotations

import threading

PROC_LOCKS = "/proc/locks"

_early: tuple[threading.Thread, list[str | OSError]] | None = None


def _read_into(box: list[str | OSError]) -> None:
    try:
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as f:
            box.append(f.read())
    except OSError as exc:
        box.append(exc)


def prefetch() -> None:
    """Start reading /proc/locks now; the next `read` in this process returns that text."""
    global _early
    box: list[str | OSError] = []
    thread = threading.Thread(target=_read_into, args=(box,), name="nkod-proclocks", daemon=True)
    thread.start()
    _early = (thread, box)


def read() -> str:
    """/proc/locks' text: the prefetched one once (then fresh reads). Raises OSError if unreadable."""
    global _early
    box: list[str | OSError] = []
    if _early is not None:
        thread, box = _early
        _early = None
        thread.join()
    if not box:
        _read_into(box)
    result = box[0]
    if isinstance(result, OSError):
        raise result
    return result
