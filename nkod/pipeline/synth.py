"""Synthetic clips with known content: scenes, tone bursts with silences, subtitle cues.

Used by the tests, by ``scripts/make_samples.py`` (the shipped sample videos) and by the benchmark,
so that what they assert (scene count, cut times, silence positions, N'Ko captions) is known exactly.
Only PyAV, numpy and Pillow are needed; burned-in text needs a font that has the glyphs.
"""

from __future__ import annotations

import fractions
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

# Scene colours chosen so that consecutive ones differ strongly in brightness (a clear cut).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (16, 24, 96),
    (235, 220, 160),
    (120, 20, 20),
    (200, 240, 230),
    (20, 90, 30),
    (250, 170, 60),
    (40, 40, 40),
    (170, 200, 255),
)


@dataclass(frozen=True)
class Scene:
    """A stretch of constant background (with a small moving square), optionally with text on it."""

    seconds: float
    color: tuple[int, int, int]
    text: str = ""


@dataclass(frozen=True)
class Burst:
    """A sound between `start` and `end` seconds: a sine tone (`freq` Hz) or white noise (freq 0)."""

    start: float
    end: float
    freq: float = 440.0
    amplitude: float = 0.5


@dataclass(frozen=True)
class Cue:
    """A subtitle line shown from `start` to `end` seconds."""

    start: float
    end: float
    text: str


def scenes_from_durations(durations: Sequence[float]) -> list[Scene]:
    """Scenes of the given lengths with alternating palette colours."""
    return [Scene(d, PALETTE[i % len(PALETTE)]) for i, d in enumerate(durations)]


def _render_audio(bursts: Sequence[Burst], seconds: float, rate: int, seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    out = np.zeros(n, dtype=np.float32)
    for b in bursts:
        i0, i1 = max(0, round(b.start * rate)), min(n, round(b.end * rate))
        if i1 <= i0:
            continue
        t = np.arange(i1 - i0, dtype=np.float32) / rate
        if b.freq > 0:
            wave = np.sin(2 * np.pi * b.freq * t).astype(np.float32)
        else:
            wave = rng.uniform(-1.0, 1.0, i1 - i0).astype(np.float32)
        ramp = min(len(t), round(0.005 * rate))  # 5 ms fades: no clicks
        env = np.ones(len(t), dtype=np.float32)
        if ramp:
            env[:ramp] = np.linspace(0, 1, ramp, dtype=np.float32)
            env[-ramp:] = np.linspace(1, 0, ramp, dtype=np.float32)
        out[i0:i1] += b.amplitude * wave * env
    clipped: npt.NDArray[np.float32] = np.clip(out, -1.0, 1.0)
    return clipped


def _write_srt(cues: Sequence[Cue], path: Path) -> None:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    blocks = [f"{i}\n{stamp(c.start)} --> {stamp(c.end)}\n{c.text}\n" for i, c in enumerate(cues, 1)]
    path.write_text("\n".join(blocks), encoding="utf-8")


class _Painter:
    """Draws one scene's frames: background, a moving square, optional text (rendered once)."""

    def __init__(self, scene: Scene, width: int, height: int, font: ImageFont.FreeTypeFont | None) -> None:
        image = Image.new("RGB", (width, height), scene.color)
        if scene.text:
            if font is None:
                raise ValueError(f"scene text {scene.text!r} needs font_path")
            draw = ImageDraw.Draw(image)
            luma = sum(scene.color) / 3
            ink = (0, 0, 0) if luma > 128 else (255, 255, 255)
            box = draw.textbbox((0, 0), scene.text, font=font)
            x = (width - (box[2] - box[0])) // 2 - box[0]
            y = height - (box[3] - box[1]) - height // 8 - box[1]
            draw.text((x, y), scene.text, font=font, fill=ink)
        self.base = np.asarray(image, dtype=np.uint8)
        self.width, self.height = width, height
        luma = sum(scene.color) / 3
        self.square = np.array((255, 255, 255) if luma < 128 else (0, 0, 0), dtype=np.uint8)

    def frame(self, i: int) -> npt.NDArray[np.uint8]:
        arr = self.base.copy()
        size = max(4, self.height // 10)
        x = (i * 3) % max(1, self.width - size)
        y = self.height // 8
        arr[y : y + size, x : x + size] = self.square
        return arr


def _mux_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    samples: npt.NDArray[np.float32],
    start: int,
    until: int,
    rate: int,
) -> int:
    chunk = 1024
    while start + chunk <= until or (until == len(samples) and start < until):
        part = samples[start : min(start + chunk, until)].reshape(1, -1)
        aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="fltp", layout="mono")
        aframe.sample_rate = rate
        aframe.pts = start
        aframe.time_base = fractions.Fraction(1, rate)
        container.mux(stream.encode(aframe))
        start += part.shape[1]
    return start


def make_clip(
    path: Path,
    scenes: Sequence[Scene],
    *,
    bursts: Sequence[Burst] = (),
    cues: Sequence[Cue] = (),
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    audio: bool = True,
    audio_rate: int = 16000,
    font_path: Path | None = None,
    font_size: int = 0,
    crf: int = 28,
    preset: str = "veryfast",
    pix_fmt: str = "yuv420p",
    seed: int = 0,
) -> Path:
    """Write an H.264 clip (mp4 or mkv by suffix) with the given scenes, sound bursts and subtitles.

    Subtitles need a Matroska file (``.mkv``): they are muxed as an SRT stream.
    """
    total = sum(s.seconds for s in scenes)
    if cues and path.suffix != ".mkv":
        raise ValueError("subtitle cues need a .mkv path")
    font = None
    if font_path is not None:
        font = ImageFont.truetype(str(font_path), font_size or max(12, height // 8))
    container = av.open(str(path), "w")
    try:
        video = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": preset})
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac", rate=audio_rate, layout="mono")
        subs_src = None
        sub_stream = None
        tmp = None
        if cues:
            tmp = tempfile.TemporaryDirectory()
            srt = Path(tmp.name) / "cues.srt"
            _write_srt(cues, srt)
            subs_src = av.open(str(srt))
            sub_stream = container.add_stream_from_template(subs_src.streams.subtitles[0])

        samples = _render_audio(bursts, total, audio_rate, seed) if audio_stream is not None else None
        audio_done = 0
        index = 0
        for scene in scenes:
            painter = _Painter(scene, width, height, font)
            for _ in range(round(scene.seconds * fps)):
                frame = av.VideoFrame.from_ndarray(painter.frame(index), format="rgb24")
                frame.pts = index
                container.mux(video.encode(frame))
                index += 1
                if audio_stream is not None and samples is not None:
                    # Interleave: audio up to the current video time, like a real recording.
                    until = min(len(samples), index * audio_rate // fps)
                    audio_done = _mux_audio(container, audio_stream, samples, audio_done, until, audio_rate)
        container.mux(video.encode(None))
        if audio_stream is not None and samples is not None:
            _mux_audio(container, audio_stream, samples, audio_done, len(samples), audio_rate)
            container.mux(audio_stream.encode(None))

        if subs_src is not None and sub_stream is not None:
            for packet in subs_src.demux(subs_src.streams.subtitles[0]):
                if packet.size == 0:
                    continue
                packet.stream = sub_stream
                container.mux(packet)
            subs_src.close()
        if tmp is not None:
            tmp.cleanup()
    finally:
        container.close()
    return path
