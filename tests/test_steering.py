"""Steering's pure core (nkod.steering, the fold's steering events, the run order) and its golden log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkod import decide, eventlog, snapshot, spool, steering, views
from nkod.errors import RequestError
from nkod.state import Projector, Status, Video, fold
from tests.strategies import IDS, stamp, steering_events

GOLDEN = Path(__file__).parent / "data" / "steering-v1"
NOW = datetime(2026, 1, 2, tzinfo=UTC)


def state(*drafts: dict[str, Any]) -> Projector:
    p = Projector()
    p.apply_all(stamp([{"type": "log_created", "log_id": "x"}, *drafts]))
    return p


def more(p: Projector, *drafts: dict[str, Any]) -> None:
    """Apply further events to `p`, numbered after its last."""
    for d in drafts:
        p.apply({"v": 1, "seq": p.seq + 1, "ts": "2026-01-01T01:00:00.000000Z", **d})


def started(vid: str) -> dict[str, Any]:
    return {"type": "video_started", "video_id": vid, "attempt": 1}


def completed(vid: str, frames: int = 3) -> dict[str, Any]:
    return {"type": "video_completed", "video_id": vid, "attempt": 1, "counts": {"frames": frames}}


# -- which request applies to which video --------------------------------------------------------

RUNNING, DONE, FAILED = Status.RUNNING, Status.COMPLETED, Status.FAILED
PENDING, INTERRUPTED = Status.PENDING, Status.INTERRUPTED


@pytest.mark.parametrize(
    ("kind", "status", "skipped", "refused"),
    [
        ("skip", PENDING, False, None),
        ("skip", INTERRUPTED, False, None),
        ("skip", RUNNING, False, "nkoctl cancel"),
        ("skip", DONE, False, "completed"),
        ("skip", FAILED, False, "failed"),
        ("skip", PENDING, True, "already skipped"),
        ("unskip", PENDING, True, None),
        ("unskip", PENDING, False, "not skipped"),
        ("cancel", RUNNING, False, None),
        ("cancel", PENDING, False, "not running"),
        ("cancel", DONE, False, "not running"),
        ("prioritize", PENDING, False, None),
        ("prioritize", INTERRUPTED, False, None),
        ("prioritize", RUNNING, False, "running"),
        ("prioritize", DONE, False, "nkoctl redo"),
        ("prioritize", FAILED, False, "nkoctl retry"),
        ("prioritize", PENDING, True, "nkoctl unskip"),
        ("redo", DONE, False, None),
        ("redo", PENDING, False, "pending: only a completed video"),
        ("redo", RUNNING, False, "running: only a completed video"),
        ("redo", FAILED, False, "failed: only a completed video"),
    ],
)
def test_which_requests_apply_to_which_videos(kind: str, status: Status, skipped: bool, refused: str | None) -> None:
    """A request applies to a video in some states only; otherwise the refusal says why (and what to do)."""
    why = steering.refusal(kind, Video("a", status=status, skipped=skipped))
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why


def test_request_drafts_refuse_unknown_ids_and_apply_the_rest() -> None:
    """Unknown ids are refused by name; the others become one event each, naming the request file."""
    videos = {"a": Video("a"), "b": Video("b", status=Status.COMPLETED)}
    drafts, refused = steering.request_drafts(videos, "skip", {"video_ids": ["a", "zz", "a"], "reason": "x"}, "r")
    assert drafts == [{"type": "video_skipped", "video_id": "a", "reason": "x", "request": "r"}]
    assert refused == [("zz", "unknown video")]
    drafts, refused = steering.request_drafts(videos, "redo", {"video_ids": ["b"]}, "r")
    assert drafts == [{"type": "video_redo_requested", "video_id": "b", "request": "r"}] and refused == []


def test_cancel_skips_unless_requeued() -> None:
    """cancel records the request and skips the video; with requeue it only records the request."""
    videos = {"a": Video("a", status=Status.RUNNING)}
    drafts, _ = steering.request_drafts(videos, "cancel", {"video_ids": ["a"]}, "r")
    assert [d["type"] for d in drafts] == ["video_cancel_requested", "video_skipped"]
    drafts, _ = steering.request_drafts(videos, "cancel", {"video_ids": ["a"], "requeue": True}, "r")
    assert [d["type"] for d in drafts] == ["video_cancel_requested"] and drafts[0]["requeue"] is True


def test_pause_and_resume_drafts() -> None:
    """pause carries `now`; resume is one event; neither refuses anything."""
    assert steering.request_drafts({}, "pause", {"now": True}, "r") == (
        [{"type": "queue_paused", "now": True, "request": "r"}],
        [],
    )
    assert steering.request_drafts({}, "resume", {}, "r") == ([{"type": "queue_resumed", "request": "r"}], [])


def test_a_steering_request_file_is_checked() -> None:
    """A steering request naming an unsafe id, no ids, or a non-text reason is refused naming the file."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spool_dir = Path(tmp) / "requests"
        for body, needle in (
            ({"video_ids": ["../x"]}, "video_ids"),
            ({"video_ids": []}, "empty"),
            ({"video_ids": ["a"], "reason": 5}, "reason"),
        ):
            path = spool.submit(spool_dir, "skip", **body)
            with pytest.raises(RequestError, match=needle) as err:
                spool.parse(path)
            assert str(path) in str(err.value)
        ok = spool.parse(spool.submit(spool_dir, "pause", now=True))
        assert ok.type == "pause"


# -- the fold ------------------------------------------------------------------------------------


def test_pause_and_resume_fold_into_paused() -> None:
    """queue_paused sets paused; queue_resumed clears it; a snapshot keeps it."""
    p = state({"type": "queue_paused", "now": False})
    assert p.paused and p.state().paused
    assert snapshot.state_from_doc(snapshot.state_to_doc(p)).paused
    assert not state({"type": "queue_paused"}, {"type": "queue_resumed"}).paused


def test_redo_takes_a_completed_video_back_to_pending_until_it_completes_again() -> None:
    """redo: completed → pending (its counts leave the totals) with the redo flag; the next completion
    clears it and counts the new figures."""
    p = state({"type": "videos_added", "video_ids": ["a"]}, started("a"), completed("a", 3))
    assert p.totals["frames"] == 3
    more(p, {"type": "video_redo_requested", "video_id": "a"})
    v = p.videos["a"]
    assert v.status is Status.PENDING and v.redo and p.totals["frames"] == 0
    p2 = state(
        {"type": "videos_added", "video_ids": ["a"]},
        started("a"),
        completed("a", 3),
        {"type": "video_redo_requested", "video_id": "a"},
        started("a"),
        completed("a", 5),
    )
    assert p2.videos["a"].status is Status.COMPLETED and not p2.videos["a"].redo and p2.totals["frames"] == 5


def test_a_prioritized_video_loses_its_boost_when_it_starts() -> None:
    """A boost is spent by the start it asked for."""
    p = state({"type": "videos_added", "video_ids": ["a"]}, {"type": "video_prioritized", "video_id": "a"})
    assert p.videos["a"].priority_boost == 3 and list(p.boosted) == ["a"]
    p = state(
        {"type": "videos_added", "video_ids": ["a"]}, {"type": "video_prioritized", "video_id": "a"}, started("a")
    )
    assert p.videos["a"].priority_boost == 0 and list(p.boosted) == []


def test_the_steering_golden_log_replays_forever() -> None:
    """A checked-in log with every steering event (and odd values in them) replays to its recorded state;
    a snapshot of it round-trips."""
    log, result = eventlog.read_all(GOLDEN / "events.jsonl")
    assert result.torn is None
    whole = fold(log)
    doc = snapshot.state_to_doc(whole)
    doc["offset"] = result.end_offset
    assert doc == orjson.loads((GOLDEN / "state.json").read_bytes())
    types = {e["type"] for e in log}
    assert types >= {
        "queue_paused",
        "queue_resumed",
        "video_skipped",
        "video_unskipped",
        "video_prioritized",
        "video_redo_requested",
        "video_cancel_requested",
        "manifest_compared",
    }
    for cut in range(len(log) + 1):
        restored = snapshot.state_from_doc(orjson.loads(orjson.dumps(snapshot.state_to_doc(fold(log[:cut])))))
        assert fold(log[cut:], restored) == whole


@given(steering_events, st.data())
def test_snapshot_plus_tail_keeps_the_run_order(log: list[dict[str, Any]], data: st.DataObject) -> None:
    """A projector rebuilt from a snapshot midway and the tail runs videos in the same order as the live one."""
    cut = data.draw(st.integers(0, len(log)))
    live = Projector()
    live.apply_all(log)
    rebuilt = Projector(snapshot.state_from_doc(snapshot.state_to_doc(fold(log[:cut]))))
    rebuilt.apply_all(log[cut:])
    available = dict.fromkeys(IDS)
    assert list(steering.run_order(live, available, {})) == list(steering.run_order(rebuilt, available, {}))
    assert live.paused == rebuilt.paused


# -- the run order ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    steering_events,
    st.sets(st.sampled_from(IDS)),
    st.dictionaries(st.sampled_from(IDS), st.integers(-3, 3).filter(bool), max_size=4),
)
def test_run_order_properties(log: list[dict[str, Any]], gone: set[str], priorities: dict[str, int]) -> None:
    """The run order holds each runnable video once (waiting or interrupted, not skipped, with an entry),
    and nothing else; interrupted first; then prioritized in the order asked; then by entry priority,
    higher first; ties in the order they became runnable."""
    p = Projector()
    p.apply_all(log)
    available = {vid: {"priority": priorities.get(vid, 0)} for vid in IDS if vid not in gone}
    prio = {vid: n for vid, n in steering.entry_priorities(available).items()}
    order = list(steering.run_order(p, available, prio))
    assert len(order) == len(set(order))
    runnable = {
        vid
        for vid, v in p.videos.items()
        if v.status in (Status.PENDING, Status.INTERRUPTED) and not v.skipped and vid in available
    }
    assert set(order) == runnable
    redo, queue, ranked = list(p.redo), list(p.queue), list(prio)
    ranks: list[tuple[int, ...]] = []
    for vid in order:
        v = p.videos[vid]
        if v.status is Status.INTERRUPTED:
            ranks.append((0, redo.index(vid)))
        elif v.priority_boost:
            ranks.append((1, v.priority_boost))
        elif prio.get(vid):
            ranks.append((2, -prio[vid], ranked.index(vid)))
        else:
            ranks.append((2, 0, queue.index(vid)))
    assert ranks == sorted(ranks)


def test_next_runnable_starts_nothing_while_paused() -> None:
    """Paused: next_runnable returns nothing, whatever waits."""
    p = state({"type": "videos_added", "video_ids": ["a", "b"]}, {"type": "queue_paused", "now": False})
    assert decide.next_runnable(p, dict.fromkeys("ab"), NOW, 5) == []
    more(p, {"type": "queue_resumed"})
    assert decide.next_runnable(p, dict.fromkeys("ab"), NOW, 5) == ["a", "b"]


def test_next_runnable_order_table() -> None:
    """Interrupted, then prioritized (in the order asked), then entry priority, then manifest order;
    skipped and removed never."""
    p = state(
        {"type": "videos_added", "video_ids": ["a", "b", "c", "d", "e", "f", "g"]},
        started("g"),
        {"type": "video_interrupted", "video_id": "g", "reason": "x"},
        {"type": "video_prioritized", "video_id": "e"},
        {"type": "video_prioritized", "video_id": "d"},
        {"type": "video_skipped", "video_id": "b"},
    )
    entries = {"a": {}, "b": {}, "c": {"priority": 2}, "d": {}, "e": {}, "g": {}}  # f: removed
    assert decide.next_runnable(p, entries, NOW, 10) == ["g", "e", "d", "c", "a"]


# -- removed and changed entries, status -------------------------------------------------------------


def test_fingerprint_ignores_priority_and_key_order() -> None:
    """The same work asked twice has one fingerprint; a changed value changes it; priority does not."""
    fp = steering.entry_fingerprint
    assert fp({"video_id": "a", "url": "u", "priority": 3}) == fp({"url": "u", "video_id": "a"})
    assert fp({"video_id": "a", "url": "u"}) != fp({"video_id": "a", "url": "v"})


def test_status_leaves_removed_and_skipped_videos_out_of_the_totals() -> None:
    """status: a removed video leaves the total, a skipped one the remaining count; a completed one whose
    entry changed is listed; paused is said (all from the log: the daemon's manifest_compared)."""
    entry = {"video_id": "a", "path": "x"}
    events: list[dict[str, Any]] = [
        {"type": "videos_added", "video_ids": ["a", "b", "c", "d"]},
        {"type": "video_started", "video_id": "a", "attempt": 1, "entry_hash": steering.entry_fingerprint(entry)},
        completed("a"),
        {"type": "video_skipped", "video_id": "c", "reason": "later"},
        {"type": "queue_paused"},
    ]
    available = {"a": {**entry, "path": "y"}, "c": {}, "d": {}}
    p = state(*events)
    compared = steering.compare_drafts(p.videos, available, p.videos)
    assert compared == [{"type": "manifest_compared", "removed": ["b"], "changed": ["a"]}]
    p = state(*events, *compared)
    doc = views.status_doc(p, NOW, None)
    assert doc["removed"] == ["b"] and doc["total"] == 3
    assert doc["skipped"] == [{"id": "c", "reason": "later", "status": "pending"}]
    assert doc["pending"] == 1 and doc["changed_since_completed"] == ["a"] and doc["paused"] is True
    back = steering.compare_drafts(p.videos, {**available, "a": entry, "b": {}}, p.videos)
    assert back == [{"type": "manifest_compared", "restored": ["b"], "unchanged": ["a"]}]
    doc = views.status_doc(state(*events, *compared, *back), NOW, None)
    assert doc["changed_since_completed"] == [] and doc["removed"] == [] and doc["total"] == 4


def test_plan_rows_for_steering() -> None:
    """plan: skipped and removed videos are skip rows saying so; a changed completed video says redo."""
    entry = {"video_id": "a", "path": "x"}
    p = state(
        {"type": "videos_added", "video_ids": ["a", "b", "c"]},
        {"type": "video_started", "video_id": "a", "attempt": 1, "entry_hash": steering.entry_fingerprint(entry)},
        completed("a"),
        {"type": "video_skipped", "video_id": "c", "reason": "later"},
    )
    rows = {r.video_id: r for r in decide.plan(p.state(), {"a": {"path": "y"}, "c": {}}, NOW)}
    assert "changed since completed: nkoctl redo a" in rows["a"].reason
    assert rows["b"].action == "skip" and "removed" in rows["b"].reason
    assert rows["c"].action == "skip" and "later" in rows["c"].reason and "nkoctl unskip c" in rows["c"].reason


def test_preview_applies_drafts_without_touching_the_state() -> None:
    """What status shows for queued requests is a copy: the state itself is unchanged."""
    p = state({"type": "videos_added", "video_ids": ["a"]})
    shown = steering.preview(p, [{"type": "video_skipped", "video_id": "a", "reason": "r"}], "2026-01-01T00:00:00Z")
    assert shown.videos["a"].skipped and not p.videos["a"].skipped


def test_a_video_that_completes_despite_a_cancel_is_not_left_skipped() -> None:
    """A cancel (skip) that reaches a video as it completes: the video is completed, not skipped, so a
    later redo runs it."""
    p = state(
        {"type": "videos_added", "video_ids": ["a"]},
        {"type": "video_started", "video_id": "a", "attempt": 1},
        {"type": "video_cancel_requested", "video_id": "a", "requeue": False},
        {"type": "video_skipped", "video_id": "a", "reason": "cancelled"},
        completed("a"),
        {"type": "video_redo_requested", "video_id": "a"},
    )
    assert not p.videos["a"].skipped
    assert decide.next_runnable(p, {"a": {}}, NOW, 1) == ["a"]
