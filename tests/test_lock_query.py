"""Who holds the lock, as status asks it: the holder's POSIX lock on nkod.lock (F_GETLK) names a running
nkod, and a stopped or killed one is known gone when no POSIX lock is held and the PID in nkod.lock is no
living process's, both without reading /proc/locks (whose first read waits for an RCU grace period);
anything else is no answer: /proc/locks decides, as before."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from nkod import proclocks, statusfast
from tests.helpers import DataDir, env, kill9, stop_now, wait_for

# nkoctl's entry point (what the console script runs), in a process that counts its opens of /proc/locks
# (an audit hook: every open() and os.open() raises the "open" event), the prefetch thread's included.
COUNTING_NKOCTL = """
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(1) if event == "open" and args[0] == "/proc/locks" else None)
from nkod import proclocks
from nkod.ctl import main
code = main(sys.argv[1:])
if proclocks._early is not None:  # a read begun in a thread and never used: let it end, so it is counted
    proclocks.read()
sys.stderr.write(f"\\nproc_locks_opened={len(opened)}\\n")
sys.exit(code)
"""


def status_and_reads(d: DataDir) -> tuple[dict[str, Any], int]:
    """`nkoctl status --json`'s document and how many times it opened /proc/locks."""
    r = subprocess.run(
        [sys.executable, "-c", COUNTING_NKOCTL, "--data-dir", str(d.root), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
    )
    assert r.returncode == 0, r.stderr
    opened = int(r.stderr.rsplit("proc_locks_opened=", 1)[1])
    doc: dict[str, Any] = orjson.loads(r.stdout)
    return doc, opened


def started(d: DataDir) -> bool:
    return any(e["type"] == "video_started" for e in d.events())


@pytest.fixture
def d(tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "v01", "sleep": 30}])
    return d


def test_a_running_nkod_is_named_by_status_without_reading_proc_locks(d: DataDir) -> None:
    """nkod running: status names its PID from the POSIX lock on nkod.lock, and never opens /proc/locks."""
    nkod = d.start()
    try:
        wait_for(lambda: started(d), what="v01 to start")
        doc, opened = status_and_reads(d)
        assert (doc["daemon_running"], doc["daemon_pid"]) == (True, nkod.pid)
        assert opened == 0
    finally:
        stop_now(nkod)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_nkod_lock_put_back_by_nkod_names_it_again_without_proc_locks(d: DataDir, how: str) -> None:
    """nkod.lock deleted (or replaced by another file) while nkod runs: nkod puts it back with its POSIX lock,
    and status names nkod's PID again from that, without /proc/locks."""
    nkod = d.start()
    try:
        wait_for(lambda: started(d), what="v01 to start")
        lock_file = d.root / "nkod.lock"
        if how == "deleted":
            lock_file.unlink()
        else:
            (d.root / "other.lock").write_text("12345\n")
            os.replace(d.root / "other.lock", lock_file)
        wait_for(lambda: "lock_file_changed" in d.output_text(), what="nkod to put nkod.lock back")
        wait_for(lambda: proclocks.posix_holder(str(lock_file)) == nkod.pid, timeout=10, what="its POSIX lock")
        doc, opened = status_and_reads(d)
        assert (doc["daemon_running"], doc["daemon_pid"]) == (True, nkod.pid)
        assert opened == 0
    finally:
        stop_now(nkod)


def test_a_stopped_nkod_is_not_running_without_reading_proc_locks(d: DataDir) -> None:
    """nkod stopped: status says not running, from nkod.lock alone (no POSIX lock on it, and the PID it names
    is no living process's), without opening /proc/locks."""
    nkod = d.start()
    wait_for(lambda: started(d), what="v01 to start")
    assert stop_now(nkod) == 0
    assert proclocks.posix_answer(str(d.root / "nkod.lock")) == proclocks.EXITED
    doc, opened = status_and_reads(d)
    assert (doc["daemon_running"], doc["daemon_pid"]) == (False, None)
    assert opened == 0


def test_a_lock_file_naming_a_living_process_is_no_answer_proc_locks_decides(d: DataDir) -> None:
    """nkod.lock names a process that is alive but holds no POSIX lock (as an older nkod would): that is not
    taken for "nobody"; /proc/locks decides (here: nobody holds the flocks, so not running)."""
    (d.root / "nkod.lock").write_text(f"{os.getpid()}\n")
    assert proclocks.posix_answer(str(d.root / "nkod.lock")) is None
    doc, opened = status_and_reads(d)
    assert (doc["daemon_running"], doc["daemon_pid"]) == (False, None)
    assert opened == 1


def test_a_killed_nkod_is_not_running_without_reading_proc_locks(d: DataDir) -> None:
    """nkod killed with SIGKILL (its PID still in nkod.lock, its snapshot behind the log, as after a crash):
    status says not running, from nkod.lock alone, without opening /proc/locks."""
    first = d.start()  # a first run leaves a snapshot (status's fast path needs one; without, the full path)
    wait_for(lambda: started(d), what="v01 to start")
    assert stop_now(first) == 0
    nkod = d.start()
    wait_for(lambda: sum(e["type"] == "video_started" for e in d.events()) == 2, what="v01 to start again")
    kill9(nkod)
    assert (d.root / "nkod.lock").read_text().strip() == str(nkod.pid)
    doc, opened = status_and_reads(d)
    assert (doc["daemon_running"], doc["daemon_pid"]) == (False, None)
    assert opened == 0  # its PID is no living process's: nkod.lock answers


def test_a_killed_nkod_is_not_running_by_status_s_full_path_too(d: DataDir) -> None:
    """Killed before its events.crc vouched for its last append (here: the record removed), status cannot
    take its fast path (the head would have to be read) and reads the log in full: it still says not
    running from nkod.lock alone, as the fast path does, without opening /proc/locks."""
    first = d.start()
    wait_for(lambda: started(d), what="v01 to start")
    assert stop_now(first) == 0
    nkod = d.start()
    wait_for(lambda: sum(e["type"] == "video_started" for e in d.events()) == 2, what="v01 to start again")
    kill9(nkod)
    (d.root / "events.crc").unlink()
    with pytest.raises(statusfast.Fallback, match="the head would have to be read"):
        statusfast.read(str(d.root))
    doc, opened = status_and_reads(d)
    assert (doc["daemon_running"], doc["daemon_pid"]) == (False, None)
    assert opened == 0


HOLD_FLOCKS_ONLY = """
import fcntl, os, sys
root = sys.argv[1]
dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
fd = os.open(os.path.join(root, "nkod.lock"), os.O_RDWR | os.O_CREAT, 0o664)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, f"{os.getpid()}\\n".encode())
print("held", flush=True)
sys.stdin.read()
"""

HOLD_POSIX_ONLY = """
import fcntl, os, sys
fd = os.open(os.path.join(sys.argv[1], "nkod.lock"), os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def holding(script: str, d: DataDir) -> Any:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(d.root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_holder_without_a_posix_lock_is_still_named_through_proc_locks(d: DataDir) -> None:
    """A holder that flocks the directory and nkod.lock but takes no POSIX lock (an nkod from before it):
    status still names it, from /proc/locks."""
    with holding(HOLD_FLOCKS_ONLY, d) as pid:
        doc, opened = status_and_reads(d)
        assert (doc["daemon_running"], doc["daemon_pid"]) == (True, pid)
        assert opened == 1


def test_a_posix_lock_by_a_process_other_than_the_one_in_nkod_lock_names_nobody(d: DataDir) -> None:
    """A process holding only a POSIX lock on nkod.lock, whose PID is not the one written in it, is not taken
    for the holder: /proc/locks decides (nobody holds the flocks: not running)."""
    (d.root / "nkod.lock").write_text("1\n")
    with holding(HOLD_POSIX_ONLY, d):
        doc, opened = status_and_reads(d)
        assert (doc["daemon_running"], doc["daemon_pid"]) == (False, None)
        assert opened == 1
