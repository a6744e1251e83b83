"""sd_notify from the real daemon, read off a real unix datagram socket as systemd would."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from nkod.notify import Notifier
from tests.helpers import DataDir, env


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_watchdog_pings_every_third_of_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """With WATCHDOG_USEC=3 s, WATCHDOG=1 goes out at most once a second, from whoever calls watchdog()."""
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    sent: list[str] = []
    clock = FakeClock()
    n = Notifier(sent.append, clock=clock)
    for t in (1.0, 1.5, 2.0, 2.9, 3.1):
        clock.t = t
        n.watchdog()
    assert sent == ["WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"]


def test_no_watchdog_without_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not under a watchdog: nothing is sent."""
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    sent: list[str] = []
    Notifier(sent.append).watchdog()
    assert sent == []


def test_status_is_sent_only_when_it_changes() -> None:
    """Repeating the same STATUS= is not sent again."""
    sent: list[str] = []
    n = Notifier(sent.append)
    n.status("a")
    n.status("a")
    n.status("b")
    assert sent == ["STATUS=a", "STATUS=b"]


def receive_all(sock: socket.socket, until: float) -> list[str]:
    got = []
    while time.monotonic() < until:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        except BlockingIOError:
            time.sleep(0.05)
    return got


def test_daemon_notifies_ready_status_watchdog_stopping_and_extend(tmp_path: Path) -> None:
    """READY=1 after replay, STATUS= progress, WATCHDOG=1, then on SIGTERM STOPPING=1 and EXTEND_TIMEOUT_USEC."""
    d = DataDir(tmp_path / "data", stop_grace=5.0)
    d.manifest([{"video_id": "a", "sleep": 2.5}])
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    proc = subprocess.Popen(
        d.nkod_args(),
        env=env(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="600000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        messages = receive_all(sock, time.monotonic() + 1.5)
        proc.send_signal(signal.SIGTERM)
        messages += receive_all(sock, time.monotonic() + 3.5)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        sock.close()
    text = "\n".join(messages)
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    assert "MAINPID=" in messages[ready]
    assert any("STATUS=" in m and "current: a" in m for m in messages)
    assert sum("WATCHDOG=1" in m for m in messages) >= 3
    stopping = next(i for i, m in enumerate(messages) if "STOPPING=1" in m)
    assert stopping > ready
    assert any("EXTEND_TIMEOUT_USEC=" in m for m in messages[stopping:])
    assert "EXTEND_TIMEOUT_USEC" not in "\n".join(messages[:stopping])
    assert d.types("a")[-1] == "video_completed", text
