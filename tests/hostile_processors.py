"""Processors that misbehave at the boundary with nkod, shaped by the ``do`` key of the manifest line.

- ``bad_count``: return a count named ``duration_seconds`` whose value is ``nan``, ``inf``, ``huge`` or
  ``text``; ``raw``: write the manifest line's ``raw`` (a JSON text) to the worker's message fd, as an old
  or broken worker would, and exit without the worker's own message;
- ``rmdir``: remove the work dir and return; ``file``: put a file where the work dir was;
- ``spawn_hang``: start ``sleep 1000`` (its pid written to the file named by ``pid_file``), then hang;
  ``spawn_return``: start it and return at once (the sleep is left behind).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nkod import Report

BAD_VALUES: dict[str, float] = {"nan": float("nan"), "inf": float("inf"), "huge": 1e300}
SLEEP_ARG = "1000"


def _message_fd() -> int:
    """The fd the worker sends its messages on (found in the worker's own frame: a processor can reach it)."""
    frame = sys._getframe()
    while frame is not None:
        job = frame.f_locals.get("job")
        if frame.f_code.co_name == "run" and isinstance(job, dict) and "msg_fd" in job:
            return int(job["msg_fd"])
        frame = frame.f_back  # type: ignore[assignment]
    raise RuntimeError("not running in an nkod worker")


def _spawn_sleep(video: dict[str, Any]) -> None:
    sleeper = subprocess.Popen(["sleep", SLEEP_ARG])
    Path(video["pid_file"]).write_text(str(sleeper.pid))


def process(video: dict[str, Any], workdir: Path, report: Report) -> dict[str, Any]:
    """Misbehave as ``video["do"]`` says, else return ordinary counts."""
    do = video.get("do")
    if do == "bad_count":
        value = video["value"]
        return {"frames": 1, "duration_seconds": BAD_VALUES.get(value, value)}
    if do == "raw":
        os.write(_message_fd(), video["raw"].encode() + b"\n")
        os._exit(0)
    if do == "rmdir":
        shutil.rmtree(workdir)
    if do == "file":
        shutil.rmtree(workdir)
        workdir.write_text("not a directory\n")
    if do == "spawn_hang":
        _spawn_sleep(video)
        time.sleep(3600)
    if do == "spawn_return":
        _spawn_sleep(video)
    return {"frames": 2, "nko_detections": 1, "audio_segments": 3}
