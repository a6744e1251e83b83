"""Issue 8, the processor boundary: what a processor returns or does never crashes nkod, never reaches
the log in a form that cannot replay, and never costs other videos their work."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkod import decide, eventlog, snapshot, views
from nkod.state import fold, parse_ts
from tests.helpers import DataDir, wait_for
from tests.strategies import events as plain_events
from tests.strategies import stamp

HOSTILE = "tests.hostile_processors:process"
ODD_LOG = Path(__file__).parent / "data" / "odd-values-v1"


def last_event(d: DataDir, video_id: str) -> dict[str, Any]:
    return [e for e in d.events() if e.get("video_id") == video_id][-1]


def ending(d: DataDir, video_id: str) -> dict[str, Any]:
    """The event that recorded how the video's only attempt ended."""
    ends = [
        e
        for e in d.events()
        if e.get("video_id") == video_id and e["type"] in ("video_completed", "video_failed", "video_retry_scheduled")
    ]
    assert ends, d.types(video_id)
    return ends[0]


def assert_usable(d: DataDir) -> None:
    """nkod starts again on the data dir, and nkoctl status and plan work on it."""
    again = d.run()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for args in (("status", "--json"), ("status",), ("plan",)):
        r = d.ctl(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert d.ctl("fsck").returncode == 0


# -- item 1: counts that are not finite numbers -------------------------------------------------------


@pytest.mark.parametrize(("value", "said"), [("nan", "nan"), ("inf", "inf"), ("huge", "1e+300"), ("text", "'text'")])
def test_a_count_that_is_not_a_finite_number_fails_the_video_naming_the_key(
    tmp_path: Path, value: str, said: str
) -> None:
    """nan, inf, a huge number or a string as a count fails that video at once, naming the key and value;
    the other video completes and the data dir stays usable."""
    d = DataDir(tmp_path / "d", processor=HOSTILE, max_attempts=3)
    d.manifest([{"video_id": "bad", "do": "bad_count", "value": value}, {"video_id": "good"}])
    r = d.run()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    failed = ending(d, "bad")
    assert failed["type"] == "video_failed" and failed["error_kind"] == "permanent", failed
    assert f"duration_seconds={said}" in failed["error"], failed
    assert ending(d, "good")["type"] == "video_completed"
    assert_usable(d)
    assert d.status()["completed"] == 1


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ('{"type": "result", "counts": {"frames": null}}', "frames=None"),
        ('{"type": "result", "counts": {"frames": 1, "duration_seconds": "12.5"}}', "duration_seconds='12.5'"),
        ('{"type": "result", "counts": {"frames": 1e300}}', "frames=1e+300"),
        ('{"type": "result", "counts": "lots"}', "expected a dict of counts"),
        ('{"type": "result"}', "expected a dict of counts"),
    ],
)
def test_a_bad_result_message_from_the_worker_fails_the_video(tmp_path: Path, raw: str, said: str) -> None:
    """A result line written straight to the message fd (an old or broken worker) is checked by the daemon:
    a bad count fails the video with an error naming it, and nothing unreplayable reaches the log."""
    d = DataDir(tmp_path / "d", processor=HOSTILE)
    d.manifest([{"video_id": "bad", "do": "raw", "raw": raw}, {"video_id": "good"}])
    r = d.run()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    failed = ending(d, "bad")
    assert failed["type"] == "video_failed" and said in failed["error"], failed
    assert ending(d, "good")["type"] == "video_completed"
    assert_usable(d)


@pytest.mark.parametrize(
    "raw",
    [
        "[1, 2, 3]",
        '"result"',
        '{"type": "error", "kind": ["transient"], "error": {"why": 1}}',
        '{"type": "error", "kind": "sideways", "error": "odd kind"}',
        '{"type": "error"}',
    ],
)
def test_an_odd_message_from_the_worker_never_crashes_the_daemon(tmp_path: Path, raw: str) -> None:
    """A message that is not an object, or an error with an unknown kind or a non-string error, ends the
    video failed with an error in words; the daemon goes on."""
    d = DataDir(tmp_path / "d", processor=HOSTILE, max_attempts=1)
    d.manifest([{"video_id": "bad", "do": "raw", "raw": raw}, {"video_id": "good"}])
    r = d.run()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    failed = ending(d, "bad")
    assert failed["type"] == "video_failed" and isinstance(failed["error"], str) and failed["error"], failed
    assert failed["error_kind"] in ("permanent", "transient"), failed  # a kind the engine knows
    assert ending(d, "good")["type"] == "video_completed"
    assert_usable(d)


# -- item 1, second half: the fold replays whatever a checksummed line can hold ------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["a", "b", "2026-01-01T00:00:05.000000Z", "completed", "transient"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def odd_event(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A plain event with some of its fields given arbitrary JSON values, some dropped, some added."""
    event = dict(base)
    for key in list(event):
        if key == "type":
            continue
        choice = draw(st.sampled_from(["keep", "keep", "odd", "drop"]))
        if choice == "odd":
            event[key] = draw(json_values)
        elif choice == "drop":
            del event[key]
    for key in draw(st.lists(st.sampled_from(["video_id", "counts", "attempt", "orig_seq", "problems"]), max_size=2)):
        event[key] = draw(json_values)
    return event


@st.composite
def odd_logs(draw: st.DrawFn) -> list[dict[str, Any]]:
    log = draw(plain_events)
    drafts = [{k: v for k, v in e.items() if k not in ("v", "seq", "ts")} for e in log[1:]]
    odd = [draw(odd_event(d)) for d in drafts]
    return stamp([{"type": "log_created", "log_id": "x"}, *odd])


@settings(max_examples=300, deadline=None)
@given(odd_logs(), st.data())
def test_the_fold_replays_any_json_in_event_fields(log: list[dict[str, Any]], data: st.DataObject) -> None:
    """Events whose fields hold any JSON value (or none) replay without raising; two-part replay equals
    whole, a snapshot round trip too; status and plan can be made from the result."""
    whole = fold(log)
    cut = data.draw(st.integers(0, len(log)))
    assert fold(log[cut:], fold(log[:cut])) == whole
    assert (
        fold(log[cut:], snapshot.state_from_doc(orjson.loads(orjson.dumps(snapshot.state_to_doc(fold(log[:cut]))))))
        == whole
    )
    now = parse_ts("2026-01-02T00:00:00.000000Z")
    orjson.dumps(views.status_doc(whole, now, None))
    decide.plan(whole, ["a", "b", "c"], now)


def test_the_odd_values_log_replays_forever(tmp_path: Path) -> None:
    """A checked-in log of odd but checksummed lines (nulls, strings, nested objects, missing fields as
    nkod 0.1 could have written them) replays to its recorded state, and nkod, status and plan work on it."""
    events, result = eventlog.read_all(ODD_LOG / "events.jsonl")
    assert result.torn is None and len(events) > 10
    doc = snapshot.state_to_doc(fold(events))
    doc["offset"] = result.end_offset
    assert doc == orjson.loads((ODD_LOG / "state.json").read_bytes())
    d = DataDir(tmp_path / "d", processor=HOSTILE)
    shutil.copy(ODD_LOG / "events.jsonl", d.log)
    d.manifest([{"video_id": "v1"}, {"video_id": "v9"}])
    assert_usable(d)
    assert d.status()["completed"] >= 1


# -- item 2: a Retry-After that is not a number -------------------------------------------------------


@pytest.mark.parametrize(
    "video",
    [
        {"fail": "transient", "retry_after": "120"},  # TransientError(retry_after="120"), as from a header
        {
            "processor": HOSTILE,
            "do": "raw",
            "raw": '{"type": "error", "kind": "transient", "error": "429", "retry_after": "120"}',
        },  # straight to the message fd
    ],
    ids=["processor", "worker-message"],
)
def test_a_retry_after_string_is_read_as_seconds(tmp_path: Path, video: dict[str, Any]) -> None:
    """retry_after="120" waits 120 s before the retry; the daemon does not crash and runs the other video."""
    processor = video.pop("processor", "tests.processors:process")
    d = DataDir(tmp_path / "d", processor=processor, backoff_max=300.0)
    d.manifest([{"video_id": "limited", **video}, {"video_id": "good"}])
    proc = d.start()
    try:
        wait_for(lambda: "video_retry_scheduled" in d.types("limited"), what="the retry to be scheduled")
        wait_for(lambda: "video_completed" in d.types("good"), what="the other video")
        assert proc.poll() is None, d.output_text()[-3000:]
        retry = ending(d, "limited")
        assert retry["delay_seconds"] == 120.0 and retry["error"], retry
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, d.output_text()[-3000:]


@pytest.mark.parametrize("retry_after", ["soon", "-5", "nan", "", "1e999"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(tmp_path: Path, retry_after: str) -> None:
    """A garbage, negative or non-finite retry_after is ignored (the usual backoff applies) and the error
    text is still recorded; the retry then completes."""
    d = DataDir(tmp_path / "d", backoff_initial=0.2)
    d.manifest([{"video_id": "v1", "fail": "transient", "fail_attempts": 1, "retry_after": retry_after}])
    r = d.run()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    retry = ending(d, "v1")
    assert retry["type"] == "video_retry_scheduled" and retry["delay_seconds"] == 0.2, retry
    assert "rate limited" in retry["error"], retry
    assert d.types("v1")[-1] == "video_completed"


# -- item 3: a processor that removes its own work dir --------------------------------------------------


@pytest.mark.parametrize("do", ["rmdir", "file"])
def test_a_processor_that_removes_its_work_dir_fails_only_that_video(tmp_path: Path, do: str) -> None:
    """The work dir gone (or a file in its place) fails that video permanently with a clear error; it is not
    a storage error (no exit 75), the other video completes, and the next start goes on normally."""
    d = DataDir(tmp_path / "d", processor=HOSTILE)
    d.manifest([{"video_id": "rude", "do": do}, {"video_id": "good"}])
    r = d.run()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "storage_failed" not in r.stdout
    failed = ending(d, "rude")
    assert failed["type"] == "video_failed" and failed["error_kind"] == "permanent", failed
    assert "work dir" in failed["error"] and "removed" in failed["error"], failed
    assert ending(d, "good")["type"] == "video_completed"
    assert not (d.root / "output" / "rude").exists()
    assert_usable(d)
    assert d.types("rude").count("video_started") == 1  # not redone on the next start
    assert d.ctl("retry", "rude").returncode == 0  # and a retry starts it afresh, whatever it left
    again = d.run()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert d.types("rude").count("video_started") == 2 and d.types("rude")[-1] == "video_failed"


# -- item 15: what a processor starts does not outlive its worker ---------------------------------------


def sleeper_alive(pid: int) -> bool:
    """Is `pid` still our `sleep` (not gone, not a zombie, not a reused pid)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and cmdline.startswith(b"sleep\0")


@contextlib.contextmanager
def sleeper_from(pid_file: Path) -> Any:
    """Yield a function giving the sleeper's pid; kill it at the end whatever happened (test hygiene)."""
    try:
        yield lambda: int(pid_file.read_text())
    finally:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if sleeper_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_timed_out_worker_takes_what_its_processor_started_with_it(tmp_path: Path) -> None:
    """A processor that started `sleep` and then hung past video_timeout: the timeout stops the worker's
    whole process group, so the sleep is gone after the timeout and stays gone after nkod exits."""
    pid_file = tmp_path / "sleep.pid"
    d = DataDir(tmp_path / "d", processor=HOSTILE, video_timeout=1.0, max_attempts=1)
    d.manifest([{"video_id": "hang", "do": "spawn_hang", "pid_file": str(pid_file)}])
    proc = d.start()
    with sleeper_from(pid_file) as sleeper:
        try:
            wait_for(lambda: "video_failed" in d.types("hang"), what="the timeout")
            assert "timed out" in ending(d, "hang")["error"]
            wait_for(lambda: not sleeper_alive(sleeper()), timeout=10, what="the sleep to be killed")
            assert proc.poll() is None, d.output_text()[-3000:]
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, d.output_text()[-3000:]
        assert not sleeper_alive(sleeper())


def test_a_worker_stopped_at_the_end_of_the_grace_period_takes_its_group_with_it(tmp_path: Path) -> None:
    """SIGTERM with a video running past stop_grace: the worker's whole group is stopped, the video is
    recorded interrupted, nkod exits 0 and the processor's sleep is gone."""
    pid_file = tmp_path / "sleep.pid"
    d = DataDir(tmp_path / "d", processor=HOSTILE, stop_grace=0.5)
    d.manifest([{"video_id": "hang", "do": "spawn_hang", "pid_file": str(pid_file)}])
    proc = d.start()
    with sleeper_from(pid_file) as sleeper:
        try:
            wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", what="the sleep to start")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, d.output_text()[-3000:]
        assert d.types("hang")[-1] == "video_interrupted"
        assert not sleeper_alive(sleeper())


def test_a_background_process_left_by_a_processor_is_stopped(tmp_path: Path) -> None:
    """A processor that started `sleep` in the background and returned: the video completes and the sleep
    is killed with the rest of its worker's process group."""
    pid_file = tmp_path / "sleep.pid"
    d = DataDir(tmp_path / "d", processor=HOSTILE)
    d.manifest([{"video_id": "leaky", "do": "spawn_return", "pid_file": str(pid_file)}])
    with sleeper_from(pid_file) as sleeper:
        r = d.run()
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert ending(d, "leaky")["type"] == "video_completed"
        assert not sleeper_alive(sleeper())


# -- item 16: out of file descriptors -----------------------------------------------------------------


def open_fds(pid: int) -> set[int]:
    return {int(n) for n in os.listdir(f"/proc/{pid}/fd")}


def fds_steady(pid: int) -> bool:
    before = open_fds(pid)
    time.sleep(0.3)
    return open_fds(pid) == before


def limit_leaving_one_free_fd(pid: int) -> int:
    """The RLIMIT_NOFILE at which `pid` can open exactly one more fd (new fds take the lowest free number
    below the limit): enough to read a file, not to make a pipe for a worker."""
    used = open_fds(pid)
    limit = 1
    while limit - len({fd for fd in used if fd < limit}) < 1:
        limit += 1
    return limit


def test_running_out_of_file_descriptors_is_a_transient_failure_not_a_disk_problem(tmp_path: Path) -> None:
    """With no fd to spare for a worker's pipe the video gets transient failures naming file descriptors
    (then fails), never left running and never exit 75; with fds back, a retry completes it."""
    d = DataDir(tmp_path / "d", max_attempts=2, backoff_initial=0.2)
    d.manifest([])
    proc = d.start()
    try:
        views = d.root / "checkpoints" / "extraction_progress.json"  # written after READY
        wait_for(lambda: " ready " in d.output_text() and views.exists(), what="the daemon to be ready")
        wait_for(lambda: fds_steady(proc.pid), what="the daemon to be idle")
        soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (limit_leaving_one_free_fd(proc.pid), hard))
        d.manifest([{"video_id": "v1"}])
        wait_for(lambda: "video_failed" in d.types("v1"), what="v1 to fail for want of fds")
        assert proc.poll() is None, d.output_text()[-3000:]
        ends = [e for e in d.events() if e.get("video_id") == "v1" and e["type"] != "video_started"]
        assert [e["type"] for e in ends] == ["video_retry_scheduled", "video_failed"], ends
        for e in ends:
            assert e["error_kind"] == "transient" and "file descriptors" in e["error"], e
        assert d.status()["running"] == []
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert d.ctl("retry", "v1").returncode == 0
        wait_for(lambda: "video_completed" in d.types("v1"), what="the retry to complete")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    said = d.output_text()
    assert code == 0, said[-3000:]
    assert "storage_failed" not in said and "free space" not in said, said[-3000:]


def test_an_fd_shortage_in_the_loop_is_reported_as_what_it_is(tmp_path: Path) -> None:
    """With no fd at all to spare the daemon cannot list its spool: it stops (exit 75, to be restarted)
    saying it is out of file descriptors (system_error), not that the disk is full."""
    d = DataDir(tmp_path / "d")
    d.manifest([])
    proc = d.start()
    try:
        views = d.root / "checkpoints" / "extraction_progress.json"  # written after READY
        wait_for(lambda: " ready " in d.output_text() and views.exists(), what="the daemon to be ready")
        wait_for(lambda: fds_steady(proc.pid), what="the daemon to be idle")
        _soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (limit_leaving_one_free_fd(proc.pid) - 1, hard))
        code = proc.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    said = d.output_text()
    assert code == 75, said[-3000:]
    assert "system_error" in said and "out of file descriptors" in said, said[-3000:]
    assert "storage_failed" not in said and "free space" not in said, said[-3000:]
    assert d.run().returncode == 0  # and the next start goes on
