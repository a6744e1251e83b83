"""Frames: one JPEG per scene change plus the first, at the right times, bounded in number."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from nkod.errors import PermanentError
from nkod.pipeline.frames import SceneScorer, extract_frames
from nkod.pipeline.media import probe
from nkod.pipeline.settings import FrameSettings
from nkod.pipeline.synth import Scene, make_clip, scenes_from_durations
from tests.pipeline.conftest import CUTS

Progress = Callable[..., None]


def _quiet(*args: Any, **fields: Any) -> None:
    pass


@pytest.mark.parametrize("skip_nonref", [True, False])
def test_one_frame_per_scene_at_the_cuts(clip_mp4: Path, tmp_path: Path, skip_nonref: bool) -> None:
    """Four scenes give four frames: t=0 and one within a few frames after each cut."""
    result = extract_frames(clip_mp4, probe(clip_mp4), tmp_path, FrameSettings(skip_nonref=skip_nonref), _quiet)
    times = [f.timestamp for f in result.frames]
    assert times[0] == 0.0
    assert len(times) == 1 + len(CUTS)
    for got, cut in zip(times[1:], CUTS, strict=True):
        assert cut <= got <= cut + 0.2
    assert [s.start for s in result.scenes] == [0.0, *times[1:]]
    assert result.scenes[-1].end == pytest.approx(12.0, abs=0.1)
    assert result.frames[0].score is None and all(f.score and f.score > 0.3 for f in result.frames[1:])


def test_frames_are_jpeg_files_with_their_hash(clip_mp4: Path, tmp_path: Path) -> None:
    """Each frame is a full-size JPEG on disk whose sha256 is recorded; no temp files are left."""
    result = extract_frames(clip_mp4, probe(clip_mp4), tmp_path, FrameSettings(), _quiet)
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"frame_{i:04d}.jpg" for i in range(len(result.frames))]
    for frame in result.frames:
        data = (tmp_path / frame.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == frame.sha256
        with Image.open(tmp_path / frame.path) as image:
            assert image.format == "JPEG" and image.size == (320, 240)


def test_min_scene_length_ignores_quick_cuts(tmp_path: Path) -> None:
    """Cuts closer than min_scene_seconds to the previous kept cut are ignored."""
    clip = make_clip(tmp_path / "quick.mp4", scenes_from_durations([2.0, 0.8, 0.8, 2.4, 2.0]), audio=False)
    out = tmp_path / "out"
    result = extract_frames(clip, probe(clip), out, FrameSettings(min_scene_seconds=2.0), _quiet)
    times = [f.timestamp for f in result.frames]
    # cuts at 2.0, 2.8, 3.6, 6.0: 2.8 and 3.6 are too soon after 2.0.
    assert times == pytest.approx([0.0, 2.0, 6.0], abs=0.13)
    loose = extract_frames(clip, probe(clip), tmp_path / "loose", FrameSettings(min_scene_seconds=0.5), _quiet)
    assert len(loose.frames) == 5


def test_max_frames_keeps_the_strongest_cuts(tmp_path: Path) -> None:
    """With more scenes than max_frames, the first frame stays and the weakest cuts are merged."""
    clip = make_clip(tmp_path / "many.mp4", scenes_from_durations([1.0] * 8), audio=False)
    settings = FrameSettings(min_scene_seconds=0.5, max_frames=3)
    result = extract_frames(clip, probe(clip), tmp_path / "out", settings, _quiet)
    assert len(result.frames) == 3
    assert result.frames[0].timestamp == 0.0
    assert len(list((tmp_path / "out" / "frames").iterdir())) == 3
    assert len(result.scenes) == 3 and result.scenes[-1].end == pytest.approx(8.0, abs=0.1)


def test_higher_threshold_finds_fewer_cuts(tmp_path: Path) -> None:
    """Only cuts scoring above scene_threshold count: near-identical scenes are one scene."""
    clip = make_clip(
        tmp_path / "similar.mp4",
        [Scene(2.0, (100, 100, 100)), Scene(2.0, (130, 130, 130)), Scene(2.0, (250, 250, 250))],
        audio=False,
    )
    low = extract_frames(clip, probe(clip), tmp_path / "a", FrameSettings(scene_threshold=0.2), _quiet)
    high = extract_frames(clip, probe(clip), tmp_path / "b", FrameSettings(scene_threshold=0.9), _quiet)
    assert len(low.frames) == 2  # 100->130 is below 0.2, 130->250 is above
    assert len(high.frames) == 1


def test_max_width_scales_saved_frames(clip_mp4: Path, tmp_path: Path) -> None:
    """frames.max_width shrinks the saved JPEGs, keeping the aspect ratio."""
    result = extract_frames(clip_mp4, probe(clip_mp4), tmp_path, FrameSettings(max_width=160), _quiet)
    assert {(f.width, f.height) for f in result.frames} == {(160, 120)}


def test_non_420_video_is_scored_through_a_reformat(tmp_path: Path) -> None:
    """A 4:4:4 video (not the fast path) still gets one frame per scene at the cuts."""
    clip = make_clip(tmp_path / "444.mp4", scenes_from_durations([2.0, 2.0, 2.0]), audio=False, pix_fmt="yuv444p")
    result = extract_frames(clip, probe(clip), tmp_path / "out", FrameSettings(), _quiet)
    assert [f.timestamp for f in result.frames] == pytest.approx([0.0, 2.0, 4.0], abs=0.13)


def test_progress_is_reported(clip_mp4: Path, tmp_path: Path) -> None:
    """The frames stage ends with a 100 % report carrying the frame count."""
    messages: list[tuple[str, dict[str, Any]]] = []

    def report(stage: str, **fields: Any) -> None:
        messages.append((stage, fields))

    result = extract_frames(clip_mp4, probe(clip_mp4), tmp_path, FrameSettings(), report)
    assert messages[-1] == ("frames", {"done": len(result.frames), "percent": 100.0})


def test_scorer_matches_ffmpeg_formula() -> None:
    """The scene score is min(mafd, |mafd - previous mafd|) / 100, clipped to 0..1."""
    scorer = SceneScorer()
    black = np.zeros((12, 8), dtype=np.uint8)
    grey = np.full((12, 8), 50, dtype=np.uint8)
    assert scorer(black) == 0.0
    assert scorer(grey) == pytest.approx(0.5)  # mafd 50, previous 0
    assert scorer(grey) == 0.0
    assert scorer(black) == pytest.approx(0.5)


def test_file_without_video_stream_is_permanent(tmp_path: Path) -> None:
    """An audio-only file is not something frames can be taken from."""
    path = tmp_path / "sound.flac"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(PermanentError, match="no video stream"):
        probe(path)
