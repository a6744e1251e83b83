"""The config file (TOML): the ``[daemon]`` table here, ``[pipeline]`` for the built-in processor.

Unknown keys and bad values are errors that name the file and the key. Command-line flags override the
file. ``nkod --print-config`` prints the effective config as TOML.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nkod.errors import ConfigError
from nkod.fsutil import read_regular
from nkod.hooks import HOOKS_CHECKS, HooksConfig
from nkod.processor import BUILTIN_PROCESSOR
from nkod.tomltable import Check, check_values, in_range, nonempty, one_of, parse_table

MAX_CONFIG_BYTES = 16 << 20  # a config is a few lines; a bound on what a wrong file can cost
LOG_FORMATS = ("auto", "console", "journal", "plain", "json")
EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class DaemonConfig:
    """How the engine schedules, retries and stops. Times are seconds."""

    workers: int = 1
    processor: str = BUILTIN_PROCESSOR
    manifest: str = "videos.jsonl"
    max_attempts: int = 3
    backoff_initial: float = 30.0
    backoff_factor: float = 2.0
    backoff_max: float = 900.0
    video_timeout: float = 7200.0
    stop_grace: float = 60.0
    snapshot_every: int = 1000
    views_interval: float = 2.0
    rescan_interval: float = 5.0
    log_format: str = "auto"
    metrics_listen: str = ""  # HOST:PORT of the Prometheus endpoint; empty: off
    executor: str = "local"  # where videos run: "local" (child processes) or "dask" (a cluster: see [dask])

    def validate(self, source: str) -> None:
        check_values(self, source, "daemon", DAEMON_CHECKS)
        if self.backoff_max < self.backoff_initial:
            raise ConfigError(source, "daemon.backoff_max", "must be >= backoff_initial")


def _processor_spec(value: Any) -> str | None:
    return None if ":" in value else f"must be MODULE:FUNC, got {value!r}"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets: ``[::1]:9464``) as (host, port); ValueError says why not."""
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    bad_host = not host or any(c.isspace() or c in "[]/" for c in host) or (":" in host and not bracketed)
    if not sep or bad_host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"must be HOST:PORT like 127.0.0.1:9464 or [::1]:9464 (empty: off), got {value!r}")
    return host, int(port)


def _listen_address(value: Any) -> str | None:
    if value == "":
        return None
    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


DAEMON_CHECKS: dict[str, Check] = {
    "workers": in_range(1, 256),
    "processor": _processor_spec,
    "manifest": nonempty,
    "max_attempts": in_range(1, 100),
    "backoff_initial": in_range(0),
    "backoff_factor": in_range(1),
    "video_timeout": in_range(0),
    "stop_grace": in_range(0),
    "snapshot_every": in_range(1),
    "views_interval": in_range(0, open_low=True),
    "rescan_interval": in_range(0, open_low=True),
    "log_format": one_of(LOG_FORMATS),
    "metrics_listen": _listen_address,
    "executor": one_of(EXECUTORS),
}


@dataclass(frozen=True)
class DaskConfig:
    """``[dask]``: the cluster that runs videos when ``[daemon] executor = "dask"``. Times are seconds."""

    scheduler_address: str = ""  # tcp://HOST:PORT of the running `dask scheduler`
    scheduler_file: str = ""  # or the JSON file `dask scheduler --scheduler-file` writes
    shared_dir: str = ""  # mounted at the same path on every host: staging/ and cache/ live here
    orphan_grace: float = 60.0  # scheduler lost: how long a running video may still deliver its output
    connect_timeout: float = 10.0  # for each connection attempt to the scheduler


def _scheduler_address(value: Any) -> str | None:
    if value == "":
        return None
    scheme, sep, rest = value.partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or scheme not in ("tcp", "tls", "inproc", "ws", "wss") or not host or not colon or not port.isdigit():
        return f"must be like tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786), got {value!r}"
    return None


def _absolute_path(value: Any) -> str | None:
    if value == "":
        return None
    return None if Path(value).is_absolute() else f"must be an absolute path (the same on every host), got {value!r}"


DASK_CHECKS: dict[str, Check] = {
    "scheduler_address": _scheduler_address,
    "scheduler_file": _absolute_path,
    "shared_dir": _absolute_path,
    "orphan_grace": in_range(0),
    "connect_timeout": in_range(0, open_low=True),
}


def check_dask(daemon: DaemonConfig, dask: DaskConfig, source: str) -> None:
    """With ``executor = "dask"`` the cluster must be named, and the shared directory given."""
    if daemon.executor != "dask":
        return
    if bool(dask.scheduler_address) == bool(dask.scheduler_file):
        raise ConfigError(
            source,
            "dask.scheduler_address",
            'executor = "dask" needs the scheduler: give scheduler_address (tcp://HOST:PORT) or scheduler_file,'
            " not both",
        )
    if not dask.shared_dir:
        raise ConfigError(
            source, "dask.shared_dir", 'executor = "dask" needs a directory mounted at the same path on every host'
        )


@dataclass(frozen=True)
class SourceConfig:
    """A followed source (``[[sources]]``): a channel, playlist or feed the daemon lists at start and every
    `refresh` seconds, adding the videos it has not seen."""

    url: str = ""
    name: str = ""  # defaults to the URL
    priority: int = 0  # videos of a higher-priority source run first
    limit: int = 0  # at most this many of the listing's first entries (0: all); `max_videos` is the same key
    max_videos: int = 0
    refresh: float = 3600.0  # seconds between listings (0: only at start)


def _http_url(value: Any) -> str | None:
    from nkod.sources import is_http_url

    return None if is_http_url(value) else f"must be an http(s) URL, got {value!r}"


SOURCE_CHECKS: dict[str, Check] = {
    "url": _http_url,
    "limit": in_range(0),
    "max_videos": in_range(0),
    "refresh": in_range(0),
}


def _sources_from_list(value: Any, source: str) -> tuple[SourceConfig, ...]:
    """``[[sources]]``: each table checked; errors name the entry (``sources[2].refresh``, counted from 1)."""
    if not isinstance(value, list):
        raise ConfigError(source, "sources", "must be an array of tables ([[sources]])")
    out: list[SourceConfig] = []
    names: dict[str, int] = {}
    for i, table in enumerate(value, start=1):
        where = f"sources[{i}]"
        if not isinstance(table, Mapping):
            raise ConfigError(source, where, "must be a table")
        if "url" not in table:
            raise ConfigError(source, f"{where}.url", "missing: the channel, playlist or feed to follow")
        if table.get("limit") and table.get("max_videos"):
            raise ConfigError(source, f"{where}.max_videos", "give limit or max_videos, not both")
        entry: SourceConfig = parse_table(SourceConfig, table, source, where, SOURCE_CHECKS)
        limit = entry.limit or entry.max_videos
        entry = dataclasses.replace(entry, name=entry.name or entry.url, limit=limit, max_videos=limit)
        if entry.name in names:
            raise ConfigError(source, f"{where}.name", f"{entry.name!r} is also sources[{names[entry.name]}]")
        names[entry.name] = i
        out.append(entry)
    return tuple(out)


@dataclass(frozen=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"
    hooks: HooksConfig = field(default_factory=HooksConfig)
    sources: tuple[SourceConfig, ...] = ()
    dask: DaskConfig = field(default_factory=DaskConfig)


def _daemon_from_table(table: Mapping[str, Any], source: str) -> DaemonConfig:
    config: DaemonConfig = parse_table(DaemonConfig, table, source, "daemon", DAEMON_CHECKS)
    config.validate(source)
    return config


def validate_pipeline(table: Mapping[str, Any], source: str) -> None:
    """Check the ``[pipeline]`` table with the built-in pipeline's own parser."""
    from nkod.pipeline.settings import parse_settings

    parse_settings(table, source)


def config_from_mapping(doc: Mapping[str, Any], source: str) -> Config:
    for key in doc:
        if key not in ("daemon", "pipeline", "hooks", "sources", "dask"):
            raise ConfigError(source, key, "unknown table (known: daemon, pipeline, hooks, sources, dask)")
    daemon_table = doc.get("daemon", {})
    pipeline_table = doc.get("pipeline", {})
    if not isinstance(daemon_table, Mapping):
        raise ConfigError(source, "daemon", "must be a table")
    if not isinstance(pipeline_table, Mapping):
        raise ConfigError(source, "pipeline", "must be a table")
    daemon = _daemon_from_table(daemon_table, source)
    if daemon.processor == BUILTIN_PROCESSOR:
        validate_pipeline(pipeline_table, source)
    hooks_table = doc.get("hooks", {})
    if not isinstance(hooks_table, Mapping):
        raise ConfigError(source, "hooks", "must be a table")
    hooks: HooksConfig = parse_table(HooksConfig, hooks_table, source, "hooks", HOOKS_CHECKS)
    sources = _sources_from_list(doc.get("sources", []), source)
    dask_table = doc.get("dask", {})
    if not isinstance(dask_table, Mapping):
        raise ConfigError(source, "dask", "must be a table")
    dask: DaskConfig = parse_table(DaskConfig, dask_table, source, "dask", DASK_CHECKS)
    check_dask(daemon, dask, source)
    return Config(daemon=daemon, pipeline=dict(pipeline_table), source=source, hooks=hooks, sources=sources, dask=dask)


def load_config(path: Path | None) -> Config:
    """Read a TOML config; None gives the defaults."""
    if path is None:
        return config_from_mapping({}, "<defaults>")
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"not UTF-8 (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from exc
    return config_from_mapping(doc, str(path))


DASK_FLAGS = ("scheduler_address", "shared_dir")  # [dask] keys a command-line flag may set


def with_overrides(config: Config, **overrides: Any) -> Config:
    """Apply command-line overrides (None means not given) and validate again."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    dask_given = {k: given.pop(k) for k in DASK_FLAGS if k in given}
    daemon = dataclasses.replace(config.daemon, **given)
    daemon.validate("command line")
    if daemon.processor == BUILTIN_PROCESSOR and config.daemon.processor != BUILTIN_PROCESSOR:
        validate_pipeline(config.pipeline, config.source)
    dask = config.dask
    if dask_given:
        if "scheduler_address" in dask_given:  # the flag names the cluster: a file's scheduler_file gives way
            dask_given["scheduler_file"] = ""
        dask = dataclasses.replace(dask, **dask_given)
        check_values(dask, "command line", "dask", DASK_CHECKS)
    check_dask(daemon, dask, "command line" if given.get("executor") or dask_given else config.source)
    return dataclasses.replace(config, daemon=daemon, dask=dask)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")


def render_toml(config: Config, pipeline_effective: Mapping[str, Any] | None = None) -> str:
    """The effective config as TOML (what --print-config shows)."""
    lines = [f"# effective config (from {config.source})", "[daemon]"]
    for f in dataclasses.fields(DaemonConfig):
        lines.append(f"{f.name} = {_toml_value(getattr(config.daemon, f.name))}")
    pipeline = pipeline_effective if pipeline_effective is not None else config.pipeline
    lines.append("")
    lines.extend(_render_table("pipeline", pipeline))
    lines.append("")
    lines.extend(_render_table("hooks", dataclasses.asdict(config.hooks)))
    if config.daemon.executor == "dask" or config.dask != DaskConfig():
        lines.append("")
        lines.append("[dask]")
        lines.extend(f"{f.name} = {_toml_value(getattr(config.dask, f.name))}" for f in dataclasses.fields(DaskConfig))
    for src in config.sources:
        lines.append("")
        lines.append("[[sources]]")
        lines.extend(
            f"{f.name} = {_toml_value(getattr(src, f.name))}"
            for f in dataclasses.fields(SourceConfig)
            if f.name != "max_videos"
        )
    return "\n".join(lines) + "\n"


def _render_table(name: str, table: Mapping[str, Any]) -> list[str]:
    lines = [f"[{name}]"]
    nested: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            nested.append((f"{name}.{key}", value))
        elif value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for sub_name, sub in nested:
        lines.append("")
        lines.extend(_render_table(sub_name, sub))
    return lines
