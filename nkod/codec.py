"""One event log line: a standalone JSON object whose last key, ``crc``, checks the rest.

    {"v":1,"seq":7,"ts":"2026-11-26T15:00:00.000000Z","type":"video_started",...,"crc":"1a2b3c4d"}

``crc`` is the CRC-32 (hex) of the same object serialised without it, so verifying costs a slice and a
crc32, not a re-serialisation. Lines stay valid JSON for ``jq``.
"""

from __future__ import annotations

import zlib
from datetime import datetime

import orjson

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any

FORMAT_VERSION = 1
_CRC_PREFIX = b',"crc":"'
_TAIL_LEN = len(_CRC_PREFIX) + 8 + 2  # ,"crc":"xxxxxxxx"}


class LineError(ValueError):
    """A line that is not a valid record (the reason is the message)."""


class BadRecord(LineError):
    """A line whose checksum holds but which is not a valid record: written so, not torn by a crash."""


class NewerVersion(BadRecord):
    """A checksummed record of a format version newer than this nkod reads."""

    def __init__(self, version: int) -> None:
        super().__init__(f"format version {version} is newer than {FORMAT_VERSION}")
        self.version = version


def encode(event: dict[str, Any]) -> bytes:
    """Serialise an event (without ``crc``) to one checked line ending in a newline."""
    body = orjson.dumps(event)
    if len(body) < 3:
        raise ValueError("an event must have at least one key")
    return b'%s%s%08x"}\n' % (body[:-1], _CRC_PREFIX, zlib.crc32(body))


def decode(line: bytes) -> dict[str, Any]:
    """Parse and verify one line (without its newline). Raises LineError naming what is wrong."""
    if len(line) <= _TAIL_LEN or line[-_TAIL_LEN : -_TAIL_LEN + len(_CRC_PREFIX)] != _CRC_PREFIX:
        raise LineError("no checksum field at the end of the line")
    if line[-2:] != b'"}':
        raise LineError("line does not end with the checksum field")
    body = line[:-_TAIL_LEN] + b"}"
    try:
        expected = int(line[-10:-2], 16)
    except ValueError:
        raise LineError("checksum is not hexadecimal") from None
    if zlib.crc32(body) != expected:
        raise LineError("checksum mismatch (the line was changed or torn)")
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise LineError("not a JSON object")
    return event


def _utc_time(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def check(line: bytes) -> dict[str, Any]:
    """The one test of whether a line (without its newline) is a valid record: used by nkod's replay and by
    ``nkoctl fsck`` alike, so they never disagree. Checksum, a JSON object, ``v`` (int, not newer than
    FORMAT_VERSION), ``seq`` (positive int), ``ts`` (a UTC time), ``type`` (string). Raises LineError
    (BadRecord when the checksum holds, NewerVersion for a newer format).

    The rest of a record is the fold's to read, and the fold replays any value a checksummed line can hold
    (a wrong-typed field counts as absent): a line nkod wrote is never refused for its contents, by nkod or by
    fsck, so this envelope is all they need to agree on."""
    event = decode(line)
    v = event.get("v")
    if type(v) is not int:
        raise BadRecord(f"field 'v' is {v!r}, not a version number")
    if v > FORMAT_VERSION:  # first: a newer format may shape its other fields differently
        raise NewerVersion(v)
    seq = event.get("seq")
    if type(seq) is not int or seq < 1:
        raise BadRecord(f"field 'seq' is {seq!r}, not a positive integer")
    if type(event.get("ts")) is not str:
        raise BadRecord(f"field 'ts' is {event.get('ts')!r}, not a timestamp string")
    if not _utc_time(event["ts"]):
        raise BadRecord(f"field 'ts' is {event['ts']!r}, not a UTC time")
    kind = event.get("type")
    if type(kind) is not str:
        raise BadRecord(f"field 'type' is {kind!r}, not a string")
    return event
