"""Fast at any size (issue 13): the shortcuts that make status, replay and the manifest cheap give exactly
what the slow, obvious way gives."""

from __future__ import annotations

import os
import signal
import tempfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from nkod import codec, eventlog, manifest, snapshot, views
from nkod.state import Projector, fold
from tests.helpers import DataDir, wait_for
from tests.strategies import events, stamp

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _write_log(path: Path, log: list[dict[str, Any]]) -> list[int]:
    """Write `log` with the real codec; the byte offset after each line."""
    ends, offset = [], 0
    with open(path, "wb") as f:
        for e in log:
            line = codec.encode(e)
            f.write(line)
            offset += len(line)
            ends.append(offset)
    return ends


def _status_via_summary(root: Path) -> dict[str, Any] | None:
    fast = snapshot.status_replay(root / "events.jsonl", root / "snapshot.json")
    if fast is None:
        return None
    return views.status_doc(fast.projector, NOW, None, None, None, fast.summary)


def _status_via_full_replay(root: Path) -> dict[str, Any]:
    rep = snapshot.replay(root / "events.jsonl", root / "snapshot.json", use_snapshot=False)
    return views.status_doc(rep.projector, NOW, None)


@settings(max_examples=150, deadline=None)
@given(events, st.data())
def test_status_from_snapshot_summary_and_tail_equals_full_replay(
    log: list[dict[str, Any]], data: st.DataObject
) -> None:
    """For any log and any snapshot point, status from the snapshot's summary plus the tail (rows parsed only
    for the videos the tail names) is the very document a full replay gives, whatever the snapshot's videos
    per line."""
    cut = data.draw(st.integers(1, len(log)), label="snapshot after event")
    chunk = data.draw(st.sampled_from([1, 2, snapshot.CHUNK_VIDEOS]), label="videos per snapshot line")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ends = _write_log(root / "events.jsonl", log)
        p = Projector()
        p.apply_all(log[:cut])
        p.offset = ends[cut - 1]
        snapshot.write(root / "snapshot.json", p, chunk=chunk)
        got = _status_via_summary(root)
        assert got is not None, "a matching format-2 snapshot is used"
        assert got == _status_via_full_replay(root)


def test_summary_equals_the_status_lists_of_the_state() -> None:
    """views.summary of a state's videos is what status_doc computes from the state itself."""
    log = stamp(
        [
            {"type": "log_created", "log_id": "L"},
            {"type": "videos_added", "video_ids": ["a", "b", "c", "d"]},
            {"type": "video_started", "video_id": "c", "attempt": 1},
            {"type": "video_failed", "video_id": "c", "attempt": 1, "error": "gone"},
            {"type": "video_started", "video_id": "a", "attempt": 1},
            {"type": "video_started", "video_id": "b", "attempt": 1},
            {"type": "video_interrupted", "video_id": "b", "attempt": 1, "reason": "stop"},
        ]
    )
    s = fold(log)
    summary = views.summary(s.videos.values())
    assert summary["running"] == ["a"] and summary["interrupted"] == ["b"]
    assert [f["id"] for f in summary["failed"]] == ["c"]
    assert summary["counts"] == {"pending": 1, "running": 1, "completed": 0, "failed": 1, "interrupted": 1}


def _format1_snapshot(path: Path, p: Projector) -> None:
    body = orjson.dumps({"v": 1, "state": snapshot.state_to_doc(p)})
    path.write_bytes(b'{"crc":"%08x","doc":%s}' % (zlib.crc32(body), body))


def test_a_format_1_snapshot_still_loads_and_status_falls_back_to_it(tmp_path: Path) -> None:
    """A snapshot written by an older nkod (format 1) is still used by replay; status, finding no summary
    in it, replays instead and prints the same document."""
    log = stamp([{"type": "log_created", "log_id": "L"}, {"type": "videos_added", "video_ids": ["a", "b"]}])
    ends = _write_log(tmp_path / "events.jsonl", log)
    p = Projector()
    p.apply_all(log)
    p.offset = ends[-1]
    _format1_snapshot(tmp_path / "snapshot.json", p)
    rep = snapshot.replay(tmp_path / "events.jsonl", tmp_path / "snapshot.json")
    assert rep.snapshot_used and rep.projector.state() == p.state()
    assert snapshot.status_replay(tmp_path / "events.jsonl", tmp_path / "snapshot.json") is None


def test_damaged_video_rows_make_the_snapshot_ignored_not_trusted(tmp_path: Path) -> None:
    """A flipped byte in a format-2 snapshot's rows (its first line intact): replay ignores the snapshot, and
    status, which needs a row of it for the tail, falls back to the full replay."""
    log = stamp(
        [
            {"type": "log_created", "log_id": "L"},
            {"type": "videos_added", "video_ids": ["a", "b"]},
            {"type": "video_started", "video_id": "a", "attempt": 1},
        ]
    )
    ends = _write_log(tmp_path / "events.jsonl", log)
    p = Projector()
    p.apply_all(log[:2])
    p.offset = ends[1]
    snap = tmp_path / "snapshot.json"
    snapshot.write(snap, p)
    data = bytearray(snap.read_bytes())
    data[-5] ^= 0x01  # inside the last row
    snap.write_bytes(bytes(data))
    rep = snapshot.replay(tmp_path / "events.jsonl", snap)
    assert not rep.snapshot_used and "damaged" in (rep.snapshot_problem or "")
    assert snapshot.status_replay(tmp_path / "events.jsonl", snap) is None


def test_nkoctl_status_reads_the_summary_and_tail_and_agrees_with_a_full_replay(tmp_path: Path) -> None:
    """The real nkoctl status --json on a daemon's data dir with a snapshot behind the log's end prints what it
    prints with the snapshot deleted (the snapshot is only an optimisation)."""
    d = DataDir(tmp_path / "data", snapshot_every=3)
    d.manifest([{"video_id": f"v{i}", "path": "x.mp4", "frames": 2} for i in range(5)])
    assert d.run("--once").returncode == 0
    # The daemon leaves a snapshot at its end; make one behind the end, as while it runs.
    log, _ = eventlog.read_all(d.log)
    p = Projector()
    p.apply_all(log[:-4])
    p.offset = sum(len(codec.encode(e)) for e in log[:-4])
    snapshot.write(d.root / "snapshot.json", p)
    assert snapshot.status_replay(d.log, d.root / "snapshot.json") is not None
    with_snapshot = d.status()
    (d.root / "snapshot.json").unlink()
    without = d.status()
    for doc in (with_snapshot, without):
        doc.pop("elapsed_seconds")
        doc.pop("rate_per_hour")
        doc.pop("eta_seconds")
    assert with_snapshot == without and with_snapshot["completed"] == 5


def _stopped_daemon_dir(tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": f"v{i}", "path": "x.mp4", "frames": 1} for i in range(3)])
    assert d.run().returncode == 0
    return d


def test_after_a_clean_stop_the_head_is_not_read_again_until_the_log_changes(tmp_path: Path) -> None:
    """The daemon's last snapshot records the log's stat once it checked the bytes on disk: while the log keeps
    that stat the head is not re-read (a wrong head CRC goes unseen); once the log is touched it is checked."""
    d = _stopped_daemon_dir(tmp_path)
    snap = d.root / "snapshot.json"
    head, _, rest = snap.read_bytes().partition(b"\n")
    doc = orjson.loads(head[24:-1])
    assert doc["log_stat"] == snapshot.log_stat(d.log)
    doc["head_crc"] = f"{(int(doc['head_crc'], 16) + 1) % 2**32:08x}"  # a lie only a re-read would catch
    line = orjson.dumps(doc)
    snap.write_bytes(b'{"crc":"%08x","doc":%s}\n%s' % (zlib.crc32(line), line, rest))
    assert snapshot.load(snap, d.log).state is not None
    assert snapshot.status_replay(d.log, snap) is not None
    os.utime(d.log)  # same bytes, but the stat no longer vouches for them
    loaded = snapshot.load(snap, d.log)
    assert loaded.state is None and loaded.head_changed
    assert snapshot.status_replay(d.log, snap) is None


_manifest_line = st.one_of(
    st.builds(lambda i: b'{"video_id": "v%d", "path": "x%d.mp4"}\n' % (i, i), st.integers(0, 30)),
    st.just(b"not json\n"),
    st.just(b"# a comment\n"),
    st.just(b"\n"),
    st.builds(lambda i: b'{"video_id": "v%d"}\n' % i, st.integers(0, 5)),  # no source: a problem
)
_manifest_op = st.one_of(
    st.tuples(st.just("append"), st.lists(_manifest_line, max_size=4)),
    st.tuples(st.just("partial"), _manifest_line.map(lambda b: b[: max(1, len(b) // 2)])),  # no newline yet
    st.tuples(st.just("rewrite"), st.lists(_manifest_line, max_size=6)),  # in place, same inode
    st.tuples(st.just("replace"), st.lists(_manifest_line, max_size=6)),  # a new file renamed over it
    st.tuples(st.just("truncate"), st.integers(0, 200)),
    st.tuples(st.just("flip"), st.integers(0, 200)),  # one byte changed before the end, same size
)


def _seen(m: Any) -> tuple[dict[str, Any], dict[str, int], list[Any]]:
    return {vid: m.entries[vid] for vid in m.entries}, dict(m.lines), [p.as_dict() for p in m.problems]


@settings(max_examples=200, deadline=None)
@given(st.lists(_manifest_op, max_size=12))
def test_incremental_manifest_reader_equals_a_full_reread(ops: list[tuple[str, Any]]) -> None:
    """After appends, lines still being written, rewrites in place, replacement, truncation and changed bytes,
    the reader (which parses only appended bytes when it can) gives what reading the whole file gives."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "videos.jsonl"
        path.write_bytes(b"")
        reader = manifest.Reader(path)
        for op, arg in ops:
            data = path.read_bytes()
            if op == "append":
                with open(path, "ab") as f:
                    f.write(b"".join(arg))
            elif op == "partial":
                with open(path, "ab") as f:
                    f.write(arg)
            elif op == "rewrite":
                with open(path, "r+b") as f:
                    f.truncate(0)
                    f.write(b"".join(arg))
            elif op == "replace":
                (Path(tmp) / "new").write_bytes(b"".join(arg))
                os.replace(Path(tmp) / "new", path)
            elif op == "truncate":
                with open(path, "r+b") as f:
                    f.truncate(min(arg, len(data)))
            elif data:
                flipped = bytearray(data)
                flipped[arg % len(data)] ^= 0x01
                with open(path, "r+b") as f:
                    f.write(bytes(flipped))
            got = reader.read()
            assert _seen(got) == _seen(manifest.load(path)), op


def test_an_appended_line_is_parsed_alone() -> None:
    """A second read after an append parses only the new line: it is all `added` holds."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "videos.jsonl"
        path.write_bytes(b"".join(b'{"video_id": "v%d", "path": "x.mp4"}\n' % i for i in range(1000)))
        reader = manifest.Reader(path)
        assert len(reader.read().entries) == 1000 and len(reader.added) == 1000
        with open(path, "ab") as f:
            f.write(b'{"video_id": "new", "path": "y.mp4"}\n')
        m = reader.read()
        assert reader.added == ["new"] and len(m.entries) == 1001 and m.lines["new"] == 1001


def test_the_running_daemon_reads_appended_lines_half_written_ones_included(tmp_path: Path) -> None:
    """The real daemon reads only what is appended to its manifest: a line caught half-written is a skipped
    line until its end arrives, then it runs once; a line edited before the end is read again as edited."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": f"v{i}", "path": "x.mp4", "frames": 1} for i in range(3)])
    proc = d.start()
    try:
        wait_for(lambda: len(d.completed_count()) == 3, what="the first three")
        line = orjson.dumps({"video_id": "late", "path": "y.mp4", "frames": 1}) + b"\n"
        with open(d.root / "videos.jsonl", "ab") as f:
            f.write(line[:20])  # half a line, no newline yet
        wait_for(lambda: any("not JSON" in p["error"] for p in d.status()["manifest_problems"]), what="the half")
        with open(d.root / "videos.jsonl", "ab") as f:
            f.write(line[20:])
        wait_for(lambda: d.completed_count().get("late") == 1, what="the completed line to run")
        wait_for(lambda: not d.status()["manifest_problems"], what="the problem to clear")
        # An edit before the end (same length, new id): the file is read again whole.
        data = (d.root / "videos.jsonl").read_bytes().replace(b'"v1"', b'"w1"')
        with open(d.root / "videos.jsonl", "r+b") as f:
            f.write(data)
        wait_for(lambda: d.completed_count().get("w1") == 1, what="the edited line to run")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert d.completed_count() == {"v0": 1, "v1": 1, "v2": 1, "late": 1, "w1": 1}


def test_a_restart_after_a_clean_stop_does_not_scan_the_head_again(tmp_path: Path) -> None:
    """nkod started on the log its last run left at a clean stop skips the background scan of the head (that run
    checked it all); once the log was touched, the next start scans it again."""
    d = _stopped_daemon_dir(tmp_path)
    second = d.run()
    assert second.returncode == 0 and "log_verified" not in second.stdout, second.stdout
    os.utime(d.log)
    third = d.run()
    assert third.returncode == 0 and "log_verified" in third.stdout, third.stdout
