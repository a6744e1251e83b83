"""The ``captions`` detector: N'Ko text in the video's subtitle streams (no API, no cost).

Cues are read with PyAV from every subtitle stream of the media file (SRT, ASS, WebVTT, mov_text...)
and from subtitle files downloaded beside it (yt-dlp, ``[pipeline.captions] languages``). A frame's
result is the N'Ko cues shown during its scene. A video without any subtitles gives no result (None)
for its frames: the detector could not look, which is not the same as "no N'Ko".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import av

from nkod.pipeline.detectors.base import Detection, DetectorContext, FrameInput, has_nko
from nkod.pipeline.settings import CaptionSettings

_ASS_TAG = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True)
class Cue:
    """One subtitle line: shown from `start` to `end` seconds."""

    start: float
    end: float
    text: str
    source: str


def _cue_text(sub: Any) -> str:
    """Plain text of a decoded subtitle rect (ASS override tags and \\N line breaks removed)."""
    raw = b""
    for attr in ("dialogue", "text", "ass"):
        value = getattr(sub, attr, b"")
        if value:
            raw = value if isinstance(value, bytes) else str(value).encode()
            if attr == "ass":  # "ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text"
                raw = raw.split(b",", 8)[-1]
            break
    text = raw.decode("utf-8", "replace")
    text = _ASS_TAG.sub("", text).replace("\\N", "\n").replace("\\n", "\n")
    return re.sub(r"<[^>]+>", "", text).strip()


def read_cues(path: Path, start_time: float = 0.0) -> tuple[list[Cue], int]:
    """All cues of all subtitle streams in `path` (and how many streams there were)."""
    cues: list[Cue] = []
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError):
        return [], 0
    with container:
        streams = list(container.streams.subtitles)
        if not streams:
            return [], 0
        for packet in container.demux(*streams):
            if packet.size == 0 or packet.pts is None or packet.time_base is None:
                continue
            start = float(packet.pts * packet.time_base) - start_time
            end = start + float((packet.duration or 0) * packet.time_base)
            stream = packet.stream
            label = f"{path.name}#{stream.index}"
            lang = stream.metadata.get("language")
            if lang:
                label += f"({lang})"
            try:
                decoded = cast(Any, stream).decode(packet)
            except av.error.FFmpegError:
                continue
            for sub in decoded:
                for rect in sub if isinstance(sub, Sequence) else [sub]:
                    text = _cue_text(rect)
                    if text:
                        cues.append(Cue(round(start, 3), round(max(end, start), 3), text, label))
    return cues, len(streams)


class CaptionsDetector:
    """Frames of a scene get the N'Ko subtitle cues shown during that scene."""

    name = "captions"

    def __init__(self, settings: CaptionSettings, context: DetectorContext) -> None:
        self.settings = settings
        self.context = context
        self.cues: list[Cue] = []
        self.streams = 0
        for source in (context.media_path, *context.subtitle_files):
            cues, streams = read_cues(source)
            self.cues.extend(cues)
            self.streams += streams
        self.cues.sort(key=lambda c: (c.start, c.end))
        self.nko_cues = [c for c in self.cues if has_nko(c.text)]

    def detect(self, frames: Sequence[FrameInput]) -> list[Detection | None]:
        if self.streams == 0:
            return [None for _ in frames]
        results: list[Detection | None] = []
        for frame in frames:
            texts: list[str] = []
            for cue in self.nko_cues:
                if cue.start < frame.scene_end and cue.end > frame.scene_start and cue.text not in texts:
                    texts.append(cue.text)
            results.append(
                Detection(
                    has_nko=bool(texts),
                    nko_text="\n".join(texts),
                    confidence=1.0 if texts else 0.0,
                    source=self.name,
                )
            )
        self.context.report("detect", done=len(frames), total=len(frames))
        return results

    def stats(self) -> dict[str, int | float]:
        return {"caption_cues": len(self.cues), "nko_caption_cues": len(self.nko_cues)}

    def notes(self) -> dict[str, Any]:
        return {
            "subtitle_streams": self.streams,
            "cues": len(self.cues),
            "nko_cues": [{"start": c.start, "end": c.end, "text": c.text, "source": c.source} for c in self.nko_cues],
        }
