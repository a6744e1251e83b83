"""Files that are not what they seem, and permissions: FIFOs, devices, huge files and symlinks in the
data dir; a read-only checkpoints/; output/ on its own file system; requests made by root.

Real binaries, real files, real mounts (as root; skipped with the reason otherwise), real users.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from nkod.fsutil import NotRegularFileError, read_regular
from tests.helpers import DataDir, env, run_with_peak_rss, service_data_dir, wait_for

MiB = 1 << 20


def _out(d: DataDir) -> str:
    return d.output_text()


def _stop(proc: subprocess.Popen[str], within: float = 15) -> int:
    """SIGTERM, and the exit code, which must come within `within` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"nkod ignored SIGTERM for {within} s") from None


def _run_bounded(args: list[str], limit_kib: int, timeout: float = 60) -> tuple[int, str, int]:
    """Run to the end; killed (and the test fails) if its memory passes `limit_kib` or time runs out.
    Returns (exit code, output, peak RSS in KiB of that process alone)."""
    return run_with_peak_rss(args, limit_kib=limit_kib, timeout=timeout)


def _needs_root_mount() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount (tmpfs, read-only bind mount)")


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


# -- 5: the manifest, snapshot.json, config and checkpoint as FIFOs and devices ------------------------


def test_fifo_manifest_is_reported_and_nkod_stays_responsive(tmp_path: Path) -> None:
    """A FIFO manifest at start: a clear problem, status/plan answer, a regular file later is read, SIGTERM stops."""
    d = DataDir(tmp_path / "data")
    manifest = d.root / "videos.jsonl"
    os.mkfifo(manifest)
    proc = d.start()
    try:
        wait_for(lambda: "manifest_unreadable" in _out(d), timeout=30, what="the manifest problem")
        assert "FIFO" in _out(d) and str(manifest) in _out(d), _out(d)
        status = d.ctl("status", "--json", timeout=20)
        assert status.returncode == 0, status.stderr
        assert "FIFO" in str(orjson.loads(status.stdout)["manifest_problems"])
        plan = d.ctl("plan", timeout=20)
        assert plan.returncode == 0 and "FIFO" in plan.stderr, plan.stdout + plan.stderr
        manifest.unlink()
        d.manifest([{"video_id": "after"}])
        wait_for(lambda: d.completed_count()["after"] == 1, timeout=30, what="the video of the fixed manifest")
    finally:
        code = _stop(proc)
    assert code == 0, _out(d)
    assert "Traceback" not in _out(d)


def test_manifest_swapped_for_a_fifo_keeps_the_loop_running(tmp_path: Path) -> None:
    """A manifest replaced by a FIFO while running: reported, the known videos still run, SIGTERM stops it."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "first", "sleep": 1.0}, {"video_id": "second", "sleep": 1.0}])
    proc = d.start()
    try:
        wait_for(lambda: "video_started" in d.types("first"), timeout=30, what="the first video to start")
        fifo = d.root / ".videos.fifo"
        os.mkfifo(fifo)
        os.rename(fifo, d.root / "videos.jsonl")
        wait_for(lambda: "manifest_unreadable" in _out(d), timeout=30, what="the manifest problem")
        assert d.ctl("status", "--json", timeout=20).returncode == 0
        wait_for(lambda: d.completed_count() == {"first": 1, "second": 1}, timeout=60, what="both videos")
    finally:
        code = _stop(proc)
    assert code == 0, _out(d)
    assert "Traceback" not in _out(d)


def test_manifest_symlinked_to_dev_zero_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """videos.jsonl -> /dev/zero: a clear 'character device' problem, not a memory blow-up."""
    d = DataDir(tmp_path / "data")
    (d.root / "videos.jsonl").symlink_to("/dev/zero")
    code, out, peak = _run_bounded(d.nkod_args("--once"), limit_kib=400 * 1024)
    assert code == 0, out
    assert "character device, not a regular file" in out, out
    assert peak < 200 * 1024, f"peak RSS {peak} KiB"
    status = d.ctl("status", "--json", timeout=20)
    assert "character device" in str(orjson.loads(status.stdout)["manifest_problems"])


def test_fifo_snapshot_is_ignored_with_a_warning(tmp_path: Path) -> None:
    """snapshot.json as a FIFO: nkod and nkoctl status replay the log instead of hanging."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "one"}])
    assert d.run(timeout=60).returncode == 0
    snap = d.root / "snapshot.json"
    snap.unlink()
    os.mkfifo(snap)
    status = d.ctl("status", "--json", timeout=20)
    assert status.returncode == 0 and orjson.loads(status.stdout)["completed"] == 1, status.stderr
    d.manifest([{"video_id": "two"}], append=True)
    r = d.run(timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "snapshot_ignored" in r.stdout and "FIFO" in r.stdout, r.stdout
    assert d.completed_count() == {"one": 1, "two": 1}


def test_fifo_config_and_checkpoint_are_refused_at_once(tmp_path: Path) -> None:
    """A FIFO given as --config or to import-checkpoint: a clear error naming it, no hang."""
    d = DataDir(tmp_path / "data")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = subprocess.run(
        [*d.nkod_args("--once")[:3], "--config", str(fifo)], capture_output=True, text=True, timeout=20, env=env()
    )
    assert r.returncode == 2 and "FIFO" in r.stdout + r.stderr and str(fifo) in r.stdout + r.stderr
    r = d.ctl("import-checkpoint", str(fifo), timeout=20)
    assert r.returncode == 1 and "FIFO" in r.stderr and str(fifo) in r.stderr, r.stderr


# -- 6: a huge request file ---------------------------------------------------------------------------


def test_huge_request_file_is_rejected_without_reading_it(tmp_path: Path) -> None:
    """A 1 GiB (sparse) file in requests/ is rejected by its size; the daemon's peak RSS stays small."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "v1"}])
    (d.root / "requests").mkdir()
    big = d.root / "requests" / "00000000000000000001-big.json"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    code, out, peak = _run_bounded(d.nkod_args("--once"), limit_kib=700 * 1024)
    assert code == 0, out
    assert peak < 200 * 1024, f"peak RSS {peak} KiB"
    reason = (d.root / "requests" / "rejected" / (big.name + ".reason.txt")).read_text()
    assert "larger than" in reason and str(big) in reason, reason
    assert d.completed_count() == {"v1": 1}


# -- 7: requests/rejected as a symlink to a directory outside ------------------------------------------


def test_rejected_symlink_outside_is_never_written_through(tmp_path: Path) -> None:
    """requests/rejected -> a dir outside: nkod makes a real rejected/ and writes nothing outside."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "v1"}])
    outside = tmp_path / "outside"
    outside.mkdir()
    (d.root / "requests").mkdir()
    (d.root / "requests" / "rejected").symlink_to(outside)
    (d.root / "requests" / "00000000000000000001-bad.json").write_bytes(b"{not json")
    r = d.run(timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(outside.iterdir()) == []
    rejected = d.root / "requests" / "rejected"
    assert rejected.is_dir() and not rejected.is_symlink()
    assert sorted(os.listdir(rejected)) == ["00000000000000000001-bad.json", "00000000000000000001-bad.json.reason.txt"]
    assert d.completed_count() == {"v1": 1}


# -- 8: read-only checkpoints/ with a leftover temp file ------------------------------------------------


def test_read_only_checkpoints_with_leftover_temp_is_a_warning(tmp_path: Path) -> None:
    """A read-only checkpoints/ holding a .x.tmp at start-up: warnings, no traceback, the work goes on."""
    _needs_root_mount()
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "v1"}])
    assert d.run(timeout=60).returncode == 0
    checkpoints = d.root / "checkpoints"
    (checkpoints / ".x.tmp").write_bytes(b"half")
    d.manifest([{"video_id": "v2"}], append=True)
    subprocess.run(["mount", "--bind", str(checkpoints), str(checkpoints)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(checkpoints)], check=True)
        r = d.run(timeout=60)
    finally:
        _umount(checkpoints)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out
    assert "temp_file_not_removed" in out and "views_failed" in out, out
    assert d.completed_count() == {"v1": 1, "v2": 1}


# -- 9: output/ on its own file system -------------------------------------------------------------------


@pytest.fixture
def output_mount(tmp_path: Path) -> Iterator[DataDir]:
    """A data dir whose output/ is a tmpfs mounted there (another file system than work/)."""
    _needs_root_mount()
    d = DataDir(tmp_path / "data")
    output = d.root / "output"
    output.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(output)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        _umount(output)


def test_output_on_another_file_system_commits(output_mount: DataDir) -> None:
    """output/ as a separate mount: outputs are staged on its file system and committed, no EXDEV."""
    d = output_mount
    d.manifest([{"video_id": "a"}, {"video_id": "b"}])
    r = d.run(timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.completed_count() == {"a": 1, "b": 1}
    for vid in ("a", "b"):
        assert (d.root / "output" / vid / "summary.json").is_file()


def test_reset_with_output_as_a_mount_point_archives_and_says_so(output_mount: DataDir) -> None:
    """nkoctl reset with output/ a mount point: log archived, outputs moved within that fs, clearly said."""
    d = output_mount
    d.manifest([{"video_id": "a"}])
    assert d.run(timeout=60).returncode == 0
    r = d.ctl("reset", "--yes", timeout=30)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "mount point" in r.stderr, r.stderr
    (stamp,) = os.listdir(d.root / "archive")
    assert (d.root / "archive" / stamp / "events.jsonl").is_file()
    assert (d.root / "output" / ".archive" / stamp / "a" / "summary.json").is_file()
    assert not (d.root / "output" / "a").exists()
    r2 = d.run(timeout=60)  # a fresh run makes the video again
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert d.completed_count() == {"a": 1}


# -- 10: requests made by root for a service that runs as another user -----------------------------------


@pytest.fixture
def service_dir() -> Iterator[tuple[DataDir, pwd.struct_passwd]]:
    """A data dir like systemd's StateDirectory: owned by `nobody`, mode 2770."""
    with service_data_dir("nkod-perm-") as made:
        yield made


def _run_as(d: DataDir, user: pwd.struct_passwd) -> subprocess.CompletedProcess[str]:
    """`nkod --once` as `user`. Where this Python lives in a directory only root may enter (/root), the
    process keeps CAP_DAC_READ_SEARCH (read and search anything) so it can start; writing and deleting
    stay those of `user`, which is what these tests are about."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to run nkod as another user")
    prefix = [
        setpriv,
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
    return subprocess.run(
        prefix + d.nkod_args("--once"), capture_output=True, text=True, timeout=60, env=env(), cwd="/"
    )


def _manifest_as(d: DataDir, user: pwd.struct_passwd, videos: list[dict[str, str]]) -> None:
    d.manifest(videos)
    os.chown(d.root / "videos.jsonl", user.pw_uid, user.pw_gid)


def test_root_nkoctl_makes_requests_the_service_can_consume(service_dir: tuple[DataDir, pwd.struct_passwd]) -> None:
    """sudo nkoctl import-checkpoint before the first start: requests/ and the file belong to the service user."""
    d, user = service_dir
    _manifest_as(d, user, [{"video_id": "old1"}, {"video_id": "new1"}])
    checkpoint = d.root.parent / "extraction_checkpoint.json"
    checkpoint.write_bytes(orjson.dumps({"completed_videos": ["old1"], "failed_videos": []}))
    r = d.ctl("import-checkpoint", str(checkpoint), timeout=30)
    assert r.returncode == 0, r.stderr
    requests = d.root / "requests"
    (request,) = requests.iterdir()
    for made in (requests, request):
        st = made.stat()
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), made
    assert requests.stat().st_mode & 0o7777 == 0o2770
    r = _run_as(d, user)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(requests.iterdir()) == []
    assert d.types("old1") == ["video_imported"]
    assert d.completed_count() == {"new1": 1}


def test_request_the_service_cannot_delete_is_handled_once(service_dir: tuple[DataDir, pwd.struct_passwd]) -> None:
    """Requests in a root-owned requests/: applied or rejected once, one clear error, work runs, no crash loop."""
    d, user = service_dir
    _manifest_as(d, user, [{"video_id": "old1"}, {"video_id": "new1"}])
    requests = d.root / "requests"
    requests.mkdir()
    requests.chmod(0o2755)  # what sudo nkoctl made before the fix: root's, not writable by the service
    good = requests / "00000000000000000001-import.json"
    good.write_bytes(orjson.dumps({"type": "import_checkpoint", "completed": ["old1"], "failed": []}))
    bad = requests / "00000000000000000002-bad.json"
    bad.write_bytes(b"{not json")
    for f in (good, bad):
        f.chmod(0o644)
    for run in (1, 2):  # the second run is the restart that used to re-apply and re-reject
        r = _run_as(d, user)
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"run {run}: {out}"
        assert "Traceback" not in out
        assert out.count("request_not_removed") == 2, out
        assert "chown" in out and str(requests) in out
    assert good.exists() and bad.exists()
    assert d.types("old1") == ["video_imported"]
    assert [e["file"] for e in d.events() if e["type"] == "request_rejected"] == [bad.name]
    assert d.completed_count() == {"new1": 1}


def test_requests_dir_symlinked_outside_is_moved_aside(tmp_path: Path) -> None:
    """requests/ -> a dir outside: moved aside with a warning; rejections land inside the data dir."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "v1"}])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "00000000000000000001-bad.json").write_bytes(b"{not json")
    (d.root / "requests").symlink_to(outside)
    r = d.run(timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "requests_symlink_moved_aside" in r.stdout, r.stdout
    assert os.listdir(outside) == ["00000000000000000001-bad.json"]
    assert (d.root / "requests").is_dir() and not (d.root / "requests").is_symlink()
    assert d.completed_count() == {"v1": 1}


def test_fifo_event_log_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    """events.jsonl as a FIFO: nkod exits 4 and nkoctl status fails at once, both naming the file."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "v1"}])
    os.mkfifo(d.log)
    r = d.run(timeout=30)
    assert r.returncode == 4 and "FIFO" in r.stdout and str(d.log) in r.stdout, r.stdout + r.stderr
    s = d.ctl("status", "--json", timeout=20)
    assert s.returncode == 4 and "FIFO" in s.stderr, s.stderr


def test_read_regular_refuses_what_is_not_a_bounded_regular_file(tmp_path: Path) -> None:
    """The one bounded reader: regular files (and symlinks to them) read; FIFO, device, dir, size refused."""
    regular = tmp_path / "f"
    regular.write_bytes(b"x" * 100)
    link = tmp_path / "link"
    link.symlink_to(regular)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_regular(regular, 100) == b"x" * 100
    assert read_regular(link, 100) == b"x" * 100
    refused = [
        (fifo, {}, "is a FIFO (named pipe), not a regular file"),
        (Path("/dev/zero"), {}, "is a character device, not a regular file"),
        (tmp_path, {}, "is a directory, not a regular file"),
        (link, {"follow_symlinks": False}, "is a symlink, not a regular file"),
        (regular, {}, "is 100 bytes, larger than the 99 allowed"),
    ]
    for path, options, why in refused:
        with pytest.raises(NotRegularFileError) as caught:
            read_regular(path, 99 if path == regular else 100, **options)
        assert caught.value.strerror == why and caught.value.filename == str(path)
