"""The worker process's own rules: how failures are classified and what it reports."""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from nkod.worker import run, storage_problem


def run_job(tmp_path: Path, processor: str, **video: Any) -> list[dict[str, Any]]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    out = io.BytesIO()
    run(
        {
            "video": {"video_id": "v", "path": "x", **video},
            "workdir": str(workdir),
            "cache_dir": str(tmp_path),
            "processor": processor,
            "settings": {},
            "attempt": 1,
        },
        out,
    )
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_a_result_follows_progress(tmp_path: Path) -> None:
    """Progress messages stream first; the last message is the result with the counts."""
    msgs = run_job(tmp_path, "tests.processors:process", sleep=0.2, frames=2)
    assert msgs[0]["type"] == "progress" and msgs[0]["stage"] == "work"
    assert msgs[-1] == {
        "type": "result",
        "counts": {"frames": 2, "nko_detections": 1, "audio_segments": 3, "nko_frames": 1},
    }


@pytest.mark.parametrize(
    ("fail", "kind", "text"),
    [
        ("transient", "transient", "429"),
        ("permanent", "permanent", "unavailable"),
        ("raise", "permanent", "ValueError: bad value"),
        ("enospc", "storage", "No space left on device"),
    ],
)
def test_failures_are_classified(tmp_path: Path, fail: str, kind: str, text: str) -> None:
    """Transient and permanent errors keep their kind; other exceptions are permanent; ENOSPC is storage."""
    (msg,) = run_job(tmp_path, "tests.processors:process", fail=fail)
    assert msg["type"] == "error" and msg["kind"] == kind and text in msg["error"]


def test_an_unknown_processor_is_a_permanent_error(tmp_path: Path) -> None:
    """A processor that cannot be imported fails the video permanently, saying which."""
    (msg,) = run_job(tmp_path, "no_such_module:process")
    assert msg["kind"] == "permanent" and "no_such_module" in msg["error"]


def test_storage_problem_follows_the_cause_chain() -> None:
    """ENOSPC/EDQUOT/EROFS are found behind wrapping exceptions; other OSErrors are not storage."""
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        found = storage_problem(outer)
    assert found is not None and found.errno == errno.EROFS
    assert storage_problem(OSError(errno.ENOENT, "missing")) is None
    assert storage_problem(ValueError("x")) is None
