"""Log lines: journald priorities without timestamps under systemd, plain or console elsewhere."""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

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
    """The real daemon, stdout on a file named by JOURNAL_STREAM: every line has a priority and no timestamp;
    a failed video is an error (3), a retry a warning (4)."""
    d = DataDir(tmp_path / "data", max_attempts=2, backoff_initial=0.05)
    d.manifest([{"video_id": "ok"}, {"video_id": "bad", "fail": "transient"}])
    out_path = tmp_path / "journal.txt"
    with open(out_path, "w") as out:
        st = os.fstat(out.fileno())
        args = [a for a in d.nkod_args("--once") if a not in ("--log-format", "plain")]
        r = subprocess.run(
            args, stdout=out, stderr=subprocess.DEVNULL, env=env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}"), timeout=60
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
