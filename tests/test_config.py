"""The config file: defaults, overrides, and errors that name the file and the key."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from nkod.config import DaemonConfig, load_config, render_toml, with_overrides
from nkod.errors import ConfigError
from tests.helpers import REPO, binary, env


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nkod.toml"
    path.write_text(text)
    return path


def test_no_file_means_defaults() -> None:
    """Without a config file every key has its documented default."""
    c = load_config(None)
    assert c.daemon == DaemonConfig() and c.daemon.workers == 1 and c.daemon.max_attempts == 3


def test_values_are_read_and_ints_accepted_for_floats(tmp_path: Path) -> None:
    """[daemon] keys are read; an integer is fine where seconds are expected."""
    c = load_config(write(tmp_path, "[daemon]\nworkers = 4\nstop_grace = 30\n"))
    assert c.daemon.workers == 4 and c.daemon.stop_grace == 30.0


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[daemon]\nworkerz = 2\n", "daemon.workerz", "unknown key"),
        ("[daemon]\nworkers = 0\n", "daemon.workers", "1..256"),
        ("[daemon]\nworkers = '2'\n", "daemon.workers", "expected int"),
        ("[daemon]\nworkers = true\n", "daemon.workers", "boolean"),
        ("[daemon]\nbackoff_factor = 0.5\n", "daemon.backoff_factor", ">= 1"),
        ("[daemon]\nlog_format = 'xml'\n", "daemon.log_format", "one of"),
        ("[deamon]\n", "deamon", "unknown table"),
        ("daemon = 3\n", "daemon", "must be a table"),
        ("[pipeline]\nnope = 1\n", "pipeline.nope", "unknown"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    """Unknown keys and bad values raise ConfigError naming the file and the key."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert err.value.key == key and str(path) in str(err.value)


def test_unreadable_and_invalid_toml_name_the_file(tmp_path: Path) -> None:
    """A missing file or a TOML syntax error names the file."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[daemon\n"))


def test_command_line_overrides_are_validated() -> None:
    """--workers overrides the file, and is checked like the file."""
    assert with_overrides(load_config(None), workers=3).daemon.workers == 3
    with pytest.raises(ConfigError, match=r"command line: daemon\.workers"):
        with_overrides(load_config(None), workers=-1)


def test_custom_processor_leaves_the_pipeline_table_alone(tmp_path: Path) -> None:
    """With --processor of the user's own, [pipeline] is theirs: not checked against the built-in's keys."""
    c = load_config(write(tmp_path, '[daemon]\nprocessor = "mine:process"\n[pipeline]\nanything = 1\n'))
    assert c.pipeline == {"anything": 1}


def test_rendered_config_is_valid_toml_that_loads_back(tmp_path: Path) -> None:
    """--print-config output parses as TOML and gives the same daemon config."""
    c = load_config(write(tmp_path, "[daemon]\nworkers = 2\n"))
    text = render_toml(c)
    assert tomllib.loads(text)["daemon"]["workers"] == 2
    assert load_config(write(tmp_path, text)).daemon == c.daemon


def test_nkod_print_config_shows_every_effective_key(tmp_path: Path) -> None:
    """`nkod --print-config` prints daemon and pipeline keys with their effective values."""
    r = subprocess.run(
        [binary("nkod"), "--print-config", "--workers", "2"], capture_output=True, text=True, env=env(), timeout=60
    )
    assert r.returncode == 0, r.stderr
    doc = tomllib.loads(r.stdout)
    assert doc["daemon"]["workers"] == 2 and "pipeline" in doc and doc["pipeline"]


def test_nkod_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    """A bad config stops nkod before anything runs, naming the key."""
    path = write(tmp_path, "[daemon]\nmax_attempts = 0\n")
    r = subprocess.run(
        [binary("nkod"), "--config", str(path), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 2 and "daemon.max_attempts" in r.stderr
    assert not (tmp_path / "d").exists()


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("nkod"), "--check-config", "--config", str(path)], capture_output=True, text=True, env=env(), timeout=60
    )


def test_check_config_accepts_a_good_file_with_exit_0(tmp_path: Path) -> None:
    """`nkod --check-config` on a good file says OK, names it, and exits 0 (what ExecReload= runs first)."""
    path = write(tmp_path, "[daemon]\nworkers = 2\n")
    r = _check_config(path)
    assert r.returncode == 0, r.stderr
    assert "config OK" in r.stdout and str(path) in r.stdout


def test_check_config_refuses_a_bad_value_with_exit_2_naming_file_and_key(tmp_path: Path) -> None:
    """A bad value: exit 2, the message names the file and the dotted key, and no data dir is touched."""
    path = write(tmp_path, "[daemon]\nworkers = 0\n")
    r = _check_config(path)
    assert r.returncode == 2
    assert str(path) in r.stderr and "daemon.workers" in r.stderr


def test_check_config_refuses_a_processor_that_cannot_be_imported(tmp_path: Path) -> None:
    """A processor that does not import is a config error too: a reload with it would fail every video."""
    path = write(tmp_path, '[daemon]\nprocessor = "no_such_module_xyz:process"\n')
    r = _check_config(path)
    assert r.returncode == 2 and "no_such_module_xyz" in r.stderr


def test_the_shipped_example_config_is_what_the_schema_generates() -> None:
    """data/nkod.example.toml equals render_example(): regenerate with scripts/make_example_config.py."""
    from nkod.config_example import render_example

    shipped = (REPO / "data" / "nkod.example.toml").read_text()
    assert shipped == render_example(), "data/nkod.example.toml is stale: run python scripts/make_example_config.py"


def test_every_key_of_the_example_is_documented_and_nothing_else() -> None:
    """Each [daemon] and [hooks] field has exactly one comment in the generator (a new key cannot go undocumented)."""
    import dataclasses

    from nkod.config import DaemonConfig
    from nkod.config_example import DAEMON_DOCS, HOOKS_DOCS
    from nkod.hooks import HooksConfig

    assert set(DAEMON_DOCS) == {f.name for f in dataclasses.fields(DaemonConfig)}
    assert set(HOOKS_DOCS) == {f.name for f in dataclasses.fields(HooksConfig)}


def test_the_example_config_loads_to_exactly_the_defaults() -> None:
    """Loading the example gives the built-in defaults for every table, the pipeline's included."""
    from nkod.pipeline.settings import effective_table, parse_settings

    example = load_config(REPO / "data" / "nkod.example.toml")
    defaults = load_config(None)
    assert example.daemon == defaults.daemon and example.hooks == defaults.hooks
    assert effective_table(parse_settings(example.pipeline, "x")) == effective_table(parse_settings({}, "x"))


def test_every_dask_key_is_documented_in_the_example() -> None:
    """Each [dask] field has one comment in the generator, and the example names each one."""
    import dataclasses

    from nkod.config import DaskConfig
    from nkod.config_example import DASK_DOCS

    fields = {f.name for f in dataclasses.fields(DaskConfig)}
    assert set(DASK_DOCS) <= fields and fields - set(DASK_DOCS) == {"scheduler_file"}
    text = (REPO / "data" / "nkod.example.toml").read_text()
    assert all(f"# {key} = " in text for key in DASK_DOCS) and "scheduler_file" in text


def test_the_dask_table_is_read(tmp_path: Path) -> None:
    """executor = "dask" with a [dask] table: every key read, ints accepted for seconds."""
    c = load_config(
        write(
            tmp_path,
            '[daemon]\nexecutor = "dask"\nworkers = 8\n[dask]\nscheduler_address = "tcp://127.0.0.1:8786"\n'
            'shared_dir = "/srv/shared"\norphan_grace = 30\n',
        )
    )
    assert c.daemon.executor == "dask" and c.dask.scheduler_address == "tcp://127.0.0.1:8786"
    assert c.dask.shared_dir == "/srv/shared" and c.dask.orphan_grace == 30.0
    assert "[dask]" in render_toml(c) and 'scheduler_address = "tcp://127.0.0.1:8786"' in render_toml(c)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ('[daemon]\nexecutor = "ray"\n', "daemon.executor", "one of"),
        ('[daemon]\nexecutor = "dask"\n[dask]\nshared_dir = "/s"\n', "dask.scheduler_address", "needs the scheduler"),
        (
            '[daemon]\nexecutor = "dask"\n[dask]\nscheduler_address = "tcp://h:1"\nscheduler_file = "/f"\n'
            'shared_dir = "/s"\n',
            "dask.scheduler_address",
            "not both",
        ),
        ('[daemon]\nexecutor = "dask"\n[dask]\nscheduler_address = "tcp://h:1"\n', "dask.shared_dir", "same path"),
        ('[dask]\nscheduler_address = "127.0.0.1:8786"\n', "dask.scheduler_address", "tcp://HOST:PORT"),
        ('[dask]\nscheduler_address = "tcp://host"\n', "dask.scheduler_address", "tcp://HOST:PORT"),
        ('[dask]\nshared_dir = "shared"\n', "dask.shared_dir", "absolute"),
        ('[dask]\nscheduler_file = "s.json"\n', "dask.scheduler_file", "absolute"),
        ("[dask]\norphan_grace = -1\n", "dask.orphan_grace", ">= 0"),
        ("[dask]\nconnect_timeout = 0\n", "dask.connect_timeout", "> 0"),
        ("[dask]\nworkers = 2\n", "dask.workers", "unknown key"),
        ("dask = 1\n", "dask", "must be a table"),
    ],
)
def test_bad_dask_settings_name_the_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    """A missing, contradictory or malformed cluster setting names the file and the key."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert err.value.key == key and str(path) in str(err.value)


def test_the_command_line_names_the_cluster(tmp_path: Path) -> None:
    """--executor dask with --scheduler-address and --shared-dir needs no [dask] table; the flag's address
    wins over a file's scheduler_file; a bad flag value is an error naming the key."""
    c = with_overrides(
        load_config(None), executor="dask", scheduler_address="tcp://127.0.0.1:8786", shared_dir="/srv/s"
    )
    assert c.daemon.executor == "dask" and c.dask.scheduler_address == "tcp://127.0.0.1:8786"
    path = write(tmp_path, '[dask]\nscheduler_file = "/run/dask.json"\nshared_dir = "/srv/s"\n')
    c = with_overrides(load_config(path), executor="dask", scheduler_address="tcp://10.0.0.1:8786")
    assert c.dask.scheduler_file == "" and c.dask.scheduler_address == "tcp://10.0.0.1:8786"
    with pytest.raises(ConfigError, match="needs the scheduler") as err:
        with_overrides(load_config(None), executor="dask", shared_dir="/srv/s")
    assert err.value.key == "dask.scheduler_address"
    with pytest.raises(ConfigError, match="tcp://HOST:PORT") as err:
        with_overrides(load_config(None), scheduler_address="localhost")
    assert err.value.key == "dask.scheduler_address"


def test_nkod_exits_2_naming_the_key_for_a_bad_executor_flag_combination(tmp_path: Path) -> None:
    """`nkod --executor dask` without a scheduler: exit 2, the key named, no traceback."""
    r = subprocess.run(
        [binary("nkod"), "--data-dir", str(tmp_path), "--executor", "dask", "--once"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 2 and "dask.scheduler_address" in r.stderr and "Traceback" not in r.stderr
