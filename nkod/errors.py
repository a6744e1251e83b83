"""Every error nkod raises on purpose.

    NkodError
    ├── ProcessingError          a video could not be processed (raised by processors)
    │   ├── TransientError       network, rate limit, timeout: retried with backoff
    │   └── PermanentError       unavailable video, bad input: failed at once
    ├── ConfigError              a config file or value is wrong (names file and key)
    ├── LogError                 the event log cannot be trusted as it is
    │   ├── LogCorruptError      a damaged line in the middle (names file, line, byte offset)
    │   └── LogVersionError      written by a newer nkod
    ├── LockHeldError            another nkod holds the data directory (names its PID)
    ├── RequestError             a request file in the spool is malformed (names the file)
    └── StorageError             the disk refused a durable write (full, read-only)

Processors raise only the ProcessingError branch; any other exception escaping a processor is
recorded as permanent with its type and message.
"""

from __future__ import annotations

from pathlib import Path


class NkodError(Exception):
    """Base of all errors nkod raises on purpose."""


class ProcessingError(NkodError):
    """A video could not be processed. `kind` is how the engine treats it."""

    kind = "permanent"


class TransientError(ProcessingError):
    """Worth retrying later: network, rate limit, timeout, a busy service.

    `retry_after` (seconds), when the source said how long to wait (HTTP Retry-After), is a lower
    bound for the backoff delay.
    """

    kind = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ProcessingError):
    """Retrying will not help: the video is gone, private, or not media at all."""

    kind = "permanent"


class ConfigError(NkodError):
    """A config file or value is wrong."""

    def __init__(self, source: str | Path, key: str | None, message: str) -> None:
        where = f"{source}: {key}" if key else f"{source}"
        super().__init__(f"{where}: {message}")
        self.source = str(source)
        self.key = key


class LogError(NkodError):
    """The event log cannot be used as it is."""


class LogCorruptError(LogError):
    """A damaged record that is not the torn tail of a power cut."""

    def __init__(self, path: Path, line: int, offset: int, reason: str) -> None:
        super().__init__(
            f"{path}: line {line} (byte offset {offset}) is damaged: {reason}. "
            f"Nothing was changed. Run `nkoctl fsck` to see details and repair (a backup is kept)."
        )
        self.path = path
        self.line = line
        self.offset = offset
        self.reason = reason


class LogVersionError(LogError):
    """The log was written by a newer nkod than this one."""

    def __init__(self, path: Path, line: int, version: object, supported: int) -> None:
        super().__init__(
            f"{path}: line {line} has format version {version!r}, this nkod reads up to {supported}. "
            f"Upgrade nkod; the log was not changed."
        )
        self.path = path
        self.line = line


class LockHeldError(NkodError):
    """Another nkod runs on this data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"PID {pid}" if pid else "PID unknown"
        super().__init__(f"{data_dir}: another nkod holds the data directory ({who})")
        self.pid = pid


class RequestError(NkodError):
    """A request file dropped into the spool is malformed."""


class StorageError(NkodError):
    """A durable write failed: the disk is full or read-only. The log is left valid.

    `hint` says what to do when it is not the usual "free space or make it writable"."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
