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

# The envelope (the checksum field, the fields every record has) lives in nkod.envelope, without orjson, so
# that nkoctl status's fast path checks lines by the same code; its names are nkod.codec's too.
from nkod.envelope import CRC_PREFIX as _CRC_PREFIX
from nkod.envelope import FORMAT_VERSION as FORMAT_VERSION
from nkod.envelope import TAIL_LEN as _TAIL_LEN
from nkod.envelope import BadRecord as BadRecord
from nkod.envelope import LineError as LineError
from nkod.envelope import NewerVersion as NewerVersion
from nkod.envelope import check_fields, checked_body

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any

_TAIL_FORMAT = _CRC_PREFIX + b'%08x"}'


def encode(event: dict[str, Any]) -> bytes:
    """Serialise an event (without ``crc``) to one checked line ending in a newline."""
    body = orjson.dumps(event)
    if len(body) < 3:
        raise ValueError("an event must have at least one key")
    return b'%s%s%08x"}\n' % (body[:-1], _CRC_PREFIX, zlib.crc32(body))


def decode(line: bytes) -> dict[str, Any]:
    """Parse and verify one line (without its newline). Raises LineError naming what is wrong."""
    body = checked_body(line)
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise LineError("not a JSON object")
    return event


def check(line: bytes) -> dict[str, Any]:
    """The one test of whether a line (without its newline) is a valid record: used by nkod's replay and by
    ``nkoctl fsck`` alike, so they never disagree. Checksum, a JSON object, ``v`` (int, not newer than
    FORMAT_VERSION), ``seq`` (positive int), ``ts`` (a UTC time), ``type`` (string). Raises LineError
    (BadRecord when the checksum holds, NewerVersion for a newer format).

    The rest of a record is the fold's to read, and the fold replays any value a checksummed line can hold
    (a wrong-typed field counts as absent): a line nkod wrote is never refused for its contents, by nkod or by
    fsck, so this envelope is all they need to agree on."""
    return check_fields(decode(line))


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
