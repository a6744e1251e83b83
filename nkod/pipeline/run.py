"""The built-in processor: fetch → frames → N'Ko detection → audio segments → manifest."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import time
from pathlib import Path
from typing import Any

from nkod.errors import ConfigError, PermanentError, TransientError
from nkod.pipeline.audio import Segment, extract_segments
from nkod.pipeline.detectors import DetectorContext, FrameInput, make_detector
from nkod.pipeline.detectors.factory import captions_of
from nkod.pipeline.fetch import DOWNLOAD_DIR, fetch
from nkod.pipeline.frames import extract_frames
from nkod.pipeline.manifest import build_manifest, check_on_disk, write_manifest
from nkod.pipeline.settings import effective_table, parse_settings
from nkod.processor import Report

SUBTITLES_DIR = "subtitles"


def decoder_threads(workers: int, cpus: int | None = None) -> int:
    """Decoder threads for one worker when ``frames.threads = 0``: the CPUs shared among the workers.

    One worker gets every CPU; as many workers as CPUs get one each (frame threading in each of them
    would only fight over the same cores: 1.10x instead of 1.87x for 2 workers on 2 CPUs).
    """
    return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))


def process(video: dict[str, Any], workdir: Path, report: Report) -> dict[str, int | float]:
    """Process one manifest entry into `workdir`; returns the counts (equal to what is on disk).

    A full disk (or quota) while writing is transient: the video is retried after the backoff.
    """
    try:
        return _process(video, workdir, report)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            where = exc.filename or workdir
            raise TransientError(f"no space left on the device writing {where}: {exc.strerror}") from exc
        raise


def _process(video: dict[str, Any], workdir: Path, report: Report) -> dict[str, int | float]:
    try:
        settings = parse_settings(report.settings, "[pipeline]")
    except ConfigError as exc:
        raise PermanentError(f"pipeline settings are invalid: {exc}") from exc
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)

    report("fetch")
    fetched = fetch(video, workdir, settings, report)
    subtitle_files = _keep_subtitles(fetched.subtitle_files, workdir)

    report("frames", done=0)
    frame_settings = settings.frames
    if frame_settings.threads == 0:  # auto: share the CPUs among the daemon's workers
        frame_settings = dataclasses.replace(frame_settings, threads=decoder_threads(report.workers))
    frames = extract_frames(fetched.path, fetched.info, workdir, frame_settings, report)

    report("detect", done=0, total=len(frames.frames))
    context = DetectorContext(fetched.path, subtitle_files, report.cache_dir, report)
    detector = make_detector(settings, context)
    inputs = [
        FrameInput(workdir / f.path, f.timestamp, s.start, s.end, f.sha256)
        for f, s in zip(frames.frames, frames.scenes, strict=True)
    ]
    detections = detector.detect(inputs)

    segments: list[Segment] = []
    if settings.audio:
        report("audio", segments=0)
        starts = [s.start for s in frames.scenes]
        segments = extract_segments(fetched.path, fetched.info, workdir, starts, settings.segments, report)
    segment_texts = None
    captions = captions_of(detector)
    if captions is not None:
        segment_texts = [
            [c.text for c in captions.nko_cues if c.start < seg.end and c.end > seg.start] for seg in segments
        ]

    if fetched.downloaded and not settings.keep_video:
        shutil.rmtree(workdir / DOWNLOAD_DIR, ignore_errors=True)

    counts: dict[str, int | float] = {
        "frames": len(frames.frames),
        "nko_detections": sum(1 for d in detections if d is not None and d.has_nko),
        "audio_segments": len(segments),
        "scenes": len(frames.scenes),
        "duration_seconds": frames.duration,
        **detector.stats(),
    }
    source: dict[str, Any] = {"url": video["url"]} if video.get("url") else {"path": str(fetched.path)}
    if fetched.downloaded and settings.keep_video:
        source["file"] = str(fetched.path.relative_to(workdir))
    source.update(fetched.metadata)
    manifest = build_manifest(
        video=video,
        source=source,
        media=fetched.info.as_dict(),
        duration=frames.duration,
        scenes=frames.scenes,
        frames=frames.frames,
        detections=detections,
        detector=detector.name,
        detector_notes=detector.notes(),
        segments=segments,
        segment_texts=segment_texts,
        audio_enabled=settings.audio,
        settings=effective_table(settings),
        counts={**counts, "processing_seconds": round(time.monotonic() - started, 3)},
    )
    write_manifest(workdir, manifest)
    check_on_disk(workdir, manifest)
    report("manifest", frames=counts["frames"], audio_segments=counts["audio_segments"])
    return counts


def _keep_subtitles(files: tuple[Path, ...], workdir: Path) -> list[Path]:
    """Subtitle files fetched with the video are kept in the output (``subtitles/``)."""
    if not files:
        return []
    target = workdir / SUBTITLES_DIR
    target.mkdir(exist_ok=True)
    kept = []
    for f in files:
        dest = target / f.name
        shutil.move(str(f), dest)
        kept.append(dest)
    return kept
