"""The benchmark's test clip: 1280x720 H.264 at 30 fps with AAC audio, scenes every few seconds.

Each scene is a random texture panning slowly (so the encoder and decoder do real motion work, unlike
flat colours); the audio is 44.1 kHz stereo with speech-like bursts of tones and noise separated by
silences. Deterministic for a given seed; written once and cached under ``bench/results/``.
"""

from __future__ import annotations

import fractions
import random
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt


def _texture(rng: np.random.Generator, width: int, height: int, bright: bool) -> npt.NDArray[np.uint8]:
    """A blocky random colour field with fine grain, wider than the frame so it can pan.

    Scenes alternate dark and bright so that every cut is a clear one for both extractors."""
    small = rng.integers(0, 256, size=(height // 40 + 2, width // 40 + 4, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((40, 40, 1), dtype=np.uint8))[: height + 80, : width + 160]
    grain = rng.integers(0, 24, size=big.shape, dtype=np.uint8)
    level = int(rng.integers(110, 130)) if bright else int(rng.integers(0, 10))
    mixed = big.astype(np.uint16) // 2 + grain + level
    out: npt.NDArray[np.uint8] = np.ascontiguousarray(np.clip(mixed, 0, 255).astype(np.uint8))
    return out


def make_bench_clip(
    path: Path, seconds: float, *, width: int = 1280, height: int = 720, fps: int = 30, seed: int = 1
) -> Path:
    """Write the clip to `path` (via a temp name, so an interrupted run leaves no half clip)."""
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    tmp = path.with_suffix(".partial" + path.suffix)
    rate = 44100
    with av.open(str(tmp), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="stereo")
        total_frames = round(seconds * fps)
        # Audio plan: bursts of 0.8-6 s separated by 0.3-1.5 s gaps.
        t, bursts = 0.3, []
        while t < seconds:
            length = pyrng.uniform(0.8, 6.0)
            bursts.append((t, min(seconds, t + length), pyrng.choice([0.0, 180.0, 240.0, 320.0])))
            t += length + pyrng.uniform(0.3, 1.5)
        frame_index, audio_done, scene_index = 0, 0, 0
        while frame_index < total_frames:
            scene_frames = round(pyrng.uniform(2.0, 9.0) * fps)
            tex = _texture(rng, width, height, bright=scene_index % 2 == 1)
            scene_index += 1
            for k in range(min(scene_frames, total_frames - frame_index)):
                dx, dy = (k * 2) % 160, (k // 2) % 80
                arr = tex[dy : dy + height, dx : dx + width]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                frame.pts = frame_index
                out.mux(video.encode(frame))
                frame_index += 1
                until = frame_index * rate // fps
                while audio_done + 1024 <= until:
                    out.mux(audio.encode(_audio_frame(audio_done, 1024, rate, bursts, rng)))
                    audio_done += 1024
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    tmp.rename(path)
    return path


def _audio_frame(
    start: int, n: int, rate: int, bursts: list[tuple[float, float, float]], rng: np.random.Generator
) -> av.AudioFrame:
    t = (start + np.arange(n)) / rate
    x = np.zeros(n, dtype=np.float32)
    for a, b, freq in bursts:
        if b < t[0] or a > t[-1]:
            continue
        on = (t >= a) & (t < b)
        wave = np.sin(2 * np.pi * freq * t) if freq else rng.uniform(-1, 1, n)
        x += (0.3 * wave * on).astype(np.float32)
    stereo = np.ascontiguousarray(np.stack([x, x]))
    frame = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
    frame.sample_rate = rate
    frame.pts = start
    frame.time_base = fractions.Fraction(1, rate)
    return frame
