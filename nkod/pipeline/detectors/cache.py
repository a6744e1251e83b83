"""Detection results cached by frame content hash, shared by all workers and kept across runs."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class DetectionCache:
    """One JSON file per (detector fingerprint, frame sha256); written atomically (temp + rename).

    A damaged or half-written entry (power cut before the data reached the disk) reads as a miss.
    """

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.dir = root / "detections" / fingerprint

    def _path(self, sha256: str) -> Path:
        return self.dir / sha256[:2] / f"{sha256}.json"

    def get(self, sha256: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(sha256).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, sha256: str, value: dict[str, Any]) -> None:
        path = self._path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(value, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
