"""Pure decisions: recovery after a crash, how a run ends, what runs next, the plan, retries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nkod import decide
from nkod.decide import Committed, Outcome, RetryPolicy
from nkod.state import Projector, State, fold
from tests.strategies import stamp

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def state(*drafts: dict[str, Any]) -> State:
    return fold(
        stamp([{"type": "log_created", "log_id": "L"}, {"type": "videos_added", "video_ids": ["a", "b", "c"]}, *drafts])
    )


def started(vid: str, attempt: int = 1) -> dict[str, Any]:
    return {"type": "video_started", "video_id": vid, "attempt": attempt}


def test_recover_interrupts_what_was_running() -> None:
    """A video running when the daemon died is recorded interrupted."""
    drafts = decide.recover(state(started("a")), {})
    assert [(d["type"], d["video_id"]) for d in drafts] == [("video_interrupted", "a")]


def test_recover_completes_a_video_whose_output_was_committed_by_that_start() -> None:
    """Crash between output rename and append: the committed output is recognised, not redone."""
    s = state(started("a"))
    seq = s.videos["a"].started_seq
    drafts = decide.recover(s, {"a": Committed(started_seq=seq, counts={"frames": 3})})
    assert drafts == [
        {"type": "video_completed", "video_id": "a", "attempt": 1, "counts": {"frames": 3}, "recovered": True}
    ]


def test_recover_ignores_output_from_another_start() -> None:
    """An output committed by an older start does not complete the current one."""
    s = state(started("a"))
    drafts = decide.recover(s, {"a": Committed(started_seq=1, counts={})})
    assert drafts[0]["type"] == "video_interrupted"


def test_recover_leaves_running_what_the_executor_still_runs() -> None:
    """A cluster outlives the daemon: an attempt the executor re-attached to stays running (no event);
    the others running are interrupted as usual."""
    s = state(started("a"), started("b"))
    drafts = decide.recover(s, {}, still_running={"a"})
    assert [(d["type"], d["video_id"]) for d in drafts] == [("video_interrupted", "b")]


def test_recover_leaves_settled_videos_alone() -> None:
    """Nothing to do when nothing was running."""
    assert decide.recover(state(), {}) == []


def test_ok_outcome_completes() -> None:
    """A result becomes video_completed with its counts."""
    v = state(started("a")).videos["a"]
    (d,) = decide.outcome_drafts(v, Outcome(ok=True, counts={"frames": 1}), RetryPolicy(), NOW)
    assert d["type"] == "video_completed" and d["counts"] == {"frames": 1}


def test_transient_failure_with_attempts_left_schedules_a_retry_with_backoff() -> None:
    """Transient error on attempt 1 of 3: retry not before now + backoff_initial."""
    v = state(started("a")).videos["a"]
    (d,) = decide.outcome_drafts(v, Outcome(ok=False, kind="transient", error="429"), RetryPolicy(3, 30, 2, 900), NOW)
    assert d["type"] == "video_retry_scheduled" and d["not_before"] == "2026-01-01T12:00:30.000000Z"


def test_transient_failure_on_last_attempt_fails() -> None:
    """Attempts used up: failed, and the message says so."""
    v = state(started("a", 3)).videos["a"]
    (d,) = decide.outcome_drafts(v, Outcome(ok=False, kind="transient", error="429"), RetryPolicy(3), NOW)
    assert d["type"] == "video_failed" and "gave up after 3 attempts" in d["error"]


def test_permanent_failure_fails_at_once() -> None:
    """Permanent error on attempt 1: failed, no retry."""
    v = state(started("a")).videos["a"]
    (d,) = decide.outcome_drafts(v, Outcome(ok=False, kind="permanent", error="404"), RetryPolicy(), NOW)
    assert d["type"] == "video_failed" and d["error_kind"] == "permanent" and d["attempt"] == 1


@pytest.mark.parametrize(
    ("failures", "retry_after", "expected"),
    [(1, None, 30), (2, None, 60), (3, None, 120), (10, None, 900), (1, 100.0, 100), (1, 5000.0, 900)],
)
def test_backoff_is_exponential_capped_and_honours_retry_after(
    failures: int, retry_after: float | None, expected: float
) -> None:
    """delay = initial * factor^(n-1), at most backoff_max; Retry-After raises it (within the cap)."""
    assert RetryPolicy(3, 30, 2, 900).delay(failures, retry_after) == expected


def test_next_runnable_puts_interrupted_first_then_manifest_order() -> None:
    """Interrupted videos go before pending ones; pending keep manifest order."""
    s = state(started("c"), {"type": "video_interrupted", "video_id": "c", "attempt": 1, "reason": "x"})
    p = Projector(s)
    assert decide.next_runnable(p, dict.fromkeys("abc"), NOW, 3) == ["c", "a", "b"]
    assert decide.next_runnable(p, dict.fromkeys("abc"), NOW, 1) == ["c"]


def test_next_runnable_skips_backoff_and_missing_sources() -> None:
    """A video in backoff waits; a video not in the manifest cannot run."""
    s = state(
        started("a"),
        {
            "type": "video_retry_scheduled",
            "video_id": "a",
            "attempt": 1,
            "error": "x",
            "not_before": "2026-01-01T12:05:00.000000Z",
        },
    )
    p = Projector(s)
    assert decide.next_runnable(p, dict.fromkeys("ac"), NOW, 5) == ["c"]
    later = datetime(2026, 1, 1, 12, 6, tzinfo=UTC)
    # once due, the retried video runs after those that waited since they were added
    assert decide.next_runnable(p, dict.fromkeys("abc"), later, 5) == ["b", "c", "a"]


def test_plan_lists_every_video_with_a_reason() -> None:
    """Plan: run rows in run order, then waits and skips, each with why."""
    s = state(
        started("a"),
        {"type": "video_completed", "video_id": "a", "attempt": 1, "counts": {}},
        started("b"),
        {"type": "video_failed", "video_id": "b", "attempt": 1, "error": "gone", "error_kind": "permanent"},
    )
    rows = decide.plan(s, ["a", "b", "c"], NOW)
    assert [(r.video_id, r.action) for r in rows] == [("c", "run"), ("a", "skip"), ("b", "skip")]
    assert "nkoctl retry b" in rows[2].reason


def test_retry_without_ids_takes_every_failed_video() -> None:
    """retry with no ids: all failed videos; completed ones are never retried."""
    s = state(
        started("a"),
        {"type": "video_failed", "video_id": "a", "attempt": 1, "error": "x"},
        started("b"),
        {"type": "video_completed", "video_id": "b", "attempt": 1, "counts": {}},
    )
    drafts, refused = decide.retry_drafts(s, None, "req")
    assert [d["video_id"] for d in drafts] == ["a"] and refused == []
    drafts, refused = decide.retry_drafts(s, ["a", "b", "zz"], "req")
    assert [d["video_id"] for d in drafts] == ["a"] and refused == ["b", "zz"]
