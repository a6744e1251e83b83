"""Reading and appending ``events.jsonl``: the only place that touches the log's bytes.

Reading streams the file in chunks and checks every line (checksum, contiguous seq, version). A bad
suffix after the last good line is a torn tail (power cut mid-append): the reader reports it and the
daemon truncates it. A bad line with good lines after it is damage: :class:`LogCorruptError`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from nkod import codec
from nkod.errors import LogCorruptError, LogError, LogVersionError, StorageError
from nkod.fsutil import NotRegularFileError, fsync_dir, open_regular
from nkod.state import format_ts

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any, BinaryIO

CHUNK = 1 << 20
# What a scan reads at once: a chunk's lines, events and bodies then stay in the CPU's cache while they are
# checked and folded (1M events: 1.85 s at 64 KiB against 2.4 s at 1 MiB). A line longer than that is read
# in doubling reads, so it is copied O(its length) times in all, not O(length² / chunk).
SCAN_CHUNK = 1 << 16
MAX_LINE_LOOKBACK = 256 << 20


@dataclass(frozen=True)
class TornTail:
    offset: int  # where the good part ends
    length: int  # bytes after it
    line: int  # line number of the first torn line
    reason: str


@dataclass
class ScanResult:
    """Filled in while a scan runs; final when the iterator is exhausted."""

    end_offset: int = 0  # byte offset after the last good line
    last_seq: int = 0
    lines: int = 0
    torn: TornTail | None = None


def _any_good_line(data: bytes) -> bool:
    """Whether any line of `data` has a checksum that holds (then what comes before it is not a torn tail)."""
    for raw in data.split(b"\n"):
        if raw:
            try:
                codec.decode(raw)
                return True
            except codec.LineError:
                continue
    return False


def scan_chunks(
    path: Path,
    start_offset: int = 0,
    prev_seq: int = 0,
    first_line: int = 1,
    result: ScanResult | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The checked events of `path` from `start_offset`, a list per chunk read (a replay's fast path: no
    per-event bookkeeping). `result` is brought up to date before each list is yielded; on damage, the
    good events before it are yielded first, then LogCorruptError is raised (a torn tail: `result.torn`)."""
    res = result if result is not None else ScanResult()
    res.end_offset = start_offset
    res.last_seq = prev_seq
    res.lines = first_line - 1
    try:  # a FIFO or device in its place is refused at once, never waited on
        f = open_regular(path, follow_symlinks=True)
    except FileNotFoundError:
        return
    except NotRegularFileError as exc:
        raise LogError(f"{exc}; move it aside (the log must be the file nkod wrote)") from exc
    check, check_all, line_error = codec.check, codec.check_all, codec.LineError
    known = start_offset == 0 or prev_seq > 0  # from the start the first seq must be 1 (the fold needs it)
    with f:
        f.seek(start_offset)
        pending = b""
        while True:
            chunk = f.read(max(SCAN_CHUNK, len(pending)))
            data = pending + chunk if pending else chunk
            if not data:
                break
            lines = data.split(b"\n")
            pending = lines.pop()  # no newline yet (or b"")
            # The whole chunk at once first; only a chunk with a bad line (or a seq out of step) is gone
            # through line by line below, to find which line and why.
            checked = check_all(lines)
            if checked is not None and lines:
                events, seqs = checked
                first = res.last_seq + 1 if res.last_seq or known else seqs[0]
                if seqs == list(range(first, first + len(seqs))):
                    res.end_offset += len(data) - len(pending)
                    res.lines += len(events)
                    res.last_seq = seqs[-1]
                    yield events
                    if not chunk:
                        break
                    continue
            events = []
            append = events.append
            seq = res.last_seq
            problem: codec.LineError | None = None
            for raw in lines:  # once per event of a replay: kept lean
                try:
                    event = check(raw)
                except line_error as exc:
                    problem = exc
                    break
                seq_now = event["seq"]
                if seq_now != seq + 1 and (seq or known):
                    problem = codec.BadRecord(f"seq {seq_now} does not follow {seq}")
                    break
                seq = seq_now
                append(event)
            if events:
                res.end_offset += sum(len(x) + 1 for x in lines[: len(events)])
                res.lines += len(events)
                res.last_seq = seq
                yield events
            if problem is not None:
                _raise_or_torn(f, path, res, lines[len(events)], problem)
                return
            if not chunk:  # EOF: whatever is left has no newline: torn
                break
        if pending:
            res.torn = TornTail(res.end_offset, len(pending), res.lines + 1, "last line has no newline (torn write)")


def _raise_or_torn(f: BinaryIO, path: Path, res: ScanResult, raw: bytes, problem: codec.LineError) -> None:
    """The line after `res` is bad: raise what it is, or (a bad checksum with no good line after it) note
    the torn tail in `res`."""
    line_no, offset = res.lines + 1, res.end_offset
    if isinstance(problem, codec.NewerVersion):
        raise LogVersionError(path, line_no, problem.version, codec.FORMAT_VERSION)
    if isinstance(problem, codec.BadRecord):  # its checksum holds: written so, not torn
        raise LogCorruptError(path, line_no, offset, str(problem))
    # Is there a good line after this one? Then it is damage, not a torn tail.
    f.seek(offset + len(raw) + 1)
    after = f.read()
    if _any_good_line(after):
        raise LogCorruptError(path, line_no, offset, str(problem))
    res.torn = TornTail(offset, len(raw) + 1 + len(after), line_no, str(problem))


def scan(
    path: Path,
    start_offset: int = 0,
    prev_seq: int = 0,
    first_line: int = 1,
    result: ScanResult | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the events of `path` from `start_offset`, checked. Fills `result` as it goes: `lines` and
    `last_seq` after each event, `end_offset` after each chunk; all exact when the iteration ends or raises."""
    res = result if result is not None else ScanResult()
    chunks = ScanResult()
    res.end_offset, res.last_seq, res.lines = start_offset, prev_seq, first_line - 1
    try:
        for events in scan_chunks(path, start_offset, prev_seq, first_line, chunks):
            for event in events:
                res.lines += 1
                res.last_seq = event["seq"]
                yield event
            res.end_offset = chunks.end_offset
    finally:
        res.torn = chunks.torn


def read_all(path: Path) -> tuple[list[dict[str, Any]], ScanResult]:
    result = ScanResult()
    events = list(scan(path, result=result))
    return events, result


def line_ending_at(path: Path, offset: int) -> dict[str, Any] | None:
    """The event whose line ends exactly at `offset` (to check a snapshot still matches the log)."""
    if offset <= 0:
        return None
    window = 65536
    while True:  # widen until the line's start is inside (a videos_added line can be megabytes)
        try:
            with open_regular(path) as f:
                start = max(0, offset - window)
                f.seek(start)
                data = f.read(offset - start)
        except OSError:
            return None
        if len(data) != offset - start or not data.endswith(b"\n"):
            return None
        body = data[:-1]
        nl = body.rfind(b"\n")
        if nl >= 0 or start == 0:
            break
        if window >= MAX_LINE_LOOKBACK:
            return None
        window *= 4
    try:
        return codec.decode(body[nl + 1 :])
    except codec.LineError:
        return None


def crc_of_range(path: Path, start: int, end: int, seed: int = 0) -> int | None:
    """CRC-32 of bytes [start, end) of `path`, continuing `seed`; None if the file is shorter.
    O(bytes) in C, so status can check a snapshot's head of a big log cheaply."""
    from nkod.headcrc import crc32  # zlib-ng's where installed (~9x zlib's: a 170 MB head in ~3 ms)

    crc, update = seed, crc32()
    try:
        with open_regular(path) as f:
            f.seek(start)
            left = end - start
            while left > 0:
                chunk = f.read(min(CHUNK * 4, left))
                if not chunk:
                    return None
                crc = update(chunk, crc)
                left -= len(chunk)
    except OSError:
        return None
    return crc


class BackgroundCrc:
    """CRC-32 of a file's prefix, computed in a thread while the caller does something else (zlib and file
    reads release the GIL): it records the running CRC every CHUNK*4 bytes, so ``at(offset)`` finishes
    with at most one chunk more, whatever prefix the caller turns out to need."""

    STEP = CHUNK * 4

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marks: list[int] = [0]  # marks[i]: CRC of bytes [0, i * STEP)
        self._thread = threading.Thread(target=self._run, name="nkod-crc", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            from nkod.headcrc import crc32

            update = crc32()
            with open_regular(self.path) as f:  # never blocks on a FIFO in the log's place
                crc = 0
                while len(chunk := f.read(self.STEP)) == self.STEP:
                    crc = update(chunk, crc)
                    self.marks.append(crc)
        except OSError:
            pass

    def at(self, offset: int) -> int | None:
        """CRC-32 of bytes [0, offset) (None if the file is shorter)."""
        self._thread.join()
        i = min(offset // self.STEP, len(self.marks) - 1)
        return crc_of_range(self.path, i * self.STEP, offset, self.marks[i])


def utc_now_iso() -> str:
    return format_ts(datetime.now(UTC))


class Failpoints:
    """Named crash points for tests (``NKOD_FAILPOINT=name[,name…]``): the process kills itself there."""

    def __init__(self, spec: str | None = None) -> None:
        raw = spec if spec is not None else os.environ.get("NKOD_FAILPOINT", "")
        self.names = {n.strip() for n in raw.split(",") if n.strip()}

    def hit(self, name: str) -> None:
        if name in self.names:
            os.kill(os.getpid(), 9)


def stat_key(st: os.stat_result) -> dict[str, int]:
    """What changes whenever a byte of a file does: its inode, size, mtime and ctime (ctime cannot be set
    back by anyone; mtime and ctime move on at the kernel's timestamp granularity)."""
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns}


def vouch_record(log_stat: dict[str, int], crc: int) -> bytes:
    """A `events.crc` record: the log's stat and the CRC-32 of its bytes [0, size), checksummed itself."""
    doc = b'{"log_stat":{"dev":%d,"ino":%d,"size":%d,"mtime":%d,"ctime":%d},"crc":"%08x"}' % (
        log_stat["dev"], log_stat["ino"], log_stat["size"], log_stat["mtime"], log_stat["ctime"], crc,
    )  # fmt: skip
    return b'{"check":"%08x","doc":%s}\n' % (zlib.crc32(doc), doc)


def vouch_path(log_path: Path) -> Path:
    """``events.crc`` beside ``events.jsonl``: the daemon's record of the log's stat and CRC (`LogWriter`)."""
    return log_path.with_suffix(".crc")


def read_vouch(path: Path) -> tuple[dict[str, int], int] | None:
    """(the log's stat, CRC-32 of its bytes [0, size)) from an `events.crc` record; None when there is none
    or it is not whole (written in place without fsync: a torn or stale record just is not used)."""
    try:
        with open_regular(path, follow_symlinks=False) as f:
            line = f.read(512).partition(b"\n")[0]
        if not line.startswith(b'{"check":"') or line[18:25] != b'","doc"':
            return None
        body = line[26:-1]
        if zlib.crc32(body) != int(line[10:18], 16):
            return None
        doc = orjson.loads(body)
        return doc["log_stat"], int(doc["crc"], 16)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class LogWriter:
    """Appends stamped events; each call is one write and one fsync (a group commit).

    `vouch`: the path of ``events.crc``, which this writer keeps (the daemon's): the log's stat after its
    last append and the CRC of all its bytes, so readers need not read the head again to trust it while the
    log keeps that stat (see `read_vouch`). It vouches only for bytes this writer checked (`head_crc`, given
    by a start that checked the head) or wrote: before each append it compares the log's stat with the one
    after its previous append, and if anyone else changed the log meanwhile it empties the file and vouches
    no more until the next start. The record is written by `record` (the daemon calls it once per loop pass,
    before it waits) and at `close`, not per append: writing a second file there cost every fsync ~8-30 µs
    of journal work on ext4."""

    def __init__(
        self,
        path: Path,
        next_seq: int,
        failpoints: Failpoints | None = None,
        head_crc: int | None = None,
        vouch: Path | None = None,
    ) -> None:
        self.path = path
        self.next_seq = next_seq
        self.failpoints = failpoints or Failpoints("")
        existed = path.exists()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        st = os.fstat(self.fd)
        self.offset = st.st_size
        # CRC-32 of the log's bytes [0, offset), kept up to date by append (None: not known)
        self.crc: int | None = head_crc if head_crc is not None or self.offset else 0
        if not existed:
            fsync_dir(path.parent)
        self._vouch_fd = -1
        self._vouched: dict[str, int] | None = None  # the log's stat after this writer's last write
        self._recorded = True  # events.crc holds `_vouched`
        if vouch is not None and self.crc is not None:
            try:
                # Never through a symlink, never blocked by a FIFO put there: then simply no record.
                flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
                self._vouch_fd = os.open(vouch, flags, 0o640)
                if not stat.S_ISREG(os.fstat(self._vouch_fd).st_mode):
                    raise NotRegularFileError(vouch, "is not a regular file")
                self._vouched, self._recorded = stat_key(st), False
                self.record()
            except OSError:
                self._stop_vouching()

    def record(self) -> None:
        """Write the log's stat after the last append, with its CRC, into ``events.crc`` if not done yet
        (in place, no fsync: a derived file; a stale or torn record is simply not used)."""
        if self._vouch_fd < 0 or self._recorded or self._vouched is None or self.crc is None:
            return
        try:
            os.pwrite(self._vouch_fd, vouch_record(self._vouched, self.crc), 0)
        except OSError:
            self._stop_vouching()
            return
        self._recorded = True

    def _stop_vouching(self) -> None:
        """The log changed under this writer (or the record cannot be written): withdraw the record."""
        if self._vouch_fd >= 0:
            # (If that fails, the stat it holds no longer matches the log's anyway: the log has changed.)
            with contextlib.suppress(OSError):
                os.ftruncate(self._vouch_fd, 0)
            os.close(self._vouch_fd)
        self._vouch_fd = -1
        self._vouched = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._vouch_fd >= 0:  # the record stays: it holds as long as the log keeps its stat
            self.record()
            if self._vouch_fd >= 0:
                os.close(self._vouch_fd)
            self._vouch_fd = -1

    def append(self, drafts: Sequence[dict[str, Any]], ts: str | None = None) -> list[dict[str, Any]]:
        """Stamp `drafts` (v, seq, ts), append them durably, return the full events.

        On a full or read-only disk the partial write is cut off again, so the log stays valid, and
        :class:`StorageError` is raised: nothing was recorded.
        """
        if not drafts:
            return []
        stamp = ts or utc_now_iso()
        events: list[dict[str, Any]] = []
        seq = self.next_seq
        for d in drafts:
            events.append({"v": codec.FORMAT_VERSION, "seq": seq, "ts": stamp, **d})
            seq += 1
        data = codec.encode(events[0]) if len(events) == 1 else b"".join(map(codec.encode, events))
        before = self.offset
        if self._vouch_fd >= 0 and stat_key(os.fstat(self.fd)) != self._vouched:
            self._stop_vouching()  # someone else changed the log since our last write: no longer ours to vouch
        try:
            if "mid_append" in self.failpoints.names:
                os.write(self.fd, data[: max(1, len(data) // 2)])
                self.failpoints.hit("mid_append")
            n = os.write(self.fd, data)  # all of it, nearly always
            if n < len(data):
                view = memoryview(data)[n:]
                while view:
                    n = os.write(self.fd, view)
                    view = view[n:]
            os.fsync(self.fd)
        except OSError as exc:
            try:
                os.ftruncate(self.fd, before)
                os.fsync(self.fd)
            except OSError:
                pass  # then the next start finds a torn tail and cuts it
            self._stop_vouching()
            raise StorageError(f"{self.path}: cannot append ({exc.strerror or exc}); nothing was recorded") from exc
        self.offset = before + len(data)
        if self.crc is not None:
            self.crc = zlib.crc32(data, self.crc)
        if self._vouch_fd >= 0:
            self._vouched, self._recorded = stat_key(os.fstat(self.fd)), False
        self.next_seq = seq
        return events


def truncate_torn(path: Path, torn: TornTail) -> Path:
    """Cut a torn tail off the log, keeping the cut bytes beside it for forensics. Returns that file."""
    keep = path.with_name(f"{path.name}.torn-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}")
    with open(path, "rb") as f:
        f.seek(torn.offset)
        tail = f.read()
    keep.write_bytes(tail)
    with open(path, "r+b") as f:
        f.truncate(torn.offset)
        os.fsync(f.fileno())
    fsync_dir(path.parent)
    return keep
