"""The vision-api detector against a local server speaking the OpenAI chat-completions wire format."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from nkod.errors import PermanentError, TransientError
from nkod.pipeline.detectors import DetectorContext, FrameInput
from nkod.pipeline.detectors.vision_api import MalformedAnswer, VisionApiDetector, parse_answer
from nkod.pipeline.settings import VisionApiSettings
from tests.pipeline.conftest import LocalServer, Reply

GOOD = {"has_nko": True, "nko_text": "ߒߞߏ", "latin": "n'ko", "english": "I say", "confidence": 0.93}


def completion(content: str, **usage: int) -> bytes:
    """A chat-completions response body whose message content is `content`."""
    doc: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }
    if usage:
        doc["usage"] = usage
    return json.dumps(doc).encode()


def ok(answer: dict[str, Any] = GOOD) -> Reply:
    return Reply(
        200,
        completion(json.dumps(answer), prompt_tokens=300, completion_tokens=40),
        {"Content-Type": "application/json"},
    )


@pytest.fixture()
def frames(tmp_path: Path) -> list[FrameInput]:
    """Two different small JPEG frames on disk."""
    out = []
    for i, color in enumerate(((200, 30, 30), (30, 30, 200))):
        path = tmp_path / f"frame_{i}.jpg"
        Image.new("RGB", (64, 48), color).save(path, quality=90)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out.append(FrameInput(path, float(i), float(i), float(i + 1), digest))
    return out


def detector(
    server: LocalServer, tmp_path: Path, sleeps: list[float] | None = None, **overrides: Any
) -> VisionApiDetector:
    settings = VisionApiSettings(
        **{
            "base_url": server.base + "/v1",
            "model": "test-model",
            "api_key_env": "NKOD_TEST_KEY",
            "price_per_call": 0.01,
            "timeout": 2.0,
            "max_retries": 0,
            **overrides,
        }
    )
    context = DetectorContext(tmp_path / "video.mp4", (), tmp_path / "cache")
    record = sleeps if sleeps is not None else []
    return VisionApiDetector(settings, context, sleep=record.append)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKOD_TEST_KEY", "sk-test-123")


def test_good_answer_is_parsed_and_costed(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """A 200 with the JSON asked for becomes a detection; calls and estimated cost are counted."""
    server.routes["/v1/chat/completions"] = ok()
    det = detector(server, tmp_path)
    results = det.detect(frames)
    assert [r.has_nko if r else None for r in results] == [True, True]
    first = results[0]
    assert first is not None
    assert (first.nko_text, first.latin, first.english, first.confidence) == ("ߒߞߏ", "n'ko", "I say", 0.93)
    assert det.stats() == {
        "detector_calls": 2,
        "detector_cost_usd": 0.02,
        "detector_cache_hits": 0,
        "detector_errors": 0,
    }
    assert det.notes()["prompt_tokens"] == 600


def test_request_speaks_the_openai_wire_format(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """POST {base_url}/chat/completions with bearer key, model, JSON mode and the frame as a data URL."""
    server.routes["/v1/chat/completions"] = ok()
    detector(server, tmp_path).detect(frames[:1])
    (seen,) = server.seen
    assert seen.method == "POST" and seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == "Bearer sk-test-123"
    body = json.loads(seen.body)
    assert body["model"] == "test-model"
    assert body["response_format"] == {"type": "json_object"}
    parts = body["messages"][-1]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == frames[0].path.read_bytes()
    assert "has_nko" in next(p["text"] for p in parts if p["type"] == "text")


def test_results_are_cached_by_frame_hash(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """A second run over the same frames (a redone video) makes no call and costs nothing."""
    server.routes["/v1/chat/completions"] = ok()
    detector(server, tmp_path).detect(frames)
    again = detector(server, tmp_path)
    results = again.detect(frames)
    assert len(server.seen) == 2
    assert all(r is not None and r.cached and r.has_nko for r in results)
    assert again.stats()["detector_calls"] == 0 and again.stats()["detector_cache_hits"] == 2
    assert again.stats()["detector_cost_usd"] == 0


def test_429_is_transient_with_retry_after(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """Rate limited and out of retries: TransientError carrying the server's Retry-After."""
    server.routes["/v1/chat/completions"] = Reply(429, b'{"error": "quota"}', {"Retry-After": "12"})
    with pytest.raises(TransientError) as info:
        detector(server, tmp_path).detect(frames[:1])
    assert info.value.retry_after == 12.0
    assert "429" in str(info.value) and server.base in str(info.value)


def test_429_then_success_waits_retry_after(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """With retries left, the detector waits what Retry-After says, then succeeds."""
    server.routes["/v1/chat/completions"] = [Reply(429, b"", {"Retry-After": "3"}), ok()]
    sleeps: list[float] = []
    det = detector(server, tmp_path, sleeps, max_retries=2)
    (result,) = det.detect(frames[:1])
    assert result is not None and result.has_nko
    assert sleeps == [3.0]
    assert det.stats()["detector_calls"] == 1  # only the answered call is billed


def test_retry_after_beyond_the_limit_is_not_waited(
    server: LocalServer, tmp_path: Path, frames: list[FrameInput]
) -> None:
    """A Retry-After longer than max_retry_wait goes back to the engine instead of blocking a worker."""
    server.routes["/v1/chat/completions"] = Reply(429, b"", {"Retry-After": "3600"})
    sleeps: list[float] = []
    with pytest.raises(TransientError) as info:
        detector(server, tmp_path, sleeps, max_retries=3, max_retry_wait=60.0).detect(frames[:1])
    assert sleeps == [] and info.value.retry_after == 3600.0


def test_500_is_retried_then_transient(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """Server errors are retried with backoff, then raised as transient."""
    server.routes["/v1/chat/completions"] = Reply(500, b"internal error")
    sleeps: list[float] = []
    with pytest.raises(TransientError, match="HTTP 500"):
        detector(server, tmp_path, sleeps, max_retries=2).detect(frames[:1])
    assert sleeps == [1.0, 2.0]
    assert len(server.seen) == 3


def test_timeout_is_transient(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """No answer within the timeout is a transient failure naming the endpoint."""
    server.routes["/v1/chat/completions"] = Reply(200, completion("{}"), delay=3.0)
    with pytest.raises(TransientError, match=r"no answer within 0\.5s"):
        detector(server, tmp_path, timeout=0.5).detect(frames[:1])


def test_malformed_answer_is_asked_again_then_recorded(
    server: LocalServer, tmp_path: Path, frames: list[FrameInput]
) -> None:
    """A non-JSON answer is retried once; still bad, the frame records the error and is not cached."""
    server.routes["/v1/chat/completions"] = Reply(200, completion("I think there is N'Ko text here."))
    det = detector(server, tmp_path)
    (result,) = det.detect(frames[:1])
    assert result is not None and not result.has_nko
    assert "malformed answer" in result.error and "not JSON" in result.error
    assert det.stats()["detector_errors"] == 1 and det.stats()["detector_calls"] == 2
    server.routes["/v1/chat/completions"] = ok()
    (again,) = detector(server, tmp_path).detect(frames[:1])
    assert again is not None and again.has_nko and not again.cached


def test_malformed_then_good_answer_succeeds(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """One bad answer followed by a good one gives the good result."""
    server.routes["/v1/chat/completions"] = [Reply(200, b"<html>proxy error</html>"), ok()]
    (result,) = detector(server, tmp_path).detect(frames[:1])
    assert result is not None and result.has_nko and not result.error


def test_unauthorised_is_permanent(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """A rejected API key will not get better by retrying."""
    server.routes["/v1/chat/completions"] = Reply(401, b'{"error": "bad key"}')
    with pytest.raises(PermanentError, match="API key rejected"):
        detector(server, tmp_path, max_retries=3).detect(frames[:1])
    assert len(server.seen) == 1


def test_missing_key_variable_is_permanent_and_named(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset api_key_env variable is reported by name before any call is made."""
    monkeypatch.delenv("NKOD_TEST_KEY")
    with pytest.raises(PermanentError, match="NKOD_TEST_KEY"):
        detector(server, tmp_path)
    assert server.seen == []


def test_no_key_needed_for_local_servers(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """api_key_env = "" sends no Authorization header (Ollama, llama.cpp)."""
    server.routes["/v1/chat/completions"] = ok()
    detector(server, tmp_path, api_key_env="").detect(frames[:1])
    assert "Authorization" not in server.seen[0].headers


def test_low_confidence_does_not_count(server: LocalServer, tmp_path: Path, frames: list[FrameInput]) -> None:
    """has_nko with confidence below min_confidence is not a detection (the text is kept)."""
    server.routes["/v1/chat/completions"] = ok({**GOOD, "confidence": 0.2})
    (result,) = detector(server, tmp_path, min_confidence=0.5).detect(frames[:1])
    assert result is not None and not result.has_nko and result.nko_text == "ߒߞߏ"


def test_large_frames_are_downscaled_before_sending(server: LocalServer, tmp_path: Path) -> None:
    """Frames wider than max_image_width are sent resized (fewer tokens, same answer)."""
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1000), (10, 200, 10)).save(path)
    frame = FrameInput(path, 0.0, 0.0, 1.0, hashlib.sha256(path.read_bytes()).hexdigest())
    server.routes["/v1/chat/completions"] = ok()
    detector(server, tmp_path, max_image_width=500).detect([frame])
    url = json.loads(server.seen[0].body)["messages"][-1]["content"][1]["image_url"]["url"]
    import io

    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert sent.size == (500, 250)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"has_nko": "yes", "confidence": 0.5}', "has_nko"),
        ('{"has_nko": true, "confidence": 1.5}', "confidence"),
        ('{"has_nko": true, "nko_text": 3, "confidence": 0.5}', "nko_text"),
        ("[1, 2]", "not a JSON object"),
        ("", "not JSON"),
    ],
)
def test_parse_answer_validates_the_shape(content: str, problem: str) -> None:
    """Answers of the wrong shape are MalformedAnswer, saying what is wrong."""
    with pytest.raises(MalformedAnswer, match=problem):
        parse_answer(completion(content))


def test_parse_answer_accepts_fenced_json_and_missing_optionals() -> None:
    """```json fences are stripped; absent text fields default to empty strings."""
    answer, _ = parse_answer(completion('```json\n{"has_nko": false, "confidence": 0.9}\n```'))
    assert answer == {"has_nko": False, "nko_text": "", "latin": "", "english": "", "confidence": 0.9}


def test_response_without_choices_is_malformed() -> None:
    """A JSON body that is not a chat completion is malformed."""
    with pytest.raises(MalformedAnswer, match="choices"):
        parse_answer(b'{"error": {"message": "oops"}}')


def test_first_failure_stops_sending_the_rest(server: LocalServer, tmp_path: Path) -> None:
    """After a transient failure the remaining frames are not sent (no calls wasted on a dead service)."""
    paths = []
    for i in range(12):
        path = tmp_path / f"f{i}.jpg"
        Image.new("RGB", (32, 32), (i * 20, 0, 0)).save(path)
        paths.append(FrameInput(path, float(i), float(i), i + 1.0, hashlib.sha256(path.read_bytes()).hexdigest()))
    server.routes["/v1/chat/completions"] = Reply(503, b"down")
    with pytest.raises(TransientError):
        detector(server, tmp_path, concurrency=2).detect(paths)
    assert len(server.seen) <= 2  # at most one request in flight per concurrent worker
