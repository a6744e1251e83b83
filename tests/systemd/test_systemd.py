"""nkod under a real systemd (252, in a throw-away container): the shipped unit, as shipped.

The only drop-in added (``box.TEST_DROPIN``) puts the test processor on PYTHONPATH and shortens
WatchdogSec/RestartSec; a test that needs it also shortens TimeoutStopSec. The config is written to
/etc/nkod/nkod.toml, where the unit reads it. Counts of ``video_completed`` per video come from the log.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.systemd.box import (
    BOX_TESTS,
    BOX_VENV,
    CONFIG,
    DATA,
    OPERATOR,
    TEST_DROPIN,
    TEST_DROPIN_KEYS,
    UNIT,
    Service,
    analyze,
)

pytestmark = pytest.mark.systemd

NETWORK_FAMILIES = {"AF_UNIX", "AF_INET", "AF_INET6"}
MAX_EXPOSURE = 1.5


def _videos(**sleeps: float) -> list[dict[str, object]]:
    return [{"video_id": vid, "sleep": s} for vid, s in sleeps.items()]


def _ran_once(svc: Service, ids: list[str]) -> None:
    counts = svc.wait_all_completed(ids)
    assert {vid: counts[vid] for vid in ids} == dict.fromkeys(ids, 1), f"completed counts: {dict(counts)}"


# -- the unit file, on the host -------------------------------------------------------------------------
@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The shipped unit, with ExecStart pointed at a stand-in executable (no /opt/nkod/venv on the host)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze missing (Debian: the systemd package)")
    stub = tmp_path / "nkod"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text()
    assert f"ExecStart={BOX_VENV}/bin/nkod\n" in text
    unit = tmp_path / "nkod.service"
    unit.write_text(text.replace(f"={BOX_VENV}/bin/nkod", f"={stub}"))
    return unit


def test_unit_file_passes_systemd_analyze_verify(unit_copy: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong with the shipped unit."""
    done = analyze("verify", str(unit_copy), cwd=unit_copy.parent)
    assert done.returncode == 0, done.stderr
    assert "nkod.service" not in done.stderr, done.stderr


def test_unit_security_exposure_is_at_most_1_5_with_network_allowed(unit_copy: Path) -> None:
    """`systemd-analyze security --offline=true` rates the unit 1.5 or lower, and downloads can still reach the net."""
    done = analyze("security", "--offline=true", "--no-pager", str(unit_copy), cwd=unit_copy.parent)
    match = re.search(r"Overall exposure level for nkod\.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout
    families = set()
    for line in UNIT.read_text().splitlines():
        if line.startswith("RestrictAddressFamilies="):
            families |= set(line.split("=", 1)[1].split())
    assert families == NETWORK_FAMILIES
    assert "PrivateNetwork=yes" not in UNIT.read_text()
    assert "IPAddressDeny=" not in UNIT.read_text()


def test_test_dropin_only_points_at_the_test_processor_and_shortens_waits() -> None:
    """The drop-in the tests add changes no hardening, identity or kill setting of the shipped unit."""
    keys = {line.split("=", 1)[0] for line in TEST_DROPIN.splitlines() if "=" in line}
    assert keys <= TEST_DROPIN_KEYS
    assert f"Environment=PYTHONPATH={BOX_TESTS}" in TEST_DROPIN


# -- under systemd -------------------------------------------------------------------------------------
def test_start_returns_after_ready_and_status_text_shows_progress(nkod: Service) -> None:
    """`systemctl start` returns once the daemon has replayed and sent READY=1; StatusText tracks progress."""
    nkod.set_manifest(_videos(a=1.0, b=1.0, c=0.2))
    t0 = time.monotonic()
    nkod.systemctl("start", "nkod.service")
    took = time.monotonic() - t0
    assert nkod.prop("ActiveState") == "active" and nkod.prop("SubState") == "running"
    assert took < 20
    journal = nkod.journal()
    # the daemon logs `ready` just before READY=1; systemd logs "Started" when it gets READY=1
    assert journal.index("\nready ") < journal.index("Started nkod.service"), journal
    assert re.match(r"\d+/3 done, \d+ running, 0 failed", nkod.prop("StatusText")), nkod.prop("StatusText")
    nkod.wait_for("a video in the status text", lambda: "current: " in nkod.prop("StatusText"))
    _ran_once(nkod, ["a", "b", "c"])
    nkod.wait_for("3/3 in the status text", lambda: nkod.prop("StatusText").startswith("3/3 done, 0 running"))
    assert nkod.prop("NRestarts") == "0"  # the watchdog (4 s here) never fired on a working loop
    assert "Watchdog timeout" not in nkod.journal()
    mode = nkod.box.run("stat", "-c", "%a %U:%G", DATA).stdout.split()
    assert mode == ["2770", "nkod:nkod"]  # StateDirectoryMode= and User=, as the README's systemd section says


def test_loaded_unit_with_the_test_dropin_keeps_its_exposure_in_the_box(nkod: Service) -> None:
    """`systemd-analyze security nkod` on the unit as loaded in the box (with the test drop-in) is still <= 1.5."""
    done = nkod.box.run("systemd-analyze", "security", "--no-pager", "nkod.service", check=False)
    match = re.search(r"Overall exposure level for nkod\.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


def test_bad_config_fails_the_start_and_is_not_restarted_in_a_loop(nkod: Service) -> None:
    """A config error (exit 2) fails `systemctl start` with the file and key in the journal; no restart loop."""
    nkod.box.write(CONFIG, "[daemon]\nworkers = 0\n")
    assert nkod.systemctl("start", "nkod.service", check=False).returncode != 0
    time.sleep(1.5)  # RestartSec=1s here
    journal = nkod.journal()
    assert "config error: /etc/nkod/nkod.toml: daemon.workers" in journal, journal
    assert "status=2/INVALIDARGUMENT" in journal, journal
    assert "Scheduled restart" not in journal and nkod.prop("ActiveState") == "failed"


def test_kill_9_mid_video_restarts_and_redoes_only_the_interrupted_video(nkod: Service) -> None:
    """After `systemctl kill -s KILL`, systemd restarts nkod; the cut video is redone, nothing finished is."""
    nkod.set_manifest(_videos(a=0.2, b=4.0, c=0.2))
    nkod.systemctl("start", "nkod.service")
    nkod.wait_started("b")
    assert nkod.completed() == {"a": 1}
    pid = nkod.main_pid()
    nkod.systemctl("kill", "-s", "KILL", "nkod.service")
    nkod.wait_restarted(pid)
    _ran_once(nkod, ["a", "b", "c"])
    interrupted = nkod.of_type("video_interrupted", "b")
    assert len(interrupted) == 1 and "crash" in interrupted[0]["reason"], interrupted
    assert len(nkod.of_type("video_started", "a")) == 1
    assert len(nkod.of_type("daemon_started")) == 2
    journal = nkod.journal()
    assert "Failed with result 'signal'" in journal and "Scheduled restart job" in journal


def test_stop_mid_video_lets_it_finish_within_grace_and_exits_0(nkod: Service) -> None:
    """`systemctl stop` mid-video: no new video starts, the running one finishes, exit 0; the rest runs next start."""
    nkod.set_config(stop_grace=30)
    nkod.set_manifest(_videos(a=3.0, b=0.2))
    nkod.systemctl("start", "nkod.service")
    nkod.wait_started("a")
    nkod.systemctl("stop", "nkod.service")
    assert nkod.completed() == {"a": 1}
    assert nkod.of_type("video_started", "b") == []
    stopped = nkod.of_type("daemon_stopped")
    assert len(stopped) == 1 and stopped[0]["exit_code"] == 0
    journal = nkod.journal()
    assert "nkod.service: Deactivated successfully." in journal, journal
    assert "Failed with result" not in journal
    time.sleep(1.5)  # RestartSec=1s here: a restart would have happened by now
    assert nkod.prop("ActiveState") == "inactive" and "Scheduled restart" not in nkod.journal()
    nkod.systemctl("start", "nkod.service")
    _ran_once(nkod, ["a", "b"])


def test_stop_past_grace_records_interrupted_exits_0_and_next_start_finishes(nkod: Service) -> None:
    """A video longer than stop_grace is terminated and recorded interrupted, exit 0; it is redone on start."""
    nkod.set_config(stop_grace=1)
    nkod.set_manifest(_videos(a=0.2, b=4.0))
    nkod.systemctl("start", "nkod.service")
    nkod.wait_started("b")
    t0 = time.monotonic()
    nkod.systemctl("stop", "nkod.service")
    assert time.monotonic() - t0 < 15
    interrupted = nkod.of_type("video_interrupted", "b")
    assert len(interrupted) == 1 and "grace" in interrupted[0]["reason"], interrupted
    assert "nkod.service: Deactivated successfully." in nkod.journal()
    nkod.systemctl("start", "nkod.service")
    _ran_once(nkod, ["a", "b"])


def test_stop_drain_longer_than_timeoutstopsec_is_extended_not_killed(nkod: Service) -> None:
    """EXTEND_TIMEOUT_USEC keeps systemd waiting past TimeoutStopSec while a video finishes in its grace."""
    nkod.add_dropin("[Service]\nTimeoutStopSec=2s\n")
    nkod.set_config(stop_grace=30)
    nkod.set_manifest(_videos(a=6.0))
    nkod.systemctl("start", "nkod.service")
    nkod.wait_started("a")
    t0 = time.monotonic()
    nkod.systemctl("stop", "nkod.service")
    assert time.monotonic() - t0 > 2.5  # it really waited past TimeoutStopSec
    assert nkod.completed() == {"a": 1}
    journal = nkod.journal()
    assert "nkod.service: Deactivated successfully." in journal, journal
    assert "timed out" not in journal and "SIGKILL" not in journal, journal


def test_watchdog_kills_a_main_loop_that_stops_pinging_and_restarts_it(nkod: Service) -> None:
    """A frozen main loop (SIGSTOP) misses WATCHDOG=1; systemd kills it, restarts it, and work resumes."""
    nkod.set_manifest(_videos(a=0.2, b=3.0, c=0.2))
    nkod.systemctl("start", "nkod.service")
    nkod.wait_started("b")
    pid = nkod.main_pid()
    nkod.box.run("kill", "-STOP", str(pid))
    nkod.wait_for("the watchdog to fire", lambda: "Watchdog timeout" in nkod.journal(), timeout=20)
    nkod.wait_restarted(pid)
    _ran_once(nkod, ["a", "b", "c"])
    assert "Failed with result 'watchdog'" in nkod.journal()
    assert len(nkod.of_type("video_interrupted", "b")) == 1


def test_journal_carries_the_daemons_lines_with_syslog_priorities(nkod: Service) -> None:
    """`journalctl -u nkod -o json`: info lines PRIORITY 6, a retry warning 4, a failed video error 3; no timestamps."""
    nkod.set_config(backoff_initial=0.2, backoff_max=0.5)
    nkod.set_manifest(
        [
            {"video_id": "fine", "sleep": 0.1},
            {"video_id": "flaky", "fail": "transient", "fail_attempts": 1},
            {"video_id": "gone", "fail": "permanent"},
        ]
    )
    nkod.systemctl("start", "nkod.service")
    nkod.wait_all_completed(["fine", "flaky"])
    nkod.wait_for("gone failed", lambda: nkod.of_type("video_failed", "gone"))
    pid = str(nkod.main_pid())
    nkod.wait_for(
        "the failure in the journal",
        lambda: any(str(r.get("MESSAGE", "")).startswith("video_failed") for r in nkod.journal_records()),
    )
    mine = [r for r in nkod.journal_records() if r.get("_PID") == pid and isinstance(r.get("MESSAGE"), str)]
    priority = {str(r["MESSAGE"]).split(" ", 1)[0]: r["PRIORITY"] for r in mine}
    assert priority["ready"] == "6"
    assert priority["video_completed"] == "6"
    assert priority["video_retry_scheduled"] == "4"
    assert priority["video_failed"] == "3"
    for r in mine:
        message = str(r["MESSAGE"])
        assert not message.startswith("<"), message  # journald took the <N> prefix as the priority
        assert not re.match(r"\d{4}-\d\d-\d\d", message), message  # the journal has its own timestamp
        assert r["SYSLOG_IDENTIFIER"] == "nkod"
    failed = next(str(r["MESSAGE"]) for r in mine if str(r["MESSAGE"]).startswith("video_failed"))
    assert "video_id=gone" in failed and "unavailable" in failed


def test_journal_records_carry_fields_that_journalctl_can_match(nkod: Service) -> None:
    """Each event is a native journal record: `journalctl -u nkod VIDEO_ID=…` finds that video's lines, with
    EVENT=, SEQ= (the log's seq), ATTEMPT= and ERROR= fields."""
    vid = "gone-fields"  # used by no other test: the query below runs without a cursor
    nkod.set_manifest([{"video_id": "fine", "sleep": 0.1}, {"video_id": vid, "fail": "permanent"}])
    nkod.systemctl("start", "nkod.service")
    nkod.wait_all_completed(["fine"])
    nkod.wait_for("the failure in the log", lambda: nkod.of_type("video_failed", vid))

    def records() -> list[dict[str, Any]]:
        # as an operator types it; no --after-cursor (journalctl skips the first match after a cursor)
        out = nkod.box.run("journalctl", "--no-pager", "-o", "json", "-u", "nkod", f"VIDEO_ID={vid}").stdout
        return [orjson.loads(line) for line in out.splitlines() if line.strip()]

    nkod.wait_for("the failure in the journal", lambda: any(r.get("EVENT") == "video_failed" for r in records()))
    found = records()
    assert found and all(r["VIDEO_ID"] == vid for r in found)
    assert {"video_started", "video_failed"} <= {r["EVENT"] for r in found}
    failed = next(r for r in found if r["EVENT"] == "video_failed")
    logged = nkod.of_type("video_failed", vid)[0]
    assert failed["SEQ"] == str(logged["seq"]) and failed["ATTEMPT"] == "1"
    assert failed["ERROR"] == logged["error"] and failed["PRIORITY"] == "3"
    assert failed["SYSLOG_IDENTIFIER"] == "nkod" and failed["_SYSTEMD_UNIT"] == "nkod.service"


def test_reload_rereads_the_config_and_loses_nothing(nkod: Service) -> None:
    """`systemctl reload` (SIGHUP): same process, new config in effect, running work kept; a bad config makes
    the reload itself fail (ExecReload= runs `nkod --check-config` first) and the daemon keeps its config."""
    nkod.set_config(workers=1)
    nkod.set_manifest(_videos(a=2.0, b=2.0, c=2.0, d=2.0, e=0.2))
    nkod.systemctl("start", "nkod.service")
    nkod.wait_started("a")
    pid = nkod.main_pid()
    nkod.set_config(workers=2)
    nkod.systemctl("reload", "nkod.service")
    nkod.wait_for("config_reloaded", lambda: nkod.of_type("config_reloaded"))
    assert nkod.of_type("config_reloaded")[0]["workers"] == 2
    nkod.wait_for("two videos at once", lambda: ", 2 running" in nkod.prop("StatusText"))
    nkod.box.write(CONFIG, "[daemon]\nworkers = 0\n")
    refused = nkod.systemctl("reload", "nkod.service", check=False)
    assert refused.returncode != 0, "a reload with a bad config must fail visibly"
    nkod.wait_for("the check's message in the journal", lambda: "daemon.workers" in nkod.journal())
    _ran_once(nkod, ["a", "b", "c", "d", "e"])
    assert nkod.main_pid() == pid and nkod.active()
    assert len(nkod.of_type("config_reloaded")) == 1
    assert nkod.of_type("video_interrupted") == [] and len(nkod.of_type("daemon_started")) == 1


def test_second_nkod_on_the_state_dir_is_refused_naming_the_services_pid(nkod: Service) -> None:
    """A manual `nkod` on /var/lib/nkod while the service runs exits 3 and names the service's PID."""
    nkod.set_manifest(_videos(a=3.0))
    nkod.systemctl("start", "nkod.service")
    pid = nkod.main_pid()
    done = nkod.box.run(
        "runuser", "-u", "nkod", "--",
        "env", f"PYTHONPATH={BOX_TESTS}", f"NKOD_CONFIG={CONFIG}",
        f"{BOX_VENV}/bin/nkod", "--data-dir", DATA,
        check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"PID {pid}" in done.stdout + done.stderr
    assert nkod.main_pid() == pid and nkod.active()
    assert len(nkod.of_type("daemon_started")) == 1
    _ran_once(nkod, ["a"])


def test_operator_in_group_nkod_runs_nkoctl_status_and_retry_without_root(nkod: Service) -> None:
    """A member of group nkod (not root) reads status, fixes videos.jsonl and queues a retry the service runs."""
    nkod.set_manifest([{"video_id": "ok", "sleep": 0.1}, {"video_id": "bad", "fail": "permanent"}])
    nkod.systemctl("start", "nkod.service")
    nkod.wait_for("bad failed", lambda: nkod.of_type("video_failed", "bad"))
    as_operator = ["runuser", "-u", OPERATOR, "--"]
    nkoctl = [*as_operator, f"{BOX_VENV}/bin/nkoctl"]
    # no --data-dir: from a directory without ./data, nkoctl finds the service's /var/lib/nkod
    status = orjson.loads(nkod.box.run("/bin/sh", "-c", 'cd / && exec "$@"', "sh", *nkoctl, "status", "--json").stdout)
    assert status["completed"] == 1 and [f["id"] for f in status["failed"]] == ["bad"]
    fixed = '{"video_id": "ok", "path": "/dev/null", "sleep": 0.1}\n{"video_id": "bad", "path": "/dev/null"}\n'
    script = f"cat > {DATA}/.videos.new && mv {DATA}/.videos.new {DATA}/videos.jsonl"
    nkod.box.run(*as_operator, "/bin/sh", "-ec", script, stdin=fixed)
    nkod.box.run(*nkoctl, "--data-dir", DATA, "retry", "bad")
    _ran_once(nkod, ["ok", "bad"])
    assert [e["video_id"] for e in nkod.of_type("retry_requested")] == ["bad"]
    nkod.wait_for("the request consumed", lambda: nkod.box.run("ls", f"{DATA}/requests").stdout.strip() == "")
    denied = nkod.box.run("runuser", "-u", "nobody", "--", "cat", f"{DATA}/events.jsonl", check=False)
    assert denied.returncode != 0  # others get nothing


def test_nkoctl_status_sees_the_running_service(nkod: Service) -> None:
    """`nkoctl status --json` run by an operator says the daemon runs while the service runs."""
    nkod.set_manifest(_videos(a=3.0))
    nkod.systemctl("start", "nkod.service")
    nkoctl = ["runuser", "-u", OPERATOR, "--", f"{BOX_VENV}/bin/nkoctl", "--data-dir", DATA]
    status = orjson.loads(nkod.box.run(*nkoctl, "status", "--json").stdout)
    assert status["daemon_running"] is True
