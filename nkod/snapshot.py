"""``snapshot.json``: the state at a seq and byte offset, so start-up and status replay only the tail.

An optimisation only: a snapshot that is missing, damaged, from another log, or ahead of the log is
ignored and the state is rebuilt from the log. Deleting it never changes a result.

Format 4 (formats 1, one checksummed JSON document, 2, rows as objects, and 3, one row per line as the
array of the video's fields, are still read)::

    {"crc":"<crc of doc>","doc":{"v":4,"state":{…all but the videos…},"summary":{…},"body_crc":"…",
                                "fields":["video_id","status",…],"chunk":128}}\n
    ["vid1","vid2",…]\n                  the video ids, in the state's order
    [["vid1",…,"vid128"],["completed",…],[25,…],null,…]\n
    …                                   one line per chunk of `chunk` videos, in the same order (the
                                        last may be shorter): a column per field, in `fields` order,
                                        each the list of the chunk's values, or null when all of
                                        them are the field's default
    [["vid129",…],null,null,…]\n         (a chunk of videos not yet started: only their ids)

Columns, not one array per video, so that orjson makes ~22 lists per 128 videos instead of 128 (a start
with 10k videos: ~9 ms of format 3's rows down to ~5.5), and the Videos are made in C (``tuple.__new__``
over ``zip`` of the columns): loading a million rows is most of a start or a `plan`. A snapshot whose
`fields` are not this nkod's Video's is not used (the state is rebuilt from the log).

The first line alone answers ``nkoctl status`` (``views.summary`` of the videos); the rows of the few
videos the log's tail touches are found by line number (video i in chunk i // chunk) without parsing
the other chunks (`status_replay`).
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from types import MappingProxyType

import orjson

from nkod import eventlog, gcpause, headcrc, statusfast, views
from nkod.fsutil import atomic_write, open_regular, read_regular
from nkod.state import (
    _COUNTS_AT,  # (where a Video's fields are, as the fold knows it)
    _N_FIELDS,
    _STATUS_AT,
    PristineVideo,
    Projector,
    State,
    Status,
    Video,
    state_of_doc,
    video_from_fields,
)
from nkod.statusfast import named_videos as _named_videos  # (shared with status's fast path)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

SNAPSHOT_VERSION = 4
ROWS_AS_OBJECTS = 2  # the last format whose rows were objects with short keys (still read)
ROWS_AS_ARRAYS = 3  # the last format of one row per line, the array of its fields (still read)
# Videos per line of format 4. Measured (10k completed videos, best of 40): 64 to 256 load alike (~5.5 ms);
# fewer make more lines (more calls), more makes a status that needs one row parse more of them.
CHUNK_VIDEOS = 128
MAX_SNAPSHOT_BYTES = 4 << 30  # far above any real snapshot; a bound on what a bad file can cost

# Short keys keep snapshots of 100k+ videos small and fast to load.
_VIDEO_FIELDS = (
    ("s", "status"), ("f", "failures"), ("n", "starts"), ("a", "attempt"), ("q", "started_seq"),
    ("sa", "started_at"), ("nb", "not_before"), ("e", "error"), ("ek", "error_kind"), ("fa", "failed_at"),
    ("ca", "completed_at"), ("c", "counts"), ("i", "imported"), ("rd", "retry_delay"),
    ("sk", "skipped"), ("sr", "skip_reason"), ("pb", "priority_boost"), ("ro", "redo"), ("eh", "entry_hash"),
    ("rm", "removed"), ("ec", "entry_changed"),
)  # fmt: skip
_DEFAULT = Video(video_id="")
_ROW_FIELDS = tuple((short, name, getattr(_DEFAULT, name)) for short, name in _VIDEO_FIELDS)
_SHORT = {name: short for short, name in _VIDEO_FIELDS}
# Every field of Video (a field added to Video but not to the snapshot gets its default).
_ALL_FIELDS = tuple((_SHORT.get(name), name, getattr(_DEFAULT, name)) for name in Video._fields)
_STATUS = {s.value: s for s in Status}


def state_to_doc(state: State | Projector) -> dict[str, Any]:
    """The state as one JSON document, its videos as objects with short keys (format 1's rows)."""
    videos = []
    for v in state.videos.values():
        row: dict[str, Any] = {"id": v.video_id}
        for short, name, default in _ROW_FIELDS:
            value = getattr(v, name)
            if value != default:
                row[short] = dict(value) if name == "counts" else value
        videos.append(row)
    return {**_state_doc(state), "videos": videos}


def _state_doc(state: State | Projector) -> dict[str, Any]:
    """Everything of the state but its videos."""
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
    }
    if s.open_seconds is not None:  # absent from logs (and snapshots) older than `session_seconds`
        doc["session"]["open_seconds"] = s.open_seconds
    # The runnable order (absent when nothing is runnable, and in snapshots older than it).
    redo, queue = (state.redo, state.queue) if isinstance(state, Projector) else (state.redo_order, state.queue_order)
    if redo:
        doc["redo"] = list(redo)
    if queue:
        doc["queue"] = list(queue)
    if state.paused:  # (absent when not paused, and in snapshots older than steering)
        doc["paused"] = True
    if state.discovered:  # videos from `nkoctl add` and [[sources]], in the order they were found
        doc["discovered"] = [dict(entry) for entry in state.discovered.values()]
    if state.sources:
        doc["sources"] = {name: dict(info) for name, info in state.sources.items()}
    return doc


@functools.cache
def _row_reader() -> Callable[[dict[str, Any]], Video]:
    """The body of `_video_from_row`, one expression per field (generated, as dataclasses generates
    ``__init__``): a loop over the fields cost ~5 µs a row. The Video is made from the tuple of its fields
    by ``tuple.__new__`` (C)."""
    env: dict[str, Any] = {"_tuple_new": tuple.__new__, "Video": Video, "_STATUS": _STATUS, "_proxy": MappingProxyType}
    values = []
    for i, (short, name, default) in enumerate(_ALL_FIELDS):
        env[f"_d{i}"] = default
        if name == "video_id":
            values.append("row['id']")
        elif short is None:  # in Video but not in snapshots: its default
            values.append(f"_d{i}")
        elif name == "status":
            values.append(f"_STATUS[row[{short!r}]] if {short!r} in row else _d{i}")
        elif name == "counts":
            values.append(f"_proxy(row[{short!r}]) if {short!r} in row else _d{i}")
        else:
            values.append(f"get({short!r}, _d{i})")
    lines = ["def read(row):", "    get = row.get", "    return _tuple_new(Video, ("]
    lines += [*(f"        {value}," for value in values), "    ))"]
    exec("\n".join(lines), env)
    reader: Callable[[dict[str, Any]], Video] = env["read"]
    return reader


_PLAIN_REST = tuple(_DEFAULT[1:])  # every field but the id at its default


_tuple_new = tuple.__new__


def _plain_rows(ids: list[Any]) -> bytes | None:
    """The bytes of format-3 rows of only these ids, as written for ids JSON writes as they are (None if
    one is not a string); an id JSON escapes gives other bytes than its row's, so never equals them."""
    try:
        return ('["' + '"]\n["'.join(ids) + '"]\n').encode() if ids else b""
    except TypeError:
        return None


_NULL_COLUMNS = b",null" * (_N_FIELDS - 1) + b"]"  # how a chunk of only not-yet-started videos ends
_NO_COLUMNS: list[None] = [None] * (_N_FIELDS - 1)
_PLAIN_BETWEEN = '"]' + _NULL_COLUMNS.decode() + '\n[["'  # from one line of only ids to the next
_MAX_RUN = 64  # lines of only ids compared at once, at most (8192 ids: ~200 KB)


def _plain_chunks(ids: list[Any], chunk: int) -> bytes | None:
    """The bytes of the format-4 lines, `chunk` ids each, of only these ids (all else null), as written for
    ids JSON writes as they are (None if one is not a string); an id JSON escapes gives other bytes, so
    never equals them. (Compared a run of lines at once: one line at a time cost a 1M-video manifest's
    load ~10 ms more than format 3's rows.)"""
    try:
        joined = _PLAIN_BETWEEN.join(['","'.join(ids[i : i + chunk]) for i in range(0, len(ids), chunk)])
    except TypeError:
        return None
    return b'[["' + joined.encode() + b'"]' + _NULL_COLUMNS + b"\n"


def _chunk_videos(chunk: Any, ids: list[Any], place: int) -> list[Video] | Iterator[Video]:
    """The Videos of a parsed format-4 line that must be the chunk of `ids` (ValueError if it is not; an
    unknown status is a KeyError, counts that are not an object a TypeError). A video whose fields are all
    defaults but its id is made a PristineVideo, as format 3's rows of only an id were."""
    columns: list[Any] = statusfast.checked_chunk(chunk, ids, place)
    status = columns[_STATUS_AT]
    maybe_pristine = status is None or "pending" in status
    if status is not None:
        columns[_STATUS_AT] = list(map(_STATUS.__getitem__, status))
    counts = columns[_COUNTS_AT]
    if counts is not None:  # (in C where every video has counts: a completed chunk)
        columns[_COUNTS_AT] = (
            list(map(MappingProxyType, counts))
            if None not in counts
            else [None if c is None else MappingProxyType(c) for c in counts]
        )
    values = [repeat(default) if column is None else column for column, default in zip(columns, _DEFAULT, strict=True)]
    made = map(_tuple_new, repeat(Video), zip(*values, strict=False))  # (null columns: repeat)
    if maybe_pristine:
        return [PristineVideo(v[0]) if v[1:] == _PLAIN_REST else v for v in made]
    return made


def _add_pristine(videos: dict[str, Video], ids: list[str]) -> None:
    """Add a PristineVideo for each of `ids`, in C (a run of chunks at once: one per chunk cost a 1M-video
    manifest ~45 ms more)."""
    videos.update(zip(ids, map(_tuple_new, repeat(PristineVideo), zip(ids)), strict=True))


def _plain_video(vid: str) -> Video:
    """The Video of a row that is only its id (a video added and not yet started, most of a big manifest's)."""
    return PristineVideo(vid)


_FIELD_NAMES = list(Video._fields)


def _video_from_row(row: Any) -> Video:
    """One snapshot row as a Video: an array (format 3: the fields in order, or only the id) or an object
    with short keys (formats 1 and 2). Rows that are neither, unknown statuses and bad counts raise."""
    if type(row) is list:
        return video_from_fields(row)
    if not isinstance(row, dict):
        raise TypeError(f"video row is {type(row).__name__}, not an object")
    return _row_reader()(row)


def _row_id(row: Any) -> Any:
    """The id a parsed row is of (its first field, or its "id")."""
    return row[0] if type(row) is list and row else row.get("id") if type(row) is dict else None


def _chunk_bytes(videos: list[Video], dumps: Callable[..., bytes] = orjson.dumps) -> bytes:
    """A format-4 line: the chunk's videos as columns, a column null when every value in it is the field's
    default (the very default object: 0 stands for neither False nor 0.0), and only the ids when every
    video has only defaults besides (a big manifest's videos not yet started)."""
    ids = [v[0] for v in videos]
    if all(v.__class__ is PristineVideo or v[1:] == _PLAIN_REST for v in videos):
        return dumps([ids, *_NO_COLUMNS])
    columns: list[Any] = [ids]
    for values, default in zip(list(zip(*videos, strict=True))[1:], _PLAIN_REST, strict=True):
        columns.append(None if all(value is default for value in values) else values)
    return dumps(columns, default=dict)


def state_from_doc(doc: dict[str, Any], videos: dict[str, Video] | None = None) -> State:
    """The State of a snapshot document; `videos`: its videos already built (else from doc["videos"])."""
    if videos is None:
        videos = {v.video_id: v for v in map(_video_from_row, doc["videos"])}
    return state_of_doc(doc, videos)


def log_stat(log_path: Path) -> dict[str, int] | None:
    """What changes whenever a byte of the log does (its inode, size, mtime and ctime; ctime cannot be
    set back), or None if it cannot be read."""
    try:
        return eventlog.stat_key(os.stat(log_path))
    except OSError:
        return None


def encode(
    state: State | Projector,
    head_crc: int | None = None,
    log_stat: dict[str, int] | None = None,
    chunk: int = CHUNK_VIDEOS,
) -> bytes:
    """The bytes of a format-4 snapshot of `state`, `chunk` videos to a line. `head_crc`: CRC-32 of the
    log's bytes [0, state.offset), so a reader can check cheaply that the head the snapshot stands in for
    is still what was replayed (damage there must not hide behind it)."""
    videos = state.videos
    every = list(videos.values())
    lines = [_chunk_bytes(every[i : i + chunk]) for i in range(0, len(every), chunk)]
    lines.append(b"")
    body = orjson.dumps(list(videos)) + b"\n" + b"\n".join(lines)
    head: dict[str, Any] = {
        "v": SNAPSHOT_VERSION,
        "state": _state_doc(state),
        "summary": views.summary(videos.values()),
        "body_crc": f"{zlib.crc32(body):08x}",
        "fields": _FIELD_NAMES,
        "chunk": chunk,
    }
    if head_crc is not None:
        head["head_crc"] = f"{head_crc:08x}"
    if log_stat is not None:
        head["log_stat"] = log_stat
    line = orjson.dumps(head)
    return b'{"crc":"%08x","doc":%s}\n%s' % (zlib.crc32(line), line, body)


def write(
    path: Path,
    state: State | Projector,
    failpoints: eventlog.Failpoints | None = None,
    head_crc: int | None = None,
    log_stat: dict[str, int] | None = None,
    chunk: int = CHUNK_VIDEOS,
) -> None:
    """`log_stat`: the log's `log_stat` once its bytes were checked against `head_crc` (the daemon's last
    snapshot at a stop): while the log still has it, readers need not read the head again to check it.
    `chunk`: videos per line (`encode`)."""
    data = encode(state, head_crc, log_stat, chunk)
    if failpoints is not None and "mid_snapshot" in failpoints.names:
        tmp = path.with_name(f".{path.name}.failpoint.tmp")
        tmp.write_bytes(data[: len(data) // 2])
        failpoints.hit("mid_snapshot")
    atomic_write(path, data)


def _checked_doc(line: bytes) -> Any:
    """The document of ``{"crc":"…","doc":…}``, its checksum verified."""
    if not line.startswith(b'{"crc":"') or line[16:23] != b'","doc"':
        raise ValueError("not a snapshot file")
    body = line[24:-1]
    if zlib.crc32(body) != int(line[8:16], 16):
        raise ValueError("checksum mismatch")
    return orjson.loads(body)


_ROWS_CHUNK = 64 << 10  # format-3 rows are parsed this many bytes at a time (one call each; a bigger chunk
# held more rows' lists at once, which raised the peak memory of a start by ~6 MB for 10k videos)


class _Body:
    """A format-2, -3 or -4 snapshot's ids and rows (`arrays`: format 3's or 4's; `chunk`: format 4's videos
    per line), checked and split only when asked for."""

    def __init__(self, data: bytes, crc: str, arrays: bool = False, start: int = 0, chunk: int | None = None) -> None:
        """The body is `data` from `start` on (not copied out: a start reads 10k rows, a plan a million)."""
        if zlib.crc32(memoryview(data)[start:]) != int(crc, 16):
            raise ValueError("checksum mismatch in the video rows")
        end = data.index(b"\n", start)
        self.ids: list[Any] = orjson.loads(memoryview(data)[start:end])
        self.arrays = arrays
        self.chunk = chunk
        self._data, self._rows_start = data, end + 1
        self._rows: list[bytes] | None = None
        if not isinstance(self.ids, list):
            raise ValueError("video rows do not match the ids")
        # The count of lines: format 4's is checked by each reader as it goes (a start walks every line
        # anyway, and counting them first cost ~0.3 ms of it); formats 2 and 3 are read as before.
        self._lines = len(self.ids) if chunk is None else statusfast.chunk_count(len(self.ids), chunk)
        if chunk is None:
            self._check_count()
        if len(data) > end + 1 and not data.endswith(b"\n"):
            raise ValueError("video rows do not match the ids")

    def _check_count(self) -> None:
        if self._data.count(b"\n", self._rows_start) != self._lines:
            raise ValueError("video rows do not match the ids")

    @functools.cached_property
    def _rows_data(self) -> bytes:
        return self._data[self._rows_start :]

    @property
    def rows(self) -> list[bytes]:
        """Every row's bytes (split once, when first asked for)."""
        if self._rows is None:
            self._rows = self._rows_data.split(b"\n")
            self._rows.pop()
        return self._rows

    def rows_at(self, indices: list[int]) -> list[Any]:
        """The rows at `indices` (sorted), checked, splitting only from the nearer end of the rows to the
        farthest one wanted: status needs the few rows its tail names, and splitting all 10k into objects
        costs ~2 ms. (Exact either way: every row ends with a newline, and no JSON row holds a raw one.)"""
        if not indices:
            return []
        chunk = self.chunk
        if chunk is None:
            return list(map(self._checked, indices, statusfast.lines_at(self._rows_data, self._lines, indices)))
        # Format 4: only the lines of the chunks that hold those rows are parsed.
        self._check_count()
        places = sorted({i // chunk for i in indices})
        lines = statusfast.lines_at(self._rows_data, self._lines, places)
        ids = self.ids
        columns = {
            j: statusfast.checked_chunk(orjson.loads(line), ids[j * chunk : (j + 1) * chunk], j)
            for j, line in zip(places, lines, strict=True)
        }
        return [statusfast.chunk_row(columns[i // chunk], i % chunk) for i in indices]

    def _checked(self, i: int, raw: bytes) -> Any:
        row = orjson.loads(raw)
        if type(row) is not (list if self.arrays else dict) or _row_id(row) != self.ids[i]:
            raise ValueError(f"video row {i} is not {self.ids[i]!r}")
        return row

    def all_rows(self) -> list[Any]:
        """Every row, checked to be the row of its id, in order. (Parsed a row at a time: one call on
        the rows joined was faster but held three copies of them at once, a start's peak memory.)"""
        if self.chunk is not None:
            return self.rows_at(list(range(len(self.ids))))
        return [self._checked(i, raw) for i, raw in enumerate(self.rows)]

    def videos(self) -> dict[str, Video]:
        """Every row as its Video, by id, in order: what `all_rows` then `state_from_doc` give."""
        if self.chunk is not None:
            return self._column_videos()
        return self._array_videos() if self.arrays else self._object_videos()

    def _column_videos(self) -> dict[str, Video]:
        """Format 4: each line parsed in one call (or, when it is only ids, compared with the bytes such a
        line has, without parsing) and checked to be the chunk of its ids, with as many lines as chunks;
        the Videos made in C from its columns. A snapshot whose checksum holds was written whole by an nkod
        of this format: its values are not checked one by one (an unknown status or counts that are not
        an object raise as they are made)."""
        data, ids, chunk = self._data, self.ids, self.chunk
        assert chunk is not None
        loads, made_of = orjson.loads, _chunk_videos
        videos: dict[str, Video] = {}
        pos, first, n = self._rows_start, 0, len(ids)
        plain_from, run = 0, 1  # ids[plain_from:first]: chunks of only ids, not yet made; run: chunks to try
        while first < n:
            end = data.find(b"\n", pos)
            if end < 0:
                raise ValueError(f"video rows end before chunk {first // chunk} of the ids")
            if data.endswith(_NULL_COLUMNS, pos, end):  # only ids, most likely: `run` such lines at once?
                upto = min(n, first + run * chunk)
                plain = _plain_chunks(ids[first:upto], chunk)
                if plain is not None and data.startswith(plain, pos):
                    pos, first, run = pos + len(plain), upto, min(2 * run, _MAX_RUN)
                    continue
                if run > 1:  # a line in the run is not: try this one alone
                    run = 1
                    continue
            named = ids[first : first + chunk]
            _add_pristine(videos, ids[plain_from:first])
            videos.update(zip(named, made_of(loads(data[pos:end]), named, first // chunk), strict=True))
            pos, first = end + 1, first + chunk
            plain_from = first
        if pos != len(data):
            raise ValueError("more video rows than the ids")
        _add_pristine(videos, ids[plain_from:])
        return videos

    def _array_videos(self) -> dict[str, Video]:
        """Format 3: the rows parsed a chunk at a time (one orjson call per chunk of rows joined as one
        array); each must be the array of its id, in order, and becomes its Video in C. A snapshot whose
        checksum holds was written whole by an nkod of this format: its values are not checked one by one."""
        data, ids = self._data, self.ids
        loads, make = orjson.loads, video_from_fields
        videos: dict[str, Video] = {}
        pos, first, size = self._rows_start, 0, len(data)
        while pos < size:
            end = data.rfind(b"\n", pos, pos + _ROWS_CHUNK) + 1
            if end <= pos:  # a row longer than a chunk
                end = data.index(b"\n", pos) + 1
            count = data.count(b"\n", pos, end)
            named = ids[first : first + count]
            if data.find(b",", pos, end) < 0 and _plain_rows(named) == data[pos:end]:
                # Only ids (a big manifest's videos not yet started), each exactly its row's text: the
                # Videos are made without parsing the rows, in C-level passes.
                made = map(_tuple_new, repeat(PristineVideo), zip(named))
                videos.update(zip(named, made, strict=True))
                pos, first = end, first + count
                continue
            rows = loads(b"[" + data[pos : end - 1].replace(b"\n", b",") + b"]")
            try:
                matches = len(rows) == count and set(map(type, rows)) <= {list} and [row[0] for row in rows] == named
            except (KeyError, IndexError, TypeError):
                matches = False
            if not matches:  # two rows on one line, a row of another video, a row that is not an array
                self.all_rows()  # names the first row that is not its id's
                raise ValueError(f"video rows {first}-{first + count - 1} do not match their ids")
            videos.update(zip(named, map(make, rows), strict=True))
            pos, first = end, first + count
        return videos

    def _object_videos(self) -> dict[str, Video]:
        """Format 2: a row that is only its id (``{"id":"…"}``, a video added and not yet started) is not
        parsed: it is compared with the bytes such a row has. (Ids with a quote or a backslash, which JSON
        escapes, never take that path.)"""
        ids = self.ids
        try:
            joined = "".join(ids)
        except TypeError:  # an id that is not a string: the checks below name the row
            joined = '"'
        if '"' in joined or "\\" in joined:
            return {row["id"]: _video_from_row(row) for row in self.all_rows()}
        loads, plain, reader = orjson.loads, _plain_video, _row_reader()
        videos: dict[str, Video] = {}
        for i, (raw, vid) in enumerate(zip(self.rows, ids, strict=True)):
            if raw == b'{"id":"%s"}' % vid.encode():
                videos[vid] = plain(vid)
                continue
            row = loads(raw)
            if type(row) is not dict or row.get("id") != vid:
                raise ValueError(f"video row {i} is not {vid!r}")
            videos[vid] = reader(row)
        return videos


def _parse(data: bytes) -> tuple[dict[str, Any], bytes | None]:
    """A snapshot file's checked document, and (formats 2 and 3) the bytes after its first line."""
    doc, start = _parse_at(data)
    return doc, (None if start is None else data[start:])


def _parse_at(data: bytes) -> tuple[dict[str, Any], int | None]:
    """A snapshot file's checked document, and (formats 2 and 3) where the bytes after its first line begin."""
    nl = data.find(b"\n")
    doc = _checked_doc(data if nl < 0 else data[:nl])
    if not isinstance(doc, dict):
        raise ValueError("not a snapshot document")
    version = doc.get("v")
    known = ((1, True), (ROWS_AS_OBJECTS, False), (ROWS_AS_ARRAYS, False), (SNAPSHOT_VERSION, False))
    if (version, nl < 0) not in known:
        raise ValueError(f"snapshot version {version!r}")
    if version in (ROWS_AS_ARRAYS, SNAPSHOT_VERSION) and doc.get("fields") != _FIELD_NAMES:
        raise ValueError("its rows have other fields than this nkod's videos")
    return doc, (None if nl < 0 else nl + 1)


def _body(doc: dict[str, Any], data: bytes, start: int = 0) -> _Body:
    """The body of a snapshot whose first line is `doc`: `data` from `start` on."""
    version = doc["v"]
    chunk = doc["chunk"] if version == SNAPSHOT_VERSION else None
    if version == SNAPSHOT_VERSION:
        statusfast.chunk_count(0, chunk)  # (raises unless a count of at least one)
    return _Body(data, doc["body_crc"], arrays=version != ROWS_AS_OBJECTS, start=start, chunk=chunk)


@dataclass(frozen=True)
class Loaded:
    state: State | None
    problem: str | None  # why the snapshot was not used (None when used or absent)
    head_crc: int | None = None  # CRC-32 of the log's head it covers, checked (None: an older snapshot)
    head_changed: bool = False  # rejected because the covered head's bytes differ (damage, or a rewrite)
    head_unchanged: bool = False  # the log is byte for byte as the daemon that wrote it left it (log_stat)
    # How the covered head's CRC was read to check it: "early" (from nkod's start, headcrc), "load" (from
    # here), None (not read: vouched for, unchanged since a clean stop, or no snapshot used).
    head_read: str | None = None


def _read(path: Path) -> tuple[bytes | None, str | None]:
    try:  # never a FIFO (it would block) nor a symlink: nkod writes this file itself
        return read_regular(path, MAX_SNAPSHOT_BYTES, follow_symlinks=False), None
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}; rebuilding from the log"


def _mismatch(path: Path, log_path: Path, seq: Any, offset: Any, last_ts: Any) -> str | None:
    """Why the snapshot at (seq, offset, last_ts) is not of this log, or None when it is."""
    # The line the snapshot ends on must be the very event it last applied: same seq and same timestamp
    # (microseconds), so a snapshot of another log that happens to share a seq/offset is not trusted.
    if not seq:
        return None
    at = eventlog.line_ending_at(log_path, offset) if type(offset) is int else None
    if at is None or at.get("seq") != seq or at.get("ts") != last_ts:
        return f"{path} does not match {log_path} (seq {seq}); rebuilding from the log"
    return None


def _head_crc(doc: dict[str, Any]) -> int | None:
    value = doc.get("head_crc")
    return int(value, 16) if value is not None else None


def _head_unchanged(doc: dict[str, Any], log_path: Path) -> bool:
    """Is the log byte for byte what it was when its head was checked against the snapshot's head_crc?"""
    recorded = doc.get("log_stat")
    return recorded is not None and recorded == log_stat(log_path)


def _head_vouched(log_path: Path, offset: Any, head_crc: int | None) -> bool:
    """Does the daemon's ``events.crc`` vouch that the log's bytes [0, offset) have CRC-32 `head_crc`?

    While nkod runs (and after it crashed) no snapshot is at the log's end with the log's stat, so the head
    it covers would have to be read again (170 MB for 1M events) to see damage under it. The daemon, the only
    writer, records once per loop pass the log's stat after its last append and the CRC of all its bytes:
    bytes it checked at its start (a head whose CRC it compared) or wrote itself, with nobody else's write
    in between (before each append it compares the log's stat with the one after its previous append, and
    withdraws the record otherwise). While the log still has that stat, nobody has written to it since (any
    write moves ctime, which cannot be set back), so those are its bytes. Only the tail [offset, size) is
    read then: crc32(tail, head_crc) equals the recorded CRC exactly when `head_crc` is the CRC of [0, offset)
    (for fixed bytes, the CRC's start value maps one-to-one onto its result). Damage after the record (a
    crash, an edit, a repair, a copy) changes the stat and the head is read as before. What it cannot see
    is what no stat shows: the disk changing bytes by itself, or a write by another process within the same
    tick of the kernel's clock as the daemon's append — as with the clean stop's `log_stat`."""
    if head_crc is None or type(offset) is not int:
        return False
    recorded = eventlog.read_vouch(eventlog.vouch_path(log_path))
    if recorded is None:
        return False
    stat, crc = recorded
    if stat != log_stat(log_path) or not offset <= stat["size"]:
        return False
    return eventlog.crc_of_range(log_path, offset, stat["size"], head_crc) == crc


def _head_changed(path: Path, log_path: Path, offset: int) -> str:
    return f"the first {offset} bytes of {log_path} changed since {path} was written; rebuilding from the log"


def load(path: Path, log_path: Path, check_head: bool = True) -> Loaded:
    """The snapshot's state if it is whole and matches the log; else why not. `check_head=False` skips
    comparing the covered head's bytes with the CRC recorded (to show what a damaged log's state was)."""
    data, problem = _read(path)
    early = headcrc.take(log_path)  # the log's CRC, if nkod began reading it as it started
    if data is None:
        _stop(early)
        return Loaded(None, problem)
    head: headcrc.PrefixCrc | eventlog.BackgroundCrc | None = None
    try:
        doc, rest = _parse_at(data)
        # The head's CRC is computed while the rest is parsed (most of a start or a status on a big log).
        unchanged = _head_unchanged(doc, log_path)
        vouched = check_head and not unchanged and _head_vouched(log_path, doc["state"]["offset"], _head_crc(doc))
        if check_head and not unchanged and not vouched:
            head, early = early or eventlog.BackgroundCrc(log_path), None
        if rest is not None:  # formats 2 and 3: the rows after the first line
            state = state_from_doc(doc["state"], _body(doc, data, rest).videos())
        else:
            state = state_from_doc(doc["state"])
        head_crc = _head_crc(doc)
    except (ValueError, KeyError, TypeError, IndexError, orjson.JSONDecodeError) as exc:
        return Loaded(None, f"{path} is damaged ({exc}); rebuilding from the log")
    finally:
        _stop(early)  # not needed (or not usable): no more reading
    mismatch = _mismatch(path, log_path, state.seq, state.offset, state.last_ts)
    if mismatch:
        return Loaded(None, mismatch)
    head_read = None if head is None else "early" if isinstance(head, headcrc.PrefixCrc) else "load"
    if head is not None and head_crc is not None and head.at(state.offset) != head_crc:
        return Loaded(None, _head_changed(path, log_path, state.offset), head_changed=True, head_read=head_read)
    return Loaded(state, None, head_crc, head_unchanged=unchanged, head_read=head_read)


def _stop(early: headcrc.PrefixCrc | None) -> None:
    if early is not None:
        early.stop()


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
    head_unchanged: bool = False  # the log is as the daemon that wrote the snapshot left it (see load)
    head_read: str | None = None  # how the head's CRC was read to check it (Loaded.head_read)


def replay(data_log: Path, snapshot_path: Path, use_snapshot: bool = True) -> Replay:
    """Snapshot + tail. Raises LogCorruptError / LogVersionError on a damaged log."""
    with gcpause.paused():  # a million videos and events, none in a reference cycle
        return _replay(data_log, snapshot_path, use_snapshot)


def _replay(data_log: Path, snapshot_path: Path, use_snapshot: bool) -> Replay:
    loaded = load(snapshot_path, data_log) if use_snapshot else Loaded(None, None)
    base = loaded.state
    projector = Projector(base)
    result = eventlog.ScanResult()
    first_line = (base.seq + 1) if base else 1
    chunks = eventlog.scan_chunks(
        data_log,
        start_offset=base.offset if base else 0,
        prev_seq=base.seq if base else 0,
        first_line=first_line,
        result=result,
    )
    projector.apply_all(chain.from_iterable(chunks))  # one call: each video is copied once, not per event
    count = result.lines - (first_line - 1)
    projector.offset = result.end_offset
    return Replay(
        projector,
        result,
        base is not None,
        loaded.problem,
        count,
        base.offset if base else 0,
        loaded.head_crc,
        loaded.head_unchanged,
        loaded.head_read if base is not None else None,
    )


@dataclass
class StatusReplay:
    """What ``nkoctl status`` needs: the state's fields but its videos, and the summary of its videos."""

    projector: Projector  # right in all but `videos`, which holds only those the tail touched
    summary: dict[str, Any]  # views.summary of the whole state's videos
    scan: eventlog.ScanResult
    head_read: bool = True  # the head the snapshot covers was read to check its CRC (no stat vouched for it)


def status_replay(data_log: Path, snapshot_path: Path) -> StatusReplay | None:
    """A format-2 snapshot's first line plus the log's tail, parsing the rows of only the videos the tail
    names (an event changes only the videos it names). The result equals a full `replay`'s for status.
    None when no such snapshot applies: then use `replay`. Raises as `replay` does on a damaged log."""
    # Only the first line is read unless the tail names videos (then their rows are needed): on a
    # million-video snapshot the rows are most of its 150 MB.
    try:
        f = open_regular(snapshot_path, follow_symlinks=False)
    except OSError:
        return None
    with f:
        return _status_replay(f, data_log, snapshot_path)


def _status_replay(f: BinaryIO, data_log: Path, snapshot_path: Path) -> StatusReplay | None:
    def rest() -> bytes:
        data = f.read(size - len(first) + 1)  # bounded by the size checked (a file nkod replaces, never grows)
        if len(first) + len(data) != size:
            raise ValueError("the snapshot changed while it was read")
        return data

    try:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_SNAPSHOT_BYTES:
            return None
        first = f.readline(size + 1)
        if not first.endswith(b"\n"):  # format 1 (one line, no summary), or not a whole snapshot
            return None
        doc, _ = _parse(first)
        state_doc, base_summary = doc["state"], doc["summary"]
        seq, offset, head_crc = state_doc["seq"], state_doc["offset"], _head_crc(doc)
        # As `load` does: damage under the snapshot must show (computed while the tail is read).
        trusted = _head_unchanged(doc, data_log) or _head_vouched(data_log, offset, head_crc)
        head = None if trusted else eventlog.BackgroundCrc(data_log)
        if (
            type(seq) is not int
            or type(offset) is not int
            or _mismatch(snapshot_path, data_log, seq, offset, state_doc["last_ts"])
        ):
            return None
    except (ValueError, KeyError, TypeError, IndexError, orjson.JSONDecodeError):
        return None
    if head is not None and head_crc is not None and head.at(offset) != head_crc:
        return None  # the head changed: the full replay says how
    result = eventlog.ScanResult()
    events = list(chain.from_iterable(eventlog.scan_chunks(data_log, offset, seq, seq + 1, result)))
    named = _named_videos(events)
    if named is None:
        return None
    try:
        index: dict[str, int] = {}
        rows: list[Any] = []
        if named:
            body = _body(doc, rest())
            index = {vid: i for i, vid in enumerate(body.ids)}
            rows = body.rows_at(sorted(index[vid] for vid in named if vid in index))
        base = state_from_doc({**state_doc, "videos": rows})
        projector = Projector(base)
        projector.apply_all(events)
        projector.offset = result.end_offset
        after = {vid: projector.videos[vid] for vid in named if vid in projector.videos}
        new = {vid: len(index) + k for k, vid in enumerate(vid for vid in projector.videos if vid not in index)}
        summary = views.summary_after(
            base_summary, base.videos, after, lambda vid: index[vid] if vid in index else new[vid]
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, orjson.JSONDecodeError):
        return None  # a snapshot whose parts do not agree: the full replay decides
    return StatusReplay(projector, summary, result, head is not None)
