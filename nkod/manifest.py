"""``videos.jsonl``, the input: one JSON object per line with ``video_id`` and ``path`` or ``url``.

A bad line (not JSON, not UTF-8, over MAX_LINE_BYTES, no or unsafe ``video_id``, no source, a duplicate
id) is a :class:`Problem` naming the file and line; it is skipped and every valid line is still used.
The file is read a line at a time and an over-long line is skipped without being held, so memory stays
bounded. A UTF-8 byte order mark at the start of the file is ignored.
"""

from __future__ import annotations

import io
import os
import re
import zlib
from collections.abc import Iterator, KeysView, Mapping
from dataclasses import dataclass, field
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
_SKIP_CHUNK = 1 << 16  # how much of an over-long line is held at once while it is skipped
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
    """The valid lines by video id, in file order. Each is kept as its line's bytes and parsed when asked
    for (when the video starts): a million-line manifest costs its bytes, not a million dicts."""

    def __init__(self, base: str) -> None:
        self._raw: dict[str, bytes] = {}
        self._base = base
        # The lines' non-zero `priority` keys (in file order), taken when the line is read: the run order
        # needs them for every entry, and parsing a million lines again per change would cost seconds.
        self.priorities: dict[str, int] = {}

    def __getitem__(self, vid: str) -> dict[str, Any]:
        obj: dict[str, Any] = orjson.loads(self._raw[vid])
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

    def _add(self, vid: str, line: bytes, priority: int = 0) -> None:
        self._raw[vid] = line
        if priority:
            self.priorities[vid] = priority

    def _remove(self, vid: str) -> None:
        del self._raw[vid]
        self.priorities.pop(vid, None)


@dataclass
class Manifest:
    path: Path
    entries: Entries = field(default_factory=lambda: Entries(""))  # in file order
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    readable: bool = True  # False: the file could not be read at all (not a regular file, permissions...)
    missing: bool = False  # True: there is no file at `path` (a typo in --data-dir, or not written yet)


def _lines(source: IO[bytes], number: int = 0) -> Iterator[tuple[int, bytes | None, int, bool]]:
    """(number, stripped line, length, ends in a newline) for each line after line `number`; the line is
    None when it is over MAX_LINE_BYTES, and then it was skipped a chunk at a time, never held whole: memory
    stays bounded whatever the file holds."""
    while raw := source.readline(MAX_LINE_BYTES + 2):  # the longest line allowed, a "\r" and the "\n"
        number += 1
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.endswith(b"\n") and len(raw) == MAX_LINE_BYTES + 2:
            length = len(raw)
            while (chunk := source.readline(_SKIP_CHUNK)) and not chunk.endswith(b"\n"):
                length += len(chunk)
            length += len(chunk.rstrip(b"\r\n"))
            yield number, None, length, chunk.endswith(b"\n")
            continue
        line = raw.strip()
        yield number, (line if len(line) <= MAX_LINE_BYTES else None), len(line), raw.endswith(b"\n")


def _take(manifest: Manifest, number: int, line: bytes | None, length: int) -> str | None:
    """Add one line to `manifest`: an entry (its id is returned) or a problem naming the line."""
    what = _problem_of(manifest, number, line, length)
    if what is None:
        return None
    if isinstance(what, Problem):
        manifest.problems.append(what)
        return None
    vid, raw, priority = what
    manifest.entries._add(vid, raw, priority)
    manifest.lines[vid] = number
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
    if type(obj) is dict:  # the common line (an id and a path), checked in a few steps: a million lines
        line_id = obj.get("video_id")
        source_path, priority = obj.get("path"), obj.get("priority", 0)
        if (
            type(line_id) is str
            and _ID_OK(line_id)
            and type(source_path) is str
            and source_path
            and obj.get("url") is None
            and type(priority) is int
        ):
            if line_id in manifest.lines:
                first = manifest.lines[line_id]
                return Problem(str(manifest.path), number, f"duplicate video_id {line_id!r} (first on line {first})")
            return line_id, line, priority
        # else the checks below, one at a time, name what is wrong (or accept a line with a URL)
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
    if vid in manifest.lines:  # (the same ids as the entries; a plain dict is the cheaper lookup)
        first = manifest.lines[vid]
        return Problem(name, number, f"duplicate video_id {vid!r} (first on line {first})")
    return vid, line, priority


def parse(data: bytes | IO[bytes], path: Path) -> Manifest:
    """Parse manifest bytes, or read them from a binary file. A relative ``path`` is resolved against the
    manifest's directory."""
    manifest = Manifest(path=path, entries=Entries(os.path.dirname(path)))
    with gcpause.paused():  # a million lines kept, none in a reference cycle
        _take_all(manifest, _lines(io.BytesIO(data) if isinstance(data, bytes) else data))
    return manifest


def _take_all(manifest: Manifest, lines: Iterator[tuple[int, bytes | None, int, bool]]) -> None:
    """`_take` of each line, the common line (`_problem_of`'s quick check) added here without a call per
    line: most of parsing a million-line manifest was the calls. Any other line goes through `_take`."""
    entries, numbers = manifest.entries._raw, manifest.lines
    priorities, loads, error = manifest.entries.priorities, orjson.loads, orjson.JSONDecodeError
    for number, line, length, _complete in lines:
        if line and line[0] == 0x7B:  # b"{"
            try:
                obj = loads(line)
            except error:
                obj = None
            if type(obj) is dict:
                vid, source_path, priority = obj.get("video_id"), obj.get("path"), obj.get("priority", 0)
                if (
                    type(vid) is str
                    and _ID_OK(vid)
                    and type(source_path) is str
                    and source_path
                    and obj.get("url") is None
                    and type(priority) is int
                    and vid not in numbers
                ):
                    entries[vid] = line
                    numbers[vid] = number
                    if priority:
                        priorities[vid] = priority
                    continue
        _take(manifest, number, line, length)  # the checks one at a time name what is wrong


def load(path: Path) -> Manifest:
    """Read and parse the manifest; a missing or unreadable file is an empty manifest with one problem.

    Only a regular file (or a symlink to one) is read, one bounded line at a time: a FIFO or a device is
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
            for number, line, length, complete in _lines(f, self._number):
                problems = len(self.manifest.problems)
                vid = _take(self.manifest, number, line, length)
                if vid is not None:
                    self.added.append(vid)
                if complete:
                    self._number, self._pos = number, f.tell()
                else:  # still being written: counted now, undone before the next read goes on from _pos
                    self._partial = (vid, problems)
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
            self.manifest.entries._remove(vid)
            del self.manifest.lines[vid]
        del self.manifest.problems[problems:]


def _crc(f: IO[bytes], start: int, end: int, seed: int) -> int:
    crc = seed
    f.seek(start)
    left = end - start
    while left > 0:
        chunk = f.read(min(left, 1 << 22))
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    return crc
