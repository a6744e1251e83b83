"""The ``vision-api`` detector: ask an OpenAI-compatible chat-completions endpoint about each frame.

Works with any server speaking that wire format and accepting ``image_url`` parts: Gemini's
OpenAI-compatible endpoint, OpenAI, vLLM, Ollama, llama.cpp. The model is asked for strict JSON::

    {"has_nko": bool, "nko_text": str, "latin": str, "english": str, "confidence": 0..1}

and the answer is validated. HTTP 429 (honouring Retry-After), 5xx, timeouts and connection errors are
retried a few times here, then raised as :class:`TransientError` (the engine backs off and retries the
video; frames already answered come from the cache). 401/403/404/400 are :class:`PermanentError`. An
answer that is not valid JSON of that shape is asked again once, then recorded as that frame's error.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from nkod.errors import PermanentError, TransientError
from nkod.pipeline.detectors.base import Detection, DetectorContext, FrameInput
from nkod.pipeline.detectors.cache import DetectionCache
from nkod.pipeline.fetch import retry_after_seconds
from nkod.pipeline.settings import VisionApiSettings

PROMPT_VERSION = 1
SYSTEM_PROMPT = (
    "You detect N'Ko script (Unicode U+07C0-U+07FF, the alphabet of Manding languages) in video frames. "
    "Answer with one JSON object and nothing else."
)
USER_PROMPT = (
    "Is there N'Ko text visible in this image? Reply with exactly this JSON object: "
    '{"has_nko": true|false, "nko_text": "<the N\'Ko text, exactly as written, or empty>", '
    '"latin": "<Latin transliteration, or empty>", "english": "<English translation, or empty>", '
    '"confidence": <number from 0 to 1>}'
)


class MalformedAnswer(Exception):
    """The endpoint answered 200 but not with the JSON we asked for."""


def parse_answer(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The validated detection and the usage numbers from a chat-completions response body."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise MalformedAnswer(f"response is not JSON: {body[:120]!r}") from exc
    try:
        message = doc["choices"][0]["message"]
        content = message["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise MalformedAnswer(f"no choices[0].message.content in response: {str(doc)[:160]}") from exc
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise MalformedAnswer(f"message content is {type(content).__name__}, not text")
    text = content.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
    if fenced:
        text = fenced.group(1)
    try:
        answer = json.loads(text)
    except ValueError as exc:
        raise MalformedAnswer(f"model answer is not JSON: {text[:120]!r}") from exc
    if not isinstance(answer, dict):
        raise MalformedAnswer(f"model answer is not a JSON object: {text[:120]!r}")
    result: dict[str, Any] = {}
    if not isinstance(answer.get("has_nko"), bool):
        raise MalformedAnswer(f"'has_nko' must be true or false, got {answer.get('has_nko')!r}")
    result["has_nko"] = answer["has_nko"]
    for key in ("nko_text", "latin", "english"):
        value = answer.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise MalformedAnswer(f"{key!r} must be a string, got {value!r}")
        result[key] = value
    conf = answer.get("confidence")
    if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0 <= conf <= 1:
        raise MalformedAnswer(f"'confidence' must be a number from 0 to 1, got {conf!r}")
    result["confidence"] = float(conf)
    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
    return result, usage or {}


class _HttpFailure(Exception):
    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class VisionApiDetector:
    """One video's frames through the vision API, with cache, bounded concurrency and cost accounting."""

    name = "vision-api"

    def __init__(
        self,
        settings: VisionApiSettings,
        context: DetectorContext,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.context = context
        self.sleep = sleep
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self.api_key = ""
        if settings.api_key_env:
            self.api_key = os.environ.get(settings.api_key_env, "")
            if not self.api_key:
                raise PermanentError(
                    f"vision-api detector: environment variable {settings.api_key_env} is empty or unset; "
                    f"it must hold the API key for {settings.base_url} "
                    '(set vision_api.api_key_env = "" for a local server without a key)'
                )
        fingerprint = hashlib.sha256(
            json.dumps([self.name, settings.model, settings.max_image_width, PROMPT_VERSION], sort_keys=True).encode()
        ).hexdigest()[:16]
        self.cache = DetectionCache(context.cache_dir, fingerprint) if context.cache_dir else None
        self._lock = threading.Lock()
        self.calls = 0
        self.requests = 0
        self.cache_hits = 0
        self.errors = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    # -- interface --------------------------------------------------------------------------------

    def detect(self, frames: Sequence[FrameInput]) -> list[Detection | None]:
        done = 0

        failed = threading.Event()

        def one(frame: FrameInput) -> Detection | None:
            nonlocal done
            if failed.is_set():  # another frame failed: the video goes back to the engine anyway
                return None
            try:
                result = self._detect_one(frame)
            except BaseException:
                failed.set()
                raise
            with self._lock:
                done += 1
                self.context.report("detect", done=done, total=len(frames), calls=self.calls)
            return result

        if not frames:
            return []
        workers = min(self.settings.concurrency, len(frames))
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            futures = [pool.submit(one, frame) for frame in frames]
            return [future.result() for future in futures]
        except BaseException:
            # Stop at the first failure: frames not yet sent are not sent (those answered are cached).
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)

    def stats(self) -> dict[str, int | float]:
        return {
            "detector_calls": self.calls,
            "detector_cost_usd": round(self.calls * self.settings.price_per_call, 6),
            "detector_cache_hits": self.cache_hits,
            "detector_errors": self.errors,
        }

    def notes(self) -> dict[str, Any]:
        return {
            "model": self.settings.model,
            "base_url": self.settings.base_url,
            "calls": self.calls,
            "http_requests": self.requests,
            "cache_hits": self.cache_hits,
            "errors": self.errors,
            "estimated_cost_usd": round(self.calls * self.settings.price_per_call, 6),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    # -- one frame --------------------------------------------------------------------------------

    def _detect_one(self, frame: FrameInput) -> Detection:
        if self.cache is not None:
            hit = self.cache.get(frame.sha256)
            if hit is not None and isinstance(hit.get("has_nko"), bool):
                with self._lock:
                    self.cache_hits += 1
                return _detection(hit, self.settings.min_confidence, cached=True)
        body = self._request_body(frame)
        malformed: MalformedAnswer | None = None
        for _ in range(2):  # a malformed answer is asked once more
            raw = self._post_with_retries(body, frame)
            try:
                answer, usage = parse_answer(raw)
            except MalformedAnswer as exc:
                malformed = exc
                continue
            with self._lock:
                self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                self.completion_tokens += int(usage.get("completion_tokens") or 0)
            if self.cache is not None:
                self.cache.put(frame.sha256, answer)
            return _detection(answer, self.settings.min_confidence)
        with self._lock:
            self.errors += 1
        return Detection(
            has_nko=False,
            source=self.name,
            error=f"malformed answer from {self.url} for {frame.path.name}: {malformed}",
        )

    def _request_body(self, frame: FrameInput) -> bytes:
        data = frame.path.read_bytes()
        limit = self.settings.max_image_width
        if limit:
            with Image.open(io.BytesIO(data)) as image:
                if image.width > limit:
                    height = max(1, round(image.height * limit / image.width))
                    buf = io.BytesIO()
                    image.convert("RGB").resize((limit, height), Image.Resampling.LANCZOS).save(
                        buf, format="JPEG", quality=88
                    )
                    data = buf.getvalue()
        image_url = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        payload = {
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": USER_PROMPT},
                        {"type": "image_url", "image_url": {"url": image_url}},
                    ],
                },
            ],
            "response_format": {"type": "json_object"},
            "temperature": 0,
            "max_tokens": self.settings.max_tokens,
        }
        return json.dumps(payload).encode("utf-8")

    def _post_with_retries(self, body: bytes, frame: FrameInput) -> bytes:
        attempt = 0
        while True:
            try:
                return self._post(body)
            except _HttpFailure as exc:
                message = f"vision API {self.url} ({frame.path.name}): {exc}"
                if not exc.transient:
                    raise PermanentError(message) from exc
                wait = exc.retry_after if exc.retry_after is not None else min(30.0, 2.0**attempt)
                if attempt >= self.settings.max_retries or wait > self.settings.max_retry_wait:
                    raise TransientError(message, retry_after=exc.retry_after) from exc
                attempt += 1
                self.context.report("detect", waiting=round(wait, 1), reason=str(exc))
                self.sleep(wait)

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with self._lock:
            self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:
                data: bytes = response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            detail = _error_detail(exc)
            if status == 429:
                raise _HttpFailure(
                    f"HTTP 429 rate limited{detail}",
                    transient=True,
                    retry_after=retry_after_seconds(exc.headers.get("Retry-After")),
                ) from exc
            if status >= 500 or status == 408:
                raise _HttpFailure(f"HTTP {status}{detail}", transient=True) from exc
            hint = {401: " (API key rejected)", 403: " (access denied)", 404: " (wrong base_url or model?)"}
            raise _HttpFailure(f"HTTP {status}{hint.get(status, '')}{detail}", transient=False) from exc
        except TimeoutError as exc:
            raise _HttpFailure(f"no answer within {self.settings.timeout:g}s", transient=True) from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError | socket.timeout):
                raise _HttpFailure(f"no answer within {self.settings.timeout:g}s", transient=True) from exc
            raise _HttpFailure(f"cannot connect: {reason}", transient=True) from exc
        except (ConnectionError, OSError) as exc:
            raise _HttpFailure(f"connection failed: {exc}", transient=True) from exc
        with self._lock:
            self.calls += 1
        return data


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", "replace").strip()
    except Exception:
        return ""
    return f": {text}" if text else ""


def _detection(answer: dict[str, Any], min_confidence: float, *, cached: bool = False) -> Detection:
    """The model's answer as a Detection; below `min_confidence` it does not count as N'Ko."""
    confidence = float(answer.get("confidence", 0.0))
    return Detection(
        has_nko=bool(answer["has_nko"]) and confidence >= min_confidence,
        nko_text=str(answer.get("nko_text", "")),
        latin=str(answer.get("latin", "")),
        english=str(answer.get("english", "")),
        confidence=confidence,
        source=VisionApiDetector.name,
        cached=cached,
    )
