"""Pure decisions: what to append after a replay, after a worker ends, and what to run next.

Every function here takes the state and facts gathered by the shell (the time, what is on disk, what
a worker said) and returns *drafts*: events without ``v``/``seq``/``ts``, which the log writer stamps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nkod.state import Projector, State, Status, Video, parse_ts, try_parse_ts
from nkod.state import format_ts as iso

Draft = dict[str, Any]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_initial: float = 30.0
    backoff_factor: float = 2.0
    backoff_max: float = 900.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `failures`-th transient failure (1-based)."""
        base = self.backoff_initial * self.backoff_factor ** max(0, failures - 1)
        delay = min(self.backoff_max, base)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay


@dataclass(frozen=True)
class Committed:
    """An output directory found committed on disk: its summary names the start that made it."""

    started_seq: int
    counts: Mapping[str, float]


@dataclass(frozen=True)
class Outcome:
    """How a worker ended, as the shell saw it."""

    ok: bool
    counts: Mapping[str, float] | None = None
    kind: str = "permanent"  # transient | permanent
    error: str = ""
    retry_after: float | None = None


def recover(state: State | Projector, committed: Mapping[str, Committed]) -> list[Draft]:
    """After replay: each video that was running when the last daemon died is settled.

    If its output was committed (renamed into place) by that very start, the completion is recorded
    (the crash fell between the rename and the append); otherwise it is interrupted and runs first.
    """
    drafts: list[Draft] = []
    for video in state.videos.values():
        if video.status is not Status.RUNNING:
            continue
        found = committed.get(video.video_id)
        if found is not None and found.started_seq == video.started_seq:
            drafts.append(
                {
                    "type": "video_completed",
                    "video_id": video.video_id,
                    "attempt": video.attempt,
                    "counts": dict(found.counts),
                    "recovered": True,
                }
            )
        else:
            drafts.append(
                {
                    "type": "video_interrupted",
                    "video_id": video.video_id,
                    "attempt": video.attempt,
                    "reason": "daemon stopped while it ran (crash, kill -9 or power loss)",
                }
            )
    return drafts


def start_draft(video: Video) -> Draft:
    return {"type": "video_started", "video_id": video.video_id, "attempt": video.failures + 1}


def outcome_drafts(video: Video, outcome: Outcome, policy: RetryPolicy, now: datetime) -> list[Draft]:
    """The event that records how a run of `video` ended."""
    vid = video.video_id
    if outcome.ok:
        return [
            {
                "type": "video_completed",
                "video_id": vid,
                "attempt": video.attempt,
                "counts": dict(outcome.counts or {}),
            }
        ]
    attempt = video.attempt
    if outcome.kind == "transient" and attempt < policy.max_attempts:
        delay = policy.delay(attempt, outcome.retry_after)
        return [
            {
                "type": "video_retry_scheduled",
                "video_id": vid,
                "attempt": attempt,
                "error": outcome.error,
                "error_kind": "transient",
                "not_before": iso(now + timedelta(seconds=delay)),
                "delay_seconds": round(delay, 3),
            }
        ]
    error = outcome.error
    if outcome.kind == "transient":
        error = f"{error} (gave up after {attempt} attempts)"
    return [
        {
            "type": "video_failed",
            "video_id": vid,
            "attempt": attempt,
            "error": error,
            "error_kind": outcome.kind,
        }
    ]


def interrupted_draft(video: Video, reason: str) -> Draft:
    return {
        "type": "video_interrupted",
        "video_id": video.video_id,
        "attempt": video.attempt,
        "reason": reason,
    }


def is_due(video: Video, now: datetime) -> bool:
    """Has the backoff's `not_before` passed on the wall clock? (See `retry_wait` for a clock that stepped back.)
    An odd timestamp in the log does not hold a video back."""
    if video.not_before is None:
        return True
    when = try_parse_ts(video.not_before)
    return when is None or when <= now


def retry_wait(video: Video, now: datetime, max_wait: float = math.inf) -> float:
    """Seconds `video` must still wait out its backoff, judged at `now`: what is left until `not_before`,
    but never more than the delay it was scheduled with, nor `max_wait` (the policy's backoff_max).

    More than that left means the wall clock stepped back since the retry was scheduled (or the clock that
    wrote it ran fast): the wait is then the whole delay again, from now, instead of the step's length.
    """
    if video.not_before is None:
        return 0.0
    when = try_parse_ts(video.not_before)
    if when is None:
        return 0.0
    left = (when - now).total_seconds()
    bound = max_wait if video.retry_delay is None else min(video.retry_delay, max_wait)
    return max(0.0, min(left, bound))


def next_runnable(
    projector: Projector,
    available: Mapping[str, Any],
    now: datetime,
    limit: int,
    due: Callable[[Video], bool] | None = None,
) -> list[str]:
    """Up to `limit` ids to start now: interrupted first, then pending in the order they became runnable.

    `available` holds the ids the manifest currently describes (a video must have a source to run).
    `due` says whether a video waiting out a backoff may start (default: its `not_before` passed at `now`;
    the daemon passes its own, which measures the wait on the monotonic clock, see `retry_wait`).
    Stops at `limit`: the cost is the videos looked at, not the videos known.
    """
    chosen: list[str] = []
    if limit <= 0:
        return chosen
    for vid in projector.redo:
        if vid in available:
            chosen.append(vid)
            if len(chosen) >= limit:
                return chosen
    if due is None:
        due = lambda video: is_due(video, now)  # noqa: E731
    videos = projector.videos
    for vid in projector.queue:
        if vid in available and due(videos[vid]):
            chosen.append(vid)
            if len(chosen) >= limit:
                break
    return chosen


@dataclass(frozen=True)
class PlanRow:
    video_id: str
    action: str  # run | wait | skip
    reason: str
    wait_seconds: float | None = None  # for a wait: the longest it can still last (see `retry_wait`)


def plan(state: State, available: Iterable[str], now: datetime, max_wait: float = math.inf) -> list[PlanRow]:
    """What the daemon would do with every video, in order (`nkoctl plan`, the seed's --dry-run)."""
    in_manifest = set(available)
    runs: list[PlanRow] = []
    interrupted: list[PlanRow] = []
    rest: list[PlanRow] = []
    indexed = Projector(state)
    order = [*indexed.redo, *indexed.queue]
    queued = set(order)
    for vid in order:
        v = state.videos[vid]
        if vid not in in_manifest:
            rest.append(PlanRow(vid, "skip", "not in the manifest (no source to process)"))
        elif (wait := retry_wait(v, now, max_wait)) > 0:
            left = (parse_ts(v.not_before or "") - now).total_seconds()
            until = v.not_before if left <= wait else iso(now + timedelta(seconds=wait))  # else: clock stepped back
            rest.append(
                PlanRow(vid, "wait", f"backoff after attempt {v.attempt} until {until}: {v.error}", round(wait, 3))
            )
        elif v.status is Status.INTERRUPTED:
            interrupted.append(PlanRow(vid, "run", "interrupted: redone first"))
        else:
            runs.append(PlanRow(vid, "run", "pending" if v.failures == 0 else f"retry after {v.failures} failure(s)"))
    for vid, v in state.videos.items():
        if vid in queued:
            continue
        if v.status is Status.COMPLETED:
            rest.append(PlanRow(vid, "skip", "completed" + (" (imported)" if v.imported else "")))
        elif v.status is Status.FAILED:
            rest.append(PlanRow(vid, "skip", f"failed: {v.error} (nkoctl retry {vid})"))
        elif v.status is Status.RUNNING:
            rest.append(PlanRow(vid, "skip", "running now"))
    return interrupted + runs + rest


def retry_drafts(
    state: State | Projector, video_ids: Sequence[str] | None, request: str
) -> tuple[list[Draft], list[str]]:
    """Events for a retry request; with no ids, every failed video. Returns (drafts, ids not retryable)."""
    videos = state.videos
    if video_ids is None:
        targets = [vid for vid, v in videos.items() if v.status is Status.FAILED]
    else:
        targets = list(dict.fromkeys(video_ids))
    drafts: list[Draft] = []
    refused: list[str] = []
    for vid in targets:
        v = videos.get(vid)
        if v is None or v.status in (Status.COMPLETED, Status.RUNNING):
            refused.append(vid)
            continue
        if v.status is Status.PENDING and v.not_before is None:
            refused.append(vid)  # already runnable: nothing to do
            continue
        drafts.append({"type": "retry_requested", "video_id": vid, "request": request})
    return drafts, refused


def available_entries(
    state: State | Projector, manifest_entries: Mapping[str, Mapping[str, Any]]
) -> dict[str, Mapping[str, Any]]:
    """The videos that can run, id → entry: those found by `nkoctl add` and [[sources]] (the log's
    ``videos_discovered``), and the manifest's lines, a manifest line winning for the same id."""
    if not state.discovered:
        return dict(manifest_entries)
    return {**state.discovered, **manifest_entries}
