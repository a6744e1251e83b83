"""The executor interface: the daemon hands a started video to an executor and asks it how the job ended.

The daemon keeps the log, the commit and every decision; an executor only runs jobs, relays their
messages (progress, outcome) and stops them when told."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from nkod.decide import Outcome
from nkod.processor import ERROR_KINDS, coerce_retry_after, normalise_counts

TERM_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a worker being stopped


def split_messages(buffer: bytes, chunk: bytes) -> tuple[list[dict[str, Any]], bytes]:
    """The worker's messages (JSON lines) that `chunk` completes after `buffer`, and what is left unfinished.
    A line that is not a JSON object is dropped: a worker message is untrusted."""
    *lines, rest = (buffer + chunk).split(b"\n")
    messages = []
    for line in lines:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(msg, dict):
            messages.append(msg)
    return messages, rest


def outcome_from_message(msg: object) -> Outcome | None:
    """How a worker says its video ended (a ``result`` or ``error`` message), checked: a worker message is
    untrusted (a processor can write to any fd; the worker can be another version). A bad result fails the
    video, naming the key and value; a bad ``retry_after`` is ignored. None if `msg` is not an ending."""
    if not isinstance(msg, dict):
        return None
    if msg.get("type") == "result":
        try:
            counts = normalise_counts(msg.get("counts"))
        except ValueError as exc:
            return Outcome(ok=False, kind="permanent", error=f"bad result from the processor: {exc}")
        return Outcome(ok=True, counts=counts)
    if msg.get("type") == "error":
        kind = msg.get("kind")
        error = msg.get("error")
        if not isinstance(error, str):
            error = "no error text" if error is None else f"error text {error!r}"
        if kind not in ERROR_KINDS:
            error = f"{error} (unknown failure kind {kind!r}: recorded permanent)"
            kind = "permanent"
        return Outcome(ok=False, kind=str(kind), error=error, retry_after=coerce_retry_after(msg.get("retry_after")))
    return None


@dataclass
class Job:
    """One execution of a video, identified by its attempt's `video_started` seq (`started_seq`)."""

    video_id: str
    attempt: int
    started_seq: int
    workdir: Path
    started: float  # monotonic
    deadline: float | None
    outcome: Outcome | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None  # set when we stop it: then it ends interrupted (or timed out)
    timed_out: bool = False
    kill_at: float | None = None
    returncode: int | None = None  # how the execution ended, once collected (<0: killed by that signal)
    where: dict[str, Any] = field(default_factory=dict)  # where it runs (host, worker), when not here


class Executor(Protocol):
    """Runs jobs for the daemon's loop. Every method returns at once (none waits for a job to end), but
    `wait`, which is bounded."""

    name: str
    stages_locally: bool  # the daemon makes each job's work dir under its own work/ (else the executor does)

    def ready(self) -> bool:
        """Can a job be started now (e.g. the cluster is connected)?"""

    def describe(self) -> dict[str, Any]:
        """What status shows about the executor (its name; a cluster's scheduler, workers, slots)."""

    def reattach(self, running: list[Job]) -> list[Job]:
        """At start-up, of the jobs the log says were running (fresh handles), those whose execution
        outlived the last daemon (still running, or ended since): they are collected as usual."""

    def forget(self, job: Job) -> None:
        """After `job`'s ending is in the log: release what is left of it."""

    def close(self) -> None:
        """At the daemon's exit."""

    def new_job(self, **fields: Any) -> Job:
        """A Job (of this executor's own subclass) with the daemon's fields."""

    def start(self, job: Job, spec: dict[str, Any]) -> None:
        """Run `spec` (the worker's job spec) for `job`. OSError: nothing could be started."""

    def readable(self, fd: int, job: Job) -> None:
        """One of the fds this executor registered in the daemon's selector for `job` is readable."""

    def collect(self, job: Job) -> bool:
        """If `job` has ended: release what it held, read its last messages, set its returncode; True."""

    def running(self, job: Job) -> bool:
        """Is the execution of `job` still going (not ended)?"""

    def terminate(self, job: Job) -> None:
        """Ask `job` to stop (SIGTERM to its processor)."""

    def kill(self, job: Job) -> None:
        """Stop `job` now (SIGKILL to its processor and what it started)."""

    def wait(self, job: Job) -> None:
        """Block until `job` has ended (after kill)."""

    def poll_interval(self, jobs: list[Job]) -> float | None:
        """A shorter wait the loop must use while some job cannot wake it, or None."""
