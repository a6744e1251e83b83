"""The local N'Ko detector: shipped weights, numpy runtime, the ``auto`` default and the vision-API
pre-filter cascade, through the real ``nkod``/``nkoctl`` binaries where the behaviour is end to end."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nkod.errors import ConfigError
from nkod.pipeline.detectors.nko_net import WEIGHTS_PATH, NkoNet, WeightsError
from nkod.pipeline.settings import parse_settings
from tests.helpers import DataDir, binary, env
from tests.pipeline.conftest import LocalServer, Reply

DATA = Path(__file__).resolve().parent.parent.parent / "data"
SAMPLES = DATA / "samples"
# The shipped burned-in clip: four scenes with N'Ko text, then one without (scripts/make_samples.py).
BURNED_TEXT_SCENES = 4

PREFILTER_DEFAULT = 0.25
YES = {"has_nko": True, "nko_text": "ߒߞߏ", "latin": "n'ko", "english": "N'Ko", "confidence": 0.9}


def _completion(answer: dict[str, Any]) -> Reply:
    doc = {"choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(answer)}}]}
    return Reply(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})


def _pipeline_dir(tmp_path: Path, pipeline: str, videos: list[str]) -> DataDir:
    """A data dir running the built-in pipeline (audio off: not under test) on shipped samples."""
    d = DataDir(tmp_path / "data", processor="nkod.pipeline:process")
    with open(d.config, "a", encoding="utf-8") as f:
        f.write("[pipeline]\naudio = false\n" + pipeline)
    d.manifest([{"video_id": Path(v).stem, "path": str(SAMPLES / v)} for v in videos])
    return d


def _manifest(d: DataDir, video_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((d.root / "output" / video_id / "manifest.json").read_text(encoding="utf-8"))
    return doc


def _sent_frame_hashes(server: LocalServer) -> list[str]:
    """sha256 of every image the stub API received (frames narrower than max_image_width go as-is)."""
    out = []
    for seen in server.seen:
        body = json.loads(seen.body)
        url = body["messages"][1]["content"][1]["image_url"]["url"]
        out.append(hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest())
    return out


# -- the runtime on the shipped clips -----------------------------------------------------------------


def test_default_nkod_finds_nko_in_both_nko_samples_and_none_in_tones(tmp_path: Path) -> None:
    """`nkod --once` with no config (detector auto) finds N'Ko in the burned-in text scenes (local, with
    regions in the lower part where the text is) and in the captions clip, and none in the tones clip."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / "videos.jsonl", data / "videos.jsonl")
    shutil.copytree(SAMPLES, data / "samples")
    proc = subprocess.run(
        [binary("nkod"), "--data-dir", str(data), "--once", "--log-format", "plain"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    def manifest(video_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((data / "output" / video_id / "manifest.json").read_text(encoding="utf-8"))
        return doc

    burned = manifest("nko_burned")
    assert burned["detector"] == "auto"
    text_frames = [f for f in burned["frames"] if f["timestamp"] < 3.0 * BURNED_TEXT_SCENES]
    assert len(text_frames) >= BURNED_TEXT_SCENES
    for frame in text_frames:
        det = frame["detection"]
        assert det["has_nko"] and det["stage"] == "local" and det["confidence"] >= 0.4, frame
        # The text is burned in near the bottom (272 px high frame, text above the last eighth).
        assert any(r["box"][3] > frame["height"] // 2 for r in det["regions"]), det["regions"]
    assert burned["counts"]["nko_detections"] >= BURNED_TEXT_SCENES

    captions = manifest("nko_captions")
    by_captions = [f for f in captions["frames"] if f["detection"]["stage"] == "captions"]
    assert len(by_captions) >= 2 and all(f["detection"]["nko_text"] for f in by_captions)

    tones = manifest("scenes_tones")
    assert tones["counts"]["nko_detections"] == 0
    assert all(not f["detection"]["has_nko"] and f["detection"]["stage"] == "local" for f in tones["frames"])

    status = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(data), "status", "--json"], env=env(), capture_output=True, text=True
    )
    doc = json.loads(status.stdout)
    assert doc["nko_detection"] == "on" and doc["nko_detections"] >= BURNED_TEXT_SCENES + 2
    text = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(data), "status"], env=env(COLUMNS="200"), capture_output=True, text=True
    ).stdout
    pct = round(100 * doc["nko_detections"] / doc["frames"])
    assert f"N'Ko:     {doc['nko_detections']:,} detections ({pct}%)" in text


# -- the cascade: vision-api behind the local pre-filter ---------------------------------------------------


def test_cascade_sends_only_flagged_frames_and_counts_the_savings(tmp_path: Path, server: LocalServer) -> None:
    """With prefilter = "local" the stub API receives exactly the frames the local detector flagged
    (the burned-in text scenes, none of the tones clip); each frame's stage says who decided; the counts
    and nkoctl status show frames sent, skipped and the money saved at price_per_call (default threshold)."""
    server.routes["/v1/chat/completions"] = _completion(YES)
    d = _pipeline_dir(
        tmp_path,
        'detector = "vision-api"\n'
        + f'[pipeline.vision_api]\nbase_url = "{server.base}/v1"\napi_key_env = ""\nprice_per_call = 0.25\n'
        'prefilter = "local"\n',
        ["nko_burned.mp4", "scenes_tones.mp4"],
    )
    r = d.run(timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]

    frames = [f for vid in ("nko_burned", "scenes_tones") for f in _manifest(d, vid)["frames"]]
    sent = [f for f in frames if f["detection"]["stage"] == "vision-api"]
    skipped = [f for f in frames if f["detection"]["stage"] == "local"]
    assert len(sent) + len(skipped) == len(frames)
    assert sorted(_sent_frame_hashes(server)) == sorted(f["sha256"] for f in sent)
    assert all(f["detection"]["local_score"] >= PREFILTER_DEFAULT for f in sent)
    assert all(f["detection"]["local_score"] < PREFILTER_DEFAULT and not f["detection"]["has_nko"] for f in skipped)
    burned = _manifest(d, "nko_burned")
    assert burned["detector"] == "local+vision-api"
    text_frames = [f for f in burned["frames"] if f["timestamp"] < 3.0 * BURNED_TEXT_SCENES]
    assert all(f["detection"]["stage"] == "vision-api" and f["detection"]["nko_text"] == "ߒߞߏ" for f in text_frames)
    assert all(f["detection"]["stage"] == "local" for f in _manifest(d, "scenes_tones")["frames"])

    doc = d.status()
    assert doc["prefilter_frames_sent"] == len(sent) == len(server.seen) == doc["detector_calls"]
    assert doc["prefilter_frames_skipped"] == len(skipped) >= 5
    assert doc["prefilter_saved_usd"] == pytest.approx(0.25 * len(skipped))
    assert doc["detector_cost_usd"] == pytest.approx(0.25 * len(sent))
    text = d.ctl("status").stdout
    assert f"skipped {len(skipped)}, saved ${0.25 * len(skipped):,.2f}" in text, text


def test_prefilter_threshold_zero_sends_every_frame(tmp_path: Path, server: LocalServer) -> None:
    """The threshold is the knob: at 0 every frame is sent (nothing skipped, nothing saved)."""
    server.routes["/v1/chat/completions"] = _completion({**YES, "has_nko": False, "nko_text": ""})
    d = _pipeline_dir(
        tmp_path,
        f'detector = "vision-api"\n[pipeline.vision_api]\nbase_url = "{server.base}/v1"\napi_key_env = ""\n'
        'price_per_call = 0.1\nprefilter = "local"\nprefilter_threshold = 0.0\n',
        ["scenes_tones.mp4"],
    )
    r = d.run(timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    frames = _manifest(d, "scenes_tones")["frames"]
    assert len(server.seen) == len(frames) >= 4
    doc = d.status()
    assert doc["prefilter_frames_sent"] == len(frames) and doc["prefilter_frames_skipped"] == 0
    assert doc["prefilter_saved_usd"] == 0
    assert all(f["detection"]["stage"] == "vision-api" for f in frames)


# -- weights: deterministic loading, clear errors -----------------------------------------------------------


def test_shipped_weights_load_identically_and_score_deterministically(tmp_path: Path) -> None:
    """Two loads give the same arrays; two separate processes give bit-identical scores for a frame."""
    a, b = NkoNet.load(), NkoNet.load()
    assert a.sha256 == b.sha256 == hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest()
    assert len(a.layers) == len(b.layers) >= 3
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert np.array_equal(la.weight, lb.weight) and np.array_equal(la.bias, lb.bias)
    frame = tmp_path / "frame.jpg"
    rng = np.random.default_rng(7)
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(frame)
    code = (
        "import sys; from pathlib import Path; from nkod.pipeline.detectors.nko_net import NkoNet, read_frame\n"
        "g, size = read_frame(Path(sys.argv[1])); r = NkoNet.load().frame(g, 0.5, size)\n"
        "print(repr(r.score), [x.as_dict() for x in r.regions])"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code, str(frame)], capture_output=True, text=True, env=env(), check=True)
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()


def test_runtime_needs_neither_torch_nor_the_training_tools(tmp_path: Path) -> None:
    """The local detector scores a saved frame with torch, babel and bench/ impossible to import."""
    frame = tmp_path / "frame.jpg"
    from PIL import Image

    Image.new("RGB", (1280, 720), (40, 40, 40)).save(frame)
    code = (
        "import sys\n"
        "for name in ('torch', 'babel', 'nko_data', 'onnxruntime'): sys.modules[name] = None\n"
        "from pathlib import Path\n"
        "from nkod.pipeline.detectors.base import DetectorContext, FrameInput\n"
        "from nkod.pipeline.detectors.local import LocalDetector\n"
        "from nkod.pipeline.settings import LocalSettings\n"
        "d = LocalDetector(LocalSettings(), DetectorContext(Path('v.mp4')))\n"
        "[r] = d.detect([FrameInput(Path(sys.argv[1]), 0.0, 0.0, 1.0, 'x')])\n"
        "print(r.has_nko, r.error or 'ok')"
    )
    run = subprocess.run([sys.executable, "-c", code, str(frame)], capture_output=True, text=True, env=env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "ok"]


def _damaged_weights(kind: str, path: Path) -> None:
    raw = WEIGHTS_PATH.read_bytes()
    if kind == "garbage":
        path.write_bytes(b"these are not weights\n" * 10)
    elif kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "missing-layer":
        with np.load(WEIGHTS_PATH) as data:
            arrays = {k: data[k] for k in data.files if k != "w2"}
        np.savez(path, **arrays)
    elif kind == "wrong-shape":
        with np.load(WEIGHTS_PATH) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["w1"] = arrays["w1"][:-1]
        np.savez(path, **arrays)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "missing-layer", "wrong-shape"])
def test_damaged_weights_file_is_an_error_naming_the_path(kind: str, tmp_path: Path) -> None:
    """A damaged weights file raises WeightsError with the file's path and what is wrong."""
    path = tmp_path / f"{kind}.npz"
    _damaged_weights(kind, path)
    with pytest.raises(WeightsError, match=str(path)):
        NkoNet.load(path)


@pytest.mark.parametrize("kind", ["missing", "truncated"])
def test_nkod_with_missing_or_corrupt_weights_fails_the_video_naming_the_path(kind: str, tmp_path: Path) -> None:
    """A missing or corrupt weights file fails the video at once (permanent), the error names the path."""
    weights = tmp_path / "weights" / "nko.npz"
    if kind == "truncated":
        weights.parent.mkdir()
        _damaged_weights("truncated", weights)
    d = _pipeline_dir(tmp_path, f'detector = "local"\n[pipeline.local]\nweights = "{weights}"\n', ["scenes_tones.mp4"])
    r = d.run(timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    failed = d.status()["failed"]
    assert len(failed) == 1 and failed[0]["attempts"] == 1, failed
    error = failed[0]["error"]
    assert str(weights) in error and ("not found" if kind == "missing" else "damaged") in error, error


# -- settings ------------------------------------------------------------------------------------------------


def test_defaults_are_auto_with_prefilter_off() -> None:
    """The shipped default detector is auto; the cascade is opt-in; thresholds 0.4 (local) and 0.25."""
    s = parse_settings({}, "cfg.toml")
    assert s.detector == "auto" and s.vision_api.prefilter == "none" and s.local.threshold == 0.4
    assert s.vision_api.prefilter_threshold == PREFILTER_DEFAULT


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"vision_api": {"prefilter": "gpu"}}, "pipeline.vision_api.prefilter"),
        ({"vision_api": {"prefilter_threshold": 1.5}}, "pipeline.vision_api.prefilter_threshold"),
        ({"local": {"threshold": 0}}, "pipeline.local.threshold"),
        ({"local": {"weights": 3}}, "pipeline.local.weights"),
    ],
)
def test_bad_detector_settings_name_the_key(table: dict[str, Any], key: str) -> None:
    """Bad values for the new keys are ConfigErrors naming pipeline.<key>."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_settings(table, "cfg.toml")
