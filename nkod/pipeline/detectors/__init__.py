"""Stage 3, N'Ko detection: a detector looks at the saved frames and says where N'Ko text is.

Detectors (``[pipeline] detector = ...``):

- ``none`` (default): no detection; the manifest says ``"detector": "none"`` and frames have no result.
- ``vision-api``: an OpenAI-compatible chat-completions endpoint that takes images (Gemini, OpenAI,
  vLLM, Ollama, llama.cpp); results cached by frame content hash so a redone video does not pay twice.
- ``captions``: N'Ko (U+07C0–U+07FF) in the video's subtitle streams and downloaded subtitle files.
"""

from __future__ import annotations

from nkod.pipeline.detectors.base import (
    Detection,
    Detector,
    DetectorContext,
    FrameInput,
    NoDetector,
    has_nko,
)
from nkod.pipeline.detectors.factory import make_detector

__all__ = [
    "Detection",
    "Detector",
    "DetectorContext",
    "FrameInput",
    "NoDetector",
    "has_nko",
    "make_detector",
]
