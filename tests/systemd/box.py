"""A real systemd for the systemd tests: `../shared/tools/sdbox.sh` (systemd 252 in a throw-away
systemd-nspawn container over a RAM overlay of this machine's root), plus the pieces the tests need:

- a venv with nkod installed from this checkout, built with ``/usr/bin/python3`` at ``/opt/nkod-test/venv``
  on the host and bound read-only at ``/opt/nkod/venv`` in the box, where the shipped unit expects it;
- the checkout's ``tests/`` bound at ``/opt/nkod-tests/tests`` so that ``tests.processors:process`` imports
  (the test drop-in sets ``PYTHONPATH=/opt/nkod-tests``; nkod itself comes from the venv, as installed);
- the shipped unit and sysusers file installed in the box as a packager would.

Everything written in the box lives in RAM and is gone after ``down``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]  # the checkout
SDBOX = ROOT.parent / "shared" / "tools" / "sdbox.sh"
UNIT = ROOT / "packaging" / "systemd" / "nkod.service"
SYSUSERS = ROOT / "packaging" / "systemd" / "nkod.sysusers"
HOST_VENV = Path(os.environ.get("NKOD_TEST_VENV", "/opt/nkod-test/venv"))
SYSTEM_PYTHON = Path("/usr/bin/python3")

BOX_VENV = "/opt/nkod/venv"  # where the shipped unit's ExecStart looks
BOX_TESTS = "/opt/nkod-tests"  # PYTHONPATH root holding tests/ (for tests.processors)
DATA = "/var/lib/nkod"  # StateDirectory=nkod
CONFIG = "/etc/nkod/nkod.toml"  # the unit's NKOD_CONFIG
DROPIN_DIR = "/etc/systemd/system/nkod.service.d"
OPERATOR = "opal"  # a person in group nkod, not root

# The only drop-in the tests add to the shipped unit: where the test processor lives, and shorter
# waits so the module stays quick. Nothing here touches identity, sandboxing or the kill logic.
TEST_DROPIN = f"""\
[Service]
Environment=PYTHONPATH={BOX_TESTS}
WatchdogSec=4s
RestartSec=1s
"""
TEST_DROPIN_KEYS = {"Environment", "WatchdogSec", "RestartSec", "TimeoutStopSec"}

TEST_PROCESSOR = "tests.processors:process"


def skip_reason() -> str | None:
    """Why the box cannot run here, or None."""
    if sys.platform != "linux":
        return "systemd tests need Linux"
    if os.geteuid() != 0:
        return "systemd tests need root: sdbox.sh boots systemd in a systemd-nspawn container"
    if not SDBOX.is_file():
        return f"{SDBOX} not found (shared/tools/ is expected beside the checkout)"
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn missing: apt-get install -y --no-install-recommends systemd-container"
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} missing: the service venv must be built from the system Python"
    return None


# -- the venv ---------------------------------------------------------------------------------------
def _deps_stamp() -> str:
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + version.encode()).hexdigest()


def _pip(venv: Path, *args: str) -> None:
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def build_venv(venv: Path = HOST_VENV) -> Path:
    """nkod installed from this checkout into a venv of the system Python, as the README's systemd section says.

    Dependencies are kept between sessions while pyproject.toml is unchanged; nkod itself is reinstalled
    from the checkout every time, so the service runs the code under test.
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".build.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        stamp_file = venv / ".nkod-test-deps"
        stamp = _deps_stamp()
        fresh = not (stamp_file.exists() and stamp_file.read_text() == stamp)
        if fresh:
            shutil.rmtree(venv, ignore_errors=True)
            made = subprocess.run(
                [str(SYSTEM_PYTHON), "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300
            )
            if made.returncode != 0:
                raise RuntimeError(
                    f"{SYSTEM_PYTHON} -m venv failed (Debian: apt-get install python3-venv):\n{made.stderr}"
                )
            _pip(venv, str(ROOT))
            stamp_file.write_text(stamp)
        else:
            _pip(venv, "--no-deps", "--force-reinstall", str(ROOT))
    return venv


# -- the box ----------------------------------------------------------------------------------------
@dataclass
class Box:
    """One running sdbox container; commands run inside it as root through ``sdbox.sh exec``."""

    name: str
    workdir: Path
    binds: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SDBOX_NAME"] = self.name
        env["SDBOX_DIR"] = str(self.workdir)
        env["SDBOX_NSPAWN_ARGS"] = " ".join(self.binds)
        env["SDBOX_MAXLIFE"] = "900"
        return env

    def up(self) -> None:
        done = subprocess.run(["bash", str(SDBOX), "up"], env=self.env, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            console = self.workdir / "state" / "console.log"
            tail = console.read_text(errors="replace")[-3000:] if console.exists() else ""
            raise RuntimeError(f"sdbox.sh up failed ({done.returncode}):\n{done.stderr}\n--- console:\n{tail}")

    def down(self) -> None:
        """Halt the box; then remove its work dir (its mounts lived in the box's own namespace)."""
        done = subprocess.run(["bash", str(SDBOX), "down"], env=self.env, capture_output=True, text=True, timeout=120)
        mnt = self.workdir / "mnt"
        if done.returncode == 0 and not any(os.path.ismount(mnt / d) for d in ("root", "ovl")):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", str(SDBOX), "exec", *argv],
            env=self.env | {"SX_TIMEOUT": str(int(timeout))},
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout + 15,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"in the box, {' '.join(argv)!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def sh(self, script: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("/bin/sh", "-ec", script, check=check, timeout=timeout)

    def write(self, path: str, text: str, owner: str = "root:root", mode: str = "0644") -> None:
        """Write a file in the box atomically (temp + rename), so a watcher never sees half of it."""
        tmp = f"{path}.tmp-{os.getpid()}"
        self.run(
            "/bin/sh",
            "-ec",
            f'cat > "{tmp}"; chown {owner} "{tmp}"; chmod {mode} "{tmp}"; mv -f "{tmp}" "{path}"',
            stdin=text,
        )

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout


@dataclass
class Service:
    """The nkod unit in the box, seen the way an operator sees it: systemctl, journalctl, the data dir."""

    box: Box
    cursor: str = ""  # journal position at the start of the test

    # -- systemctl ----------------------------------------------------------------------------------
    def systemctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.box.run("systemctl", *args, check=check, timeout=timeout)

    def prop(self, name: str) -> str:
        return self.systemctl("show", "-p", name, "--value", "nkod.service").stdout.strip()

    def main_pid(self) -> int:
        return int(self.prop("MainPID") or 0)

    def active(self) -> bool:
        return self.prop("ActiveState") == "active"

    # -- journal --------------------------------------------------------------------------------------
    def mark_journal(self) -> None:
        out = self.box.run("journalctl", "-n", "0", "--show-cursor", "--no-pager", "-q").stdout
        match = re.search(r"-- cursor: (\S+)", out)
        self.cursor = match.group(1) if match else ""

    def _journal_args(self) -> list[str]:
        args = ["journalctl", "-u", "nkod.service", "--no-pager"]
        if self.cursor:
            args.append(f"--after-cursor={self.cursor}")
        return args

    def journal(self) -> str:
        """This test's journal of the unit: systemd's lines and the daemon's, message text only."""
        return self.box.run(*self._journal_args(), "-o", "cat").stdout

    def journal_records(self) -> list[dict[str, Any]]:
        out = self.box.run(*self._journal_args(), "-o", "json").stdout
        return [orjson.loads(line) for line in out.splitlines() if line.strip()]

    # -- the data dir ---------------------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        done = self.box.run("cat", f"{DATA}/events.jsonl", check=False)
        return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip().endswith("}")]

    def completed(self) -> Counter[str]:
        """How many times each video was completed, from the log."""
        return Counter(e["video_id"] for e in self.events() if e["type"] == "video_completed")

    def of_type(self, kind: str, video_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["type"] == kind and (video_id is None or e.get("video_id") == video_id)]

    def set_config(self, **daemon: Any) -> None:
        lines = ["[daemon]", f'processor = "{TEST_PROCESSOR}"']
        lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in daemon.items()]
        self.box.write(CONFIG, "\n".join(lines) + "\n")

    def set_manifest(self, videos: Sequence[Mapping[str, Any]]) -> None:
        text = "".join(orjson.dumps({"path": "/dev/null", **v}).decode() + "\n" for v in videos)
        self.box.write(f"{DATA}/videos.jsonl", text, owner="nkod:nkod", mode="0660")

    def add_dropin(self, text: str) -> None:
        self.box.write(f"{DROPIN_DIR}/50-case.conf", text)
        self.systemctl("daemon-reload")

    # -- waiting --------------------------------------------------------------------------------------
    def wait_for(self, what: str, predicate: Callable[[], object], timeout: float = 30.0) -> None:
        """Poll until predicate() is true; on timeout fail with the journal, which says what happened."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if predicate():
                    return
            except (AssertionError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for: {what}\n--- journal:\n{self.journal()}"
                )
            time.sleep(0.2)

    def wait_started(self, video_id: str, timeout: float = 30.0) -> None:
        self.wait_for(f"{video_id} started", lambda: self.of_type("video_started", video_id), timeout)

    def wait_all_completed(self, ids: list[str], timeout: float = 60.0) -> Counter[str]:
        self.wait_for(f"all of {ids} completed", lambda: set(ids) <= set(self.completed()), timeout)
        return self.completed()

    def wait_restarted(self, old_pid: int, timeout: float = 30.0) -> int:
        self.wait_for(
            f"a new main process replacing PID {old_pid}",
            lambda: self.main_pid() not in (0, old_pid) and self.prop("SubState") == "running",
            timeout,
        )
        return self.main_pid()


@contextlib.contextmanager
def booted(venv: Path, name: str) -> Iterator[Box]:
    """Boot a box with the venv and tests bound in, the unit installed; always torn down."""
    box = Box(
        name=name,
        workdir=Path(tempfile.mkdtemp(prefix=f"sdbox-{name}-", dir="/var/tmp")),
        binds=[
            f"--bind-ro={venv}:{BOX_VENV}",
            f"--bind-ro={venv}",  # the venv's scripts name their Python by the path it was built at
            f"--bind-ro={ROOT / 'tests'}:{BOX_TESTS}/tests",
            f"--bind-ro={UNIT.parent}:/opt/nkod-packaging",
        ],
    )
    try:
        box.up()
        box.sh(
            f"""
            install -m 0644 /opt/nkod-packaging/nkod.sysusers /usr/lib/sysusers.d/nkod.conf
            systemd-sysusers
            install -m 0644 /opt/nkod-packaging/nkod.service /etc/systemd/system/nkod.service
            install -d -m 0755 {DROPIN_DIR} /etc/nkod
            id -u {OPERATOR} >/dev/null 2>&1 || useradd --no-create-home --groups nkod {OPERATOR}
            systemctl daemon-reload
            """
        )
        box.write(f"{DROPIN_DIR}/10-test.conf", TEST_DROPIN)
        box.run("systemctl", "daemon-reload")
        yield box
    finally:
        box.down()


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze on the host; removes the timestamp file it leaves in /run when it made it."""
    stamp = Path("/run/systemd/systemd-units-load")
    had = stamp.exists()
    try:
        return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    finally:
        if not had and os.geteuid() == 0:
            stamp.unlink(missing_ok=True)
