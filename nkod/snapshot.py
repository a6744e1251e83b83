"""``snapshot.json``: the state at a seq and byte offset, so start-up and status replay only the tail.

An optimisation only: a snapshot that is missing, damaged, from another log, or ahead of the log is
ignored and the state is rebuilt from the log. Deleting it never changes a result.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from nkod import eventlog
from nkod.fsutil import atomic_write, read_regular
from nkod.state import Projector, Session, State, Status, Video

SNAPSHOT_VERSION = 1
MAX_SNAPSHOT_BYTES = 4 << 30  # far above any real snapshot; a bound on what a bad file can cost

# Short keys keep snapshots of 100k+ videos small and fast to load.
_VIDEO_FIELDS = (
    ("s", "status"), ("f", "failures"), ("n", "starts"), ("a", "attempt"), ("q", "started_seq"),
    ("sa", "started_at"), ("nb", "not_before"), ("e", "error"), ("ek", "error_kind"), ("fa", "failed_at"),
    ("ca", "completed_at"), ("c", "counts"), ("i", "imported"), ("rd", "retry_delay"),
)  # fmt: skip
_DEFAULT = Video(video_id="")
_ROW_FIELDS = tuple((short, name, getattr(_DEFAULT, name)) for short, name in _VIDEO_FIELDS)
_SHORT = {name: short for short, name in _VIDEO_FIELDS}
# Every field of Video (a field added to Video but not to the snapshot gets its default).
_ALL_FIELDS = tuple((_SHORT.get(f.name), f.name, getattr(_DEFAULT, f.name)) for f in fields(Video))
_STATUS = {s.value: s for s in Status}
_new = object.__new__
_set = object.__setattr__


def state_to_doc(state: State | Projector) -> dict[str, Any]:
    videos = []
    for v in state.videos.values():
        row: dict[str, Any] = {"id": v.video_id}
        for short, name, default in _ROW_FIELDS:
            value = getattr(v, name)
            if value != default:
                row[short] = dict(value) if name == "counts" else value
        videos.append(row)
    s = state.session
    doc: dict[str, Any] = {
        "seq": state.seq,
        "offset": state.offset,
        "log_id": state.log_id,
        "created_at": state.created_at,
        "last_ts": state.last_ts,
        "totals": dict(state.totals),
        "completed_by_nkod": state.completed_by_nkod,
        "session": {"active_seconds": s.active_seconds, "open_since": s.open_since, "pid": s.pid},
        "manifest_problems": list(state.manifest_problems),
        "videos": videos,
    }
    if s.open_seconds is not None:  # absent from logs (and snapshots) older than `session_seconds`
        doc["session"]["open_seconds"] = s.open_seconds
    # The runnable order (absent when nothing is runnable, and in snapshots older than it).
    redo, queue = (state.redo, state.queue) if isinstance(state, Projector) else (state.redo_order, state.queue_order)
    if redo:
        doc["redo"] = list(redo)
    if queue:
        doc["queue"] = list(queue)
    if state.discovered:  # videos from `nkoctl add` and [[sources]], in the order they were found
        doc["discovered"] = [dict(entry) for entry in state.discovered.values()]
    if state.sources:
        doc["sources"] = {name: dict(info) for name, info in state.sources.items()}
    return doc


def _video_from_row(row: dict[str, Any]) -> Video:
    """One snapshot row as a Video: like ``Video(**kwargs)`` without the per-call keyword handling
    (loading 100k rows is most of a status call). Unknown statuses and bad counts raise as before."""
    if not isinstance(row, dict):
        raise TypeError(f"video row is {type(row).__name__}, not an object")
    video: Video = _new(Video)
    get = row.get
    for short, name, default in _ALL_FIELDS:
        _set(video, name, default if short is None else get(short, default))
    _set(video, "video_id", row["id"])
    if "s" in row:
        _set(video, "status", _STATUS[row["s"]])
    if "c" in row:
        _set(video, "counts", MappingProxyType(row["c"]))
    return video


def state_from_doc(doc: dict[str, Any]) -> State:
    videos: dict[str, Video] = {row["id"]: _video_from_row(row) for row in doc["videos"]}
    s = doc["session"]
    return State(
        seq=doc["seq"],
        offset=doc["offset"],
        log_id=doc["log_id"],
        created_at=doc["created_at"],
        last_ts=doc["last_ts"],
        videos=MappingProxyType(videos),
        totals=MappingProxyType(dict(doc["totals"])),
        completed_by_nkod=doc["completed_by_nkod"],
        session=Session(
            active_seconds=s["active_seconds"],
            open_since=s["open_since"],
            pid=s["pid"],
            open_seconds=s.get("open_seconds"),
        ),
        manifest_problems=tuple(doc["manifest_problems"]),
        redo_order=tuple(doc.get("redo", ())),
        queue_order=tuple(doc.get("queue", ())),
        discovered=MappingProxyType({entry["video_id"]: entry for entry in doc.get("discovered", ())}),
        sources=MappingProxyType(dict(doc.get("sources", {}))),
    )


def write(
    path: Path,
    state: State | Projector,
    failpoints: eventlog.Failpoints | None = None,
    head_crc: int | None = None,
) -> None:
    """`head_crc`: CRC-32 of the log's bytes [0, state.offset), so a reader can check cheaply that the head
    the snapshot stands in for is still what was replayed (damage there must not hide behind it)."""
    doc: dict[str, Any] = {"v": SNAPSHOT_VERSION, "state": state_to_doc(state)}
    if head_crc is not None:
        doc["head_crc"] = f"{head_crc:08x}"
    body = orjson.dumps(doc)
    data = b'{"crc":"%08x","doc":%s}' % (zlib.crc32(body), body)
    if failpoints is not None and "mid_snapshot" in failpoints.names:
        tmp = path.with_name(f".{path.name}.failpoint.tmp")
        tmp.write_bytes(data[: len(data) // 2])
        failpoints.hit("mid_snapshot")
    atomic_write(path, data)


@dataclass(frozen=True)
class Loaded:
    state: State | None
    problem: str | None  # why the snapshot was not used (None when used or absent)
    head_crc: int | None = None  # CRC-32 of the log's head it covers, checked (None: an older snapshot)
    head_changed: bool = False  # rejected because the covered head's bytes differ (damage, or a rewrite)


def load(path: Path, log_path: Path, check_head: bool = True) -> Loaded:
    """The snapshot's state if it is whole and matches the log; else why not. `check_head=False` skips
    comparing the covered head's bytes with the CRC recorded (to show what a damaged log's state was)."""
    try:  # never a FIFO (it would block) nor a symlink: nkod writes this file itself
        data = read_regular(path, MAX_SNAPSHOT_BYTES, follow_symlinks=False)
    except FileNotFoundError:
        return Loaded(None, None)
    except OSError as exc:
        return Loaded(None, f"cannot read {path}: {exc.strerror or exc}; rebuilding from the log")
    # The head's CRC is computed while the snapshot is parsed (most of a status call on a big log).
    head = eventlog.BackgroundCrc(log_path) if check_head else None
    try:
        if not data.startswith(b'{"crc":"') or data[16:23] != b'","doc"':
            raise ValueError("not a snapshot file")
        body = data[24:-1]
        if zlib.crc32(body) != int(data[8:16], 16):
            raise ValueError("checksum mismatch")
        doc = orjson.loads(body)
        if doc.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {doc.get('v')!r}")
        state = state_from_doc(doc["state"])
        head_crc = int(doc["head_crc"], 16) if "head_crc" in doc else None
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        return Loaded(None, f"{path} is damaged ({exc}); rebuilding from the log")
    # The line the snapshot ends on must be the very event it last applied: same seq and same timestamp
    # (microseconds), so a snapshot of another log that happens to share a seq/offset is not trusted.
    at = eventlog.line_ending_at(log_path, state.offset) if state.seq else None
    if state.seq and (at is None or at.get("seq") != state.seq or at.get("ts") != state.last_ts):
        return Loaded(None, f"{path} does not match {log_path} (seq {state.seq}); rebuilding from the log")
    if head is not None and head_crc is not None and head.at(state.offset) != head_crc:
        return Loaded(
            None,
            f"the first {state.offset} bytes of {log_path} changed since {path} was written; rebuilding from the log",
            head_changed=True,
        )
    return Loaded(state, None, head_crc)


@dataclass
class Replay:
    """The result of loading the log: the projector, plus what the reader found on the way."""

    projector: Projector
    scan: eventlog.ScanResult
    snapshot_used: bool
    snapshot_problem: str | None
    tail_events: int
    snapshot_offset: int = 0  # the log's head the snapshot stood in for (0: none used)
    snapshot_head_crc: int | None = None  # its checked CRC-32 (None: none used, or an older snapshot)


def replay(data_log: Path, snapshot_path: Path, use_snapshot: bool = True) -> Replay:
    """Snapshot + tail. Raises LogCorruptError / LogVersionError on a damaged log."""
    loaded = load(snapshot_path, data_log) if use_snapshot else Loaded(None, None)
    base = loaded.state
    projector = Projector(base)
    result = eventlog.ScanResult()
    count = 0
    events: Iterator[dict[str, Any]] = eventlog.scan(
        data_log,
        start_offset=base.offset if base else 0,
        prev_seq=base.seq if base else 0,
        first_line=(base.seq + 1) if base else 1,
        result=result,
    )
    for event in events:
        projector.apply(event)
        count += 1
    projector.offset = result.end_offset
    return Replay(
        projector, result, base is not None, loaded.problem, count, base.offset if base else 0, loaded.head_crc
    )
