"""Wall-clock steps: a backoff never waits longer than backoff_max from now, and elapsed time (hence rate
and ETA) never goes negative, never shrinks and loses no session time when the clock steps back."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkod import decide, eventlog, snapshot, views
from nkod.config import load_config
from nkod.daemon import Daemon
from nkod.decide import Outcome, RetryPolicy
from nkod.state import Projector, State, Video, fold, format_ts, parse_ts
from tests.helpers import REPO, DataDir, wait_for

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def scheduled(delay: float | None, at: datetime = T0, **extra: Any) -> State:
    """A state where video "a" failed transiently at `at` and waits `delay` s (None: an event without
    delay_seconds, as a hand-made log might have)."""
    retry: dict[str, Any] = {
        "type": "video_retry_scheduled",
        "video_id": "a",
        "attempt": 1,
        "error": "429",
        "not_before": format_ts(at + timedelta(seconds=delay if delay is not None else 30)),
        **extra,
    }
    if delay is not None:
        retry["delay_seconds"] = delay
    events = [
        {"v": 1, "seq": 1, "ts": format_ts(at), "type": "log_created", "log_id": "L"},
        {"v": 1, "seq": 2, "ts": format_ts(at), "type": "videos_added", "video_ids": ["a"]},
        {"v": 1, "seq": 3, "ts": format_ts(at), "type": "video_started", "video_id": "a", "attempt": 1},
        {"v": 1, "seq": 4, "ts": format_ts(at), **retry},
    ]
    return fold(events)


# -- backoff: the pure part ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "now", "max_wait", "expected"),
    [
        (30.0, T0, 900.0, 30.0),  # just scheduled: the whole delay
        (30.0, T0 + timedelta(seconds=20), 900.0, 10.0),  # partly waited
        (30.0, T0 + timedelta(seconds=31), 900.0, 0.0),  # due
        (30.0, T0 - DAY, 900.0, 30.0),  # clock stepped back a day: the delay again, not a day
        (30.0, T0 - timedelta(hours=1), 5.0, 5.0),  # and never more than backoff_max
        (30.0, T0 + timedelta(seconds=10), 5.0, 5.0),  # backoff_max lowered since: it bounds an old wait too
        (None, T0 - DAY, 900.0, 30.0),  # an event without delay_seconds: bounded by its not_before - ts
    ],
)
def test_retry_wait_is_what_is_left_bounded_by_the_delay_and_backoff_max(
    delay: float | None, now: datetime, max_wait: float, expected: float
) -> None:
    """The wait left is not_before - now, at most the delay it was scheduled with and backoff_max."""
    video = scheduled(delay).videos["a"]
    assert decide.retry_wait(video, now, max_wait) == pytest.approx(expected)


@given(
    failures=st.integers(1, 10),
    retry_after=st.none() | st.floats(0, 10**6),
    backoff_max=st.floats(0.5, 3600),
    step=st.floats(-10 * 86400, 10 * 86400),
)
def test_no_clock_step_makes_a_backoff_wait_longer_than_backoff_max(
    failures: int, retry_after: float | None, backoff_max: float, step: float
) -> None:
    """For any delay the policy makes and any clock step (either way), the wait from now lies in
    [0, min(delay, backoff_max)], and without a step back it is exactly what is left of the delay."""
    policy = RetryPolicy(max_attempts=99, backoff_initial=1.0, backoff_factor=2.0, backoff_max=backoff_max)
    p = Projector(scheduled(None))
    outcome = Outcome(ok=False, kind="transient", error="429", retry_after=retry_after)
    video = Video("a", attempt=failures)
    [draft] = decide.outcome_drafts(video, outcome, policy, T0)
    p.apply({"v": 1, "seq": p.seq + 1, "ts": format_ts(T0), **draft})
    waiting = p.videos["a"]
    delay = draft["delay_seconds"]
    now = T0 + timedelta(seconds=step)
    wait = decide.retry_wait(waiting, now, backoff_max)
    assert 0.0 <= wait <= min(delay, backoff_max) + 1e-6
    if step >= 0:
        left = (parse_ts(draft["not_before"]) - now).total_seconds()
        assert wait == pytest.approx(max(0.0, left), abs=1e-3)  # delay_seconds is kept to the ms


def test_plan_after_a_step_back_shows_a_wait_of_at_most_the_delay_not_until_tomorrow() -> None:
    """`nkoctl plan`'s rows: a retry scheduled a day ahead waits the delay from now, with wait_seconds."""
    now = T0 - DAY
    [row] = decide.plan(scheduled(5.0), ["a"], now)
    assert row.action == "wait" and row.wait_seconds == 5.0
    assert f"until {format_ts(now + timedelta(seconds=5))}" in row.reason
    # without a step, the row still names the scheduled time itself
    [row] = decide.plan(scheduled(5.0), ["a"], T0 + timedelta(seconds=1))
    assert row.wait_seconds == pytest.approx(4.0) and f"until {format_ts(T0 + timedelta(seconds=5))}" in row.reason


# -- elapsed: the pure part -------------------------------------------------------------------------


def log(*drafts: dict[str, Any], ts: list[datetime]) -> list[dict[str, Any]]:
    return [{"v": 1, "seq": i + 1, "ts": format_ts(t), **d} for i, (d, t) in enumerate(zip(drafts, ts, strict=True))]


def test_a_session_stepped_back_an_hour_keeps_its_monotonic_length() -> None:
    """daemon_stopped written an hour "before" its daemon_started still closes the session at its
    session_seconds (wall clock: 0 s, the session lost)."""
    events = log(
        {"type": "log_created", "log_id": "L"},
        {"type": "daemon_started", "pid": 1},
        {"type": "videos_added", "video_ids": ["a"], "session_seconds": 0.1},
        {"type": "video_started", "video_id": "a", "attempt": 1, "session_seconds": 0.2},
        {"type": "video_completed", "video_id": "a", "attempt": 1, "counts": {}, "session_seconds": 600.0},
        {"type": "daemon_stopped", "reason": "SIGTERM", "session_seconds": 700.0},
        ts=[T0, T0, T0, T0, T0 - timedelta(minutes=50), T0 - timedelta(minutes=49)],
    )
    s = fold(events)
    assert s.session.active_seconds == 700.0
    doc = views.status_doc(s, T0 - timedelta(hours=2), None)
    assert doc["elapsed_seconds"] == 700.0 and doc["rate_per_hour"] > 0


def test_a_crashed_session_closes_at_its_last_monotonic_count() -> None:
    """After kill -9 (no daemon_stopped), the next daemon_started closes the old session at the
    session_seconds of its last event, whatever the wall clock said."""
    events = log(
        {"type": "log_created", "log_id": "L"},
        {"type": "daemon_started", "pid": 1},
        {"type": "videos_added", "video_ids": ["a"], "session_seconds": 300.0},
        {"type": "daemon_started", "pid": 2},
        ts=[T0, T0, T0 - timedelta(hours=1), T0 - timedelta(hours=1)],
    )
    assert fold(events).session.active_seconds == 300.0


def test_logs_without_session_seconds_keep_their_wall_clock_numbers() -> None:
    """An older log (no session_seconds): sessions are measured from event times as before."""
    events = log(
        {"type": "log_created", "log_id": "L"},
        {"type": "daemon_started", "pid": 1},
        {"type": "daemon_stopped", "reason": "x"},
        {"type": "daemon_started", "pid": 2},
        {"type": "videos_added", "video_ids": ["a"]},
        ts=[T0, T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=20), T0 + timedelta(seconds=25)],
    )
    s = fold(events)
    assert s.session.active_seconds == 10.0 and s.session.open_seconds is None
    assert views.elapsed_seconds(s, T0 + timedelta(seconds=40), daemon_running=True) == 30.0
    assert views.elapsed_seconds(s, T0 + timedelta(seconds=40), daemon_running=False) == 15.0


def test_the_running_daemon_s_own_count_wins_over_a_stepped_wall_clock() -> None:
    """status while the daemon runs: its monotonic session_seconds (from activity.json), not now - start."""
    events = log(
        {"type": "log_created", "log_id": "L"},
        {"type": "daemon_started", "pid": 1},
        {"type": "videos_added", "video_ids": ["a"], "session_seconds": 5.0},
        ts=[T0, T0, T0],
    )
    s = fold(events)
    stepped = T0 - timedelta(hours=1)
    assert views.elapsed_seconds(s, stepped, daemon_running=True) == 5.0  # never below the last count
    assert views.elapsed_seconds(s, stepped, daemon_running=True, session_seconds=3605.0) == 3605.0
    activity = {"pid": 9, "session_seconds": 100.0, "monotonic": 1000.0}
    assert views.live_session_seconds(activity, 9, 1050.0) == 150.0
    assert views.live_session_seconds(activity, 8, 1050.0) is None  # another daemon's file
    assert views.live_session_seconds(activity, 9, 10.0) == 100.0  # another boot: nothing added


def test_a_snapshot_keeps_the_open_session_count_and_the_retry_delay() -> None:
    """A snapshot taken mid-session and mid-backoff loads to the same state (so deleting it changes nothing)."""
    events = log(
        {"type": "log_created", "log_id": "L"},
        {"type": "daemon_started", "pid": 1},
        {"type": "videos_added", "video_ids": ["a"], "session_seconds": 1.0},
        {"type": "video_started", "video_id": "a", "attempt": 1, "session_seconds": 2.0},
        {
            "type": "video_retry_scheduled",
            "video_id": "a",
            "attempt": 1,
            "error": "429",
            "not_before": format_ts(T0 + timedelta(seconds=30)),
            "delay_seconds": 30.0,
            "session_seconds": 3.5,
        },
        ts=[T0] * 5,
    )
    p = Projector()
    p.apply_all(events)
    doc = orjson.loads(orjson.dumps(snapshot.state_to_doc(p)))
    assert doc["session"]["open_seconds"] == 3.5 and doc["videos"][0]["rd"] == 30.0
    assert snapshot.state_from_doc(doc) == fold(events)


_session_event = st.tuples(
    st.sampled_from(["video_started", "videos_added", "daemon_stopped", "crash"]),
    st.floats(0, 5000),  # monotonic seconds that pass before it
    st.floats(-2 * 86400, 2 * 86400),  # how far the wall clock moves meanwhile (steps either way)
)


@given(steps=st.lists(_session_event, max_size=40), now_offset=st.floats(-2 * 86400, 2 * 86400))
def test_elapsed_is_never_negative_and_never_shrinks_under_clock_steps(
    steps: list[tuple[str, float, float]], now_offset: float
) -> None:
    """Any sequence of daemon sessions whose wall clock jumps around: elapsed over every prefix of the log
    is >= 0 and non-decreasing, and a running daemon's figure is at least the log's."""
    drafts: list[dict[str, Any]] = [{"type": "log_created", "log_id": "L"}, {"type": "daemon_started", "pid": 1}]
    times = [T0, T0]
    wall, mono, up = T0, 0.0, True
    for kind, passed, jump in steps:
        wall += timedelta(seconds=jump)
        if not up or kind == "crash":  # a (new) daemon starts
            drafts.append({"type": "daemon_started", "pid": 1})
            times.append(wall)
            mono, up = 0.0, True
            continue
        mono += passed
        draft: dict[str, Any] = {"type": kind, "session_seconds": round(mono, 3)}
        if kind == "video_started":
            draft |= {"video_id": "a", "attempt": 1}
        elif kind == "videos_added":
            draft["video_ids"] = ["a"]
        drafts.append(draft)
        times.append(wall)
        up = kind != "daemon_stopped"
    events = log(*drafts, ts=times)
    p = Projector()
    before = 0.0
    for event in events:
        p.apply(event)
        now = parse_ts(event["ts"]) + timedelta(seconds=now_offset)
        stopped = views.elapsed_seconds(p, now, daemon_running=False)
        assert stopped >= before - 1e-6
        assert views.elapsed_seconds(p, now, daemon_running=True) >= stopped - 1e-6
        before = stopped
    assert before >= 0.0


# -- end to end ------------------------------------------------------------------------------------------


def write_future_log(d: DataDir, delay: float) -> datetime:
    """The log a daemon whose clock ran a day fast leaves behind: video "a" failed transiently and waits
    `delay` s, scheduled (and stamped) a day ahead. Written with the real log writer. Returns that time."""
    future = datetime.now(UTC) + DAY
    policy = RetryPolicy(max_attempts=3, backoff_initial=delay, backoff_max=delay)
    p = Projector()
    writer = eventlog.LogWriter(d.log, 1)

    def append(*drafts: dict[str, Any]) -> None:
        for event in writer.append(list(drafts), format_ts(future)):
            p.apply(event)

    append({"type": "log_created", "log_id": "future"}, {"type": "daemon_started", "pid": 1})
    append({"type": "videos_added", "video_ids": ["a"]})
    append(decide.start_draft(p.videos["a"]))
    outcome = Outcome(ok=False, kind="transient", error="rate limited (HTTP 429) on a")
    append(*decide.outcome_drafts(p.videos["a"], outcome, policy, future))
    append({"type": "daemon_stopped", "reason": "SIGTERM"})
    writer.close()
    return future


def test_a_retry_scheduled_by_a_clock_a_day_fast_runs_within_backoff_max(tmp_path: Any) -> None:
    """Clock stepped back a day since a retry was scheduled: `nkoctl plan` shows a wait of at most
    backoff_max (not "until tomorrow") and `nkod --once` runs the video within it instead of hanging."""
    backoff = 2.0
    d = DataDir(tmp_path / "data", backoff_initial=backoff, backoff_max=backoff)
    d.manifest([{"video_id": "a"}])
    future = write_future_log(d, backoff)

    r = d.ctl("plan", "--json")
    assert r.returncode == 0, r.stderr
    [row] = orjson.loads(r.stdout)
    assert row["action"] == "wait", row
    until = parse_ts(re.search(r" until (\S+Z):", row["reason"])[1])  # type: ignore[index]
    assert until - datetime.now(UTC) <= timedelta(seconds=backoff), f"plan waits until {until} (clock was {future})"
    assert 0 < row["wait_seconds"] <= backoff, row

    t0 = time.monotonic()
    try:
        result = d.run(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("nkod --once still waits out the day-long backoff after 60 s (backoff_max is 2 s)")
    took = time.monotonic() - t0
    assert result.returncode == 0, result.stdout + result.stderr
    assert d.types("a")[-2:] == ["video_started", "video_completed"]
    assert took < 30, f"nkod --once took {took:.1f} s"


def test_a_step_back_while_running_keeps_elapsed_rate_and_eta(tmp_path: Any, monkeypatch: Any) -> None:
    """The wall clock steps back an hour mid-run (the daemon's injected wall clock; real workers, the real
    nkoctl): elapsed keeps growing in its progress file and in status, rate and ETA stay, and the whole
    session is counted once it stops."""
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    d = DataDir(tmp_path / "data", workers=1)
    d.manifest([{"video_id": f"v{i}", "sleep": 1.5} for i in range(5)])
    stepped = threading.Event()

    def wall_clock() -> datetime:
        # Steps back an hour once the first video is done, and stays stepped.
        if not stepped.is_set() and daemon.projector.completed_by_nkod >= 1:
            stepped.set()
        return datetime.now(UTC) - (timedelta(hours=1) if stepped.is_set() else timedelta(0))

    def progress() -> dict[str, Any]:
        try:
            doc: dict[str, Any] = orjson.loads((d.root / "checkpoints" / "extraction_progress.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return doc

    daemon = Daemon(d.root, load_config(d.config), once=True, install_signals=False, wall_clock=wall_clock)
    t0 = time.monotonic()
    runner = threading.Thread(target=daemon.run, name="daemon-under-test")
    runner.start()
    try:
        wait_for(stepped.is_set, timeout=60, what="the first video to complete")
        first = d.status()
        assert first["daemon_running"] and first["completed"] < 5, first
        assert first["elapsed_seconds"] >= 1.5 and first["rate_per_hour"] > 0 and first["eta_seconds"], first
        # The daemon's own progress file, written with the stepped clock after a second completion.
        wait_for(lambda: progress().get("processed_videos", 0) >= 2, timeout=60, what="a second completion")
        assert progress()["elapsed_seconds"] >= 3.0, progress()
        second = d.status()
        assert second["elapsed_seconds"] >= first["elapsed_seconds"], (first, second)
    finally:
        runner.join(timeout=120)
    took = time.monotonic() - t0
    assert not runner.is_alive() and daemon.exit_code == 0
    final = d.status()
    assert not final["daemon_running"] and final["completed"] == 5
    # the whole session counts: at least the five 1.5 s videos, at most the time the daemon ran
    assert 7.5 <= final["elapsed_seconds"] <= took + 1, (final, took)
    assert final["rate_per_hour"] > 0
