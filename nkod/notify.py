"""sd_notify through the sdnotify package: READY, STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT_USEC.

Without ``$NOTIFY_SOCKET`` (not under systemd) every call does nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import sdnotify


class Notifier:
    def __init__(self, send: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.enabled = send is not None or bool(os.environ.get("NOTIFY_SOCKET"))
        self._send = send or sdnotify.SystemdNotifier().notify
        self._clock = clock
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 1e6 / 3 if usec.isdigit() and mine else None
        self._last_ping = 0.0
        self._last_status = ""

    def send(self, message: str) -> None:
        if self.enabled:
            self._send(message)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")
        self._last_status = status

    def status(self, text: str) -> None:
        if text != self._last_status:
            self.send(f"STATUS={text}")
            self._last_status = text

    def watchdog(self) -> None:
        """Ping when a third of WatchdogSec has passed (call from the main loop)."""
        if self.watchdog_interval is None:
            return
        now = self._clock()
        if now - self._last_ping >= self.watchdog_interval:
            self.send("WATCHDOG=1")
            self._last_ping = now

    def stopping(self, status: str) -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")
        self._last_status = status

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")
