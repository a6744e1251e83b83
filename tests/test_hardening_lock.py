"""Issue 8, item 4: the single-writer lock holds even when ``nkod.lock`` is deleted or replaced."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from nkod import manifest
from tests.helpers import DataDir, run_with_peak_rss, stop_now, wait_for


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
        assert stop_now(first) == 0
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
        assert stop_now(first) == 0
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
            stop_now(p)
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


# -- also seen: the manifest's BOM and its line length ----------------------------------------------


def test_a_manifest_saved_with_a_utf8_bom_processes_all_its_lines(d: DataDir) -> None:
    """videos.jsonl starting with a UTF-8 byte order mark (Windows editors): its first line counts too."""
    d.manifest(videos(3))
    (d.root / "videos.jsonl").write_bytes(b"\xef\xbb\xbf" + (d.root / "videos.jsonl").read_bytes())
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.completed_count() == {"v01": 1, "v02": 1, "v03": 1}
    assert d.status()["manifest_problems"] == []


def peak_rss_mib_of_nkod_once(d: DataDir) -> tuple[int, float]:
    """Run `nkod --once` to the end; its exit status and its peak RSS in MiB (largest of it and its workers)."""
    code, _out, peak_kib = run_with_peak_rss(d.nkod_args("--once"), timeout=120)
    return code, peak_kib / 1024


def test_a_huge_manifest_line_is_named_and_skipped_without_the_daemon_holding_it(tmp_path: Path) -> None:
    """A 64 MiB manifest line between valid ones: one problem naming file and line, every valid line runs,
    and nkod's peak memory stays within a few MiB of a run without that line (it used to hold it 3 times)."""
    small = DataDir(tmp_path / "small")
    small.manifest(videos(2))
    code, baseline = peak_rss_mib_of_nkod_once(small)
    assert code == 0

    d = DataDir(tmp_path / "data")
    head, tail = b'{"video_id": "huge", "path": "none.mp4", "pad": "', b'"}'
    with open(d.root / "videos.jsonl", "wb") as f:
        f.write(b'{"video_id": "v01", "path": "none.mp4"}\n' + head)
        for _ in range(64):
            f.write(b"y" * (1 << 20))
        f.write(tail + b'\n{"video_id": "v02", "path": "none.mp4"}\n')
    code, peak = peak_rss_mib_of_nkod_once(d)
    assert code == 0
    assert d.completed_count() == {"v01": 1, "v02": 1}
    problems = d.status()["manifest_problems"]
    assert [(p["path"], p["line"]) for p in problems] == [(str(d.root / "videos.jsonl"), 2)]
    assert f"line is {len(head) + (64 << 20) + len(tail)} bytes" in problems[0]["error"]
    assert peak - baseline < 16, f"peak RSS {peak:.0f} MiB, {baseline:.0f} MiB without the huge line"


def test_a_huge_last_line_without_a_newline_is_one_problem(tmp_path: Path) -> None:
    """An over-long line that runs to the end of the file (no newline): named, and the lines before it kept."""
    path = tmp_path / "videos.jsonl"
    path.write_bytes(b'{"video_id": "a", "path": "x"}\n' + b"z" * (3 << 20))
    m = manifest.load(path)
    assert list(m.entries) == ["a"]
    too_long = f"line is {3 << 20} bytes (at most {manifest.MAX_LINE_BYTES})"
    assert [(p.line, p.error) for p in m.problems] == [(2, too_long)]
