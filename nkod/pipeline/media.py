"""Open a media file with PyAV and describe it; a file that is not media is a PermanentError."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from nkod.errors import PermanentError


@dataclass(frozen=True)
class MediaInfo:
    """What the pipeline needs to know about a file before extracting from it."""

    path: Path
    duration: float
    start_time: float
    width: int
    height: int
    fps: float
    video_codec: str
    has_audio: bool
    audio_codec: str
    audio_rate: int
    subtitle_streams: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_seconds": round(self.duration, 3),
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 3),
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec or None,
            "audio_sample_rate": self.audio_rate or None,
            "subtitle_streams": self.subtitle_streams,
        }


def open_container(path: Path) -> av.container.InputContainer:
    """av.open with errors a person understands, naming the file."""
    try:
        return av.open(str(path), "r")
    except FileNotFoundError as exc:
        raise PermanentError(f"video file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise PermanentError(f"video path {path} is a directory, not a file") from exc
    except PermissionError as exc:
        raise PermanentError(f"video file {path} cannot be read (permission denied)") from exc
    except av.error.FFmpegError as exc:
        raise PermanentError(f"{path} is not a media file FFmpeg can read: {exc.strerror or exc}") from exc
    except OSError as exc:
        raise PermanentError(f"video file {path} cannot be opened: {exc.strerror or exc}") from exc


def probe(path: Path) -> MediaInfo:
    """Describe `path`; PermanentError when it has no decodable video stream."""
    with open_container(path) as container:
        if not container.streams.video:
            raise PermanentError(f"{path} has no video stream")
        v = container.streams.video[0]
        ctx = v.codec_context
        if not ctx.width or not ctx.height:
            raise PermanentError(f"{path}: the video stream has no picture size (damaged file?)")
        start = container.start_time / 1e6 if container.start_time is not None else 0.0
        duration = 0.0
        if container.duration is not None:
            duration = container.duration / 1e6
        elif v.duration is not None and v.time_base is not None:
            duration = float(v.duration * v.time_base)
        rate = v.average_rate or v.guessed_rate or 0
        audio = container.streams.audio[0] if container.streams.audio else None
        return MediaInfo(
            path=path,
            duration=duration,
            start_time=start,
            width=ctx.width,
            height=ctx.height,
            fps=float(rate),
            video_codec=ctx.name,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else "",
            audio_rate=(audio.codec_context.sample_rate or 0) if audio is not None else 0,
            subtitle_streams=len(container.streams.subtitles),
        )
