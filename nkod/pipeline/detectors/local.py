"""The ``local`` detector: is there N'Ko text in the frame, and where? Offline, numpy on CPU, free.

A small network shipped in the package (:mod:`nkod.pipeline.detectors.nko_net`) scores each saved
frame from 0 to 1; a frame at or above ``[pipeline.local] threshold`` is a N'Ko detection, with the
regions where the network saw N'Ko. It says yes/no and where; reading the text is the vision API's job.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nkod.errors import PermanentError
from nkod.pipeline.detectors.base import Detection, DetectorContext, FrameInput
from nkod.pipeline.detectors.nko_net import WEIGHTS_PATH, NkoNet, WeightsError, read_frame
from nkod.pipeline.settings import LocalSettings


@functools.cache
def load_net(path: Path) -> NkoNet:
    """The network from `path`, loaded once per process; WeightsError names the path."""
    return NkoNet.load(path)


def weights_path(settings: LocalSettings) -> Path:
    """The weights file the settings name, or the one shipped in the package."""
    return Path(settings.weights).expanduser() if settings.weights else WEIGHTS_PATH


class LocalDetector:
    """Every frame scored by the shipped network; ``threshold`` makes the yes/no."""

    name = "local"

    def __init__(self, settings: LocalSettings, context: DetectorContext) -> None:
        self.settings = settings
        self.context = context
        self.path = weights_path(settings)
        try:
            self.net = load_net(self.path)
        except WeightsError as exc:
            raise PermanentError(f"local detector: {exc}") from exc
        self.frames = 0
        self.nko_frames = 0
        self.errors = 0
        self.cpu_seconds = 0.0

    def detect(self, frames: Sequence[FrameInput]) -> list[Detection | None]:
        results: list[Detection | None] = []
        for i, frame in enumerate(frames, 1):
            results.append(self._one(frame))
            self.context.report("detect", done=i, total=len(frames))
        return results

    def _one(self, frame: FrameInput) -> Detection:
        started = time.process_time()
        try:
            grey, size = read_frame(frame.path)
            result = self.net.frame(grey, self.settings.threshold, size)
        except OSError as exc:
            self.errors += 1
            return Detection(has_nko=False, source=self.name, error=f"cannot read frame {frame.path}: {exc}")
        finally:
            self.cpu_seconds += time.process_time() - started
        self.frames += 1
        has_nko = result.score >= self.settings.threshold
        self.nko_frames += has_nko
        return Detection(
            has_nko=has_nko,
            confidence=round(result.score, 4),
            source=self.name,
            regions=tuple(r.as_dict() for r in result.regions),
        )

    def stats(self) -> dict[str, int | float]:
        return {"local_frames": self.frames, "local_nko_frames": self.nko_frames, "local_errors": self.errors}

    def notes(self) -> dict[str, Any]:
        return {
            "weights": str(self.path),
            "weights_version": self.net.version,
            "weights_sha256": self.net.sha256,
            "threshold": self.settings.threshold,
            "frames": self.frames,
            "nko_frames": self.nko_frames,
            "errors": self.errors,
            "cpu_seconds": round(self.cpu_seconds, 3),
        }
