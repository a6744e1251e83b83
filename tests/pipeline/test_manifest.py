"""The per-video manifest: shape, atomic write, on-disk check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nkod.errors import PermanentError
from nkod.pipeline.audio import Segment
from nkod.pipeline.detectors import Detection
from nkod.pipeline.frames import Frame, Scene
from nkod.pipeline.manifest import build_manifest, check_on_disk, write_manifest


def _manifest() -> dict[str, object]:
    frames = [
        Frame("frames/frame_0000.jpg", 0.0, None, "a" * 64, 8, 6),
        Frame("frames/frame_0001.jpg", 2.0, 0.8, "b" * 64, 8, 6),
    ]
    scenes = [Scene(0, 0.0, 2.0, 0), Scene(1, 2.0, 5.0, 1)]
    return build_manifest(
        video={"video_id": "v", "path": "/x.mp4", "title": "T"},
        source={"path": "/x.mp4"},
        media={"width": 8},
        duration=5.0,
        scenes=scenes,
        frames=frames,
        detections=[None, Detection(True, "ߒߞߏ", confidence=0.9, source="vision-api")],
        detector="vision-api",
        detector_notes={"calls": 1},
        segments=[Segment("audio/segment_0000.flac", 2.1, 3.0, 1)],
        segment_texts=None,
        audio_enabled=True,
        settings={"detector": "vision-api"},
        counts={"frames": 2, "nko_detections": 1, "audio_segments": 1},
    )


def test_manifest_shape() -> None:
    """Frames carry timestamp, scene and detection; segments carry start, end, duration and scene."""
    m = _manifest()
    assert m["video_id"] == "v" and m["title"] == "T" and m["detector"] == "vision-api"
    frames = m["frames"]
    assert isinstance(frames, list)
    assert frames[0]["detection"] is None and frames[1]["detection"]["nko_text"] == "ߒߞߏ"
    assert frames[1]["scene"] == 1 and frames[1]["scene_score"] == 0.8
    assert m["audio_segments"] == [
        {"index": 0, "path": "audio/segment_0000.flac", "start": 2.1, "end": 3.0, "duration": 0.9, "scene": 1}
    ]


def test_write_is_atomic_and_utf8(tmp_path: Path) -> None:
    """manifest.json is written whole (temp + rename), N'Ko kept as text, no temp file left."""
    write_manifest(tmp_path, _manifest())
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    text = (tmp_path / "manifest.json").read_text(encoding="utf-8")
    assert "ߒߞߏ" in text and json.loads(text)["video_id"] == "v"


def test_check_on_disk_catches_missing_files(tmp_path: Path) -> None:
    """A manifest naming a file that is not there is an error, so counts never lie."""
    m = _manifest()
    (tmp_path / "frames").mkdir()
    (tmp_path / "audio").mkdir()
    for name in ("frames/frame_0000.jpg", "frames/frame_0001.jpg", "audio/segment_0000.flac"):
        (tmp_path / name).write_bytes(b"data")
    check_on_disk(tmp_path, m)
    (tmp_path / "audio" / "segment_0000.flac").unlink()
    with pytest.raises(PermanentError, match=r"segment_0000\.flac is missing"):
        check_on_disk(tmp_path, m)
