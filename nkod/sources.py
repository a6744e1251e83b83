"""Where videos come from besides the manifest: the pure half (ids, entries, dedupe, the events).

A *listing* is what yt-dlp's flat extraction of one URL gives (a channel, a playlist, a feed, a page, one
video): ``nkod.expand`` calls yt-dlp and hands the result to :func:`entries_from_info`, which makes one
:class:`Entry` per video with a stable, safe ``video_id``. :func:`discover_drafts` turns listings into the
events the daemon appends (``videos_discovered`` for entries not known yet, ``source_refreshed`` per
listing), skipping what is known by id, by URL, or by the underlying site and id.

Ids: a YouTube video keeps its own id (what manifests and the old run_extraction.py use); another site's id
is prefixed with the site (``vimeo-123``: numeric ids of different sites would collide); a listing whose ids
are not unique (a generic page or feed: ``clip``, ``page-1``) and any id that is unsafe or too long gets
``<site>-<sha1 of the URL>[:16]``. Nothing here does I/O.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from nkod.state import VIDEO_ID_RE

Draft = dict[str, Any]

# Sites whose ids are unique over the whole site and short: kept as the video_id itself.
OWN_ID_SITES = frozenset({"youtube"})
# Extractors whose "ids" are only names within one page or feed (page-1, a file's stem): the URL is the id.
URL_ID_SITES = frozenset({"generic", "html5mediaembed", "url"})
# yt-dlp's listing extractors: an entry naming one of these is a list to expand, not a video.
LISTING_IE_SUFFIXES = ("tab", "playlist", "channel", "user", "feed", "search")
_URL_RE = re.compile(r"(?i)^https?://[^\s/]+")
_YOUTUBE_URL_RE = re.compile(
    r"(?i)^https?://(?:www\.|m\.|music\.)?(?:youtube\.com/(?:watch\?(?:.*&)?v=|shorts/|live/|embed/)|youtu\.be/)"
    r"([A-Za-z0-9_-]{11})(?![A-Za-z0-9_-])"
)


def is_http_url(value: object) -> bool:
    return isinstance(value, str) and bool(_URL_RE.match(value)) and not any(c.isspace() for c in value)


def safe_id(value: object) -> bool:
    return isinstance(value, str) and VIDEO_ID_RE.fullmatch(value) is not None


def site_name(extractor: object) -> str:
    """An extractor key as a site name: lowercased letters and digits (``YoutubeTab`` → ``youtubetab``)."""
    text = re.sub(r"[^a-z0-9]+", "", extractor.lower()) if isinstance(extractor, str) else ""
    return text[:24] or "generic"


def url_hash(url: str) -> str:
    import hashlib  # (only when an id is derived: not at import time)

    return hashlib.sha1(url.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def derive_video_id(site: str, site_id: str | None, url: str) -> str:
    """The stable video_id of a listed video (see the module's docstring for the rules)."""
    if site in OWN_ID_SITES and safe_id(site_id):
        return str(site_id)
    if site not in URL_ID_SITES and site_id and safe_id(candidate := f"{site}-{site_id}"):
        return candidate
    return f"{site}-{url_hash(url)}"


def site_key(site: str, site_id: str) -> str:
    """The dedupe key of the underlying video: the same on every listing that shows it."""
    return f"{site}:{site_id}"


def url_site_key(url: object) -> str | None:
    """The site key a URL names by itself (a YouTube watch/shorts/youtu.be URL), else None."""
    if not isinstance(url, str):
        return None
    m = _YOUTUBE_URL_RE.match(url)
    return site_key("youtube", m.group(1)) if m else None


@dataclass(frozen=True)
class Entry:
    """One listed video, ready to be a ``videos_discovered`` entry."""

    video_id: str
    url: str
    title: str | None
    site: str
    site_id: str

    def as_dict(self, priority: int = 0) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "url": self.url,
            "title": self.title,
            "priority": priority,
            "site": self.site,
            "site_id": self.site_id,
        }


@dataclass
class Flattened:
    """What one extraction listed: videos, lists to expand further (a channel's tabs), and what was skipped."""

    entries: list[Entry]
    nested: list[str]  # URLs of listings inside this one (expanded by the caller, within the limit)
    problems: list[str]


def _unsmuggle(url: str) -> tuple[str, dict[str, Any]]:
    """yt-dlp hides data in a URL's fragment (``#__youtubedl_smuggle=...``): the plain URL and that data."""
    base, sep, data = url.partition("#__youtubedl_smuggle=")
    if not sep:
        return url, {}
    try:
        import json

        found = json.loads(urllib.parse.unquote_plus(data))
    except ValueError:
        found = None
    return base, found if isinstance(found, dict) else {}


def _is_listing(entry: Mapping[str, Any]) -> bool:
    ie = site_name(entry.get("ie_key") or "")
    return entry.get("_type") in ("playlist", "multi_video") or (
        entry.get("_type") in ("url", "url_transparent") and ie.endswith(LISTING_IE_SUFFIXES)
    )


def entry_from_dict(
    entry: Mapping[str, Any], parent_extractor: object = None, parent_page: object = None
) -> Entry | str:
    """One flat entry (``{_type: url, ie_key, id, url, title}`` or a full info dict) as an Entry, or why not.

    A full info dict's own page (``webpage_url``) is its URL, unless that is the listing's page itself (videos
    embedded in one HTML page): then the media URL is."""
    page = entry.get("webpage_url") if entry.get("_type") not in ("url", "url_transparent") else None
    raw_url = page if page and page != parent_page else None
    raw_url = raw_url or entry.get("url") or entry.get("original_url")
    if not isinstance(raw_url, str):
        return f"entry {str(entry.get('id') or entry.get('title'))[:80]!r} has no URL"
    url, smuggled = _unsmuggle(raw_url)
    if not is_http_url(url):
        return f"entry URL {url[:200]!r} is not an http(s) URL"
    site = site_name(entry.get("ie_key") or entry.get("extractor_key") or parent_extractor)
    site_id = entry.get("id") or smuggled.get("force_videoid")
    if site in URL_ID_SITES or not isinstance(site_id, str) or not site_id:
        site_id = url
    title = entry.get("title")
    return Entry(
        video_id=derive_video_id(site, site_id, url),
        url=url,
        title=title if isinstance(title, str) else None,
        site=site,
        site_id=site_id,
    )


def entries_from_info(info: Mapping[str, Any], limit: int | None = None, depth: int = 0) -> Flattened:
    """The videos of one extraction result (``ie_result``), in the listing's order, at most `limit`.

    Entries are taken lazily: yt-dlp may hand a generator that fetches pages as it goes, and only
    `limit` of them are read. A list inside the list (a channel's tabs, a playlist of playlists) is
    flattened when yt-dlp already resolved it, else returned in ``nested`` for the caller to expand."""
    out = Flattened([], [], [])
    kind = info.get("_type", "video")
    if kind not in ("playlist", "multi_video"):
        got = entry_from_dict(info)
        (out.entries if isinstance(got, Entry) else out.problems).append(got)  # type: ignore[arg-type]
        return out
    parent = info.get("extractor_key") or info.get("ie_key")
    parent_page = info.get("webpage_url") or info.get("original_url")
    raw = info.get("entries") or ()
    for entry in _take(raw, limit):
        if not isinstance(entry, Mapping):
            continue  # yt-dlp gives None for an entry it could not read
        if entry.get("_type") in ("playlist", "multi_video") and depth < 3:
            left = None if limit is None else limit - len(out.entries)
            sub = entries_from_info(entry, left, depth + 1)
            out.entries.extend(sub.entries)
            out.nested.extend(sub.nested)
            out.problems.extend(sub.problems)
        elif _is_listing(entry):
            url = entry.get("url")
            if isinstance(url, str):
                out.nested.append(_unsmuggle(url)[0])
        else:
            got = entry_from_dict(entry, parent, parent_page)
            (out.entries if isinstance(got, Entry) else out.problems).append(got)  # type: ignore[arg-type]
        if limit is not None and len(out.entries) >= limit:
            del out.entries[limit:]
            break
    return out


def _take(entries: Iterable[Any], limit: int | None) -> Iterator[Any]:
    """Entries one at a time, never more than a limit's worth plus the lists among them."""
    if limit is None:
        yield from entries
        return
    # Nested lists do not count towards the limit, so read on past them, but never unboundedly.
    yield from islice(entries, limit * 4 + 16)


# -- dedupe and events -------------------------------------------------------------------------------


@dataclass
class Known:
    """What is known already: video ids, and the site keys and URLs of videos, each → its video_id."""

    ids: set[str]
    by_site: dict[str, str]
    by_url: dict[str, str]

    @classmethod
    def of(
        cls,
        video_ids: Iterable[str],
        discovered: Mapping[str, Mapping[str, Any]],
        manifest_entries: Mapping[str, Mapping[str, Any]],
    ) -> Known:
        known = cls(set(video_ids), {}, {})
        for entries in (discovered, manifest_entries):
            for vid, entry in entries.items():
                known.note(vid, entry)
        return known

    def note(self, vid: str, entry: Mapping[str, Any]) -> None:
        self.ids.add(vid)
        site, site_id, url = entry.get("site"), entry.get("site_id"), entry.get("url")
        if isinstance(site, str) and isinstance(site_id, str):
            self.by_site.setdefault(site_key(site, site_id), vid)
        if isinstance(url, str):
            self.by_url.setdefault(url, vid)
            key = url_site_key(url)
            if key is not None:
                self.by_site.setdefault(key, vid)

    def why_known(self, entry: Mapping[str, Any]) -> str | None:
        vid = entry["video_id"]
        if vid in self.ids:
            return f"already known as {vid}"
        key = site_key(entry["site"], entry["site_id"])
        other = self.by_site.get(key) or self.by_site.get(url_site_key(entry["url"]) or "")
        if other is not None:
            return f"same video as {other} ({key})"
        other = self.by_url.get(entry["url"])
        if other is not None:
            return f"same URL as {other}"
        return None


@dataclass(frozen=True)
class Skipped:
    video_id: str
    url: str
    reason: str


@dataclass
class Discovery:
    """What a set of listings adds: events to append, and per listing what it added and skipped."""

    drafts: list[Draft]
    added: dict[str, list[dict[str, Any]]]  # source name → new entries
    skipped: dict[str, list[Skipped]]


def discover_drafts(
    known: Known, listings: Sequence[Mapping[str, Any]], *, request: str | None = None, adhoc: bool = False
) -> Discovery:
    """Events for listings ``{source, url, priority, entries}``, in order: a ``videos_discovered`` with the
    entries not known yet (known by id, by site+id, or by URL — also within and across these listings),
    then a ``source_refreshed`` with the counts. `known` is updated."""
    result = Discovery([], {}, {})
    for listing in listings:
        name = str(listing["source"])
        priority = int(listing.get("priority") or 0)
        new: list[dict[str, Any]] = []
        skipped: list[Skipped] = []
        entries = listing.get("entries") or []
        for raw in entries:
            entry = {**raw, "priority": priority}
            why = known.why_known(entry)
            if why is not None:
                skipped.append(Skipped(entry["video_id"], entry["url"], why))
                continue
            known.note(entry["video_id"], entry)
            new.append(entry)
        if new:
            result.drafts.append({"type": "videos_discovered", "source": name, "entries": new} | _req(request))
        result.drafts.append(
            {
                "type": "source_refreshed",
                "name": name,
                "url": listing.get("url") or name,
                "count": len(entries),
                "new": len(new),
                "skipped": len(skipped),
                "adhoc": adhoc,
            }
            | _req(request)
        )
        result.added[name] = new
        result.skipped[name] = skipped
    return result


def _req(request: str | None) -> dict[str, str]:
    return {} if request is None else {"request": request}


def entry_problem(entry: object) -> str | None:
    """Why an entry sent in an ``add`` request cannot be used, or None (the daemon checks what nkoctl sent)."""
    if not isinstance(entry, Mapping):
        return f"entry is {type(entry).__name__}, not an object"
    vid = entry.get("video_id")
    if not safe_id(vid):
        return f"video_id {str(vid)[:80]!r} is not a safe id (letters, digits, '-', '_'; at most 64)"
    if not is_http_url(entry.get("url")):
        return f"{vid}: url {str(entry.get('url'))[:200]!r} is not an http(s) URL"
    for key in ("site", "site_id"):
        if not isinstance(entry.get(key), str) or not entry.get(key):
            return f"{vid}: {key!r} must be a non-empty string"
    if entry.get("title") is not None and not isinstance(entry.get("title"), str):
        return f"{vid}: 'title' must be a string"
    return None
