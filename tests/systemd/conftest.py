"""Fixtures for the systemd tests: one box per test module, a clean nkod service per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.systemd.box import DATA, DROPIN_DIR, Box, Service, booted, build_venv, skip_reason


@pytest.fixture(scope="session")
def service_venv() -> Path:
    """The venv the unit runs, built once per session (deps cached while pyproject.toml is unchanged)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    return build_venv()


@pytest.fixture(scope="module")
def box(service_venv: Path) -> Iterator[Box]:
    """A real systemd 252 with the shipped unit installed; torn down however the tests end."""
    with booted(service_venv, name=f"nkodtest-{os.getpid()}") as b:
        yield b


@pytest.fixture
def nkod(box: Box) -> Iterator[Service]:
    """The nkod unit, stopped, with an empty data dir and no per-test drop-in; stopped again afterwards."""
    box.sh(
        f"""
        systemctl stop nkod.service || true
        systemctl reset-failed nkod.service 2>/dev/null || true
        rm -rf {DATA} {DROPIN_DIR}/50-case.conf
        install -d -m 0755 {DATA}
        systemctl daemon-reload
        """
    )
    svc = Service(box)
    svc.mark_journal()
    svc.set_config()
    yield svc
    svc.systemctl("stop", "nkod.service", check=False, timeout=120)
