"""What runs on a Dask worker for one attempt of one video: `run_attempt`, submitted by the dask executor.

It runs the same worker process as the local executor (``python -m nkod.worker``, in its own process group)
inside the attempt's staging directory on the shared filesystem, and talks to the daemon through files
there, never through Dask alone, so that a daemon restarted after kill -9 or a lost scheduler still finds
what happened::

    staging/<video>/<started_seq>.<nonce>/
        work/            the processor's work dir: the daemon renames it into output/<video>/ to commit
        where.json       the host, Dask worker and pid running it (written at start)
        progress.json    the processor's last report(...), replaced atomically
        done.json        the ending (result or error message, exit code), fsynced: the completion marker
        stop, kill       written by the daemon: stop the processor (SIGTERM, then SIGKILL) / at once

The attempt directory is made by the daemon before it submits; if it is gone (the daemon fenced this
attempt: a newer one runs, or it was recorded interrupted), the processor is killed and nothing more is
written. Only the daemon commits, and only the attempt the log says is running (the seq of its
``video_started`` is the fencing token), so a zombie's late ``done.json`` is never taken.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from nkod.executors.base import TERM_GRACE, split_messages
from nkod.executors.local import spawn_worker
from nkod.fsutil import atomic_write, fsync_dir

POLL = 0.2  # seconds between looks at the stop/kill files and the deadline
PROGRESS_EVERY = 0.5  # seconds between progress.json rewrites


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return ""


def _read_where(attempt_dir: Path) -> str:
    try:
        doc = orjson.loads((attempt_dir / "where.json").read_bytes())
        return f"{doc.get('worker') or doc.get('host')}"
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return "unknown worker"


def _read_done(attempt_dir: Path) -> dict[str, Any] | None:
    try:
        doc = orjson.loads((attempt_dir / "done.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _write_json(path: Path, doc: dict[str, Any], durable: bool = False) -> bool:
    """Write `doc` atomically into the attempt dir; False if the dir is gone (the attempt was fenced)."""
    try:
        atomic_write(path, orjson.dumps(doc, default=str))
        if durable:
            fsync_dir(path.parent)
    except FileNotFoundError:
        return False
    return True


def run_attempt(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt; returns (and records in done.json) how it ended: ``{"message": the worker's result
    or error message or None, "returncode": int, "timed_out": bool, "fenced": bool}``."""
    attempt_dir = Path(spec["attempt_dir"])
    workdir = attempt_dir / "work"
    if not workdir.is_dir():
        return {"message": None, "returncode": None, "timed_out": False, "fenced": True}
    ended = _read_done(attempt_dir)
    if ended is not None:
        # This attempt finished already; Dask runs the task again because the worker holding its result was
        # lost (a published dataset still wants it). Its done.json is the ending: never replaced.
        return ended
    if (attempt_dir / "where.json").exists():
        # Dask is running this task again after losing the worker that had it (allowed-failures > 0): the
        # work dir holds that run's leftovers. nkod's log decides retries, with a fresh attempt and dir.
        where = _read_where(attempt_dir)
        msg = {
            "type": "error",
            "kind": "transient",
            "error": f"the Dask worker running it was lost ({where}); the scheduler should not retry tasks"
            " itself: set distributed.scheduler.allowed-failures to 0",
        }
        return _finish(attempt_dir, {"message": msg, "returncode": None, "timed_out": False, "fenced": False})
    _write_json(
        attempt_dir / "where.json",
        {"host": socket.gethostname(), "worker": _worker_address(), "pid": os.getpid()},
    )
    try:
        proc, r = spawn_worker(spec, workdir)  # dies with this Dask worker (PR_SET_PDEATHSIG)
    except OSError as exc:
        error = f"cannot start a worker process on {socket.gethostname()}: {exc}"
        msg = {"type": "error", "kind": "transient", "error": error}
        return _finish(attempt_dir, {"message": msg, "returncode": None, "timed_out": False, "fenced": False})
    return _supervise(proc, r, attempt_dir, spec)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _supervise(proc: subprocess.Popen[bytes], fd: int, attempt_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    timeout = float(spec.get("timeout") or 0)
    began = time.monotonic()
    deadline = began + timeout if timeout else None
    kill_at: float | None = None
    timed_out = fenced = False
    final: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    progress_written = 0.0
    buffer = b""
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    open_fd = True
    try:
        while True:
            if open_fd and sel.select(POLL):
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    open_fd = False
                messages, buffer = split_messages(buffer, chunk)
                for msg in messages:
                    if msg.get("type") == "progress":
                        progress = {k: v for k, v in msg.items() if k != "type"}
                    else:
                        final = msg
            elif not open_fd:  # its pipe closed: it is exiting; wake the moment it has
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=POLL)
            now = time.monotonic()
            if progress is not None and now - progress_written >= PROGRESS_EVERY:
                _write_json(attempt_dir / "progress.json", progress)
                progress, progress_written = None, now
            if proc.poll() is not None and not open_fd:
                break
            if not attempt_dir.exists():
                fenced = True  # the daemon gave this attempt up: stop at once, write nothing more
                _signal_group(proc, signal.SIGKILL)
            elif (attempt_dir / "kill").exists():
                _signal_group(proc, signal.SIGKILL)
            elif kill_at is None and ((attempt_dir / "stop").exists() or (deadline is not None and now >= deadline)):
                timed_out = not (attempt_dir / "stop").exists()
                _signal_group(proc, signal.SIGTERM)
                kill_at = now + TERM_GRACE
            if kill_at is not None and now >= kill_at:
                _signal_group(proc, signal.SIGKILL)
    finally:
        sel.close()
        _signal_group(proc, signal.SIGKILL)  # what the processor started and left behind
        proc.wait()
        os.close(fd)
    ending = {"message": final, "returncode": proc.returncode, "timed_out": timed_out, "fenced": fenced}
    if fenced:
        return ending
    return _finish(attempt_dir, ending)


def _finish(attempt_dir: Path, ending: dict[str, Any]) -> dict[str, Any]:
    """done.json, durable: the daemon (this one, or one restarted while this ran) takes the ending from it."""
    if not _write_json(attempt_dir / "done.json", ending, durable=True):
        ending["fenced"] = True
    return ending
