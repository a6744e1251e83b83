"""JSON for ``nkoctl status``'s fast path, without importing orjson (8–15 ms: it imports uuid, platform,
dataclasses with inspect and ast, json and enum) nor the stdlib ``json`` package (``re``): CPython's own C
scanner (``_json``) reads, a few lines write.

`loads` returns exactly what ``orjson.loads`` returns, or raises `Unsure`: then the caller asks orjson,
which decides (refuses, or reads it). It is never the one that refuses a line, so nkod's replay and fsck
(``codec.check``, orjson) and status cannot disagree on what a line holds. Where the C scanner would
differ from orjson it is not trusted: ``NaN``/``Infinity`` (orjson refuses them), numbers too large for a
double (refused), integers beyond 64 bits (orjson reads them as floats), any ``\\uD…`` escape (orjson
refuses lone surrogates), bytes that are not UTF-8, surrounding whitespace, nesting deep enough to hit the
recursion limit. Duplicate keys keep the last value at the first key's place in both.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


class Unsure(ValueError):
    """This reader does not vouch for the text: ask orjson (which may refuse it or read it)."""


def _int(text: str) -> int | float:
    value = int(text)
    if _I64_MIN <= value <= _U64_MAX:
        return value
    raise Unsure("an integer beyond 64 bits (orjson reads it as a float)")


def _float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf (1e400): orjson refuses it
        raise Unsure("a number too large for a double")
    return value


def _constant(name: str) -> Any:
    raise Unsure(f"{name} (not JSON)")


class _Context:
    """What ``_json.make_scanner`` reads its options from (as json.JSONDecoder holds them)."""

    strict = True  # control characters in strings refused, as orjson does
    object_hook = None
    object_pairs_hook = None
    parse_float = staticmethod(_float)
    parse_int = staticmethod(_int)
    parse_constant = staticmethod(_constant)


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # (it reads attributes only)


def loads(data: bytes) -> Any:
    """The value of `data` as ``orjson.loads(data)`` gives it; raises `Unsure` when not sure."""
    if b"\\u" in data and (b"\\ud" in data or b"\\uD" in data):
        raise Unsure("a surrogate escape")
    try:
        text = data.decode()
        value, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError, RecursionError) as exc:
        raise Unsure(str(exc)) from None
    if end != len(text):
        raise Unsure("more than one value, or whitespace around it")
    return value


def loads_or_orjson(data: bytes) -> Any:
    """`loads`, or orjson's answer where it is not sure (orjson's JSONDecodeError, a ValueError, if it
    refuses)."""
    try:
        return loads(data)
    except Unsure:
        import orjson

        return orjson.loads(data)


_escape = _json.encode_basestring  # escapes `"`, `\\` and control characters; other characters as they are


def dumps_indent2(value: Any) -> str:
    """`value` (what JSON reads into: dict with str keys, list, str, int, float, bool, None) as
    ``orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()`` writes it, to the value (floats as Python
    writes them, ``1e-07`` where orjson writes ``1e-7``); a float that is not finite as null, as orjson does."""
    out: list[str] = []
    _write(value, out, "\n")
    return "".join(out)


def _write(value: Any, out: list[str], newline: str) -> None:
    kind = type(value)
    if kind is str:
        out.append(_escape(value))
    elif kind is dict:
        if not value:
            out.append("{}")
            return
        inner = newline + "  "
        sep = "{" + inner
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"a key that is not a string: {key!r}")
            out.append(sep)
            out.append(_escape(key))
            out.append(": ")
            _write(item, out, inner)
            sep = "," + inner
        out.append(newline + "}")
    elif kind is list or kind is tuple:
        if not value:
            out.append("[]")
            return
        inner = newline + "  "
        sep = "[" + inner
        for item in value:
            out.append(sep)
            _write(item, out, inner)
            sep = "," + inner
        out.append(newline + "]")
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(value))
    elif kind is float:
        out.append(float.__repr__(value) if value - value == 0.0 else "null")
    else:
        raise TypeError(f"not JSON: {type(value).__name__}")
