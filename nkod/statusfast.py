"""``nkoctl status [--json]``'s fast path, without importing orjson, pathlib or nkod.snapshot, and after a
clean stop not dataclasses nor the state's classes either: the document from the snapshot's first line
(its summary) and, while the daemon runs or after a crash, the log's tail folded into the rows of the
videos it names.

It answers only the common case, exactly as the full path (`nkod.ctl.status`) would: a format-3 or -4 snapshot
whose checksum holds, a log the daemon that wrote it left unchanged (``log_stat``) or that its
``events.crc`` vouches for, no torn or damaged tail, no request waiting in ``requests/``. Anything else, and
anything it is not sure of (`Fallback`), goes to the full path, which says what is wrong. JSON is read by
`nkod.litejson` (orjson's answer, or orjson is asked) and the checks are those of ``snapshot.load``,
``snapshot.status_replay`` and ``codec.check``, so both paths print the same document.
"""

from __future__ import annotations

import os
import stat
import sys
import time
import zlib
from datetime import datetime

from nkod import envelope, litejson, statusview

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from nkod.statusview import StateFields

SNAPSHOT_VERSION = 4  # as nkod.snapshot.SNAPSHOT_VERSION
ROWS_AS_ARRAYS = 3  # as nkod.snapshot.ROWS_AS_ARRAYS: the last format of one row per line (still read)
# As nkod.state.Video._fields, the order of a format-3 row's fields and of a format-4 chunk's columns
# (tests/test_status_fast.py checks they are the same): a snapshot whose rows have other fields goes to the
# full path, which rebuilds from the log.
VIDEO_FIELDS = [
    "video_id", "status", "failures", "starts", "attempt", "started_seq", "started_at", "not_before", "error",
    "error_kind", "failed_at", "completed_at", "counts", "imported", "retry_delay", "skipped", "skip_reason",
    "priority_boost", "redo", "entry_hash", "removed", "entry_changed",
]  # fmt: skip
# Each field's default as JSON gives it back (Video(""), the id aside): a format-4 chunk's column that is
# null holds these (tests/test_status_fast.py checks them against Video's).
VIDEO_DEFAULTS = [
    None, "pending", 0, 0, 0, 0, None, None, None, None, None, None, None, False, None, False, None, 0, False,
    None, False, False,
]  # fmt: skip
_PLAIN_REST = VIDEO_DEFAULTS[1:]
MAX_SNAPSHOT_BYTES = 4 << 30  # as nkod.snapshot.MAX_SNAPSHOT_BYTES
MAX_ACTIVITY_BYTES = 64 << 20  # as CtlBase.activity


class Fallback(Exception):
    """The fast path does not answer this case: the full path does (and says what is wrong, if anything)."""


def _open(path: str, follow_symlinks: bool) -> int:
    """An fd of `path` if it is a regular file (as fsutil.open_regular; never blocks on a FIFO)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Fallback(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise Fallback("a file shorter than expected")
        data += more
    return data


def _loads(data: bytes) -> Any:
    try:
        return litejson.loads_or_orjson(data)
    except ValueError as exc:  # orjson refused it (its JSONDecodeError is a ValueError)
        raise Fallback(str(exc)) from None


def _decode(line: bytes) -> dict[str, Any]:
    """`codec.decode` of a line whose checksum holds and which is a JSON object; Fallback otherwise."""
    try:
        body = envelope.checked_body(line)
    except envelope.LineError as exc:
        raise Fallback(str(exc)) from None
    event = _loads(body)
    if type(event) is not dict:
        raise Fallback("not a JSON object")
    return event


def _stat_key(st: os.stat_result) -> dict[str, int]:
    """As eventlog.stat_key."""
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns}


class _Session:
    __slots__ = ("active_seconds", "open_seconds", "open_since", "pid")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.active_seconds = doc["active_seconds"]
        self.open_since = doc["open_since"]
        self.pid = doc["pid"]
        self.open_seconds = doc.get("open_seconds")


class SnapshotState:
    """The fields of the snapshot's state that status reads (as snapshot.state_from_doc makes them)."""

    __slots__ = (
        "completed_by_nkod",
        "created_at",
        "last_ts",
        "log_id",
        "manifest_problems",
        "offset",
        "paused",
        "seq",
        "session",
        "totals",
    )

    def __init__(self, doc: dict[str, Any]) -> None:
        self.seq = doc["seq"]
        self.offset = doc["offset"]
        self.log_id = doc["log_id"]
        self.created_at = doc["created_at"]
        self.last_ts = doc["last_ts"]
        self.totals = dict(doc["totals"])
        self.completed_by_nkod = doc["completed_by_nkod"]
        self.session = _Session(doc["session"])
        self.manifest_problems = tuple(doc["manifest_problems"])
        self.paused = doc.get("paused") is True
        # What snapshot.state_from_doc reads besides (a snapshot it cannot read goes to the full replay).
        tuple(doc.get("redo", ()))
        tuple(doc.get("queue", ()))
        for entry in doc.get("discovered", ()):
            entry["video_id"]
        dict(doc.get("sources", {}))


def _first_line(snapshot_path: str) -> dict[str, Any]:
    """The checked document of a format-3 or -4 snapshot's first line (as snapshot._parse)."""
    fd = _open(snapshot_path, follow_symlinks=False)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        if size > MAX_SNAPSHOT_BYTES:
            raise Fallback("snapshot too large")
        first = f.readline(size + 1)
    if not first.endswith(b"\n"):
        raise Fallback("format 1, or not a whole snapshot")
    line = first[:-1]
    if not line.startswith(b'{"crc":"') or line[16:23] != b'","doc"':
        raise Fallback("not a snapshot file")
    body = line[24:-1]
    try:
        if zlib.crc32(body) != int(line[8:16], 16):
            raise Fallback("checksum mismatch")
    except ValueError:
        raise Fallback("checksum not hexadecimal") from None
    doc = _loads(body)
    if type(doc) is not dict or doc.get("v") not in (ROWS_AS_ARRAYS, SNAPSHOT_VERSION):
        raise Fallback("not a format-3 or -4 snapshot")
    if doc.get("fields") != VIDEO_FIELDS:
        raise Fallback("not a snapshot of this nkod's fields")
    return doc


def _vouch(log_path: str) -> tuple[Any, int] | None:
    """(the log's stat, CRC-32 of its bytes) from the daemon's events.crc, as eventlog.read_vouch."""
    try:
        fd = _open(log_path[: -len(".jsonl")] + ".crc", follow_symlinks=False)
    except (OSError, Fallback):
        return None
    with os.fdopen(fd, "rb") as f:
        line = f.read(512).partition(b"\n")[0]
    if not line.startswith(b'{"check":"') or line[18:25] != b'","doc"':
        return None
    body = line[26:-1]
    try:
        if zlib.crc32(body) != int(line[10:18], 16):
            return None
        doc = _loads(body)
        return doc["log_stat"], int(doc["crc"], 16)
    except (ValueError, KeyError, TypeError, Fallback):
        return None


def _line_ending_at(fd: int, offset: int) -> dict[str, Any]:
    """The event whose line ends at `offset` (as eventlog.line_ending_at, within 64 KiB)."""
    start = max(0, offset - 65536)
    data = _pread_all(fd, offset - start, start)
    if not data.endswith(b"\n"):
        raise Fallback("no line ends at the snapshot's offset")
    body = data[:-1]
    nl = body.rfind(b"\n")
    if nl < 0 and start > 0:
        raise Fallback("a long line")
    return _decode(body[nl + 1 :])


def _check(raw: bytes) -> dict[str, Any]:
    """`codec.check` of a line it accepts; Fallback for any other (the full path says what is wrong)."""
    try:
        return envelope.check_fields(_decode(raw))
    except envelope.LineError as exc:
        raise Fallback(str(exc)) from None


def _tail_events(tail: bytes, seq: int) -> list[dict[str, Any]]:
    """The checked events of the log's bytes after the snapshot (as eventlog.scan_chunks); Fallback on a torn
    or damaged tail."""
    if not tail.endswith(b"\n"):
        raise Fallback("a torn tail")
    events = []
    for raw in tail[:-1].split(b"\n"):
        event = _check(raw)
        if event["seq"] != seq + 1:
            raise Fallback("a gap in seq")
        seq = event["seq"]
        events.append(event)
    return events


def read(root: str) -> tuple[StateFields, dict[str, Any]]:
    """The state (its fields: status does not need the videos) and the summary of its videos: the snapshot's
    first line, and the log's tail after it folded into the rows of the videos it names; Fallback when the
    fast path does not answer."""
    log_path, snapshot_path = os.path.join(root, "events.jsonl"), os.path.join(root, "snapshot.json")
    try:
        doc = _first_line(snapshot_path)
        state_doc, summary = doc["state"], doc["summary"]
        seq, offset, head = state_doc["seq"], state_doc["offset"], doc.get("head_crc")
        if type(seq) is not int or type(offset) is not int or type(summary) is not dict or seq < 1:
            raise Fallback("odd types, or an empty log")
        for key in ("failed", "skipped"):  # as views.summary_after reads them
            for entry in summary.get(key, ()):
                entry["id"]
        fd = _open(log_path, follow_symlinks=True)
        try:
            log_stat = _stat_key(os.fstat(fd))
            size = log_stat["size"]
            if size < offset:
                raise Fallback("a log shorter than the snapshot")
            tail = _pread_all(fd, size - offset, offset)
            if doc.get("log_stat") != log_stat:  # not as the daemon left it at a clean stop: its events.crc?
                vouch = _vouch(log_path)
                if head is None or vouch is None or vouch[0] != log_stat or zlib.crc32(tail, int(head, 16)) != vouch[1]:
                    raise Fallback("the head would have to be read")
            at = _line_ending_at(fd, offset)  # as snapshot._mismatch: the very event the snapshot last applied
            if at.get("seq") != seq or at.get("ts") != state_doc["last_ts"]:
                raise Fallback("a snapshot of another log")
        finally:
            os.close(fd)
        if not tail:
            return SnapshotState(state_doc), summary
        return _fold(snapshot_path, doc, _tail_events(tail, seq), size)
    except (OSError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise Fallback(str(exc)) from None


def snapshot_rows(
    rest: bytes, body_crc: str, wanted: dict[str, None], chunk: int | None = None
) -> tuple[dict[Any, int], list[list[Any]]]:
    """A format-3 snapshot's ids (id -> place) and the rows of the `wanted` ids among them, in the snapshot's
    order, checked as snapshot._Body does (the CRC of all the rows, their count, each row the array of its
    id's fields); the rows are split only from the nearer end to the farthest one wanted. `chunk`: a
    format-4 snapshot's videos per line; then only the lines of the chunks that hold the wanted rows are
    parsed, and each row is given as format 3's (`chunk_row`)."""
    if zlib.crc32(rest) != int(body_crc, 16):
        raise Fallback("checksum mismatch in the video rows")
    end = rest.index(b"\n")
    ids = _loads(rest[:end])
    if type(ids) is not list:
        raise Fallback("video ids not a list")
    n = len(ids) if chunk is None else chunk_count(len(ids), chunk)
    # Lines of `rest`: the ids, then row (or chunk) i at line i + 1 (not copied out of it: 2 MB for 10k).
    if rest.count(b"\n") != n + 1 or not rest.endswith(b"\n"):
        raise Fallback("video rows do not match the ids")
    index = dict(zip(ids, range(len(ids)), strict=True))  # (an unhashable id raises TypeError: the full path)
    indices = sorted(index[vid] for vid in wanted if vid in index)
    if not indices:
        return index, []
    if chunk is not None:
        places = sorted({i // chunk for i in indices})
        columns = {
            j: checked_chunk(_loads(line), ids[j * chunk : (j + 1) * chunk], j)
            for j, line in zip(places, lines_at(rest, n, places, 1), strict=True)
        }
        return index, [chunk_row(columns[i // chunk], i % chunk) for i in indices]
    rows = []
    for i, raw in zip(indices, lines_at(rest, n, indices, 1), strict=True):
        row = _loads(raw)
        if type(row) is not list or not row or row[0] != ids[i]:
            raise Fallback(f"video row {i} is not {ids[i]!r}")
        rows.append(row)
    return index, rows


def chunk_count(videos: int, chunk: Any) -> int:
    """How many lines a format-4 body of `videos` videos, `chunk` to a line, has after its ids."""
    if type(chunk) is not int or chunk < 1:
        raise ValueError(f"videos per chunk {chunk!r}")
    return -(-videos // chunk)


def lines_at(data: bytes, n: int, wanted: list[int], skip: int = 0) -> list[bytes]:
    """Lines `wanted` (sorted) of the `n` that follow `skip` other lines in `data` (each line ends with a
    newline: the caller checked the count), splitting only from the nearer end to the farthest one wanted:
    status needs the few its tail names, and splitting 10k rows into objects costs ~2 ms."""
    if wanted[-1] + 1 <= n - wanted[0]:  # nearer the start: [skipped..., l0, ..., l_last, the rest]
        pieces, shift = data.split(b"\n", wanted[-1] + 1 + skip), skip
    else:  # nearer the end: [what is before, l_first, ..., l_{n-1}, b""]
        pieces = data.rsplit(b"\n", n - wanted[0] + 1)
        shift = len(pieces) - 1 - n
    return [pieces[i + shift] for i in wanted]


def checked_chunk(chunk: Any, ids: list[Any], place: int) -> list[Any]:
    """A parsed format-4 line, checked to be the chunk of `ids` (the ids line's, at their place): one column
    per field of Video, the first those ids, each other the list of their values or null (all defaults).
    ValueError says what is wrong (a snapshot's values are checked where they are made into Videos)."""
    if type(chunk) is not list or len(chunk) != len(VIDEO_FIELDS):
        raise ValueError(f"video chunk {place} is not {len(VIDEO_FIELDS)} columns")
    if chunk[0] != ids:
        raise ValueError(f"video chunk {place} is not of the ids {ids[0]!r}..{ids[-1]!r}")
    count = len(ids)
    for column in chunk:
        if column is not None and (type(column) is not list or len(column) != count):
            raise ValueError(f"video chunk {place} has a column that is not {count} values")
    return chunk


def chunk_row(columns: list[Any], place: int) -> list[Any]:
    """Row `place` of a checked format-4 chunk as format 3 writes it: the values of its fields in order
    (a null column's default), or only its id when every other field has its default."""
    pairs = zip(columns, VIDEO_DEFAULTS, strict=True)
    row = [default if column is None else column[place] for column, default in pairs]
    return row[:1] if row[1:] == _PLAIN_REST else row


def _fold(
    snapshot_path: str, doc: dict[str, Any], events: list[dict[str, Any]], end: int
) -> tuple[Any, dict[str, Any]]:
    """The snapshot's state with the tail's events folded into the rows of the videos they name (an event
    changes only the videos it names), and the summary brought up to date (as snapshot.status_replay)."""

    from nkod import views
    from nkod.state import Projector, state_of_doc, video_from_fields

    named = named_videos(events)
    if named is None:
        raise Fallback("an event names an odd id")
    index: dict[Any, int] = {}
    rows: list[list[Any]] = []
    if named:
        with os.fdopen(_open(snapshot_path, follow_symlinks=False), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            first = f.readline(size + 1)
            rest = f.read(size - len(first) + 1)
            if len(first) + len(rest) != size:
                raise Fallback("the snapshot changed while it was read")
        chunk = doc["chunk"] if doc["v"] == SNAPSHOT_VERSION else None
        if doc["v"] == SNAPSHOT_VERSION:
            chunk_count(0, chunk)  # (raises unless a count of at least one)
        index, rows = snapshot_rows(rest, doc["body_crc"], named, chunk)
    videos = {row[0]: video_from_fields(row) for row in rows}  # as snapshot._video_from_row
    base = state_of_doc(doc["state"], videos)  # as snapshot.state_from_doc
    projector = Projector(base)
    projector.apply_all(events)
    projector.offset = end
    after = {vid: projector.videos[vid] for vid in named if vid in projector.videos}
    new = {vid: len(index) + k for k, vid in enumerate(vid for vid in projector.videos if vid not in index)}
    summary = views.summary_after(
        doc["summary"], base.videos, after, lambda vid: index[vid] if vid in index else new[vid]
    )
    return projector, summary


def named_videos(events: list[dict[str, Any]]) -> dict[str, None] | None:
    """The ids of the videos `events` name (in order), or None if one is not a string id."""
    named: dict[str, None] = {}
    for e in events:
        vid = e.get("video_id")
        if vid is not None:
            if type(vid) is not str:
                return None
            named[vid] = None
        ids = e.get("video_ids")
        if ids is not None:
            if type(ids) is not list or any(type(x) is not str for x in ids):
                return None
            named.update(dict.fromkeys(ids))
        if e.get("type") == "videos_discovered":  # the ids inside its entries (the fold skips odd ones)
            found = e.get("entries")
            if type(found) is list:
                named.update(
                    dict.fromkeys(x["video_id"] for x in found if type(x) is dict and type(x.get("video_id")) is str)
                )
        if e.get("type") == "manifest_compared":  # its lists of ids (the fold skips what is not an id)
            for key in ("removed", "restored", "changed", "unchanged"):
                listed = e.get(key)
                if type(listed) is list:
                    named.update(dict.fromkeys(x for x in listed if type(x) is str))
    return named


def activity(root: str) -> dict[str, Any] | None:
    """As CtlBase.activity: the daemon's activity.json, or None."""
    try:
        fd = _open(os.path.join(root, "activity.json"), follow_symlinks=False)
    except (OSError, Fallback):
        return None
    with os.fdopen(fd, "rb") as f:
        if os.fstat(fd).st_size > MAX_ACTIVITY_BYTES:
            return None
        data = f.read(MAX_ACTIVITY_BYTES + 1)
    if len(data) > MAX_ACTIVITY_BYTES:
        return None
    try:
        doc = litejson.loads_or_orjson(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def requests_pending(root: str) -> bool:
    """Is a request file waiting in requests/ (as spool.pending)? Then status shows the state as it will be
    once applied, which needs every video: the full path."""
    try:
        with os.scandir(os.path.join(root, "requests")) as entries:
            return any(e.name.endswith(".json") and not e.name.startswith(".") and e.is_file() for e in entries)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise Fallback(str(exc)) from None


def status_doc(root: str) -> dict[str, Any]:
    """What ``nkoctl status --json`` prints for data dir `root`; Fallback when the full path must answer."""
    from datetime import UTC

    from nkod import proclocks

    if not os.path.isdir(root) or requests_pending(root):
        raise Fallback("no data dir, or requests waiting")
    state, summary = read(root)
    # nkod.lock answers at once while nkod runs, or once it has stopped or died; else /proc/locks does (read in
    # a thread since main began).
    pid = proclocks.holder_pid(root, os.path.join(root, "nkod.lock"), trust_exited=True)
    act = activity(root) if pid else None
    session = statusview.live_session_seconds(act, pid, time.monotonic())
    doc = statusview.status_doc(state, datetime.now(UTC), pid, act, session, summary)
    doc["log_damaged"] = None
    return doc


def plain_status(root: str, as_json: bool) -> int | None:
    """`nkoctl status [--json]` on data dir `root` when the fast path answers (its exit status), else None."""
    try:
        doc = status_doc(root)
    except Fallback:
        return None
    if as_json:
        sys.stdout.write(litejson.dumps_indent2(doc) + "\n")
    else:
        from nkod import statusbox

        # The box drawn as rich would draw it, without importing rich (~45 ms), where it can.
        mode = statusbox.output_mode(os.environ, sys.stdout.isatty(), sys.stdout.encoding)
        text = None if mode is None else statusbox.draw(doc, statusbox.console_width(os.environ), mode == "ansi")
        if text is not None:
            sys.stdout.write(text)
        else:
            from rich.console import Console

            from nkod.render import status_panel

            Console(soft_wrap=True, highlight=False).print(status_panel(doc))
    return 0
