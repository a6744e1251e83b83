"""Stage 1, fetch: a local ``path`` is read in place; a ``url`` is downloaded with yt-dlp.

Download errors are classified for the engine: network errors, timeouts, HTTP 429/5xx and throttling
are :class:`TransientError` (429 keeps its Retry-After); unavailable, private, removed, 404 and files
that are not media are :class:`PermanentError`. A partial download is never taken for a whole one:
unavailable fragments abort, yt-dlp's ``.part`` files are removed, and the result must open as media.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nkod.errors import PermanentError, ProcessingError, TransientError
from nkod.pipeline.media import MediaInfo, probe
from nkod.pipeline.settings import PipelineSettings

Report = Callable[..., None]

DOWNLOAD_DIR = "download"


@dataclass(frozen=True)
class Fetched:
    """The media file to extract from, plus subtitle files fetched beside it."""

    path: Path
    info: MediaInfo
    downloaded: bool
    subtitle_files: tuple[Path, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


def fetch(video: Mapping[str, Any], workdir: Path, settings: PipelineSettings, report: Report) -> Fetched:
    """Get the video's file: in place for ``path``, downloaded into ``workdir/download`` for ``url``."""
    if video.get("path"):
        path = Path(str(video["path"]))
        if not path.exists():
            raise PermanentError(f"video file {path} does not exist")
        if not path.is_file():
            raise PermanentError(f"video path {path} is not a regular file")
        return Fetched(path=path, info=probe(path), downloaded=False)
    url = video.get("url")
    if not isinstance(url, str) or not url:
        raise PermanentError(f"video {video.get('video_id')!r} has neither 'path' nor 'url'")
    return download(url, workdir / DOWNLOAD_DIR, settings, report)


# --- yt-dlp -------------------------------------------------------------------------------------

_PERMANENT_PATTERNS = (
    r"video unavailable",
    r"private video",
    r"this video (has been|was) removed",
    r"removed by the uploader",
    r"account .* (terminated|closed)",
    r"not available in your country",
    r"sign in to confirm your age",
    r"members-only",
    r"this live event will begin",
    r"unsupported url",
    r"is not a valid url",
    r"requested format is not available",
    r"http error (400|401|403|404|410|451)\b",
    r"no video formats found",
    r"copyright",
)
_TRANSIENT_PATTERNS = (
    r"http error (408|425|429|5\d\d)\b",
    r"timed? ?out",
    r"connection (reset|refused|aborted)",
    r"remote end closed",
    r"temporary failure in name resolution",
    r"name or service not known",
    r"network is unreachable",
    r"incompleteread",
    r"downloaded \d+ bytes, expected \d+ bytes",
    r"content too short",
    r"rate.?limit",
    r"too many requests",
    r"confirm you.?re not a bot",
    r"unable to download (webpage|video data)",
    r"fragment .* not found",
)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from an HTTP Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _http_error(exc: BaseException | None) -> tuple[int, float | None] | None:
    """Status and Retry-After of a yt-dlp HTTPError found in an exception chain."""
    seen = 0
    while exc is not None and seen < 10:
        status = getattr(exc, "status", None)
        response = getattr(exc, "response", None)
        if isinstance(status, int) and response is not None:
            headers = getattr(response, "headers", {}) or {}
            return status, retry_after_seconds(headers.get("Retry-After"))
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
        seen += 1
    return None


def classify_download_error(url: str, exc: BaseException) -> ProcessingError:
    """Turn a yt-dlp failure into a TransientError or PermanentError whose message names the URL."""
    message = re.sub(r"^ERROR:\s*", "", str(exc)).strip()
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    text = f"download of {url} failed: {message}"
    chain = getattr(exc, "exc_info", None)
    http = _http_error(chain[1] if chain else None) or _http_error(exc)
    if http is not None:
        status, retry_after = http
        if status == 429:
            return TransientError(f"{text} (rate limited)", retry_after=retry_after)
        if status >= 500 or status == 408:
            return TransientError(text, retry_after=retry_after)
        if status in (401, 403) and re.search(r"bot|rate|throttl", message, re.I):
            return TransientError(text)
        return PermanentError(text)
    lowered = message.lower()
    for pattern in _PERMANENT_PATTERNS:
        if re.search(pattern, lowered):
            return PermanentError(text)
    for pattern in _TRANSIENT_PATTERNS:
        if re.search(pattern, lowered):
            return TransientError(text)
    # Unknown failures are retried (the engine bounds the attempts) rather than lost for good.
    return TransientError(text)


class _Logger:
    """Collects yt-dlp's messages instead of letting it print to the daemon's stdout."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)


class _Progress:
    """A yt-dlp progress hook reporting at most once a second (and at 100 %)."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.last = 0.0

    def __call__(self, d: Mapping[str, Any]) -> None:
        if d.get("status") != "downloading":
            return
        now = time.monotonic()
        done = d.get("downloaded_bytes") or 0
        total = d.get("total_bytes") or d.get("total_bytes_estimate")
        if now - self.last < 1.0 and not (total and done >= total):
            return
        self.last = now
        fields: dict[str, Any] = {"bytes": int(done)}
        if total:
            fields["percent"] = round(100.0 * done / total, 1)
        if d.get("speed"):
            fields["speed_bps"] = round(float(d["speed"]))
        self.report("download", **fields)


def _ydl_options(outdir: Path, settings: PipelineSettings, logger: _Logger, hook: _Progress) -> dict[str, Any]:
    dl = settings.download
    opts: dict[str, Any] = {
        "outtmpl": {"default": str(outdir / "video.%(ext)s")},
        "format": dl.format,
        "logger": logger,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "progress_hooks": [hook],
        "socket_timeout": dl.timeout,
        "retries": dl.retries,
        "fragment_retries": dl.retries,
        "extractor_retries": dl.retries,
        "file_access_retries": 1,
        "skip_unavailable_fragments": False,
        "noplaylist": True,
        "continuedl": False,
        "overwrites": True,
        "nopart": False,
        "updatetime": False,
        "color": {"stdout": "no_color", "stderr": "no_color"},
    }
    if dl.max_filesize_mb:
        opts["max_filesize"] = dl.max_filesize_mb * 1024 * 1024
    if dl.cookies_file:
        opts["cookiefile"] = dl.cookies_file
    if settings.detector == "captions" and settings.captions.download:
        opts["writesubtitles"] = True
        opts["subtitleslangs"] = list(settings.captions.languages)
        opts["subtitlesformat"] = "vtt/srt/best"
    return opts


def _downloaded_file(info: Mapping[str, Any], outdir: Path) -> Path:
    for item in info.get("requested_downloads") or ():
        for key in ("filepath", "_filename", "filename"):
            value = item.get(key)
            if value and Path(value).is_file():
                return Path(value)
    candidates = sorted(p for p in outdir.glob("video.*") if p.suffix not in (".part", ".ytdl", ".vtt", ".srt"))
    if candidates:
        return candidates[0]
    raise TransientError(f"yt-dlp reported success for {info.get('webpage_url')} but wrote no file")


def download(url: str, outdir: Path, settings: PipelineSettings, report: Report) -> Fetched:
    """Download `url` with yt-dlp's Python API into `outdir`; errors classified, result verified."""
    import yt_dlp

    outdir.mkdir(parents=True, exist_ok=True)
    logger = _Logger()
    report("download", percent=0.0)
    try:
        with yt_dlp.YoutubeDL(_ydl_options(outdir, settings, logger, _Progress(report))) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as exc:
        _remove_partials(outdir)
        error = classify_download_error(url, exc)
        if "requested format is not available" in str(exc).lower():
            error = PermanentError(
                f"{error} (format {settings.download.format!r}; videos offered only as separate video and "
                "audio streams need the ffmpeg binary to merge them: install ffmpeg and set "
                '[pipeline.download] format = "bv*[height<=720]+ba/b")'
            )
        raise error from exc
    except (OSError, yt_dlp.utils.YoutubeDLError) as exc:
        _remove_partials(outdir)
        raise classify_download_error(url, exc) from exc
    if not isinstance(info, Mapping):
        raise PermanentError(f"download of {url} returned no video information")
    if info.get("_type") == "playlist":
        raise PermanentError(f"{url} is a playlist, not a single video: list its videos one per line")
    _remove_partials(outdir)
    path = _downloaded_file(info, outdir)
    try:
        media = probe(path)
    except PermanentError as exc:
        raise PermanentError(f"download of {url} gave a file that is not a video: {exc}") from exc
    subs = tuple(sorted(p for p in outdir.iterdir() if p.suffix in (".vtt", ".srt", ".ass")))
    metadata = {
        key: info[key]
        for key in (
            "id",
            "title",
            "uploader",
            "channel",
            "upload_date",
            "duration",
            "webpage_url",
            "extractor",
        )
        if info.get(key) is not None
    }
    report("download", percent=100.0, bytes=path.stat().st_size)
    return Fetched(path=path, info=media, downloaded=True, subtitle_files=subs, metadata=metadata)


def _remove_partials(outdir: Path) -> None:
    if not outdir.is_dir():
        return
    for p in outdir.iterdir():
        if p.name.endswith((".part", ".ytdl", ".temp")) or ".part-Frag" in p.name:
            p.unlink(missing_ok=True)
