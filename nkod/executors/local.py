"""The local executor: each job is a child process (`python -m nkod.worker`) leading its own process group.

Its messages come on a pipe registered in the daemon's selector; a pidfd (Linux 5.3+) wakes the loop the
moment it exits."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from nkod.executors.base import Job, outcome_from_message, split_messages


def kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal a worker's whole process group (it leads its own), so what its processor started goes too."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def worker_exited(proc: subprocess.Popen[bytes]) -> bool:
    """Has the worker exited? Asked without reaping it: until it is reaped its pid, which is its process
    group's id, cannot be reused, so what it left behind can still be killed by group safely."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped already
        return proc.poll() is not None


def child_env() -> dict[str, str]:
    """The environment of nkod's child processes (workers, source listings): systemd's notify socket and
    watchdog are the daemon's alone, and output is unbuffered so a killed child's last lines are not lost."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_"))}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def spawn_worker(spec: dict[str, Any], workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``python -m nkod.worker`` for `spec` in `workdir`, leading its own process group (a terminal's
    Ctrl+C goes to the daemon only, which drains); returns it and the read end of its message pipe. It
    dies with this process (PR_SET_PDEATHSIG). OSError: no process could be made (fds, memory)."""
    r, w = os.pipe()
    spec = {**spec, "msg_fd": w, "parent_pid": os.getpid()}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nkod.worker"],
            stdin=subprocess.PIPE,
            stdout=sys.stderr.fileno(),
            pass_fds=(w,),
            env=child_env(),
            cwd=str(workdir),
            process_group=0,
        )
    except OSError:
        os.close(r)
        raise
    finally:
        os.close(w)
    assert proc.stdin is not None
    try:
        proc.stdin.write(orjson.dumps(spec))
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the worker died at once; reaping records why
    except OSError:
        kill_group(proc, signal.SIGKILL)
        proc.wait()
        os.close(r)
        raise
    return proc, r


@dataclass
class LocalJob(Job):
    proc: subprocess.Popen[bytes] | None = None
    fd: int = -1
    buffer: bytes = b""
    pidfd: int = -1  # readable when the worker exits: wakes the loop to reap it at once


def _proc(job: Job) -> subprocess.Popen[bytes]:
    assert isinstance(job, LocalJob) and job.proc is not None
    return job.proc


class LocalExecutor:
    name = "local"
    stages_locally = True

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector

    def ready(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def reattach(self, running: list[Job]) -> list[Job]:
        return []  # a child process dies with the daemon (PR_SET_PDEATHSIG): nothing outlives it

    def forget(self, job: Job) -> None:
        pass

    def close(self) -> None:
        pass

    def new_job(self, **fields: Any) -> LocalJob:
        return LocalJob(**fields)

    def start(self, job: Job, spec: dict[str, Any]) -> None:
        assert isinstance(job, LocalJob)
        proc, r = spawn_worker(spec, job.workdir)
        os.set_blocking(r, False)
        job.proc = proc
        job.fd = r
        self.selector.register(r, selectors.EVENT_READ, job)
        with contextlib.suppress(OSError, AttributeError):  # pidfd_open: Linux 5.3+
            job.pidfd = os.pidfd_open(proc.pid)
            self.selector.register(job.pidfd, selectors.EVENT_READ, job)

    def readable(self, fd: int, job: Job) -> None:
        assert isinstance(job, LocalJob)
        if fd == job.fd:
            self._read(job)
        # else: the worker's pidfd: it exited; the next pass collects it

    def _read(self, job: LocalJob) -> None:
        try:
            chunk = os.read(job.fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.selector.unregister(job.fd)
            os.close(job.fd)
            job.fd = -1
            return
        messages, job.buffer = split_messages(job.buffer, chunk)
        for msg in messages:
            if msg.get("type") == "progress":
                job.progress = {k: v for k, v in msg.items() if k != "type"}
            else:
                job.outcome = outcome_from_message(msg) or job.outcome

    def collect(self, job: Job) -> bool:
        assert isinstance(job, LocalJob)
        proc = _proc(job)
        if not worker_exited(proc):
            return False
        kill_group(proc, signal.SIGKILL)  # what its processor started and left behind
        proc.wait()  # reaps it (it has exited)
        while job.fd >= 0:  # drain what the worker said before exiting
            before = job.fd
            self._read(job)
            if job.fd == before and not _fd_has_data(job.fd):
                break
        for fd in (job.fd, job.pidfd):
            if fd >= 0:
                self.selector.unregister(fd)
                os.close(fd)
        job.fd = job.pidfd = -1
        job.returncode = proc.returncode
        return True

    def running(self, job: Job) -> bool:
        return not worker_exited(_proc(job))

    def terminate(self, job: Job) -> None:
        if not worker_exited(_proc(job)):
            kill_group(_proc(job), signal.SIGTERM)

    def kill(self, job: Job) -> None:
        kill_group(_proc(job), signal.SIGKILL)

    def wait(self, job: Job) -> None:
        _proc(job).wait()

    def poll_interval(self, jobs: list[Job]) -> float | None:
        if any(isinstance(j, LocalJob) and j.fd < 0 and j.pidfd < 0 for j in jobs):
            return 0.01  # a worker closed its pipe but cannot wake us (no pidfd): it is about to exit
        return None


def _fd_has_data(fd: int) -> bool:
    sel = selectors.DefaultSelector()
    try:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(0))
    finally:
        sel.close()
