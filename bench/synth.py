"""Synthetic histories for the benchmarks, written with the real codec and the real snapshot writer.

``make_history(root, videos, events)`` writes ``root/events.jsonl`` (exactly `events` checked lines),
``root/videos.jsonl`` (the manifest) and, if asked, ``root/snapshot.json`` taken `snapshot_tail` events
before the end, as the daemon would have left it (it snapshots every ``snapshot_every`` events).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from nkod import codec, snapshot
from nkod.state import Projector

BASE = datetime(2026, 1, 1, tzinfo=UTC)
COUNTS = {"frames": 42, "nko_detections": 7, "audio_segments": 12, "nko_frames": 7}


@dataclass(frozen=True)
class History:
    root: Path
    videos: int
    events: int
    log_bytes: int
    snapshot_seq: int | None


def _ts(i: int) -> str:
    # One event every 10 ms of synthetic time; formatted by hand (strftime is the slow part at 1M).
    t = BASE + timedelta(milliseconds=10 * i)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"


def drafts(videos: int, events: int, pending: int = 0) -> list[dict[str, Any]]:
    """The event drafts of a long history: `videos` completed (with retries and restarts filling the
    count up to `events`), then `pending` more added but not started."""
    ids = [f"vid{i:07d}" for i in range(videos + pending)]
    out: list[dict[str, Any]] = [{"type": "log_created", "log_id": "be" * 8, "nkod_version": "0.1.0"}]
    out.append({"type": "daemon_started", "pid": 1, "version": "0.1.0", "host": "bench", "workers": 2})
    for i in range(0, len(ids), 1000):
        out.append({"type": "videos_added", "video_ids": ids[i : i + 1000]})
    fixed = len(out) + 2 * videos + 1
    extra_pairs = max(0, (events - fixed) // 2)
    per_video, rest = divmod(extra_pairs, max(1, videos))
    for n, vid in enumerate(ids[:videos]):
        attempt = 0
        for _ in range(per_video + (1 if n < rest else 0)):
            attempt += 1
            if attempt % 2:
                out.append({"type": "video_started", "video_id": vid, "attempt": attempt})
                out.append(
                    {
                        "type": "video_retry_scheduled",
                        "video_id": vid,
                        "attempt": attempt,
                        "error": "rate limited (HTTP 429)",
                        "error_kind": "transient",
                        "not_before": "2026-01-01T00:00:00.000000Z",
                        "delay_seconds": 30.0,
                    }
                )
            else:  # a daemon restart: what ran is interrupted
                out.append({"type": "video_started", "video_id": vid, "attempt": attempt})
                out.append(
                    {"type": "video_interrupted", "video_id": vid, "attempt": attempt, "reason": "daemon stopped"}
                )
        out.append({"type": "video_started", "video_id": vid, "attempt": attempt + 1})
        out.append({"type": "video_completed", "video_id": vid, "attempt": attempt + 1, "counts": COUNTS})
    while len(out) < events - 1:
        out.append({"type": "config_reloaded", "source": "bench.toml", "workers": 2})
    out.append({"type": "daemon_stopped", "reason": "SIGTERM", "exit_code": 0})
    return out


def make_history(
    root: Path,
    videos: int,
    events: int,
    snapshot_tail: int | None = None,
    pending: int = 0,
) -> History:
    """Write a log of `events` events over `videos` completed videos (+ `pending` waiting) and its manifest."""
    root.mkdir(parents=True, exist_ok=True)
    ds = drafts(videos, events, pending)
    snap_at = len(ds) - snapshot_tail if snapshot_tail is not None else None
    projector = Projector() if snap_at is not None else None
    offset = 0
    head_crc = 0  # as the daemon's writer keeps it: the snapshot records the CRC of the head it covers
    with open(root / "events.jsonl", "wb") as f:
        buf: list[bytes] = []
        pending_events: list[dict[str, Any]] = []
        for i, d in enumerate(ds, start=1):
            line = codec.encode({"v": codec.FORMAT_VERSION, "seq": i, "ts": _ts(i), **d})
            offset += len(line)
            if snap_at is not None and i <= snap_at:
                head_crc = zlib.crc32(line, head_crc)
            buf.append(line)
            if projector is not None and snap_at is not None and i <= snap_at:
                pending_events.append({"v": codec.FORMAT_VERSION, "seq": i, "ts": _ts(i), **d})
                if len(pending_events) >= 10000 or i == snap_at:  # folded in batches, as a replay does
                    projector.apply_all(pending_events)
                    pending_events.clear()
                if i == snap_at:
                    projector.offset = offset
                    snapshot.write(root / "snapshot.json", projector, head_crc=head_crc)
            if len(buf) >= 10000:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    with open(root / "videos.jsonl", "wb") as f:
        f.write(
            b"".join(
                orjson.dumps({"video_id": f"vid{i:07d}", "path": "none.mp4", "frames": 0}) + b"\n"
                for i in range(videos + pending)
            )
        )
    return History(root, videos + pending, len(ds), offset, snap_at)
