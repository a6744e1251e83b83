"""Pure steering decisions: which requests apply to which videos, the run order, and what a manifest
entry's change means. No I/O, no clock: the daemon (and nkoctl, to preview) pass the state and entries in.

Requests: ``pause`` (``now``: stop running videos too), ``resume``, and per video ``skip`` (``reason``),
``unskip``, ``cancel`` (``requeue``), ``prioritize``, ``redo``. Each becomes events (drafts); ids a request
cannot apply to are refused with the reason, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import compress, filterfalse, repeat
from operator import attrgetter, is_

import orjson

from nkod.state import Projector, State, Status, Video

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any

    Draft = dict[str, Any]
else:
    Draft = dict  # the alias at run time (annotations are strings here, never evaluated)

ID_REQUESTS = ("skip", "unskip", "cancel", "prioritize", "redo")
REQUESTS = ("pause", "resume", *ID_REQUESTS)
_EVENT = {"unskip": "video_unskipped", "prioritize": "video_prioritized", "redo": "video_redo_requested"}


def refusal(kind: str, video: Video) -> str | None:
    """Why a `kind` request cannot apply to `video` as it stands; None when it can."""
    status = video.status
    if kind == "skip":
        if status is Status.RUNNING:
            return "running now: `nkoctl cancel` stops it (and skips it)"
        if status is Status.COMPLETED:
            return "completed: nothing left to skip"
        if status is Status.FAILED:
            return "failed: it does not run again unless retried"
        if video.skipped:
            return "already skipped"
    elif kind == "unskip" and not video.skipped:
        return "not skipped"
    elif kind == "cancel" and status is not Status.RUNNING:
        return f"{status.value}, not running: only a running video can be cancelled (`nkoctl skip` for others)"
    elif kind == "prioritize":
        if status is Status.RUNNING:
            return "running now"
        if status is Status.COMPLETED:
            return "completed (`nkoctl redo` runs it again)"
        if status is Status.FAILED:
            return "failed: `nkoctl retry` it first"
        if video.skipped:
            return "skipped: `nkoctl unskip` it first"
    elif kind == "redo" and status is not Status.COMPLETED:
        return f"{status.value}: only a completed video can be redone"
    return None


def request_drafts(
    videos: Mapping[str, Video], kind: str, body: Mapping[str, Any], request: str
) -> tuple[list[Draft], list[tuple[str, str]]]:
    """The events a steering request makes, and the (id, why) it refused. `videos` should include the
    videos the manifest names that the log does not know yet (as pending): see `with_entries`."""
    if kind == "pause":
        return [{"type": "queue_paused", "now": body.get("now") is True, "request": request}], []
    if kind == "resume":
        return [{"type": "queue_resumed", "request": request}], []
    ids = body.get("video_ids")
    drafts: list[Draft] = []
    refused: list[tuple[str, str]] = []
    for vid in dict.fromkeys(ids if isinstance(ids, list) else ()):
        v = videos.get(vid)
        why = "unknown video" if v is None else refusal(kind, v)
        if why is not None:
            refused.append((vid, why))
            continue
        if kind == "skip":
            reason = body.get("reason")
            drafts.append({"type": "video_skipped", "video_id": vid, "reason": reason or "skipped", "request": request})
        elif kind == "cancel":
            requeue = body.get("requeue") is True
            drafts.append({"type": "video_cancel_requested", "video_id": vid, "requeue": requeue, "request": request})
            if not requeue:
                reason = body.get("reason")
                drafts.append(
                    {"type": "video_skipped", "video_id": vid, "reason": reason or "cancelled", "request": request}
                )
        else:
            drafts.append({"type": _EVENT[kind], "video_id": vid, "request": request})
    return drafts, refused


def with_entries(videos: Mapping[str, Video], available: Mapping[str, Any]) -> dict[str, Video]:
    """`videos` plus a pending Video for each available entry the log does not know yet."""
    out = dict(videos)
    for vid in available:
        if vid not in out:
            out[vid] = Video(video_id=vid)
    return out


# -- run order ------------------------------------------------------------------------------------

_video_id_of = attrgetter("video_id")
_skipped_of = attrgetter("skipped")
_status_of = attrgetter("status")


def entry_priority(entry: Mapping[str, Any]) -> int:
    """A manifest line's (or a source's) ``priority``: an int, higher first; anything else is 0."""
    p = entry.get("priority") if isinstance(entry, Mapping) else None
    return p if isinstance(p, int) and not isinstance(p, bool) else 0


def entry_priorities(entries: Mapping[str, Mapping[str, Any]]) -> Mapping[str, int]:
    """The entries with a non-zero priority, in the entries' order. The manifest's entries keep theirs
    (taken when each line was read), so this does not parse every line again."""
    known = getattr(entries, "priorities", None)
    if isinstance(known, dict):
        return known
    return {vid: p for vid, e in entries.items() if (p := entry_priority(e))}


def run_order(
    projector: Projector, available: Mapping[str, Any] | AbstractSet[str], priorities: Mapping[str, int]
) -> Iterator[str]:
    """Videos that may run, in the order they run: interrupted first; then prioritized ones (nkoctl
    prioritize) in the order they were prioritized; then by entry priority, higher first (ties in entry
    order); then in the order they became known. Skipped videos and ids without an entry never appear.
    Lazy: the caller stops when it has enough (backoff is the caller's to judge)."""
    return map(_video_id_of, run_order_videos(projector, available, priorities))


def run_order_videos(
    projector: Projector, available: Mapping[str, Any] | AbstractSet[str] | None, priorities: Mapping[str, int]
) -> Iterator[Video]:
    """`run_order`'s videos themselves (plan looks at each: no second lookup by id for a million).

    `available` None: every video the projector knows has an entry (the caller checked: a million
    lookups by id fewer), and all of the order is wanted (plan: the queue's part is then made whole)."""
    videos = projector.videos
    if available is None:
        available = videos.keys()
        every = True
    else:
        every = False
    for vid in projector.redo:
        redo = videos[vid]
        if vid in available and not redo.skipped:
            yield redo
    seen: set[str] = set()
    for vid in projector.boosted:
        v = videos.get(vid)
        if v is not None and v.status is Status.PENDING and not v.skipped and vid in available:
            seen.add(vid)
            yield v
    ranked = sorted(priorities, key=lambda i: -priorities[i])  # stable: ties keep the entries' order
    for vid in ranked:
        if priorities[vid] < 0:
            break
        v = videos.get(vid)
        if v is not None and v.status is Status.PENDING and not v.skipped and vid not in seen and vid in available:
            seen.add(vid)
            yield v
    if priorities or seen:
        for vid in projector.queue:
            if vid in available and vid not in priorities and vid not in seen:
                queued = videos[vid]
                if not queued.skipped:
                    yield queued
    else:  # the common case, and a million-video queue: the same filter in C-level passes (still lazy)
        listed = (
            _queue_videos(projector)
            if every
            else map(videos.__getitem__, filter(available.__contains__, projector.queue))
        )
        yield from filterfalse(_skipped_of, listed)
    for vid in ranked:
        if priorities[vid] >= 0:
            continue
        v = videos.get(vid)
        if v is not None and v.status is Status.PENDING and not v.skipped and vid not in seen and vid in available:
            yield v


def _queue_videos(projector: Projector) -> Iterable[Video]:
    """The queue's videos, in its order. When the queue is the pending videos in the videos' own order (a
    big manifest added and not yet started), they are taken in passes over the videos in memory order: a
    lookup of each of a million ids by hash lands on a cold cache line each time (~2x slower)."""
    videos, queue = projector.videos, projector.queue
    pending = list(map(is_, map(_status_of, videos.values()), repeat(Status.PENDING)))
    if list(compress(videos, pending)) == list(queue):
        return list(compress(videos.values(), pending))
    return map(videos.__getitem__, queue)


# -- manifest entries that changed or went away ------------------------------------------------------


def entry_fingerprint(entry: Mapping[str, Any]) -> str:
    """What identifies the work an entry asks for (its priority aside): a short hash of its JSON."""
    body = {k: v for k, v in entry.items() if k != "priority"}
    try:
        data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        data = repr(sorted(body.items(), key=lambda kv: kv[0])).encode()
    import hashlib  # (not at import time: nkoctl status never needs it, and it costs ~8 ms)

    return hashlib.sha256(data).hexdigest()[:16]


def is_removed(video: Video, available: Mapping[str, Any] | set[str]) -> bool:
    """Known to the log but no entry any more: not started, not counted (completed work stays counted)."""
    return video.video_id not in available and video.status not in (Status.COMPLETED, Status.RUNNING)


def changed_since_completed(video: Video, available: Mapping[str, Any]) -> bool:
    """A completed video whose entry differs from the one it was completed with (`nkoctl redo` to apply)."""
    if video.status is not Status.COMPLETED or video.entry_hash is None:
        return False
    entry = available.get(video.video_id)
    return entry is not None and entry_fingerprint(entry) != video.entry_hash


def compare_drafts(videos: Mapping[str, Video], available: Mapping[str, Any], ids: Iterable[str]) -> list[Draft]:
    """A ``manifest_compared`` event for what changed among `ids` since the last comparison: videos whose
    entry went away or came back, completed ones whose entry changed or changed back. None when nothing did."""
    found: dict[str, list[str]] = {"removed": [], "restored": [], "changed": [], "unchanged": []}
    for vid in ids:
        v = videos.get(vid)
        if v is None:
            continue
        gone = vid not in available
        if gone != v.removed:
            found["removed" if gone else "restored"].append(vid)
        if not gone and v.status is Status.COMPLETED and v.entry_hash is not None:
            changed = entry_fingerprint(available[vid]) != v.entry_hash
            if changed != v.entry_changed:
                found["changed" if changed else "unchanged"].append(vid)
    if not any(found.values()):
        return []
    return [{"type": "manifest_compared", **{k: ids_ for k, ids_ in found.items() if ids_}}]


def preview(state: State | Projector, drafts: Sequence[Draft], ts: str) -> Projector:
    """The state as it would be after `drafts` (queued requests not applied yet), for status and plan."""
    p = Projector(state.state() if isinstance(state, Projector) else state)
    seq = p.seq
    for d in drafts:
        seq += 1
        p.apply({"v": 1, "seq": seq, "ts": ts, **d})
    return p
