"""The detector interface shared by every detector."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

NKO_RE = re.compile("[\u07c0-\u07ff]")


def has_nko(text: str) -> bool:
    """True when `text` holds at least one character of the N'Ko block (U+07C0–U+07FF)."""
    return NKO_RE.search(text) is not None


@dataclass(frozen=True)
class FrameInput:
    """A saved frame handed to a detector."""

    path: Path
    timestamp: float
    scene_start: float
    scene_end: float
    sha256: str


@dataclass(frozen=True)
class Detection:
    """What a detector found in one frame. `error` is set (and the rest empty) when it could not say."""

    has_nko: bool
    nko_text: str = ""
    latin: str = ""
    english: str = ""
    confidence: float = 0.0
    source: str = ""
    cached: bool = False
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "has_nko": self.has_nko,
            "nko_text": self.nko_text,
            "latin": self.latin,
            "english": self.english,
            "confidence": self.confidence,
            "source": self.source,
        }
        if self.cached:
            d["cached"] = True
        if self.error:
            d["error"] = self.error
        return d


@dataclass(frozen=True)
class DetectorContext:
    """What a detector may need besides the frames."""

    media_path: Path
    subtitle_files: Sequence[Path] = ()
    cache_dir: Path | None = None
    report: Callable[..., None] = field(default=lambda *a, **k: None)


class Detector(Protocol):
    name: str

    def detect(self, frames: Sequence[FrameInput]) -> list[Detection | None]:
        """One result per frame (None: this detector cannot say anything about that frame)."""
        ...

    def stats(self) -> dict[str, int | float]:
        """Numbers for the counts returned to the engine (calls, cost, cache hits...)."""
        ...

    def notes(self) -> dict[str, Any]:
        """Extra facts for the per-video manifest."""
        ...


class NoDetector:
    """Detection off: every frame's result is None."""

    name = "none"

    def detect(self, frames: Sequence[FrameInput]) -> list[Detection | None]:
        return [None for _ in frames]

    def stats(self) -> dict[str, int | float]:
        # The engine's convention: nkoctl status then says detection is off, not "0 detections".
        return {"nko_detection_off": 1}

    def notes(self) -> dict[str, Any]:
        return {}
