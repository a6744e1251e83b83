"""How events.jsonl here was made (once; never regenerate it: it must keep replaying as it is).

Real checksummed lines written by nkod's own log writer, holding values a processor or an older nkod
could have put there: null counts (a processor's nan), strings, nested objects, missing fields, wrong types.
Run from the repository root: ``python tests/data/odd-values-v1/make_log.py``.
"""

from pathlib import Path
from typing import Any

from nkod import eventlog

HERE = Path(__file__).parent
DRAFTS: list[dict[str, Any]] = [
    {"type": "log_created", "log_id": "0dd0dd0dd0dd0dd0", "nkod_version": "0.1.0"},
    {"type": "daemon_started", "pid": "not a pid", "version": "0.1.0", "workers": 1},
    {"type": "videos_added", "video_ids": ["v1", "v2", None, 7, ["v3"], "v4", "v5", "v6", "v7", "v8", "v9"]},
    {"type": "manifest_checked", "path": "videos.jsonl", "problems": "oops"},
    {"type": "manifest_checked", "path": "videos.jsonl", "problems": [{"path": "m", "line": 2, "error": "x"}, 5]},
    {"type": "video_started", "video_id": "v1", "attempt": 1},
    {"type": "video_completed", "video_id": "v1", "attempt": 1, "counts": {"frames": 3, "duration_seconds": None}},
    {"type": "video_started", "video_id": "v2", "attempt": "2"},
    {"type": "video_completed", "video_id": "v2", "attempt": 1, "counts": "lots"},
    {"type": "video_started", "video_id": "v4"},
    {"type": "video_completed", "video_id": "v4", "counts": {"frames": {"n": 1}, "audio_segments": [1], "x": "2"}},
    {"type": "video_started", "video_id": "v5", "attempt": 1},
    {"type": "video_retry_scheduled", "video_id": "v5", "attempt": 1, "error": None, "not_before": None},
    {"type": "video_started", "video_id": "v6", "attempt": 1},
    {"type": "video_retry_scheduled", "video_id": "v6", "attempt": 1, "error": ["x"], "not_before": "soon"},
    {"type": "video_started", "video_id": "v7", "attempt": 1},
    {"type": "video_failed", "video_id": "v7", "attempt": 1, "error_kind": {"k": 1}},
    {"type": "video_started", "video_id": "v8", "attempt": 1},
    {"type": "video_interrupted", "video_id": "v8", "reason": 42},
    {"type": "video_started", "video_id": None, "attempt": 1},
    {"type": "video_completed", "video_id": ["v9"], "counts": {"frames": 1}},
    {"type": "video_failed", "video_id": {"id": "v9"}, "error": "x"},
    {"type": "retry_requested", "video_id": 12, "request": "r"},
    {"type": "retry_requested", "video_id": "v7", "request": None},
    {"type": "video_imported", "video_id": "v10", "status": 7, "error": None, "timestamp": 5},
    {"type": "video_imported", "video_id": "v11", "status": "completed", "timestamp": None},
    {"type": "request_rejected", "file": None, "error": {"a": 1}},
    {"type": "daemon_stopped", "reason": None, "exit_code": "0"},
]

if __name__ == "__main__":
    path = HERE / "events.jsonl"
    path.unlink(missing_ok=True)
    writer = eventlog.LogWriter(path, 1)
    for i, draft in enumerate(DRAFTS):
        writer.append([draft], f"2026-11-28T04:{i // 60:02d}:{i % 60:02d}.000000Z")
    writer.close()
