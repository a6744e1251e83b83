"""Typed TOML tables: a frozen dataclass filled from a table, every key and value checked.

Shared by the ``[daemon]`` table (nkod.config) and the ``[pipeline]`` table (nkod.pipeline.settings).
Errors are :class:`ConfigError` naming the file and the dotted key (``pipeline.frames.max_frames``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from typing import Any

from nkod.errors import ConfigError

Check = Callable[[Any], str | None]  # a value's problem, or None


def in_range(low: float | None = None, high: float | None = None, *, open_low: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if low is not None and (value <= low if open_low else value < low):
            if high is not None and not open_low:
                return f"must be {low}..{high}, got {value!r}"
            return f"must be {'>' if open_low else '>='} {low}, got {value!r}"
        if high is not None and value > high:
            return f"must be {low}..{high}, got {value!r}" if low is not None else f"must be <= {high}, got {value!r}"
        return None

    return check


def one_of(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}; got {value!r}"

    return check


def nonempty(value: Any) -> str | None:
    return None if value else "must not be empty"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(source: str, key: str, tp: Any, value: Any) -> Any:
    """Check a TOML value against a field type; ints are accepted for floats, lists for tuples of str."""
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(source, key, f"expected a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(value, bool) and tp is not bool:
        raise ConfigError(source, key, f"expected {_type_name(tp)}, got a boolean")
    if tp is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, tp):
        raise ConfigError(source, key, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def parse_table(
    cls: type[Any], table: Mapping[str, Any], source: str, name: str, checks: Mapping[str, Check], _at: str = ""
) -> Any:
    """`cls` filled from `table` (nested dataclass fields from sub-tables). `checks` are keyed by the
    dotted path below the table (``"frames.max_frames"``); `name` is the table's own name for errors."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{_at}.{key}" if _at else key
        full = f"{name}.{dotted}"
        if key not in hints:
            raise ConfigError(source, full, f"unknown key (known: {', '.join(names)})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(source, full, "must be a table")
            kwargs[key] = parse_table(tp, value, source, name, checks, dotted)  # type: ignore[arg-type]
            continue
        kwargs[key] = coerce(source, full, tp, value)
    obj = cls(**kwargs)
    if not _at:
        check_values(obj, source, name, checks)
    return obj


def check_values(obj: Any, source: str, name: str, checks: Mapping[str, Check]) -> None:
    """Run `checks` on the values of `obj` (a filled dataclass), naming the first bad key."""
    for dotted, check in checks.items():
        value = obj
        for part in dotted.split("."):
            value = getattr(value, part)
        problem = check(value)
        if problem:
            raise ConfigError(source, f"{name}.{dotted}", problem)
