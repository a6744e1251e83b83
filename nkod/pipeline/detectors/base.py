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
    """What a detector found in one frame. `error` is set (and the rest empty) when it could not say.

    `regions` are where the local detector saw N'Ko (``{"box": [x0, y0, x1, y1], "score": p}`` in frame
    pixels); `stage` is which detector decided this frame's yes/no when several are combined (``auto``:
    ``local`` or ``captions``; the cascade: ``local`` for frames it kept from the API, else ``vision-api``).
    """

    has_nko: bool
    nko_text: str = ""
    latin: str = ""
    english: str = ""
    confidence: float = 0.0
    source: str = ""
    cached: bool = False
    error: str = ""
    regions: tuple[dict[str, Any], ...] = ()
    stage: str = ""
    local_score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "has_nko": self.has_nko,
            "nko_text": self.nko_text,
            "latin": self.latin,
            "english": self.english,
            "confidence": self.confidence,
            "source": self.source,
        }
        if self.stage:
            d["stage"] = self.stage
        if self.local_score is not None:
            d["local_score"] = round(self.local_score, 4)
        if self.regions:
            d["regions"] = [dict(r) for r in self.regions]
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
