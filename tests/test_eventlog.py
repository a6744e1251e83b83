"""Reading and appending the log: torn tails are cut, damage in the middle is named, versions checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from nkod import codec, eventlog
from nkod.errors import LogCorruptError, LogVersionError


def write_log(path: Path, n: int) -> list[bytes]:
    lines = [
        codec.encode({"v": 1, "seq": i, "ts": "2026-01-01T00:00:00Z", "type": "x", "i": i}) for i in range(1, n + 1)
    ]
    path.write_bytes(b"".join(lines))
    return lines


def test_reads_every_event_in_order(tmp_path: Path) -> None:
    """A whole log yields every event; end offset is the file size."""
    log = tmp_path / "events.jsonl"
    write_log(log, 5)
    events, result = eventlog.read_all(log)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert result.end_offset == log.stat().st_size and result.torn is None and result.last_seq == 5


def test_missing_log_is_empty(tmp_path: Path) -> None:
    """No file yet: no events, no error."""
    events, result = eventlog.read_all(tmp_path / "nope.jsonl")
    assert events == [] and result.end_offset == 0


@pytest.mark.parametrize("cut", [1, 10, -2, -1])
def test_a_cut_last_line_is_a_torn_tail(tmp_path: Path, cut: int) -> None:
    """Power loss mid-append leaves a partial last line: reported as torn, good lines kept."""
    log = tmp_path / "events.jsonl"
    lines = write_log(log, 3)
    keep = len(lines[0]) + len(lines[1])
    log.write_bytes(b"".join(lines)[: keep + (cut if cut > 0 else len(lines[2]) + cut)])
    events, result = eventlog.read_all(log)
    assert [e["seq"] for e in events] == [1, 2]
    assert result.torn is not None and result.torn.offset == keep and result.torn.line == 3


def test_garbage_after_the_last_good_line_is_torn(tmp_path: Path) -> None:
    """Zeros written by a power cut after the last line: a torn tail, not damage."""
    log = tmp_path / "events.jsonl"
    write_log(log, 2)
    with open(log, "ab") as f:
        f.write(b"\x00" * 100 + b"\n" + b"\x00" * 10)
    events, result = eventlog.read_all(log)
    assert len(events) == 2 and result.torn is not None and result.torn.line == 3


def test_damage_in_the_middle_names_file_line_and_offset(tmp_path: Path) -> None:
    """A changed byte with good lines after it is corruption: LogCorruptError with line and offset."""
    log = tmp_path / "events.jsonl"
    lines = write_log(log, 4)
    data = bytearray(log.read_bytes())
    offset = len(lines[0])
    data[offset + 20] ^= 0x01
    log.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError) as err:
        eventlog.read_all(log)
    assert err.value.line == 2 and err.value.offset == offset
    assert str(log) in str(err.value) and "nkoctl fsck" in str(err.value)


def test_a_seq_gap_is_damage(tmp_path: Path) -> None:
    """A missing line (seq jumps) is named as damage."""
    log = tmp_path / "events.jsonl"
    lines = write_log(log, 4)
    log.write_bytes(lines[0] + lines[2] + lines[3])
    with pytest.raises(LogCorruptError, match="seq 3 does not follow 1"):
        eventlog.read_all(log)


def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    """A log written by a newer nkod is refused with a clear message, not misread."""
    log = tmp_path / "events.jsonl"
    log.write_bytes(codec.encode({"v": 99, "seq": 1, "ts": "t", "type": "x"}))
    with pytest.raises(LogVersionError, match="format version 99"):
        eventlog.read_all(log)


def test_truncate_torn_keeps_the_cut_bytes(tmp_path: Path) -> None:
    """Cutting a torn tail leaves the good part and keeps the cut bytes beside the log."""
    log = tmp_path / "events.jsonl"
    lines = write_log(log, 2)
    with open(log, "ab") as f:
        f.write(b'{"v":1,"seq":3,"ts')
    _, result = eventlog.read_all(log)
    assert result.torn is not None
    kept = eventlog.truncate_torn(log, result.torn)
    assert log.read_bytes() == b"".join(lines)
    assert kept.read_bytes() == b'{"v":1,"seq":3,"ts'


def test_writer_stamps_seq_and_ts_and_reads_back(tmp_path: Path) -> None:
    """append() numbers events from next_seq, stamps v and ts, and the reader reads them back."""
    log = tmp_path / "events.jsonl"
    w = eventlog.LogWriter(log, 1)
    out = w.append([{"type": "a"}, {"type": "b", "x": 1}], ts="2026-01-01T00:00:00.000000Z")
    w.append([{"type": "c"}])
    w.close()
    assert [e["seq"] for e in out] == [1, 2] and out[1]["v"] == 1
    events, result = eventlog.read_all(log)
    assert [e["type"] for e in events] == ["a", "b", "c"] and result.end_offset == w.offset


def test_scan_from_an_offset_continues_line_numbers(tmp_path: Path) -> None:
    """Scanning a tail checks seq continuity against the given previous seq."""
    log = tmp_path / "events.jsonl"
    lines = write_log(log, 4)
    offset = len(lines[0]) + len(lines[1])
    assert [e["seq"] for e in eventlog.scan(log, start_offset=offset, prev_seq=2)] == [3, 4]
    with pytest.raises(LogCorruptError):
        list(eventlog.scan(log, start_offset=offset, prev_seq=5))


def test_line_ending_at_finds_the_event_before_an_offset(tmp_path: Path) -> None:
    """line_ending_at(offset) is the event whose newline ends at offset; None inside a line."""
    log = tmp_path / "events.jsonl"
    lines = write_log(log, 3)
    off = len(lines[0]) + len(lines[1])
    found = eventlog.line_ending_at(log, off)
    assert found is not None and found["seq"] == 2
    assert eventlog.line_ending_at(log, off - 3) is None


def test_line_ending_at_finds_a_line_longer_than_the_first_window(tmp_path: Path) -> None:
    """A huge line (a videos_added of many ids) is still found, so its snapshot stays usable."""
    log = tmp_path / "events.jsonl"
    big = codec.encode({"v": 1, "seq": 1, "ts": "t", "type": "videos_added", "video_ids": ["x" * 60] * 5000})
    log.write_bytes(big)
    found = eventlog.line_ending_at(log, len(big))
    assert found is not None and found["seq"] == 1 and len(big) > 65536
