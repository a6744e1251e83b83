"""One event log line: a standalone JSON object whose last key, ``crc``, checks the rest.

    {"v":1,"seq":7,"ts":"2026-11-26T15:00:00.000000Z","type":"video_started",...,"crc":"1a2b3c4d"}

``crc`` is the CRC-32 (hex) of the same object serialised without it, so verifying costs a slice and a
crc32, not a re-serialisation. Lines stay valid JSON for ``jq``.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from itertools import repeat
from operator import attrgetter, itemgetter

import orjson

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any

FORMAT_VERSION = 1
_CRC_PREFIX = b',"crc":"'
_TAIL_LEN = len(_CRC_PREFIX) + 8 + 2  # ,"crc":"xxxxxxxx"}
_TAIL_FORMAT = _CRC_PREFIX + b'%08x"}'


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


_before_tail = itemgetter(slice(None, -_TAIL_LEN))
_tail = itemgetter(slice(-_TAIL_LEN, None))
_tzinfo = attrgetter("tzinfo")
_ONLY_DICT, _ONLY_INT, _ONLY_STR = {dict}, {int}, {str}


def check_all(lines: list[bytes]) -> tuple[list[dict[str, Any]], list[int]] | None:
    """`check` of every line at once, in C-level passes over the list (a replay's fast path: ~1 µs less per
    line than a Python loop calling `check`). Returns (the events, their seqs) exactly as `check` returns
    them when every line passes `check`; None when any line does not: then call `check` line by line to find
    which and why. Each pass below accepts only what `check` accepts (some valid lines too are left to it,
    e.g. an upper-case checksum), so this is `check`, not a second definition of a valid line."""
    if not lines:
        return [], []
    bodies = list(map(bytes.__add__, map(_before_tail, lines), repeat(b"}")))
    # The tail each body's CRC calls for, written as `encode` writes it, against the line's own tail.
    if list(map(_TAIL_FORMAT.__mod__, map(zlib.crc32, bodies))) != list(map(_tail, lines)):
        return None
    try:
        events: list[dict[str, Any]] = list(map(orjson.loads, bodies))
        if set(map(type, events)) != _ONLY_DICT:  # (as check's test: a body ending in "}" parses to none other)
            return None
        field = dict.__getitem__  # a missing field: KeyError
        versions: list[int] = list(map(field, events, repeat("v")))
        if set(map(type, versions)) != _ONLY_INT or max(versions) > FORMAT_VERSION:
            return None
        seqs: list[int] = list(map(field, events, repeat("seq")))
        if set(map(type, seqs)) != _ONLY_INT or min(seqs) < 1:
            return None
        stamps: list[str] = list(map(field, events, repeat("ts")))
        if set(map(type, stamps)) != _ONLY_STR or set(map(type, map(field, events, repeat("type")))) != _ONLY_STR:
            return None
        if None in map(_tzinfo, map(datetime.fromisoformat, stamps)):  # `_utc_time`'s test, over the list
            return None
    except (KeyError, ValueError):  # (orjson.JSONDecodeError is a ValueError, as fromisoformat's)
        return None
    return events, seqs
