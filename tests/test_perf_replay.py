"""A cold replay's fast paths (issue 13, row 4): the reader checks a chunk of lines in C-level passes and
falls back to `codec.check` line by line only where a line is bad, so replay and fsck still agree on what
a valid line is."""

from __future__ import annotations

import contextlib
import io
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkod import codec, eventlog, logs, state
from nkod.errors import LogCorruptError, LogError
from nkod.state import Projector, Status
from tests.strategies import stamp

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
        offset = len(good[0]) * min(2, n)  # from an offset with no seq known the first is whatever it is
        for prev_seq in (0, min(2, n), 5):  # (a snapshot's tail: the seq before it is known)
            assert read_outcome(path, offset, prev_seq) == _slow(path, offset, prev_seq)


def _slow(path: Path, start: int, prev_seq: int) -> tuple[Any, ...]:
    with line_by_line_only():
        return read_outcome(path, start, prev_seq)


@contextlib.contextmanager
def _tmp_log(data: bytes) -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "events.jsonl"
        path.write_bytes(data)
        yield path


@contextlib.contextmanager
def _chunk_size(size: int) -> Iterator[None]:
    was = eventlog.SCAN_CHUNK
    eventlog.SCAN_CHUNK = size
    try:
        yield
    finally:
        eventlog.SCAN_CHUNK = was


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


# -- the fold's inline fast paths ------------------------------------------------------------------------
# The three hot mutators as they were before their fast paths (nkod 1c7cdd1): the definition the fast
# paths must keep, for any value a checksummed line can hold.


class PlainProjector(Projector):
    """Projector.apply_all as it was before its inline fast path for `session_seconds` (nkod 1c7cdd1)."""

    def apply_all(self, events: Any) -> None:
        mutators = state._MUTATORS
        try:
            for event in events:
                seq = event["seq"]
                if seq != self.seq + 1:
                    raise ValueError(f"event seq {seq} does not follow {self.seq}")
                kind = event["type"]
                mutate = mutators.get(kind)
                if mutate is not None:
                    mutate(self, event)
                secs = event.get("session_seconds")
                if secs is not None:
                    self._note_session_seconds(secs)
                self.seq = seq
                if kind != "log_repaired" or "backup" not in event:
                    self.last_ts = event["ts"]
        finally:
            videos = self.videos
            for vid, d in self._drafts.items():
                videos[vid] = state._freeze(d)
            self._drafts.clear()


def _reference_started(p: state.Projector, e: dict[str, Any]) -> None:
    vid = state._vid(e)
    if vid is None:
        return
    attempt, started_seq, ts = e.get("attempt"), state._int(e.get("orig_seq"), e["seq"]), e["ts"]
    v, old, old_counts = p._edit(vid)
    v.status = Status.RUNNING
    v.starts = v.starts + 1
    v.attempt = state._int(attempt, v.attempt + 1)
    v.started_seq = started_seq
    v.started_at = ts
    v.not_before = None
    v.retry_delay = None
    v.priority_boost = 0
    v.entry_hash = state._text(e.get("entry_hash"))
    p.boosted.pop(vid, None)
    p._settle(v, old, old_counts)


def _reference_retry_scheduled(p: state.Projector, e: dict[str, Any]) -> None:
    vid = state._vid(e)
    if vid is None:
        return
    not_before = state._ts_or_none(e.get("not_before"))
    error, kind = state._text(e.get("error"), "no error text"), state._text(e.get("error_kind"), "transient")
    delay = state._retry_delay(e)
    v, old, old_counts = p._edit(vid)
    v.status = Status.PENDING
    v.failures = v.failures + 1
    v.not_before = not_before
    v.retry_delay = delay
    v.error = error
    v.error_kind = kind
    p._settle(v, old, old_counts)


def _reference_interrupted(p: state.Projector, e: dict[str, Any]) -> None:
    vid = state._vid(e)
    if vid is None:
        return
    reason = state._text(e.get("reason"))
    v, old, old_counts = p._edit(vid)
    v.status = Status.INTERRUPTED
    v.error = reason
    v.error_kind = "interrupted"
    p._settle(v, old, old_counts)


class Name(str):
    """A str subclass: not what orjson makes, but a value the fold must read as a string all the same."""


def _field(*values: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from([_ABSENT, *values])


_ABSENT = object()
_ODD: list[Any] = [None, 5, True, 2.5, [], {}, Name("n")]
_TIMES = ["2026-01-01T00:00:09.000000Z", "2026-02-30T00:00:00.000000Z", "2026-01-01T00:00:00", "x Z"]
_hostile = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "video_started",
                "video_retry_scheduled",
                "video_interrupted",
                "video_completed",
                "video_failed",
                "retry_requested",
                "video_prioritized",
                "video_redo_requested",
                "video_skipped",
                "videos_added",
                "daemon_started",
                "daemon_stopped",
            ]
        ),
        "video_id": _field("a", "b", "", Name("a"), 5, None),
        "video_ids": _field(["a", "b", "c"]),
        "attempt": _field(1, 3, *_ODD),
        "orig_seq": _field(7, *_ODD),
        "entry_hash": _field("h", *_ODD),
        "not_before": _field(*_TIMES, "2026-01-01T02:00:00+02:00", *_ODD),
        "error": _field("e", *_ODD),
        "error_kind": _field("permanent", *_ODD),
        "delay_seconds": _field(3.0, -1.0, -0.0, float("nan"), float("inf"), 4, *_ODD),
        "reason": _field("r", *_ODD),
        "session_seconds": _field(1.5, 3.0, 0.0, -1.0, float("nan"), float("inf"), 2, *_ODD),
        "counts": _field({"frames": 3}),
    }
).map(lambda d: {k: v for k, v in d.items() if v is not _ABSENT})


@settings(max_examples=400, deadline=None)
@given(st.lists(_hostile, max_size=40), st.integers(0, 40))
def test_the_folds_fast_paths_equal_the_plain_mutators(drafts: list[dict[str, Any]], cut: int) -> None:
    """Any values in the hot events' fields and `session_seconds` (wrong types, str subclasses, NaN, bad
    times): the fold with its inline fast paths gives the state, run order and counts the plain fold gives,
    in one apply_all call or in two."""
    log = stamp([{"type": "log_created", "log_id": "x"}, *drafts])
    fast = Projector()
    fast.apply_all(log[:cut])
    fast.apply_all(log[cut:])
    reference = dict(state._MUTATORS)
    reference.update(
        video_started=_reference_started,
        video_retry_scheduled=_reference_retry_scheduled,
        video_interrupted=_reference_interrupted,
    )
    plain = PlainProjector()
    with _mutators(reference):
        plain.apply_all(log[:cut])
        plain.apply_all(log[cut:])
    assert fast.state() == plain.state()
    assert (list(fast.redo), list(fast.queue), list(fast.boosted)) == (
        list(plain.redo),
        list(plain.queue),
        list(plain.boosted),
    )
    assert fast.status_counts == plain.status_counts and fast.totals == plain.totals
    assert (fast.open_seconds, fast.seq, fast.last_ts) == (plain.open_seconds, plain.seq, plain.last_ts)


@contextlib.contextmanager
def _mutators(table: dict[str, Any]) -> Iterator[None]:
    was = state._MUTATORS
    state._MUTATORS = table
    try:
        yield
    finally:
        state._MUTATORS = was


# -- the per-event log line ------------------------------------------------------------------------------


def _reference_kv(event_dict: dict[str, Any]) -> str:
    """logs._kv as it was before its regex (nkod 1c7cdd1)."""
    parts = []
    for key, value in event_dict.items():
        text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
        if isinstance(value, str) and (not value or any(c in value for c in ' ="\n')):
            text = orjson.dumps(value).decode()
        parts.append(f"{key}={text}")
    return " ".join(parts)


_log_values = st.one_of(
    st.text(alphabet=st.sampled_from('ab =\n"\\\tߒ-'), max_size=8),
    st.builds(Name, st.text(max_size=4)),
    st.integers(-(2**63), 2**63 - 1),  # (orjson refuses larger: the log line raised and raises alike)
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.lists(st.integers(0, 2**63), max_size=3),
)


@given(st.dictionaries(st.text(max_size=5), _log_values, max_size=6))
def test_the_log_lines_key_value_text_is_unchanged(fields: dict[str, Any]) -> None:
    """The plain and journal log lines' ``key=value`` text is what it was: texts bare unless empty or
    holding a space, '=', '"' or a newline, then quoted as JSON; everything else as JSON."""
    assert logs._kv(fields) == _reference_kv(fields)


@given(st.integers(0, 253402300799_999999), st.integers(-2_000_000, 2_000_000))
def test_the_log_lines_timestamp_is_isoformat_in_utc(micros: int, step: int) -> None:
    """The log line's timestamp, formatted once per second, is what structlog's TimeStamper(fmt="iso",
    utc=True) writes for the same instant (no fraction when it is 0), before and after another second."""
    for t in (micros, max(0, min(253402300799_999999, micros + step)), micros):
        instant = datetime.fromtimestamp(t // 1_000_000, UTC).replace(microsecond=t % 1_000_000)
        assert logs.iso_utc(t) == instant.isoformat().replace("+00:00", "Z")


def test_the_log_lines_are_stamped_now() -> None:
    """A line the configured logger writes carries the time it was written, in that format."""
    out = io.StringIO()
    logs.configure("plain", stream=out)
    before = datetime.now(UTC)
    logs.get().info("video_started", video_id="a")
    after = datetime.now(UTC)
    stamp_text, level, event, rest = out.getvalue().split()
    assert (level, event, rest) == ("info", "video_started", "video_id=a")
    assert before <= datetime.fromisoformat(stamp_text) <= after


def test_a_log_line_with_exc_info_still_shows_the_exception() -> None:
    """exc_info on a plain log line is rendered as the exception's traceback text, as structlog does."""
    out = io.StringIO()
    logs.configure("plain", stream=out)
    try:
        raise ValueError("the cause")
    except ValueError:
        logs.get().error("crashed", exc_info=True)
    assert "crashed" in out.getvalue() and "ValueError: the cause" in out.getvalue()
    assert "exc_info=" not in out.getvalue()


def test_the_fixed_event_logger_is_the_one_the_lazy_logger_uses() -> None:
    """Once logging is configured, the logger the daemon keeps for its per-event lines is the very one its
    lazy logger hands each call on, so the lines go where every other line goes."""
    out = io.StringIO()
    logs.configure("plain", stream=out)
    lazy = logs.get()
    fixed = logs.fixed(lazy)
    assert fixed is lazy.bind()
    fixed.info("video_started", video_id="a")
    lazy.info("video_completed", video_id="a")
    assert [line.split()[2] for line in out.getvalue().splitlines()] == ["video_started", "video_completed"]
