"""``videos.jsonl``, the input: one JSON object per line with ``video_id`` and ``path`` or ``url``.

A bad line (not JSON, not UTF-8, over MAX_LINE_BYTES, no or unsafe ``video_id``, no source, a duplicate
id) is a :class:`Problem` naming the file and line; it is skipped and every valid line is still used.
The file is read a block at a time and an over-long line is skipped without being held, so memory stays
bounded. A UTF-8 byte order mark at the start of the file is ignored.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import re
import signal
from array import array
from collections.abc import ItemsView, Iterator, KeysView, Mapping
from dataclasses import dataclass, field
from itertools import compress, groupby, islice, repeat
from operator import and_, indexOf, is_, is_not
from pathlib import Path

import orjson

from nkod import gcpause
from nkod.fsutil import open_regular
from nkod.state import VIDEO_ID_RE

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import IO, Any

MAX_ID_LEN = 64
MAX_LINE_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"  # Windows editors save "UTF-8" with it
_HTTP_URL = re.compile(r"(?i)^https?://")
_ID_OK = VIDEO_ID_RE.fullmatch


def id_problem(video_id: object) -> str | None:
    """Why `video_id` cannot name a directory, or None when it is safe."""
    if not isinstance(video_id, str):
        return f"video_id must be a string, got {type(video_id).__name__}"
    if not video_id:
        return "video_id is empty"
    if len(video_id) > MAX_ID_LEN:
        return f"video_id is {len(video_id)} characters long (at most {MAX_ID_LEN})"
    if not VIDEO_ID_RE.fullmatch(video_id):
        return f"video_id {video_id[:80]!r} may only use letters, digits, '-' and '_'"
    return None


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    error: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.error}"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "error": self.error}


class Entries(Mapping[str, dict[str, "Any"]]):  # (a string: typing is not imported at run time)
    """The valid lines by video id, in file order. Each is kept as bytes and parsed when asked for (when
    the video starts): a million-line manifest costs its bytes, not a million dicts. The lines of a batch
    checked together (`_take_common`) are kept `_LINES_PER_BLOCK` to a bytes object, joined, which each id
    of the block maps to: a bytes object per line cost ~33 bytes more than its text (~55 MB of a daemon's
    RSS with a million lines). The line numbers are kept in an array (4 bytes a line, not an int and a dict
    entry): only a duplicate line and `Manifest.lines` look one up."""

    def __init__(self, base: str) -> None:
        self._raw: dict[str, bytes] = {}  # id → its line, or the block of lines that holds it
        self._base = base
        # The lines' non-zero `priority` keys (in file order), taken when the line is read: the run order
        # needs them for every entry, and parsing a million lines again per change would cost seconds.
        self.priorities: dict[str, int] = {}
        self._numbers = array("L")  # the line number of each entry, in file order
        self._positions: dict[str, int] | None = None  # id → index in _numbers, built when often needed
        self._searches = 0

    def __getitem__(self, vid: str) -> dict[str, Any]:
        return self._resolved(self._parsed(vid))

    def _resolved(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A parsed line, its relative `path` made relative to the manifest's directory."""
        if isinstance(obj.get("path"), str):
            obj["path"] = os.path.join(self._base, obj["path"])  # an absolute path stays as it is
        return obj

    def __contains__(self, vid: object) -> bool:
        return vid in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def keys(self) -> KeysView[str]:
        """The ids, as the dict's own view (Mapping's would test membership through a Python call)."""
        return self._raw.keys()

    def items(self) -> ItemsView[str, dict[str, Any]]:
        """(id, entry) of every entry in order, each batch's block split once (`nkoctl report` and the
        sources' `Known` read every entry: looking each line up in its block would cost a search each)."""
        return _Items(self)

    def _lines_in_order(self) -> Iterator[tuple[str, bytes]]:
        """(id, its line) of every entry, in order."""
        raw = self._raw
        ids = iter(raw)
        for _, same in groupby(raw.values(), key=id):
            group = list(same)  # (the same block, once per id of its batch)
            if len(group) == 1:
                yield next(ids), group[0]
            else:  # a batch: its ids are next to each other in the dict, in the order of its lines
                yield from zip(islice(ids, len(group)), group[0].split(b"\n"), strict=True)

    def line_of(self, vid: str) -> int:
        """The number of the line `vid` was read from (KeyError if none)."""
        return self._numbers[self._position(vid)]

    def _parsed(self, vid: str) -> dict[str, Any]:
        """`vid`'s line parsed, as it is in the file (KeyError if none)."""
        return entry_in_block(self._raw[vid], vid)

    def _position(self, vid: str) -> int:
        """Where `vid` is in the file order of the entries (KeyError if none)."""
        positions = self._positions
        if positions is None:
            if vid not in self._raw:
                raise KeyError(vid)
            self._searches += 1
            if self._searches <= _SEARCHES:  # a few duplicates: a scan (C), not an index of a million ids
                return indexOf(self._raw, vid)
            positions = self._positions = dict(zip(self._raw, range(len(self._raw)), strict=True))
        return positions[vid]

    def _add(self, vid: str, line: bytes, priority: int, number: int) -> None:
        if self._positions is not None:
            self._positions[vid] = len(self._raw)
        self._raw[vid] = line
        self._numbers.append(number)
        if priority:
            self.priorities[vid] = priority

    def _add_all(self, ids: list[str], lines: list[bytes], priorities: list[int], number: int) -> None:
        """`_add` of lines number+1, number+2, ... at once (C-level passes)."""
        if self._positions is not None:
            self._positions.update(zip(ids, range(len(self._raw), len(self._raw) + len(ids)), strict=True))
        if len(lines) == 1:
            self._raw[ids[0]] = lines[0]
        else:  # small blocks: finding a line in its block costs ~1 µs more (~12 in a block of 1,024)
            raw, size = self._raw, _LINES_PER_BLOCK
            for at in range(0, len(lines), size):
                raw.update(zip(ids[at : at + size], repeat(b"\n".join(lines[at : at + size]))))
        self._numbers.extend(range(number + 1, number + 1 + len(ids)))
        if any(priorities):
            self.priorities.update(compress(zip(ids, priorities, strict=True), priorities))

    def _remove_last(self, vid: str) -> None:
        """Undo the last `_add` (of `vid`)."""
        del self._raw[vid]
        self._numbers.pop()
        self.priorities.pop(vid, None)
        if self._positions is not None:
            del self._positions[vid]


def entry_in_block(block: bytes, vid: str) -> dict[str, Any]:
    """`vid`'s line in `block` (its line alone, or lines of a batch joined with newlines, each a valid
    entry), parsed. The id's JSON string is looked for and the line it is on parsed to confirm it; an id
    written with JSON escapes (``\\u0061``) is found by parsing each line. KeyError if no line is `vid`'s."""
    obj: dict[str, Any]
    if b"\n" not in block:
        obj = orjson.loads(block)
        return obj
    needle = b'"%s"' % vid.encode()
    at = block.find(needle)
    while at >= 0:
        end = block.find(b"\n", at)
        end = len(block) if end < 0 else end
        obj = orjson.loads(block[block.rfind(b"\n", 0, at) + 1 : end])
        if obj.get("video_id") == vid:  # (the needle may be another line's path or title)
            return obj
        at = block.find(needle, end)
    for line in block.split(b"\n"):
        obj = orjson.loads(line)
        if obj.get("video_id") == vid:
            return obj
    raise KeyError(vid)


class _EntriesRead(Entries):
    """Entries read back from `LoadAside`'s child: the ids alone in the dict (one C pass, no pair made per
    id), the lines joined as the child wrote them, split when a first entry is asked for (plan of a big
    manifest not yet started asks for none)."""

    def __init__(self, base: str, ids: dict[str, object], lines: bytes) -> None:
        """`ids`: a dict whose keys are the entries' ids in file order (its values are not used)."""
        super().__init__(base)
        self._raw = ids  # type: ignore[assignment]  # (values unused: the lines are apart)
        self._joined: bytes | None = lines
        self._lines: list[bytes] = []

    def _parsed(self, vid: str) -> dict[str, Any]:
        obj: dict[str, Any] = orjson.loads(self._split()[self._position(vid)])
        return obj

    def _lines_in_order(self) -> Iterator[tuple[str, bytes]]:
        return zip(self._raw, self._split(), strict=True)

    def _split(self) -> list[bytes]:
        if self._joined is not None:  # (no entries: no lines, where b"".split gives one)
            self._lines, self._joined = (self._joined.split(b"\n") if self._raw else []), None
        return self._lines


class _Items(ItemsView[str, dict[str, "Any"]]):
    """`Entries.items()`: a view whose iteration parses the lines in order, a block split once."""

    _mapping: Entries

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        entries = self._mapping
        for vid, line in entries._lines_in_order():
            yield vid, entries._resolved(orjson.loads(line))


class _Lines(Mapping[str, int]):
    """video id → its line number (a view of `Entries`)."""

    def __init__(self, entries: Entries) -> None:
        self._entries = entries

    def __getitem__(self, vid: str) -> int:
        return self._entries.line_of(vid)

    def __contains__(self, vid: object) -> bool:
        return vid in self._entries._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries._raw)

    def __len__(self) -> int:
        return len(self._entries._raw)


@dataclass
class Manifest:
    path: Path
    entries: Entries = field(default_factory=lambda: Entries(""))  # in file order
    problems: list[Problem] = field(default_factory=list)
    readable: bool = True  # False: the file could not be read at all (not a regular file, permissions...)
    missing: bool = False  # True: there is no file at `path` (a typo in --data-dir, or not written yet)

    @property
    def lines(self) -> Mapping[str, int]:
        """video id → the number of its line."""
        return _Lines(self.entries)


def _take(manifest: Manifest, number: int, line: bytes | None, length: int) -> str | None:
    """Add one line to `manifest`: an entry (its id is returned) or a problem naming the line."""
    what = _problem_of(manifest, number, line, length)
    if what is None:
        return None
    if isinstance(what, Problem):
        manifest.problems.append(what)
        return None
    vid, raw, priority = what
    manifest.entries._add(vid, raw, priority, number)
    return vid


def _problem_of(
    manifest: Manifest, number: int, line: bytes | None, length: int
) -> Problem | tuple[str, bytes, int] | None:
    """What one line is: a Problem, an entry (id, line, priority), or None (blank or a comment)."""
    if line is None:
        return Problem(str(manifest.path), number, f"line is {length} bytes (at most {MAX_LINE_BYTES})")
    if not line or line.startswith(b"#"):
        return None
    try:  # orjson refuses bytes that are not UTF-8 too: the decode below only names where
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        name = str(manifest.path)
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Problem(name, number, f"not UTF-8 (byte {bad.start})")
        return Problem(name, number, f"not JSON: {exc}")
    name = str(manifest.path)
    if not isinstance(obj, dict):
        return Problem(name, number, f"expected a JSON object, got {type(obj).__name__}")
    if "video_id" not in obj:
        return Problem(name, number, "no video_id")
    why = id_problem(obj["video_id"])
    if why:
        return Problem(name, number, why)
    vid: str = obj["video_id"]
    source_path, url = obj.get("path"), obj.get("url")
    if source_path is None and url is None:
        return Problem(name, number, f"{vid}: needs 'path' or 'url'")
    if source_path is not None and (not isinstance(source_path, str) or not source_path):
        return Problem(name, number, f"{vid}: 'path' must be a non-empty string")
    if url is not None and (not isinstance(url, str) or not _HTTP_URL.match(url)):
        return Problem(name, number, f"{vid}: 'url' must be an http(s) URL")
    priority = obj.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        return Problem(name, number, f"{vid}: 'priority' must be an integer (higher runs first), got {priority!r}")
    if vid in manifest.entries:
        first = manifest.entries.line_of(vid)
        return Problem(name, number, f"duplicate video_id {vid!r} (first on line {first})")
    return vid, line, priority


def parse(data: bytes | IO[bytes], path: Path) -> Manifest:
    """Parse manifest bytes, or read them from a binary file. A relative ``path`` is resolved against the
    manifest's directory."""
    manifest = Manifest(path=path, entries=Entries(os.path.dirname(path)))
    with gcpause.paused():  # a million lines kept, none in a reference cycle
        _read_into(manifest, io.BytesIO(data) if isinstance(data, bytes) else data, 0, None)
    return manifest


def _read_into(
    manifest: Manifest, source: IO[bytes], number: int, added: list[str] | None
) -> tuple[int, int, tuple[str | None, int] | None]:
    """Parse `source` from where it stands to its end into `manifest` (line `number` was the last read
    before), appending the ids added to `added`. Returns the number of the last complete line, the offset
    just after it, and, when the file ends in a line without its newline (still being written), what that
    line added: (its id or None, the number of problems before it), for the reader to undo next time.

    Read a block at a time and split in C; a batch of lines that are all common entries is checked and
    added in C-level passes (`_take_common`), any other line one at a time (`_take`). An over-long line is
    skipped a block at a time, never held whole: memory stays bounded whatever the file holds."""
    pos = source.tell()
    carry = b""
    if number == 0:
        head = source.read(len(_BOM))
        if head == _BOM:  # Windows editors save "UTF-8" with it
            pos += len(head)
        else:
            carry = head
    left = bool(carry)  # True: `carry` may hold whole lines (the head, what followed an over-long line)
    while (block := source.read(_BLOCK)) or left:
        left = False
        data = carry + block if carry else block
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) < MAX_LINE_BYTES + 2:
                carry = data
                continue
            # An over-long line: skipped a block at a time up to its newline.
            length, tail, complete = _skip_line(source, data)
            problems = len(manifest.problems)
            _take(manifest, number + 1, None, length)
            if not complete:
                return number, pos, (None, problems)
            number += 1
            pos = source.tell() - len(tail)
            carry, left = tail, bool(tail)
            continue
        lines = data.split(b"\n")  # (not data[:cut]: one copy less of the block)
        carry = lines.pop()
        _take_lines(manifest, lines, number, added)
        number += len(lines)
        pos += cut + 1
    if not carry:
        return number, pos, None
    problems = len(manifest.problems)  # a last line without its newline: taken now, undone on the next read
    if len(carry) >= MAX_LINE_BYTES + 2:
        vid = _take(manifest, number + 1, None, len(carry.rstrip(b"\r")))
    else:
        line = carry.strip()
        vid = _take(manifest, number + 1, line if len(line) <= MAX_LINE_BYTES else None, len(line))
    if vid is not None and added is not None:
        added.append(vid)
    return number, pos, (vid, problems)


def _skip_line(source: IO[bytes], start: bytes) -> tuple[int, bytes, bool]:
    """Read on past a line that began with `start` (no newline in it) to its newline: (its length, less
    trailing CRs; what followed its newline in the last block read; whether a newline was found)."""
    length, crs = len(start), _trailing_crs(start, 0)
    while block := source.read(_BLOCK):
        end = block.find(b"\n")
        if end >= 0:
            return length + end - _trailing_crs(block[:end], crs), block[end + 1 :], True
        length += len(block)
        crs = _trailing_crs(block, crs)
    return length - crs, b"", False


def _trailing_crs(piece: bytes, before: int) -> int:
    """The CRs that end what was read, `piece` last (`before`: those that ended what came before it)."""
    kept = len(piece.rstrip(b"\r"))
    return len(piece) - kept + (before if kept == 0 else 0)


def _take_lines(manifest: Manifest, lines: list[bytes], number: int, added: list[str] | None) -> None:
    """`_take` of lines number+1, number+2, ...: each batch of common lines at once, any other one at a time."""
    for at in range(0, len(lines), _BATCH):
        batch = lines[at : at + _BATCH]
        if _take_common(manifest.entries, batch, number + at, added):
            continue
        for n, raw in enumerate(batch, number + at + 1):
            if len(raw) >= MAX_LINE_BYTES + 2:  # (as the line-at-a-time reader counted it)
                line, length = None, len(raw.rstrip(b"\r"))
            else:
                stripped = raw.strip()
                line, length = (stripped if len(stripped) <= MAX_LINE_BYTES else None), len(stripped)
            vid = _take(manifest, n, line, length)
            if vid is not None and added is not None:
                added.append(vid)


def _take_common(entries: Entries, lines: list[bytes], number: int, added: list[str] | None) -> bool:
    """Add `lines` (numbers number+1, ...) if every one is a common line (`_problem_of` would take it: a
    JSON object, a safe string id not seen before, a non-empty string path or an http(s) URL or both, an
    integer priority or none), with no call per line; False (nothing added) otherwise. Most of parsing a million-line
    manifest was the calls per line."""
    if not lines or max(map(len, lines)) > MAX_LINE_BYTES:
        return False
    try:  # (each line alone: lines joined could parse as other objects than the lines are)
        objs = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        return False
    if set(map(type, objs)) != _DICT:
        return False
    ids: list[Any] = list(map(dict.get, objs, repeat("video_id")))
    if set(map(type, ids)) != _STR or not all(map(_ID_OK, ids)):
        return False
    paths = list(map(dict.get, objs, repeat("path")))
    urls: list[Any] = list(map(dict.get, objs, repeat("url")))
    if set(map(type, urls)) == _NONE:  # the most common: a path each
        if set(map(type, paths)) != _STR or not all(paths):
            return False
    else:  # a path or an http(s) URL each, or both
        if not set(map(type, paths)) <= _STR_OR_NONE or "" in paths or not set(map(type, urls)) <= _STR_OR_NONE:
            return False
        if any(map(and_, map(is_, paths, repeat(None)), map(is_, urls, repeat(None)))):
            return False  # neither
        if not all(map(_HTTP_URL.match, compress(urls, map(is_not, urls, repeat(None))))):
            return False
    priorities = list(map(dict.get, objs, repeat("priority"), repeat(0)))
    if set(map(type, priorities)) != _INT:
        return False
    if len(set(ids)) != len(ids) or not entries._raw.keys().isdisjoint(ids):
        return False  # a duplicate: named line by line
    entries._add_all(ids, lines, priorities, number)
    if added is not None:
        added.extend(ids)
    return True


_LINES_PER_BLOCK = 16  # lines of a batch kept joined in one bytes object (see Entries)
_SEARCHES = 8  # lines found by a scan before an index of the positions is built
_BLOCK = 1 << 20  # how much of the file is read at once (a few times this is held at a time)
_BATCH = 1024  # lines checked together: a bad one sends only its batch through the line-at-a-time checks
_DICT, _STR, _INT, _NONE, _STR_OR_NONE = {dict}, {str}, {int}, {type(None)}, {str, type(None)}


def load(path: Path) -> Manifest:
    """Read and parse the manifest; a missing or unreadable file is an empty manifest with one problem.

    Only a regular file (or a symlink to one) is read, a bounded block at a time: a FIFO or a device is
    refused at once instead of blocking or filling memory."""
    try:
        with open_regular(path) as source:  # refuses a FIFO or a device at once
            return parse(source, path)
    except FileNotFoundError:
        m = Manifest(path=path, missing=True)
        m.problems.append(Problem(str(path), 0, "manifest file does not exist"))
        return m
    except OSError as exc:  # a FIFO, a device, a directory, permissions: a problem to report, not a crash
        m = Manifest(path=path, readable=False)
        m.problems.append(Problem(str(path), 0, f"cannot read the manifest: {exc.strerror or exc}"))
        return m


class LoadAside:
    """`load(path)` run in a child process while this one does other work (nkoctl plan reads a million-video
    snapshot meanwhile: on a second core the two take the time of the longer, ~1 s each). `result` waits for
    the child and gives what `load` gives: the child writes what it read to a memory file (the entries' ids,
    lines and line numbers, the priorities and the problems as they are) and the Manifest is made from it
    in a few C-level passes. If anything goes wrong there (no fork, the child failing or killed, no wait for
    it where SIGCHLD is ignored), the file changed since the child was started (`result` gives the file
    as it is when called: plan reads the log meanwhile, and a line the daemon added from it must not look
    removed), or the file is missing or unreadable, `result` loads the manifest itself, as `load` does; so
    does a file under `min_bytes` (a few ms to read here, less than a fork costs)."""

    def __init__(self, path: Path, min_bytes: int = 1 << 20) -> None:
        self.path = path
        self._pid: int | None = None
        self._fd: int | None = None
        self._before: tuple[int, ...] | None = None
        try:
            st = os.stat(path)
        except OSError:  # (load says what is wrong)
            return
        if st.st_size < min_bytes:
            return
        self._before = _version(st)
        try:
            fd = os.memfd_create("nkod-manifest", os.MFD_CLOEXEC)
        except (AttributeError, OSError):  # not Linux
            return
        # Ctrl+C or a TERM is held back across the fork: in the child it must land inside the try below (which
        # ends in os._exit), never in the parent's code that a child would otherwise run on.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            os.close(fd)
            return
        if pid == 0:  # the child: never returns (os._exit: no cleanup of the parent's objects, no flush of its files)
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
                code = _write_loaded(fd, load(path))
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        self._pid, self._fd = pid, fd

    def result(self, known: Mapping[str, object] | None = None) -> Manifest:
        """The manifest. `known`: a dict of ids the caller holds (the log's videos); when the manifest's ids
        are its keys in the same order, the entries' ids are a copy of it (no million new strings nor
        inserts, and a lookup of an id of one in the other finds the very same string at once)."""
        if self._finish() and self._unchanged():
            assert self._fd is not None
            try:
                return _read_loaded(self._fd, self.path, known)
            except (OSError, ValueError, KeyError, TypeError):  # (orjson.JSONDecodeError is a ValueError)
                pass  # not what the child should have written: read here
            finally:
                self.discard()
        self.discard()
        return load(self.path)

    def discard(self) -> None:
        """Stop the child (if it still runs: its result is not wanted), reap it and let go of what it wrote."""
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        self._finish()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _finish(self) -> bool:
        """Wait for the child; whether it wrote the manifest."""
        if self._pid is None:
            return False
        pid, self._pid = self._pid, None
        try:
            _pid, status = os.waitpid(pid, 0)
        except ChildProcessError:  # SIGCHLD ignored (inherited across exec): the kernel reaped it, status unknown
            return False
        return os.waitstatus_to_exitcode(status) == 0

    def _unchanged(self) -> bool:
        """Whether the file is still the one, as it was, that the child was started on."""
        try:
            return _version(os.stat(self.path)) == self._before
        except OSError:
            return False


_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _version(st: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is written to, appended to or replaced."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _write_loaded(fd: int, m: Manifest) -> int:
    """Write `m` to `fd` for `_read_loaded`; 0, or 2 when `m` is a missing or unreadable file's (the parent
    loads that itself: it costs nothing)."""
    if m.missing or not m.readable:
        return 2
    entries = m.entries
    ids = "\n".join(entries._raw).encode()
    # Each line or block once (the ids of a block map to the same object, next to each other); a line never
    # holds a newline, so the blocks joined are the lines joined.
    lines = b"\n".join(next(same) for _, same in groupby(entries._raw.values(), key=id))
    numbers = entries._numbers.tobytes()
    head = orjson.dumps(
        {
            "n": len(entries._raw),
            "sizes": [len(ids), len(lines), len(numbers)],
            "priorities": entries.priorities,
            "problems": [p.as_dict() for p in m.problems],
        }
    )
    with os.fdopen(os.dup(fd), "wb") as out:
        for part in (head, b"\n", ids, lines, numbers):
            out.write(part)
    return 0


def _read_loaded(fd: int, path: Path, known: Mapping[str, object] | None) -> Manifest:
    """The Manifest `_write_loaded` wrote to `fd`."""
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
        end = mm.find(b"\n")
        head = orjson.loads(mm[:end])
        n, (ids_size, lines_size, numbers_size) = head["n"], head["sizes"]
        at = end + 1
        ids_data = mm[at : at + ids_size]
        at += ids_size
        lines = mm[at : at + lines_size]
        at += lines_size
        numbers = mm[at : at + numbers_size]
    ids: dict[str, object]
    if type(known) is dict and len(known) == n and "\n".join(known).encode() == ids_data:
        ids = known.copy()  # the same keys in the same order: the C copy of its table (~15x dict.fromkeys)
    else:
        ids = dict.fromkeys(ids_data.decode().split("\n") if n else [])
    if len(ids) != n or len(numbers) != n * _NUMBER_SIZE or lines.count(b"\n") != max(n - 1, 0):
        raise ValueError("the manifest's child process wrote an incomplete result")
    m = Manifest(path=path, entries=_EntriesRead(os.path.dirname(path), ids, lines))
    m.entries._numbers.frombytes(numbers)
    m.entries.priorities = head["priorities"]
    m.problems = [Problem(p["path"], p["line"], p["error"]) for p in head["problems"]]
    return m


_NUMBER_SIZE = array("L").itemsize


class Reader:
    """``videos.jsonl`` read again and again as it grows: each `read` parses only the bytes appended since
    the last (a line appended to a million-line manifest costs that line, plus one CRC pass over what was
    read before to be sure it was not rewritten); a file replaced, truncated or changed before the end is
    read again whole. `read` always gives what `load` would; `added` is what the last read added, and
    `whole` says whether it read the file from the start (then lines may also have gone or changed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.added: list[str] = []
        self.whole = True
        self._reset(None)

    def _reset(self, identity: tuple[int, int] | None) -> None:
        self.manifest = Manifest(path=self.path, entries=Entries(os.path.dirname(self.path)))
        self._identity = identity
        self._pos = 0  # the complete lines read end here
        self._crc = 0  # CRC-32 of bytes [0, _pos)
        self._number = 0  # lines read up to _pos
        self._partial: tuple[str | None, int] | None = None  # what an unfinished last line added (undone next)

    def read(self) -> Manifest:
        with gcpause.paused():  # a million lines kept, none in a reference cycle
            return self._read()

    def _read(self) -> Manifest:
        self.added = []
        self.whole = True
        try:  # refuses a FIFO or a device at once
            f = open_regular(self.path)
        except OSError:
            self._reset(None)  # next time: from the start
            self.manifest = load(self.path)  # the same problem load reports
            return self.manifest
        with f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            self.whole = identity != self._identity or st.st_size < self._pos or not self._same_prefix(f)
            if self.whole:
                self._reset(identity)
            self._undo_partial()
            f.seek(self._pos)
            start = self._pos
            self._number, self._pos, self._partial = _read_into(self.manifest, f, self._number, self.added)
            self._crc = _crc(f, start, self._pos, self._crc)
        return self.manifest

    def _same_prefix(self, f: IO[bytes]) -> bool:
        return self._pos == 0 or _crc(f, 0, self._pos, 0) == self._crc

    def _undo_partial(self) -> None:
        if self._partial is None:
            return
        vid, problems = self._partial
        self._partial = None
        if vid is not None:
            self.manifest.entries._remove_last(vid)
        del self.manifest.problems[problems:]


def _crc(f: IO[bytes], start: int, end: int, seed: int) -> int:
    from nkod.headcrc import crc32  # zlib-ng's where installed: the same CRC-32, ~9x zlib's speed

    crc, update = seed, crc32()
    f.seek(start)
    left = end - start
    while left > 0:
        chunk = f.read(min(left, 1 << 22))
        if not chunk:
            break
        crc = update(chunk, crc)
        left -= len(chunk)
    return crc
