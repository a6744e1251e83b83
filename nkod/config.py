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
from nkod.processor import BUILTIN_PROCESSOR

LOG_FORMATS = ("auto", "console", "journal", "plain", "json")


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
    snapshot_every: int = 5000
    views_interval: float = 2.0
    rescan_interval: float = 5.0
    log_format: str = "auto"

    def validate(self, source: str) -> None:
        def need(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(source, f"daemon.{key}", message)

        need(1 <= self.workers <= 256, "workers", f"must be 1..256, got {self.workers}")
        need(":" in self.processor, "processor", f"must be MODULE:FUNC, got {self.processor!r}")
        need(bool(self.manifest), "manifest", "must not be empty")
        need(1 <= self.max_attempts <= 100, "max_attempts", f"must be 1..100, got {self.max_attempts}")
        need(self.backoff_initial >= 0, "backoff_initial", "must be >= 0")
        need(self.backoff_factor >= 1, "backoff_factor", "must be >= 1")
        need(self.backoff_max >= self.backoff_initial, "backoff_max", "must be >= backoff_initial")
        need(self.video_timeout >= 0, "video_timeout", "must be >= 0 (0 = no timeout)")
        need(self.stop_grace >= 0, "stop_grace", "must be >= 0")
        need(self.snapshot_every >= 1, "snapshot_every", "must be >= 1")
        need(self.views_interval > 0, "views_interval", "must be > 0")
        need(self.rescan_interval > 0, "rescan_interval", "must be > 0")
        need(self.log_format in LOG_FORMATS, "log_format", f"must be one of {', '.join(LOG_FORMATS)}")


@dataclass(frozen=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"


def _coerce(source: str, key: str, expected: type, value: object) -> object:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and expected is not bool:
        raise ConfigError(source, key, f"expected {expected.__name__}, got a boolean")
    if not isinstance(value, expected):
        raise ConfigError(source, key, f"expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def _daemon_from_table(table: Mapping[str, Any], source: str) -> DaemonConfig:
    fields = {f.name: f for f in dataclasses.fields(DaemonConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(source, f"daemon.{key}", f"unknown key (known: {', '.join(sorted(fields))})")
        expected = {"int": int, "float": float, "str": str}[str(fields[key].type)]
        kwargs[key] = _coerce(source, f"daemon.{key}", expected, value)
    config = DaemonConfig(**kwargs)
    config.validate(source)
    return config


def validate_pipeline(table: Mapping[str, Any], source: str) -> None:
    """Check the ``[pipeline]`` table with the built-in pipeline's own parser."""
    from nkod.pipeline.settings import parse_settings

    parse_settings(table, source)


def config_from_mapping(doc: Mapping[str, Any], source: str) -> Config:
    for key in doc:
        if key not in ("daemon", "pipeline"):
            raise ConfigError(source, key, "unknown table (known: daemon, pipeline)")
    daemon_table = doc.get("daemon", {})
    pipeline_table = doc.get("pipeline", {})
    if not isinstance(daemon_table, Mapping):
        raise ConfigError(source, "daemon", "must be a table")
    if not isinstance(pipeline_table, Mapping):
        raise ConfigError(source, "pipeline", "must be a table")
    daemon = _daemon_from_table(daemon_table, source)
    if daemon.processor == BUILTIN_PROCESSOR:
        validate_pipeline(pipeline_table, source)
    return Config(daemon=daemon, pipeline=dict(pipeline_table), source=source)


def load_config(path: Path | None) -> Config:
    """Read a TOML config; None gives the defaults."""
    if path is None:
        return config_from_mapping({}, "<defaults>")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"not UTF-8 (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from exc
    return config_from_mapping(doc, str(path))


def with_overrides(config: Config, **overrides: Any) -> Config:
    """Apply command-line overrides (None means not given) and validate again."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    daemon = dataclasses.replace(config.daemon, **given)
    daemon.validate("command line")
    if daemon.processor == BUILTIN_PROCESSOR and config.daemon.processor != BUILTIN_PROCESSOR:
        validate_pipeline(config.pipeline, config.source)
    return dataclasses.replace(config, daemon=daemon)


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
