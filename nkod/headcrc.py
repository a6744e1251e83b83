"""The CRC-32 of the event log's head, read from the first moment of a start after a crash.

A daemon restarted after a crash finds its snapshot behind the log's end, and before it appends it must
know that the head the snapshot stands in for is still the bytes it was made from: the CRC of 170 MB for
1M events (~35 ms of zlib), unless a record vouches for them (a clean stop's `log_stat`, the crashed
daemon's ``events.crc``). `start` begins that read in a thread as soon as the command line is parsed, so
it overlaps the imports and the snapshot's load (file reads and the CRC release the GIL; 2 cores);
`snapshot.load` takes it over (`take`) instead of starting its own, and joins it before any append.

Two things keep it off a start's critical path. The CRC is zlib-ng's where installed (a dependency; it
uses the CPU's carry-less multiply: ~3 ms for 170 MB, against ~25 ms for the system zlib's), so the read
costs the box ~14 ms of CPU instead of ~37 (what the page-cache copy leaves). And while it runs the
interpreter's switch interval is 0.2 ms instead of 5: each read and each CRC call releases the GIL, and
taking it back waits for the main thread (busy importing) to hand it over at its next switch; at 5 ms a
turn the ~80 turns of a 170 MB head took ~100 ms of wall time, still running when the loader joined it.

`start` tells whether the head will have to be read by looking for the log's current stat in the records
that vouch for it, as bytes. It only decides when the read begins: what is checked, and when, is
`snapshot.load`'s, whether or not a read was started here. This module imports nothing heavy: it runs
before nkod's other modules are imported.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import zlib

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

MIN_BYTES = 8 << 20  # below this the CRC costs under 2 ms: not worth a thread before the imports
STEP = 4 << 20  # bytes per read: a running CRC is kept at each multiple, so any prefix is one read away
SWITCH_INTERVAL = 0.0002  # seconds: sys.setswitchinterval while the read runs (see above)

_started: PrefixCrc | None = None


def crc32() -> Callable[[bytes | memoryview, int], int]:
    """zlib-ng's crc32 (the same CRC-32 as zlib's, ~9x faster on a CPU with carry-less multiply), or zlib's
    where zlib-ng is not installed. (Imported on first use, in the reading thread: ~1.7 ms of imports.)"""
    try:
        from zlib_ng.zlib_ng import crc32 as fast
    except ImportError:
        return zlib.crc32
    return fast


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes whenever a byte of the file does (as eventlog.stat_key)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class PrefixCrc:
    """CRC-32 of a file's prefixes, read in a thread: `at(offset)` is the CRC of bytes [0, offset)."""

    def __init__(self, path: str, identity: tuple[int, int, int, int, int], target: int | None = None) -> None:
        self.path = path
        self.identity = identity  # the file's stat when the read began
        self.marks: list[int] = [0]  # marks[i]: CRC of bytes [0, i * STEP)
        # The prefix the load will most likely ask for (the snapshot's offset, as its first line says) and,
        # once read, its CRC: then `at(target)` reads nothing more (else up to STEP bytes again, ~0.5 ms).
        self.target = target if target is not None and target > 0 else None
        self.at_target: int | None = None
        self.whole = False  # read to its end with the stat it began with (no write in between)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="nkod-head-crc", daemon=True)
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(SWITCH_INTERVAL, self._switch_interval))  # until the read ends (_run)
        try:
            self._thread.start()
        except RuntimeError:
            sys.setswitchinterval(self._switch_interval)
            raise

    def _run(self) -> None:
        try:
            self._read()
        finally:
            sys.setswitchinterval(self._switch_interval)

    def _read(self) -> None:
        crc32_of = crc32()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # never blocks on a FIFO
        except OSError:
            return
        try:
            if _identity(os.fstat(fd)) != self.identity:
                return
            buf = bytearray(STEP)  # one buffer, reused: the peak memory of a start stays what it was
            view = memoryview(buf)
            crc, pos, target = 0, 0, self.target
            while not self._stop:
                n = os.readv(fd, [buf])
                if target is not None and pos < target <= pos + n:
                    self.at_target = crc32_of(view[: target - pos], crc)
                if n < STEP:
                    break
                crc = crc32_of(view, crc)
                self.marks.append(crc)
                pos += n
            self.whole = not self._stop and _identity(os.fstat(fd)) == self.identity
        except OSError:
            pass
        finally:
            os.close(fd)

    def stop(self) -> None:
        self._stop = True

    def at(self, offset: int) -> int | None:
        """CRC-32 of bytes [0, offset) (None if the file is shorter). If the read did not get through the
        file with the stat it began with, what it could not vouch for is read again now."""
        self._thread.join()
        crc32_of = crc32()
        marks = self.marks if self.whole else [0]
        i = min(offset // STEP, len(marks) - 1)
        crc, pos = marks[i], i * STEP
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if self.whole and _identity(os.fstat(fd)) != self.identity:
                crc, pos = 0, 0  # written since the read (by nobody, under the lock): from the start
            elif self.whole and offset == self.target and self.at_target is not None:
                return self.at_target
            while pos < offset:
                chunk = os.pread(fd, min(STEP, offset - pos), pos)
                if not chunk:
                    return None
                crc = crc32_of(chunk, crc)
                pos += len(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)
        return crc


def _first_line(path: str, limit: int) -> bytes:
    """The first line of regular file `path` (at most `limit` bytes; empty if it cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.readline(limit)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _names_stat(line: bytes, st: os.stat_result) -> bool:
    """Does `line` (a file's first line) record the log's stat `st`, as a clean stop's snapshot
    (`log_stat`) and the daemon's ``events.crc`` write it? (Compared as bytes: no JSON parser is imported
    yet. A record that only looks like one is no harm: `snapshot.load` checks it for real.)"""
    record = b'"log_stat":{"dev":%d,"ino":%d,"size":%d,"mtime":%d,"ctime":%d}' % (
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
    )  # fmt: skip
    return record in line


_STATE_AT = b'"state":{"seq":'  # how nkod's snapshot writer begins the state: its seq, then its offset


def _snapshot_offset(line: bytes) -> int | None:
    """The log offset a snapshot's first line gives its state (as bytes, no JSON parser), or None. Only a
    guess of the prefix `snapshot.load` will ask `at` for: a wrong one costs a read, never a wrong CRC."""
    at = line.find(_STATE_AT)
    if at < 0:
        return None
    seq_end = line.find(b",", at)
    rest = line[seq_end + 1 : seq_end + 32]
    if seq_end < 0 or not rest.startswith(b'"offset":'):
        return None
    digits = rest[9:].split(b",", 1)[0]
    return int(digits) if digits.isdigit() else None


def start(data_dir: str) -> None:
    """Begin reading `data_dir`'s log for its CRC if a start will need it: there is a snapshot, and neither
    it (a clean stop's) nor ``events.crc`` (the crashed daemon's record after its last append) records the
    log's stat as it is now. Never raises: whatever goes wrong here, `snapshot.load` reads the head itself."""
    global _started
    log = os.path.join(data_dir, "events.jsonl")  # nkod.paths' names (not imported: it costs the imports)
    try:
        st = os.stat(log)
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(st.st_mode) or st.st_size < MIN_BYTES:
        return
    if not os.path.exists(os.path.join(data_dir, "snapshot.json")):
        return  # a full replay reads every line anyway
    first = _first_line(os.path.join(data_dir, "snapshot.json"), 64 << 20)
    if _names_stat(first, st):
        return
    if _names_stat(_first_line(os.path.join(data_dir, "events.crc"), 512), st):
        return
    try:
        _started = PrefixCrc(log, _identity(st), _snapshot_offset(first))
    except RuntimeError:  # no thread to be had: the loader reads the head itself
        _started = None


def take(log_path: str | os.PathLike[str]) -> PrefixCrc | None:
    """The read `start` began, if it is of `log_path` as the file is now (same inode, size and times);
    else None (and that read is stopped)."""
    global _started
    early, _started = _started, None
    if early is None:
        return None
    try:
        same = _identity(os.stat(log_path)) == early.identity
    except OSError:
        same = False
    if not same:
        early.stop()
        return None
    return early
