"""The ``[pipeline]`` config table: every knob of the built-in pipeline, parsed and checked.

Layout (all keys optional; defaults shown by ``nkod --print-config``)::

    [pipeline]                 detector, audio, keep_video
    [pipeline.download]        yt-dlp options for ``url`` entries
    [pipeline.frames]          scene detection and JPEG output
    [pipeline.segments]        audio segmentation (used when ``audio = true``)
    [pipeline.vision_api]      the ``vision-api`` detector (and its ``local`` pre-filter)
    [pipeline.captions]        the ``captions`` detector
    [pipeline.local]           the ``local`` N'Ko detector (also part of ``auto``)

Unknown keys and bad values raise :class:`nkod.errors.ConfigError` naming ``pipeline.<key>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nkod.errors import ConfigError
from nkod.tomltable import Check, in_range, nonempty, one_of, parse_table

DETECTORS = ("auto", "local", "captions", "vision-api", "none")
PREFILTERS = ("none", "local")
AUDIO_FORMATS = ("flac", "wav")
VADS = ("energy", "silero")


@dataclass(frozen=True)
class DownloadSettings:
    """How ``url`` entries are fetched with yt-dlp."""

    format: str = "b[height<=720]/b"
    timeout: float = 60.0
    retries: int = 3
    max_filesize_mb: int = 0
    cookies_file: str = ""


@dataclass(frozen=True)
class FrameSettings:
    """One JPEG per scene change, plus the first frame."""

    scene_threshold: float = 0.3
    min_scene_seconds: float = 2.0
    max_frames: int = 100
    jpeg_quality: int = 90
    max_width: int = 0
    analysis_width: int = 192
    skip_nonref: bool = True
    threads: int = 1  # per worker; 0 = the CPUs divided among the daemon's workers (README: Benchmark)


@dataclass(frozen=True)
class SegmentSettings:
    """How the audio track is cut into segments."""

    sample_rate: int = 16000
    format: str = "flac"
    min_seconds: float = 0.5
    max_seconds: float = 30.0
    silence_threshold_db: float = -40.0
    min_silence_seconds: float = 0.5
    padding_seconds: float = 0.1
    cut_at_scenes: bool = True
    vad: str = "energy"
    vad_threshold: float = 0.5


@dataclass(frozen=True)
class VisionApiSettings:
    """An OpenAI-compatible chat-completions endpoint that accepts images."""

    base_url: str = "https://generativelanguage.googleapis.com/v1beta/openai"
    model: str = "gemini-2.0-flash"
    api_key_env: str = "GEMINI_API_KEY"
    price_per_call: float = 0.0
    timeout: float = 60.0
    max_retries: int = 2
    max_retry_wait: float = 60.0
    max_image_width: int = 1024
    max_tokens: int = 512
    concurrency: int = 4
    min_confidence: float = 0.5
    # "local": only frames whose local N'Ko score is at least prefilter_threshold are sent; the others
    # are decided "no N'Ko" by the local detector for free.
    prefilter: str = "none"
    prefilter_threshold: float = 0.25


@dataclass(frozen=True)
class CaptionSettings:
    """Subtitle streams inside the file, plus subtitles yt-dlp can fetch for ``url`` entries."""

    languages: tuple[str, ...] = ("nqo",)
    download: bool = True


@dataclass(frozen=True)
class LocalSettings:
    """The local N'Ko detector: a small network shipped in the package, numpy on CPU, no cost."""

    threshold: float = 0.4
    weights: str = ""  # empty: the weights shipped in the package


@dataclass(frozen=True)
class PipelineSettings:
    """Everything the built-in pipeline can be told."""

    detector: str = "auto"
    audio: bool = True
    keep_video: bool = False
    download: DownloadSettings = field(default_factory=DownloadSettings)
    frames: FrameSettings = field(default_factory=FrameSettings)
    segments: SegmentSettings = field(default_factory=SegmentSettings)
    vision_api: VisionApiSettings = field(default_factory=VisionApiSettings)
    captions: CaptionSettings = field(default_factory=CaptionSettings)
    local: LocalSettings = field(default_factory=LocalSettings)


def _http_url(value: Any) -> str | None:
    if not str(value).startswith(("http://", "https://")):
        return f"must be an http:// or https:// URL, got {value!r}"
    return None


_CHECKS: dict[str, Check] = {
    "detector": one_of(DETECTORS),
    "download.format": nonempty,
    "download.timeout": in_range(0, open_low=True),
    "download.retries": in_range(0, 100),
    "download.max_filesize_mb": in_range(0),
    "frames.scene_threshold": in_range(0, 1, open_low=True),
    "frames.min_scene_seconds": in_range(0),
    "frames.max_frames": in_range(1, 100_000),
    "frames.jpeg_quality": in_range(1, 95),
    "frames.max_width": in_range(0),
    "frames.analysis_width": in_range(16, 4096),
    "frames.threads": in_range(0, 64),
    "segments.sample_rate": in_range(8000, 192_000),
    "segments.format": one_of(AUDIO_FORMATS),
    "segments.min_seconds": in_range(0),
    "segments.max_seconds": in_range(0, open_low=True),
    "segments.silence_threshold_db": in_range(-120, 0),
    "segments.min_silence_seconds": in_range(0.02),
    "segments.padding_seconds": in_range(0, 5),
    "segments.vad": one_of(VADS),
    "segments.vad_threshold": in_range(0, 1, open_low=True),
    "vision_api.base_url": _http_url,
    "vision_api.model": nonempty,
    "vision_api.price_per_call": in_range(0),
    "vision_api.timeout": in_range(0, open_low=True),
    "vision_api.max_retries": in_range(0, 20),
    "vision_api.max_retry_wait": in_range(0),
    "vision_api.max_image_width": in_range(0),
    "vision_api.max_tokens": in_range(16, 100_000),
    "vision_api.concurrency": in_range(1, 64),
    "vision_api.min_confidence": in_range(0, 1),
    "vision_api.prefilter": one_of(PREFILTERS),
    "vision_api.prefilter_threshold": in_range(0, 1),
    "local.threshold": in_range(0, 1, open_low=True),
}


def parse_settings(table: Mapping[str, Any], source: str) -> PipelineSettings:
    """The ``[pipeline]`` table as settings; a ConfigError naming the key for anything wrong."""
    settings: PipelineSettings = parse_table(PipelineSettings, table, source, "pipeline", _CHECKS)
    seg = settings.segments
    if seg.min_seconds > seg.max_seconds:
        raise ConfigError(source, "pipeline.segments.min_seconds", "must be <= segments.max_seconds")
    if seg.vad == "silero" and seg.sample_rate not in (8000, 16000):
        raise ConfigError(source, "pipeline.segments.sample_rate", "vad = 'silero' needs 8000 or 16000")
    return settings


def effective_table(settings: PipelineSettings) -> dict[str, Any]:
    """The full effective ``[pipeline]`` table, nested tables as dicts (for ``--print-config``)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return list(value)
        return value

    table: dict[str, Any] = convert(settings)
    return table
