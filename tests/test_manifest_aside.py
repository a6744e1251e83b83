"""nkoctl plan's manifest read in a child process (manifest.LoadAside): each test names a case the in-process
read got right, which the child must get right too."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nkod import manifest
from tests.helpers import DataDir, binary, env, wait_for


def _big_manifest(d: DataDir, n: int = 30_000) -> None:
    """A manifest over 1 MiB: nkoctl plan reads it in a child process (manifest.LoadAside)."""
    d.manifest([{"video_id": f"v{i}", "path": f"videos/some/longer/path/{i:08d}.mp4"} for i in range(n)])
    assert (d.root / "videos.jsonl").stat().st_size > 1 << 20


def _ignore_sigchld() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def test_plan_of_a_big_manifest_started_with_sigchld_ignored_prints_the_plan(tmp_path: Path) -> None:
    """nkoctl plan started by a parent that ignores SIGCHLD (inherited across exec: its children are reaped
    by the kernel, so waitpid fails with ECHILD) prints the same plan, not a ChildProcessError traceback."""
    d = DataDir(tmp_path / "data")
    _big_manifest(d)
    argv = [binary("nkoctl"), "--data-dir", str(d.root), "plan", "--json"]
    expected = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env())
    assert expected.returncode == 0, expected.stderr
    got = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env(), preexec_fn=_ignore_sigchld)
    assert (got.returncode, got.stderr) == (0, expected.stderr)
    assert got.stdout == expected.stdout


def _child_exited(pid: int) -> bool:
    """Whether child `pid` has exited (a zombie, not yet waited for)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"


def test_a_manifest_line_appended_after_the_child_read_it_is_in_the_result(tmp_path: Path) -> None:
    """LoadAside.result() gives the manifest as load() would read it then, not as the child read it before:
    plan reads the log meanwhile, and a line appended (and added by the daemon to the log) in between
    must not show as "removed: not in the manifest any more"."""
    path = tmp_path / "videos.jsonl"
    path.write_bytes(b"".join(b'{"video_id":"v%d","path":"a.mp4"}\n' % i for i in range(1000)))
    read = manifest.LoadAside(path, min_bytes=0)
    children = [int(pid) for pid in Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()]
    assert len(children) == 1, "no child process"
    wait_for(lambda: _child_exited(children[0]), what="the child read the manifest")
    with open(path, "ab") as f:
        f.write(b'{"video_id":"late","path":"a.mp4"}\n')
    m = read.result()
    assert "late" in m.entries
    assert list(m.entries) == list(manifest.load(path).entries)


def test_a_manifest_rewritten_in_place_after_the_child_read_it_is_read_again(tmp_path: Path) -> None:
    """The same for a manifest rewritten (another file renamed over it) once the child had read it."""
    path = tmp_path / "videos.jsonl"
    path.write_bytes(b"".join(b'{"video_id":"v%d","path":"a.mp4"}\n' % i for i in range(1000)))
    read = manifest.LoadAside(path, min_bytes=0)
    children = [int(pid) for pid in Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()]
    wait_for(lambda: _child_exited(children[0]), what="the child read the manifest")
    new = tmp_path / "videos.jsonl.new"
    new.write_bytes(b"".join(b'{"video_id":"w%d","path":"a.mp4"}\n' % i for i in range(1000)))
    os.rename(new, path)
    assert list(read.result().entries) == [f"w{i}" for i in range(1000)]


def test_a_child_whose_result_is_not_wanted_is_killed_and_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When plan gives up (its log is damaged, Ctrl+C), `discard` stops the child at once instead of waiting
    for its read to end, and reaps it: no child is left behind holding plan's output open."""
    path = tmp_path / "videos.jsonl"
    path.write_bytes(b'{"video_id":"v","path":"x.mp4"}\n' * 100)

    def slow_load(p: Path) -> manifest.Manifest:  # the forked child runs this: a read that takes a minute
        time.sleep(60)
        raise AssertionError("not reached")

    monkeypatch.setattr(manifest, "load", slow_load)
    aside = manifest.LoadAside(path, min_bytes=1)
    pid = aside._pid
    assert pid is not None
    t0 = time.monotonic()
    aside.discard()
    assert time.monotonic() - t0 < 20
    assert not Path(f"/proc/{pid}").exists()  # reaped
