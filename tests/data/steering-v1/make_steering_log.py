"""How events.jsonl here was made (once; never regenerate it: it must keep replaying as it is).

Real checksummed lines written by nkod's own log writer: every steering event (pause/resume, skip/unskip,
prioritize, redo, cancel, a start naming its entry, the daemon's manifest_compared) as nkod writes them,
then the same types holding odd values (wrong types, missing fields, unknown videos), which the fold must
take without raising.
Run from the repository root: ``python tests/data/steering-v1/make_steering_log.py``.
"""

from pathlib import Path
from typing import Any

from nkod import eventlog

HERE = Path(__file__).parent
DRAFTS: list[dict[str, Any]] = [
    {"type": "log_created", "log_id": "57ee257ee257ee25", "nkod_version": "0.1.0"},
    {"type": "daemon_started", "pid": 4242, "version": "0.1.0", "workers": 1},
    {"type": "videos_added", "video_ids": ["a", "b", "c", "d", "e", "f"]},
    {"type": "queue_paused", "now": False, "request": "r1.json"},
    {"type": "queue_resumed", "request": "r2.json"},
    {"type": "video_skipped", "video_id": "b", "reason": "no N'Ko text", "request": "r3.json"},
    {"type": "video_prioritized", "video_id": "d", "request": "r4.json"},
    {"type": "video_prioritized", "video_id": "c", "request": "r4.json"},
    {"type": "video_started", "video_id": "a", "attempt": 1, "entry_hash": "0123456789abcdef"},
    {"type": "video_completed", "video_id": "a", "attempt": 1, "counts": {"frames": 3}},
    {"type": "video_redo_requested", "video_id": "a", "request": "r5.json"},
    {"type": "video_started", "video_id": "e", "attempt": 1, "entry_hash": "fedcba9876543210"},
    {"type": "video_cancel_requested", "video_id": "e", "requeue": False, "request": "r6.json"},
    {"type": "video_skipped", "video_id": "e", "reason": "cancelled", "request": "r6.json"},
    {"type": "video_interrupted", "video_id": "e", "attempt": 1, "reason": "cancelled"},
    {"type": "video_started", "video_id": "f", "attempt": 1, "entry_hash": "fedcba9876543210"},
    {"type": "video_cancel_requested", "video_id": "f", "requeue": True, "request": "r7.json"},
    {"type": "video_interrupted", "video_id": "f", "attempt": 1, "reason": "cancelled"},
    {"type": "queue_paused", "now": True, "request": "r8.json"},
    {"type": "video_unskipped", "video_id": "b", "request": "r9.json"},
    # the daemon compared the log with the manifest: a line gone, one back, a completed video's line changed
    {"type": "manifest_compared", "removed": ["c", "d"], "changed": ["a"]},
    {"type": "manifest_compared", "restored": ["d"], "unchanged": ["a"]},
    # odd values: the fold must replay them all
    {"type": "queue_paused", "now": "yes"},
    {"type": "video_skipped", "video_id": "c", "reason": {"why": 1}},
    {"type": "video_skipped", "video_id": "zz", "reason": None},
    {"type": "video_unskipped", "video_id": "nobody"},
    {"type": "video_prioritized", "video_id": "a"},
    {"type": "video_prioritized", "video_id": "nobody"},
    {"type": "video_redo_requested", "video_id": "d"},
    {"type": "video_redo_requested", "video_id": "nobody"},
    {"type": "video_cancel_requested", "video_id": "d", "requeue": "maybe"},
    {"type": "video_started", "video_id": "d", "attempt": 1, "entry_hash": ["not", "text"]},
    {"type": "manifest_compared", "removed": "c", "restored": [1, None, "nobody"], "changed": {"a": 1}},
    {"type": "manifest_compared", "unchanged": [["a"]], "removed": ["f", "f"]},
    {"type": "daemon_stopped", "reason": "SIGTERM", "exit_code": 0},
]

if __name__ == "__main__":
    path = HERE / "events.jsonl"
    path.unlink(missing_ok=True)
    writer = eventlog.LogWriter(path, 1)
    for i, draft in enumerate(DRAFTS):
        writer.append([draft], f"2026-11-28T05:{i // 60:02d}:{i % 60:02d}.000000Z")
    writer.close()
