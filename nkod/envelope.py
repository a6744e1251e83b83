"""The event log line's envelope, without a JSON parser: the checksum field that ends a line and the fields
every record has (``v``, ``seq``, ``ts``, ``type``). `nkod.codec` parses with orjson around these;
``nkoctl status``'s fast path (`nkod.statusfast`) parses with `nkod.litejson` around the same ones, so the
two never hold different ideas of a valid line. (No orjson here: importing it costs status 8–15 ms.)
"""

from __future__ import annotations

import zlib
from datetime import datetime

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any

FORMAT_VERSION = 1
CRC_PREFIX = b',"crc":"'
TAIL_LEN = len(CRC_PREFIX) + 8 + 2  # ,"crc":"xxxxxxxx"}


class LineError(ValueError):
    """A line that is not a valid record (the reason is the message)."""


class BadRecord(LineError):
    """A line whose checksum holds but which is not a valid record: written so, not torn by a crash."""


class NewerVersion(BadRecord):
    """A checksummed record of a format version newer than this nkod reads."""

    def __init__(self, version: int) -> None:
        super().__init__(f"format version {version} is newer than {FORMAT_VERSION}")
        self.version = version


def checked_body(line: bytes) -> bytes:
    """The JSON object a line (without its newline) carries, its ``crc`` field taken off, once the checksum
    holds. Raises LineError naming what is wrong."""
    if len(line) <= TAIL_LEN or line[-TAIL_LEN : -TAIL_LEN + len(CRC_PREFIX)] != CRC_PREFIX:
        raise LineError("no checksum field at the end of the line")
    if line[-2:] != b'"}':
        raise LineError("line does not end with the checksum field")
    body = line[:-TAIL_LEN] + b"}"
    try:
        expected = int(line[-10:-2], 16)
    except ValueError:
        raise LineError("checksum is not hexadecimal") from None
    if zlib.crc32(body) != expected:
        raise LineError("checksum mismatch (the line was changed or torn)")
    return body


def utc_time(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def check_fields(event: dict[str, Any]) -> dict[str, Any]:
    """`event` if its envelope fields are valid: ``v`` (int, not newer than FORMAT_VERSION), ``seq``
    (positive int), ``ts`` (a UTC time), ``type`` (string). Raises BadRecord (NewerVersion for a newer
    format) naming the field."""
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
    if not utc_time(event["ts"]):
        raise BadRecord(f"field 'ts' is {event['ts']!r}, not a UTC time")
    kind = event.get("type")
    if type(kind) is not str:
        raise BadRecord(f"field 'type' is {kind!r}, not a string")
    return event
