"""Signals that arrive while nkod is still starting (imports, config) are remembered, not fatal.

Imported first by the entry point: until the daemon installs its own handlers, SIGTERM/SIGINT/SIGHUP
are only recorded here, and the daemon acts on them as soon as it can. (Without this, a `systemctl
stop` in the first few hundred milliseconds killed the process with the default action.)
"""

from __future__ import annotations

import signal
from types import FrameType

PENDING: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    PENDING.append(signum)


def install() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _remember)
