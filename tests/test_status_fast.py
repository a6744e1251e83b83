"""Issue 13, `nkoctl status` at any size: the plain command's fast entry, and the running daemon's
``events.crc`` record, which lets status trust the log's head without reading it while nothing else wrote."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from nkod import eventlog, snapshot
from nkod.ctl import _plain_status
from tests.helpers import DataDir, kill9, wait_for

TIME_FIELDS = ("elapsed_seconds", "rate_per_hour", "eta_seconds")


def _doc(r: Any) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(r.stdout)
    for key in TIME_FIELDS:
        doc.pop(key, None)
    return doc


def _running_daemon(tmp_path: Path) -> tuple[DataDir, Any]:
    """A real daemon working on a video that hangs, after a first run stopped cleanly: its snapshot is
    behind the log's end and the log's stat no longer the one that snapshot recorded."""
    d = DataDir(tmp_path / "data", snapshot_every=1000)
    d.manifest([{"video_id": f"v{i}", "frames": 1} for i in range(3)])
    assert d.run().returncode == 0
    d.manifest([{"video_id": "hangs", "fail": "hang"}], append=True)
    proc = d.start()
    wait_for(lambda: "video_started" in d.types("hangs"), what="the hanging video to start")
    snap = orjson.loads((d.root / "snapshot.json").read_bytes().split(b"\n")[0][24:-1])
    assert snap["state"]["offset"] < d.log.stat().st_size and snap["log_stat"] != snapshot.log_stat(d.log)
    return d, proc


def _head_read(d: DataDir) -> bool:
    replay = snapshot.status_replay(d.log, d.root / "snapshot.json")
    assert replay is not None
    return replay.head_read


def test_status_trusts_the_head_the_running_or_killed_daemon_vouches_for_until_the_log_changes(
    tmp_path: Path,
) -> None:
    """While nkod runs, and after kill -9, status reads only the log's tail (the daemon's events.crc holds
    the log's stat and CRC); once the log's stat changes (same bytes, touched), the head is read again."""
    d, proc = _running_daemon(tmp_path)
    try:
        wait_for(lambda: not _head_read(d), what="status to trust the running daemon's record")
        running = d.ctl("status", "--json")
        assert running.returncode == 0, running.stderr
        assert len(orjson.loads(running.stdout)["running"]) == 1
    finally:
        kill9(proc)
    assert not _head_read(d)
    r = d.ctl("status", "--json")
    assert r.returncode == 0 and orjson.loads(r.stdout)["completed"] == 3, r.stderr
    os.utime(d.log)  # the same bytes, but no stat vouches for them now
    assert _head_read(d)
    assert _doc(d.ctl("status", "--json")) == _doc(r)


def test_status_sees_damage_to_the_head_after_a_crash_even_with_the_mtime_set_back(tmp_path: Path) -> None:
    """A byte of the head flipped after kill -9, the log's mtime put back: status exits 4 naming the line
    (ctime cannot be set back, so the daemon's record no longer vouches for the log)."""
    d, proc = _running_daemon(tmp_path)
    kill9(proc)
    first = d.log.read_bytes().split(b"\n")[0]
    st = d.log.stat()
    with open(d.log, "r+b") as f:
        f.seek(len(first) + 20)
        byte = f.read(1)
        f.seek(len(first) + 20)
        f.write(bytes([byte[0] ^ 0x04]))
    os.utime(d.log, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = d.ctl("status", "--json")
    assert r.returncode == 4, r.stderr
    assert "line 2" in orjson.loads(r.stdout)["log_damaged"]


def test_the_writer_withdraws_its_record_once_someone_else_wrote_the_log(tmp_path: Path) -> None:
    """events.crc holds the log's stat and CRC after the last append (written by record(), once per loop
    pass); when another process appended between two of the writer's appends, the writer empties it and
    vouches no more (what it did not write or check)."""
    log, vouch = tmp_path / "events.jsonl", tmp_path / "events.crc"
    w = eventlog.LogWriter(log, 1, vouch=vouch)
    w.append([{"type": "log_created", "log_id": "x", "nkod_version": "0"}])
    w.record()
    assert eventlog.read_vouch(vouch) == (snapshot.log_stat(log), eventlog.crc_of_range(log, 0, w.offset))
    with open(log, "ab") as f:
        f.write(b"not the writer's\n")
    w.append([{"type": "daemon_started", "pid": 1}])
    w.record()
    assert eventlog.read_vouch(vouch) is None
    w.append([{"type": "daemon_started", "pid": 2}])
    w.close()
    assert eventlog.read_vouch(vouch) is None


def test_plain_status_prints_what_the_full_parser_prints(tmp_path: Path) -> None:
    """`status --json` and the box (the fast entry) print what the full parser prints for the same data
    (`--interval` sends it there), and a missing data dir gets the same message and exit code."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": f"v{i}", "frames": 1} for i in range(3)] + [{"video_id": "bad", "fail": "permanent"}])
    assert d.run().returncode == 0
    fast, full = d.ctl("status", "--json"), d.ctl("status", "--json", "--interval", "2")
    assert fast.returncode == full.returncode == 0 and _doc(fast) == _doc(full) and len(_doc(fast)["failed"]) == 1
    box, full_box = d.ctl("status"), d.ctl("status", "--interval", "2")
    assert box.returncode == full_box.returncode == 0 and "bad" in box.stdout
    assert box.stdout.count("\n") == full_box.stdout.count("\n")
    missing = tmp_path / "nowhere"
    fast_err = DataDir(missing).ctl("status", "--json")
    full_err = DataDir(missing).ctl("status", "--json", "--interval", "2")
    assert (fast_err.returncode, fast_err.stderr) == (full_err.returncode, full_err.stderr)


@pytest.mark.parametrize(
    ("args", "plain"),
    [
        (["status"], (None, False)),
        (["status", "--json"], (None, True)),
        (["--data-dir", "A", "status", "--json"], ("A", True)),
        (["status", "--data-dir=B"], ("B", False)),
        (["--data-dir", "A", "status", "--data-dir", "B"], ("B", False)),  # after the command wins
        (["--json", "status"], None),  # not an option of nkoctl itself: the parser says so
        (["status", "--watch"], None),
        (["status", "--js"], None),  # an abbreviation: the parser decides
        (["status", "--data-dir"], None),
        (["status", "--data-dir", "-x"], None),
        (["status", "status"], None),
        (["status", "-h"], None),
        (["plan"], None),
        ([], None),
    ],
)
def test_only_a_plain_status_takes_the_fast_entry(args: list[str], plain: tuple[str | None, bool] | None) -> None:
    """The fast entry takes `status [--json] [--data-dir DIR]` as argparse reads it; anything else goes to
    the full parser."""
    assert _plain_status(args) == plain


def test_a_fifo_in_place_of_events_crc_neither_blocks_nkod_nor_misleads_status(tmp_path: Path) -> None:
    """events.crc as a FIFO: nkod runs without its record (no hang opening it) and status reads the head."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "v1", "frames": 1}])
    os.mkfifo(d.root / "events.crc")
    assert d.run(timeout=60).returncode == 0
    assert eventlog.read_vouch(d.root / "events.crc") is None
    r = d.ctl("status", "--json")
    assert r.returncode == 0 and orjson.loads(r.stdout)["completed"] == 1, r.stderr


@pytest.mark.parametrize("wanted", [[0], [6], [0, 6], [1, 2], [4, 5], [3], [2, 5], [1, 4, 5], []])
def test_rows_found_from_either_end_are_the_rows_at_those_places(wanted: list[int]) -> None:
    """status parses only the rows its tail names, splitting from the nearer end: each is the row at its
    place, as a full split gives it."""
    rows = [{"id": f"v{i}", "s": "pending"} if i % 2 else {"id": f"v{i}"} for i in range(7)]
    body = orjson.dumps([r["id"] for r in rows]) + b"\n" + b"".join(orjson.dumps(r) + b"\n" for r in rows)
    parsed = snapshot._Body(body, f"{zlib.crc32(body):08x}")
    assert parsed.rows_at(wanted) == [rows[i] for i in wanted]
    assert parsed.all_rows() == rows
