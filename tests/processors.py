"""Processors for tests: real work in a real worker process, shaped by keys in the manifest line.

Keys: ``sleep`` (seconds), ``frames`` (files to write), ``fail`` ("transient" | "permanent" | "crash" |
"exit" | "hang" | "raise" | "enospc"), ``fail_attempts`` (fail only while the attempt number is at most this),
``retry_after`` (for transient failures), ``message`` (the permanent failure's error text), ``detection_off``
(report ``nko_detection_off: 1``, as the pipeline does with no detector).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

from nkod import PermanentError, Report, TransientError


def process(video: dict[str, Any], workdir: Path, report: Report) -> dict[str, Any]:
    """Sleep, then write `frames` small files, or fail as the manifest line says."""
    fail = video.get("fail")
    if fail and report.attempt <= int(video.get("fail_attempts", 1_000_000)):
        if fail == "transient":
            raise TransientError(
                f"rate limited (HTTP 429) on {video['video_id']}", retry_after=video.get("retry_after")
            )
        if fail == "permanent":
            raise PermanentError(video.get("message") or f"video {video['video_id']} is unavailable")
        if fail == "crash":
            os.kill(os.getpid(), 9)
        if fail == "exit":
            os._exit(3)
        if fail == "hang":
            time.sleep(3600)
        if fail == "raise":
            raise ValueError("bad value in processor")
        if fail == "enospc":  # what a write to a full disk raises, wrapped as a library would
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(workdir / "frame.jpg"))
            except OSError as exc:
                raise RuntimeError("could not save frame") from exc
    sleep = float(video.get("sleep", 0))
    steps = max(1, int(sleep / 0.1))
    for i in range(steps):
        time.sleep(sleep / steps)
        report("work", done=i + 1, total=steps)
    frames = int(video.get("frames", 3))
    (workdir / "frames").mkdir()
    for i in range(frames):
        (workdir / "frames" / f"{i:04d}.txt").write_text(f"{video['video_id']} frame {i}\n")
    counts = {"frames": frames, "nko_detections": frames // 2, "audio_segments": frames + 1, "nko_frames": frames // 2}
    return counts | ({"nko_detection_off": 1} if video.get("detection_off") else {})
