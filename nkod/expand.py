"""Listing a URL's videos with yt-dlp's flat extraction (no media downloaded): the I/O half of sources.

Used in-process by ``nkoctl add`` and, for ``[[sources]]``, in a child process of the daemon
(``python -m nkod.expand``: a JSON spec on stdin, one JSON result on stdout) so a slow or hanging site
never blocks the daemon's loop. Failures are :class:`ListingError` with a kind: ``bad-url`` (not an
http(s) URL, or nothing yt-dlp can list: exit 2 in nkoctl), ``unreachable`` (network, HTTP errors),
``empty`` (a channel or playlist with no videos).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from nkod.sources import Entry, entries_from_info, is_http_url

SOCKET_TIMEOUT = 30.0
MAX_NESTED = 8  # lists inside a list (a channel's tabs) expanded per URL


class ListingError(Exception):
    def __init__(self, url: str, message: str, kind: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.kind = kind  # bad-url | unreachable | empty


@dataclass
class Listing:
    url: str
    entries: list[Entry]
    problems: list[str]


class _QuietLogger:
    """yt-dlp's messages kept, not printed (nkoctl prints its own; the daemon logs the reason)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def _options(limit: int | None) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "extract_flat": "in_playlist",
        "skip_download": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _QuietLogger(),
        "socket_timeout": SOCKET_TIMEOUT,
        "extractor_retries": 1,
        "lazy_playlist": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
    }
    if limit:
        opts["playlistend"] = limit  # yt-dlp then fetches only the pages holding the first `limit`
    return opts


def _message(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    return re.sub(r"^ERROR:\s*", "", text).strip()


def _extract(url: str, limit: int | None) -> Mapping[str, Any]:
    import yt_dlp

    try:
        with yt_dlp.YoutubeDL(_options(limit)) as ydl:
            info = ydl.extract_info(url, download=False, process=True)
            if not isinstance(info, Mapping):
                raise ListingError(url, "yt-dlp returned nothing for this URL", "unreachable")
            if isinstance(info.get("entries"), list | tuple) or info.get("entries") is None:
                return info
            return {**info, "entries": list(info["entries"])}
    except yt_dlp.utils.UnsupportedError as exc:
        raise ListingError(url, f"not something yt-dlp can list ({_message(exc)})", "bad-url") from exc
    except (yt_dlp.utils.YoutubeDLError, OSError) as exc:
        message = _message(exc)
        if re.search(r"(?i)unsupported url|is not a valid url", message):
            raise ListingError(url, f"not something yt-dlp can list ({message})", "bad-url") from exc
        raise ListingError(url, message, "unreachable") from exc


def list_url(url: str, limit: int | None = None) -> Listing:
    """The videos `url` lists, in its order (at most `limit`). Raises ListingError naming the URL."""
    if not is_http_url(url):
        raise ListingError(url, "not an http(s) URL", "bad-url")
    flat = entries_from_info(_extract(url, limit), limit)
    entries, problems = list(flat.entries), list(flat.problems)
    for nested_url in flat.nested[:MAX_NESTED]:  # a channel's tabs (Videos, Shorts, Live)
        if limit is not None and len(entries) >= limit:
            break
        left = None if limit is None else limit - len(entries)
        try:
            sub = entries_from_info(_extract(nested_url, left), left)
        except ListingError as exc:
            problems.append(str(exc))
            continue
        entries.extend(sub.entries)
        problems.extend(sub.problems)
    if not entries:
        why = "; ".join(problems[:3]) if problems else "it lists no videos"
        raise ListingError(url, f"no videos found ({why})", "empty")
    return Listing(url, entries, problems)


def main() -> int:
    """The daemon's refresh child: spec ``{url, limit}`` on stdin; ``{ok, entries | error, kind}`` on stdout."""
    spec = orjson.loads(sys.stdin.buffer.read())
    url, limit = spec["url"], spec.get("limit") or None
    try:
        listing = list_url(url, limit)
        doc: dict[str, Any] = {
            "ok": True,
            "entries": [e.as_dict() for e in listing.entries],
            "problems": listing.problems[:20],
        }
    except ListingError as exc:
        doc = {"ok": False, "error": str(exc), "kind": exc.kind}
    except Exception as exc:  # a bug in a yt-dlp extractor: still a reason, never a silent failure
        doc = {"ok": False, "error": f"{url}: {type(exc).__name__}: {exc}", "kind": "unreachable"}
    sys.stdout.buffer.write(orjson.dumps(doc))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
