"""Snapshots: an optimisation only. Damaged, foreign or stale snapshots are ignored."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from nkod import eventlog, snapshot
from nkod.state import fold


def make_log(path: Path, n_videos: int = 5) -> eventlog.LogWriter:
    w = eventlog.LogWriter(path, 1)
    w.append(
        [
            {"type": "log_created", "log_id": "L"},
            {"type": "videos_added", "video_ids": [f"v{i}" for i in range(n_videos)]},
        ]
    )
    for i in range(n_videos):
        w.append([{"type": "video_started", "video_id": f"v{i}", "attempt": 1}])
        w.append([{"type": "video_completed", "video_id": f"v{i}", "attempt": 1, "counts": {"frames": i}}])
    return w


def full(path: Path) -> object:
    events, _ = eventlog.read_all(path)
    return fold(events)


def test_snapshot_plus_tail_equals_full_replay(tmp_path: Path) -> None:
    """Replay from a snapshot taken midway gives the same state as a full replay."""
    log, snap = tmp_path / "events.jsonl", tmp_path / "snapshot.json"
    w = make_log(log, 3)
    r = snapshot.replay(log, snap)
    snapshot.write(snap, r.projector)
    w.append([{"type": "videos_added", "video_ids": ["z"]}, {"type": "video_started", "video_id": "z", "attempt": 1}])
    r2 = snapshot.replay(log, snap)
    assert r2.snapshot_used and r2.tail_events == 2
    assert (
        snapshot.replay(log, snap).projector.state() == snapshot.replay(log, snap, use_snapshot=False).projector.state()
    )
    assert r2.projector.state().videos == full(log).videos  # type: ignore[attr-defined]


def test_deleting_the_snapshot_changes_nothing(tmp_path: Path) -> None:
    """Without the snapshot the state is rebuilt from the log, identical."""
    log, snap = tmp_path / "events.jsonl", tmp_path / "snapshot.json"
    make_log(log)
    snapshot.write(snap, snapshot.replay(log, snap).projector)
    with_snap = snapshot.replay(log, snap).projector.state()
    snap.unlink()
    assert snapshot.replay(log, snap).projector.state() == with_snap


def test_damaged_snapshot_is_ignored(tmp_path: Path) -> None:
    """A flipped byte in the snapshot: it is not trusted, the log is replayed in full."""
    log, snap = tmp_path / "events.jsonl", tmp_path / "snapshot.json"
    make_log(log)
    snapshot.write(snap, snapshot.replay(log, snap).projector)
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0x20
    snap.write_bytes(bytes(data))
    r = snapshot.replay(log, snap)
    assert not r.snapshot_used and r.snapshot_problem and "damaged" in r.snapshot_problem
    assert r.projector.state().videos == full(log).videos  # type: ignore[attr-defined]


def test_snapshot_of_another_log_is_ignored(tmp_path: Path) -> None:
    """A snapshot whose seq/offset does not match the log (log reset or repaired) is not used."""
    log, snap = tmp_path / "events.jsonl", tmp_path / "snapshot.json"
    make_log(log, 5)
    snapshot.write(snap, snapshot.replay(log, snap).projector)
    log.unlink()
    make_log(log, 2)
    r = snapshot.replay(log, snap)
    assert not r.snapshot_used and r.snapshot_problem and "does not match" in r.snapshot_problem
    assert len(r.projector.videos) == 2


def test_snapshot_ahead_of_a_truncated_log_is_ignored(tmp_path: Path) -> None:
    """If the log is shorter than the snapshot says (torn tail cut), the snapshot is ignored."""
    log, snap = tmp_path / "events.jsonl", tmp_path / "snapshot.json"
    make_log(log, 3)
    snapshot.write(snap, snapshot.replay(log, snap).projector)
    size = log.stat().st_size
    with open(log, "r+b") as f:
        f.truncate(size - 10)
    r = snapshot.replay(log, snap)
    assert not r.snapshot_used


@pytest.mark.parametrize(
    "body",
    [
        b'["a","b"]\n{"id":"a"}\n{"id":"c"}\n',  # a row of another video
        b'["a","b"]\n{"id":"a"}\n[1]\n',  # not an object
        b'["a","b","c"]\n{"id":"a"},{"id":"b"}\n{"id":"c"}\n',  # two rows on one line: joined they would pass
    ],
)
def test_rows_that_do_not_match_their_ids_are_refused_even_with_a_good_checksum(body: bytes) -> None:
    """All rows are parsed in one call, and each must still be the object of its id, in order."""
    with pytest.raises(ValueError, match="video row"):
        snapshot._Body(body, f"{zlib.crc32(body):08x}").all_rows()
