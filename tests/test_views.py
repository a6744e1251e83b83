"""Derived views: the seed's checkpoint/progress formats and the status document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from nkod import views
from nkod.render import status_panel
from nkod.state import State, fold
from tests.strategies import stamp


def state(*drafts: dict[str, Any]) -> State:
    return fold(
        stamp(
            [
                {"type": "log_created", "log_id": "L"},
                {"type": "daemon_started", "pid": 7},
                {"type": "videos_added", "video_ids": ["a", "b", "c"]},
                *drafts,
            ]
        )
    )


def done(vid: str, **counts: int) -> list[dict[str, Any]]:
    return [
        {"type": "video_started", "video_id": vid, "attempt": 1},
        {"type": "video_completed", "video_id": vid, "attempt": 1, "counts": counts},
    ]


def render(doc: dict[str, Any]) -> str:
    console = Console(width=100, record=True)
    console.print(status_panel(doc))
    return console.export_text()


def test_checkpoint_view_is_the_seed_format() -> None:
    """extraction_checkpoint.json: completed list, failed {id, error, timestamp}, current, started, updated."""
    s = state(
        *done("a"),
        {"type": "video_started", "video_id": "b", "attempt": 1},
        {"type": "video_failed", "video_id": "b", "attempt": 1, "error": "SABR"},
        {"type": "video_started", "video_id": "c", "attempt": 1},
    )
    cp = views.checkpoint_view(s)
    assert set(cp) == {"completed_videos", "failed_videos", "current_video", "started_at", "last_updated"}
    assert cp["completed_videos"] == ["a"] and cp["current_video"] == "c"
    assert cp["failed_videos"] == [{"id": "b", "error": "SABR", "timestamp": s.videos["b"].failed_at}]


def test_progress_view_is_the_seed_format() -> None:
    """extraction_progress.json: the seed's seven keys, totals from completed videos."""
    p = views.progress_view(state(*done("a", frames=4, nko_detections=2, audio_segments=3, nko_frames=1)), 12.5)
    assert p == {
        "total_videos": 3,
        "processed_videos": 1,
        "total_frames": 4,
        "total_detections": 2,
        "total_audio_segments": 3,
        "total_nko_frames": 1,
        "elapsed_seconds": 12.5,
    }


def test_rate_and_eta_come_from_active_time() -> None:
    """rate = videos completed per hour of daemon time; eta = what is left at that rate."""
    s = state(*done("a"))
    now = datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC)  # events at 1..5 s; daemon started at 2 s
    doc = views.status_doc(s, now, daemon_pid=7)
    assert doc["elapsed_seconds"] == 4.0
    assert doc["rate_per_hour"] == 900.0 and doc["eta_seconds"] == 8.0


def test_detection_off_shows_as_off_not_zero() -> None:
    """When every video ran with no detector, status says detection is off instead of '0 detections'."""
    s = state(*done("a", frames=3, nko_detection_off=1), *done("b", frames=2, nko_detection_off=1))
    doc = views.status_doc(s, datetime(2026, 1, 2, tzinfo=UTC), None)
    assert doc["nko_detection"] == "off"
    assert "detection off" in render(doc) and "0 detections" not in render(doc)
    s = state(*done("a", frames=3, nko_detection_off=1), *done("b", frames=2, nko_detections=1))
    doc = views.status_doc(s, datetime(2026, 1, 2, tzinfo=UTC), None)
    assert doc["nko_detection"] == "partly off" and "detection was off for 1 videos" in render(doc)


def test_status_box_lists_failures_and_interruptions() -> None:
    """The box shows failed videos with their errors and the interrupted ones that go first."""
    s = state(
        {"type": "video_started", "video_id": "a", "attempt": 1},
        {"type": "video_failed", "video_id": "a", "attempt": 1, "error": "Download failed: SABR"},
        {"type": "video_started", "video_id": "b", "attempt": 1},
        {"type": "video_interrupted", "video_id": "b", "attempt": 1, "reason": "SIGTERM"},
    )
    text = render(views.status_doc(s, datetime(2026, 1, 2, tzinfo=UTC), None))
    assert "1. a - Download failed: SABR" in text and "Interrupted:" in text and "not running" in text
