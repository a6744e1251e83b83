"""The CRC-32 of the event log's head, read from the first moment of a start after a crash.

A daemon restarted after a crash finds its snapshot behind the log's end, and before it appends it must
know that the head the snapshot stands in for is still the bytes it was made from: the CRC of 170 MB for
1M events (~35 ms of zlib), unless a record vouches for them (a clean stop's `log_stat`, the crashed
daemon's ``events.crc``). `start` begins that read in a thread as soon as the command line is parsed, so
it overlaps the imports and the snapshot's load (file reads and zlib.crc32 release the GIL; 2 cores);
`snapshot.load` takes it over (`take`) instead of starting its own, and joins it before any append.

`start` tells whether the head will have to be read by looking for the log's current stat in the records
that vouch for it, as bytes. It only decides when the read begins: what is checked, and when, is
`snapshot.load`'s, whether or not a read was started here. This module imports nothing heavy: it runs
before nkod's other modules are imported.
"""

from __future__ import annotations

import os
import stat
import threading
import zlib

MIN_BYTES = 8 << 20  # below this the CRC costs under 2 ms: not worth a thread before the imports
STEP = 4 << 20  # bytes per read: a running CRC is kept at each multiple, so any prefix is one read away

_started: PrefixCrc | None = None


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes whenever a byte of the file does (as eventlog.stat_key)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class PrefixCrc:
    """CRC-32 of a file's prefixes, read in a thread: `at(offset)` is the CRC of bytes [0, offset)."""

    def __init__(self, path: str, identity: tuple[int, int, int, int, int]) -> None:
        self.path = path
        self.identity = identity  # the file's stat when the read began
        self.marks: list[int] = [0]  # marks[i]: CRC of bytes [0, i * STEP)
        self.whole = False  # read to its end with the stat it began with (no write in between)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="nkod-head-crc", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # never blocks on a FIFO
        except OSError:
            return
        try:
            if _identity(os.fstat(fd)) != self.identity:
                return
            buf = bytearray(STEP)  # one buffer, reused: the peak memory of a start stays what it was
            view = memoryview(buf)
            crc = 0
            while not self._stop:
                n = os.readv(fd, [buf])
                if n < STEP:
                    break
                crc = zlib.crc32(view, crc)
                self.marks.append(crc)
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
            while pos < offset:
                chunk = os.pread(fd, min(STEP, offset - pos), pos)
                if not chunk:
                    return None
                crc = zlib.crc32(chunk, crc)
                pos += len(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)
        return crc


def _names_stat(path: str, st: os.stat_result, limit: int) -> bool:
    """Does the first line of `path` (at most `limit` bytes) record the log's stat `st`, as a clean stop's
    snapshot (`log_stat`) and the daemon's ``events.crc`` write it? (Compared as bytes: no JSON parser is
    imported yet. A record that only looks like one is no harm: `snapshot.load` checks it for real.)"""
    record = b'"log_stat":{"dev":%d,"ino":%d,"size":%d,"mtime":%d,"ctime":%d}' % (
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
    )  # fmt: skip
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        with os.fdopen(fd, "rb", closefd=False) as f:
            return record in f.readline(limit)
    except OSError:
        return False
    finally:
        os.close(fd)


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
    if _names_stat(os.path.join(data_dir, "snapshot.json"), st, 64 << 20):
        return
    if _names_stat(os.path.join(data_dir, "events.crc"), st, 512):
        return
    try:
        _started = PrefixCrc(log, _identity(st))
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
