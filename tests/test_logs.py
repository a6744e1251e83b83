"""Log lines: journald priorities without timestamps under systemd, plain or console elsewhere."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import orjson
import structlog

from nkod import logs
from tests.helpers import DataDir, env


def test_journal_renderer_prefixes_priority_and_has_no_timestamp() -> None:
    """<N> from the level (info 6, warning 4, error 3); key=value after the event; no time."""
    assert logs.journal_renderer(None, "info", {"event": "ready", "level": "info", "seq": 3}) == "<6>ready seq=3"
    assert logs.journal_renderer(None, "error", {"event": "x", "level": "error", "e": "a b"}) == '<3>x e="a b"'
    assert logs.journal_renderer(None, "warning", {"event": "w", "level": "warning"}) == "<4>w"


def test_plain_format_has_a_timestamp_and_level() -> None:
    """Off a terminal and off the journal: 'timestamp level event k=v'."""
    buf = io.StringIO()
    logs.configure("plain", stream=buf)
    structlog.get_logger().info("ready", seq=3)
    assert re.match(r"^\d{4}-\d\d-\d\dT\S+ info +ready seq=3$", buf.getvalue().strip())


def test_journal_is_detected_from_journal_stream(tmp_path: Path) -> None:
    """The real daemon, stdout on a file named by JOURNAL_STREAM and no journal socket to reach: every line has
    a priority and no timestamp; a failed video is an error (3), a retry a warning (4)."""
    d = DataDir(tmp_path / "data", max_attempts=2, backoff_initial=0.05)
    d.manifest([{"video_id": "ok"}, {"video_id": "bad", "fail": "transient"}])
    out_path = tmp_path / "journal.txt"
    with open(out_path, "w") as out:
        st = os.fstat(out.fileno())
        args = [a for a in d.nkod_args("--once") if a not in ("--log-format", "plain")]
        r = subprocess.run(
            args,
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}", NKOD_JOURNAL_SOCKET=str(tmp_path / "no-journal")),
            timeout=60,
        )
    assert r.returncode == 0
    lines = out_path.read_text().splitlines()
    assert lines and all(re.match(r"^<[0-7]>", line) for line in lines), lines
    assert not any(re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line.split(" ", 1)[0]) for line in lines)
    assert any(line.startswith("<6>video_completed") for line in lines)
    assert any(line.startswith("<4>video_retry_scheduled") for line in lines)
    assert any(line.startswith("<3>video_failed") for line in lines)


def test_journal_stream_for_another_file_is_ignored(tmp_path: Path) -> None:
    """JOURNAL_STREAM that does not name our stdout (inherited by a child) is not the journal."""
    with open(tmp_path / "f", "w") as f:
        os.environ["JOURNAL_STREAM"] = "1:1"
        try:
            assert not logs.stdout_is_journal(f)
        finally:
            del os.environ["JOURNAL_STREAM"]


def parse_journal_datagram(data: bytes) -> dict[str, str]:
    """The native protocol, as journald reads it: KEY=value lines, or KEY, u64 length, value (binary-safe)."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        head = data[i:nl]
        if b"=" in head:
            key, _, value = head.partition(b"=")
            i = nl + 1
        else:
            key = head
            (size,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            value = data[nl + 9 : nl + 9 + size]
            assert data[nl + 9 + size : nl + 10 + size] == b"\n"
            i = nl + 10 + size
        fields[key.decode()] = value.decode()
    return fields


def test_journal_fields_encoding_round_trips_values_with_newlines() -> None:
    """Values with a newline use the binary-safe form; every value comes back as it was."""
    fields = {"MESSAGE": "two\nlines", "VIDEO_ID": "a-b_1", "ERROR": "x=y [z]"}
    assert parse_journal_datagram(logs.encode_journal_fields(fields)) == fields


def test_under_journald_each_event_carries_video_id_event_seq_attempt_fields(tmp_path: Path) -> None:
    """The real daemon sends native journal records to the socket: PRIORITY, SYSLOG_IDENTIFIER=nkod, EVENT,
    and VIDEO_ID/SEQ/ATTEMPT/ERROR where the event has them, matching the log; nothing goes to stdout."""
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock_path = tmp_path / "journal.sock"
    journal.bind(str(sock_path))
    journal.settimeout(0.2)
    d = DataDir(tmp_path / "data", max_attempts=1)
    d.manifest([{"video_id": "ok-1"}, {"video_id": "bad_2", "fail": "permanent"}])
    out_path = tmp_path / "stdout.txt"
    with open(out_path, "w") as out:
        st = os.fstat(out.fileno())
        args = [a for a in d.nkod_args("--once") if a not in ("--log-format", "plain")]
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}", NKOD_JOURNAL_SOCKET=str(sock_path)),
        )
        records: list[dict[str, str]] = []
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                records.append(parse_journal_datagram(journal.recv(1 << 20)))
        assert proc.wait(timeout=10) == 0
    while True:
        try:
            records.append(parse_journal_datagram(journal.recv(1 << 20)))
        except TimeoutError:
            break
    assert out_path.read_text() == ""
    by_event = {(r["EVENT"], r.get("VIDEO_ID")): r for r in records}
    done = by_event[("video_completed", "ok-1")]
    failed = by_event[("video_failed", "bad_2")]
    events = {(e["type"], e.get("video_id")): e for e in d.events()}
    assert done["SEQ"] == str(events[("video_completed", "ok-1")]["seq"]) and done["ATTEMPT"] == "1"
    assert done["PRIORITY"] == "6" and failed["PRIORITY"] == "3"
    assert failed["ERROR"] == events[("video_failed", "bad_2")]["error"]
    assert all(r["SYSLOG_IDENTIFIER"] == "nkod" for r in records)
    assert done["MESSAGE"].startswith("video_completed ") and "video_id=ok-1" in done["MESSAGE"]
    journal.close()


def test_stdout_closed_by_the_reader_does_not_stop_the_drain(tmp_path: Path) -> None:
    """`nkod | tee` and Ctrl+C: tee dies, stdout is a broken pipe; the daemon still drains, records the running
    video interrupted and daemon_stopped, and exits 0 (not a storage failure)."""
    d = DataDir(tmp_path / "data", stop_grace=0.5)
    d.manifest([{"video_id": "long", "sleep": 60}])
    proc = subprocess.Popen(d.nkod_args(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    deadline = time.monotonic() + 60
    while not any(e["type"] == "video_started" for e in d.events()):
        assert time.monotonic() < deadline and proc.poll() is None, "the video never started"
        time.sleep(0.05)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader goes away, as tee does on Ctrl+C
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    types = [e["type"] for e in d.events()]
    assert "video_interrupted" in types and types[-1] == "daemon_stopped"
    assert b"storage_failed" not in err and b"BrokenPipeError" not in err


def test_no_color_turns_off_the_console_renderers_colours(tmp_path: Path) -> None:
    """NO_COLOR set: the console log has no ANSI escapes; without it, it has them."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "a"}])

    def run(**extra: str) -> str:
        args = [*(a for a in d.nkod_args("--once") if a not in ("--log-format", "plain")), "--log-format", "console"]
        r = subprocess.run(args, capture_output=True, text=True, env=env(**extra), timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "\x1b[" in run()
    plain = run(NO_COLOR="1")
    assert "\x1b[" not in plain and "ready" in plain


def test_a_json_log_line_is_one_object_per_event(tmp_path: Path) -> None:
    """log_format json: every stdout line is a JSON object with event and level."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "a"}])
    args = [*(a for a in d.nkod_args("--once") if a not in ("--log-format", "plain")), "--log-format", "json"]
    r = subprocess.run(args, capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 0, r.stderr
    docs = [orjson.loads(line) for line in r.stdout.splitlines()]
    assert docs and all("event" in doc and "level" in doc for doc in docs)
