"""Running the real `nkod` and `nkoctl` binaries against a throw-away data directory."""

from __future__ import annotations

import collections
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def binary(name: str) -> str:
    """The console script installed next to this Python (the venv's), else on PATH."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed (pip install -e .)")
    return found


def env(**extra: str) -> dict[str, str]:
    """Environment for the binaries: the repo on PYTHONPATH (for tests.processors), no systemd vars."""
    e = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "JOURNAL_STREAM",
            "NKOD_DATA_DIR",
            "STATE_DIRECTORY",
            "NKOD_CONFIG",
            "NKOD_FAILPOINT",
        )
    }
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(extra)
    return e


class DataDir:
    """A data directory with a manifest and a config that uses tests.processors:process."""

    def __init__(self, root: Path, **daemon: Any) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root.parent / f"{root.name}.toml"
        settings = {
            "processor": "tests.processors:process",
            "backoff_initial": 0.2,
            "backoff_max": 2.0,
            "stop_grace": 10.0,
            "views_interval": 0.2,
            "rescan_interval": 0.5,
            **daemon,
        }
        lines = ["[daemon]"]
        for key, value in settings.items():
            lines.append(f"{key} = {value!r}".replace("'", '"'))
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def log(self) -> Path:
        return self.root / "events.jsonl"

    def manifest(self, videos: Iterable[Mapping[str, Any]], append: bool = False) -> None:
        mode = "ab" if append else "wb"
        with open(self.root / "videos.jsonl", mode) as f:
            for v in videos:
                f.write(orjson.dumps({"path": "none.mp4", **v}) + b"\n")

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_bytes().split(b"\n"):
            if line:
                with contextlib.suppress(orjson.JSONDecodeError):  # a torn tail, if the test made one
                    out.append(orjson.loads(line))
        return out

    def types(self, video_id: str | None = None) -> list[str]:
        return [e["type"] for e in self.events() if video_id is None or e.get("video_id") == video_id]

    def completed_count(self) -> collections.Counter[str]:
        return collections.Counter(e["video_id"] for e in self.events() if e["type"] == "video_completed")

    def nkod_args(self, *extra: str) -> list[str]:
        return [
            binary("nkod"),
            "--data-dir",
            str(self.root),
            "--config",
            str(self.config),
            "--log-format",
            "plain",
            *extra,
        ]

    def run(self, *extra: str, timeout: float = 120, **env_extra: str) -> subprocess.CompletedProcess[str]:
        """Run `nkod ... --once` to the end."""
        return subprocess.run(
            self.nkod_args("--once", *extra), capture_output=True, text=True, timeout=timeout, env=env(**env_extra)
        )

    def start(self, *extra: str, **env_extra: str) -> subprocess.Popen[str]:
        """Start `nkod` (no --once) in the background; stdout/stderr to files in the data dir's parent."""
        out = open(self.root.parent / f"{self.root.name}.out", "a")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(
            self.nkod_args(*extra), stdout=out, stderr=subprocess.STDOUT, text=True, env=env(**env_extra)
        )

    def output_text(self) -> str:
        p = self.root.parent / f"{self.root.name}.out"
        return p.read_text() if p.exists() else ""

    def ctl(self, *args: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary("nkoctl"), "--data-dir", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env(COLUMNS="200"),
            input=input,
        )

    def status(self) -> dict[str, Any]:
        r = self.ctl("status", "--json")
        assert r.returncode == 0, r.stderr
        doc: dict[str, Any] = orjson.loads(r.stdout)
        return doc


def processes_under(directory: Path) -> list[int]:
    """PIDs whose working directory is inside `directory` (workers run with cwd = their work dir)."""
    pids = []
    prefix = str(directory.resolve())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd").startswith(prefix):
                    pids.append(int(entry.name))
    return pids


def wait_for(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def stop_now(proc: subprocess.Popen[str]) -> int:
    """Stop a running nkod at once: SIGTERM twice (the second skips the grace period); its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


# Peak memory of a command. ru_maxrss from wait4 on our own child is useless here: the kernel carries the
# forking process's high-water mark across exec, so it reports pytest's size when pytest is the bigger one.
# A small Python in between forks the command; its RUSAGE_CHILDREN then holds only the command's own peak.
_PEAK_WRAPPER = """
import os, resource, subprocess, sys
report = sys.argv[1]
proc = subprocess.Popen(sys.argv[2:])
with open(report + ".pid", "w") as f:
    f.write(str(proc.pid))
code = proc.wait()
with open(report, "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code if code >= 0 else 128 - code)
"""


def _vm_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_with_peak_rss(
    args: list[str], *, limit_kib: int | None = None, timeout: float = 60, environ: Mapping[str, str] | None = None
) -> tuple[int, str, int]:
    """Run `args` to the end: (exit code, stdout+stderr, peak RSS in KiB of that process alone).

    With `limit_kib`, the command is killed (and AssertionError raised) once its RSS passes that, so a
    runaway allocation fails the test instead of the machine."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as out:
        report = os.path.join(tmp, "peak")
        proc = subprocess.Popen(
            [sys.executable, "-c", _PEAK_WRAPPER, report, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(environ) if environ is not None else env(),
        )
        deadline = time.monotonic() + timeout
        child = 0
        while proc.poll() is None:
            if not child and os.path.exists(report + ".pid"):
                with contextlib.suppress(ValueError, OSError):
                    child = int(Path(report + ".pid").read_text())
            seen = _vm_kib(child, "VmHWM") if child else 0
            if (limit_kib is not None and seen > limit_kib) or time.monotonic() > deadline:
                for pid in (child, proc.pid):
                    if pid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                proc.wait()
                out.seek(0)
                raise AssertionError(f"stopped at {seen} KiB (limit {limit_kib}, {timeout} s): {out.read()[-3000:]}")
            time.sleep(0.05)
        out.seek(0)
        return proc.returncode, out.read(), int(Path(report).read_text())


def add_config_table(d: DataDir, name: str, values: Mapping[str, Any]) -> None:
    """Append a `[name]` table to the data dir's config (strings and lists of strings as JSON, which
    TOML reads the same)."""
    lines = [f"\n[{name}]"]
    for key, value in values.items():
        lines.append(f"{key} = {orjson.dumps(value).decode()}")
    with open(d.config, "a") as f:
        f.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def service_data_dir(prefix: str) -> Iterator[tuple[DataDir, pwd.struct_passwd]]:
    """A data dir like systemd's StateDirectory: owned by the unprivileged user `nobody`, mode 2770, under a
    fresh /tmp dir that user can reach. Skips where the test cannot act as root and run nkod as `nobody`."""
    import pytest  # only the tests that need a service dir pull pytest's skip in here

    if os.geteuid() != 0:
        pytest.skip("needs root to act as root and run nkod as another user")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run nkod as another user")
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run nkod as")
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    base.chmod(0o755)  # pytest's tmp dirs are root-only; the service user must reach its data dir
    try:
        d = DataDir(base / "data")
        d.config.chmod(0o644)
        os.chown(d.root, user.pw_uid, user.pw_gid)
        d.root.chmod(0o2770)
        yield d, user
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_mount(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """mount/umount, never raising: the caller decides what a refusal means."""
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@contextlib.contextmanager
def small_tmpfs(mnt: Path, size: str, why: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "4m") mounted at `mnt` (made here), unmounted after; the test is skipped,
    saying `why` it needs one, when this is not root or may not mount."""
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip(f"needs root to mount a small tmpfs ({why})")
    r = run_mount(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)])
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        run_mount(["mount", "-o", "remount,rw", str(mnt)])  # a test may have left it read-only
        if run_mount(["umount", str(mnt)]).returncode != 0:
            run_mount(["umount", "-l", str(mnt)])


def format3_row(video: Any) -> bytes:
    """A format-3 snapshot row as nkod wrote it: the Video's fields in order, or only its id when the rest are
    defaults."""
    from nkod.state import Video

    if video == Video(video.video_id):
        return orjson.dumps([video.video_id])
    return orjson.dumps(video[:], default=dict)


def format3_snapshot(state: Any, **head: Any) -> bytes:
    """A format-3 snapshot of `state`, as nkod wrote it before format 4: one row per line (`head`: more keys
    of its first line's document, e.g. head_crc)."""
    import zlib

    from nkod import snapshot, views
    from nkod.state import Video

    doc = snapshot._state_doc(state)
    body = orjson.dumps(list(state.videos)) + b"\n" + b"".join(format3_row(v) + b"\n" for v in state.videos.values())
    first = orjson.dumps(
        {
            "v": 3,
            "state": doc,
            "summary": views.summary(state.videos.values()),
            "body_crc": f"{zlib.crc32(body):08x}",
            "fields": list(Video._fields),
            **head,
        }
    )
    return b'{"crc":"%08x","doc":%s}\n%s' % (zlib.crc32(first), first, body)
