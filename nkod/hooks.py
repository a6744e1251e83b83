"""Hooks: commands the daemon runs when something happens (the ``[hooks]`` table), like pueue's callback.

    on_completed   a video_completed event is durable
    on_failed      a video_failed event is durable (not a retry: only when the video is given up)
    on_idle        nothing is runnable or running any more (all done or failed); once per transition
    on_stopped     the daemon stops (the daemon waits for it, at most `timeout` seconds)

A hook is an argv list run without a shell, in its own process group, with stdin from /dev/null and its
output on the daemon's stderr (the journal under systemd). The event's fields are in its environment:
``NKOD_EVENT`` (the event type, or ``idle``), ``NKOD_HOOK``, ``NKOD_DATA_DIR``, and ``NKOD_<FIELD>`` for
each field (``NKOD_VIDEO_ID``, ``NKOD_ERROR``, ``NKOD_ERROR_KIND``, ``NKOD_ATTEMPT``, ``NKOD_SEQ``,
``NKOD_TS``; objects such as ``NKOD_COUNTS`` as JSON). Hooks run in the background: the loop reaps them
without waiting and kills the process group of one still running after `timeout`. A hook that cannot
start, exits non-zero or times out is a warning in the daemon's log and changes nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from nkod.tomltable import Check, in_range

HOOK_EVENTS = {"video_completed": "on_completed", "video_failed": "on_failed", "daemon_stopped": "on_stopped"}
MAX_RUNNING = 32  # hooks running at once; more are skipped (with a warning) rather than pile up
_KILL_GRACE = 2.0  # seconds to wait for a killed hook to be reaped at stop


@dataclass(frozen=True)
class HooksConfig:
    """The ``[hooks]`` table: each hook an argv list (empty: none); `timeout` in seconds."""

    on_completed: tuple[str, ...] = ()
    on_failed: tuple[str, ...] = ()
    on_idle: tuple[str, ...] = ()
    on_stopped: tuple[str, ...] = ()
    timeout: float = 60.0


def _command(argv: Any) -> str | None:
    if not argv:
        return None
    program = argv[0]
    if not program:
        return "the program (first item) must not be empty"
    if "/" in program and not program.startswith("/"):
        return f"the program must be a name on PATH or an absolute path, got {program!r}"
    if shutil.which(program) is None:
        return f"program {program!r} not found or not executable" + ("" if "/" in program else " on PATH")
    return None


HOOKS_CHECKS: dict[str, Check] = {
    "on_completed": _command,
    "on_failed": _command,
    "on_idle": _command,
    "on_stopped": _command,
    "timeout": in_range(0, open_low=True),
}


def hook_env(base: Mapping[str, str], hook: str, fields: Mapping[str, Any], data_dir: Path) -> dict[str, str]:
    """The environment of a hook: the daemon's (less systemd's notify variables) plus the event's fields."""
    env = {k: v for k, v in base.items() if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_"))}
    env["NKOD_HOOK"] = hook
    env["NKOD_DATA_DIR"] = str(data_dir)
    for key, value in fields.items():
        if key in ("v", "crc"):
            continue
        name = "NKOD_EVENT" if key == "type" else "NKOD_" + "".join(c if c.isalnum() else "_" for c in key).upper()
        text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
        env[name] = text.replace("\0", "\ufffd")  # an environment value cannot hold a NUL
    return env


@dataclass
class _Running:
    hook: str
    argv: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    started: float
    deadline: float
    killed: bool = False


class Hooks:
    """Runs and tracks hook processes for the daemon's loop. Nothing here raises into the loop."""

    def __init__(
        self,
        config: Callable[[], HooksConfig],
        data_dir: Path,
        log: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config  # read at each use, so a reloaded config applies at once
        self.data_dir = data_dir
        self.log = log
        self.clock = clock
        self.running: list[_Running] = []
        self._idle = True  # so a daemon with nothing to do at start does not announce it
        self._stopped_fired = False

    def on_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Fire the hooks of durable events."""
        for event in events:
            hook = HOOK_EVENTS.get(event["type"])
            if hook is not None:
                self._stopped_fired = self._stopped_fired or hook == "on_stopped"
                self.fire(hook, event)

    def stopping(self, fallback: Mapping[str, Any]) -> None:
        """The daemon stops: on_stopped with `fallback` if no daemon_stopped event fired it (the disk
        refused to record one)."""
        if not self._stopped_fired:
            self._stopped_fired = True
            self.fire("on_stopped", fallback)

    def idle(self, is_idle: bool, fields: Callable[[], Mapping[str, Any]]) -> None:
        """Fire on_idle when the daemon becomes idle (`fields` is called only then)."""
        if is_idle and not self._idle:
            self.fire("on_idle", {"type": "idle", **fields()})
        self._idle = is_idle

    def fire(self, hook: str, fields: Mapping[str, Any]) -> None:
        config = self.config()
        argv: tuple[str, ...] = getattr(config, hook)
        if not argv:
            return
        if len(self.running) >= MAX_RUNNING:
            self.log.warning("hook_skipped", hook=hook, command=list(argv), reason=f"{MAX_RUNNING} hooks still running")
            return
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=2,
                stderr=2,
                env=hook_env(os.environ, hook, fields, self.data_dir),
                cwd=str(self.data_dir),
                process_group=0,  # killed as a group on timeout; a terminal's Ctrl+C is not theirs
            )
        except (OSError, ValueError) as exc:
            self.log.warning("hook_failed", hook=hook, command=list(argv), error=f"cannot start: {exc}")
            return
        now = self.clock()
        self.running.append(_Running(hook, argv, proc, now, now + config.timeout))

    def poll(self) -> None:
        """Reap hooks that ended and kill those past their timeout. Never blocks."""
        now = self.clock()
        still: list[_Running] = []
        for r in self.running:
            code = r.proc.poll()
            if code is None:
                if now >= r.deadline and not r.killed:
                    self._kill(r, "hook_timeout", seconds=round(r.deadline - r.started, 3))
                still.append(r)
                continue
            seconds = round(now - r.started, 3)
            if r.killed:
                pass  # already reported as timed out
            elif code != 0:
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                self.log.warning("hook_failed", hook=r.hook, command=list(r.argv), error=how, seconds=seconds)
            else:
                self.log.info("hook_done", hook=r.hook, seconds=seconds)
        self.running = still

    def _kill(self, r: _Running, what: str, **why: Any) -> None:
        """SIGKILL the hook's whole process group (what it started dies with it); reaped by `poll`."""
        r.killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(r.proc.pid, signal.SIGKILL)
        self.log.warning(what, hook=r.hook, command=list(r.argv), pid=r.proc.pid, **why)

    def wait(self, stop_now: Callable[[], bool] = lambda: False) -> None:
        """At stop: wait for running hooks, each until its own timeout (then it is killed); when
        `stop_now()` turns true (a second stop signal), kill them all at once."""
        if not self.running:
            return
        limit = max(r.deadline for r in self.running) + _KILL_GRACE
        while self.running and self.clock() < limit:
            if stop_now():
                for r in self.running:
                    if not r.killed:
                        self._kill(r, "hook_killed", reason="second stop signal")
                limit = min(limit, self.clock() + _KILL_GRACE)
            self.poll()
            if self.running:
                time.sleep(0.02)
        for r in self.running:  # stuck even after SIGKILL (uninterruptible sleep): leave it, say so
            self.log.warning("hook_abandoned", hook=r.hook, command=list(r.argv), pid=r.proc.pid)
        self.running = []

    def longest_wait(self) -> float:
        """Seconds `wait` may take from now (for systemd's stop timeout)."""
        if not self.running:
            return 0.0
        return max(0.0, max(r.deadline for r in self.running) - self.clock()) + _KILL_GRACE
