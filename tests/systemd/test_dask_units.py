"""The cluster-side units (packaging/systemd/nkod-dask-scheduler.service, nkod-dask-worker.service), on the host.

`systemd-analyze` checks them as files; Dask's own config loader and command-line parser check that what
they set is what `dask scheduler` / `dask worker` read (skipped without distributed installed).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.systemd.box import BOX_VENV, ROOT, analyze

pytestmark = pytest.mark.systemd

UNITS = ROOT / "packaging" / "systemd"
SCHEDULER = UNITS / "nkod-dask-scheduler.service"
WORKER = UNITS / "nkod-dask-worker.service"
DASK = f"{BOX_VENV}/bin/dask"
NETWORK_FAMILIES = {"AF_UNIX", "AF_INET", "AF_INET6"}
MAX_EXPOSURE = 1.5


def _values(unit: Path, key: str) -> list[str]:
    """Every `key=` value in the unit, in order (no continuation lines in these files)."""
    prefix = f"{key}="
    return [line[len(prefix) :] for line in unit.read_text().splitlines() if line.startswith(prefix)]


def _environment(unit: Path) -> dict[str, str]:
    """The unit's Environment= assignments, unquoted as systemd does (one or more per line)."""
    env: dict[str, str] = {}
    for value in _values(unit, "Environment"):
        for word in shlex.split(value):
            name, _, setting = word.partition("=")
            env[name] = setting
    return env


def _command_line(unit: Path, drop_in: Mapping[str, str]) -> list[str]:
    """ExecStart= as systemd runs it with the unit's Environment= (and a drop-in's) and this host's name:
    `${VAR}` is one word, a bare `$VAR` is split at whitespace (zero words when empty), `%H` is the host name."""
    (line,) = _values(unit, "ExecStart")
    env = {**_environment(unit), **drop_in}
    argv: list[str] = []
    for word in shlex.split(line.replace("%H", socket.gethostname())):
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if bare:
            argv += env[bare.group(1)].split()
        else:
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env[m.group(1)], word))
    return argv


@pytest.fixture(params=[SCHEDULER, WORKER], ids=lambda unit: unit.stem)
def unit_copy(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A shipped Dask unit, with ExecStart pointed at a stand-in executable (no /opt/nkod/venv on the host)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze missing (Debian: the systemd package)")
    shipped: Path = request.param
    stub = tmp_path / "dask"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = shipped.read_text()
    assert f"ExecStart={DASK} " in text
    unit = tmp_path / shipped.name
    unit.write_text(text.replace(f"ExecStart={DASK} ", f"ExecStart={stub} "))
    return unit


def test_dask_unit_passes_systemd_analyze_verify(unit_copy: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong with the shipped scheduler and worker units."""
    done = analyze("verify", str(unit_copy), cwd=unit_copy.parent)
    assert done.returncode == 0, done.stderr
    assert unit_copy.name not in done.stderr, done.stderr


def test_dask_unit_exposure_is_at_most_1_5_with_network_allowed(unit_copy: Path) -> None:
    """`systemd-analyze security --offline=true` rates each Dask unit 1.5 or lower, as nkod.service, and
    leaves it the network (the scheduler, the workers and nkod talk TCP; the jobs download videos)."""
    done = analyze("security", "--offline=true", "--no-pager", str(unit_copy), cwd=unit_copy.parent)
    match = re.search(rf"Overall exposure level for {re.escape(unit_copy.name)}: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout
    families = {family for value in _values(unit_copy, "RestrictAddressFamilies") for family in value.split()}
    assert families == NETWORK_FAMILIES
    assert _values(unit_copy, "PrivateNetwork") == [] and _values(unit_copy, "IPAddressDeny") == []


def test_worker_unit_runs_as_nkod_kills_its_jobs_with_it_and_may_write_the_shared_dir() -> None:
    """The worker runs as user nkod, stop kills the whole cgroup (the jobs' own process groups too), and
    the documented shared dir is writable and required mounted; W^X memory stays allowed for yt-dlp's JIT."""
    assert _values(WORKER, "User") == ["nkod"] and _values(WORKER, "Group") == ["nkod"]
    assert _values(WORKER, "KillMode") == ["control-group"]
    assert _values(WORKER, "ReadWritePaths") == ["/srv/nkod-shared"]
    assert _values(WORKER, "RequiresMountsFor") == ["/srv/nkod-shared"]
    assert _values(WORKER, "MemoryDenyWriteExecute") == []
    assert _values(WORKER, "Restart") == ["always"]  # a worker whose scheduler went away exits 0


# -- what Dask reads --------------------------------------------------------------------------------
def test_scheduler_unit_environment_gives_dask_the_config_nkod_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler unit's DASK_* variables, set as the unit sets them, make Dask's config loader give
    allowed-failures 0 (no retries by the scheduler) and worker-ttl 10 s (a silent worker dropped fast)."""
    # imported through importorskip (typed Any): mypy passes where the dask extra is not installed
    pytest.importorskip("distributed")
    dask_config = pytest.importorskip("dask.config")
    parse_timedelta = pytest.importorskip("dask.utils").parse_timedelta

    for name in list(os.environ):
        if name.startswith("DASK_"):
            monkeypatch.delenv(name)
    unit_env = {k: v for k, v in _environment(SCHEDULER).items() if k.startswith("DASK_")}
    assert unit_env, "the scheduler unit sets no DASK_* variable"
    for name, value in unit_env.items():
        monkeypatch.setenv(name, value)
    config: dict[str, Any] = {}  # refreshed into a dict of our own: the process-wide config is untouched
    dask_config.refresh(config=config)
    assert dask_config.get("distributed.scheduler.allowed-failures", config=config) == 0
    assert parse_timedelta(dask_config.get("distributed.scheduler.worker-ttl", config=config)) == 10


@pytest.mark.parametrize(
    ("unit", "drop_in"),
    [
        (SCHEDULER, {}),
        (WORKER, {}),
        (WORKER, {"NKOD_DASK_SCHEDULER": "--scheduler-file=/srv/nkod-shared/scheduler.json"}),
    ],
    ids=["scheduler", "worker", "worker-with-scheduler-file"],
)
def test_unit_command_line_is_one_the_dask_cli_accepts(unit: Path, drop_in: dict[str, str]) -> None:
    """ExecStart=, expanded as systemd does (also with the scheduler file the worker unit's comments show),
    parses with `dask scheduler` / `dask worker`'s own options: every flag exists and every value fits."""
    commands = {
        "scheduler": pytest.importorskip("distributed.cli.dask_scheduler").main,
        "worker": pytest.importorskip("distributed.cli.dask_worker").main,
    }
    dask, subcommand, *args = _command_line(unit, drop_in)
    assert dask == DASK
    command = commands[subcommand]
    params = command.make_context(f"dask {subcommand}", args).params  # raises on an unknown flag or bad value
    # ... or keeps it as a positional: the commands take any extra words for their --preload modules
    assert params["preload_argv"] == ()
    if subcommand == "scheduler":
        assert (params["host"], params["port"]) == ("127.0.0.1", "8786")
        return
    assert params["nanny"] is False and params["dashboard"] is False
    assert params["nthreads"] == 1 and params["name"] == socket.gethostname()
    assert params["death_timeout"] == "60s"
    if drop_in:
        assert params["scheduler"] is None and params["scheduler_file"] == "/srv/nkod-shared/scheduler.json"
    else:
        assert params["scheduler"] == "tcp://127.0.0.1:8786"
