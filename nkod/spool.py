"""``requests/``: how nkoctl asks the daemon for something without writing the log.

A request is one JSON file, created atomically (written under a dot-name, fsynced, renamed). The daemon
turns it into events, makes them durable, and only then deletes the file. A malformed request is moved
to ``requests/rejected/`` with the reason logged; it never stops the daemon.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from nkod.errors import RequestError
from nkod.fsutil import atomic_write
from nkod.manifest import id_problem

REQUEST_TYPES = ("retry", "import_checkpoint", "reset")
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
    """Drop a request file (nkoctl side). Returns its path."""
    spool.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.urandom(4).hex()}.json"
    path = spool / name
    atomic_write(
        path,
        orjson.dumps({"type": type_, "requested_at": time.time(), "pid": os.getpid(), **body}),
        mode=0o660,
    )
    return path


def pending(spool: Path) -> list[Path]:
    """Request files waiting, oldest first (names start with a nanosecond timestamp)."""
    try:
        names = sorted(e.name for e in os.scandir(spool) if e.is_file() and not e.name.startswith("."))
    except FileNotFoundError:
        return []
    return [spool / n for n in names if n.endswith(".json")]


def _id_list(path: Path, value: object, key: str) -> list[str]:
    if not isinstance(value, list):
        raise RequestError(f"{path}: '{key}' must be a list")
    for item in value:
        why = id_problem(item)
        if why:
            raise RequestError(f"{path}: '{key}': {why}")
    return list(value)


def parse(path: Path) -> Request:
    """Read and check one request file; RequestError names the file and what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RequestError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestError(f"{path}: {len(data)} bytes is too large")
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
    return Request(path=path, type=kind, body=body)


def reject(req_path: Path, reason: str) -> Path:
    rejected = req_path.parent / "rejected"
    rejected.mkdir(exist_ok=True)
    target = rejected / req_path.name
    (rejected / (req_path.name + ".reason.txt")).write_text(reason + "\n")  # before: nkoctl reads it then
    os.replace(req_path, target)
    return target
