"""How events.jsonl here was made (once; never regenerate it: it must keep replaying as it is).

Real checksummed lines written by nkod's own log writer: the events of sources (``videos_discovered``,
``source_refreshed``, ``source_refresh_failed``) with ordinary values, then with odd ones a hand-made or
future line could hold (wrong types, unsafe ids, missing fields), which the fold must skip or default.
Run from the repository root: ``python tests/data/sources-v1/make_sources_log.py``.
"""

from pathlib import Path
from typing import Any

from nkod import eventlog

HERE = Path(__file__).parent
YT = "https://www.youtube.com/watch?v="
DRAFTS: list[dict[str, Any]] = [
    {"type": "log_created", "log_id": "50a4ce50a4ce50a4", "nkod_version": "0.1.0"},
    {"type": "daemon_started", "pid": 100, "version": "0.1.0", "workers": 1},
    {
        "type": "videos_discovered",
        "source": "chan",
        "entries": [
            {
                "video_id": "dQw4w9WgXcQ",
                "url": YT + "dQw4w9WgXcQ",
                "title": "A",
                "priority": 10,
                "site": "youtube",
                "site_id": "dQw4w9WgXcQ",
            },
            {
                "video_id": "generic-0123456789abcdef",
                "url": "http://127.0.0.1:1/a.mp4",
                "title": None,
                "priority": 10,
                "site": "generic",
                "site_id": "http://127.0.0.1:1/a.mp4",
            },
        ],
    },
    {"type": "source_refreshed", "name": "chan", "url": "https://www.youtube.com/@chan/videos", "count": 2, "new": 2},
    {"type": "video_started", "video_id": "dQw4w9WgXcQ", "attempt": 1},
    {"type": "video_completed", "video_id": "dQw4w9WgXcQ", "attempt": 1, "counts": {"frames": 2}},
    {
        "type": "source_refresh_failed",
        "name": "chan",
        "url": "https://www.youtube.com/@chan/videos",
        "error": "HTTP Error 404",
    },
    {
        "type": "source_refreshed",
        "name": "http://127.0.0.1:1/feed.xml",
        "count": 3,
        "new": 0,
        "skipped": 3,
        "adhoc": True,
        "request": "r1",
    },
    # odd values: each entry below is skipped or defaulted, never an error
    {
        "type": "videos_discovered",
        "source": 7,
        "entries": [
            None,
            5,
            {"video_id": "../etc", "url": "http://x/"},
            {"video_id": "ok1", "url": "ftp://x/"},
            {"video_id": "ok2"},
            {"video_id": "x" * 65, "url": "http://x/"},
            {"video_id": "ok3", "url": "http://x/3", "title": ["t"], "priority": "high", "site": 1, "site_id": None},
            {"video_id": "dQw4w9WgXcQ", "url": "http://elsewhere/", "title": "first one wins"},
        ],
    },
    {"type": "videos_discovered", "source": "s", "entries": "not a list"},
    {"type": "videos_discovered"},
    {"type": "source_refreshed", "name": None, "url": None, "count": 1},
    {"type": "source_refreshed", "name": ["n"], "url": "http://x/feed", "count": "many", "new": -4, "adhoc": "yes"},
    {"type": "source_refresh_failed", "name": "new-one", "error": {"why": 1}},
    {"type": "source_refresh_failed"},
    {"type": "daemon_stopped", "reason": "SIGTERM", "exit_code": 0},
]

if __name__ == "__main__":
    path = HERE / "events.jsonl"
    path.unlink(missing_ok=True)
    writer = eventlog.LogWriter(path, 1)
    for i, draft in enumerate(DRAFTS):
        writer.append([draft], f"2026-11-28T05:{i // 60:02d}:{i % 60:02d}.000000Z")
    writer.close()
