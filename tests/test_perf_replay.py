"""A cold replay's fast paths (issue 13, row 4): the reader checks a chunk of lines in C-level passes and
falls back to `codec.check` line by line only where a line is bad, so replay and fsck still agree on what
a valid line is."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkod import codec, eventlog
from nkod.errors import LogCorruptError, LogError

TS = "2026-01-01T00:00:00.000000Z"


def raw_line(body: bytes) -> bytes:
    """A line whose checksum holds over `body` whatever `body` is (as a hand-made or buggy writer's)."""
    return body[:-1] + b',"crc":"%08x"}' % zlib.crc32(body)


def record(seq: object, **fields: Any) -> bytes:
    return raw_line(orjson.dumps({"v": 1, "seq": seq, "ts": TS, "type": "video_started", **fields}))


def _upper_crc(line: bytes) -> bytes:
    return line[:-10] + line[-10:].upper()


def _crafted_lines(seq: int) -> dict[str, bytes]:
    """Lines that each test of `check` refuses or accepts in its own way (the crc holds unless said)."""
    ts, n = TS.encode(), b"%d" % seq
    lines = {
        "valid": record(seq, video_id="a"),
        "valid, other zone": raw_line(b'{"v":1,"seq":%s,"ts":"2026-01-01T00:00:00+02:00","type":"x"}' % n),
        "valid, version 0": raw_line(b'{"v":0,"seq":%s,"ts":"2026-01-01T00:00:00Z","type":"x"}' % n),
        "valid, crc key inside": raw_line(b'{"crc":"x","v":1,"seq":%s,"ts":"%s","type":"x"}' % (n, ts)),
        "valid, upper-case crc": _upper_crc(raw_line(b'{"v":1,"seq":%s,"ts":"%s","type":"vx"}' % (n, ts))),
        "bad crc": record(seq, video_id="a").replace(b'"a"', b'"b"'),
        "no crc": b'{"v":1,"seq":%s,"ts":"%s","type":"x"}' % (n, ts),
        "empty": b"",
        "empty object": raw_line(b"{}"),
        "an array": raw_line(b"[1,2]"),
        "NaN": raw_line(b'{"v":1,"seq":%s,"ts":"%s","type":"x","n":NaN}' % (n, ts)),
        "not UTF-8": raw_line(b'{"v":1,"seq":%s,"ts":"%s","type":"\xff"}' % (n, ts)),
        "ts 30 February": record(seq, ts="2026-02-30T00:00:00.000000Z"),
        "ts hour 24": record(seq, ts="2026-01-01T24:00:00.000000Z"),
        "ts without zone": record(seq, ts="2026-01-01T00:00:00.000000"),
        "ts a number": record(seq, ts=1767225600),
        "ts missing": raw_line(b'{"v":1,"seq":%s,"type":"x"}' % n),
        "newer version": record(seq, v=2),
        "version true": record(seq, v=True),
        "version text": record(seq, v="1"),
        "seq 0": record(0),
        "seq true": record(True),
        "seq float": record(float(seq)),
        "seq negative": record(-seq),
        "type null": record(seq, type=None),
        "type number": record(seq, type=7),
        "duplicate version": raw_line(b'{"v":1,"seq":%s,"ts":"%s","type":"x","v":9}' % (n, ts)),
    }
    return lines


def crafted(name: str, seq: int = 1) -> bytes:
    return _crafted_lines(seq)[name]


CRAFTED = sorted(_crafted_lines(1))


def one_by_one(lines: list[bytes]) -> list[dict[str, Any] | codec.LineError]:
    out: list[dict[str, Any] | codec.LineError] = []
    for line in lines:
        try:
            out.append(codec.check(line))
        except codec.LineError as exc:
            out.append(exc)
    return out


@pytest.mark.parametrize("name", CRAFTED)
def test_the_batch_check_accepts_a_crafted_line_only_where_check_does(name: str) -> None:
    """Each crafted line (bad crc, 30 February, NaN, a newer version, ...): the batch check takes it only
    if `check` does, and then gives the same event; the valid lines nkod writes take the fast path."""
    lines = [record(1, video_id="x"), crafted(name, 2), record(3)]
    [_, verdict, _] = one_by_one(lines)
    fast = codec.check_all(lines)
    if isinstance(verdict, codec.LineError):
        assert fast is None
    elif name != "valid, upper-case crc":  # nkod writes lower case; the rest is check's to accept
        assert fast is not None
        assert fast[0] == [codec.check(x) for x in lines]
        assert fast[1] == [e["seq"] for e in fast[0]]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(CRAFTED), max_size=8), st.lists(st.integers(-2, 4), max_size=8))
def test_the_batch_check_is_check_over_a_list(names: list[str], seqs: list[int]) -> None:
    """For any list of lines: the batch check gives the events `check` gives when all pass, and None
    (go line by line) when any does not; a list of only nkod-written lines is never sent line by line."""
    lines = [crafted(n, i + 1) for i, n in enumerate(names)] + [record(s) for s in seqs]
    verdicts = one_by_one(lines)
    fast = codec.check_all(lines)
    if fast is not None:
        assert fast[0] == verdicts
        assert fast[1] == [e["seq"] for e in fast[0]]
    elif all(not isinstance(v, codec.LineError) for v in verdicts):
        assert "valid, upper-case crc" in names


@contextlib.contextmanager
def line_by_line_only() -> Iterator[None]:
    """The reader as it was before its batch check: every line through `codec.check`."""
    fast = codec.check_all
    codec.check_all = lambda lines: None
    try:
        yield
    finally:
        codec.check_all = fast


def read_outcome(path: Path, start: int = 0, prev_seq: int = 0) -> tuple[Any, ...]:
    result = eventlog.ScanResult()
    events: list[dict[str, Any]] = []
    error: tuple[str, str] | None = None
    try:
        for event in eventlog.scan(path, start_offset=start, prev_seq=prev_seq, result=result):
            events.append(event)
    except LogError as exc:
        error = (type(exc).__name__, str(exc))
    return events, error, result.end_offset, result.last_seq, result.lines, result.torn


_damage = st.sampled_from(CRAFTED) | st.sampled_from(["gap", "repeat", "torn", "cut"])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.integers(0, 40), _damage, st.sampled_from([7, 64, 1 << 20]))
def test_the_reader_finds_the_same_damage_as_line_by_line(n: int, at: int, damage: str, chunk: int) -> None:
    """A log of n good events with one crafted line, seq gap, repeat, torn or cut line at `at`: the reader
    yields the same events and raises the same error (line, offset) or notes the same torn tail as the
    reader that checks line by line, with chunks that split lines and with one chunk for all."""
    good = [record(i, video_id=f"v{i}") + b"\n" for i in range(1, n + 1)]
    at = min(at, n)
    if damage == "gap":
        bad = record(at + 3) + b"\n"
    elif damage == "repeat":
        bad = record(max(1, at)) + b"\n"
    elif damage == "torn":
        bad = record(at + 1)[:-5]  # no newline: the last line, half written
    elif damage == "cut":
        bad = record(at + 1)[:-5] + b"\n"
    else:
        bad = crafted(damage, at + 1) + b"\n"
    data = b"".join(good[:at]) + bad + (b"".join(good[at:]) if damage != "torn" else b"")
    with _tmp_log(data) as path, _chunk_size(chunk):
        fast = read_outcome(path)
        with line_by_line_only():
            slow = read_outcome(path)
        assert fast == slow
        offset = len(good[0]) * min(2, n)  # from an offset the first seq is whatever it is
        assert read_outcome(path, offset) == _slow(path, offset)


def _slow(path: Path, start: int) -> tuple[Any, ...]:
    with line_by_line_only():
        return read_outcome(path, start)


@contextlib.contextmanager
def _tmp_log(data: bytes) -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "events.jsonl"
        path.write_bytes(data)
        yield path


@contextlib.contextmanager
def _chunk_size(size: int) -> Iterator[None]:
    was = eventlog.CHUNK
    eventlog.CHUNK = size
    try:
        yield
    finally:
        eventlog.CHUNK = was


def test_a_replay_of_nkods_own_lines_does_not_go_line_by_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid log is read by the batch check alone: `codec.check` is called for no line of it."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(record(i, video_id=f"v{i % 7}") + b"\n" for i in range(1, 5001)))
    calls: list[bytes] = []
    check = codec.check

    def counted(line: bytes) -> dict[str, Any]:
        calls.append(line)
        return check(line)

    monkeypatch.setattr(codec, "check", counted)
    events, result = eventlog.read_all(path)
    assert len(events) == 5000 and result.last_seq == 5000 and result.torn is None
    assert calls == []
    with pytest.raises(LogCorruptError):  # and a bad line still goes line by line, to name it
        path.write_bytes(path.read_bytes().replace(b'"v4"', b'"v5"', 1))
        eventlog.read_all(path)
    assert calls
