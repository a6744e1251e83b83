"""How the files here were made (once, by nkod while its snapshots were format 3; never regenerate them: a
format-3 snapshot must keep loading, and equal the full replay, as it is).

A log over 300 videos (pristine, running, completed with counts, failed, retrying, skipped, prioritized),
``snapshot.json`` written by nkod's own `snapshot.encode` after the first part of it (so a tail of events
follows the snapshot), and ``state.json``: the whole log's state (as tests/test_golden.py compares).
Run from the repository root: ``python tests/data/snapshot-v3/make_snapshot_v3.py``.
"""

import sys
import zlib
from pathlib import Path
from typing import Any

import orjson

from nkod import eventlog, snapshot
from nkod.state import Projector, fold

HERE = Path(__file__).parent
IDS = [f"v{i:03d}" for i in range(300)]


def done(vid: str, frames: int) -> list[dict[str, Any]]:
    return [
        {"type": "video_started", "video_id": vid, "attempt": 1, "entry_hash": "0123456789abcdef"},
        {"type": "video_completed", "video_id": vid, "attempt": 1, "counts": {"frames": frames, "audio_segments": 2}},
    ]


HEAD: list[dict[str, Any]] = [
    {"type": "log_created", "log_id": "5aa95b075aa95b07", "nkod_version": "0.1.0"},
    {"type": "daemon_started", "pid": 4242, "version": "0.1.0", "workers": 1},
    {"type": "videos_added", "video_ids": IDS},
    {"type": "video_prioritized", "video_id": "v010", "request": "r1.json"},
    *(e for i in range(10) for e in done(f"v{i:03d}", i)),
    *(e for i in range(200, 205) for e in done(f"v{i:03d}", i)),
    {"type": "video_started", "video_id": "v020", "attempt": 1},
    {"type": "video_failed", "video_id": "v020", "attempt": 1, "error": "gone", "error_kind": "permanent"},
    {"type": "video_started", "video_id": "v021", "attempt": 1},
    {
        "type": "video_retry_scheduled",
        "video_id": "v021",
        "attempt": 1,
        "error": "429",
        "error_kind": "transient",
        "not_before": "2026-11-28T06:00:00.000000Z",
    },
    {"type": "video_skipped", "video_id": "v023", "reason": "no N'Ko text", "request": "r2.json"},
    {"type": "video_started", "video_id": "v024", "attempt": 1},
]
TAIL: list[dict[str, Any]] = [
    *done("v025", 25),
    {"type": "video_started", "video_id": "v150", "attempt": 1},
    {"type": "video_prioritized", "video_id": "v299", "request": "r3.json"},
]

if __name__ == "__main__":
    log = HERE / "events.jsonl"
    log.unlink(missing_ok=True)
    writer = eventlog.LogWriter(log, 1)
    for i, draft in enumerate(HEAD):
        writer.append([draft], f"2026-11-28T05:{i // 60:02d}:{i % 60:02d}.000000Z")
    events, result = eventlog.read_all(log)
    projector = Projector(fold(events))
    projector.offset = result.end_offset
    data = log.read_bytes()
    snap = snapshot.encode(projector.state(), head_crc=zlib.crc32(data))
    assert orjson.loads(snap.split(b"\n", 1)[0])["doc"]["v"] == int(sys.argv[1] if len(sys.argv) > 1 else 3)
    (HERE / "snapshot.json").write_bytes(snap)
    for i, draft in enumerate(TAIL):
        writer.append([draft], f"2026-11-28T06:{i // 60:02d}:{i % 60:02d}.000000Z")
    writer.close()
    events, result = eventlog.read_all(log)
    doc = snapshot.state_to_doc(fold(events))
    doc["offset"] = result.end_offset
    (HERE / "state.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
