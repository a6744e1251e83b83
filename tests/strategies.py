"""Hypothesis strategies: arbitrary event logs over a few videos (including transitions that make no
sense: the fold must be total)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

IDS = ["a", "b", "c", "d"]

_draft = st.one_of(
    st.builds(lambda ids: {"type": "videos_added", "video_ids": ids}, st.lists(st.sampled_from(IDS), max_size=4)),
    st.builds(
        lambda v, a: {"type": "video_started", "video_id": v, "attempt": a}, st.sampled_from(IDS), st.integers(1, 5)
    ),
    st.builds(
        lambda v, f, d: {
            "type": "video_completed",
            "video_id": v,
            "attempt": 1,
            "counts": {"frames": f, "nko_detections": d, "audio_segments": f + d},
        },
        st.sampled_from(IDS),
        st.integers(0, 50),
        st.integers(0, 50),
    ),
    st.builds(
        lambda v, k: {"type": "video_failed", "video_id": v, "attempt": 1, "error": "boom", "error_kind": k},
        st.sampled_from(IDS),
        st.sampled_from(["transient", "permanent"]),
    ),
    st.builds(
        lambda v, s: {
            "type": "video_retry_scheduled",
            "video_id": v,
            "attempt": 1,
            "error": "429",
            "error_kind": "transient",
            "not_before": f"2026-01-01T00:00:{s:02d}.000000Z",
        },
        st.sampled_from(IDS),
        st.integers(0, 59),
    ),
    st.builds(
        lambda v: {"type": "video_interrupted", "video_id": v, "attempt": 1, "reason": "stop"}, st.sampled_from(IDS)
    ),
    st.builds(lambda v: {"type": "retry_requested", "video_id": v, "request": "r"}, st.sampled_from(IDS)),
    st.builds(
        lambda v, s: {"type": "video_imported", "video_id": v, "status": s},
        st.sampled_from(IDS),
        st.sampled_from(["completed", "failed"]),
    ),
    st.builds(lambda pid: {"type": "daemon_started", "pid": pid}, st.integers(1, 99999)),
    st.just({"type": "daemon_stopped", "reason": "SIGTERM"}),
    st.builds(
        lambda n: {"type": "manifest_checked", "problems": [{"path": "m", "line": n, "error": "x"}]}, st.integers(1, 9)
    ),
    st.just({"type": "request_rejected", "file": "f", "error": "bad"}),
    st.just({"type": "some_future_type", "payload": 1}),
    # steering (nkod.steering): pause/resume, skip/unskip, prioritize, redo, cancel, and the entry a start used
    st.builds(lambda now: {"type": "queue_paused", "now": now}, st.booleans()),
    st.just({"type": "queue_resumed"}),
    st.builds(
        lambda v, r: {"type": "video_skipped", "video_id": v, "reason": r},
        st.sampled_from(IDS),
        st.sampled_from(["no text", "cancelled", None]),
    ),
    st.builds(lambda v: {"type": "video_unskipped", "video_id": v}, st.sampled_from(IDS)),
    st.builds(lambda v: {"type": "video_prioritized", "video_id": v}, st.sampled_from(IDS)),
    st.builds(lambda v: {"type": "video_redo_requested", "video_id": v}, st.sampled_from(IDS)),
    st.builds(
        lambda v, q: {"type": "video_cancel_requested", "video_id": v, "requeue": q},
        st.sampled_from(IDS),
        st.booleans(),
    ),
    st.builds(
        lambda r, c: {"type": "manifest_compared", "removed": r, "restored": [], "changed": c, "unchanged": []},
        st.lists(st.sampled_from(IDS), max_size=3),
        st.lists(st.sampled_from(IDS), max_size=2),
    ),
    st.builds(
        lambda r, c: {"type": "manifest_compared", "restored": r, "unchanged": c},
        st.lists(st.sampled_from(IDS), max_size=3),
        st.lists(st.sampled_from(IDS), max_size=2),
    ),
    st.builds(
        lambda v, h: {"type": "video_started", "video_id": v, "attempt": 1, "entry_hash": h},
        st.sampled_from(IDS),
        st.sampled_from(["0123456789abcdef", "fedcba9876543210"]),
    ),
    # sources: videos found by nkoctl add / [[sources]], and each source's last listing
    st.builds(
        lambda src, ids, pr: {
            "type": "videos_discovered",
            "source": src,
            "entries": [
                {
                    "video_id": v,
                    "url": f"https://example.org/{v}",
                    "title": v.upper(),
                    "priority": pr,
                    "site": "example",
                    "site_id": v,
                }
                for v in ids
            ],
        },
        st.sampled_from(["chan", "feed"]),
        st.lists(st.sampled_from([*IDS, "e"]), max_size=3),
        st.integers(-2, 2),
    ),
    st.builds(
        lambda src, n, k: {
            "type": "source_refreshed",
            "name": src,
            "url": f"https://example.org/{src}",
            "count": n,
            "new": k,
        },
        st.sampled_from(["chan", "feed"]),
        st.integers(0, 9),
        st.integers(0, 3),
    ),
    st.builds(
        lambda src: {"type": "source_refresh_failed", "name": src, "url": "u", "error": "HTTP Error 404"},
        st.sampled_from(["chan", "feed"]),
    ),
)


def stamp(drafts: list[dict[str, Any]], gaps: list[int] | None = None) -> list[dict[str, Any]]:
    """Give drafts v, seq (from 1) and increasing ts, as the log writer does."""
    t = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i, d in enumerate(drafts):
        t += timedelta(seconds=(gaps[i] if gaps and i < len(gaps) else 1))
        out.append({"v": 1, "seq": i + 1, "ts": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **d})
    return out


events = st.lists(_draft, max_size=60).map(lambda ds: stamp([{"type": "log_created", "log_id": "x"}, *ds]))

# Logs where every video is known from the start and steering events are frequent (the run order's tests).
_steering_draft = st.one_of(
    _draft,
    st.builds(lambda v: {"type": "video_prioritized", "video_id": v}, st.sampled_from(IDS)),
    st.builds(lambda v: {"type": "video_skipped", "video_id": v, "reason": "r"}, st.sampled_from(IDS)),
    st.builds(lambda v: {"type": "video_unskipped", "video_id": v}, st.sampled_from(IDS)),
)
steering_events = st.lists(_steering_draft, min_size=5, max_size=60).map(
    lambda ds: stamp([{"type": "log_created", "log_id": "x"}, {"type": "videos_added", "video_ids": IDS}, *ds])
)
