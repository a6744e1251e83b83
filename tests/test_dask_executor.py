"""The dask executor on a real loopback cluster (`dask scheduler` and `dask worker`s as processes on
127.0.0.1), driven through the real `nkod` and `nkoctl` binaries: the seed's recovery scenarios, and each way
a cluster fails (the daemon, a worker, a paused worker, the scheduler), each checked the same way: every
video completed exactly once, each output made by the attempt that the log completed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.dask_cluster import Cluster, cluster
from tests.helpers import DataDir, add_config_table, binary, env, kill9, processes_under, small_tmpfs, wait_for

pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def videos(n: int, **extra: object) -> list[dict[str, object]]:
    return [{"video_id": f"v{i:02d}", **extra} for i in range(1, n + 1)]


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the tests that do not kill any part of it."""
    with cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of its own, for a test that kills or pauses part of it."""
    with cluster(tmp_path / "cluster") as c:
        yield c


def dask_data(root: Path, c: Cluster, **daemon: Any) -> DataDir:
    d = DataDir(root / "data", **{"executor": "dask", "workers": 2, **daemon})
    shared = root / "shared"
    shared.mkdir(exist_ok=True)
    add_config_table(d, "dask", {"scheduler_address": c.address, "shared_dir": str(shared), "orphan_grace": 30.0})
    return d


def shared_dir(d: DataDir) -> Path:
    return d.root.parent / "shared"


def starts(d: DataDir, vid: str | None = None) -> list[dict[str, Any]]:
    return [e for e in d.events() if e["type"] == "video_started" and (vid is None or e["video_id"] == vid)]


def has_started(d: DataDir, vid: str) -> bool:
    return bool(starts(d, vid))


def staged_attempt(d: DataDir, vid: str) -> Path | None:
    """The staging dir of `vid`'s running attempt (staging/<log id>/<vid>/<seq>.<nonce>/)."""
    found = list((shared_dir(d) / "staging").glob(f"*/{vid}/*"))
    return found[0] if found else None


def assert_each_completed_once(d: DataDir, ids: list[str]) -> None:
    """Every video completed exactly once; output/<id>/ is the one its completing attempt made, with the
    files its counts name."""
    assert d.completed_count() == {vid: 1 for vid in ids}, d.completed_count()
    events = d.events()
    for vid in ids:
        done = next(e for e in events if e["type"] == "video_completed" and e["video_id"] == vid)
        last_start = [e for e in events if e["type"] == "video_started" and e["video_id"] == vid][-1]
        assert last_start["seq"] < done["seq"]
        out = d.root / "output" / vid
        summary = orjson.loads((out / "summary.json").read_bytes())
        assert summary["started_seq"] == last_start["seq"], (vid, summary, last_start)
        assert summary["counts"] == done["counts"]
        frames = sorted(p.name for p in (out / "frames").iterdir())
        assert len(frames) == done["counts"]["frames"]
        for name in frames:
            assert (out / "frames" / name).read_text() == f"{vid} frame {int(name[:4])}\n"


def assert_staging_clean(d: DataDir) -> None:
    left = [p for p in (shared_dir(d) / "staging").rglob("*") if p.is_file()]
    assert left == [], left


def log_lines(d: DataDir, event: str) -> list[str]:
    return [line for line in d.output_text().splitlines() if f" {event} " in line or line.endswith(f" {event}")]


# -- the ordinary run -----------------------------------------------------------------------------


def test_once_runs_every_video_on_the_cluster_and_the_daemon_commits(shared_cluster: Cluster, tmp_path: Path) -> None:
    """--once with executor = "dask": every video runs as a Dask task, is committed into output/ by the
    daemon, exit 0; the staging dirs are gone and nothing is left published on the scheduler."""
    d = dask_data(tmp_path, shared_cluster)
    d.manifest(videos(5, sleep=0.3))
    r = d.run(timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dask_connected" in r.stdout and "workers=2" in r.stdout
    assert_each_completed_once(d, [f"v0{i}" for i in range(1, 6)])
    assert_staging_clean(d)
    assert not list((d.root / "work").iterdir())
    code = (
        "from distributed import Client\n"
        f"c = Client({shared_cluster.address!r}, timeout=10)\n"
        "print(sorted(c.list_datasets())); c.close()"
    )
    listed = subprocess.run([binary("python"), "-c", code], capture_output=True, text=True, env=env(), timeout=60)
    assert listed.stdout.strip() == "[]", listed.stdout + listed.stderr


def test_status_shows_where_each_video_runs_and_the_cluster(shared_cluster: Cluster, tmp_path: Path) -> None:
    """While videos run: `status --json` names the executor, its scheduler, workers and slots, and for each
    running video its host and Dask worker, with the processor's progress; the box says the same, and the
    metrics endpoint has the cluster's gauges."""
    import re
    import urllib.request

    d = dask_data(tmp_path, shared_cluster, metrics_listen="127.0.0.1:0")
    d.manifest(videos(2, sleep=8))
    proc = d.start()
    try:

        def both_placed() -> bool:
            act = d.status().get("activity") or {}
            running = act.get("running") or {}
            return len(running) == 2 and all("where" in r and "stage" in r for r in running.values())

        wait_for(both_placed, timeout=60, interval=0.3, what="both videos running with a place and progress")
        doc = d.status()
        ex = doc["activity"]["executor"]
        assert ex["name"] == "dask" and ex["scheduler"] == shared_cluster.address
        assert ex["connected"] is True and ex["workers"] == 2 and ex["slots"] == 2
        workers = {r["where"]["worker"] for r in doc["activity"]["running"].values()}
        assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
        box = d.ctl("status").stdout
        assert "Cluster:" in box and "2 workers" in box and "on tcp://127.0.0.1:" in box
        url = re.search(r"metrics_listening url=(\S+)", d.output_text())
        assert url is not None, d.output_text()
        with urllib.request.urlopen(url.group(1), timeout=10) as resp:  # 127.0.0.1 only
            text = resp.read().decode()
        assert "nkod_cluster_connected 1.0" in text and "nkod_cluster_workers 2.0" in text
        assert "nkod_cluster_slots 2.0" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_the_local_executor_never_imports_distributed(tmp_path: Path) -> None:
    """The default (local) path loads no Dask module: `python -X importtime` of a whole --once run."""
    d = DataDir(tmp_path / "data")
    d.manifest(videos(1))
    r = subprocess.run(
        [binary("python"), "-X", "importtime", "-m", "nkod.daemon_cli", *d.nkod_args("--once")[1:]],
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "nkod.daemon" in r.stderr  # importtime did report
    assert "distributed" not in r.stderr and "| dask" not in r.stderr


# -- the seed's three scenarios on the cluster ------------------------------------------------------


def test_scenario_1_daemon_killed_mid_run_reattaches_and_redoes_nothing(own_cluster: Cluster, tmp_path: Path) -> None:
    """kill -9 of the daemon while v03 runs on the cluster: the task runs on; the restarted daemon re-attaches
    to it (no video_interrupted, no second start of v03) and commits it; 4 and 5 follow."""
    d = dask_data(tmp_path, own_cluster, workers=1)
    vs = videos(5, sleep=0.3)
    vs[2]["sleep"] = 5
    d.manifest(vs)
    proc = d.start()
    wait_for(lambda: has_started(d, "v03"), timeout=60, what="v03 to start")
    wait_for(lambda: bool(processes_under(shared_dir(d))), timeout=30, what="v03's processor on the worker")
    kill9(proc)
    time.sleep(1)
    assert processes_under(shared_dir(d)), "the remote processor outlives the daemon"
    r = d.run(timeout=180)
    assert r.returncode == 0, r.stdout
    assert "dask_attempt_reattached" in r.stdout
    assert "video_interrupted" not in d.types()
    assert len(starts(d, "v03")) == 1
    assert_each_completed_once(d, [f"v0{i}" for i in range(1, 6)])
    assert_staging_clean(d)


def test_a_video_that_ends_while_the_daemon_is_down_is_collected_not_redone(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    """kill -9 of the daemon; the remote video finishes (done.json) while nothing runs; the next start
    commits it from its marker: completed once, started once."""
    d = dask_data(tmp_path, own_cluster, workers=1)
    d.manifest([{"video_id": "v01", "sleep": 2}, {"video_id": "v02", "sleep": 0.2}])
    proc = d.start()
    # Killed once the task runs on the worker (where.json): killed between its video_started and its
    # submission, the attempt would never run, and rightly be an orphan recorded interrupted.
    wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("where.json").exists(), timeout=60)
    kill9(proc)
    wait_for(
        lambda: (staged_attempt(d, "v01") or Path("/nonexistent")).joinpath("done.json").exists(),
        timeout=60,
        what="v01's done.json",
    )
    r = d.run(timeout=180)
    assert r.returncode == 0, r.stdout
    assert len(starts(d, "v01")) == 1 and "video_interrupted" not in d.types()
    assert_each_completed_once(d, ["v01", "v02"])


def test_scenario_2_transient_failures_retry_with_nkods_backoff(shared_cluster: Cluster, tmp_path: Path) -> None:
    """A rate-limited video on the cluster: nkod's own retries (3 attempts), then failed; the others run."""
    d = dask_data(tmp_path, shared_cluster, max_attempts=3, backoff_initial=0.1)
    vs = videos(4)
    vs[1]["fail"] = "transient"
    d.manifest(vs)
    assert d.run(timeout=180).returncode == 0
    assert d.types("v02") == ["video_started", "video_retry_scheduled"] * 2 + ["video_started", "video_failed"]
    assert_each_completed_once(d, ["v01", "v03", "v04"])
    failed = d.status()["failed"]
    assert [(f["id"], f["attempts"]) for f in failed] == [("v02", 3)] and "429" in failed[0]["error"]


def test_scenario_3_sigterm_lets_remote_videos_finish(shared_cluster: Cluster, tmp_path: Path) -> None:
    """SIGTERM while v02 runs remotely: nothing new starts, v02 finishes within the grace, exit 0."""
    d = dask_data(tmp_path, shared_cluster, workers=1)
    d.manifest(videos(4, sleep=1.5))
    proc = d.start()
    wait_for(lambda: has_started(d, "v02"), timeout=60, what="v02 to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert [e["video_id"] for e in starts(d)] == ["v01", "v02"]
    assert_each_completed_once(d, ["v01", "v02"])
    assert d.run(timeout=180).returncode == 0
    assert_each_completed_once(d, ["v01", "v02", "v03", "v04"])


def test_sigterm_past_the_grace_stops_the_remote_processor(shared_cluster: Cluster, tmp_path: Path) -> None:
    """A remote video longer than stop_grace: its processor on the worker is stopped, it is recorded
    interrupted, the daemon exits 0; the next run redoes it first and completes it once."""
    d = dask_data(tmp_path, shared_cluster, stop_grace=1.0, workers=1)
    vs = videos(2)
    vs[0]["sleep"] = 60
    d.manifest(vs)
    proc = d.start()
    wait_for(lambda: bool(processes_under(shared_dir(d))), timeout=60, what="v01's processor on the worker")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert time.monotonic() - t0 < 20
    interrupted = [e for e in d.events() if e["type"] == "video_interrupted"]
    assert [e["video_id"] for e in interrupted] == ["v01"] and "grace" in interrupted[0]["reason"]
    wait_for(lambda: not processes_under(shared_dir(d)), timeout=15, what="the remote processor to be stopped")
    vs[0]["sleep"] = 0.2
    d.manifest(vs)
    assert d.run(timeout=180).returncode == 0
    assert [e["video_id"] for e in starts(d)] == ["v01", "v01", "v02"]
    assert_each_completed_once(d, ["v01", "v02"])


def test_video_timeout_stops_the_remote_processor_and_retries(shared_cluster: Cluster, tmp_path: Path) -> None:
    """video_timeout on a remote video: its processor is stopped, the attempt fails transiently ("timed
    out"), and with max_attempts = 1 the video fails; the others complete."""
    d = dask_data(tmp_path, shared_cluster, video_timeout=2.0, max_attempts=1)
    vs = videos(3, sleep=0.2)
    vs[0]["fail"] = "hang"
    d.manifest(vs)
    t0 = time.monotonic()
    assert d.run(timeout=180).returncode == 0
    assert time.monotonic() - t0 < 60
    failed = [e for e in d.events() if e["type"] == "video_failed"]
    assert [e["video_id"] for e in failed] == ["v01"] and "timed out after 2 s" in failed[0]["error"]
    assert_each_completed_once(d, ["v02", "v03"])
    wait_for(lambda: not processes_under(shared_dir(d)), timeout=15, what="the hung processor to be stopped")


# -- the cluster failing ----------------------------------------------------------------------------


def test_a_worker_killed_mid_video_is_a_transient_failure_retried_elsewhere(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    """kill -9 of the Dask worker running v01: its processor dies with it, the attempt is a transient
    failure (KilledWorker) in nkod's log, retried by nkod on the other worker, completed once."""
    d = dask_data(tmp_path, own_cluster, workers=1)
    d.manifest([{"video_id": "v01", "sleep": 6}, {"video_id": "v02", "sleep": 0.2}])
    proc = d.start()
    try:
        wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("where.json").exists(), timeout=60)
        where = json.loads((staged_attempt(d, "v01") or Path()).joinpath("where.json").read_text())
        victim = next(w for w in own_cluster.workers if w.pid == where["pid"])
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        wait_for(lambda: d.completed_count().get("v02") == 1, timeout=120, what="the run to go on")
        wait_for(lambda: d.completed_count().get("v01") == 1, timeout=120, what="v01 redone")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    retry = next(e for e in d.events() if e["type"] == "video_retry_scheduled" and e["video_id"] == "v01")
    assert "KilledWorker" in retry["error"] or "lost" in retry["error"], retry
    assert len(starts(d, "v01")) == 2
    assert_each_completed_once(d, ["v01", "v02"])
    assert_staging_clean(d)


def test_a_paused_worker_past_the_ttl_is_a_zombie_whose_output_is_never_committed(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    """SIGSTOP of the worker running v01 past the scheduler's worker TTL: the attempt fails, v01 is redone on
    the other worker and committed; when the zombie wakes (SIGCONT), its late output is never committed
    and its staging dir does not come back."""
    d = dask_data(tmp_path, own_cluster, workers=1)
    d.manifest([{"video_id": "v01", "sleep": 3}])
    proc = d.start()
    try:
        wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("where.json").exists(), timeout=60)
        first = staged_attempt(d, "v01")
        assert first is not None
        where = json.loads((first / "where.json").read_text())
        victim = next(w for w in own_cluster.workers if w.pid == where["pid"])
        os.killpg(victim.pid, signal.SIGSTOP)
        wait_for(lambda: d.completed_count().get("v01") == 1, timeout=120, what="v01 redone elsewhere")
        os.killpg(victim.pid, signal.SIGCONT)
        time.sleep(5)  # the zombie's processor would have finished by now (sleep 3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert len(starts(d, "v01")) == 2
    assert_each_completed_once(d, ["v01"])
    assert not first.exists(), "the zombie recreated its fenced staging dir"
    assert not list((d.root / "archive").rglob("*")) if (d.root / "archive").exists() else True


def test_scheduler_killed_the_orphan_commits_if_its_marker_comes_within_the_grace(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    """The scheduler dies while v01 runs: the worker finishes the task and leaves its done.json within
    orphan_grace; the daemon commits it (no redo), starts nothing while no scheduler is there, finds the new
    scheduler at the same address by itself, and v02 runs there."""
    d = dask_data(tmp_path, own_cluster, workers=1)
    d.manifest([{"video_id": "v01", "sleep": 4}, {"video_id": "v02", "sleep": 0.2}])
    proc = d.start()
    try:
        wait_for(lambda: bool(processes_under(shared_dir(d))), timeout=60, what="v01's processor")
        own_cluster.kill_scheduler()
        wait_for(lambda: d.completed_count().get("v01") == 1, timeout=60, what="v01 committed from its marker")
        # A worker without a nanny exits when it loses its scheduler (after finishing its task, as above);
        # under systemd both come back (Restart=): here, by hand.
        for w in own_cluster.workers:
            w.wait(timeout=30)
        own_cluster.workers.clear()
        own_cluster.start_scheduler()
        own_cluster.start_worker()
        wait_for(lambda: d.completed_count().get("v02") == 1, timeout=120, what="v02 on the new scheduler")
        wait_for(lambda: "dask_scheduler_connected" in d.output_text(), timeout=30, what="the reconnection logged")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert len(starts(d, "v01")) == 1 and "video_interrupted" not in d.types()
    assert len(starts(d, "v02")) == 1
    assert_each_completed_once(d, ["v01", "v02"])
    assert "dask_scheduler_lost" in d.output_text() and "dask_scheduler_connected" in d.output_text()


def test_scheduler_killed_the_orphan_past_the_grace_is_interrupted_and_run_first(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    """The scheduler dies, and v01's worker goes with it: no marker within orphan_grace, so v01 is recorded
    interrupted; once a scheduler and workers are back, v01 runs first and everything completes once."""
    d = DataDir(tmp_path / "data", executor="dask", workers=1)
    (tmp_path / "shared").mkdir()
    add_config_table(
        d,
        "dask",
        {"scheduler_address": own_cluster.address, "shared_dir": str(tmp_path / "shared"), "orphan_grace": 2.0},
    )
    d.manifest([{"video_id": "v01", "sleep": 30}, {"video_id": "v02", "sleep": 0.2}])
    proc = d.start()
    try:
        wait_for(lambda: bool(processes_under(tmp_path / "shared")), timeout=60, what="v01's processor")
        for w in own_cluster.workers:
            os.killpg(w.pid, signal.SIGKILL)
        own_cluster.kill_scheduler()
        wait_for(lambda: "video_interrupted" in d.types("v01"), timeout=60, what="v01 interrupted")
        d.manifest([{"video_id": "v01", "sleep": 0.2}, {"video_id": "v02", "sleep": 0.2}])
        own_cluster.workers.clear()
        own_cluster.start_scheduler()
        own_cluster.start_worker()
        wait_for(lambda: len(d.completed_count()) == 2, timeout=120, what="both videos after the restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert [e["video_id"] for e in starts(d)] == ["v01", "v01", "v02"]
    interrupted = next(e for e in d.events() if e["type"] == "video_interrupted")
    assert "orphan_grace" in interrupted["reason"]
    assert_each_completed_once(d, ["v01", "v02"])


# -- start-up errors --------------------------------------------------------------------------------


def test_an_unreachable_scheduler_exits_75_naming_the_address(tmp_path: Path) -> None:
    """Nothing listens at the scheduler address: exit 75 (systemd tries again) with the address and the key
    in the message, no traceback, and nothing written to the log."""
    from tests.dask_cluster import free_port

    d = DataDir(tmp_path / "data", executor="dask")
    (tmp_path / "shared").mkdir()
    address = f"tcp://127.0.0.1:{free_port()}"
    add_config_table(d, "dask", {"scheduler_address": address, "shared_dir": str(tmp_path / "shared")})
    d.manifest(videos(1))
    d.config.write_text(d.config.read_text() + "connect_timeout = 1.0\n")
    r = d.run(timeout=60)
    assert r.returncode == 75, r.stdout + r.stderr
    assert "dask_unreachable" in r.stdout and address in r.stdout and "dask.scheduler_address" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert not d.log.exists()


def test_the_command_line_flags_select_the_cluster(shared_cluster: Cluster, tmp_path: Path) -> None:
    """`nkod --executor dask --scheduler-address … --shared-dir …` without any [dask] table in the file."""
    d = DataDir(tmp_path / "data")
    (tmp_path / "shared").mkdir()
    d.manifest(videos(2))
    r = d.run(
        "--executor",
        "dask",
        "--scheduler-address",
        shared_cluster.address,
        "--shared-dir",
        str(tmp_path / "shared"),
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dask_connected" in r.stdout
    assert_each_completed_once(d, ["v01", "v02"])


def test_once_without_workers_gives_up_after_orphan_grace_with_exit_75(tmp_path: Path) -> None:
    """--once on a cluster whose scheduler has no workers: nothing is started (a queued task would only spend
    its timeout), and after orphan_grace the batch ends with exit 75 naming the cluster, no video touched."""
    with cluster(tmp_path / "cluster", workers=0) as c:
        d = DataDir(tmp_path / "data", executor="dask")
        (tmp_path / "shared").mkdir()
        add_config_table(
            d, "dask", {"scheduler_address": c.address, "shared_dir": str(tmp_path / "shared"), "orphan_grace": 2.0}
        )
        d.manifest(videos(2))
        t0 = time.monotonic()
        r = d.run(timeout=120)
    assert r.returncode == 75, r.stdout + r.stderr
    assert time.monotonic() - t0 < 60
    assert "executor_unavailable" in r.stdout and c.address in r.stdout
    assert starts(d) == [] and d.types()[-1] == "daemon_stopped"


def test_the_scheduler_file_names_the_cluster(shared_cluster: Cluster, tmp_path: Path) -> None:
    """[dask] scheduler_file (the JSON file `dask scheduler --scheduler-file` writes) instead of an address."""
    d = DataDir(tmp_path / "data", executor="dask", workers=2)
    (tmp_path / "shared").mkdir()
    wait_for(shared_cluster.scheduler_file.exists, timeout=30, what="the scheduler file")
    add_config_table(
        d, "dask", {"scheduler_file": str(shared_cluster.scheduler_file), "shared_dir": str(tmp_path / "shared")}
    )
    d.manifest(videos(2))
    r = d.run(timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"scheduler={shared_cluster.address}" in r.stdout
    assert_each_completed_once(d, ["v01", "v02"])


def test_a_missing_scheduler_file_exits_75_naming_it(tmp_path: Path) -> None:
    """A scheduler file that does not exist (yet): exit 75 (systemd tries again), the file named."""
    d = DataDir(tmp_path / "data", executor="dask")
    (tmp_path / "shared").mkdir()
    missing = tmp_path / "nowhere" / "scheduler.json"
    add_config_table(d, "dask", {"scheduler_file": str(missing), "shared_dir": str(tmp_path / "shared")})
    d.manifest(videos(1))
    r = d.run(timeout=60)
    assert r.returncode == 75, r.stdout + r.stderr
    assert "dask_unreachable" in r.stdout and str(missing) in r.stdout and "dask.scheduler_file" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_output_on_another_filesystem_than_the_shared_dir_is_refused(shared_cluster: Cluster, tmp_path: Path) -> None:
    """Outputs are committed by a rename from the shared dir: a shared dir on another filesystem (here
    /dev/shm, a tmpfs) is refused at start-up with exit 2, naming both, before anything is written."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem")
    shared = Path(os.path.join(shm, f"nkod-test-{os.getpid()}-{time.monotonic_ns()}"))
    shared.mkdir()
    try:
        d = DataDir(tmp_path / "data", executor="dask")
        add_config_table(d, "dask", {"scheduler_address": shared_cluster.address, "shared_dir": str(shared)})
        d.manifest(videos(1))
        r = d.run(timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "dask_setup_failed" in r.stdout and str(shared) in r.stdout and "output" in r.stdout
        assert not d.log.exists()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# -- the real pipeline ------------------------------------------------------------------------------


def test_the_real_pipeline_runs_the_shipped_samples_on_the_cluster(shared_cluster: Cluster, tmp_path: Path) -> None:
    """The built-in pipeline (PyAV, the local N'Ko detector) on the shipped sample clips, each video a Dask
    task: every output has its manifest.json, whose frames and audio segments are the files there."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(REPO / "data" / "videos.jsonl", data / "videos.jsonl")
    shutil.copytree(REPO / "data" / "samples", data / "samples")
    (tmp_path / "shared").mkdir()
    r = subprocess.run(
        [
            binary("nkod"),
            "--data-dir",
            str(data),
            "--once",
            "--log-format",
            "plain",
            "--workers",
            "2",
            "--executor",
            "dask",
            "--scheduler-address",
            shared_cluster.address,
            "--shared-dir",
            str(tmp_path / "shared"),
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ids = [json.loads(line)["video_id"] for line in (data / "videos.jsonl").read_text().splitlines() if line]
    d = DataDir.__new__(DataDir)
    d.root = data
    assert d.completed_count() == {vid: 1 for vid in ids}
    for vid in ids:
        out = data / "output" / vid
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        assert len(manifest["frames"]) == len(list((out / "frames").iterdir())) >= 4
        assert len(manifest["audio_segments"]) == len(list((out / "audio").iterdir())) >= 4


def test_daemon_killed_at_random_moments_loses_and_repeats_nothing(own_cluster: Cluster, tmp_path: Path) -> None:
    """kill -9 of the daemon at random moments (a seeded RNG: NKOD_TORTURE_SEED replays a run; NKOD_TORTURE=long
    for more kills) while videos run on the cluster; after the last restart runs --once to the end: every
    video completed exactly once, each output the one its completing attempt made, nothing left staged."""
    import random

    seed = int(os.environ.get("NKOD_TORTURE_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    kills = 12 if os.environ.get("NKOD_TORTURE") == "long" else 4
    n = 10 if kills == 4 else 30
    d = dask_data(tmp_path, own_cluster)
    d.manifest([{"video_id": f"v{i:02d}", "sleep": round(rng.uniform(0.2, 1.5), 2)} for i in range(n)])
    for _ in range(kills):
        proc = d.start()
        time.sleep(rng.uniform(0.8, 3.0))
        kill9(proc)
    r = d.run(timeout=300)
    assert r.returncode == 0, f"seed {seed}: " + r.stdout[-3000:]
    assert_each_completed_once(d, [f"v{i:02d}" for i in range(n)])
    assert_staging_clean(d)
    caught = d.output_text().count("dask_attempt_reattached") + d.types().count("video_interrupted")
    assert caught >= 1, f"seed {seed}: no kill landed while a video ran"


# -- adversarial review (issue 11) ------------------------------------------------------------------


def test_a_hung_scheduler_never_blocks_the_daemons_loop(own_cluster: Cluster, tmp_path: Path) -> None:
    """The scheduler is paused (SIGSTOP: its connections stay open, nothing answers) while v01 runs: v01's
    done.json still gets it committed, and the loop keeps going (no call to the scheduler waits without a
    bound), so a SIGTERM stops the daemon promptly; once the scheduler runs again, everything completes once."""
    d = dask_data(tmp_path, own_cluster, workers=1)
    d.manifest([{"video_id": "v01", "sleep": 2}, {"video_id": "v02", "sleep": 0.2}])
    d.config.write_text(d.config.read_text() + "connect_timeout = 2.0\n")
    proc = d.start()
    assert own_cluster.scheduler is not None
    scheduler_pid = own_cluster.scheduler.pid
    try:
        wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("where.json").exists(), timeout=60)
        os.killpg(scheduler_pid, signal.SIGSTOP)
        wait_for(lambda: d.completed_count().get("v01") == 1, timeout=60, what="v01 committed from its done.json")
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            raise AssertionError("the daemon's loop is stuck on the hung scheduler: SIGTERM not acted on") from None
        assert code == 0, d.output_text()[-3000:]
    finally:
        os.killpg(scheduler_pid, signal.SIGCONT)
        if proc.poll() is None:
            kill9(proc)
    # Paused past their TTL, the workers (no nanny) were dropped and exit; under systemd they come back.
    own_cluster.start_worker()
    own_cluster.wait_workers(1)
    assert d.run(timeout=180).returncode == 0, d.output_text()[-3000:]
    assert_each_completed_once(d, ["v01", "v02"])


def test_a_finished_attempt_rerun_by_dask_keeps_its_done_json(own_cluster: Cluster, tmp_path: Path) -> None:
    """kill -9 of the daemon; v01 finishes on its worker (done.json: a result), then that worker, which holds
    the result the published dataset wants, is killed: the scheduler runs the task again elsewhere. That rerun
    must not replace the finished attempt's done.json: the restarted daemon commits v01, started once."""
    d = dask_data(tmp_path, own_cluster, workers=1)
    d.manifest([{"video_id": "v01", "sleep": 1}])
    proc = d.start()
    wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("where.json").exists(), timeout=60)
    attempt = staged_attempt(d, "v01")
    assert attempt is not None
    kill9(proc)
    wait_for(lambda: attempt.joinpath("done.json").exists(), timeout=60, what="v01's done.json")
    where = json.loads((attempt / "where.json").read_text())
    victim = next(w for w in own_cluster.workers if w.pid == where["pid"])
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    # The scheduler drops the lost worker and runs the task again on the other one: the dataset still
    # wants its result ("lose already computed task(s), which will be recomputed elsewhere").
    wait_for(lambda: own_cluster.connected_workers() == 1, timeout=30, interval=0.2, what="the lost worker dropped")
    time.sleep(2)  # the rerun has run by now (the task is short: it finds its attempt over)
    r = d.run(timeout=180)
    assert r.returncode == 0, r.stdout[-3000:]
    assert len(starts(d, "v01")) == 1, d.types("v01")
    assert_each_completed_once(d, ["v01"])


def published(c: Cluster) -> list[str]:
    """The datasets published on the cluster's scheduler (a short-lived client, in a subprocess)."""
    code = (
        "import json; from distributed import Client\n"
        f"c = Client({c.address!r}, timeout=10)\n"
        "print(json.dumps(sorted(c.list_datasets()))); c.close()"
    )
    listed = subprocess.run([binary("python"), "-c", code], capture_output=True, text=True, env=env(), timeout=60)
    assert listed.returncode == 0, listed.stderr[-2000:]
    names: list[str] = json.loads(listed.stdout.strip().splitlines()[-1])
    return names


@pytest.mark.parametrize("point", ["before_output_rename", "after_output_rename", "after_append"])
def test_daemon_killed_around_the_commit_of_a_remote_video(shared_cluster: Cluster, tmp_path: Path, point: str) -> None:
    """kill -9 of the daemon just before the rename of a remote video's work dir into output/, just after
    it (before video_completed is appended), or just after the append: the next run completes it exactly
    once without running it again, and leaves no staging dir and no published dataset behind."""
    d = dask_data(tmp_path, shared_cluster, workers=1)
    d.manifest([{"video_id": "v01", "sleep": 0.2}])
    r = d.run(timeout=180, NKOD_FAILPOINT=point)
    assert r.returncode == -9, r.stdout[-3000:]
    r = d.run(timeout=180)
    assert r.returncode == 0, r.stdout[-3000:]
    assert len(starts(d, "v01")) == 1, d.types("v01")
    assert_each_completed_once(d, ["v01"])
    assert_staging_clean(d)
    assert [n for n in published(shared_cluster) if n.endswith("-v01-" + str(starts(d, "v01")[0]["seq"]))] == []


def test_stop_grace_holds_for_an_orphan_whose_worker_is_gone_too(own_cluster: Cluster, tmp_path: Path) -> None:
    """The scheduler dies and v01's worker hangs (SIGSTOP: a host lost with it), so v01 is an orphan that will
    never answer; SIGTERM with stop_grace = 1: the orphan is stopped and fenced like any unreachable attempt
    (about stop_grace + 15 s), not kept until orphan_grace (120 s); it is recorded interrupted, and no file
    of it is left."""
    d = DataDir(tmp_path / "data", executor="dask", workers=1, stop_grace=1.0)
    (tmp_path / "shared").mkdir()
    add_config_table(
        d,
        "dask",
        {"scheduler_address": own_cluster.address, "shared_dir": str(tmp_path / "shared"), "orphan_grace": 120.0},
    )
    d.manifest([{"video_id": "v01", "sleep": 60}])
    proc = d.start()
    paused: list[int] = []
    try:
        wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("where.json").exists(), timeout=60)
        where = json.loads((staged_attempt(d, "v01") or Path()).joinpath("where.json").read_text())
        victim = next(w for w in own_cluster.workers if w.pid == where["pid"])
        os.killpg(victim.pid, signal.SIGSTOP)
        paused.append(victim.pid)
        own_cluster.kill_scheduler()
        wait_for(lambda: "dask_attempt_orphaned" in d.output_text(), timeout=30, what="v01 orphaned")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("the stop waited for orphan_grace, not the stop grace") from None
        assert code == 0, d.output_text()[-3000:]
        assert time.monotonic() - t0 < 40
    finally:
        if proc.poll() is None:
            kill9(proc)
        for pid in paused:  # its processor is killed as its dir is gone, once it runs again
            os.killpg(pid, signal.SIGCONT)
    interrupted = [e for e in d.events() if e["type"] == "video_interrupted"]
    assert [e["video_id"] for e in interrupted] == ["v01"] and "grace" in interrupted[0]["reason"], interrupted
    assert_staging_clean(d)


def test_daemon_restarted_after_the_scheduler_gives_a_running_attempt_its_orphan_grace(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    """kill -9 of the daemon while v01 runs, then the scheduler is killed and restarted (its datasets are gone)
    while v01's worker finishes the task: the restarted daemon finds no dataset and no done.json yet, but
    the attempt started (where.json) and may still deliver: it is an orphan with its orphan_grace, not
    interrupted at once; its done.json comes, and v01 is committed, started once."""
    d = dask_data(tmp_path, own_cluster, workers=1)
    d.manifest([{"video_id": "v01", "sleep": 8}])
    proc = d.start()
    wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("where.json").exists(), timeout=60)
    kill9(proc)
    own_cluster.kill_scheduler()
    own_cluster.start_scheduler()
    own_cluster.start_worker()
    own_cluster.wait_workers(1)
    attempt = staged_attempt(d, "v01")
    assert attempt is not None and not (attempt / "done.json").exists(), "too late: v01 has ended already"
    r = d.run(timeout=180)
    assert r.returncode == 0, r.stdout[-3000:]
    assert len(starts(d, "v01")) == 1, d.types("v01")
    assert "video_interrupted" not in d.types()
    assert_each_completed_once(d, ["v01"])
    assert_staging_clean(d)


@pytest.fixture
def full_shared_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs at tmp_path/fs for the shared dir and output/ (needs root and mount(2))."""
    with small_tmpfs(tmp_path / "fs", "16m", "a full shared disk") as mnt:
        yield mnt


def test_a_commit_refused_by_a_full_disk_keeps_the_remote_attempt_for_the_next_start(
    own_cluster: Cluster, tmp_path: Path, full_shared_fs: Path
) -> None:
    """v01 finishes remotely while the daemon is down; the restarted daemon cannot commit it (the shared
    filesystem is full: exit 75). Its staging dir (done.json, work/) must survive that failure: once space is
    freed, the next start commits it, started once, not redone."""
    from tests.test_disk_faults import _fill

    (full_shared_fs / "shared").mkdir()
    (full_shared_fs / "output").mkdir()
    shared = tmp_path / "shared"  # where shared_dir(d) looks
    shared.symlink_to(full_shared_fs / "shared")
    d = DataDir(tmp_path / "data", executor="dask", workers=1)
    (d.root / "output").symlink_to(full_shared_fs / "output")  # output/ on the shared filesystem
    add_config_table(d, "dask", {"scheduler_address": own_cluster.address, "shared_dir": str(shared)})
    d.manifest([{"video_id": "v01", "sleep": 1}])
    proc = d.start()
    wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("where.json").exists(), timeout=60)
    kill9(proc)
    wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("done.json").exists(), timeout=60)
    filler = _fill(full_shared_fs)
    r = d.run(timeout=120)
    assert r.returncode == 75, r.stdout[-3000:]
    filler.unlink()
    assert (staged_attempt(d, "v01") or Path("/x")).joinpath("done.json").exists(), "the finished attempt was deleted"
    r = d.run(timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    assert len(starts(d, "v01")) == 1, d.types("v01")
    assert_each_completed_once(d, ["v01"])


def test_a_hung_scheduler_makes_its_running_attempts_orphans(own_cluster: Cluster, tmp_path: Path) -> None:
    """The scheduler and v01's worker both hang (SIGSTOP: a host and the scheduler unresponsive, their
    connections open): v01 gives no sign and no scheduler answers, so it is an orphan like under a dead
    scheduler: recorded interrupted after orphan_grace (3 s), not left running until video_timeout."""
    d = DataDir(tmp_path / "data", executor="dask", workers=1)
    (tmp_path / "shared").mkdir()
    add_config_table(
        d,
        "dask",
        {"scheduler_address": own_cluster.address, "shared_dir": str(tmp_path / "shared"), "orphan_grace": 3.0},
    )
    d.config.write_text(d.config.read_text() + "connect_timeout = 2.0\n")
    d.manifest([{"video_id": "v01", "sleep": 60}])
    proc = d.start()
    assert own_cluster.scheduler is not None
    paused: list[int] = []
    try:
        wait_for(lambda: (staged_attempt(d, "v01") or Path("/x")).joinpath("where.json").exists(), timeout=60)
        where = json.loads((staged_attempt(d, "v01") or Path()).joinpath("where.json").read_text())
        for pid in (where["pid"], own_cluster.scheduler.pid):
            os.killpg(pid, signal.SIGSTOP)
            paused.append(pid)
        wait_for(lambda: "video_interrupted" in d.types("v01"), timeout=40, what="v01 recorded interrupted")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            kill9(proc)
        for pid in paused:
            os.killpg(pid, signal.SIGCONT)
    interrupted = next(e for e in d.events() if e["type"] == "video_interrupted")
    assert "orphan_grace" in interrupted["reason"], interrupted
    assert not (staged_attempt(d, "v01") or Path("/x")).exists()
