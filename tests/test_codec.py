"""One log line: JSON object, crc of the rest as its last key."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkod import codec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
events = st.dictionaries(st.text(min_size=1, max_size=10).filter(lambda k: k != "crc"), json_values, min_size=1)


@given(events)
def test_encode_then_decode_gives_the_event_back(event: dict[str, Any]) -> None:
    """Round trip: decode(encode(e)) == e, and the line is one line of valid JSON ending in a newline."""
    line = codec.encode(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line)["crc"]
    assert codec.decode(line[:-1]) == event


@given(events, st.data())
def test_any_changed_byte_is_detected(event: dict[str, Any], data: st.DataObject) -> None:
    """Changing any one byte of a line makes decode fail (crc-32 catches every single-byte error)."""
    line = bytearray(codec.encode(event)[:-1])
    i = data.draw(st.integers(0, len(line) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != line[i]))
    line[i] = new
    with pytest.raises(codec.LineError):
        codec.decode(bytes(line))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "no checksum"),
        (b'{"v":1}', "no checksum"),
        (b'{"v":1,"crc":"zzzzzzzz"}', "hexadecimal"),
        (b'{"v":1,"crc":"00000000"}', "mismatch"),
        (b'[1,"crc":"00000000"]', "no checksum|does not end"),
    ],
)
def test_bad_lines_say_why(line: bytes, reason: str) -> None:
    """Lines without a valid checksum are refused with the reason."""
    with pytest.raises(codec.LineError, match=reason):
        codec.decode(line)


def test_lines_are_jq_friendly() -> None:
    """Non-ASCII text (N'Ko) stays readable UTF-8 in the line."""
    line = codec.encode({"v": 1, "title": "ߒߞߏ"})
    assert "ߒߞߏ".encode() in line
