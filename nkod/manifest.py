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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from nkod.fsutil import open_regular

MAX_ID_LEN = 64
MAX_LINE_BYTES = 1 << 20
_SKIP_CHUNK = 1 << 16  # how much of an over-long line is held at once while it is skipped
_BOM = b"\xef\xbb\xbf"  # Windows editors save "UTF-8" with it
VIDEO_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


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


@dataclass
class Manifest:
    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # in file order
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    readable: bool = True  # False: the file could not be read at all (not a regular file, permissions...)
    missing: bool = False  # True: there is no file at `path` (a typo in --data-dir, or not written yet)


def _lines(source: IO[bytes]) -> Iterator[tuple[int, bytes | None, int]]:
    """(number, stripped line, length) for each line; the line is None when it is over MAX_LINE_BYTES, and
    then it was skipped a chunk at a time, never held whole: memory stays bounded whatever the file holds."""
    number = 0
    while raw := source.readline(MAX_LINE_BYTES + 2):  # the longest line allowed, a "\r" and the "\n"
        number += 1
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.endswith(b"\n") and len(raw) == MAX_LINE_BYTES + 2:
            length = len(raw)
            while (chunk := source.readline(_SKIP_CHUNK)) and not chunk.endswith(b"\n"):
                length += len(chunk)
            length += len(chunk.rstrip(b"\r\n"))
            yield number, None, length
            continue
        line = raw.strip()
        yield number, (line if len(line) <= MAX_LINE_BYTES else None), len(line)


def parse(data: bytes | IO[bytes], path: Path) -> Manifest:
    """Parse manifest bytes, or read them from a binary file. A relative ``path`` is resolved against the
    manifest's directory."""
    manifest = Manifest(path=path)
    base = os.path.dirname(path)
    name = str(path)
    for number, line, length in _lines(io.BytesIO(data) if isinstance(data, bytes) else data):
        if line is None:
            manifest.problems.append(Problem(name, number, f"line is {length} bytes (at most {MAX_LINE_BYTES})"))
            continue
        if not line or line.startswith(b"#"):
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            manifest.problems.append(Problem(name, number, f"not UTF-8 (byte {exc.start})"))
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            manifest.problems.append(Problem(name, number, f"not JSON: {exc}"))
            continue
        if not isinstance(obj, dict):
            manifest.problems.append(Problem(name, number, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        if "video_id" not in obj:
            manifest.problems.append(Problem(name, number, "no video_id"))
            continue
        why = id_problem(obj["video_id"])
        if why:
            manifest.problems.append(Problem(name, number, why))
            continue
        vid: str = obj["video_id"]
        source_path, url = obj.get("path"), obj.get("url")
        if source_path is None and url is None:
            manifest.problems.append(Problem(name, number, f"{vid}: needs 'path' or 'url'"))
            continue
        if source_path is not None and (not isinstance(source_path, str) or not source_path):
            manifest.problems.append(Problem(name, number, f"{vid}: 'path' must be a non-empty string"))
            continue
        if url is not None and (not isinstance(url, str) or not re.match(r"(?i)^https?://", url)):
            manifest.problems.append(Problem(name, number, f"{vid}: 'url' must be an http(s) URL"))
            continue
        if vid in manifest.entries:
            first = manifest.lines[vid]
            manifest.problems.append(Problem(name, number, f"duplicate video_id {vid!r} (first on line {first})"))
            continue
        if isinstance(source_path, str):
            obj["path"] = os.path.join(base, source_path)  # an absolute path stays as it is
        manifest.entries[vid] = obj
        manifest.lines[vid] = number
    return manifest


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
