"""The operator's edges of nkoctl and nkod (issue 12): owners and modes kept by root's repairs, permission
errors that say whose file and how to fix it, text printed literally, typo'd data dirs, raw log lines,
JSON lines from --watch, and help that documents every command."""

from __future__ import annotations

import argparse
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from nkod.ctl.cli import build_parser
from tests.helpers import REPO, DataDir, binary, env, service_data_dir, wait_for

# What yt-dlp's errors look like: rich would take "[youtube]" for a style and "[/path/x]" for a closing tag.
MARKUP_ERROR = "[youtube] xsUrdpKD5wM: Video unavailable; see [/path/x] and [bold]this[/bold]"


# -- running as another user --------------------------------------------------------------------------------


@pytest.fixture
def service_dir() -> Iterator[tuple[DataDir, pwd.struct_passwd]]:
    """A data dir like systemd's StateDirectory (owned by `nobody`, mode 2770) holding a two-line manifest."""
    with service_data_dir("nkod-op-") as (d, user):
        d.manifest([{"video_id": "a"}, {"video_id": "b"}])
        os.chown(d.root / "videos.jsonl", user.pw_uid, user.pw_gid)
        yield d, user


def _as_user(user: pwd.struct_passwd, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`argv` as `user` (no other groups). CAP_DAC_READ_SEARCH only lets it reach this Python under /root;
    writing stays that of `user`, which is what these tests are about."""
    prefix = [
        str(shutil.which("setpriv")),
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
    return subprocess.run(prefix + argv, capture_output=True, text=True, timeout=60, env=env(), cwd="/")


def _damage_middle_line(d: DataDir) -> None:
    lines = d.log.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"type"', b'"tyqe"')  # checksum no longer holds, and good lines follow
    d.log.write_bytes(b"\n".join(lines))


def _other_group(user: pwd.struct_passwd) -> int:
    """A group that is not the user's own (so a kept group is told from the data dir's)."""
    return 100 if user.pw_gid != 100 else 101


def test_root_repair_keeps_the_logs_owner_group_and_mode(service_dir: tuple[DataDir, pwd.struct_passwd]) -> None:
    """sudo nkoctl fsck --repair: events.jsonl keeps owner, group and mode; the backup is the data dir owner's."""
    d, user = service_dir
    r = _as_user(user, d.nkod_args("--once"))
    assert r.returncode == 0, r.stdout + r.stderr
    os.chown(d.log, user.pw_uid, _other_group(user))
    d.log.chmod(0o660)
    _damage_middle_line(d)
    before = d.log.stat()
    r = d.ctl("fsck", "--repair")
    assert r.returncode == 0, r.stderr
    after = d.log.stat()
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (
        before.st_uid,
        before.st_gid,
        stat.S_IMODE(before.st_mode),
    )
    (backup,) = d.root.glob("events.jsonl.bak-*")
    assert (backup.stat().st_uid, backup.stat().st_gid) == (user.pw_uid, user.pw_gid)
    r = _as_user(user, d.nkod_args("--once"))  # the service can still append to what root repaired
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.types()[-1] == "daemon_stopped"


def test_root_reset_archive_belongs_to_the_data_dir_owner(service_dir: tuple[DataDir, pwd.struct_passwd]) -> None:
    """sudo nkoctl reset: archive/ and archive/STAMP are the data dir owner's, so the service can use them."""
    d, user = service_dir
    r = _as_user(user, d.nkod_args("--once"))
    assert r.returncode == 0, r.stdout + r.stderr
    r = d.ctl("reset", "--yes")
    assert r.returncode == 0, r.stderr
    archive = d.root / "archive"
    (stamp,) = archive.iterdir()
    for made in (archive, stamp):
        assert (made.stat().st_uid, made.stat().st_gid) == (user.pw_uid, user.pw_gid), made


def test_daemon_that_may_not_write_its_log_exits_77_naming_file_owner_mode_and_fix(
    service_dir: tuple[DataDir, pwd.struct_passwd],
) -> None:
    """events.jsonl left root's 0644: nkod names the file, owner, mode and the chown to run; exits 77, no traceback."""
    d, user = service_dir
    r = _as_user(user, d.nkod_args("--once"))
    assert r.returncode == 0, r.stdout + r.stderr
    os.chown(d.log, 0, 0)
    d.log.chmod(0o644)
    r = _as_user(user, d.nkod_args("--once"))
    out = r.stdout + r.stderr
    assert r.returncode == 77, out
    assert "Traceback" not in out
    assert "permission_denied" in out
    assert str(d.log) in out and "root:root" in out and "0644" in out
    assert f"chown {user.pw_name}:" in out


def test_unit_does_not_restart_on_exit_77() -> None:
    """The unit lists 77 (EX_NOPERM) in RestartPreventExitStatus=: a permission problem is not a restart loop."""
    unit = (REPO / "packaging" / "systemd" / "nkod.service").read_text()
    (line,) = [ln for ln in unit.splitlines() if ln.startswith("RestartPreventExitStatus=")]
    assert "77" in line.split("=", 1)[1].split()


def test_lock_file_mode_is_named_when_nkoctl_may_not_take_the_lock(
    service_dir: tuple[DataDir, pwd.struct_passwd],
) -> None:
    """nkod.lock root's 0640: reset names the file, its owner/group/mode and the chmod, not a group guess."""
    d, user = service_dir
    r = _as_user(user, d.nkod_args("--once"))
    assert r.returncode == 0, r.stdout + r.stderr
    lock = d.root / "nkod.lock"
    os.chown(lock, 0, 0)
    lock.chmod(0o640)
    r = _as_user(user, [binary("nkoctl"), "--data-dir", str(d.root), "reset", "--yes"])
    assert r.returncode == 1, r.stdout + r.stderr
    err = " ".join(r.stderr.split())  # rich may wrap a long line
    assert "are you in the nkod group" not in err
    assert str(lock) in err and "root:root" in err and "0640" in err
    assert f"chmod ug+rw {lock}" in err
    assert d.log.exists()  # nothing was archived


# -- text from videos and errors is printed literally --------------------------------------------------------


@pytest.fixture
def failed_with_markup(tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "xsUrdpKD5wM", "fail": "permanent", "message": MARKUP_ERROR}, {"video_id": "ok1"}])
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def test_show_prints_error_text_literally(failed_with_markup: DataDir) -> None:
    """show: '[youtube] ID:' and '[/path/x]' in an error are printed as they are (no MarkupError, nothing eaten)."""
    r = failed_with_markup.ctl("show", "xsUrdpKD5wM")
    assert r.returncode == 0, r.stderr
    assert MARKUP_ERROR in r.stdout
    assert r.stdout.count(MARKUP_ERROR) >= 2  # the state's error and the video_failed event's


def test_plan_and_status_print_error_text_literally(failed_with_markup: DataDir) -> None:
    """plan and status show the failed video's error with its brackets."""
    r = failed_with_markup.ctl("plan")
    assert r.returncode == 0, r.stderr
    assert "[youtube] xsUrdpKD5wM:" in r.stdout and "[/path/x]" in r.stdout
    r = failed_with_markup.ctl("status")
    assert r.returncode == 0, r.stderr
    assert MARKUP_ERROR in r.stdout


def test_error_messages_print_paths_literally(tmp_path: Path) -> None:
    """An nkoctl error about a path with brackets prints the path, not a MarkupError traceback."""
    odd = tmp_path / "x[/b][red]"
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(odd), "status"], capture_output=True, text=True, env=env(), timeout=60
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert str(odd) in r.stderr


# -- log and show: raw lines, JSON values, no internal counts -----------------------------------------------


@pytest.fixture
def done(tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "data", max_attempts=2)
    d.manifest([{"video_id": "a", "detection_off": True}, {"video_id": "t", "fail": "transient"}])
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def test_log_json_prints_the_logs_lines_byte_for_byte(done: DataDir) -> None:
    """log --json is the log itself (checksums kept); --video keeps that video's lines unchanged."""
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(done.root), "log", "--json"], capture_output=True, env=env(), timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == done.log.read_bytes()
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(done.root), "log", "--json", "--video", "a", "-n", "50"],
        capture_output=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    wanted = [ln + b"\n" for ln in done.log.read_bytes().split(b"\n") if ln and orjson.loads(ln).get("video_id") == "a"]
    assert r.stdout == b"".join(wanted) and wanted


def test_log_and_show_print_json_values_not_python_reprs(done: DataDir) -> None:
    """Counts print as key=value / JSON, never {'frames': 3}, and nko_detection_off is not shown to people."""
    r = done.ctl("show", "a")
    assert r.returncode == 0, r.stderr
    assert "frames=3" in r.stdout
    r2 = done.ctl("log", "--video", "a")
    assert r2.returncode == 0, r2.stderr
    assert 'counts={"frames":3' in r2.stdout
    for text in (r.stdout, r2.stdout):
        assert "{'" not in text and "nko_detection_off" not in text


def test_status_says_the_attempts_once(done: DataDir) -> None:
    """A video that gave up after its attempts says so once in the status box, not twice."""
    r = done.ctl("status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("after 2 attempts") == 1, r.stdout


# -- typo'd data dirs and missing manifests -------------------------------------------------------------------


def test_nkod_refuses_a_data_dir_that_does_not_exist(tmp_path: Path) -> None:
    """nkod --data-dir TYPO exits 2 naming it, and creates nothing."""
    d = DataDir(tmp_path / "data")
    typo = tmp_path / "dta"
    r = subprocess.run(
        [binary("nkod"), "--data-dir", str(typo), "--config", str(d.config), "--log-format", "plain", "--once"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "data_dir_missing" in r.stdout + r.stderr and str(typo) in r.stdout + r.stderr
    assert not typo.exists()


def test_once_without_a_manifest_is_an_error_naming_where_it_looked(tmp_path: Path) -> None:
    """nkod --once with no videos.jsonl: manifest_missing with its path, exit 2, no log started."""
    d = DataDir(tmp_path / "data")
    r = d.run()
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "manifest_missing" in out and str(d.root / "videos.jsonl") in out
    assert "manifest_line_skipped" not in out
    assert not d.log.exists()


def test_daemon_warns_manifest_missing_with_its_path(tmp_path: Path) -> None:
    """A daemon (no --once) with no manifest warns manifest_missing naming the path, and keeps waiting for it."""
    d = DataDir(tmp_path / "data")
    proc = d.start()
    try:
        wait_for(lambda: "manifest_missing" in d.output_text(), timeout=60, what="manifest_missing")
        assert str(d.root / "videos.jsonl") in d.output_text()
        assert "line=0" not in d.output_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["plan"], ["show", "a"], ["log"], ["metrics"], ["fsck"]],
)
def test_nkoctl_reads_never_create_a_data_dir(tmp_path: Path, args: list[str]) -> None:
    """nkoctl reads on a data dir that does not exist create nothing."""
    missing = tmp_path / "nope"
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(missing), *args], capture_output=True, text=True, env=env(), timeout=60
    )
    assert "Traceback" not in r.stderr
    assert not missing.exists()


@pytest.mark.parametrize("args", [["retry", "a"], ["retry"], ["import-checkpoint", "CHECKPOINT"], ["reset", "--yes"]])
def test_nkoctl_requests_refuse_a_data_dir_that_does_not_exist(tmp_path: Path, args: list[str]) -> None:
    """retry, import-checkpoint and reset on a missing data dir fail naming it, and create nothing."""
    checkpoint = tmp_path / "extraction_checkpoint.json"
    checkpoint.write_bytes(orjson.dumps({"completed_videos": ["a"], "failed_videos": []}))
    args = [str(checkpoint) if a == "CHECKPOINT" else a for a in args]
    missing = tmp_path / "nope"
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(missing), *args], capture_output=True, text=True, env=env(), timeout=60
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no such data directory" in r.stderr and str(missing) in r.stderr
    assert not missing.exists()


# -- status --watch piped, Ctrl+C --------------------------------------------------------------------------


_pending: dict[int, bytes] = {}  # per process: what was read from its stdout past the last line returned


def _line_within(proc: subprocess.Popen[bytes], seconds: float) -> bytes:
    """The next line of `proc`'s stdout, failing the test if none comes within `seconds`. Read straight from
    the pipe: a buffered reader could hold the next lines where select() cannot see them."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    got = _pending.pop(proc.pid, b"")
    deadline = time.monotonic() + seconds
    while b"\n" not in got:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        assert ready and left > 0, f"no output within {seconds}s"
        chunk = os.read(fd, 65536)
        assert chunk, "stdout closed"
        got += chunk
    line, _, rest = got.partition(b"\n")
    _pending[proc.pid] = rest
    return line + b"\n"


def _output_until(proc: subprocess.Popen[bytes], wanted: bytes, seconds: float) -> bytes:
    """`proc`'s stdout read straight from the pipe (no buffered reader: select would not see what it holds)
    until `wanted` appears, failing the test if it does not within `seconds`."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    got = b""
    deadline = time.monotonic() + seconds
    while wanted not in got:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        assert ready and left > 0, f"no {wanted!r} within {seconds}s: {got[-500:]!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"stdout closed before {wanted!r}: {got[-500:]!r}"
        got += chunk
    return got


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_watch_piped_prints_json_lines_and_ctrl_c_exits_130(done: DataDir, extra: list[str]) -> None:
    """status --watch into a pipe (or with --json): one JSON document per refresh, flushed; Ctrl+C exits 130."""
    proc = subprocess.Popen(
        [binary("nkoctl"), "--data-dir", str(done.root), "status", "--watch", "--interval", "0.2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    try:
        assert proc.stdout is not None
        docs = [orjson.loads(_line_within(proc, 30)) for _ in range(2)]  # each arrives flushed
        assert all(doc["total"] == 2 and doc["completed"] == 1 for doc in docs)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_log_follow_ctrl_c_exits_130(done: DataDir) -> None:
    """log -f stops on Ctrl+C with exit 130 (what shells report for SIGINT)."""
    proc = subprocess.Popen(
        [binary("nkoctl"), "--data-dir", str(done.root), "log", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    try:
        assert proc.stdout is not None
        assert b"daemon_started" in _output_until(proc, b"daemon_started", 30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


HOLD_LOCK = (
    "import sys, pathlib; from nkod import lock; lock.acquire(pathlib.Path(sys.argv[1])); print(flush=True); "
    "sys.stdin.read()"
)


def test_ctrl_c_while_waiting_for_a_request_exits_130_without_a_traceback_and_leaves_it_queued(
    done: DataDir,
) -> None:
    """Ctrl+C during `retry --wait` (the lock's holder never applies it) exits 130 with one line, no
    traceback, and the request stays queued for nkod to apply."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(done.root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env()
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"\n"
    proc = subprocess.Popen(
        [binary("nkoctl"), "--data-dir", str(done.root), "retry", "t", "--wait", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    try:
        wait_for(lambda: any((done.root / "requests").glob("*.json")), what="the request file")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert b"Traceback" not in err and b"nkoctl: interrupted" in err, err
        assert len(list((done.root / "requests").glob("*.json"))) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


# -- help and options --------------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_subcommand_has_a_description_an_example_and_option_help() -> None:
    """Walks nkoctl's parser: each subcommand has a description and an epilog with an example, each option help."""
    parser = build_parser()
    commands = _subcommands(parser)
    assert len(commands) >= 11
    missing: list[str] = []
    for name, sub in [("nkoctl", parser), *commands.items()]:
        if not sub.description:
            missing.append(f"{name}: no description")
        example = "nkoctl" if name == "nkoctl" else f"nkoctl {name}"
        if not sub.epilog or "example" not in sub.epilog or example not in sub.epilog:
            missing.append(f"{name}: no epilog with an example (`{example} ...`)")
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name}: {'/'.join(action.option_strings) or action.dest} has no help")
    assert not missing, "\n".join(missing)


def test_version(tmp_path: Path) -> None:
    """nkoctl --version prints its version."""
    from nkod import __version__

    r = subprocess.run([binary("nkoctl"), "--version"], capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"nkoctl {__version__}"


def test_data_dir_after_the_subcommand(done: DataDir) -> None:
    """`nkoctl status --data-dir X` works as `nkoctl --data-dir X status` does (and wins over it)."""
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", "/nonexistent", "status", "--json", "--data-dir", str(done.root)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert orjson.loads(r.stdout)["total"] == 2


def test_show_retry_fsck_have_json(done: DataDir) -> None:
    """show, retry and fsck take --json and print one JSON document."""
    r = done.ctl("show", "--json", "t")
    assert r.returncode == 0, r.stderr
    doc = orjson.loads(r.stdout)
    assert doc["status"] == "failed" and doc["history"][-1]["type"] == "video_failed"
    r = done.ctl("fsck", "--json")
    assert r.returncode == 0, r.stderr
    doc = orjson.loads(r.stdout)
    assert doc["ok"] is True and doc["events"] == len(done.events())
    r = done.ctl("retry", "--json", "t", "a", "--wait", "0")
    assert r.returncode == 0, r.stderr
    doc = orjson.loads(r.stdout)
    assert doc["queued"] == ["t"] and doc["skipped"] == [{"id": "a", "status": "completed"}]
