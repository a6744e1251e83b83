"""Full disk and read-only data directory, on a small tmpfs the test mounts (needs root and mount(2)).

The data dir is the tmpfs itself; nkod's stdout and config live beside it on the real disk, so the
daemon can still say what went wrong. Skipped, with the reason, where mounting is not permitted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nkod import eventlog
from tests.helpers import DataDir, kill9, run_mount, small_tmpfs, wait_for
from tests.torture_helpers import assert_finished_exactly_once, assert_fsck_ok, assert_status_works

EXIT_STORAGE = 75


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at tmp_path/mnt for the test, unmounted after."""
    with small_tmpfs(tmp_path / "mnt", "4m", "full-disk and read-only tests") as mnt:
        yield mnt


def _fill(mnt: Path) -> Path:
    """Fill the file system to the last byte; returns the filler file (delete it to free the space)."""
    filler = mnt / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def _remount(mnt: Path, mode: str) -> None:
    r = run_mount(["mount", "-o", f"remount,{mode}", str(mnt)])
    assert r.returncode == 0, r.stderr


def _started(d: DataDir, n: int = 1) -> bool:
    try:
        events, _ = eventlog.read_all(d.log)
    except OSError:
        return False
    return sum(1 for e in events if e["type"] == "video_started") >= n


def _wait_exit(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill9(proc)
        raise AssertionError(f"nkod did not stop within {timeout} s") from None


def test_full_disk_at_commit_stops_with_exit_75_and_work_resumes_after_space_is_freed(small_fs: Path) -> None:
    """Disk fills while videos run: nkod exits 75 naming the problem, the log stays valid, and after the
    space is freed a restart completes every video exactly once."""
    d = DataDir(small_fs, workers=2)
    ids = [f"d{i}" for i in range(6)]
    d.manifest([{"video_id": vid, "frames": 0, "sleep": 1.0} for vid in ids])  # workers write no data
    proc = d.start()
    wait_for(lambda: _started(d, 2), timeout=30, what="two videos started")
    filler = _fill(small_fs)
    code = _wait_exit(proc)
    said = d.output_text()
    assert code == EXIT_STORAGE, said[-3000:]
    assert "storage_failed" in said and "No space left on device" in said, said[-3000:]
    events, result = eventlog.read_all(d.log)
    assert result.torn is None
    assert not [e for e in events if e["type"] == "video_completed"], "a completion was recorded without its output"
    assert_fsck_ok(d)
    assert_status_works(d)
    filler.unlink()
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert_finished_exactly_once(d, ids)


def test_read_only_data_dir_at_start_exits_75_with_a_clear_error(small_fs: Path) -> None:
    """nkod started on a read-only data dir exits 75 with one clear line, no traceback; status still works."""
    d = DataDir(small_fs, workers=1)
    d.manifest([{"video_id": "ro1", "frames": 1}])
    assert d.run().returncode == 0
    _remount(small_fs, "ro")
    r = d.run()
    said = r.stdout + r.stderr
    assert_status_works(d)
    assert r.returncode == EXIT_STORAGE, said
    assert "Traceback" not in said and "Read-only file system" in said, said


def test_full_disk_while_a_worker_writes_stops_nkod_instead_of_failing_videos(small_fs: Path) -> None:
    """Disk full while workers write frames: no video is marked failed for it; nkod stops with exit 75."""
    d = DataDir(small_fs, workers=2)
    ids = [f"w{i}" for i in range(8)]
    d.manifest([{"video_id": vid, "frames": 20, "sleep": 0.5} for vid in ids])
    proc = d.start()
    wait_for(lambda: _started(d, 2), timeout=30, what="two videos started")
    filler = _fill(small_fs)
    try:
        code = _wait_exit(proc, timeout=10)
    finally:
        if proc.poll() is None:
            kill9(proc)
    events, _ = eventlog.read_all(d.log)
    failed = [e["video_id"] for e in events if e["type"] == "video_failed"]
    assert not failed, f"videos failed permanently because the disk was full: {failed}"
    assert code == EXIT_STORAGE
    filler.unlink()
    assert d.run().returncode == 0
    assert_finished_exactly_once(d, ids)


def test_nkoctl_reads_a_read_only_data_dir(small_fs: Path) -> None:
    """A read-only data dir (say, a copy mounted for inspection): status, fsck, plan and show all work."""
    d = DataDir(small_fs, workers=1)
    d.manifest([{"video_id": "i1", "frames": 1}, {"video_id": "i2", "frames": 2}])
    assert d.run().returncode == 0
    _remount(small_fs, "ro")
    assert assert_status_works(d)["completed"] == 2
    assert_fsck_ok(d)
    for args in (("plan",), ("show", "i1"), ("log", "-n", "3")):
        r = d.ctl(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)


def test_full_disk_at_log_append_cuts_the_partial_write_and_exits_75(small_fs: Path, tmp_path: Path) -> None:
    """The log append itself hits ENOSPC: the partial write is cut off (no torn tail), nkod exits 75;
    after space is freed the same events are appended and the work is done."""
    d = DataDir(small_fs, workers=2)
    outside = tmp_path / "videos.jsonl"  # the manifest lives on the real disk, linked into the data dir
    outside.write_bytes(b"")
    (small_fs / "videos.jsonl").symlink_to(outside)
    d.manifest([{"video_id": "a0", "frames": 1}])
    proc = d.start()
    wait_for(lambda: "a0" in [e.get("video_id") for e in eventlog.read_all(d.log)[0]], what="a0 ran")
    wait_for(lambda: d.completed_count()["a0"] == 1, what="a0 completed")
    before = d.log.read_bytes()
    filler = _fill(small_fs)
    # 100 new 60-character ids: one videos_added line larger than the page the log still has room in.
    ids = [f"{i:03d}-" + "x" * 56 for i in range(100)]
    d.manifest([{"video_id": vid, "frames": 0} for vid in ids], append=True)
    code = _wait_exit(proc)
    said = d.output_text()
    assert code == EXIT_STORAGE, said[-3000:]
    assert "storage_failed" in said and "nothing was recorded" in said, said[-3000:]
    assert d.log.read_bytes() == before, "the log changed although the append failed"
    assert_fsck_ok(d)
    filler.unlink()
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert_finished_exactly_once(d, ["a0", *ids])
