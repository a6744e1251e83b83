"""Build the detector the settings ask for."""

from __future__ import annotations

from nkod.pipeline.detectors.base import Detector, DetectorContext, NoDetector
from nkod.pipeline.settings import PipelineSettings


def make_detector(settings: PipelineSettings, context: DetectorContext) -> Detector:
    """The configured detector, ready to run on one video's frames."""
    if settings.detector == "vision-api":
        from nkod.pipeline.detectors.vision_api import VisionApiDetector

        return VisionApiDetector(settings.vision_api, context)
    if settings.detector == "captions":
        from nkod.pipeline.detectors.captions import CaptionsDetector

        return CaptionsDetector(settings.captions, context)
    return NoDetector()
