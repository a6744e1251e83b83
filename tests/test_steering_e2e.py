"""Steering end to end, through the real `nkod` and `nkoctl` binaries: pause/resume, skip/unskip, cancel,
prioritize, redo, removed and changed manifest lines, queued requests, bad ids."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.helpers import DataDir, env, kill9, wait_for


def started_order(d: DataDir) -> list[str]:
    return [e["video_id"] for e in d.events() if e["type"] == "video_started"]


def events_of(d: DataDir, kind: str, vid: str | None = None) -> list[dict[str, object]]:
    return [e for e in d.events() if e["type"] == kind and (vid is None or e.get("video_id") == vid)]


def requests_left(d: DataDir) -> list[str]:
    spool = d.root / "requests"
    return sorted(p.name for p in spool.glob("*.json")) if spool.is_dir() else []


def running(d: DataDir) -> list[str]:
    return list(d.status()["running"])


@pytest.fixture
def d(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "data", workers=1)


def test_pause_survives_kill_9_and_resume_runs_the_queue(d: DataDir) -> None:
    """A pause queued while nkod is down holds across a kill -9 and a restart; resume runs everything."""
    d.manifest([{"video_id": "a"}, {"video_id": "b"}])
    r = d.ctl("pause")
    assert r.returncode == 0 and "not running" in r.stderr, r.stderr
    doc = d.status()
    assert doc["paused"] is True
    assert doc["pending_requests"][0]["type"] == "pause" and "queued" in doc["pending_requests"][0]["state"]
    proc = d.start()
    try:
        wait_for(lambda: bool(events_of(d, "queue_paused")) and not requests_left(d), what="pause applied")
        time.sleep(1.0)  # several loop passes: nothing may start while paused
        assert started_order(d) == []
        kill9(proc)
        proc = d.start()
        wait_for(lambda: len(events_of(d, "daemon_started")) == 2, what="restart")
        time.sleep(1.0)
        assert started_order(d) == [] and d.status()["paused"] is True
        assert "PAUSED" in d.ctl("status").stdout
        r = d.ctl("resume", "--wait", "20")
        assert r.returncode == 0 and "done" in r.stderr, r.stderr
        wait_for(lambda: d.completed_count() == {"a": 1, "b": 1}, what="both completed")
        assert d.status()["paused"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_once_exits_while_paused_without_starting_anything(d: DataDir) -> None:
    """nkod --once with the queue paused has nothing runnable: it exits 0 and starts nothing."""
    d.manifest([{"video_id": "a"}])
    assert d.ctl("pause").returncode == 0
    r = d.run(timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert started_order(d) == [] and d.status()["pending"] == 1


def test_pause_now_interrupts_running_videos_and_resume_redoes_them_first(d: DataDir) -> None:
    """pause --now stops the running video (recorded interrupted); nothing starts; on resume it runs first."""
    d.manifest([{"video_id": "a", "sleep": 3}, {"video_id": "b"}])
    proc = d.start()
    try:
        wait_for(lambda: running(d) == ["a"], what="a running")
        r = d.ctl("pause", "--now", "--wait", "20")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: bool(events_of(d, "video_interrupted", "a")), what="a interrupted")
        assert "pause" in str(events_of(d, "video_interrupted", "a")[0]["reason"])
        time.sleep(1.0)
        assert started_order(d) == ["a"]
        doc = d.status()
        assert doc["paused"] is True and doc["interrupted"] == ["a"]
        assert d.ctl("resume", "--wait", "20").returncode == 0
        wait_for(lambda: d.completed_count() == {"a": 1, "b": 1}, timeout=60, what="both completed")
        assert started_order(d) == ["a", "a", "b"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_systemd_status_line_says_paused(d: DataDir, tmp_path: Path) -> None:
    """The STATUS= line sent to systemd (what `systemctl status` shows) says the queue is paused."""
    d.manifest([{"video_id": "a"}])
    assert d.ctl("pause").returncode == 0
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    proc = subprocess.Popen(
        d.nkod_args(), env=env(NOTIFY_SOCKET=str(sock_path)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("STATUS=paused" in m for m in messages):
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sock.close()
    assert any("STATUS=paused" in m for m in messages), messages


def test_skip_queued_while_down_then_unskip(d: DataDir) -> None:
    """skip while nkod is down: status shows it queued and its effect; the run never starts the video and
    does not count it as remaining; unskip lets it run."""
    d.manifest([{"video_id": "a"}, {"video_id": "b"}, {"video_id": "c"}])
    r = d.ctl("skip", "b", "--reason", "no N'Ko text")
    assert r.returncode == 0, r.stderr
    doc = d.status()
    assert [s["id"] for s in doc["skipped"]] == ["b"] and doc["skipped"][0]["reason"] == "no N'Ko text"
    assert doc["pending_requests"][0]["video_ids"] == ["b"]
    assert d.run().returncode == 0
    assert sorted(started_order(d)) == ["a", "c"]
    doc = d.status()
    assert doc["skipped"] == [{"id": "b", "reason": "no N'Ko text", "status": "pending"}]
    assert doc["pending"] == 0 and doc["eta_seconds"] == 0 and doc["pending_requests"] == []
    plan = d.ctl("plan")
    assert "nkoctl unskip b" in plan.stdout, plan.stdout
    assert d.ctl("unskip", "b").returncode == 0
    assert d.run().returncode == 0
    assert d.completed_count() == {"a": 1, "b": 1, "c": 1}


def test_skip_of_a_completed_video_is_refused_and_nothing_is_written(d: DataDir) -> None:
    """skip of a completed video: the reason, exit 1, no request file."""
    d.manifest([{"video_id": "a"}])
    assert d.run().returncode == 0
    r = d.ctl("skip", "a")
    assert r.returncode == 1 and "a: completed" in r.stderr, r.stderr
    assert requests_left(d) == []


@pytest.mark.parametrize("command", ["skip", "unskip", "cancel", "prioritize", "redo"])
def test_unknown_ids_exit_2_and_write_nothing(d: DataDir, command: str) -> None:
    """An id neither the log nor the manifest knows: named in the message, exit 2, no request file."""
    d.manifest([{"video_id": "a"}])
    assert d.run().returncode == 0
    r = d.ctl(command, "a", "nosuchvideo")
    assert r.returncode == 2 and "nosuchvideo" in r.stderr, r.stderr
    assert requests_left(d) == []
    r = d.ctl(command, "../etc")
    assert r.returncode == 2 and "'../etc'" in r.stderr, r.stderr
    assert requests_left(d) == []


def test_cancel_stops_the_running_video_and_skips_it(d: DataDir) -> None:
    """cancel: the running video is stopped at once, recorded interrupted (cancelled) and skipped; the run
    goes on with the next."""
    d.manifest([{"video_id": "a", "sleep": 60}, {"video_id": "b"}])
    proc = d.start()
    try:
        wait_for(lambda: running(d) == ["a"], what="a running")
        r = d.ctl("cancel", "a", "--wait", "20")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: d.completed_count() == {"b": 1}, timeout=30, what="b completed")
        [interrupted] = events_of(d, "video_interrupted", "a")
        assert interrupted["reason"] == "cancelled"
        assert events_of(d, "video_skipped", "a")
        doc = d.status()
        assert [s["id"] for s in doc["skipped"]] == ["a"] and doc["interrupted"] == []
        assert started_order(d) == ["a", "b"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cancel_with_requeue_runs_the_video_again_first(d: DataDir) -> None:
    """cancel --requeue: stopped and recorded interrupted, then redone first (before the waiting b)."""
    d.manifest([{"video_id": "a", "sleep": 2}, {"video_id": "b"}])
    proc = d.start()
    try:
        wait_for(lambda: running(d) == ["a"], what="a running")
        assert d.ctl("cancel", "a", "--requeue", "--wait", "20").returncode == 0
        wait_for(lambda: d.completed_count() == {"a": 1, "b": 1}, timeout=60, what="both completed")
        assert events_of(d, "video_interrupted", "a")[0]["reason"] == "cancelled"
        assert not events_of(d, "video_skipped", "a")
        assert started_order(d) == ["a", "a", "b"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cancel_of_a_video_that_is_not_running_is_refused(d: DataDir) -> None:
    """cancel of a waiting video: refused with the reason (skip is for those), exit 1, nothing written."""
    d.manifest([{"video_id": "a"}])
    r = d.ctl("cancel", "a")
    assert r.returncode == 1 and "not running" in r.stderr, r.stderr
    assert requests_left(d) == []


def test_prioritized_videos_run_next_then_manifest_priority_then_order(d: DataDir) -> None:
    """Run order: prioritize'd videos first (in the order asked), then a line's `priority` (higher first),
    then manifest order."""
    d.manifest(
        [
            {"video_id": "a"},
            {"video_id": "b"},
            {"video_id": "c", "priority": 5},
            {"video_id": "d"},
            {"video_id": "e", "priority": -1},
            {"video_id": "f", "priority": 9},
        ]
    )
    assert d.ctl("prioritize", "d").returncode == 0
    assert d.ctl("prioritize", "b").returncode == 0
    plan = d.ctl("plan", "--json")
    assert plan.returncode == 0, plan.stderr
    assert d.run().returncode == 0
    assert started_order(d) == ["d", "b", "f", "c", "a", "e"]


def test_redo_keeps_the_old_output_until_the_new_commit_then_archives_it(d: DataDir) -> None:
    """redo of a completed video whose line changed: status and plan report the change; the redo runs; the
    old output stays in output/ while it runs and is moved under archive/redo/ when the new one commits."""
    d.manifest([{"video_id": "a", "frames": 2}])
    assert d.run().returncode == 0
    out = d.root / "output" / "a"
    assert len(list((out / "frames").iterdir())) == 2
    d.manifest([{"video_id": "a", "frames": 5, "sleep": 3}])
    assert "changed since completed: nkoctl redo a" in d.ctl("plan").stdout  # plan reads the manifest now
    proc = d.start()
    try:
        # status shows what the daemon found when it compared the log with the manifest
        wait_for(lambda: [e.get("changed") for e in events_of(d, "manifest_compared")] == [["a"]])
        assert d.status()["changed_since_completed"] == ["a"]
        assert d.ctl("redo", "a", "--wait", "20").returncode == 0
        wait_for(lambda: running(d) == ["a"], what="redo running")
        assert len(list((out / "frames").iterdir())) == 2  # the old output, still in place
        wait_for(lambda: d.completed_count() == {"a": 2}, timeout=60, what="redo completed")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert len(list((out / "frames").iterdir())) == 5
    [archived] = list((d.root / "archive" / "redo").iterdir())
    assert archived.name.startswith("a-") and len(list((archived / "frames").iterdir())) == 2
    doc = d.status()
    assert doc["changed_since_completed"] == [] and doc["completed"] == 1 and doc["frames"] == 5


def test_a_failed_redo_leaves_the_old_output_in_place(d: DataDir) -> None:
    """A redo that fails: the video is failed (retry runs it again) and its previous output is untouched."""
    d.manifest([{"video_id": "a", "frames": 2}])
    assert d.run().returncode == 0
    d.manifest([{"video_id": "a", "fail": "permanent"}])
    assert d.ctl("redo", "a").returncode == 0
    assert d.run().returncode == 0
    assert [f["id"] for f in d.status()["failed"]] == ["a"]
    assert len(list((d.root / "output" / "a" / "frames").iterdir())) == 2
    assert not (d.root / "archive" / "redo").exists()


def test_redo_of_a_pending_video_is_refused(d: DataDir) -> None:
    """redo is for completed videos: a pending one is refused with the reason, exit 1, nothing written."""
    d.manifest([{"video_id": "a"}])
    r = d.ctl("redo", "a")
    assert r.returncode == 1 and "a: pending" in r.stderr, r.stderr
    assert requests_left(d) == []


def test_a_removed_line_leaves_the_totals_and_comes_back_with_its_line(d: DataDir) -> None:
    """A known video whose manifest line is removed: shown removed, out of the total and the ETA, never
    started; when the line returns it runs."""
    d.manifest([{"video_id": "a"}, {"video_id": "b"}])
    assert d.ctl("pause").returncode == 0
    assert d.run().returncode == 0  # learns a and b, starts nothing
    d.manifest([{"video_id": "a"}])
    assert "removed" in d.ctl("plan").stdout  # plan reads the manifest itself
    assert d.run().returncode == 0  # (paused) the daemon compares the log with the manifest: b is removed
    doc = d.status()
    assert doc["removed"] == ["b"] and doc["total"] == 1
    assert d.ctl("resume").returncode == 0
    assert d.run().returncode == 0
    assert started_order(d) == ["a"]
    doc = d.status()
    assert doc["removed"] == ["b"] and doc["total"] == 1 and doc["completed"] == 1 and doc["eta_seconds"] == 0
    d.manifest([{"video_id": "a"}, {"video_id": "b"}])
    assert d.run().returncode == 0
    assert d.status()["removed"] == []
    assert d.completed_count() == {"a": 1, "b": 1}


def test_a_changed_line_of_a_pending_video_takes_effect(d: DataDir) -> None:
    """A pending video's line changed before it ran: the run uses the current line."""
    d.manifest([{"video_id": "a", "frames": 1}])
    assert d.ctl("pause").returncode == 0
    assert d.run().returncode == 0
    assert d.ctl("resume").returncode == 0
    d.manifest([{"video_id": "a", "frames": 4}])
    assert d.run().returncode == 0
    assert d.status()["frames"] == 4


def test_steering_events_show_in_nkoctl_log_and_show(d: DataDir) -> None:
    """Each steering action is an event: nkoctl log lists it, and show tells the skip and its reason."""
    d.manifest([{"video_id": "a"}, {"video_id": "b"}])
    assert d.ctl("skip", "a", "--reason", "later").returncode == 0
    assert d.ctl("prioritize", "b").returncode == 0
    assert d.run().returncode == 0
    log = d.ctl("log").stdout
    assert "video_skipped" in log and "video_prioritized" in log, log
    show = d.ctl("show", "a").stdout
    assert "skip" in show and "later" in show, show


def test_a_request_no_video_can_take_is_rejected_with_the_reason(d: DataDir) -> None:
    """A steering request that applies to none of its videos by the time nkod reads it (here: a skip of a
    video that completed meanwhile) is moved to requests/rejected/ with the reason and logged."""
    from nkod import spool

    d.manifest([{"video_id": "a"}])
    proc = d.start()
    try:
        wait_for(lambda: d.completed_count() == {"a": 1}, what="a completed")
        path = spool.submit(d.root / "requests", "skip", video_ids=["a"])
        rejected = d.root / "requests" / "rejected" / path.name
        wait_for(rejected.exists, what="the request rejected")
        reason = (d.root / "requests" / "rejected" / f"{path.name}.reason.txt").read_text()
        assert "a: completed" in reason, reason
        assert any(e.get("file") == path.name for e in events_of(d, "request_rejected"))
        assert not events_of(d, "video_skipped")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_plan_and_status_before_nkod_ever_ran_show_new_lines_with_the_queued_requests_applied(d: DataDir) -> None:
    """With no log yet and requests queued: plan places the manifest's lines as nkod will (added, then the
    requests applied: the prioritized one first, the skipped one apart), and status counts all of them."""
    d.manifest([{"video_id": "a"}, {"video_id": "b"}, {"video_id": "c"}])
    assert d.ctl("prioritize", "c").returncode == 0
    assert d.ctl("skip", "b").returncode == 0
    r = d.ctl("plan", "--json")
    assert r.returncode == 0, r.stderr
    rows = orjson.loads(r.stdout)
    assert [(row["video_id"], row["action"]) for row in rows] == [("c", "run"), ("a", "run"), ("b", "skip")]
    assert all("new in the manifest" in row["reason"] for row in rows)
    doc = d.status()
    assert doc["total"] == 3 and doc["pending"] == 2 and [s["id"] for s in doc["skipped"]] == ["b"]
    assert [req["type"] for req in doc["pending_requests"]] == ["prioritize", "skip"]
