"""Derived views of the state (pure): the seed's checkpoint and progress files, and ``status --json``.

The daemon writes the first two atomically under ``checkpoints/`` so tools made for the old
``run_extraction.py`` keep working; nobody reads them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from nkod.state import Projector, State, Status, Video
from nkod.statusview import elapsed_seconds as elapsed_seconds  # (re-exported: callers use views.*)
from nkod.statusview import live_session_seconds as live_session_seconds

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any


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
    """What ``nkoctl status --json`` prints (`nkod.statusview.status_doc`). `activity` is the daemon's live
    progress, when known; `session_seconds` its session's length now (see `live_session_seconds`); `videos`
    the summary of the state's videos when the caller has it (``summary(state.videos.values())`` otherwise)."""
    from nkod import statusview

    v = videos if videos is not None else summary(state.videos.values())
    return statusview.status_doc(state, now, daemon_pid, activity, session_seconds, v)
