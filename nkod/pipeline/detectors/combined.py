"""Detectors made of two: ``auto`` (local + captions) and the vision-API cascade (local pre-filter).

- ``auto`` (the default): the local detector looks at every frame; where the video carries N'Ko
  subtitles, a frame shown during a N'Ko cue is a detection too (with the cue's text). Each frame's
  ``stage`` says which of the two decided.
- ``vision-api`` with ``prefilter = "local"``: the local detector scores every frame first; only frames
  scoring at least ``prefilter_threshold`` (flagged, or unsure) are sent to the API, the rest are
  decided "no N'Ko" locally (``stage = "local"``) and cost nothing. The counts say how many frames were
  sent and skipped and the money saved at ``price_per_call``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from nkod.pipeline.detectors.base import Detection, FrameInput
from nkod.pipeline.detectors.captions import CaptionsDetector
from nkod.pipeline.detectors.local import LocalDetector
from nkod.pipeline.detectors.vision_api import VisionApiDetector


class AutoDetector:
    """The local detector on every frame, and N'Ko subtitle cues where the video has subtitles."""

    name = "auto"

    def __init__(self, local: LocalDetector, captions: CaptionsDetector) -> None:
        self.local = local
        self.captions = captions
        self.by_captions = 0

    def detect(self, frames: Sequence[FrameInput]) -> list[Detection | None]:
        seen = self.local.detect(frames)
        cues = self.captions.detect(frames)
        results: list[Detection | None] = []
        for loc, cap in zip(seen, cues, strict=True):
            assert loc is not None  # the local detector answers for every frame
            if cap is not None and cap.has_nko and not loc.has_nko:
                self.by_captions += 1
                results.append(
                    dataclasses.replace(cap, regions=loc.regions, stage="captions", local_score=loc.confidence)
                )
            elif cap is not None and cap.has_nko:  # both: the local detector saw it, the cue gives the text
                results.append(dataclasses.replace(loc, nko_text=cap.nko_text, stage="local"))
            else:
                results.append(dataclasses.replace(loc, stage="local"))
        return results

    def stats(self) -> dict[str, int | float]:
        return {**self.local.stats(), **self.captions.stats(), "captions_nko_frames": self.by_captions}

    def notes(self) -> dict[str, Any]:
        return {
            "local": self.local.notes(),
            "captions": self.captions.notes(),
            "nko_frames_by_captions": self.by_captions,
        }


class PrefilterCascade:
    """The local detector in front of the vision API: only frames it flags or is unsure of are sent."""

    name = "local+vision-api"

    def __init__(self, local: LocalDetector, api: VisionApiDetector) -> None:
        self.local = local
        self.api = api
        self.threshold = api.settings.prefilter_threshold
        self.sent = 0
        self.skipped = 0

    def detect(self, frames: Sequence[FrameInput]) -> list[Detection | None]:
        seen = self.local.detect(frames)
        send = [i for i, d in enumerate(seen) if d is None or d.error or d.confidence >= self.threshold]
        answers = dict(zip(send, self.api.detect([frames[i] for i in send]), strict=True))
        self.sent += len(send)
        self.skipped += len(frames) - len(send)
        results: list[Detection | None] = []
        for i, loc in enumerate(seen):
            assert loc is not None
            local_score = None if loc.error else loc.confidence
            if i in answers:
                answer = answers[i]
                results.append(
                    None
                    if answer is None
                    else dataclasses.replace(answer, regions=loc.regions, stage="vision-api", local_score=local_score)
                )
            else:
                results.append(dataclasses.replace(loc, has_nko=False, stage="local", local_score=local_score))
        return results

    def saved_usd(self) -> float:
        return round(self.skipped * self.api.settings.price_per_call, 6)

    def stats(self) -> dict[str, int | float]:
        return {
            **self.local.stats(),
            **self.api.stats(),
            "prefilter_frames_sent": self.sent,
            "prefilter_frames_skipped": self.skipped,
            "prefilter_saved_usd": self.saved_usd(),
        }

    def notes(self) -> dict[str, Any]:
        return {
            "local": self.local.notes(),
            "vision_api": self.api.notes(),
            "prefilter": {
                "threshold": self.threshold,
                "frames_sent": self.sent,
                "frames_skipped": self.skipped,
                "saved_usd": self.saved_usd(),
            },
        }
