"""Stage 5, manifest: ``manifest.json`` links one video's metadata, scenes, frames and audio segments.

Paths inside are relative to the video's output directory. ``summary.json`` belongs to the engine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nkod.errors import PermanentError
from nkod.pipeline.audio import Segment
from nkod.pipeline.detectors import Detection
from nkod.pipeline.frames import Frame, Scene

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


def build_manifest(
    *,
    video: Mapping[str, Any],
    source: Mapping[str, Any],
    media: Mapping[str, Any],
    duration: float,
    scenes: Sequence[Scene],
    frames: Sequence[Frame],
    detections: Sequence[Detection | None],
    detector: str,
    detector_notes: Mapping[str, Any],
    segments: Sequence[Segment],
    segment_texts: Sequence[Sequence[str]] | None,
    audio_enabled: bool,
    settings: Mapping[str, Any],
    counts: Mapping[str, int | float],
) -> dict[str, Any]:
    """The per-video manifest as a JSON-ready dict."""
    frame_scene = {s.frame: s.index for s in scenes}
    frame_items = []
    for i, (frame, det) in enumerate(zip(frames, detections, strict=True)):
        frame_items.append(
            {
                "index": i,
                "path": frame.path,
                "timestamp": frame.timestamp,
                "scene": frame_scene.get(i),
                "scene_score": None if frame.score is None else round(frame.score, 4),
                "sha256": frame.sha256,
                "width": frame.width,
                "height": frame.height,
                "detection": None if det is None else det.as_dict(),
            }
        )
    segment_items = []
    for i, seg in enumerate(segments):
        item: dict[str, Any] = {
            "index": i,
            "path": seg.path,
            "start": seg.start,
            "end": seg.end,
            "duration": round(seg.end - seg.start, 3),
            "scene": seg.scene,
        }
        if segment_texts is not None:
            item["nko_captions"] = list(segment_texts[i])
        segment_items.append(item)
    extra = {k: v for k, v in video.items() if k not in ("video_id", "url", "path")}
    return {
        "format": MANIFEST_FORMAT,
        "video_id": video.get("video_id"),
        "title": video.get("title") or source.get("title"),
        "metadata": extra,
        "source": dict(source),
        "media": dict(media),
        "duration_seconds": duration,
        "detector": detector,
        "detector_info": dict(detector_notes),
        "audio": "on" if audio_enabled else "off",
        "scenes": [{"index": s.index, "start": s.start, "end": s.end, "frame": s.frame} for s in scenes],
        "frames": frame_items,
        "audio_segments": segment_items,
        "counts": dict(counts),
        "settings": dict(settings),
    }


def write_manifest(workdir: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (temp + rename; fsynced later with the whole tree)."""
    path = workdir / MANIFEST_NAME
    tmp = workdir / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def check_on_disk(workdir: Path, manifest: Mapping[str, Any]) -> None:
    """Every file the manifest names exists and is not empty: counts returned equal what is on disk."""
    for kind in ("frames", "audio_segments"):
        for item in manifest[kind]:
            path = workdir / item["path"]
            if not path.is_file() or path.stat().st_size == 0:
                raise PermanentError(f"internal error: {kind} file {path} is missing or empty after writing")
    for kind, directory, pattern in (("frames", "frames", "*.jpg"), ("audio_segments", "audio", "*")):
        on_disk = len(list((workdir / directory).glob(pattern))) if (workdir / directory).is_dir() else 0
        if on_disk != len(manifest[kind]):
            raise PermanentError(
                f"internal error: {on_disk} files in {directory}/ but the manifest lists {len(manifest[kind])}"
            )
