"""Open a page in the real headless Chromium and see what a person would: console errors, requests, pixels.

Chromium is driven over its DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ending
in NUL on fds 3 and 4), so no port, no websocket library and no browser download are needed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # else it tries the network at start and logs failures
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def find() -> str | None:
    """Debian's chromium, if installed."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)  # console.error, uncaught exceptions, failed loads
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    broken_images: int = 0  # <img> elements that did not decode
    images: int = 0
    title: str = ""
    screenshot: bytes = b""  # PNG of the viewport


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc = proc
        self.wfd = to_browser
        self.rfd = from_browser
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_one(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.rfd], [], [], left)
            if ready:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()})")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        msg: dict[str, Any] = orjson.loads(raw)
        return msg

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, orjson.dumps(msg) + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_one(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self._read_one(deadline)
            self.events.append(e)
            if e.get("method") == method:
                return e


def open_page(url: str, width: int = 1280, height: int = 900, timeout: float = 60) -> PageResult:
    """Load `url` in a fresh headless Chromium at width×height; report errors, requests and a screenshot."""
    exe = find()
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()

    def wire_fds() -> None:  # the child reads commands on fd 3 and writes answers on fd 4
        a, b = os.dup(to_r), os.dup(from_w)
        os.dup2(a, 3)
        os.dup2(b, 4)

    with tempfile.TemporaryDirectory(prefix="nkod-chromium-") as profile:
        proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds,
            pass_fds=(3, 4),
        )
        os.close(to_r)
        os.close(from_w)
        pipe = _Pipe(proc, to_w, from_r)
        try:
            return _visit(pipe, url, width, height, timeout)
        finally:
            with contextlib.suppress(RuntimeError, TimeoutError, OSError):
                pipe.call("Browser.close", timeout=10)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_w)
            os.close(from_r)


def _visit(pipe: _Pipe, url: str, width: int, height: int, timeout: float) -> PageResult:
    target = pipe.call("Target.createTarget", url="about:blank", timeout=timeout)["targetId"]
    session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.call(f"{domain}.enable", session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1, mobile=False
    )
    pipe.events.clear()
    nav = pipe.call("Page.navigate", session, url=url)
    if nav.get("errorText"):
        raise RuntimeError(f"cannot open {url}: {nav['errorText']}")
    pipe.wait_event("Page.loadEventFired", timeout)
    counts = pipe.call(
        "Runtime.evaluate",
        session,
        expression="JSON.stringify([document.images.length,"
        " Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length, document.title])",
        returnByValue=True,
    )
    images, broken, title = orjson.loads(counts["result"]["value"])
    shot = pipe.call("Page.captureScreenshot", session, format="png", timeout=timeout)
    result = PageResult(images=images, broken_images=broken, title=title, screenshot=base64.b64decode(shot["data"]))
    for e in pipe.events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            result.console_errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            result.console_errors.append(f"exception: {details.get('exception', {}).get('description', details)}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            result.console_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            result.requests.append(params.get("request", {}).get("url", ""))
    return result
