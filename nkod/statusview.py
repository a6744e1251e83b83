"""What ``nkoctl status --json`` shows (pure), from the state's fields and `views.summary` of its videos.

Apart from `views` so ``nkoctl status``'s fast path (`nkod.statusfast`) can build the document without
importing the state's classes (dataclasses and enum: ~8 ms of a status call): it reads only attributes
(``seq``, ``totals``, ``session``…), which a `State`, a `Projector` and the fast path's plain view all have,
and status values as the strings they are (``Status`` is a StrEnum). `views` re-exports these names.
"""

from __future__ import annotations

from datetime import datetime

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Protocol

    class SessionFields(Protocol):
        @property
        def active_seconds(self) -> float: ...
        @property
        def open_since(self) -> str | None: ...
        @property
        def open_seconds(self) -> float | None: ...

    class StateFields(Protocol):
        """What status reads of a state (State, Projector, or statusfast's view of a snapshot)."""

        @property
        def session(self) -> SessionFields: ...
        @property
        def seq(self) -> int: ...
        @property
        def log_id(self) -> str | None: ...
        @property
        def created_at(self) -> str | None: ...
        @property
        def last_ts(self) -> str | None: ...
        @property
        def totals(self) -> Mapping[str, float]: ...
        @property
        def completed_by_nkod(self) -> int: ...
        @property
        def manifest_problems(self) -> Any: ...
        @property
        def paused(self) -> bool: ...


def try_parse_ts(ts: object) -> datetime | None:
    """`ts` as an aware datetime, or None when it is not a timestamp the log writes (as
    ``nkod.state.try_parse_ts``, which this module must not import)."""
    if not isinstance(ts, str):
        return None
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else None


def elapsed_seconds(
    state: StateFields, now: datetime, daemon_running: bool, session_seconds: float | None = None
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


def status_doc(
    state: StateFields,
    now: datetime,
    daemon_pid: int | None,
    activity: dict[str, Any] | None,
    session_seconds: float | None,
    videos: Mapping[str, Any],
) -> dict[str, Any]:
    """What ``nkoctl status --json`` prints. `activity` is the daemon's live progress, when known;
    `session_seconds` its session's length now (see `live_session_seconds`); `videos` the summary of the
    state's videos (`views.summary`)."""
    v = videos
    counts = v["counts"]
    failed = v["failed"]
    running = daemon_pid is not None
    elapsed = elapsed_seconds(state, now, running, session_seconds if running else None)
    done = counts["completed"]
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
        "pending": counts["pending"],
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
