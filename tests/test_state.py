"""The pure fold: one mutator per event type, and the algebra that replay relies on."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from nkod import snapshot
from nkod.state import Projector, State, Status, apply, fold
from tests.strategies import events, stamp


def run(*drafts: dict[str, Any]) -> State:
    return fold(stamp([{"type": "log_created", "log_id": "L"}, *drafts]))


def test_empty_log_is_empty_state() -> None:
    """No events: no videos, seq 0."""
    s = fold([])
    assert s.seq == 0 and not s.videos


def test_log_created_sets_identity() -> None:
    """log_created names the log and the run's start."""
    s = run()
    assert s.log_id == "L" and s.created_at == s.last_ts and s.seq == 1


def test_videos_added_are_pending_in_manifest_order() -> None:
    """Added videos start pending, in the order given; adding again changes nothing."""
    s = run({"type": "videos_added", "video_ids": ["b", "a"]}, {"type": "videos_added", "video_ids": ["a", "c"]})
    assert list(s.videos) == ["b", "a", "c"]
    assert all(v.status is Status.PENDING for v in s.videos.values())


@pytest.mark.parametrize(
    ("drafts", "status", "checks"),
    [
        (
            [{"type": "video_started", "video_id": "a", "attempt": 1}],
            Status.RUNNING,
            {"attempt": 1, "starts": 1, "started_seq": 3},
        ),
        (
            [
                {"type": "video_started", "video_id": "a", "attempt": 1},
                {"type": "video_completed", "video_id": "a", "attempt": 1, "counts": {"frames": 4}},
            ],
            Status.COMPLETED,
            {"error": None},
        ),
        (
            [
                {"type": "video_started", "video_id": "a", "attempt": 1},
                {
                    "type": "video_retry_scheduled",
                    "video_id": "a",
                    "attempt": 1,
                    "error": "429",
                    "error_kind": "transient",
                    "not_before": "2030-01-01T00:00:00.000000Z",
                },
            ],
            Status.PENDING,
            {"failures": 1, "not_before": "2030-01-01T00:00:00.000000Z", "error": "429"},
        ),
        (
            [
                {"type": "video_started", "video_id": "a", "attempt": 1},
                {"type": "video_failed", "video_id": "a", "attempt": 1, "error": "gone", "error_kind": "permanent"},
            ],
            Status.FAILED,
            {"failures": 1, "error": "gone", "error_kind": "permanent"},
        ),
        (
            [
                {"type": "video_started", "video_id": "a", "attempt": 1},
                {"type": "video_interrupted", "video_id": "a", "attempt": 1, "reason": "SIGTERM"},
            ],
            Status.INTERRUPTED,
            {"failures": 0, "error_kind": "interrupted"},
        ),
        (
            [
                {"type": "video_started", "video_id": "a", "attempt": 1},
                {"type": "video_failed", "video_id": "a", "attempt": 1, "error": "gone", "error_kind": "permanent"},
                {"type": "retry_requested", "video_id": "a", "request": "r"},
            ],
            Status.PENDING,
            {"failures": 0, "error": None, "failed_at": None},
        ),
        (
            [
                {"type": "video_started", "video_id": "a", "attempt": 1},
                {"type": "video_completed", "video_id": "a", "attempt": 1, "counts": {}},
                {"type": "retry_requested", "video_id": "a", "request": "r"},
            ],
            Status.COMPLETED,
            {},
        ),
        ([{"type": "video_imported", "video_id": "a", "status": "completed"}], Status.COMPLETED, {"imported": True}),
        (
            [{"type": "video_imported", "video_id": "a", "status": "failed", "error": "SABR"}],
            Status.FAILED,
            {"imported": True, "error": "SABR"},
        ),
    ],
    ids=[
        "started",
        "completed",
        "retry_scheduled",
        "failed",
        "interrupted",
        "retry_requested_on_failed",
        "retry_requested_on_completed_is_ignored",
        "imported_completed",
        "imported_failed",
    ],
)
def test_video_transitions(drafts: list[dict[str, Any]], status: Status, checks: dict[str, Any]) -> None:
    """Each video event moves the video to the status its name says, with its fields."""
    s = run({"type": "videos_added", "video_ids": ["a"]}, *drafts)
    v = s.videos["a"]
    assert v.status is status
    for key, value in checks.items():
        assert getattr(v, key) == value, key


def test_totals_follow_completed_counts() -> None:
    """Totals are the sum of counts over completed videos."""
    s = run(
        {"type": "video_completed", "video_id": "a", "attempt": 1, "counts": {"frames": 4, "audio_segments": 2}},
        {"type": "video_completed", "video_id": "b", "attempt": 1, "counts": {"frames": 6}},
    )
    assert dict(s.totals) == {"frames": 10, "audio_segments": 2}
    assert s.completed_by_nkod == 2


def test_daemon_sessions_add_up_active_time() -> None:
    """Elapsed time counts daemon sessions; a crashed session ends at its last event."""
    s = fold(
        stamp(
            [
                {"type": "log_created", "log_id": "L"},
                {"type": "daemon_started", "pid": 1},
                {"type": "videos_added", "video_ids": ["a"]},  # +10 s
                {"type": "daemon_stopped", "reason": "x"},  # +10 s: session 1 = 20 s
                {"type": "daemon_started", "pid": 2},  # +100 s idle, not counted
                {"type": "video_started", "video_id": "a", "attempt": 1},  # +5 s, then the daemon died
                {"type": "daemon_started", "pid": 3},  # +1000 s: session 2 closed at 5 s
            ],
            gaps=[1, 1, 10, 10, 100, 5, 1000],
        )
    )
    assert s.session.active_seconds == pytest.approx(25.0)
    assert s.session.open_since == s.last_ts and s.session.pid == 3


def test_unknown_event_type_changes_only_seq() -> None:
    """A type this version does not know (same format version) is skipped, not an error."""
    s1 = run({"type": "videos_added", "video_ids": ["a"]})
    s2 = apply(s1, {"v": 1, "seq": 3, "ts": "2030-01-01T00:00:00.000000Z", "type": "from_the_future"})
    assert s2.videos == s1.videos and s2.seq == 3


def test_apply_rejects_a_seq_gap() -> None:
    """The fold refuses an event whose seq does not follow."""
    with pytest.raises(ValueError, match="does not follow"):
        apply(run(), {"v": 1, "seq": 5, "ts": "2030-01-01T00:00:00Z", "type": "daemon_stopped"})


def test_apply_does_not_change_its_input() -> None:
    """apply is pure: the state passed in is unchanged."""
    s1 = run({"type": "videos_added", "video_ids": ["a"]})
    before = snapshot.state_to_doc(s1)
    apply(
        s1,
        {"v": 1, "seq": 3, "ts": "2030-01-01T00:00:00.000000Z", "type": "video_started", "video_id": "a", "attempt": 1},
    )
    assert snapshot.state_to_doc(s1) == before


@given(events, st.data())
def test_replaying_in_two_parts_equals_replaying_whole(log: list[dict[str, Any]], data: st.DataObject) -> None:
    """fold(a + b) == fold(b, fold(a)) for every split point."""
    cut = data.draw(st.integers(0, len(log)))
    assert fold(log[cut:], fold(log[:cut])) == fold(log)


@given(events, st.data())
def test_snapshot_plus_tail_equals_full_replay(log: list[dict[str, Any]], data: st.DataObject) -> None:
    """A state written as a snapshot document and read back, then the tail, gives the full replay."""
    cut = data.draw(st.integers(0, len(log)))
    restored = snapshot.state_from_doc(snapshot.state_to_doc(fold(log[:cut])))
    assert fold(log[cut:], restored) == fold(log)


@given(events)
def test_projector_indexes_match_the_state(log: list[dict[str, Any]]) -> None:
    """The projector's redo/pending queues and status counts always agree with the videos they index."""
    p = Projector()
    for e in log:
        p.apply(e)
        assert sorted(p.queue) == sorted(vid for vid, v in p.videos.items() if v.status is Status.PENDING)
        assert sorted(p.redo) == sorted(vid for vid, v in p.videos.items() if v.status is Status.INTERRUPTED)
        for status in Status:
            assert p.status_counts[status] == sum(1 for v in p.videos.values() if v.status is status)


@given(events)
def test_totals_equal_sum_over_completed(log: list[dict[str, Any]]) -> None:
    """However the log goes, totals are the sum of the completed videos' counts."""
    s = fold(log)
    expected: dict[str, float] = {}
    for v in s.videos.values():
        if v.status is Status.COMPLETED and v.counts:
            for k, n in v.counts.items():
                expected[k] = expected.get(k, 0) + n
    assert {k: n for k, n in s.totals.items() if n} == {k: n for k, n in expected.items() if n}


RETRIED_FIRST = stamp(
    [
        {"type": "log_created", "log_id": "L"},
        {"type": "videos_added", "video_ids": ["a", "b", "c"]},
        {"type": "video_started", "video_id": "a", "attempt": 1},
        {
            "type": "video_retry_scheduled",
            "video_id": "a",
            "attempt": 1,
            "error": "429",
            "not_before": "2026-01-01T00:00:00.000000Z",
        },
        {"type": "video_started", "video_id": "c", "attempt": 1},
        {"type": "video_interrupted", "video_id": "c", "attempt": 1, "reason": "x"},
        {"type": "video_started", "video_id": "b", "attempt": 1},
        {"type": "video_interrupted", "video_id": "b", "attempt": 1, "reason": "x"},
    ]
)


@example(RETRIED_FIRST, 8)
@given(events, st.integers(0, 60))
def test_run_order_survives_a_snapshot(log: list[dict[str, Any]], cut: int) -> None:
    """The order videos would run in is the same whether the state came through a snapshot or not
    (a retried video runs after those waiting since they were added; interrupted ones in their order)."""
    cut = min(cut, len(log))
    p = Projector(snapshot.state_from_doc(snapshot.state_to_doc(fold(log[:cut]))))
    p.apply_all(log[cut:])
    whole = Projector()
    whole.apply_all(log)
    assert (list(p.redo), list(p.queue)) == (list(whole.redo), list(whole.queue))


def test_fsck_repair_note_does_not_stretch_elapsed_time() -> None:
    """A log_repaired written by nkoctl fsck long after a crash does not count as daemon time."""
    s = fold(
        stamp(
            [
                {"type": "log_created", "log_id": "L"},
                {"type": "daemon_started", "pid": 1},
                {"type": "videos_added", "video_ids": ["a"]},  # +10 s, then the daemon died
                {"type": "log_repaired", "dropped": [], "backup": "events.jsonl.bak-x"},  # a day later
                {"type": "daemon_started", "pid": 2},
            ],
            gaps=[1, 1, 10, 86400, 1],
        )
    )
    assert s.session.active_seconds == pytest.approx(10.0)
