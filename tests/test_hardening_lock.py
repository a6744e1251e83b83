"""Issue 8, item 4: the single-writer lock holds even when ``nkod.lock`` is deleted or replaced."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import DataDir, wait_for


def videos(n: int, **extra: object) -> list[dict[str, object]]:
    return [{"video_id": f"v{i:02d}", **extra} for i in range(1, n + 1)]


def started_order(d: DataDir) -> list[str]:
    return [e["video_id"] for e in d.events() if e["type"] == "video_started"]


def assert_log_valid(d: DataDir) -> None:
    """Every line parses and seq runs 1..n without a repeat or a gap (what one writer guarantees)."""
    lines = [line for line in d.log.read_bytes().split(b"\n") if line]
    assert [e["seq"] for e in d.events()] == list(range(1, len(lines) + 1))
    assert d.ctl("fsck").returncode == 0


def lock_file_pid(d: DataDir) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((d.root / "nkod.lock").read_text())
    return None


def stop(proc: subprocess.Popen[str]) -> int:
    """SIGTERM twice (the second stops at once), then the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


@pytest.fixture
def d(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "data")


def test_deleting_nkod_lock_lets_no_second_daemon_in_and_status_still_sees_the_holder(d: DataDir) -> None:
    """nkod.lock deleted while nkod runs: a second nkod exits 3 naming the first's PID, status says running
    with that PID, fsck --repair and reset refuse; the file comes back, nothing runs twice, seq stays contiguous."""
    d.manifest(videos(3, sleep=1.0))
    first = d.start()
    try:
        wait_for(lambda: "v01" in started_order(d), what="v01 to start")
        # Stopped, the daemon cannot put the file back: what follows sees only the deletion.
        first.send_signal(signal.SIGSTOP)
        try:
            (d.root / "nkod.lock").unlink()
            second = d.run(timeout=60)
            assert second.returncode == 3, second.stdout + second.stderr
            assert f"another nkod holds the data directory (PID {first.pid})" in second.stdout + second.stderr
            doc = d.status()
            assert doc["daemon_running"] is True and doc["daemon_pid"] == first.pid
            for command in (("fsck", "--repair"), ("reset", "--yes")):
                r = d.ctl(*command)
                assert r.returncode != 0, r.stdout + r.stderr
                assert f"nkod is running (PID {first.pid})" in r.stderr
            assert not (d.root / "archive").exists()
        finally:
            first.send_signal(signal.SIGCONT)
        wait_for(lambda: lock_file_pid(d) == first.pid, what="nkod.lock to be put back with the PID")
        wait_for(lambda: d.completed_count() == {"v01": 1, "v02": 1, "v03": 1}, timeout=60, what="all to complete")
    finally:
        assert stop(first) == 0
    assert "lock_file_changed" in d.output_text()
    assert started_order(d) == ["v01", "v02", "v03"]
    assert d.types().count("daemon_started") == 1
    assert_log_valid(d)


def test_a_lock_file_that_cannot_be_put_back_is_reported_once_and_the_lock_still_holds(d: DataDir) -> None:
    """nkod.lock replaced by a directory: one warning, the daemon keeps working, and status and a second
    nkod still find the holder through the data directory's lock."""
    d.manifest(videos(2, sleep=1.0))
    first = d.start()
    try:
        wait_for(lambda: "v01" in started_order(d), what="v01 to start")
        (d.root / "nkod.lock").unlink()
        (d.root / "nkod.lock").mkdir()
        wait_for(lambda: "lock_file_changed" in d.output_text(), what="the warning")
        doc = d.status()
        assert doc["daemon_running"] is True and doc["daemon_pid"] == first.pid
        second = d.run(timeout=60)
        assert second.returncode == 3 and f"PID {first.pid}" in second.stdout + second.stderr
        wait_for(lambda: d.completed_count() == {"v01": 1, "v02": 1}, timeout=60, what="both to complete")
    finally:
        assert stop(first) == 0
    assert d.output_text().count("lock_file_changed") == 1
    assert_log_valid(d)


@pytest.mark.parametrize("round_", range(3))
def test_two_nkod_started_together_while_nkod_lock_is_removed_repeatedly_exactly_one_runs(
    tmp_path: Path, round_: int
) -> None:
    """Two nkod started at the same moment on a fresh data dir, nkod.lock unlinked in a tight loop all the
    while: one exits 3 naming the other, which alone writes the log."""
    d = DataDir(tmp_path / "data")
    d.manifest(videos(2, sleep=30))
    removing = threading.Event()
    removing.set()

    def remove_lock_file() -> None:
        while removing.is_set():
            with contextlib.suppress(FileNotFoundError):
                (d.root / "nkod.lock").unlink()
            time.sleep(0.001)

    remover = threading.Thread(target=remove_lock_file)
    remover.start()
    procs = [d.start(), d.start()]
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs), timeout=30, what="one nkod to give up")
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        assert loser.returncode == 3, d.output_text()
        assert f"PID {winner.pid}" in d.output_text()
        wait_for(lambda: "v01" in started_order(d), what="v01 to start")
        assert winner.poll() is None
    finally:
        removing.clear()
        remover.join()
        for p in procs:
            stop(p)
    assert d.types().count("daemon_started") == 1
    assert_log_valid(d)


def test_an_older_nkod_holding_only_nkod_lock_keeps_a_new_one_out(d: DataDir) -> None:
    """A process that flocks only nkod.lock (an nkod from before the directory lock): nkod exits 3 naming it."""
    d.manifest(videos(1))
    with open(d.root / "nkod.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(f"{os.getpid()}\n")
        f.flush()
        r = d.run(timeout=60)
        assert r.returncode == 3 and f"PID {os.getpid()}" in r.stdout + r.stderr
        assert d.status()["daemon_pid"] == os.getpid()
    assert d.run().returncode == 0
    assert d.completed_count() == {"v01": 1}
