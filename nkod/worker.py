"""The worker process: runs one processor call for one video (``python -m nkod.worker``).

The job arrives as JSON on stdin; messages go back as JSON lines on the file descriptor named in the job
(stdout is the daemon's log, so a processor's prints are sent to stderr instead). The worker dies with
the daemon (PR_SET_PDEATHSIG), and ignores SIGINT: Ctrl+C is the daemon's to handle, with a grace period.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from nkod.errors import ProcessingError, TransientError
from nkod.fsutil import fsync_tree
from nkod.processor import Report, coerce_retry_after, load_processor, normalise_counts

PR_SET_PDEATHSIG = 1
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def storage_problem(exc: BaseException) -> OSError | None:
    """The disk-full / read-only OSError behind `exc` (following its causes), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run(job: dict[str, Any], out: IO[bytes]) -> None:
    def send(message: dict[str, Any]) -> None:
        out.write(orjson.dumps(message, default=str) + b"\n")
        out.flush()

    workdir = Path(job["workdir"])
    report = Report(
        lambda m: send({"type": "progress", **m}),
        settings=job.get("settings") or {},
        cache_dir=Path(job["cache_dir"]),
        attempt=job["attempt"],
        workers=job.get("workers", 1),
    )
    try:
        processor = load_processor(job["processor"])
        counts = normalise_counts(processor(job["video"], workdir, report))
        fsync_tree(workdir)  # durable before the daemon renames it into place
    except Exception as exc:
        storage = storage_problem(exc)
        if storage is None:
            _send_failure(send, exc)
            return
        # Not the video's fault: the daemon stops (the disk must be freed) and redoes it later.
        where = f" ({storage.filename})" if storage.filename else ""
        send({"type": "error", "kind": "storage", "error": f"{storage.strerror or storage}{where}"})
        return
    send({"type": "result", "counts": counts})


def _send_failure(send: Callable[[dict[str, Any]], None], exc: Exception) -> None:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, TransientError):
        # A Retry-After read from a header is a string: coerced here, and garbage is dropped, not sent.
        send(
            {"type": "error", "kind": "transient", "error": message, "retry_after": coerce_retry_after(exc.retry_after)}
        )
    elif isinstance(exc, ProcessingError):
        send({"type": "error", "kind": exc.kind, "error": message})
    else:  # any other failure is permanent, with its type, so a person can act on it
        traceback.print_exc(file=sys.stderr)
        send({"type": "error", "kind": "permanent", "error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    job = orjson.loads(sys.stdin.buffer.read())
    _die_with_parent(job["parent_pid"])
    out = os.fdopen(job["msg_fd"], "wb")
    sys.stdout = sys.stderr  # the daemon's stdout is its structured log
    run(job, out)
    out.close()


if __name__ == "__main__":
    main()
