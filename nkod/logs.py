"""Logging through structlog: one line per event.

- under journald (``$JOURNAL_STREAM`` names our stdout): each event is sent through the journal's native
  protocol (the datagram socket, ``systemd.journal-fields(7)``) with structured fields — ``EVENT=``,
  ``VIDEO_ID=``, ``SEQ=``, ``ATTEMPT=``, ``ERROR=`` — so ``journalctl -u nkod VIDEO_ID=…`` works; when the
  socket cannot be reached, ``<N>`` syslog-priority lines on stdout instead (no timestamp: the journal has
  its own);
- on a terminal: structlog's coloured console renderer (no colours when ``$NO_COLOR`` is set);
- otherwise: ``timestamp level event key=value`` lines; or JSON lines with ``log_format = "json"``.

Logging never stops the daemon: a closed stdout (``nkod | tee`` ended by the same Ctrl+C) or a full disk
under a redirected stdout moves the lines to stderr, then drops them. The event log is the record.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, TextIO

import orjson

PRIORITY = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "error": 3, "critical": 2, "exception": 3}
JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = "nkod"
# Event keys that become journal fields of their own (journalctl -u nkod VIDEO_ID=...).
JOURNAL_FIELDS = {"video_id": "VIDEO_ID", "seq": "SEQ", "attempt": "ATTEMPT", "error": "ERROR"}


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


_QUOTE = re.compile('[ ="\n]').search  # a text with one of these is written as a JSON string


def _kv(event_dict: MutableMapping[str, Any]) -> str:
    """``key=value`` pairs: texts as they are unless empty or holding a space, ``=``, ``"`` or a newline, the
    rest as JSON. (Once per event the daemon appends: a regex search, not a generator per value.)"""
    parts = []
    for key, value in event_dict.items():
        if isinstance(value, str):
            text = orjson.dumps(value).decode() if not value or _QUOTE(value) else value
        else:
            text = orjson.dumps(value, default=str).decode()
        parts.append(f"{key}={text}")
    return " ".join(parts)


def journal_renderer(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    level = event_dict.pop("level", method)
    event = event_dict.pop("event", "")
    rest = _kv(event_dict)
    return f"<{PRIORITY.get(level, 6)}>{event}" + (f" {rest}" if rest else "")


def journal_fields_renderer(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """The journal record for an event: MESSAGE as the ``<N>`` line has it, plus structured fields.

    Returns the logger's keyword arguments: ``fields`` for the native protocol, ``line`` as the fallback."""
    fields: dict[str, str] = {}
    for key, name in JOURNAL_FIELDS.items():
        value = event_dict.get(key)
        if value is not None and not isinstance(value, dict | list):
            fields[name] = str(value)
    event = str(event_dict.get("event", ""))
    line = journal_renderer(_logger, method, event_dict)
    priority, _, message = line[1:].partition(">")
    fields = {
        "MESSAGE": message,
        "PRIORITY": priority,
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        "EVENT": event,
        **fields,
    }
    return {"line": line, "fields": fields}


def encode_journal_fields(fields: Mapping[str, str]) -> bytes:
    """The native protocol's datagram: ``KEY=value\\n``, or ``KEY\\n<u64 length>value\\n`` for values with
    a newline (binary-safe form)."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalSocket:
    """A connected datagram socket to journald; ``send`` says whether the record got there."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise

    def send(self, fields: Mapping[str, str]) -> bool:
        try:
            self.sock.send(encode_journal_fields(fields))
        except OSError:  # journald gone or restarting, or a record too big for a datagram
            return False
        return True


def plain_renderer(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    ts = event_dict.pop("timestamp", "")
    level = event_dict.pop("level", method)
    event = event_dict.pop("event", "")
    rest = _kv(event_dict)
    return f"{ts} {level:<7} {event}" + (f" {rest}" if rest else "")


class SafeOutput:
    """Line output that never raises: when a write fails (EPIPE from a reader that went away, EIO from a
    lost terminal, ENOSPC under a redirect) the lines go to stderr instead, and past that nowhere."""

    def __init__(self, stream: TextIO) -> None:
        self.streams = [stream]
        if stream is sys.stdout and sys.stderr is not None:
            self.streams.append(sys.stderr)

    def write_line(self, line: str) -> None:
        while self.streams:
            stream = self.streams[0]
            try:
                stream.write(line + "\n")
                stream.flush()
                return
            except (OSError, ValueError):
                self.streams.pop(0)
                _silence(stream)


def _silence(stream: TextIO) -> None:
    """Point a dead standard stream at /dev/null, so neither we nor the interpreter's exit flush fails again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = stream.fileno()
        if fd in (1, 2):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
    with contextlib.suppress(OSError, ValueError):
        stream.flush()


class Logger:
    """structlog's final logger: a rendered line to a :class:`SafeOutput`, or a journal record."""

    def __init__(self, output: SafeOutput, journal: JournalSocket | None = None) -> None:
        self.output = output
        self.journal = journal

    def _emit(self, message: str | None = None, *, line: str = "", fields: Mapping[str, str] | None = None) -> None:
        if fields is not None and self.journal is not None and self.journal.send(fields):
            return
        self.output.write_line(message if message is not None else line)

    msg = debug = info = warning = warn = error = err = critical = fatal = exception = failure = _emit


def resolve_format(requested: str, stream: TextIO | None = None) -> str:
    if requested != "auto":
        return requested
    if stdout_is_journal(stream):
        return "journal"
    return "console" if (stream or sys.stdout).isatty() else "plain"


def _journal_socket() -> JournalSocket | None:
    path = os.environ.get("NKOD_JOURNAL_SOCKET") or JOURNAL_SOCKET  # the variable is for tests
    try:
        return JournalSocket(path)
    except OSError:
        return None


def _structlog(rich_tracebacks: bool = False) -> ModuleType:
    """structlog, imported on first use. It imports rich (~40 ms) when rich is installed, only to draw
    tracebacks on a terminal: unless the console format asks for that, it is imported without rich, so
    a daemon restarted by systemd is back at work sooner (rich still imports normally afterwards)."""
    module = sys.modules.get("structlog")
    if module is not None:
        return module
    block = not rich_tracebacks and "rich" not in sys.modules
    if block:
        sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` raise ImportError
    try:
        import structlog
    finally:
        if block and "rich" in sys.modules and sys.modules["rich"] is None:
            del sys.modules["rich"]
    return structlog


# The processors of the line the daemon writes per event it appends are plain functions: structlog's
# TimeStamper and format_exc_info do the same in three calls each (~1 us of a line's ~5).


_configured = False  # configure has run (see `fixed`)
_last_second: list[tuple[int, str]] = [(-1, "")]  # the last second stamped, with its "YYYY-MM-DDTHH:MM:SS"


def iso_utc(micros: int) -> str:
    """`micros` (since the epoch) as ``datetime.isoformat`` writes it in UTC, with "Z": 2026-11-28T12:58:58.035492Z,
    no fraction when it is 0; the date and time formatted once per second (isoformat alone cost 0.7 us)."""
    second, micro = divmod(micros, 1_000_000)
    last = _last_second[0]
    if last[0] != second:
        last = _last_second[0] = (second, datetime.fromtimestamp(second, UTC).isoformat()[:19])
    return f"{last[1]}.{micro:06d}Z" if micro else f"{last[1]}Z"


def _utc_timestamp(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog's ``TimeStamper(fmt="iso", utc=True)``, in one call and cheaper."""
    event_dict["timestamp"] = iso_utc(time.time_ns() // 1000)
    return event_dict


def configure(log_format: str = "auto", stream: TextIO | None = None) -> str:
    """Set structlog up for `log_format`; returns the format used."""
    fmt = resolve_format(log_format, stream)
    structlog = _structlog(rich_tracebacks=fmt == "console")
    processors: list[Any] = [structlog.processors.add_log_level]
    journal: JournalSocket | None = None
    if fmt != "journal":
        processors.append(_utc_timestamp)
    if fmt != "console":  # the console renderer formats exceptions itself
        format_exc_info = structlog.processors.format_exc_info

        def exc_info(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
            return format_exc_info(logger, method, event_dict) if "exc_info" in event_dict else event_dict

        processors.append(exc_info)
    if fmt == "journal":
        journal = _journal_socket() if stdout_is_journal(stream) else None
        processors.append(journal_fields_renderer if journal is not None else journal_renderer)
    elif fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=not os.environ.get("NO_COLOR")))  # no-color.org
    elif fmt == "json":
        processors.append(
            structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o, default=str).decode())
        )
    else:
        processors.append(plain_renderer)
    output = SafeOutput(stream or sys.stdout)
    logger = Logger(output, journal)
    global _configured
    _configured = True
    structlog.configure(
        processors=processors,
        logger_factory=lambda *_args: logger,
        cache_logger_on_first_use=True,
    )
    return fmt


def fixed(log: Any) -> Any:
    """The logger the lazy `log` (from `get`) hands every call on once `configure` has run, which makes it
    keep the first one it builds; None before that (then use `log`: it follows the configuration)."""
    return log.bind() if _configured else None


def get(name: str = "nkod") -> Any:
    return _structlog().get_logger(name)
