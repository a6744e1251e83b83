"""The Prometheus metrics: the daemon's endpoint scraped over real HTTP, and ``nkoctl metrics`` from the log,
both read back with prometheus_client's own parser."""

from __future__ import annotations

import re
import signal
import socket
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nkod import __version__, codec
from tests.helpers import DataDir, binary, env, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# What depends on the moment of the reading, not on the state.
TIME_DEPENDENT = {"nkod_seconds_since_last_completion", "nkod_elapsed_seconds"}


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def metrics_url(d: DataDir) -> str:
    wait_for(lambda: "metrics_listening" in d.output_text(), what="the metrics endpoint")
    match = re.search(r"metrics_listening url=(\S+)", d.output_text())
    assert match, d.output_text()
    return match.group(1)


def scrape(url: str) -> tuple[str, str]:
    """(content type, body) of one scrape."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def last_seq(d: DataDir) -> int:
    return int(d.events()[-1]["seq"])


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


@pytest.fixture
def d(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "data", metrics_listen="127.0.0.1:0", stop_grace=0.5)


def test_endpoint_shows_statuses_failures_totals_and_log_seq_while_running(d: DataDir) -> None:
    """A scrape mid-run: videos by status, failed by kind, completions, counts' totals, seq, info."""
    d.manifest(
        [
            {"video_id": "v01", "frames": 4},
            {"video_id": "v02", "fail": "permanent"},
            {"video_id": "v03", "sleep": 60},
        ]
    )
    proc = d.start()
    try:
        url = metrics_url(d)
        wait_for(lambda: "v03" in [e.get("video_id") for e in d.events() if e["type"] == "video_started"])
        content_type, body = scrape(url)
        assert content_type.startswith("text/plain")
        m = parse(body)
        assert value(m, "nkod_videos", status="completed") == 1
        assert value(m, "nkod_videos", status="failed") == 1
        assert value(m, "nkod_videos", status="running") == 1
        assert value(m, "nkod_videos", status="pending") == 0
        assert value(m, "nkod_failed_videos", error_kind="permanent") == 1
        assert value(m, "nkod_videos_completed_total") == 1
        assert value(m, "nkod_video_starts_total") == 3
        assert value(m, "nkod_frames") == 4
        assert value(m, "nkod_nko_detections") == 2
        assert value(m, "nkod_audio_segments") == 5
        assert value(m, "nkod_detector_cost_usd") == 0
        assert 0 <= value(m, "nkod_seconds_since_last_completion") < 60
        assert value(m, "nkod_log_seq") == last_seq(d)  # nothing is appended while v03 sleeps
        assert value(m, "nkod_daemon_running") == 1
        log_id = d.events()[0]["log_id"]
        assert value(m, "nkod_info", version=__version__, log_id=log_id) == 1
    finally:
        assert stop(proc) == 0, d.output_text()


def test_nkoctl_metrics_prints_what_the_endpoint_serves(d: DataDir) -> None:
    """`nkoctl metrics` gives the endpoint's samples (less the clock's); with the daemon down it says so."""
    d.manifest([{"video_id": "v01"}, {"video_id": "v02", "fail": "permanent"}])
    assert d.run().returncode == 0
    proc = d.start()  # nothing left to run: the state stays as it is while both are read
    try:
        url = metrics_url(d)
        wait_for(lambda: " ready " in d.output_text(), what="the replay")  # before it, no samples
        _, body = scrape(url)
        served = parse(body)
        r = d.ctl("metrics")
        assert r.returncode == 0, r.stderr
        printed = parse(r.stdout)
    finally:
        assert stop(proc) == 0
    assert {k: v for k, v in printed.items() if k[0] not in TIME_DEPENDENT} == {
        k: v for k, v in served.items() if k[0] not in TIME_DEPENDENT
    }
    assert {k[0] for k in printed} >= TIME_DEPENDENT
    r = d.ctl("metrics")
    after = parse(r.stdout)
    assert value(after, "nkod_daemon_running") == 0
    assert value(after, "nkod_videos", status="completed") == 1
    assert value(after, "nkod_log_seq") == last_seq(d)


def test_nkoctl_metrics_output_file_is_written_whole_and_world_readable(d: DataDir, tmp_path: Path) -> None:
    """`nkoctl metrics -o FILE` writes the exposition atomically, readable by node_exporter's user."""
    d.manifest([{"video_id": "v01"}])
    assert d.run().returncode == 0
    target = tmp_path / "textfile" / "nkod.prom"
    target.parent.mkdir()
    r = d.ctl("metrics", "-o", str(target))
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert value(parse(target.read_text()), "nkod_videos", status="completed") == 1
    assert stat.S_IMODE(target.stat().st_mode) & 0o044 == 0o044
    assert [p.name for p in target.parent.iterdir()] == ["nkod.prom"]  # no temp file left


def test_scrapes_during_a_busy_run_always_add_up(tmp_path: Path) -> None:
    """Scraped while workers finish videos, every reading is whole: statuses sum to the total, and
    completions only grow."""
    d = DataDir(tmp_path / "data", metrics_listen="127.0.0.1:0", workers=2)
    d.manifest([{"video_id": f"v{i:02d}", "frames": 1} for i in range(40)])
    proc = d.start()
    try:
        url = metrics_url(d)
        readings: list[Samples] = []
        while True:
            m = parse(scrape(url)[1])
            if m:  # empty until the log is replayed
                readings.append(m)
                if value(m, "nkod_videos", status="completed") == 40:
                    break
            assert proc.poll() is None, d.output_text()
    finally:
        assert stop(proc) == 0
    completions = [value(m, "nkod_videos_completed_total") for m in readings]
    assert completions == sorted(completions) and len(readings) > 1
    for m in readings:
        total = sum(v for (name, _), v in m.items() if name == "nkod_videos")
        assert total in (0, 40)
        assert value(m, "nkod_frames") == value(m, "nkod_videos_completed_total")


def test_bad_metrics_listen_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    """metrics_listen that is not HOST:PORT stops nkod with exit 2 naming daemon.metrics_listen."""
    for bad in ("9464", "localhost", "127.0.0.1:99999", "::1:9464", "127.0.0.1:http"):
        d = DataDir(tmp_path / f"data-{bad.replace(':', '_')}", metrics_listen=bad)
        d.manifest([{"video_id": "v01"}])
        r = d.run()
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
        assert "daemon.metrics_listen" in r.stderr and repr(bad) in r.stderr
        assert not d.log.exists()


def test_address_in_use_stops_nkod_at_start_up_before_any_work(tmp_path: Path) -> None:
    """A port another process listens on: exit 2 with the address, the key and the reason; nothing run."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        d = DataDir(tmp_path / "data", metrics_listen=f"127.0.0.1:{port}")
        d.manifest([{"video_id": "v01"}])
        r = d.run()
    finally:
        holder.close()
    assert r.returncode == 2, r.stdout
    assert f"cannot listen on 127.0.0.1:{port}" in r.stdout and "in use" in r.stdout
    assert "daemon.metrics_listen" in r.stdout
    assert "video_started" not in d.types()


def test_daemon_without_metrics_never_imports_prometheus_client(tmp_path: Path) -> None:
    """With metrics off the daemon runs even when prometheus_client cannot be imported (start-up stays
    light); the same broken module stops a daemon that wants metrics, so the check has teeth."""
    poison = tmp_path / "poison" / "prometheus_client"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('prometheus_client imported')\n")
    pythonpath = f"{poison.parent}:{env()['PYTHONPATH']}"
    off = DataDir(tmp_path / "off")
    off.manifest([{"video_id": "v01"}])
    r = off.run(PYTHONPATH=pythonpath)
    assert r.returncode == 0, r.stdout + r.stderr
    assert off.completed_count() == {"v01": 1}
    on = DataDir(tmp_path / "on", metrics_listen="127.0.0.1:0")
    on.manifest([{"video_id": "v01"}])
    r = on.run(PYTHONPATH=pythonpath)
    assert r.returncode != 0 and "prometheus_client imported" in r.stdout + r.stderr


def test_nkoctl_metrics_on_a_missing_data_dir_is_an_error(tmp_path: Path) -> None:
    """No data dir: exit 1 and a message naming it, nothing printed to scrape."""
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(tmp_path / "nope"), "metrics"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 1 and r.stdout == ""
    assert "nope" in r.stderr


def write_history(log: Path, videos: int) -> None:
    """A log in which `videos` videos were started and completed (for a replay that takes a while)."""
    ts = "2026-11-27T10:00:00.000000Z"
    ids = [f"v{i:06d}" for i in range(videos)]
    events: list[dict[str, object]] = [
        {"type": "log_created", "log_id": "0123456789abcdef", "nkod_version": "0.1.0"},
        {"type": "daemon_started", "pid": 1, "version": "0.1.0", "workers": 1},
        {"type": "videos_added", "video_ids": ids},
    ]
    for vid in ids:
        events.append({"type": "video_started", "video_id": vid, "attempt": 1})
        events.append({"type": "video_completed", "video_id": vid, "attempt": 1, "counts": {"frames": 1}})
    events.append({"type": "daemon_stopped", "reason": "SIGTERM", "exit_code": 0})
    with open(log, "wb") as f:
        for seq, e in enumerate(events, start=1):
            f.write(codec.encode({"v": 1, "seq": seq, "ts": ts, **e}))


def test_endpoint_says_nothing_until_the_log_is_replayed(d: DataDir) -> None:
    """Scrapes during a long replay get no samples, never zeros (which Prometheus would take for a
    reset of every counter); after it, the whole history."""
    write_history(d.log, 100_000)
    d.manifest([])
    proc = d.start()
    try:
        url = metrics_url(d)
        readings: list[Samples] = []
        while not readings or not readings[-1]:
            readings.append(parse(scrape(url)[1]))
            assert proc.poll() is None, d.output_text()
    finally:
        assert stop(proc) == 0
    assert value(readings[-1], "nkod_videos_completed_total") == 100_000
    assert len(readings) > 1, "no scrape landed during the replay: the test did not test anything"


def test_paused_shows_on_the_endpoint_and_in_nkoctl_metrics(d: DataDir) -> None:
    """`nkoctl pause` makes nkod_paused 1 (so a stall alert can leave a paused run alone); resume makes it 0."""
    d.manifest([{"video_id": "v01"}])
    proc = d.start()
    try:
        url = metrics_url(d)
        wait_for(lambda: d.completed_count().get("v01") == 1, what="v01")
        assert value(parse(scrape(url)[1]), "nkod_paused") == 0
        assert d.ctl("pause").returncode == 0
        wait_for(lambda: "queue_paused" in d.types(), what="the pause applied")
        assert value(parse(scrape(url)[1]), "nkod_paused") == 1
    finally:
        assert stop(proc) == 0
    assert value(parse(d.ctl("metrics").stdout), "nkod_paused") == 1
