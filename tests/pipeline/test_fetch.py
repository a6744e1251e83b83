"""Fetching: local files in place, URLs through yt-dlp against a local HTTP server, error classes."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nkod.errors import PermanentError, TransientError
from nkod.pipeline.fetch import classify_download_error, fetch, retry_after_seconds
from nkod.pipeline.settings import parse_settings
from nkod.processor import Report
from tests.pipeline.conftest import LocalServer, Reply

MakeReport = Callable[..., tuple[Report, list[dict[str, Any]]]]
FAST = parse_settings({"download": {"retries": 0, "timeout": 2.0}}, "test")


def _url_entry(server: LocalServer, path: str) -> dict[str, Any]:
    return {"video_id": "v1", "url": server.base + path}


def test_local_path_is_read_in_place(clip_mp4: Path, tmp_path: Path, make_report: MakeReport) -> None:
    """A `path` entry is probed where it is: nothing is copied into the work dir."""
    report, _ = make_report()
    workdir = tmp_path / "work"
    workdir.mkdir()
    got = fetch({"video_id": "v", "path": str(clip_mp4)}, workdir, FAST, report)
    assert got.path == clip_mp4 and not got.downloaded
    assert got.info.width == 320 and got.info.height == 240 and got.info.has_audio
    assert got.info.duration == pytest.approx(12.0, abs=0.2)
    assert list(workdir.iterdir()) == []


def test_missing_local_file_is_permanent_and_named(tmp_path: Path, make_report: MakeReport) -> None:
    """A path that does not exist fails at once, naming the file."""
    report, _ = make_report()
    missing = tmp_path / "nope.mp4"
    with pytest.raises(PermanentError, match=r"nope\.mp4 does not exist"):
        fetch({"video_id": "v", "path": str(missing)}, tmp_path, FAST, report)


def test_directory_path_is_permanent(tmp_path: Path, make_report: MakeReport) -> None:
    """A path naming a directory is bad input."""
    report, _ = make_report()
    with pytest.raises(PermanentError, match="not a regular file"):
        fetch({"video_id": "v", "path": str(tmp_path)}, tmp_path, FAST, report)


def test_local_file_that_is_not_media_is_permanent(tmp_path: Path, make_report: MakeReport) -> None:
    """A text file posing as a video is refused with its name in the message."""
    report, _ = make_report()
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n" * 100)
    with pytest.raises(PermanentError, match=r"fake\.mp4 is not a media file"):
        fetch({"video_id": "v", "path": str(fake)}, tmp_path / "w", FAST, report)


def test_truncated_local_file_without_video_is_permanent(
    clip_mp4: Path, tmp_path: Path, make_report: MakeReport
) -> None:
    """The first kilobytes of an mp4 (moov atom missing) do not pass for a video."""
    report, _ = make_report()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip_mp4.read_bytes()[:2000])
    with pytest.raises(PermanentError, match=r"broken\.mp4"):
        fetch({"video_id": "v", "path": str(broken)}, tmp_path / "w", FAST, report)


def test_entry_without_path_or_url_is_permanent(tmp_path: Path, make_report: MakeReport) -> None:
    """A manifest line with neither path nor url cannot be processed."""
    report, _ = make_report()
    with pytest.raises(PermanentError, match="neither 'path' nor 'url'"):
        fetch({"video_id": "v"}, tmp_path, FAST, report)


def test_url_is_downloaded_with_progress(
    server: LocalServer, clip_mkv: Path, tmp_path: Path, make_report: MakeReport
) -> None:
    """HTTP 200 with a real clip: downloaded into the work dir, opened, progress reported to 100 %."""
    server.routes["/v/clip.mkv"] = Reply(200, clip_mkv.read_bytes(), {"Content-Type": "video/x-matroska"})
    report, messages = make_report()
    got = fetch(_url_entry(server, "/v/clip.mkv"), tmp_path, FAST, report)
    assert got.downloaded
    assert got.path.parent == tmp_path / "download"
    assert got.path.read_bytes() == clip_mkv.read_bytes()
    assert got.info.subtitle_streams == 1
    assert not [p for p in got.path.parent.iterdir() if p.suffix == ".part"]
    percents = [m["percent"] for m in messages if m["stage"] == "download" and "percent" in m]
    assert percents[0] == 0.0 and percents[-1] == 100.0


def test_http_404_is_permanent(server: LocalServer, tmp_path: Path, make_report: MakeReport) -> None:
    """A URL answering 404 fails at once, with the URL and the status in the message."""
    server.routes["/gone.mp4"] = Reply(404, b"no such video")
    report, _ = make_report()
    with pytest.raises(PermanentError) as info:
        fetch(_url_entry(server, "/gone.mp4"), tmp_path, FAST, report)
    assert "404" in str(info.value) and "/gone.mp4" in str(info.value)


def test_http_429_is_transient_with_retry_after(server: LocalServer, tmp_path: Path, make_report: MakeReport) -> None:
    """Rate limiting (429) is transient and carries the server's Retry-After."""
    server.routes["/busy.mp4"] = Reply(429, b"slow down", {"Retry-After": "17"})
    report, _ = make_report()
    with pytest.raises(TransientError) as info:
        fetch(_url_entry(server, "/busy.mp4"), tmp_path, FAST, report)
    assert info.value.retry_after == 17.0
    assert "429" in str(info.value) and "/busy.mp4" in str(info.value)


def test_http_503_is_transient(server: LocalServer, tmp_path: Path, make_report: MakeReport) -> None:
    """A server error (5xx) is worth retrying later."""
    server.routes["/down.mp4"] = Reply(503, b"maintenance")
    report, _ = make_report()
    with pytest.raises(TransientError, match="503"):
        fetch(_url_entry(server, "/down.mp4"), tmp_path, FAST, report)


def test_connection_dropped_mid_file_is_transient_and_leaves_no_part(
    server: LocalServer, clip_mkv: Path, tmp_path: Path, make_report: MakeReport
) -> None:
    """A download cut halfway is transient, and the partial file is removed, never used."""
    data = clip_mkv.read_bytes()
    server.routes["/cut.mkv"] = Reply(200, data, {"Content-Type": "video/x-matroska"}, drop_after=len(data) // 2)
    report, _ = make_report()
    with pytest.raises(TransientError, match=r"/cut\.mkv"):
        fetch(_url_entry(server, "/cut.mkv"), tmp_path, FAST, report)
    leftovers = list((tmp_path / "download").iterdir())
    assert leftovers == []


def test_download_that_is_not_media_is_permanent(server: LocalServer, tmp_path: Path, make_report: MakeReport) -> None:
    """A 200 answer whose body is not a video (served as video/mp4) is refused after download."""
    server.routes["/junk.mp4"] = Reply(200, b"\x00junk" * 2000, {"Content-Type": "video/mp4"})
    report, _ = make_report()
    with pytest.raises(PermanentError, match="not a video"):
        fetch(_url_entry(server, "/junk.mp4"), tmp_path, FAST, report)


def test_html_page_is_permanent(server: LocalServer, tmp_path: Path, make_report: MakeReport) -> None:
    """A web page without a video is an unsupported URL: permanent."""
    server.routes["/page"] = Reply(200, b"<html><body>hello</body></html>", {"Content-Type": "text/html"})
    report, _ = make_report()
    with pytest.raises(PermanentError, match="Unsupported URL"):
        fetch(_url_entry(server, "/page"), tmp_path, FAST, report)


def test_refused_connection_is_transient(tmp_path: Path, make_report: MakeReport) -> None:
    """Nobody listening on the port: a network error, retried later."""
    srv = LocalServer()
    base = srv.base
    srv.close()
    report, _ = make_report()
    with pytest.raises(TransientError, match=r"127\.0\.0\.1"):
        fetch({"video_id": "v", "url": base + "/x.mp4"}, tmp_path, FAST, report)


def test_timeout_is_transient(server: LocalServer, tmp_path: Path, make_report: MakeReport) -> None:
    """A server that does not answer within download.timeout is a transient failure."""
    server.routes["/slow.mp4"] = Reply(200, b"x", {"Content-Type": "video/mp4"}, delay=5.0)
    settings = parse_settings({"download": {"retries": 0, "timeout": 0.5}}, "test")
    report, _ = make_report()
    with pytest.raises(TransientError, match="timed out"):
        fetch(_url_entry(server, "/slow.mp4"), tmp_path, settings, report)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader", "permanent"),
        ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access", "permanent"),
        ("ERROR: [youtube] abc: This video is not available in your country", "permanent"),
        ("ERROR: [youtube] abc: Sign in to confirm you're not a bot", "transient"),
        ("ERROR: unable to download video data: <urlopen error timed out>", "transient"),
        ("ERROR: [download] Got error: Downloaded 10 bytes, expected 20 bytes", "transient"),
        ("ERROR: [youtube] abc: Requested format is not available", "permanent"),
    ],
)
def test_yt_dlp_messages_are_classified(message: str, kind: str) -> None:
    """yt-dlp's usual failure messages map to the right error class, keeping URL and reason."""
    err = classify_download_error("https://example.invalid/watch?v=abc", Exception(message))
    assert err.kind == kind
    assert "https://example.invalid/watch?v=abc" in str(err)
    assert not str(err).count("ERROR:")


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    """Retry-After is read as delta-seconds or as an HTTP date; junk is ignored."""
    assert retry_after_seconds("120") == 120.0
    later = email.utils.formatdate(time.time() + 90, usegmt=True)
    assert retry_after_seconds(later) == pytest.approx(90, abs=2)
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_unavailable_format_is_permanent_with_a_hint(
    server: LocalServer, clip_mkv: Path, tmp_path: Path, make_report: MakeReport
) -> None:
    """A format selector nothing matches fails permanently and says how to get merged formats."""
    server.routes["/v.mkv"] = Reply(200, clip_mkv.read_bytes(), {"Content-Type": "video/x-matroska"})
    settings = parse_settings({"download": {"retries": 0, "format": "b[height>=2160]"}}, "test")
    report, _ = make_report()
    with pytest.raises(PermanentError, match="Requested format is not available") as info:
        fetch(_url_entry(server, "/v.mkv"), tmp_path, settings, report)
    assert "ffmpeg" in str(info.value) and "b[height>=2160]" in str(info.value)
