"""Logging through structlog: one line per event on stdout.

- under journald (``$JOURNAL_STREAM`` names our stdout): ``<N>`` syslog priority prefixes, no timestamp
  (the journal has its own);
- on a terminal: structlog's coloured console renderer;
- otherwise: ``timestamp level event key=value`` lines; or JSON lines with ``log_format = "json"``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog

PRIORITY = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "error": 3, "critical": 2, "exception": 3}


def stdout_is_journal(stream: TextIO | None = None) -> bool:
    """True when stdout is the journal's stream (systemd sets JOURNAL_STREAM=dev:inode)."""
    spec = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = spec.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat((stream or sys.stdout).fileno())
    except (OSError, ValueError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def _kv(event_dict: MutableMapping[str, Any]) -> str:
    parts = []
    for key, value in event_dict.items():
        text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
        if isinstance(value, str) and (not value or any(c in value for c in ' ="\n')):
            text = orjson.dumps(value).decode()
        parts.append(f"{key}={text}")
    return " ".join(parts)


def journal_renderer(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    level = event_dict.pop("level", method)
    event = event_dict.pop("event", "")
    rest = _kv(event_dict)
    return f"<{PRIORITY.get(level, 6)}>{event}" + (f" {rest}" if rest else "")


def plain_renderer(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    ts = event_dict.pop("timestamp", "")
    level = event_dict.pop("level", method)
    event = event_dict.pop("event", "")
    rest = _kv(event_dict)
    return f"{ts} {level:<7} {event}" + (f" {rest}" if rest else "")


def resolve_format(requested: str, stream: TextIO | None = None) -> str:
    if requested != "auto":
        return requested
    if stdout_is_journal(stream):
        return "journal"
    return "console" if (stream or sys.stdout).isatty() else "plain"


def configure(log_format: str = "auto", stream: TextIO | None = None) -> str:
    """Set structlog up for `log_format`; returns the format used."""
    fmt = resolve_format(log_format, stream)
    processors: list[Any] = [structlog.processors.add_log_level]
    if fmt != "journal":
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    if fmt == "journal":
        processors.append(journal_renderer)
    elif fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer())
    elif fmt == "json":
        processors.append(
            structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o, default=str).decode())
        )
    else:
        processors.append(plain_renderer)
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=True,
    )
    return fmt


def get(name: str = "nkod") -> Any:
    return structlog.get_logger(name)
