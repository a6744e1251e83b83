"""nkoctl against real data directories made by the real daemon."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from nkod.ctl import resolve_data_dir, tail_offset
from tests.helpers import DataDir, binary, env, wait_for

STATUS_KEYS = {
    "total",
    "completed",
    "pending",
    "running",
    "failed",
    "interrupted",
    "frames",
    "nko_detections",
    "audio_segments",
    "elapsed_seconds",
    "rate_per_hour",
    "eta_seconds",
    "daemon_running",
}


@pytest.fixture
def done(tmp_path: Path) -> DataDir:
    """A data dir after one run: 3 completed, 1 failed."""
    d = DataDir(tmp_path / "data", max_attempts=1)
    d.manifest([{"video_id": "a"}, {"video_id": "b", "fail": "permanent"}, {"video_id": "c"}, {"video_id": "d"}])
    assert d.run().returncode == 0
    return d


def test_status_json_has_the_documented_keys(done: DataDir) -> None:
    """status --json: at least the keys DESIGN.md lists, with the right values."""
    doc = done.status()
    assert set(doc) >= STATUS_KEYS
    assert (doc["total"], doc["completed"], doc["pending"], doc["running"]) == (4, 3, 0, [])
    assert doc["failed"][0]["id"] == "b" and set(doc["failed"][0]) >= {"id", "error", "timestamp", "attempts"}
    assert doc["frames"] == 9 and doc["audio_segments"] == 12 and doc["daemon_running"] is False


def test_status_box_shows_the_seed_fields(done: DataDir) -> None:
    """The status box has the seed's lines: videos with a bar, frames, N'Ko %, audio, failed, rate, failed list."""
    r = done.ctl("status")
    assert r.returncode == 0
    for text in (
        "Pipeline Status",
        "Videos:",
        "3 / 4 (75.0%)",
        "█",
        "Frames:",
        "9 extracted",
        "N'Ko:",
        "detections (33%)",
        "Audio:",
        "12 segments",
        "Failed:",
        "1 video",
        "Elapsed:",
        "ETA:",
        "Rate:",
        "Daemon:",
        "not running",
        "Failed Videos:",
        "1. b - video b is unavailable",
    ):
        assert text in r.stdout, text


def test_status_shows_what_a_running_daemon_is_doing(tmp_path: Path) -> None:
    """With the daemon running: daemon_running, its PID, and the video it is processing with its stage."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "slow", "sleep": 20}])
    proc = d.start()
    try:
        wait_for(lambda: d.status()["running"] == ["slow"], what="slow to run")
        wait_for(lambda: "Processing slow — work" in d.ctl("status").stdout, what="stage in the box")
        doc = d.status()
        assert doc["daemon_running"] is True and doc["daemon_pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


def test_status_watch_refreshes_until_interrupted(done: DataDir) -> None:
    """status --watch on a terminal draws the box and exits 130 on Ctrl+C (piped, it prints JSON lines)."""
    main, tty = pty.openpty()
    proc = subprocess.Popen(
        [binary("nkoctl"), "--data-dir", str(done.root), "status", "--watch", "--interval", "0.2"],
        stdout=tty,
        stderr=subprocess.PIPE,
        env=env(TERM="xterm", COLUMNS="120"),
    )
    os.close(tty)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"Pipeline Status" not in seen and time.monotonic() < deadline:
            if select.select([main], [], [], 0.5)[0]:
                seen += os.read(main, 65536)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert b"Pipeline Status" in seen


def test_plan_lists_order_and_reasons(done: DataDir) -> None:
    """plan --json: new manifest lines would run; completed and failed are skipped with why."""
    done.manifest([{"video_id": "e"}], append=True)
    r = done.ctl("plan", "--json")
    rows = {row["video_id"]: row for row in orjson.loads(r.stdout)}
    assert rows["e"]["action"] == "run" and rows["a"]["reason"] == "completed"
    assert rows["b"]["action"] == "skip" and "nkoctl retry b" in rows["b"]["reason"]
    assert "Plan for" in done.ctl("plan").stdout


def test_show_prints_one_video_history(done: DataDir) -> None:
    """show ID: status, error, and every event of that video."""
    r = done.ctl("show", "b")
    assert r.returncode == 0 and "b: failed" in r.stdout and "video_started" in r.stdout and "video_failed" in r.stdout
    assert done.ctl("show", "zz").returncode == 1
    assert done.ctl("show", "../x").returncode == 2


def test_log_prints_events_readably_and_tails(done: DataDir) -> None:
    """log prints every event; -n N only the last N; --json raw lines."""
    all_lines = done.ctl("log").stdout.splitlines()
    assert len(all_lines) == len(done.events())
    last = done.ctl("log", "-n", "2").stdout.splitlines()
    assert last == all_lines[-2:]
    raw = done.ctl("log", "--json", "-n", "1").stdout
    assert orjson.loads(raw)["type"] == "daemon_stopped"


def test_log_follow_prints_new_events(tmp_path: Path) -> None:
    """log -f keeps printing events as the daemon appends them."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "a"}])
    d.root.mkdir(exist_ok=True)
    follower = subprocess.Popen(
        [binary("nkoctl"), "--data-dir", str(d.root), "log", "-f"], stdout=subprocess.PIPE, text=True, env=env()
    )
    try:
        assert d.run().returncode == 0
        time.sleep(1.0)
    finally:
        follower.send_signal(signal.SIGINT)
        out, _ = follower.communicate(timeout=10)
    assert "video_completed" in out and "daemon_stopped" in out


def test_reset_refuses_while_the_daemon_runs_then_archives(tmp_path: Path) -> None:
    """reset: refused (naming the PID) while nkod runs; afterwards archives log and outputs; next run starts fresh."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "a"}, {"video_id": "b", "sleep": 30}])
    proc = d.start()
    try:
        wait_for(lambda: "b" in d.status()["running"], what="b to run")
        r = d.ctl("reset", "--yes")
        assert r.returncode == 1 and f"PID {proc.pid}" in r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    r = d.ctl("reset", input="no\n")
    assert r.returncode == 1 and d.log.exists()
    r = d.ctl("reset", input="reset\n")
    assert r.returncode == 0 and not d.log.exists()
    (archive,) = (d.root / "archive").iterdir()
    assert (archive / "events.jsonl").exists() and (archive / "output" / "a").is_dir()
    d.manifest([{"video_id": "a"}])
    assert d.run().returncode == 0 and d.completed_count() == {"a": 1}


def test_fsck_explains_a_torn_tail(done: DataDir) -> None:
    """fsck names a torn tail and repairs it on request."""
    with open(done.log, "ab") as f:
        f.write(b'{"v":1,"seq":')
    r = done.ctl("fsck")
    assert r.returncode == 4 and "torn tail" in r.stderr
    assert done.ctl("status").returncode == 0  # status still works, with a note
    assert done.ctl("fsck", "--repair").returncode == 0
    assert done.ctl("fsck").returncode == 0


def test_missing_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    """status on a directory that does not exist says so and exits 1."""
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(tmp_path / "nope"), "status"], capture_output=True, text=True, env=env()
    )
    assert r.returncode == 1 and "no such data directory" in r.stderr


def test_data_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-dir, then $NKOD_DATA_DIR, then $STATE_DIRECTORY, then ./data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NKOD_DATA_DIR", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert resolve_data_dir(Path("x")) == Path("x")
    (tmp_path / "data").mkdir()
    assert resolve_data_dir(None) == Path("data")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/nkod")
    assert resolve_data_dir(None) == Path("/var/lib/nkod")
    monkeypatch.setenv("NKOD_DATA_DIR", "/srv/nkod")
    assert resolve_data_dir(None) == Path("/srv/nkod")


def test_tail_offset_finds_the_last_lines(tmp_path: Path) -> None:
    """tail_offset(n) points at the start of the n-th line from the end."""
    p = tmp_path / "f"
    p.write_bytes(b"a\nbb\nccc\n")
    assert [tail_offset(p, n) for n in (0, 1, 2, 3, 9)] == [9, 5, 2, 0, 0]
