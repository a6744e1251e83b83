"""process(): the whole pipeline on a clip, as the engine calls it in a worker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nkod.errors import PermanentError, TransientError
from nkod.pipeline import process
from nkod.pipeline.run import decoder_threads
from nkod.processor import Report, normalise_counts
from tests.pipeline.conftest import CUTS, LocalServer, Reply
from tests.pipeline.test_vision_api import GOOD, completion

MakeReport = Callable[..., tuple[Report, list[dict[str, Any]]]]


def _workdir(tmp_path: Path, name: str = "work") -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def _manifest(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "manifest.json").read_text(encoding="utf-8"))
    return data


def test_counts_equal_what_is_on_disk(clip_mkv: Path, tmp_path: Path, make_report: MakeReport) -> None:
    """Frames, detections and segments returned are exactly the files and results written."""
    report, messages = make_report({"detector": "captions"})
    workdir = _workdir(tmp_path)
    counts = process({"video_id": "cap", "path": str(clip_mkv), "title": "Captions"}, workdir, report)
    assert normalise_counts(counts) == counts
    assert counts["frames"] == len(list((workdir / "frames").glob("*.jpg"))) == 1 + len(CUTS)
    assert counts["audio_segments"] == len(list((workdir / "audio").glob("*.flac"))) == 4
    manifest = _manifest(workdir)
    assert counts["nko_detections"] == sum(1 for f in manifest["frames"] if f["detection"]["has_nko"]) == 2
    assert not (workdir / "summary.json").exists()
    assert {m["stage"] for m in messages} >= {"fetch", "frames", "detect", "audio", "manifest"}


def test_manifest_links_scenes_frames_and_segments(clip_mkv: Path, tmp_path: Path, make_report: MakeReport) -> None:
    """manifest.json holds metadata, scenes, frames with timestamps and results, segments with scenes."""
    report, _ = make_report({"detector": "captions"})
    workdir = _workdir(tmp_path)
    process({"video_id": "cap", "path": str(clip_mkv), "title": "Captions", "lang": "bm"}, workdir, report)
    m = _manifest(workdir)
    assert m["video_id"] == "cap" and m["title"] == "Captions" and m["metadata"] == {"title": "Captions", "lang": "bm"}
    assert m["detector"] == "captions" and m["audio"] == "on"
    assert m["media"]["width"] == 320 and m["duration_seconds"] == pytest.approx(12.0, abs=0.1)
    assert [s["start"] for s in m["scenes"]][1:] == pytest.approx(list(CUTS), abs=0.2)
    for scene, frame in zip(m["scenes"], m["frames"], strict=True):
        assert frame["scene"] == scene["index"] and scene["frame"] == frame["index"]
        assert (workdir / frame["path"]).is_file()
    for seg in m["audio_segments"]:
        scene = m["scenes"][seg["scene"]]
        assert scene["start"] <= (seg["start"] + seg["end"]) / 2 < scene["end"]
        assert (workdir / seg["path"]).is_file()
    assert m["audio_segments"][0]["nko_captions"] == ["ߒߞߏ ߞߊ߲"]
    assert m["settings"]["detector"] == "captions"


def test_default_detector_is_auto_and_recorded(clip_mp4: Path, tmp_path: Path, make_report: MakeReport) -> None:
    """With nothing configured the local detector (auto) looks at every frame: no text, no N'Ko."""
    report, _ = make_report({})
    workdir = _workdir(tmp_path)
    counts = process({"video_id": "plain", "path": str(clip_mp4)}, workdir, report)
    m = _manifest(workdir)
    assert m["detector"] == "auto" and counts["nko_detections"] == 0
    assert all(f["detection"]["stage"] == "local" and not f["detection"]["has_nko"] for f in m["frames"])


def test_detector_none_is_off_and_recorded(clip_mp4: Path, tmp_path: Path, make_report: MakeReport) -> None:
    """detector = "none": manifest says "none", no frame has a result."""
    report, _ = make_report({"detector": "none"})
    workdir = _workdir(tmp_path)
    counts = process({"video_id": "plain", "path": str(clip_mp4)}, workdir, report)
    m = _manifest(workdir)
    assert m["detector"] == "none" and counts["nko_detections"] == 0
    assert all(f["detection"] is None for f in m["frames"])


def test_audio_off_skips_audio(clip_mp4: Path, tmp_path: Path, make_report: MakeReport) -> None:
    """audio = false writes no segments and says so in the manifest."""
    report, messages = make_report({"audio": False})
    workdir = _workdir(tmp_path)
    counts = process({"video_id": "v", "path": str(clip_mp4)}, workdir, report)
    assert counts["audio_segments"] == 0 and not (workdir / "audio").exists()
    assert _manifest(workdir)["audio"] == "off"
    assert "audio" not in {m["stage"] for m in messages}


def test_url_entry_is_downloaded_and_the_download_dropped(
    server: LocalServer, clip_mkv: Path, tmp_path: Path, make_report: MakeReport
) -> None:
    """A url entry is fetched through yt-dlp; the video file is not kept in the output by default."""
    server.routes["/c.mkv"] = Reply(200, clip_mkv.read_bytes(), {"Content-Type": "video/x-matroska"})
    report, _ = make_report({"download": {"retries": 0}})
    workdir = _workdir(tmp_path)
    counts = process({"video_id": "web", "url": server.base + "/c.mkv"}, workdir, report)
    assert counts["frames"] == 4
    assert not (workdir / "download").exists()
    assert _manifest(workdir)["source"]["url"] == server.base + "/c.mkv"


def test_keep_video_keeps_the_download(
    server: LocalServer, clip_mkv: Path, tmp_path: Path, make_report: MakeReport
) -> None:
    """keep_video = true leaves the downloaded file in the output and names it in the manifest."""
    server.routes["/c.mkv"] = Reply(200, clip_mkv.read_bytes(), {"Content-Type": "video/x-matroska"})
    report, _ = make_report({"keep_video": True, "download": {"retries": 0}})
    workdir = _workdir(tmp_path)
    process({"video_id": "web", "url": server.base + "/c.mkv"}, workdir, report)
    assert _manifest(workdir)["source"]["file"] == "download/video.mkv"
    assert (workdir / "download" / "video.mkv").is_file()


def test_redone_video_does_not_pay_twice(
    server: LocalServer,
    clip_mp4: Path,
    tmp_path: Path,
    make_report: MakeReport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After an interruption the retry finds every frame's answer in the shared cache: no new calls."""
    monkeypatch.setenv("NKOD_KEY", "k")
    api: dict[str, Any] = {"base_url": server.base + "/v1", "api_key_env": "NKOD_KEY", "price_per_call": 0.05}
    settings: dict[str, Any] = {"detector": "vision-api", "audio": False, "vision_api": api}
    # First attempt: two frames answered, then the service starts failing.
    server.routes["/v1/chat/completions"] = [
        Reply(200, completion(json.dumps(GOOD))),
        Reply(200, completion(json.dumps(GOOD))),
        Reply(503, b"overloaded"),
    ]
    report, _ = make_report({**settings, "vision_api": {**api, "concurrency": 1, "max_retries": 0}})
    with pytest.raises(TransientError, match="503"):
        process({"video_id": "v", "path": str(clip_mp4)}, _workdir(tmp_path, "try1"), report)
    first_calls = len(server.seen)
    server.routes["/v1/chat/completions"] = Reply(200, completion(json.dumps(GOOD)))
    report2, _ = make_report(settings)
    workdir = _workdir(tmp_path, "try2")
    counts = process({"video_id": "v", "path": str(clip_mp4)}, workdir, report2)
    assert counts["frames"] == 4 and counts["nko_detections"] == 4
    assert counts["detector_cache_hits"] == 2 and counts["detector_calls"] == 2
    assert counts["detector_cost_usd"] == pytest.approx(0.10)
    assert len(server.seen) == first_calls + 2
    assert _manifest(workdir)["detector_info"]["estimated_cost_usd"] == pytest.approx(0.10)


def test_missing_file_is_permanent(tmp_path: Path, make_report: MakeReport) -> None:
    """A manifest path that does not exist fails at once, naming it."""
    report, _ = make_report({})
    with pytest.raises(PermanentError, match=r"missing\.mp4"):
        process({"video_id": "v", "path": str(tmp_path / "missing.mp4")}, _workdir(tmp_path), report)


def test_invalid_settings_are_a_permanent_error(clip_mp4: Path, tmp_path: Path, make_report: MakeReport) -> None:
    """A bad [pipeline] table reaching a worker is reported, naming the key."""
    report, _ = make_report({"frames": {"max_frames": 0}})
    with pytest.raises(PermanentError, match=r"pipeline\.frames\.max_frames"):
        process({"video_id": "v", "path": str(clip_mp4)}, _workdir(tmp_path), report)


def test_full_disk_is_transient(
    clip_mp4: Path, tmp_path: Path, make_report: MakeReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing the output is retried later, not a permanent failure of the video."""
    import errno

    import nkod.pipeline.run as run_module

    def full(workdir: Path, manifest: Any) -> Path:  # fault injection: the disk fills up here
        raise OSError(errno.ENOSPC, "No space left on device", str(workdir / "manifest.json"))

    monkeypatch.setattr(run_module, "write_manifest", full)
    report, _ = make_report({"audio": False})
    with pytest.raises(TransientError, match=r"no space left .*manifest\.json"):
        process({"video_id": "v", "path": str(clip_mp4)}, _workdir(tmp_path), report)


@pytest.mark.parametrize(("workers", "cpus", "threads"), [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 8, 4), (1, 1, 1)])
def test_auto_threads_divide_cpus_among_workers(workers: int, cpus: int, threads: int) -> None:
    """One worker gets every CPU; as many workers as CPUs get one thread each; never fewer than one."""
    assert decoder_threads(workers, cpus) == threads
