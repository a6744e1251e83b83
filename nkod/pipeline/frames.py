"""Stage 2, frames: one JPEG per scene change (plus the first frame), with timestamps.

Scene changes are found with FFmpeg's own scene score (the ``select='gt(scene,T)'`` formula: the mean
absolute difference between consecutive pictures over all YUV planes, ``min(mafd, |mafd - prev|)/100``)
computed in numpy on a grid of point samples of each decoded picture (no scaling), so only the kept
frames are converted at full size. Decoding is frame-threaded and, by default, skips non-reference
frames (a cut is then found up to a few frames late, always inside the new scene); both are settings. A cut closer than
``min_scene_seconds`` to the previous one is ignored; when more than ``max_frames`` scenes are found the
weakest cuts are merged away.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from nkod.errors import PermanentError
from nkod.pipeline.media import MediaInfo, open_container
from nkod.pipeline.settings import FrameSettings

Report = Callable[..., None]

FRAMES_DIR = "frames"


@dataclass(frozen=True)
class Frame:
    """A saved frame: where it is (relative to the work dir), when, and how strong its cut was."""

    path: str
    timestamp: float
    score: float | None
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class Scene:
    """A scene runs from `start` to `end` seconds; `frame` indexes its frame in the frame list."""

    index: int
    start: float
    end: float
    frame: int


@dataclass(frozen=True)
class FrameResult:
    frames: list[Frame]
    scenes: list[Scene]
    duration: float
    decoded: int


@dataclass
class _Candidate:
    timestamp: float
    score: float | None
    future: Future[tuple[str, int, int]]
    tmp: Path


class SceneScorer:
    """FFmpeg's scene score between consecutive small YUV pictures."""

    def __init__(self) -> None:
        self.prev: npt.NDArray[np.int16] | None = None
        self.prev_mafd = 0.0

    def __call__(self, picture: npt.NDArray[np.uint8]) -> float:
        cur = picture.astype(np.int16)
        if self.prev is None or self.prev.shape != cur.shape:
            self.prev = cur
            self.prev_mafd = 0.0
            return 0.0
        mafd = float(np.abs(cur - self.prev).mean())
        diff = abs(mafd - self.prev_mafd)
        self.prev, self.prev_mafd = cur, mafd
        return min(max(min(mafd, diff) / 100.0, 0.0), 1.0)


_PLANAR_420 = ("yuv420p", "yuvj420p")


def sample_picture(frame: av.VideoFrame, step: int, width: int) -> npt.NDArray[np.uint8]:
    """Every `step`-th pixel of each YUV plane, flattened: what the scene score is computed on.

    Point samples of all planes in FFmpeg's proportions (chroma planes are a quarter of the luma
    plane), so the mean absolute difference estimates FFmpeg's full-resolution one without scaling
    each picture. Pictures that are not 8-bit 4:2:0 are first converted at `width`.
    """
    if frame.format.name not in _PLANAR_420:
        height = max(2, round(frame.height * width / frame.width) // 2 * 2)
        frame = frame.reformat(width=max(2, width // 2 * 2), height=height, format="yuv420p")
        step = 1
    parts = []
    for plane in frame.planes:
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
        parts.append(rows[::step, : plane.width : step].ravel())
    picture: npt.NDArray[np.uint8] = np.concatenate(parts)
    return picture


def _encode_jpeg(frame: av.VideoFrame, dest: Path, quality: int, max_width: int) -> tuple[str, int, int]:
    if max_width and frame.width > max_width:
        height = max(2, round(frame.height * max_width / frame.width) // 2 * 2)
        frame = frame.reformat(width=max_width, height=height)
    image = cast(Image.Image, frame.to_image())  # type: ignore[no-untyped-call]
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, optimize=False)
    data = buf.getvalue()
    dest.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), image.width, image.height


def extract_frames(
    path: Path,
    info: MediaInfo,
    workdir: Path,
    settings: FrameSettings,
    report: Report,
) -> FrameResult:
    """Decode `path` once, keep the first frame and one per scene change, write them as JPEG."""
    outdir = workdir / FRAMES_DIR
    outdir.mkdir(parents=True, exist_ok=True)
    step = max(1, info.width // settings.analysis_width)
    scorer = SceneScorer()
    kept: list[_Candidate] = []
    last_cut = -1e9
    decoded = 0
    last_time = 0.0
    frame_step = 1.0 / info.fps if info.fps > 0 else 0.04
    min_gap = settings.min_scene_seconds - frame_step / 2  # timestamps are not exact multiples
    next_report = time.monotonic() + 1.0
    with open_container(path) as container, ThreadPoolExecutor(max_workers=1) as writer:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_type = "AUTO"
        ctx.thread_count = settings.threads
        if settings.skip_nonref:
            ctx.skip_frame = "NONREF"
        try:
            for frame in container.decode(stream):
                decoded += 1
                t = (frame.time if frame.time is not None else decoded * frame_step) - info.start_time
                last_time = max(last_time, t)
                score = scorer(sample_picture(frame, step, settings.analysis_width))
                first = not kept
                if first or (score > settings.scene_threshold and t - last_cut >= min_gap):
                    tmp = outdir / f".candidate-{len(kept) + decoded}.jpg"
                    future = writer.submit(_encode_jpeg, frame, tmp, settings.jpeg_quality, settings.max_width)
                    kept.append(_Candidate(max(0.0, t), None if first else score, future, tmp))
                    last_cut = t
                    if len(kept) > settings.max_frames:
                        _drop_weakest(kept)
                now = time.monotonic()
                if now >= next_report:
                    next_report = now + 1.0
                    fields: dict[str, Any] = {"done": len(kept), "seconds": round(t, 1)}
                    if info.duration > 0:
                        fields["percent"] = round(min(100.0, 100.0 * t / info.duration), 1)
                    report("frames", **fields)
        except av.error.FFmpegError as exc:
            raise PermanentError(f"{path}: video decoding failed after {last_time:.1f}s: {exc}") from exc
    if not kept:
        raise PermanentError(f"{path}: the video stream has no decodable picture")
    duration = max(info.duration, last_time + frame_step)
    frames: list[Frame] = []
    for i, cand in enumerate(kept):
        digest, width, height = cand.future.result()
        name = f"{FRAMES_DIR}/frame_{i:04d}.jpg"
        cand.tmp.rename(workdir / name)
        frames.append(Frame(name, round(cand.timestamp, 3), cand.score, digest, width, height))
    scenes = [
        Scene(i, f.timestamp, frames[i + 1].timestamp if i + 1 < len(frames) else round(duration, 3), i)
        for i, f in enumerate(frames)
    ]
    scenes[0] = Scene(0, 0.0, scenes[0].end, 0)
    report("frames", done=len(frames), percent=100.0)
    return FrameResult(frames, scenes, round(duration, 3), decoded)


def _drop_weakest(kept: list[_Candidate]) -> None:
    """Merge away the weakest cut (never the first frame) and delete its JPEG."""
    weakest = min(range(1, len(kept)), key=lambda i: kept[i].score or 0.0)
    cand = kept.pop(weakest)
    cand.future.result()
    cand.tmp.unlink(missing_ok=True)
