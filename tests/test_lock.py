"""The daemon lock: one holder, named by PID; never stale after the holder dies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nkod import lock
from nkod.errors import LockHeldError

HOLD = (
    "import sys, time, pathlib; from nkod import lock; held = lock.acquire(pathlib.Path(sys.argv[1])); "
    "print('held', flush=True); time.sleep(60)"
)


def test_a_held_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """Second acquire fails with the first holder's PID (from /proc/locks)."""
    root = tmp_path
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert lock.holder_pid(root) == holder.pid
        with pytest.raises(LockHeldError, match=f"PID {holder.pid}"):
            lock.acquire(root)
    finally:
        holder.kill()
        holder.wait()
    # killed: the kernel released it
    deadline = time.monotonic() + 5
    while lock.holder_pid(root) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    held = lock.acquire(root)
    assert lock.holder_pid(root) == os.getpid()
    assert (root / "nkod.lock").read_text().strip() == str(os.getpid())
    held.release()
    assert lock.holder_pid(root) is None


def test_nobody_holds_a_missing_lock(tmp_path: Path) -> None:
    """No data directory, or nobody locking it: no holder."""
    assert lock.holder_pid(tmp_path / "nope") is None
    assert lock.holder_pid(tmp_path) is None
