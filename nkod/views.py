"""Derived views of the state (pure): the seed's checkpoint and progress files, and ``status --json``.

The daemon writes the first two atomically under ``checkpoints/`` so tools made for the old
``run_extraction.py`` keep working; nobody reads them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from nkod.state import Projector, State, Status, Video, try_parse_ts

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any


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


STATUS_VALUES = tuple(s.value for s in Status)


def failed_entry(v: Video) -> dict[str, Any]:
    """A failed video as ``status --json`` lists it."""
    return {
        "id": v.video_id,
        "error": v.error or "",
        "timestamp": v.failed_at or "",
        "attempts": v.failures,
        "error_kind": v.error_kind or "",
        "imported": v.imported,
    }


def summary(videos: Iterable[Video]) -> dict[str, Any]:
    """What status shows of the videos, without the videos: how many are in each status, which run and
    which were interrupted, the failed ones' entries, how many wait out a backoff (lists in video order).
    The snapshot keeps it, so status need not rebuild every video of a long run (see `summary_after`)."""
    out: dict[str, Any] = {
        "counts": dict.fromkeys(STATUS_VALUES, 0),
        "running": [],
        "interrupted": [],
        "failed": [],
        "waiting": 0,
        "skipped": [],
        "removed": [],
        "changed": [],
    }
    for v in videos:
        _add(out, v)
    return out


def _apart(v: Video) -> str | None:
    """Where status lists `v` apart from the counts: "removed" (its entry went away: never started, not
    counted), "skipped" (nkoctl skip: never started, not remaining); None: counted by its status."""
    if v.removed and v.status is not Status.COMPLETED and v.status is not Status.RUNNING:
        return "removed"
    if v.skipped and (v.status is Status.PENDING or v.status is Status.INTERRUPTED):
        return "skipped"
    return None


def skipped_entry(v: Video) -> dict[str, Any]:
    """A skipped video as ``status --json`` lists it."""
    return {"id": v.video_id, "reason": v.skip_reason or "", "status": v.status.value}


def _add(out: dict[str, Any], v: Video) -> None:
    apart = _apart(v)
    if apart == "removed":
        out["removed"].append(v.video_id)
        return
    if apart == "skipped":
        out["skipped"].append(skipped_entry(v))
        return
    status = v.status
    if status is Status.COMPLETED and v.entry_changed:
        out["changed"].append(v.video_id)
    out["counts"][status.value] += 1
    if status is Status.RUNNING:
        out["running"].append(v.video_id)
    elif status is Status.INTERRUPTED:
        out["interrupted"].append(v.video_id)
    elif status is Status.FAILED:
        out["failed"].append(failed_entry(v))
    elif status is Status.PENDING and v.not_before is not None:
        out["waiting"] += 1


def summary_after(
    base: Mapping[str, Any],
    before: Mapping[str, Video],
    after: Mapping[str, Video],
    position: Callable[[str], int],
) -> dict[str, Any]:
    """`base` (the summary of some videos) once the videos in `before` became those in `after` (the same
    ids, and new ones). `position` orders ids as the full state does. Equals ``summary`` of the new state."""
    out: dict[str, Any] = {"counts": dict(base["counts"]), "waiting": base["waiting"]}
    for v in before.values():
        if _apart(v) is not None:  # not in the counts
            continue
        out["counts"][v.status.value] -= 1
        if v.status is Status.PENDING and v.not_before is not None:
            out["waiting"] -= 1
    changed = before.keys() | after.keys()
    out["running"] = [vid for vid in base["running"] if vid not in changed]
    out["interrupted"] = [vid for vid in base["interrupted"] if vid not in changed]
    out["failed"] = [f for f in base["failed"] if f["id"] not in changed]
    # (a summary from before steering has none of these: none of its videos were skipped or removed)
    out["skipped"] = [f for f in base.get("skipped", ()) if f["id"] not in changed]
    out["removed"] = [vid for vid in base.get("removed", ()) if vid not in changed]
    out["changed"] = [vid for vid in base.get("changed", ()) if vid not in changed]
    for v in after.values():
        _add(out, v)
    if changed:
        for key in ("running", "interrupted", "removed", "changed"):
            out[key].sort(key=position)
        out["failed"].sort(key=lambda f: position(f["id"]))
        out["skipped"].sort(key=lambda f: position(f["id"]))
    return out


def status_doc(
    state: State | Projector,
    now: datetime,
    daemon_pid: int | None,
    activity: dict[str, Any] | None = None,
    session_seconds: float | None = None,
    videos: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``nkoctl status --json`` prints. `activity` is the daemon's live progress, when known;
    `session_seconds` its session's length now (see `live_session_seconds`); `videos` the summary of the
    state's videos when the caller has it (``summary(state.videos.values())`` otherwise)."""
    v = videos if videos is not None else summary(state.videos.values())
    counts = v["counts"]
    failed = v["failed"]
    running = daemon_pid is not None
    elapsed = elapsed_seconds(state, now, running, session_seconds if running else None)
    done = counts[Status.COMPLETED.value]
    skipped = list(v.get("skipped", ()))
    total = sum(counts.values()) + len(skipped)  # removed videos leave the totals; skipped ones stay, not remaining
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
        "pending": counts[Status.PENDING.value],
        "waiting_backoff": v["waiting"],
        "running": list(v["running"]),
        "failed": list(failed),
        "interrupted": list(v["interrupted"]),
        "frames": int(t.get("frames", 0)),
        "nko_detections": int(t.get("nko_detections", 0)),
        "nko_frames": int(t.get("nko_frames", 0)),
        "nko_detection": detection,
        "nko_detection_off_videos": off,
        # What detection cost (vision-api) and saved (its local pre-filter), summed over the videos.
        "detector_calls": int(t.get("detector_calls", 0)),
        "detector_cost_usd": round(float(t.get("detector_cost_usd", 0.0)), 6),
        "prefilter_frames_sent": int(t.get("prefilter_frames_sent", 0)),
        "prefilter_frames_skipped": int(t.get("prefilter_frames_skipped", 0)),
        "prefilter_saved_usd": round(float(t.get("prefilter_saved_usd", 0.0)), 6),
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
        "removed": list(v.get("removed", ())),
        "changed_since_completed": list(v.get("changed", ())),
        "pending_requests": [],  # nkoctl fills it from requests/ (see CtlBase.with_queued_requests)
    }
    if activity is not None:
        doc["activity"] = activity
    return doc
