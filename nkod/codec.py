"""One event log line: a standalone JSON object whose last key, ``crc``, checks the rest.

    {"v":1,"seq":7,"ts":"2026-11-26T15:00:00.000000Z","type":"video_started",...,"crc":"1a2b3c4d"}

``crc`` is the CRC-32 (hex) of the same object serialised without it, so verifying costs a slice and a
crc32, not a re-serialisation. Lines stay valid JSON for ``jq``.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

FORMAT_VERSION = 1
_CRC_PREFIX = b',"crc":"'
_TAIL_LEN = len(_CRC_PREFIX) + 8 + 2  # ,"crc":"xxxxxxxx"}


class LineError(ValueError):
    """A line that is not a valid record (the reason is the message)."""


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
