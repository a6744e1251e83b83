"""Build the detector the settings ask for."""

from __future__ import annotations

from nkod.pipeline.detectors.base import Detector, DetectorContext, NoDetector
from nkod.pipeline.detectors.captions import CaptionsDetector
from nkod.pipeline.settings import PipelineSettings


def make_detector(settings: PipelineSettings, context: DetectorContext) -> Detector:
    """The configured detector, ready to run on one video's frames."""
    if settings.detector == "vision-api":
        from nkod.pipeline.detectors.vision_api import VisionApiDetector

        api = VisionApiDetector(settings.vision_api, context)
        if settings.vision_api.prefilter == "local":
            from nkod.pipeline.detectors.combined import PrefilterCascade
            from nkod.pipeline.detectors.local import LocalDetector

            return PrefilterCascade(LocalDetector(settings.local, context), api)
        return api
    if settings.detector == "captions":
        return CaptionsDetector(settings.captions, context)
    if settings.detector in ("local", "auto"):
        from nkod.pipeline.detectors.local import LocalDetector

        local = LocalDetector(settings.local, context)
        if settings.detector == "local":
            return local
        from nkod.pipeline.detectors.combined import AutoDetector

        return AutoDetector(local, CaptionsDetector(settings.captions, context))
    return NoDetector()


def captions_of(detector: Detector) -> CaptionsDetector | None:
    """The captions detector inside `detector` (itself, or ``auto``'s), if it read any subtitle stream."""
    captions = detector if isinstance(detector, CaptionsDetector) else getattr(detector, "captions", None)
    return captions if isinstance(captions, CaptionsDetector) and captions.streams else None
