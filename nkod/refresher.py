"""The daemon's side of ``[[sources]]``: list each followed source at start and every `refresh` seconds.

A listing runs in a child process (``python -m nkod.expand``), one at a time, never in the loop: the loop
calls :meth:`Refresher.poll` each pass, which reaps a finished child (its JSON result read from a temp
file), starts the next due source, and kills a child past :data:`LISTING_TIMEOUT`. What a listing found is
returned to the daemon, which alone turns it into events.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import orjson

from nkod.config import SourceConfig

LISTING_TIMEOUT = 900.0  # seconds: a listing still running then is killed and recorded failed
MAX_RESULT_BYTES = 256 << 20


@dataclass
class Finished:
    """A listing that ended: its source, and either entries or an error (the reason)."""

    source: SourceConfig
    entries: list[dict[str, Any]] | None
    error: str | None


@dataclass
class _Running:
    source: SourceConfig
    proc: subprocess.Popen[bytes]
    out: IO[bytes]
    deadline: float


class Refresher:
    def __init__(self, clock: Callable[[], float], env: dict[str, str]) -> None:
        self.clock = clock
        self.env = env
        self.due: dict[str, float] = {}  # source name → monotonic time of its next listing
        self.tried: set[str] = set()  # listed at least once by this daemon (ok or not)
        self.running: _Running | None = None

    def first_pass_done(self, sources: Sequence[SourceConfig]) -> bool:
        """Has every source been listed once since start? (--once waits for that before it ends.)"""
        return self.running is None and all(s.name in self.tried for s in sources)

    def poll(self, sources: Sequence[SourceConfig], start_new: bool) -> list[Finished]:
        now = self.clock()
        done: list[Finished] = []
        run = self.running
        if run is not None:
            if run.proc.poll() is not None:
                done.append(self._collect(run))
            elif now >= run.deadline:
                self._kill(run)
                done.append(
                    Finished(run.source, None, f"{run.source.url}: listing timed out after {LISTING_TIMEOUT:g} s")
                )
        names = {s.name for s in sources}
        for name in list(self.due):
            if name not in names:  # removed from the config (reload)
                del self.due[name]
        if self.running is None and start_new and sources:
            # The longest overdue first (new ones are due now, in config order): a source whose listing
            # takes longer than its refresh interval cannot starve the others.
            first = min(sources, key=lambda s: self.due.setdefault(s.name, now))
            if self.due[first.name] <= now:
                self._start(first, now)
        return done

    def _start(self, source: SourceConfig, now: float) -> None:
        out = tempfile.TemporaryFile()  # noqa: SIM115 - read and closed when the listing ends
        spec = orjson.dumps({"url": source.url, "limit": source.limit or None})
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nkod.expand"],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=sys.stderr.fileno(),
                env=self.env,
                process_group=0,
            )
        except OSError as exc:
            out.close()
            self._schedule(source, now)
            raise RefreshStartError(source, str(exc)) from exc
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(spec)
        with contextlib.suppress(OSError):
            proc.stdin.close()
        self.running = _Running(source, proc, out, now + LISTING_TIMEOUT)
        self._schedule(source, now)

    def _schedule(self, source: SourceConfig, now: float) -> None:
        self.tried.add(source.name)
        # refresh = 0: listed at start only.
        self.due[source.name] = now + source.refresh if source.refresh > 0 else float("inf")

    def _collect(self, run: _Running) -> Finished:
        self.running = None
        with run.out:
            run.out.seek(0)
            data = run.out.read(MAX_RESULT_BYTES + 1)
        code = run.proc.returncode
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            return Finished(
                run.source, None, f"{run.source.url}: the listing process ended without a result (exit {code})"
            )
        if doc.get("ok") is True and isinstance(doc.get("entries"), list):
            return Finished(run.source, [e for e in doc["entries"] if isinstance(e, dict)], None)
        return Finished(run.source, None, str(doc.get("error") or f"{run.source.url}: listing failed"))

    def _kill(self, run: _Running) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        run.out.close()
        self.running = None

    def close(self) -> None:
        """At stop: a listing in progress is dropped (it is retried at the next start)."""
        if self.running is not None:
            self._kill(self.running)


class RefreshStartError(Exception):
    def __init__(self, source: SourceConfig, message: str) -> None:
        super().__init__(f"{source.url}: cannot start the listing process: {message}")
        self.source = source
