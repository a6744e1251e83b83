"""Derived views of the state (pure): the seed's checkpoint and progress files, and ``status --json``.

The daemon writes the first two atomically under ``checkpoints/`` so tools made for the old
``run_extraction.py`` keep working; nobody reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nkod import steering
from nkod.state import Projector, State, Status, try_parse_ts


def elapsed_seconds(
    state: State | Projector, now: datetime, daemon_running: bool, session_seconds: float | None = None
) -> float:
    """Time spent with a daemon up: closed sessions plus the open one. Never negative, and a wall clock
    stepped back neither shrinks it nor loses what was counted.

    Sessions are measured by the daemon on the monotonic clock (`session_seconds` on its events). The open
    one counts `session_seconds` (the running daemon's own figure) when given; else its latest event's
    count, plus, while the daemon runs, the wall time since that event (never below 0). Logs older than
    that field fall back to the wall clock from the session's daemon_started (to now, or to its last event).
    """
    s = state.session
    total = s.active_seconds
    if s.open_since is None:
        return total
    last = try_parse_ts(state.last_ts)  # (an odd timestamp in the log counts no time rather than stopping status)
    counted = s.open_seconds
    if counted is not None or session_seconds is not None:
        counted = counted or 0.0
        if session_seconds is not None:
            return total + max(counted, session_seconds)
        if daemon_running and last is not None:
            counted += max(0.0, (now - last).total_seconds())
        return total + counted
    since = try_parse_ts(s.open_since)
    if since is None:
        return total
    end = now if daemon_running else (last or now)
    return total + max(0.0, (end - since).total_seconds())


def live_session_seconds(activity: Mapping[str, Any] | None, daemon_pid: int | None, monotonic: float) -> float | None:
    """The running daemon's session length now, from its activity file and this machine's monotonic clock
    (the same clock the daemon reads); None if the file is not that daemon's or does not say."""
    if activity is None or daemon_pid is None or activity.get("pid") != daemon_pid:
        return None
    secs, at = activity.get("session_seconds"), activity.get("monotonic")
    if not isinstance(secs, int | float) or not isinstance(at, int | float) or isinstance(secs, bool):
        return None
    since = monotonic - at  # below 0 only if the file came from another boot: count nothing since then
    return float(secs) + max(0.0, since)


def checkpoint_view(state: State | Projector) -> dict[str, Any]:
    """``extraction_checkpoint.json`` in the seed's format."""
    videos = state.videos.values()
    running = [v.video_id for v in videos if v.status is Status.RUNNING]
    return {
        "completed_videos": [v.video_id for v in videos if v.status is Status.COMPLETED],
        "failed_videos": [
            {"id": v.video_id, "error": v.error or "", "timestamp": v.failed_at or ""}
            for v in videos
            if v.status is Status.FAILED
        ],
        "current_video": running[0] if running else None,
        "started_at": state.created_at or "",
        "last_updated": state.last_ts or "",
    }


def progress_view(state: State | Projector, elapsed: float) -> dict[str, Any]:
    """``extraction_progress.json`` in the seed's format."""
    t = state.totals
    return {
        "total_videos": len(state.videos),
        "processed_videos": sum(1 for v in state.videos.values() if v.status is Status.COMPLETED),
        "total_frames": int(t.get("frames", 0)),
        "total_detections": int(t.get("nko_detections", 0)),
        "total_audio_segments": int(t.get("audio_segments", 0)),
        "total_nko_frames": int(t.get("nko_frames", 0)),
        "elapsed_seconds": round(elapsed, 3),
    }


def status_doc(
    state: State | Projector,
    now: datetime,
    daemon_pid: int | None,
    activity: dict[str, Any] | None = None,
    session_seconds: float | None = None,
    available: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``nkoctl status --json`` prints. `activity` is the daemon's live progress, when known;
    `session_seconds` its session's length now (see `live_session_seconds`). `available`: the entries
    videos may run from, when known: videos without one are *removed* (not counted, never started), and a
    completed video whose entry changed is listed in `changed`. Skipped videos are not remaining either."""
    by: dict[Status, list[str]] = {s: [] for s in Status}
    failed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    removed: list[str] = []
    changed: list[str] = []
    waiting = 0
    for v in state.videos.values():
        if available is not None and steering.is_removed(v, available):
            removed.append(v.video_id)
            continue
        if v.skipped and v.status in (Status.PENDING, Status.INTERRUPTED):
            skipped.append({"id": v.video_id, "reason": v.skip_reason or "", "status": v.status.value})
            continue
        if available is not None and steering.changed_since_completed(v, available):
            changed.append(v.video_id)
        by[v.status].append(v.video_id)
        if v.status is Status.FAILED:
            failed.append(
                {
                    "id": v.video_id,
                    "error": v.error or "",
                    "timestamp": v.failed_at or "",
                    "attempts": v.failures,
                    "error_kind": v.error_kind or "",
                    "imported": v.imported,
                }
            )
        elif v.status is Status.PENDING and v.not_before is not None:
            waiting += 1
    running = daemon_pid is not None
    elapsed = elapsed_seconds(state, now, running, session_seconds if running else None)
    done = len(by[Status.COMPLETED])
    total = len(state.videos) - len(removed)
    rate = state.completed_by_nkod / (elapsed / 3600) if elapsed > 0 and state.completed_by_nkod else 0.0
    remaining = total - done - len(failed) - len(skipped)
    eta = remaining / rate * 3600 if rate > 0 else None
    t = state.totals
    # A processor reports nko_detection_off=1 for a video it processed with no detector configured.
    off = int(t.get("nko_detection_off", 0))
    detection = "off" if off and off >= state.completed_by_nkod else ("partly off" if off else "on")
    doc: dict[str, Any] = {
        "total": total,
        "completed": done,
        "pending": len(by[Status.PENDING]),
        "waiting_backoff": waiting,
        "running": by[Status.RUNNING],
        "failed": failed,
        "interrupted": by[Status.INTERRUPTED],
        "frames": int(t.get("frames", 0)),
        "nko_detections": int(t.get("nko_detections", 0)),
        "nko_frames": int(t.get("nko_frames", 0)),
        "nko_detection": detection,
        "nko_detection_off_videos": off,
        "audio_segments": int(t.get("audio_segments", 0)),
        "elapsed_seconds": round(elapsed, 1),
        "rate_per_hour": round(rate, 2),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "daemon_running": running,
        "daemon_pid": daemon_pid,
        "seq": state.seq,
        "log_id": state.log_id,
        "started_at": state.created_at,
        "last_event_at": state.last_ts,
        "manifest_problems": list(state.manifest_problems),
        "paused": state.paused,
        "skipped": skipped,
        "removed": removed,
        "changed_since_completed": changed,
    }
    if activity is not None:
        doc["activity"] = activity
    return doc
