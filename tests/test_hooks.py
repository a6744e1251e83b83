"""The ``[hooks]`` table: real commands run by the real daemon, with the event in their environment."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from nkod.state import seconds_between
from tests.helpers import DataDir, add_config_table, wait_for

# A hook that appends one JSON line per run to a file: its NKOD_* environment, and whether the event it
# was told about (NKOD_SEQ) was already in the log when it ran.
RECORDER = """
import json, os, sys
seq = os.environ.get("NKOD_SEQ")
log = os.path.join(os.environ["NKOD_DATA_DIR"], "events.jsonl")
durable = any(json.loads(line).get("seq") == int(seq) for line in open(log)) if seq else None
record = {k: v for k, v in os.environ.items() if k.startswith("NKOD_")}
record.update(durable=durable, cwd=os.getcwd(), argv=sys.argv[2:], stdin=sys.stdin.read())
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(record) + "\\n")
"""


def recorder(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", RECORDER, str(out), *args]


def records(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def seq_of(d: DataDir, kind: str, vid: str) -> int:
    return next(int(e["seq"]) for e in d.events() if e["type"] == kind and e.get("video_id") == vid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def d(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "data")


def test_completed_and_failed_hooks_get_the_durable_event_in_their_environment(d: DataDir, tmp_path: Path) -> None:
    """on_completed/on_failed run once per such event, after it is in the log, with its fields as NKOD_*;
    a retried transient failure is not a failure yet."""
    out = tmp_path / "hooks.jsonl"
    add_config_table(d, "hooks", {"on_completed": recorder(out, "done"), "on_failed": recorder(out, "failed")})
    d.manifest(
        [
            {"video_id": "v01", "frames": 2},
            {"video_id": "v02", "fail": "permanent"},
            {"video_id": "v03", "fail": "transient", "fail_attempts": 1},
        ]
    )
    r = d.run()
    assert r.returncode == 0, r.stdout
    got = {(rec["NKOD_HOOK"], rec["NKOD_VIDEO_ID"]): rec for rec in records(out)}
    assert sorted(got) == [("on_completed", "v01"), ("on_completed", "v03"), ("on_failed", "v02")]
    done = got[("on_completed", "v01")]
    assert done["NKOD_EVENT"] == "video_completed"
    assert done["NKOD_SEQ"] == str(seq_of(d, "video_completed", "v01"))
    assert done["NKOD_ATTEMPT"] == "1"
    assert orjson.loads(done["NKOD_COUNTS"])["frames"] == 2
    assert done["NKOD_DATA_DIR"] == str(d.root.resolve()) and done["cwd"] == str(d.root.resolve())
    assert done["argv"] == ["done"] and done["stdin"] == ""
    assert got[("on_completed", "v03")]["NKOD_ATTEMPT"] == "2"
    failed = got[("on_failed", "v02")]
    assert failed["NKOD_EVENT"] == "video_failed" and failed["NKOD_ERROR_KIND"] == "permanent"
    assert "v02 is unavailable" in failed["NKOD_ERROR"]
    assert all(rec["durable"] is True for rec in got.values())
    assert "video_failed" not in d.types("v03")


def test_on_stopped_runs_at_stop_and_the_daemon_waits_for_it(d: DataDir, tmp_path: Path) -> None:
    """on_stopped gets the stop's reason and exit code; nkod exits only after the hook finished."""
    out = tmp_path / "hooks.jsonl"
    slow = [sys.executable, "-c", "import time; time.sleep(1)\n" + RECORDER, str(out)]
    add_config_table(d, "hooks", {"on_stopped": slow})
    d.manifest([{"video_id": "v01"}])
    r = d.run()
    assert r.returncode == 0, r.stdout
    [rec] = records(out)
    # nkod itself saw the hook end before it said it stopped (not only its output pipe, which the hook shares)
    assert "hook_done hook=on_stopped" in r.stdout
    assert r.stdout.index("hook_done hook=on_stopped") < r.stdout.index(" stopped reason=")
    assert rec["NKOD_EVENT"] == "daemon_stopped" and rec["NKOD_HOOK"] == "on_stopped"
    assert rec["NKOD_EXIT_CODE"] == "0" and rec["NKOD_REASON"].startswith("once")
    assert rec["durable"] is True


def test_on_idle_fires_once_each_time_the_work_runs_out(d: DataDir, tmp_path: Path) -> None:
    """on_idle when every video is done or failed, once per transition; new work then idle again fires
    again; SIGTERM then runs on_stopped with the signal as the reason."""
    out = tmp_path / "hooks.jsonl"
    add_config_table(d, "hooks", {"on_idle": recorder(out), "on_stopped": recorder(out)})
    d.manifest([{"video_id": "v01"}, {"video_id": "v02", "fail": "permanent"}])
    proc = d.start()
    try:
        wait_for(lambda: len(records(out)) == 1, what="the first on_idle")
        time.sleep(1.5)  # three rescans while idle: still one
        assert len(records(out)) == 1
        d.manifest([{"video_id": "v03"}], append=True)
        wait_for(lambda: len(records(out)) == 2, what="the second on_idle")
        assert d.completed_count()["v03"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    first, second, stopped = records(out)
    assert first["NKOD_EVENT"] == "idle" and first["NKOD_HOOK"] == "on_idle"
    assert (first["NKOD_TOTAL"], first["NKOD_COMPLETED"], first["NKOD_FAILED"]) == ("2", "1", "1")
    assert (second["NKOD_TOTAL"], second["NKOD_COMPLETED"]) == ("3", "2")
    assert stopped["NKOD_HOOK"] == "on_stopped" and stopped["NKOD_REASON"] == "SIGTERM"


def test_a_daemon_with_nothing_to_do_does_not_announce_idle(d: DataDir, tmp_path: Path) -> None:
    """Starting with all work already done is not a transition to idle."""
    d.manifest([{"video_id": "v01"}])
    assert d.run().returncode == 0
    out = tmp_path / "hooks.jsonl"
    add_config_table(d, "hooks", {"on_idle": recorder(out)})
    r = d.run()
    assert r.returncode == 0, r.stdout
    assert records(out) == []


def test_hooks_run_in_the_background(d: DataDir, tmp_path: Path) -> None:
    """Slow on_completed hooks do not hold up the next videos; all of them still finish before nkod exits."""
    out = tmp_path / "hooks.jsonl"
    slow = [sys.executable, "-c", "import time; time.sleep(5)\n" + RECORDER, str(out)]
    add_config_table(d, "hooks", {"on_completed": slow})
    d.manifest([{"video_id": f"v0{i}"} for i in range(1, 5)])
    r = d.run()
    assert r.returncode == 0, r.stdout
    started = [e["ts"] for e in d.events() if e["type"] == "video_started"]
    assert seconds_between(started[0], started[-1]) < 10  # waiting on each hook would take 15 s or more
    assert sorted(rec["NKOD_VIDEO_ID"] for rec in records(out)) == ["v01", "v02", "v03", "v04"]


def test_failing_and_hanging_hooks_are_logged_and_never_affect_the_run(d: DataDir, tmp_path: Path) -> None:
    """A hook exiting non-zero is a warning; one past `timeout` is killed with its whole process group;
    every video still completes once and nkod exits 0."""
    pids = tmp_path / "pids"
    hang = ["/bin/sh", "-c", f"echo $$ >> {pids}; sleep 60 & echo $! >> {pids}; wait"]
    add_config_table(d, "hooks", {"on_completed": hang, "on_stopped": ["/bin/sh", "-c", "exit 3"], "timeout": 0.5})
    d.manifest([{"video_id": f"v0{i}"} for i in range(1, 4)])
    t0 = time.monotonic()
    r = d.run()
    assert r.returncode == 0, r.stdout
    assert time.monotonic() - t0 < 30
    assert d.completed_count() == {"v01": 1, "v02": 1, "v03": 1}
    assert r.stdout.count("hook_timeout") == 3
    assert "hook_failed hook=on_stopped" in r.stdout and "exit code 3" in r.stdout
    written = [int(p) for p in pids.read_text().split()]
    assert len(written) == 6
    wait_for(lambda: not any(alive(pid) for pid in written), timeout=5, what="the hooks' processes to die")


def test_hooks_config_errors_name_the_key(d: DataDir, tmp_path: Path) -> None:
    """Unknown keys, missing programs, relative paths and a bad timeout stop nkod with exit 2 naming the key."""
    base = d.config.read_text()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"on_complete": ["/bin/true"]}, "hooks.on_complete"),
        ({"on_failed": ["no-such-program-nkod"]}, "hooks.on_failed"),
        ({"on_idle": ["bin/true"]}, "hooks.on_idle"),
        ({"on_stopped": "/bin/true"}, "hooks.on_stopped"),
        ({"timeout": 0}, "hooks.timeout"),
    ]
    d.manifest([{"video_id": "v01"}])
    for table, key in cases:
        d.config.write_text(base)
        add_config_table(d, "hooks", table)
        r = d.run()
        assert r.returncode == 2, (table, r.stdout, r.stderr)
        assert f"{d.config}: {key}" in r.stderr, r.stderr
    assert not d.log.exists()


def test_print_config_shows_the_hooks(d: DataDir) -> None:
    """--print-config lists the [hooks] table with the effective values."""
    add_config_table(d, "hooks", {"on_failed": ["/bin/echo", "a b"]})
    r = d.run("--print-config")
    assert r.returncode == 0, r.stderr
    assert '[hooks]\non_completed = []\non_failed = ["/bin/echo", "a b"]' in r.stdout
    assert "timeout = 60.0" in r.stdout


def test_a_second_stop_signal_kills_a_slow_on_stopped_hook(d: DataDir, tmp_path: Path) -> None:
    """While nkod waits for on_stopped, a second SIGTERM kills the hook and nkod exits at once."""
    pids = tmp_path / "pids"
    add_config_table(d, "hooks", {"on_stopped": ["/bin/sh", "-c", f"echo $$ > {pids}; sleep 60"], "timeout": 120.0})
    d.manifest([{"video_id": "v01"}])
    proc = d.start()
    wait_for(lambda: d.completed_count() == {"v01": 1}, what="v01 to complete")
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: pids.exists() and pids.read_text().strip() != "", what="on_stopped to start")
    time.sleep(0.5)
    assert proc.poll() is None  # it waits for the hook
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - t0 < 10
    wait_for(lambda: not alive(int(pids.read_text())), timeout=5, what="the hook to die")
    assert "hook_killed hook=on_stopped" in d.output_text() and "second stop signal" in d.output_text()


def test_hooks_added_by_a_reload_apply_to_the_next_events(d: DataDir, tmp_path: Path) -> None:
    """SIGHUP with a new [hooks] table: the next completion runs the new hook, without a restart."""
    d.manifest([{"video_id": "v01"}])
    proc = d.start()
    try:
        wait_for(lambda: d.completed_count() == {"v01": 1}, what="v01 to complete")
        out = tmp_path / "hooks.jsonl"
        add_config_table(d, "hooks", {"on_completed": recorder(out)})
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reloaded" in d.types(), what="the reload")
        d.manifest([{"video_id": "v02"}], append=True)
        wait_for(lambda: len(records(out)) == 1, what="the new hook")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert [rec["NKOD_VIDEO_ID"] for rec in records(out)] == ["v02"]
