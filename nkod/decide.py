"""Pure decisions: what to append after a replay, after a worker ends, and what to run next.

Every function here takes the state and facts gathered by the shell (the time, what is on disk, what
a worker said) and returns *drafts*: events without ``v``/``seq``/``ts``, which the log writer stamps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import compress, filterfalse, repeat
from operator import and_, attrgetter, eq, not_
from typing import Any, NamedTuple

from nkod import steering
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


def recover(
    state: State | Projector, committed: Mapping[str, Committed], still_running: Collection[str] = ()
) -> list[Draft]:
    """After replay: each video that was running when the last daemon died is settled.

    If its output was committed (renamed into place) by that very start, the completion is recorded
    (the crash fell between the rename and the append); if the executor still runs that attempt (a
    cluster outlives the daemon: `still_running`), it stays running; otherwise it is interrupted and
    runs first.
    """
    drafts: list[Draft] = []
    for video in state.videos.values():
        if video.status is not Status.RUNNING or video.video_id in still_running:
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


class Available(Mapping[str, Mapping[str, Any]]):
    """The entries videos may run from: the videos found by `nkoctl add` and [[sources]] (the log's
    ``videos_discovered``) and the manifest's lines, a manifest line winning for the same id. A view over
    both: nothing is copied or parsed until asked for (a manifest of a million lines stays its bytes)."""

    def __init__(self, discovered: Mapping[str, Mapping[str, Any]], manifest_entries: Mapping[str, Any]) -> None:
        self._discovered = discovered
        self._manifest = manifest_entries

    def __getitem__(self, vid: str) -> Mapping[str, Any]:
        if vid in self._manifest:
            entry: Mapping[str, Any] = self._manifest[vid]
            return entry
        return self._discovered[vid]

    def __contains__(self, vid: object) -> bool:
        return vid in self._manifest or vid in self._discovered

    def __iter__(self) -> Iterator[str]:
        manifest = self._manifest
        yield from (vid for vid in self._discovered if vid not in manifest)
        yield from manifest

    def __len__(self) -> int:
        return len(self._manifest) + sum(1 for vid in self._discovered if vid not in self._manifest)

    @property
    def priorities(self) -> dict[str, int]:
        """The non-zero priorities of the entries (see `steering.entry_priorities`)."""
        manifest = self._manifest
        out = {
            vid: p for vid, e in self._discovered.items() if vid not in manifest and (p := steering.entry_priority(e))
        }
        out.update(steering.entry_priorities(manifest))
        return out


def available_entries(state: State | Projector, manifest_entries: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """The videos that can run, id → entry: those found by `nkoctl add` and [[sources]] (the log's
    ``videos_discovered``), and the manifest's lines, a manifest line winning for the same id."""
    if not state.discovered:
        return manifest_entries
    return Available(state.discovered, manifest_entries)


def next_runnable(
    projector: Projector,
    available: Mapping[str, Any],
    now: datetime,
    limit: int,
    due: Callable[[Video], bool] | None = None,
    priorities: Mapping[str, int] | None = None,
) -> list[str]:
    """Up to `limit` ids to start now, in `steering.run_order` (interrupted first, then prioritized, then
    by entry priority, then in the order they became runnable); none while the queue is paused.

    `available` holds the entries videos may run from (a video must have a source to run); `priorities`
    the non-zero entry priorities among them (`steering.entry_priorities`; computed here if not given).
    `due` says whether a video waiting out a backoff may start (default: its `not_before` passed at `now`;
    the daemon passes its own, which measures the wait on the monotonic clock, see `retry_wait`).
    Stops at `limit`: the cost is the videos looked at, not the videos known.
    """
    chosen: list[str] = []
    if limit <= 0 or projector.paused:
        return chosen
    if due is None:
        due = lambda video: is_due(video, now)  # noqa: E731
    if priorities is None:
        priorities = steering.entry_priorities(available)
    videos = projector.videos
    for vid in steering.run_order(projector, available, priorities):
        v = videos[vid]
        if v.status is Status.INTERRUPTED or due(v):
            chosen.append(vid)
            if len(chosen) >= limit:
                break
    return chosen


# A video whose plan row is plain "pending": these fields as in _PLAIN_PLAN.
_PLAN_FIELDS = attrgetter("not_before", "status", "failures", "priority_boost", "redo")
_PLAIN_PLAN = (None, Status.PENDING, 0, 0, False)
_VIDEO_ID = attrgetter("video_id")


class PlanRow(NamedTuple):
    """One row of `plan` (a tuple: a million of them are made for a million-line manifest)."""

    video_id: str
    action: str  # run | wait | skip
    reason: str
    wait_seconds: float | None = None  # for a wait: the longest it can still last (see `retry_wait`)


def plan(
    state: State | Projector,
    available: Iterable[str] | Mapping[str, Any],
    now: datetime,
    max_wait: float = math.inf,
    every_video_available: bool = False,
) -> list[PlanRow]:
    """What the daemon would do with every video, in order (`nkoctl plan`, the seed's --dry-run).

    `available`: the entries videos may run from (ids alone will do: then no entry priorities). A
    Projector is only read (its indexes give the order; a State gets them built).
    `every_video_available`: the caller knows each of the state's videos has an entry in `available`
    (then the run order needs no lookup of each id in it)."""
    entries: Mapping[str, Any] = available if isinstance(available, Mapping) else dict.fromkeys(available)
    priorities = steering.entry_priorities(entries)
    indexed = state if isinstance(state, Projector) else Projector(state)
    # A row per video of a million: the common case (no backoff, nothing prioritized) costs a few
    # attribute reads; rows are made as tuples directly (PlanRow's generated __new__ is a Python call).
    row = tuple.__new__
    videos = state.videos
    pending, interrupted = Status.PENDING, Status.INTERRUPTED
    waits: list[PlanRow] = []
    rest: list[PlanRow] = []
    runnable = None if every_video_available else entries.keys()  # keys(): a C-level `in`
    in_order = list(steering.run_order_videos(indexed, runnable, priorities))
    order = list(map(_VIDEO_ID, in_order))
    # Every row is first made as a plain "pending" run, in C-level passes (a million of them); then the
    # videos that wait for something else (a backoff, failures, a boost, a redo, an entry priority) get
    # their own row in their place, or go to the waits.
    plain = map(eq, map(_PLAN_FIELDS, in_order), repeat(_PLAIN_PLAN))
    if priorities:  # an entry priority is said in the reason
        plain = map(and_, plain, map(not_, map(priorities.__contains__, order)))
    others = list(compress(range(len(order)), map(not_, plain)))
    runs = list(map(row, repeat(PlanRow), zip(order, repeat("run"), repeat("pending"), repeat(None))))
    waiting: list[int] = []
    for i in others:
        vid, v = order[i], in_order[i]
        if v.not_before is not None and (wait := retry_wait(v, now, max_wait)) > 0 and v.status is pending:
            left = (parse_ts(v.not_before or "") - now).total_seconds()
            until = v.not_before if left <= wait else iso(now + timedelta(seconds=wait))  # else: clock stepped back
            why = f"backoff after attempt {v.attempt} until {until}: {v.error}"
            waits.append(row(PlanRow, (vid, "wait", why, round(wait, 3))))
            waiting.append(i)
            continue
        if v.status is interrupted:
            reason = "interrupted: redone first"
        else:
            reason = "pending" if v.failures == 0 else f"retry after {v.failures} failure(s)"
            if v.priority_boost:
                reason += ", prioritized (nkoctl prioritize)"
            elif priorities and priorities.get(vid):
                reason += f", priority {priorities[vid]}"
        if v.redo:
            reason += "; redo: the previous output is archived when this one is committed"
        runs[i] = row(PlanRow, (vid, "run", reason, None))
    if waiting:
        keep = [True] * len(runs)
        for i in waiting:
            keep[i] = False
        runs = list(compress(runs, keep))
    # The videos not in the run order (skipped, removed, completed, failed, running): none when every
    # video is in it (a big manifest not yet started), else those not placed (C-level).
    # (The run order names each video at most once: when it names as many as there are, it names all.)
    unplaced = filterfalse(set(order).__contains__, videos) if len(order) < len(videos) else ()
    for vid in unplaced:
        v = videos[vid]
        if v.status in (Status.PENDING, Status.INTERRUPTED):
            if v.skipped:
                why = f"skipped: {v.skip_reason}" if v.skip_reason else "skipped"
                rest.append(PlanRow(vid, "skip", f"{why} (nkoctl unskip {vid})"))
            else:
                rest.append(PlanRow(vid, "skip", "removed: not in the manifest any more (runs if its line returns)"))
        elif v.status is Status.COMPLETED:
            reason = "completed" + (" (imported)" if v.imported else "")
            if steering.changed_since_completed(v, entries):
                reason += f"; changed since completed: nkoctl redo {vid}"
            rest.append(PlanRow(vid, "skip", reason))
        elif v.status is Status.FAILED:
            rest.append(PlanRow(vid, "skip", f"failed: {v.error} (nkoctl retry {vid})"))
        elif v.status is Status.RUNNING:
            rest.append(PlanRow(vid, "skip", "running now"))
    return runs + waits + rest


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
