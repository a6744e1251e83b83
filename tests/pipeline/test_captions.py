"""The captions detector: N'Ko cues in subtitle streams and subtitle files, mapped to scenes."""

from __future__ import annotations

from pathlib import Path

from nkod.pipeline.detectors import DetectorContext, FrameInput, has_nko
from nkod.pipeline.detectors.captions import CaptionsDetector, read_cues
from nkod.pipeline.settings import CaptionSettings


def _frames(spans: list[tuple[float, float]], tmp_path: Path) -> list[FrameInput]:
    return [FrameInput(tmp_path / f"f{i}.jpg", a, a, b, f"{i:064d}") for i, (a, b) in enumerate(spans)]


def test_has_nko_looks_for_the_nko_block() -> None:
    """Any character in U+07C0–U+07FF counts; Latin and Arabic do not."""
    assert has_nko("ߒߞߏ") and has_nko("abc ߊ")
    assert not has_nko("nko") and not has_nko("العربية")


def test_cues_are_read_from_the_subtitle_stream(clip_mkv: Path) -> None:
    """All three SRT cues come back with their times and text."""
    cues, streams = read_cues(clip_mkv)
    assert streams == 1
    assert [(c.start, c.end, c.text) for c in cues] == [
        (1.0, 2.5, "ߒߞߏ ߞߊ߲"),
        (4.0, 5.0, "plain latin"),
        (9.5, 10.5, "ߛߓߍߛߎ߲"),
    ]


def test_frames_get_the_nko_cues_of_their_scene(clip_mkv: Path, tmp_path: Path) -> None:
    """A frame's result holds the N'Ko cues shown during its scene; Latin cues are ignored."""
    det = CaptionsDetector(CaptionSettings(), DetectorContext(clip_mkv))
    results = det.detect(_frames([(0.0, 3.0), (3.0, 6.0), (6.0, 8.4), (8.4, 12.0)], tmp_path))
    assert [r.has_nko if r else None for r in results] == [True, False, False, True]
    assert results[0] is not None and results[0].nko_text == "ߒߞߏ ߞߊ߲" and results[0].confidence == 1.0
    assert det.stats() == {"caption_cues": 3, "nko_caption_cues": 2}
    assert [c["text"] for c in det.notes()["nko_cues"]] == ["ߒߞߏ ߞߊ߲", "ߛߓߍߛߎ߲"]


def test_video_without_subtitles_gives_no_result(clip_mp4: Path, tmp_path: Path) -> None:
    """No subtitle stream: results are None (could not look), not 'no N'Ko'."""
    det = CaptionsDetector(CaptionSettings(), DetectorContext(clip_mp4))
    assert det.detect(_frames([(0.0, 3.0)], tmp_path)) == [None]
    assert det.notes()["subtitle_streams"] == 0


def test_downloaded_vtt_file_is_a_caption_source(clip_mp4: Path, tmp_path: Path) -> None:
    """A WebVTT file beside the video (as yt-dlp writes them) is read too, tags stripped."""
    vtt = tmp_path / "video.nqo.vtt"
    vtt.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<c>ߒߞߏ</c> ߓߟߏ\n", encoding="utf-8")
    det = CaptionsDetector(CaptionSettings(), DetectorContext(clip_mp4, (vtt,)))
    (result,) = det.detect(_frames([(0.0, 3.0)], tmp_path))
    assert result is not None and result.has_nko and result.nko_text == "ߒߞߏ ߓߟߏ"
