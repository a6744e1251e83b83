"""``nkoctl status [--json]``'s fast path: the document from the snapshot's first line, without importing
orjson, pathlib, dataclasses or the state's classes (~20 ms of a ~40 ms call).

It answers only the common case, exactly as the full path (`nkod.ctl.status`) would: a format-2 snapshot
whose checksum holds, at the end of a log the daemon that wrote it left unchanged (``log_stat``) or that
its ``events.crc`` vouches for, no torn tail, no request waiting in ``requests/``. Anything else, and
anything it is not sure of (`Fallback`), goes to the full path, which says what is wrong. JSON is read by
`nkod.litejson` (orjson's answer, or orjson is asked) and the checks are those of ``snapshot.load`` and
``codec.decode``, so both paths print the same document.
"""

from __future__ import annotations

import os
import stat
import sys
import time
import zlib

from nkod import litejson, statusview

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

SNAPSHOT_VERSION = 2  # as nkod.snapshot.SNAPSHOT_VERSION
MAX_SNAPSHOT_BYTES = 4 << 30  # as nkod.snapshot.MAX_SNAPSHOT_BYTES
MAX_ACTIVITY_BYTES = 64 << 20  # as CtlBase.activity
_CRC_PREFIX = b',"crc":"'  # as nkod.codec
_TAIL_LEN = len(_CRC_PREFIX) + 8 + 2


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
    if len(line) <= _TAIL_LEN or line[-_TAIL_LEN : -_TAIL_LEN + len(_CRC_PREFIX)] != _CRC_PREFIX:
        raise Fallback("no checksum field")
    if line[-2:] != b'"}':
        raise Fallback("no checksum field at the end")
    body = line[:-_TAIL_LEN] + b"}"
    try:
        expected = int(line[-10:-2], 16)
    except ValueError:
        raise Fallback("checksum not hexadecimal") from None
    if zlib.crc32(body) != expected:
        raise Fallback("checksum mismatch")
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
    """The checked document of a format-2 snapshot's first line (as snapshot._parse)."""
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
    if type(doc) is not dict or doc.get("v") != SNAPSHOT_VERSION:
        raise Fallback("not a format-2 snapshot")
    return doc


def _vouched_size(log_path: str, offset: int, head_crc: int, log_stat: dict[str, int]) -> bool:
    """As snapshot._head_vouched: does the daemon's events.crc vouch for the log's bytes [0, offset)?"""
    try:
        fd = _open(log_path[: -len(".jsonl")] + ".crc", follow_symlinks=False)
    except (OSError, Fallback):
        return False
    with os.fdopen(fd, "rb") as f:
        line = f.read(512).partition(b"\n")[0]
    if not line.startswith(b'{"check":"') or line[18:25] != b'","doc"':
        return False
    body = line[26:-1]
    try:
        if zlib.crc32(body) != int(line[10:18], 16):
            return False
        doc = _loads(body)
        stat_then, crc = doc["log_stat"], int(doc["crc"], 16)
    except (ValueError, KeyError, TypeError, Fallback):
        return False
    if stat_then != log_stat or not offset <= log_stat["size"]:
        return False
    fd = _open(log_path, follow_symlinks=True)
    try:
        running, at = head_crc, offset
        while at < log_stat["size"]:
            chunk = os.pread(fd, min(4 << 20, log_stat["size"] - at), at)
            if not chunk:
                return False
            running = zlib.crc32(chunk, running)
            at += len(chunk)
    finally:
        os.close(fd)
    return running == crc


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


def read(root: str) -> tuple[SnapshotState, dict[str, Any]]:
    """The state's fields and the summary of its videos, from the snapshot alone (it is at the log's end);
    Fallback when this is not the case or not sure."""
    log_path = os.path.join(root, "events.jsonl")
    try:
        doc = _first_line(os.path.join(root, "snapshot.json"))
        state_doc, summary = doc["state"], doc["summary"]
        seq, offset, head = state_doc["seq"], state_doc["offset"], doc.get("head_crc")
        if type(seq) is not int or type(offset) is not int or type(summary) is not dict:
            raise Fallback("odd types")
        for key in ("failed", "skipped"):  # as views.summary_after reads them
            for entry in summary.get(key, ()):
                entry["id"]
        fd = _open(log_path, follow_symlinks=True)
        try:
            log_stat = _stat_key(os.fstat(fd))
            if log_stat["size"] != offset:
                raise Fallback("a tail after the snapshot")
            trusted = doc.get("log_stat") == log_stat or (
                head is not None and _vouched_size(log_path, offset, int(head, 16), log_stat)
            )
            if not trusted:
                raise Fallback("the head would have to be read")
            if seq:  # as snapshot._mismatch: the line it ends on is the very event it last applied
                at = _line_ending_at(fd, offset)
                if at.get("seq") != seq or at.get("ts") != state_doc["last_ts"]:
                    raise Fallback("a snapshot of another log")
            elif offset:
                raise Fallback("an offset without a seq")
        finally:
            os.close(fd)
        return SnapshotState(state_doc), summary
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Fallback(str(exc)) from None


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


SYSTEM_DATA_DIR = "/var/lib/nkod"


def data_dir(given: str | None) -> str:
    """--data-dir, $NKOD_DATA_DIR, $STATE_DIRECTORY, ./data if it exists, the system service's
    /var/lib/nkod if it exists, else ./data (`nkod.ctl.base.resolve_data_dir`)."""
    if given is not None:
        return given
    for var in ("NKOD_DATA_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return value.split(":")[0]
    if os.path.isdir("data"):
        return "data"
    if os.path.isdir(SYSTEM_DATA_DIR):
        return SYSTEM_DATA_DIR
    return "data"


def status_doc(root: str) -> dict[str, Any]:
    """What ``nkoctl status --json`` prints for data dir `root`; Fallback when the full path must answer."""
    from datetime import UTC, datetime

    from nkod import proclocks

    if not os.path.isdir(root) or requests_pending(root):
        raise Fallback("no data dir, or requests waiting")
    state, summary = read(root)
    pid = proclocks.holder_pid(root, os.path.join(root, "nkod.lock"))  # (read in a thread since main began)
    act = activity(root) if pid else None
    session = statusview.live_session_seconds(act, pid, time.monotonic())
    doc = statusview.status_doc(state, datetime.now(UTC), pid, act, session, summary)
    doc["log_damaged"] = None
    return doc


def plain_status(given: str | None, as_json: bool) -> int | None:
    """`nkoctl status [--json]` when the fast path answers (its exit status), else None."""
    try:
        doc = status_doc(data_dir(given))
    except Fallback:
        return None
    if as_json:
        sys.stdout.write(litejson.dumps_indent2(doc) + "\n")
    else:
        from rich.console import Console

        from nkod.render import status_panel

        Console(soft_wrap=True, highlight=False).print(status_panel(doc))
    return 0
