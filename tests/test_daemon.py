"""End to end through the real `nkod` and `nkoctl` binaries: the seed's recovery scenarios and more."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.helpers import DataDir, env, kill9, processes_under, wait_for


def videos(n: int, **extra: object) -> list[dict[str, object]]:
    return [{"video_id": f"v{i:02d}", **extra} for i in range(1, n + 1)]


def started_order(d: DataDir) -> list[str]:
    return [e["video_id"] for e in d.events() if e["type"] == "video_started"]


def has_started(d: DataDir, vid: str) -> bool:
    return vid in started_order(d)


@pytest.fixture
def d(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "data")


def test_once_processes_everything_and_exits_0(d: DataDir) -> None:
    """--once: every video completed once, outputs committed with a summary, seed views written."""
    d.manifest(videos(4, frames=2))
    r = d.run("--workers", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.completed_count() == {f"v0{i}": 1 for i in range(1, 5)}
    for i in range(1, 5):
        out = d.root / "output" / f"v0{i}"
        assert sorted(p.name for p in (out / "frames").iterdir()) == ["0000.txt", "0001.txt"]
        assert orjson.loads((out / "summary.json").read_bytes())["counts"]["frames"] == 2
    cp = orjson.loads((d.root / "checkpoints" / "extraction_checkpoint.json").read_bytes())
    assert sorted(cp["completed_videos"]) == ["v01", "v02", "v03", "v04"] and cp["current_video"] is None
    progress = orjson.loads((d.root / "checkpoints" / "extraction_progress.json").read_bytes())
    assert progress["total_videos"] == 4 and progress["total_frames"] == 8
    assert not list((d.root / "work").iterdir())


def test_a_second_run_repeats_nothing(d: DataDir) -> None:
    """Running again after everything completed starts no video."""
    d.manifest(videos(2))
    assert d.run().returncode == 0
    assert d.run().returncode == 0
    assert started_order(d) == ["v01", "v02"]


def test_scenario_1_power_outage_redoes_the_interrupted_video_first(d: DataDir) -> None:
    """kill -9 during video 3: on restart 1–2 are skipped, 3 is redone first, then 4, 5."""
    vs = videos(5, sleep=0.6)
    vs[2]["sleep"] = 60  # long enough that an orphaned worker would still be running
    d.manifest(vs)
    proc = d.start()
    wait_for(lambda: has_started(d, "v03"), what="v03 to start")
    wait_for(lambda: bool(processes_under(d.root / "work")), what="v03's worker")
    kill9(proc)
    # the worker dies with the daemon (PR_SET_PDEATHSIG): no orphan keeps working unrecorded
    wait_for(lambda: not processes_under(d.root / "work"), timeout=10, what="the orphaned worker to die")
    before = d.completed_count()
    assert before == {"v01": 1, "v02": 1}
    vs[2]["sleep"] = 0.6
    d.manifest(vs)
    r = d.run()
    assert r.returncode == 0, r.stdout
    types = [(e["type"], e.get("video_id")) for e in d.events()]
    restart = max(i for i, t in enumerate(types) if t[0] == "daemon_started")
    after = types[restart:]
    assert ("video_interrupted", "v03") in after
    assert [vid for t, vid in after if t == "video_started"] == ["v03", "v04", "v05"]
    assert d.completed_count() == {f"v0{i}": 1 for i in range(1, 6)}


def test_scenario_2_rate_limit_retries_then_fails_and_run_continues(d: DataDir) -> None:
    """Transient failures on 3 retry with backoff, then fail; 4 and 5 still run; `nkoctl retry` runs only 3."""
    d = DataDir(d.root, max_attempts=3, backoff_initial=0.1)
    vs = videos(5)
    vs[2]["fail"] = "transient"
    d.manifest(vs)
    assert d.run().returncode == 0
    assert d.types("v03") == ["video_started", "video_retry_scheduled"] * 2 + ["video_started", "video_failed"]
    assert set(d.completed_count()) == {"v01", "v02", "v04", "v05"}
    status = d.status()
    assert [(f["id"], f["attempts"]) for f in status["failed"]] == [("v03", 3)]
    assert "429" in status["failed"][0]["error"]
    # the cause is fixed (the manifest line no longer fails), then retry
    vs[2].pop("fail")
    d.manifest(vs)
    r = d.ctl("retry", "v03")
    assert r.returncode == 0 and "queued" in r.stderr
    n_before = len(started_order(d))
    assert d.run().returncode == 0
    assert started_order(d)[n_before:] == ["v03"]
    assert d.completed_count()["v03"] == 1 and d.status()["failed"] == []


def test_scenario_3_sigterm_lets_the_running_video_finish_then_exits_0(d: DataDir) -> None:
    """SIGTERM during 2: no new video starts, 2 finishes within the grace period, exit 0; restart goes on with 3."""
    d.manifest(videos(4, sleep=1.0))
    proc = d.start()
    wait_for(lambda: has_started(d, "v02"), what="v02 to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert d.completed_count() == {"v01": 1, "v02": 1}
    assert started_order(d) == ["v01", "v02"]
    assert d.events()[-1]["type"] == "daemon_stopped"
    assert d.run().returncode == 0
    assert started_order(d) == ["v01", "v02", "v03", "v04"]


def test_sigterm_past_the_grace_period_records_interrupted_and_redoes_it_first(tmp_path: Path) -> None:
    """A video longer than the grace period is stopped, recorded interrupted, exit 0, and redone first."""
    d = DataDir(tmp_path / "data", stop_grace=0.5)
    vs = videos(3)
    vs[0]["sleep"] = 30
    d.manifest(vs)
    proc = d.start()
    wait_for(lambda: has_started(d, "v01"), what="v01 to start")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - t0 < 10
    interrupted = [e for e in d.events() if e["type"] == "video_interrupted"]
    assert [e["video_id"] for e in interrupted] == ["v01"] and "grace" in interrupted[0]["reason"]
    assert d.status()["interrupted"] == ["v01"]
    vs[0]["sleep"] = 0
    d.manifest(vs)
    assert d.run().returncode == 0
    assert started_order(d) == ["v01", "v01", "v02", "v03"]


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    """Second SIGTERM during the grace period: workers stopped now, recorded interrupted, exit 0."""
    d = DataDir(tmp_path / "data", stop_grace=60.0)
    d.manifest(videos(1, sleep=30))
    proc = d.start()
    wait_for(lambda: has_started(d, "v01"), what="v01 to start")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting for the video
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert d.types("v01") == ["video_started", "video_interrupted"]


def test_a_second_instance_is_refused_naming_the_pid(d: DataDir) -> None:
    """While nkod runs, another nkod on the same data dir exits non-zero at once with the PID."""
    d.manifest(videos(1, sleep=30))
    proc = d.start()
    try:
        wait_for(lambda: has_started(d, "v01"), what="v01 to start")
        r = d.run(timeout=20)
        assert r.returncode == 3
        assert f"PID {proc.pid}" in r.stdout + r.stderr
    finally:
        kill9(proc)
    # the kernel dropped the lock with the process: no stale lock
    d.manifest(videos(1))
    assert d.run().returncode == 0


@pytest.mark.parametrize(
    ("failpoint", "redone"),
    [("before_output_rename", True), ("after_output_rename", False), ("mid_append", False), ("after_append", False)],
)
def test_kill_in_the_commit_path_never_loses_or_repeats(tmp_path: Path, failpoint: str, redone: bool) -> None:
    """Killed at each point of the commit path: after restart every video is completed exactly once,
    and a video whose output was already renamed into place is not processed again."""
    d = DataDir(tmp_path / "data")
    d.manifest(videos(2))
    r = d.run(NKOD_FAILPOINT=failpoint)
    assert r.returncode == -9
    r = d.run()
    assert r.returncode == 0, r.stdout
    assert d.completed_count() == {"v01": 1, "v02": 1}
    assert started_order(d).count("v01") == (2 if redone else 1)
    if failpoint == "mid_append":
        assert "log_torn_tail" in r.stdout and any(e["type"] == "log_repaired" for e in d.events())
    assert d.ctl("fsck").returncode == 0


def test_kill_mid_snapshot_leaves_the_old_snapshot_usable(d: DataDir) -> None:
    """A crash while writing the snapshot never damages state: the next start replays fine and removes
    the half-written temp file."""
    d.manifest(videos(2))
    assert d.run(NKOD_FAILPOINT="mid_snapshot").returncode == -9
    assert list(d.root.glob(".*.tmp"))
    assert d.run().returncode == 0
    assert d.completed_count() == {"v01": 1, "v02": 1}
    assert not list(d.root.glob(".*.tmp"))


def test_manifest_problems_name_file_and_line_and_cost_nothing(d: DataDir) -> None:
    """Bad manifest lines are reported with file:line and skipped; valid lines are processed."""
    path = d.root / "videos.jsonl"
    path.write_bytes(
        b'{"video_id": "ok1", "path": "x"}\n'
        b"not json\n"
        b'{"video_id": "../etc", "path": "x"}\n'
        b'{"video_id": "ok1", "path": "y"}\n'
        b'{"path": "x"}\n'
        b'\xff\xfe{"video_id": "bin"}\n'
        b'{"video_id": "ok2", "url": "https://example.invalid/v"}\n'
        b'{"video_id": "nosrc"}\n'
    )
    d.manifest([{"video_id": "ok3"}], append=True)
    r = d.run()
    assert r.returncode == 0
    for line in (2, 3, 4, 5, 6, 8):
        assert f"videos.jsonl line={line}" in r.stdout or f"videos.jsonl:{line}" in r.stdout, line
    assert "ok1" in d.completed_count() and "ok3" in d.completed_count()
    problems = d.status()["manifest_problems"]
    assert [p["line"] for p in problems] == [2, 3, 4, 5, 6, 8]
    assert not (d.root.parent / "etc").exists()


def test_daemon_picks_up_manifest_lines_and_requests_while_running(d: DataDir) -> None:
    """Without --once the daemon stays up: appended manifest lines run; a retry request is applied."""
    vs = videos(2)
    vs[1]["fail"] = "permanent"
    d.manifest(vs)
    proc = d.start()
    try:
        wait_for(lambda: "video_failed" in d.types("v02"), what="v02 to fail")
        d.manifest([{"video_id": "v03"}], append=True)
        wait_for(lambda: d.completed_count().get("v03") == 1, what="v03 from the appended line")
        vs[1].pop("fail")
        d.manifest([*vs, {"video_id": "v03"}])
        r = d.ctl("retry")
        assert r.returncode == 0 and "done" in r.stderr, r.stderr
        wait_for(lambda: d.completed_count().get("v02") == 1, what="v02 after retry")
        assert not list((d.root / "requests").glob("*.json"))
        assert d.status()["daemon_running"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert d.status()["daemon_running"] is False


def test_a_request_made_while_the_daemon_is_down_is_applied_at_start(d: DataDir) -> None:
    """nkoctl retry with no daemon queues the request; the next start applies it."""
    vs = videos(1, fail="permanent")
    d.manifest(vs)
    assert d.run().returncode == 0
    d.manifest(videos(1))
    r = d.ctl("retry", "v01")
    assert r.returncode == 0 and "not running" in r.stderr
    assert d.run().returncode == 0
    assert d.completed_count() == {"v01": 1}


def test_a_bad_request_file_is_rejected_not_fatal(d: DataDir) -> None:
    """A malformed request is moved aside with its reason; the daemon goes on."""
    d.manifest(videos(1))
    (d.root / "requests").mkdir(parents=True)
    (d.root / "requests" / "0001-bad.json").write_text('{"type": "explode"}')
    assert d.run().returncode == 0
    assert (d.root / "requests" / "rejected" / "0001-bad.json").exists()
    rejected = [e for e in d.events() if e["type"] == "request_rejected"]
    assert "unknown request type" in rejected[0]["error"]
    assert d.completed_count() == {"v01": 1}


@pytest.mark.parametrize(
    ("fail", "kind", "text"),
    [
        ("crash", "transient", "worker process died (killed by signal 9)"),
        ("exit", "transient", "exit code 3"),
        ("raise", "permanent", "ValueError: bad value in processor"),
        ("permanent", "permanent", "unavailable"),
    ],
)
def test_worker_failures_are_recorded_with_a_reason(tmp_path: Path, fail: str, kind: str, text: str) -> None:
    """A worker that crashes, exits or raises cannot take the daemon down; the failure says why."""
    d = DataDir(tmp_path / "data", max_attempts=1)
    d.manifest([{"video_id": "bad", "fail": fail}, {"video_id": "good"}])
    assert d.run().returncode == 0
    (failed,) = [e for e in d.events() if e["type"] == "video_failed"]
    assert failed["error_kind"] == kind and text in failed["error"]
    assert d.completed_count() == {"good": 1}


def test_a_hung_video_times_out(tmp_path: Path) -> None:
    """Past video_timeout the worker is stopped and the failure is transient 'timed out'."""
    d = DataDir(tmp_path / "data", max_attempts=1, video_timeout=1.0)
    d.manifest([{"video_id": "slow", "fail": "hang"}])
    t0 = time.monotonic()
    assert d.run().returncode == 0
    assert time.monotonic() - t0 < 20
    (failed,) = [e for e in d.events() if e["type"] == "video_failed"]
    assert "timed out after 1 s" in failed["error"]


def test_import_checkpoint_keeps_old_progress(d: DataDir, tmp_path: Path) -> None:
    """The old run_extraction.py checkpoint is imported: its completed videos are skipped."""
    d.manifest(videos(3))
    seed = tmp_path / "extraction_checkpoint.json"
    seed.write_text(
        orjson.dumps(
            {
                "completed_videos": ["v01"],
                "failed_videos": [
                    {
                        "id": "v02",
                        "error": "Download failed: SABR streaming restriction",
                        "timestamp": "2024-12-31T10:15:00.000Z",
                    }
                ],
                "current_video": "v03",
                "started_at": "2024-12-31T08:45:00.000Z",
                "last_updated": "x",
            }
        ).decode()
    )
    r = d.ctl("import-checkpoint", str(seed))
    assert r.returncode == 0, r.stderr
    assert d.run().returncode == 0
    assert started_order(d) == ["v03"]
    status = d.status()
    assert status["completed"] == 2 and status["failed"][0]["error"].startswith("Download failed")
    assert d.ctl("retry", "v02").returncode == 0
    assert d.run().returncode == 0
    assert started_order(d) == ["v03", "v02"]


def test_import_checkpoint_names_the_bad_entry(d: DataDir, tmp_path: Path) -> None:
    """A checkpoint with an unsafe id is refused, naming file and entry; nothing is queued."""
    seed = tmp_path / "cp.json"
    seed.write_text('{"completed_videos": ["ok", "../../etc"]}')
    d.root.mkdir(exist_ok=True)
    r = d.ctl("import-checkpoint", str(seed))
    assert r.returncode == 1 and "completed_videos[1]" in r.stderr and str(seed) in r.stderr
    assert not list((d.root / "requests").glob("*.json")) if (d.root / "requests").exists() else True


def test_damaged_log_stops_the_daemon_and_fsck_repairs_it(d: DataDir) -> None:
    """Damage in the middle: nkod exits 4 naming file and line; fsck --repair keeps a backup; work goes on."""
    d.manifest(videos(3))
    assert d.run().returncode == 0
    data = bytearray(d.log.read_bytes())
    lines = bytes(data).split(b"\n")
    offset = len(lines[0]) + len(lines[1]) + 2
    data[offset + 15] ^= 0x04
    d.log.write_bytes(bytes(data))
    # The snapshot past the damage records the CRC of the head it stands in for: that head changed, so
    # start-up ignores the snapshot and meets the damage in a full replay: exit 4 before anything is
    # appended, as without the snapshot; and again at the next start.
    size = d.log.stat().st_size
    r = d.run()
    assert r.returncode == 4 and "line 3" in r.stdout, r.stdout
    assert d.log.stat().st_size == size
    r = d.run()
    assert r.returncode == 4 and "line 3" in r.stdout and str(d.log) in r.stdout
    r = d.ctl("fsck")
    assert r.returncode == 4 and "line 3" in r.stderr
    r = d.ctl("fsck", "--repair")
    assert r.returncode == 0 and "backup" in r.stderr
    assert list(d.root.glob("events.jsonl.bak-*"))
    assert d.ctl("fsck").returncode == 0
    assert d.run().returncode == 0


def test_a_full_disk_in_a_worker_stops_the_daemon_without_failing_the_video(d: DataDir) -> None:
    """ENOSPC inside a processor is the disk's fault: exit 75, the video interrupted (not failed), log valid;
    once space is back the video is redone first."""
    d.manifest([{"video_id": "a"}, {"video_id": "b", "fail": "enospc"}, {"video_id": "c"}])
    r = d.run()
    assert r.returncode == 75, r.stdout
    assert "No space left on device" in r.stdout
    assert d.types("b") == ["video_started", "video_interrupted"]
    assert "video_failed" not in d.types()
    assert d.ctl("fsck").returncode == 0
    d.manifest([{"video_id": "a"}, {"video_id": "b"}, {"video_id": "c"}])
    assert d.run().returncode == 0
    assert d.completed_count() == {"a": 1, "b": 1, "c": 1}
    assert started_order(d) == ["a", "b", "b", "c"]


def test_an_unwritable_data_dir_is_a_storage_error_not_a_traceback(tmp_path: Path) -> None:
    """The default ./data that cannot be created (a file is in the way) exits 75 with the path, no traceback;
    a --data-dir that does not exist is refused (exit 2, data_dir_missing) and never created."""
    (tmp_path / "data").write_text("not a directory")
    d = DataDir(tmp_path / "other")
    args = [a for a in d.nkod_args("--once") if a not in ("--data-dir", str(d.root))]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env(), cwd=tmp_path)
    assert r.returncode == 75 and "storage_failed" in r.stdout and "Traceback" not in r.stdout + r.stderr
    assert str(tmp_path / "data") in r.stdout
    d.root = tmp_path / "data" / "sub"
    r = d.run()
    assert r.returncode == 2 and "data_dir_missing" in r.stdout and "Traceback" not in r.stdout + r.stderr


def test_a_reload_with_a_bad_processor_is_refused_and_fails_nothing(tmp_path: Path) -> None:
    """SIGHUP with a config naming a processor that does not import: refused, old config kept, no video fails."""
    d = DataDir(tmp_path / "data")
    d.manifest(videos(3, sleep=0.5))
    proc = d.start()
    try:
        wait_for(lambda: has_started(d, "v01"), what="v01 to start")
        d.config.write_text(d.config.read_text().replace("tests.processors:process", "tests.nope:process"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: d.completed_count().get("v03") == 1, what="every video, with the old processor")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "config_reload_failed" in d.output_text() and "video_failed" not in d.types()


def test_fsck_repair_keeps_a_committed_output_recognisable(d: DataDir) -> None:
    """A crash after an output was renamed into place, then fsck --repair renumbering the log: the next start
    still recognises that output as the one its start made, and does not process the video again."""
    d.manifest(videos(2))
    assert d.run(NKOD_FAILPOINT="after_output_rename").returncode == -9
    lines = d.log.read_bytes().split(b"\n")
    assert b'"daemon_started"' in lines[1]
    lines[1] = lines[1].replace(b'"daemon_started"', b'"daemon_startex"')  # damage line 2: dropped by repair
    d.log.write_bytes(b"\n".join(lines))
    (d.root / "snapshot.json").unlink(missing_ok=True)
    assert d.ctl("fsck", "--repair").returncode == 0
    r = d.run()
    assert r.returncode == 0, r.stdout
    assert started_order(d) == ["v01", "v02"]
    assert d.completed_count() == {"v01": 1, "v02": 1}
    assert [e.get("recovered") for e in d.events() if e["type"] == "video_completed"] == [True, None]
