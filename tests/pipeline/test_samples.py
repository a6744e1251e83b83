"""The shipped sample manifest (data/videos.jsonl): valid, and real work for the pipeline and nkod."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nkod.pipeline import process
from nkod.processor import Report
from tests.helpers import binary, env

DATA = Path(__file__).resolve().parent.parent.parent / "data"
MakeReport = Callable[..., tuple[Report, list[dict[str, Any]]]]


def _entries() -> list[dict[str, Any]]:
    lines = (DATA / "videos.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_manifest_lists_small_clips_by_relative_path() -> None:
    """3-4 entries, each with an id and a relative path to a small committed clip."""
    entries = _entries()
    assert 3 <= len(entries) <= 4
    total = 0
    for entry in entries:
        assert entry["video_id"] and not Path(entry["path"]).is_absolute()
        clip = DATA / entry["path"]
        assert clip.is_file()
        total += clip.stat().st_size
    assert total < 1_000_000


@pytest.mark.parametrize("entry", _entries(), ids=lambda e: str(e["video_id"]))
def test_each_sample_gives_frames_and_segments(entry: dict[str, Any], tmp_path: Path, make_report: MakeReport) -> None:
    """Every sample has several scenes and several speech segments; the captions one has N'Ko."""
    report, _ = make_report({"detector": "captions"})
    workdir = tmp_path / "work"
    workdir.mkdir()
    counts = process({**entry, "path": str(DATA / entry["path"])}, workdir, report)
    assert counts["frames"] >= 4
    assert counts["audio_segments"] >= 4
    if entry["video_id"] == "nko_captions":
        assert counts["nko_detections"] >= 2


def test_nkod_once_on_the_shipped_manifest(tmp_path: Path) -> None:
    """`nkod --once` with the defaults processes every sample into output/<id>/ with its manifest."""
    try:
        nkod = binary("nkod")
    except RuntimeError as exc:
        pytest.skip(str(exc))
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / "videos.jsonl", data / "videos.jsonl")
    shutil.copytree(DATA / "samples", data / "samples")
    proc = subprocess.run(
        [nkod, "--data-dir", str(data), "--once", "--log-format", "plain"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for entry in _entries():
        out = data / "output" / entry["video_id"]
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["detector"] == "auto"
        assert len(manifest["frames"]) == len(list((out / "frames").iterdir())) >= 4
        assert len(manifest["audio_segments"]) == len(list((out / "audio").iterdir())) >= 4
