"""Start-up with a long history (issue 13, row 6): snapshot rows as arrays (format 3; format 4's column
chunks: tests/test_snapshot_cols.py) built into Videos in C, older snapshots still read, and after a crash
the log's head read for its CRC from nkod's first moment."""

from __future__ import annotations

import gc
import math
import os
import sys
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkod import decide, eventlog, gcpause, headcrc, snapshot, steering, views
from nkod.daemon import EXIT_LOG
from nkod.decide import PlanRow
from nkod.state import PristineVideo, Projector, State, Status, Video, fold, format_ts, parse_ts, replace
from tests import strategies
from tests.helpers import DataDir, format3_snapshot

# -- snapshot format 3 --------------------------------------------------------------------------------


def _rows(data: bytes) -> list[Any]:
    return [orjson.loads(line) for line in data.split(b"\n")[2:] if line]


@given(events=strategies.events)
def test_format_3_rows_are_arrays_of_the_video_fields_and_load_as_the_same_state(events: list[dict[str, Any]]) -> None:
    """Any folded state written as format 3 (as nkod did before format 4): each row is the array of its
    Video's fields in order (only the id when the rest are defaults), and loading the snapshot gives the
    state back, its videos tuples of those fields."""
    state = fold(events)
    data = format3_snapshot(state)
    doc, rest = snapshot._parse(data)
    assert doc["v"] == snapshot.ROWS_AS_ARRAYS == 3 and doc["fields"] == list(Video._fields)
    for row, video in zip(_rows(data), state.videos.values(), strict=True):
        assert row == (
            [video.video_id] if video == Video(video.video_id) else orjson.loads(orjson.dumps(video[:], default=dict))
        )
    assert rest is not None
    loaded = snapshot._body(doc, rest).videos()
    assert loaded == dict(state.videos)
    # A row of only its id loads as the compact PristineVideo, any other as a Video: both tuples of the fields.
    assert all(type(v) is (PristineVideo if v == Video(v.video_id) else Video) for v in loaded.values())
    assert all(isinstance(v, tuple) and tuple(v) == tuple(state.videos[vid]) for vid, v in loaded.items())


def _format2(state: State) -> bytes:
    """A snapshot as nkod wrote it before format 3: rows as objects with short keys."""
    doc = snapshot.state_to_doc(state)
    rows = doc.pop("videos")
    body = orjson.dumps([r["id"] for r in rows]) + b"\n" + b"".join(orjson.dumps(r) + b"\n" for r in rows)
    head = orjson.dumps(
        {"v": 2, "state": doc, "summary": views.summary(state.videos.values()), "body_crc": f"{zlib.crc32(body):08x}"}
    )
    return b'{"crc":"%08x","doc":%s}\n%s' % (zlib.crc32(head), head, body)


def _log_and_state(tmp_path: Path) -> tuple[Path, State]:
    log = tmp_path / "events.jsonl"
    w = eventlog.LogWriter(log, 1)
    w.append([{"type": "log_created", "log_id": "L"}, {"type": "videos_added", "video_ids": ["a", "b", "c"]}])
    w.append([{"type": "video_started", "video_id": "a", "attempt": 1}])
    w.append([{"type": "video_completed", "video_id": "a", "attempt": 1, "counts": {"frames": 3}}])
    w.append([{"type": "video_started", "video_id": "b", "attempt": 1}])
    w.close()
    events, _ = eventlog.read_all(log)
    state = fold(events)
    p = Projector(state)
    p.offset = log.stat().st_size
    return log, p.state()


def test_a_format_2_snapshot_still_loads(tmp_path: Path) -> None:
    """A snapshot of the previous format (rows as objects) is read as before: the same state as the log's."""
    log, state = _log_and_state(tmp_path)
    (tmp_path / "snapshot.json").write_bytes(_format2(state))
    loaded = snapshot.load(tmp_path / "snapshot.json", log)
    assert loaded.problem is None and loaded.state == state


@pytest.mark.parametrize("encode", [format3_snapshot, snapshot.encode], ids=["format 3", "format 4"])
def test_a_format_3_or_4_snapshot_of_other_fields_is_not_used(tmp_path: Path, encode: Callable[[State], bytes]) -> None:
    """A snapshot whose rows list other fields than this nkod's Video (another nkod's) is not used: the
    state is rebuilt from the log, the same."""
    log, state = _log_and_state(tmp_path)
    data = encode(state)
    first, _, body = data.partition(b"\n")
    doc = snapshot._checked_doc(first)
    doc["fields"] = [*doc["fields"], "new_field"]
    head = orjson.dumps(doc)
    (tmp_path / "snapshot.json").write_bytes(b'{"crc":"%08x","doc":%s}\n%s' % (zlib.crc32(head), head, body))
    r = snapshot.replay(log, tmp_path / "snapshot.json")
    assert not r.snapshot_used and "other fields" in (r.snapshot_problem or "")
    assert r.projector.state() == state


@pytest.mark.parametrize(
    "rows",
    [
        b'["a"]\n["c"]\n',  # a row of another video
        b'["a"],["b"]\n["c"]\n',  # two rows on one line (and one too few lines for the ids)
        b'["a"]\n{"id":"b"}\n',  # an object row in an array body
        b'["a"]\n"b"\n',  # a string row (of one character, as its id)
        b'["a"]\n["b","nonsense"]\n',  # a row of neither one nor all fields
        b'["a"]\n["b","bogus",0,0,0,0,null,null,null,null,null,null,null,false,null,false,null,0,false,null,false,false]\n',
    ],
)
def test_array_rows_that_are_not_their_ids_or_not_videos_are_refused(rows: bytes) -> None:
    """Rows read a chunk at a time must still be, line by line, the arrays of their ids, of a known status."""
    body = b'["a","b"]\n' + rows
    with pytest.raises((ValueError, KeyError)):
        snapshot._Body(body, f"{zlib.crc32(body):08x}", arrays=True).videos()


# -- headcrc: the head's CRC read from the start ---------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 1, headcrc.STEP - 1, headcrc.STEP, headcrc.STEP + 7, 2 * headcrc.STEP + 3])
def test_an_early_read_gives_the_crc_of_any_prefix(tmp_path: Path, offset: int) -> None:
    """The CRC of bytes [0, offset) for any offset, on either side of the read's steps; None past the end."""
    path = tmp_path / "events.jsonl"
    data = os.urandom(2 * headcrc.STEP + 100)
    path.write_bytes(data)
    read = headcrc.PrefixCrc(str(path), headcrc._identity(path.stat()))
    assert read.at(offset) == zlib.crc32(data[:offset])
    assert read.at(len(data) + 1) is None


@given(data=st.binary(max_size=4096), start=st.integers(0, 2**32 - 1))
def test_the_head_read_s_crc_is_zlib_s_crc32(data: bytes, start: int) -> None:
    """The CRC the head is read with (zlib-ng's where installed) is zlib's CRC-32, from any running value:
    snapshots record their head_crc with zlib's."""
    assert headcrc.crc32()(data, start) == zlib.crc32(data, start)


def test_the_early_read_is_not_held_back_by_a_busy_main_thread(tmp_path: Path) -> None:
    """While nkod's main thread runs Python code (its imports), the early read still gets through the log:
    each of its reads and CRC calls releases the GIL, and at the default 5 ms switch interval taking it back
    after each waited ~5 ms (2 per step: ~160 ms for these 64 MB; on a real start still running ~100 ms past
    the imports). The interval is the process's own again once the read ends."""
    path = tmp_path / "events.jsonl"
    steps = 16
    with open(path, "wb") as f:
        for _ in range(steps):
            f.write(os.urandom(headcrc.STEP))
    before = sys.getswitchinterval()
    t0 = time.perf_counter()
    read = headcrc.PrefixCrc(str(path), headcrc._identity(path.stat()))
    spins = 0
    while read._thread.is_alive() and time.perf_counter() - t0 < 10:
        spins += 1  # Python code: it holds the GIL but for the interpreter's switches
    elapsed = time.perf_counter() - t0
    assert read.whole and len(read.marks) == steps + 1
    # ~15 ms here with the short interval, 125-265 ms at 5 ms a turn (under 60 ms: not held back)
    assert elapsed < 0.06, f"{elapsed * 1000:.0f} ms for {steps} steps of {headcrc.STEP >> 20} MiB"
    assert sys.getswitchinterval() == before


def test_a_freezing_pause_leaves_the_objects_made_in_it_to_no_collection() -> None:
    """gcpause.paused(freeze=True), around the daemon's replay at its start: what was made in the block is
    in the collector's permanent generation when it is back on, and no collection runs as it ends (after an ordinary
    pause the first allocation collects all of it: ~1.6 ms for 10k videos, before READY=1)."""
    gc.collect()
    collections = [g["collections"] for g in gc.get_stats()]
    try:
        with gcpause.paused(freeze=True):
            kept = [[i] for i in range(50_000)]
        collections_after = [g["collections"] for g in gc.get_stats()]
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    assert collections_after == collections and frozen > len(kept)


def test_an_early_read_of_a_log_that_changed_since_is_not_taken(tmp_path: Path) -> None:
    """A log written to between the read's start and the load (any byte: its stat changes) is not taken over."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "events.jsonl").write_bytes(b"x" * headcrc.MIN_BYTES)
    (d / "snapshot.json").write_bytes(b"{}\n")
    headcrc.start(str(d))
    with open(d / "events.jsonl", "ab") as f:
        f.write(b"y")
    assert headcrc.take(d / "events.jsonl") is None


@pytest.mark.parametrize("extra", [0, 1, 4096, 100_000])
def test_the_early_head_read_keeps_the_crc_at_the_snapshot_offset_its_first_line_gives(
    tmp_path: Path, extra: int
) -> None:
    """After a crash nkod reads the log's CRC in a thread from its first moment; it finds the snapshot's offset
    in the snapshot's first line (as bytes) and keeps the CRC at exactly that prefix, which is zlib's: the
    load's check then reads nothing more. Another prefix is still right (read from the nearest mark)."""
    log = tmp_path / "events.jsonl"
    data = os.urandom(headcrc.STEP * 2 + 12345)
    log.write_bytes(data)
    p = Projector()
    p.offset = headcrc.STEP + extra
    p.seq = 123
    first = snapshot.encode(p).partition(b"\n")[0]
    target = headcrc._snapshot_offset(first)
    assert target == p.offset
    read = headcrc.PrefixCrc(str(log), headcrc._identity(log.stat()), target)
    assert read.at(p.offset) == zlib.crc32(data[: p.offset])
    assert read.whole and read.at_target == zlib.crc32(data[: p.offset])
    assert read.at(p.offset + 1) == zlib.crc32(data[: p.offset + 1])


def test_a_snapshot_first_line_without_the_writers_state_gives_no_offset() -> None:
    """What is not nkod's snapshot header gives no offset to guess (the early read then keeps only its marks)."""
    assert headcrc._snapshot_offset(b'{"crc":"00000000","doc":{"v":3}}') is None
    assert headcrc._snapshot_offset(b'"state":{"seq":5,"offset":"12"}') is None
    assert headcrc._snapshot_offset(b'"state":{"seq":5,"other":1,"offset":12}') is None
    assert headcrc._snapshot_offset(b'"state":{"seq":5,"offset":12,') == 12


def _big_log(d: DataDir, events: int) -> None:
    """Append `events` filler events (each ~170 bytes) to `d`'s log, with the seqs and times that follow."""
    last = d.events()[-1]
    w = eventlog.LogWriter(d.log, last["seq"] + 1)
    w.append([{"type": "config_reloaded", "source": "x" * 80, "workers": 1} for _ in range(events)])
    w.close()


def _crashed(tmp_path: Path) -> DataDir:
    """A data dir as a daemon leaves it when it dies: a log of ~9 MB, a snapshot 500 events behind its end
    (with the CRC of the head it covers), and no events.crc vouching for the log."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "v1"}, {"video_id": "v2"}])
    assert d.run().returncode == 0
    _big_log(d, 55_000)
    rep = snapshot.replay(d.log, d.root / "snapshot.json")
    crc = eventlog.crc_of_range(d.log, 0, rep.scan.end_offset)
    snapshot.write(d.root / "snapshot.json", rep.projector, head_crc=crc)
    _big_log(d, 500)
    (d.root / "events.crc").unlink(missing_ok=True)
    assert d.log.stat().st_size >= headcrc.MIN_BYTES
    return d


def _ready_line(output: str) -> str:
    return next(line for line in output.splitlines() if " ready " in line)


def test_after_a_crash_the_head_is_read_from_nkod_s_start_and_the_run_goes_on(tmp_path: Path) -> None:
    """A restart on a big log whose snapshot is behind its end: the head's CRC comes from the read begun as
    nkod started (head_read=early), the snapshot is used, and the run ends as a full replay would."""
    d = _crashed(tmp_path)
    expected = snapshot.replay(d.log, d.root / "snapshot.json", use_snapshot=False).projector.state()
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "head_read=early" in _ready_line(out), out[-3000:]
    started = [e for e in d.events() if e["type"] == "daemon_started"][-1]
    assert started["snapshot_used"] is True and started["replayed_events"] == 500
    assert started["seq"] == expected.seq + 1 and d.completed_count() == {"v1": 1, "v2": 1}


def test_after_a_clean_stop_the_head_is_not_read_again(tmp_path: Path) -> None:
    """The snapshot a clean stop leaves records the log's stat: the next start reads no head (head_read=null)."""
    d = _crashed(tmp_path)
    assert d.run().returncode == 0  # a clean stop: its snapshot at the log's end, with the log's stat
    r = d.run()
    assert r.returncode == 0
    assert "head_read=null" in _ready_line(r.stdout + r.stderr)


def test_a_damaged_head_under_the_snapshot_stops_nkod_before_it_appends(tmp_path: Path) -> None:
    """A byte changed in the head the snapshot covers: the early read's CRC differs, the full replay finds
    the damaged line, nkod exits with the log error and appends nothing."""
    d = _crashed(tmp_path)
    data = bytearray(d.log.read_bytes())
    at = len(data) // 2
    at = data.index(b"x" * 10, at) + 5  # inside a filler line's text: its line checksum no longer holds
    data[at] = ord("z")
    d.log.write_bytes(bytes(data))
    r = d.run()
    assert r.returncode == EXIT_LOG, r.stdout + r.stderr
    assert d.log.read_bytes() == bytes(data)


# -- plan of a million: indexes and rows made in C-level passes ------------------------------------------


@given(st.one_of(strategies.events, strategies.steering_events))
def test_projector_indexes_from_orders_in_the_videos_own_order_equal_a_scan_of_its_videos(
    log: list[dict[str, Any]],
) -> None:
    """A state whose redo and queue orders are its videos' own order (a big manifest added, not yet started:
    built without a lookup per id) gives the same indexes as the obvious per-video scan."""
    s = fold(log)
    own = {status: tuple(vid for vid, v in s.videos.items() if v.status is status) for status in Status}
    s = s._replace(redo_order=own[Status.INTERRUPTED], queue_order=own[Status.PENDING])
    p = Projector(s)
    boosted = sorted((v for v in s.videos.values() if v.priority_boost), key=lambda v: v.priority_boost)
    counts = {status: sum(v.status is status for v in s.videos.values()) for status in Status}
    assert (list(p.redo), list(p.queue)) == (list(own[Status.INTERRUPTED]), list(own[Status.PENDING]))
    assert (p.status_counts, list(p.boosted)) == (counts, [v.video_id for v in boosted])


def _plan_one_by_one(p: Projector, entries: dict[str, Any], now: datetime) -> list[PlanRow]:
    """decide.plan as it was written before its C-level passes: one video at a time, in the run order."""
    priorities = steering.entry_priorities(entries)
    videos = p.videos
    runs: list[PlanRow] = []
    waits: list[PlanRow] = []
    placed: set[str] = set()
    for vid in steering.run_order(p, entries.keys(), priorities):
        placed.add(vid)
        v = videos[vid]
        wait = decide.retry_wait(v, now, math.inf) if v.not_before is not None else 0.0
        if v.not_before is not None and wait > 0 and v.status is Status.PENDING:
            left = (parse_ts(v.not_before) - now).total_seconds()
            until = v.not_before if left <= wait else format_ts(now + timedelta(seconds=wait))
            why = f"backoff after attempt {v.attempt} until {until}: {v.error}"
            waits.append(PlanRow(vid, "wait", why, round(wait, 3)))
            continue
        if v.status is Status.INTERRUPTED:
            reason = "interrupted: redone first"
        else:
            reason = "pending" if v.failures == 0 else f"retry after {v.failures} failure(s)"
            if v.priority_boost:
                reason += ", prioritized (nkoctl prioritize)"
            elif priorities.get(vid):
                reason += f", priority {priorities[vid]}"
        if v.redo:
            reason += "; redo: the previous output is archived when this one is committed"
        runs.append(PlanRow(vid, "run", reason))
    rest = [r for r in decide.plan(p, entries, now) if r.video_id not in placed]
    return runs + waits + rest


@given(st.one_of(strategies.events, strategies.steering_events), st.data())
def test_plan_rows_made_in_passes_equal_the_rows_made_one_by_one(
    log: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Any state, some videos in a backoff, any entries (some with priorities, some missing): the runs and
    waits decide.plan makes in C-level passes are the rows the one-by-one loop made, in the same order."""
    s = fold(log)
    videos = dict(s.videos)
    for vid in data.draw(st.lists(st.sampled_from(sorted(videos)), unique=True)) if videos else []:  # backoffs
        videos[vid] = replace(videos[vid], not_before="2026-01-01T00:01:00.000000Z", retry_delay=60.0, failures=1)
    p = Projector(s._replace(videos=MappingProxyType(videos)))
    chosen = data.draw(st.lists(st.sampled_from(sorted(p.videos)), unique=True)) if p.videos else []
    entries: dict[str, Any] = {}
    for vid in chosen:
        priority = data.draw(st.sampled_from([0, 0, 0, 2, -1]))
        entries[vid] = {"path": "x", "priority": priority} if priority else {"path": "x"}
    now = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert decide.plan(p, entries, now) == _plan_one_by_one(p, entries, now)


@pytest.mark.parametrize("encode", [format3_snapshot, snapshot.encode], ids=["format 3", "format 4"])
def test_rows_longer_than_a_chunk_and_ids_json_escapes_load_as_they_were(encode: Callable[[State], bytes]) -> None:
    """A row longer than the chunk format-3 rows are parsed by (a long error text), ids with a quote, a
    backslash or non-ASCII, among plain rows: the snapshot's videos are the state's."""
    ids = ["plain1", 'q"uote', "back\\slash", "ߒߞߏ", "long", "plain2", *(f"p{i}" for i in range(3000))]
    videos = {vid: Video(vid) for vid in ids}
    videos["long"] = Video("long", status=Status.FAILED, failures=1, error="x" * (3 * snapshot._ROWS_CHUNK))
    state = State(videos=MappingProxyType(videos), queue_order=tuple(v for v in ids if v != "long"))
    doc, rest = snapshot._parse(encode(state))
    assert rest is not None
    assert snapshot._body(doc, rest).videos() == videos
