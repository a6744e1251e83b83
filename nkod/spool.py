"""``requests/``: how nkoctl asks the daemon for something without writing the log.

A request is one JSON file, created atomically (written under a dot-name, fsynced, renamed). The daemon
turns it into events, makes them durable, and only then deletes the file. A malformed request is moved
to ``requests/rejected/`` with the reason logged; it never stops the daemon.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from nkod.errors import RequestError
from nkod.fsutil import NotRegularFileError, atomic_write, make_dir, owner_for, read_regular
from nkod.steering import ID_REQUESTS
from nkod.steering import REQUESTS as STEERING

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any

REQUEST_TYPES = ("retry", "import_checkpoint", "reset", "add", *STEERING)
MAX_REQUEST_BYTES = 64 << 20


@dataclass(frozen=True)
class Request:
    path: Path
    type: str
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name


def submit(spool: Path, type_: str, **body: Any) -> Path:
    """Drop a request file (nkoctl side). Returns its path.

    Run as root in a data dir that belongs to the service user, the spool and the file get that
    owner (and group-writable modes), so the daemon can always read and delete what it is sent."""
    if not spool.parent.is_dir():  # a typo'd --data-dir must not become a new data dir holding one request
        raise RequestError(f"{spool.parent}: no such data directory (use --data-dir); nothing was queued")
    owner = owner_for(spool.parent)
    make_dir(spool, owner)
    name = f"{time.time_ns():020d}-{os.urandom(4).hex()}.json"
    path = spool / name
    atomic_write(
        path,
        orjson.dumps({"type": type_, "requested_at": time.time(), "pid": os.getpid(), **body}),
        mode=0o660,
        owner=owner,
    )
    return path


def pending(spool: Path) -> list[Path]:
    """Request files waiting, oldest first (names start with a nanosecond timestamp)."""
    try:
        names = sorted(e.name for e in os.scandir(spool) if e.is_file() and not e.name.startswith("."))
    except FileNotFoundError:
        return []
    return [spool / n for n in names if n.endswith(".json")]


def id_problem(video_id: object) -> str | None:
    """nkod.manifest.id_problem, imported when a request is parsed: `nkoctl status` only lists them."""
    from nkod.manifest import id_problem

    return id_problem(video_id)


def _id_list(path: Path, value: object, key: str) -> list[str]:
    if not isinstance(value, list):
        raise RequestError(f"{path}: '{key}' must be a list")
    for item in value:
        why = id_problem(item)
        if why:
            raise RequestError(f"{path}: '{key}': {why}")
    return list(value)


def parse(path: Path) -> Request:
    """Read and check one request file; RequestError names the file and what is wrong.

    Its size is checked (fstat) before anything is read, so a huge file costs no memory; a symlink or
    anything but a regular file is refused unread."""
    try:
        data = read_regular(path, MAX_REQUEST_BYTES, follow_symlinks=False)
    except NotRegularFileError as exc:
        raise RequestError(f"{path}: {exc.strerror}") from exc
    except OSError as exc:
        raise RequestError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RequestError(f"{path}: not a JSON object")
    kind = body.get("type")
    if kind not in REQUEST_TYPES:
        raise RequestError(f"{path}: unknown request type {kind!r} (known: {', '.join(REQUEST_TYPES)})")
    if kind == "retry":
        ids = body.get("video_ids")
        if ids is not None:
            body["video_ids"] = _id_list(path, ids, "video_ids")
    elif kind == "import_checkpoint":
        body["completed"] = _id_list(path, body.get("completed", []), "completed")
        failed = body.get("failed", [])
        if not isinstance(failed, list) or not all(isinstance(f, dict) for f in failed):
            raise RequestError(f"{path}: 'failed' must be a list of objects")
        for f in failed:
            why = id_problem(f.get("id"))
            if why:
                raise RequestError(f"{path}: 'failed': {why}")
    elif kind in ID_REQUESTS:
        body["video_ids"] = _id_list(path, body.get("video_ids"), "video_ids")
        if not body["video_ids"]:
            raise RequestError(f"{path}: 'video_ids' is empty")
        if not isinstance(body.get("reason"), str | None):
            raise RequestError(f"{path}: 'reason' must be a string")
    elif kind == "add":
        _check_listings(path, body.get("listings"))
    return Request(path=path, type=kind, body=body)


def _check_listings(path: Path, listings: object) -> None:
    """An ``add`` request: ``listings`` = [{source, url, priority, entries: [entry...]}], each entry usable."""
    from nkod.sources import entry_problem

    if not isinstance(listings, list):
        raise RequestError(f"{path}: 'listings' must be a list")
    for i, listing in enumerate(listings):
        if not isinstance(listing, dict) or not isinstance(listing.get("source"), str):
            raise RequestError(f"{path}: listings[{i}]: expected an object with a 'source' string")
        priority = listing.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise RequestError(f"{path}: listings[{i}]: 'priority' must be an integer")
        entries = listing.get("entries")
        if not isinstance(entries, list):
            raise RequestError(f"{path}: listings[{i}]: 'entries' must be a list")
        for j, entry in enumerate(entries):
            why = entry_problem(entry)
            if why:
                raise RequestError(f"{path}: listings[{i}].entries[{j}]: {why}")


def reject(req_path: Path, reason: str) -> Path:
    """Move a bad request into ``rejected/`` beside its reason. Nothing is written through a symlink:
    ``rejected`` that is a symlink (or not a directory) is moved aside and a real directory made, and
    the files are made relative to the directory's own fd, never following a link."""
    rejected = req_path.parent / "rejected"
    try:
        st = os.lstat(rejected)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISDIR(st.st_mode):  # a symlink (maybe to a dir outside): never used
        os.rename(rejected, rejected.with_name(f"rejected.not-a-dir-{time.time_ns()}"))
        st = None
    if st is None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(rejected, 0o770)
    dir_fd = os.open(rejected, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        reason_name = req_path.name + ".reason.txt"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(reason_name, dir_fd=dir_fd)
        fd = os.open(reason_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o660, dir_fd=dir_fd)
        try:
            os.write(fd, (reason + "\n").encode())  # before the move: nkoctl reads it then
        finally:
            os.close(fd)
        os.replace(req_path, req_path.name, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return rejected / req_path.name
