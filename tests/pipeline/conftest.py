"""Fixtures for the pipeline tests: small synthetic clips and a scriptable HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nkod.pipeline.synth import Burst, Cue, make_clip, scenes_from_durations
from nkod.processor import Report

# The standard test clip: 4 scenes (cuts at 3.0, 6.0, 8.4 s), sound with silences between bursts,
# one N'Ko subtitle cue and one Latin one.
SCENES = (3.0, 3.0, 2.4, 3.6)
CUTS = (3.0, 6.0, 8.4)
BURSTS = (
    Burst(0.5, 2.0, 440.0),
    Burst(3.5, 5.0, 0.0, 0.3),
    Burst(6.5, 8.0, 300.0),
    Burst(9.0, 11.0, 600.0),
)
CUES = (Cue(1.0, 2.5, "ߒߞߏ ߞߊ߲"), Cue(4.0, 5.0, "plain latin"), Cue(9.5, 10.5, "ߛߓߍߛߎ߲"))


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def clip_mp4(clip_dir: Path) -> Path:
    """Four scenes and four sound bursts, no subtitles."""
    return make_clip(clip_dir / "scenes.mp4", scenes_from_durations(SCENES), bursts=BURSTS)


@pytest.fixture(scope="session")
def clip_mkv(clip_dir: Path) -> Path:
    """The same clip in Matroska with an SRT subtitle stream holding N'Ko cues."""
    return make_clip(clip_dir / "captions.mkv", scenes_from_durations(SCENES), bursts=BURSTS, cues=CUES)


@pytest.fixture(scope="session")
def clip_silent_video(clip_dir: Path) -> Path:
    """Video only, no audio stream."""
    return make_clip(clip_dir / "noaudio.mp4", scenes_from_durations((2.0, 2.0)), audio=False)


@pytest.fixture()
def make_report(tmp_path: Path) -> Callable[..., tuple[Report, list[dict[str, Any]]]]:
    """A real nkod.Report collecting its progress messages; settings given per test."""

    def make(settings: Mapping[str, Any] | None = None) -> tuple[Report, list[dict[str, Any]]]:
        messages: list[dict[str, Any]] = []
        cache = tmp_path / "cache"
        cache.mkdir(exist_ok=True)
        report = Report(lambda m: messages.append(dict(m)), settings=settings or {}, cache_dir=cache, attempt=1)
        return report, messages

    return make


@dataclass
class Reply:
    """One scripted HTTP answer. `drop_after` cuts the connection after that many body bytes;
    `delay` waits before answering (for timeouts)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 answering from a route table (path -> reply or list of
    replies, consumed in order, the last one repeating)."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | list[Reply]] = {}
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def do_POST(self) -> None:
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                reply = server._next(self.path.split("?")[0])
                if reply.delay:
                    server._stop.wait(reply.delay)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                if reply.drop_after is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if head:
                    return
                try:
                    if reply.drop_after is not None:
                        self.wfile.write(reply.body[: reply.drop_after])
                        self.wfile.flush()
                        self.close_connection = True
                    else:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def _next(self, path: str) -> Reply:
        route = self.routes.get(path)
        if route is None:
            return Reply(404, b"not found")
        if isinstance(route, list):
            return route.pop(0) if len(route) > 1 else route[0]
        return route

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[LocalServer]:
    """A local HTTP server on 127.0.0.1 (nothing in the tests talks to anything else)."""
    srv = LocalServer()
    try:
        yield srv
    finally:
        srv.close()
