"""Sources, the pure half and its edges: id rules, yt-dlp's listing shapes, dedupe, the fold of the new events,
snapshots, the config's [[sources]], the add request, and the golden sources log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from nkod import decide, eventlog, snapshot, spool
from nkod.config import config_from_mapping
from nkod.errors import ConfigError, RequestError
from nkod.sources import Known, derive_video_id, discover_drafts, entries_from_info, entry_problem, url_site_key
from nkod.state import Status, fold
from tests.strategies import stamp

SOURCES_LOG = Path(__file__).parent / "data" / "sources-v1"
YT = "https://www.youtube.com/watch?v="


# -- id rules --------------------------------------------------------------------------------------


def test_a_youtube_video_keeps_its_own_id() -> None:
    """A YouTube id is safe and unique site-wide: it is the video_id as is (as in manifests and the old tool)."""
    assert derive_video_id("youtube", "dQw4w9WgXcQ", YT + "dQw4w9WgXcQ") == "dQw4w9WgXcQ"


def test_another_sites_id_is_prefixed_with_the_site() -> None:
    """Numeric ids of two sites would collide: they are prefixed (vimeo-123 is not dailymotion-123)."""
    assert derive_video_id("vimeo", "123", "https://vimeo.com/123") == "vimeo-123"
    assert derive_video_id("dailymotion", "123", "https://dai.ly/123") == "dailymotion-123"


@pytest.mark.parametrize("site_id", ["../../etc/passwd", "a b", "é", "x" * 70, "", None])
def test_an_unsafe_or_missing_site_id_gets_a_stable_id_from_the_url(site_id: str | None) -> None:
    """An id that cannot name a directory is never used: a hash of the URL stands in, the same every time."""
    url = "https://example.org/v/1"
    vid = derive_video_id("youtube", site_id, url)
    assert vid == derive_video_id("youtube", site_id, url)
    assert vid.startswith("youtube-") and len(vid) == len("youtube-") + 16
    assert entry_problem({"video_id": vid, "url": url, "site": "youtube", "site_id": "x"}) is None


def test_generic_pages_and_feeds_are_identified_by_url() -> None:
    """A generic page's ids (page-1, a file's stem) are not unique: two feeds' 'clip' are two videos."""
    a = derive_video_id("generic", "clip", "http://one.example/clip.mp4")
    b = derive_video_id("generic", "clip", "http://two.example/clip.mp4")
    assert a != b and a.startswith("generic-")


def test_youtube_urls_name_their_site_key() -> None:
    """watch, shorts and youtu.be URLs of one video share its site key; other URLs have none."""
    keys = {
        url_site_key(u)
        for u in (YT + "dQw4w9WgXcQ", "https://youtu.be/dQw4w9WgXcQ", "https://www.youtube.com/shorts/dQw4w9WgXcQ")
    }
    assert keys == {"youtube:dQw4w9WgXcQ"}
    assert url_site_key("https://example.org/watch?v=dQw4w9WgXcQ") is None


# -- listings, in the shapes yt-dlp's own extractors and processing make ---------------------------------


def _ydl_flat(ie_result: dict[str, Any], limit: int | None = None) -> dict[str, Any]:
    """Run an extractor's result through yt-dlp's own processing, flat, as `nkoctl add` does (no network:
    flat `url` entries are not resolved)."""
    import yt_dlp

    opts: dict[str, Any] = {"extract_flat": "in_playlist", "quiet": True, "lazy_playlist": True}
    if limit:
        opts["playlistend"] = limit
    with yt_dlp.YoutubeDL(opts) as ydl:
        result: dict[str, Any] = ydl.process_ie_result(ie_result, download=False)
    return result


def _channel_videos(count: int, read: list[int]) -> dict[str, Any]:
    """A YouTube channel's Videos tab as YoutubeTabIE returns it: a playlist of Youtube url results, lazy."""
    from yt_dlp.extractor.common import InfoExtractor
    from yt_dlp.extractor.youtube import YoutubeIE

    def entries() -> Iterator[dict[str, Any]]:
        for i in range(count):
            read.append(i)
            vid = f"Vid{i:08d}"
            yield YoutubeIE.url_result(YT + vid, YoutubeIE, vid, f"Video {i}")

    result: dict[str, Any] = InfoExtractor.playlist_result(entries(), "UCaaaaaaaaaaaaaaaaaaaaaa", "Chan - Videos")
    result.update(
        extractor_key="YoutubeTab", extractor="youtube:tab", webpage_url="https://www.youtube.com/@chan/videos"
    )
    return result


def test_a_channel_tab_lists_its_videos_in_order_with_their_own_ids() -> None:
    """Each entry of a channel's Videos tab becomes a video: its YouTube id, watch URL and title, in order."""
    flat = entries_from_info(_ydl_flat(_channel_videos(3, [])))
    assert [(e.video_id, e.url, e.title, e.site, e.site_id) for e in flat.entries] == [
        (f"Vid{i:08d}", f"{YT}Vid{i:08d}", f"Video {i}", "youtube", f"Vid{i:08d}") for i in range(3)
    ]


def test_limit_5_of_a_10000_entry_channel_reads_only_what_it_needs() -> None:
    """--limit 5 on a 10,000-video listing takes 5, and yt-dlp (playlistend) reads only those from the site."""
    read: list[int] = []
    flat = entries_from_info(_ydl_flat(_channel_videos(10_000, read), limit=5), limit=5)
    assert [e.video_id for e in flat.entries] == [f"Vid{i:08d}" for i in range(5)]
    assert len(read) <= 6


def test_a_channel_home_page_lists_its_tabs_for_expansion() -> None:
    """A channel's home (/@handle) is a list of tabs (YoutubeTab url results): they are lists to expand, not videos."""
    from yt_dlp.extractor.common import InfoExtractor
    from yt_dlp.extractor.youtube import YoutubeTabIE

    tabs = [
        YoutubeTabIE.url_result("https://www.youtube.com/@chan/videos", YoutubeTabIE, None, "Chan - Videos"),
        YoutubeTabIE.url_result("https://www.youtube.com/@chan/shorts", YoutubeTabIE, None, "Chan - Shorts"),
    ]
    home = InfoExtractor.playlist_result(tabs, "UCaaaaaaaaaaaaaaaaaaaaaa", "Chan")
    home.update(extractor_key="YoutubeTab", extractor="youtube:tab")
    flat = entries_from_info(_ydl_flat(home))
    assert flat.entries == []
    assert flat.nested == ["https://www.youtube.com/@chan/videos", "https://www.youtube.com/@chan/shorts"]


def test_a_playlist_of_playlists_is_flattened_and_a_single_video_is_one_entry() -> None:
    """Nested playlists already resolved are flattened in order; a single video's info is one entry."""
    from yt_dlp.extractor.common import InfoExtractor
    from yt_dlp.extractor.youtube import YoutubeIE

    inner = [
        InfoExtractor.playlist_result(
            [YoutubeIE.url_result(YT + f"Abcdefghij{n}", YoutubeIE, f"Abcdefghij{n}")], f"PL{n}"
        )
        for n in range(2)
    ]
    outer = InfoExtractor.playlist_result(inner, "PLouter")
    assert [e.video_id for e in entries_from_info(outer).entries] == ["Abcdefghij0", "Abcdefghij1"]
    single = {
        "_type": "video",
        "id": "dQw4w9WgXcQ",
        "webpage_url": YT + "dQw4w9WgXcQ",
        "extractor_key": "Youtube",
        "title": "T",
    }
    assert [e.video_id for e in entries_from_info(single).entries] == ["dQw4w9WgXcQ"]


def test_an_entry_without_an_http_url_is_reported_not_added() -> None:
    """A listed entry with no URL, or a non-http one, is a problem naming it; the others are still listed."""
    listing = {
        "_type": "playlist",
        "entries": [
            {"_type": "url", "ie_key": "Youtube", "id": "dQw4w9WgXcQ", "url": YT + "dQw4w9WgXcQ"},
            {"_type": "url", "ie_key": "Generic", "id": "x", "url": "file:///etc/passwd"},
            {"_type": "url", "id": "y"},
            None,
        ],
    }
    flat = entries_from_info(listing)
    assert [e.video_id for e in flat.entries] == ["dQw4w9WgXcQ"]
    assert any("file:///etc/passwd" in p for p in flat.problems) and any("'y'" in p for p in flat.problems)


def test_an_rss_items_smuggled_url_is_cleaned() -> None:
    """yt-dlp's generic RSS entries hide data in the URL fragment: the video's URL is the plain one."""
    smuggled = "http://127.0.0.1:1/a.mp4#__youtubedl_smuggle=%7B%22force_videoid%22%3A+%22a-guid%22%7D"
    flat = entries_from_info(
        {
            "_type": "playlist",
            "extractor_key": "Generic",
            "entries": [{"_type": "url_transparent", "url": smuggled, "title": "A"}],
        }
    )
    assert flat.entries[0].url == "http://127.0.0.1:1/a.mp4"


# -- dedupe --------------------------------------------------------------------------------------


def _entry(vid: str, url: str, site: str = "youtube", site_id: str | None = None) -> dict[str, Any]:
    return {"video_id": vid, "url": url, "title": None, "priority": 0, "site": site, "site_id": site_id or vid}


def test_known_videos_are_skipped_by_id_url_and_site_key_with_reasons() -> None:
    """Skipped: a known id; the same YouTube video under a manifest line of another id (site key from its URL);
    the same URL; a repeat within the listing. The rest are added, in listing order, with the source's priority."""
    manifest = {"mine": {"video_id": "mine", "url": "https://youtu.be/Bbbbbbbbbbb"}}
    known = Known.of(["Aaaaaaaaaaa"], {}, manifest)
    entries = [
        _entry("Aaaaaaaaaaa", YT + "Aaaaaaaaaaa"),
        _entry("Bbbbbbbbbbb", YT + "Bbbbbbbbbbb"),
        _entry("Ccccccccccc", YT + "Ccccccccccc"),
        _entry("generic-1", "https://youtu.be/Bbbbbbbbbbb", "generic", "https://youtu.be/Bbbbbbbbbbb"),
        _entry("Ccccccccccc", YT + "Ccccccccccc"),
        _entry("Ddddddddddd", YT + "Ddddddddddd"),
    ]
    found = discover_drafts(known, [{"source": "chan", "url": "u", "priority": 7, "entries": entries}])
    assert [e["video_id"] for e in found.added["chan"]] == ["Ccccccccccc", "Ddddddddddd"]
    assert all(e["priority"] == 7 for e in found.added["chan"])
    reasons = {s.video_id: s.reason for s in found.skipped["chan"]}
    assert reasons["Aaaaaaaaaaa"] == "already known as Aaaaaaaaaaa"
    assert reasons["Bbbbbbbbbbb"] == "same video as mine (youtube:Bbbbbbbbbbb)"
    assert reasons["generic-1"].startswith("same video as mine")
    assert len(found.skipped["chan"]) == 4
    assert [d["type"] for d in found.drafts] == ["videos_discovered", "source_refreshed"]
    assert found.drafts[1] | {} == found.drafts[1] and found.drafts[1]["new"] == 2 and found.drafts[1]["count"] == 6


def test_the_same_video_under_a_channel_and_a_playlist_is_one_video() -> None:
    """Two listings (a channel and a playlist) showing one YouTube video add it once."""
    v = _entry("Eeeeeeeeeee", YT + "Eeeeeeeeeee")
    found = discover_drafts(
        Known.of([], {}, {}),
        [
            {"source": "chan", "entries": [v]},
            {"source": "playlist", "entries": [{**v, "url": YT + "Eeeeeeeeeee&list=PL1"}]},
        ],
    )
    assert [e["video_id"] for e in found.added["chan"]] == ["Eeeeeeeeeee"] and found.added["playlist"] == []


def test_a_listing_with_nothing_new_still_records_its_refresh() -> None:
    """No videos_discovered without new videos, but a source_refreshed all the same (nkoctl sources shows it)."""
    found = discover_drafts(
        Known.of(["Aaaaaaaaaaa"], {}, {}), [{"source": "s", "entries": [_entry("Aaaaaaaaaaa", YT + "Aaaaaaaaaaa")]}]
    )
    assert [d["type"] for d in found.drafts] == ["source_refreshed"]


# -- the fold, snapshots, available entries ----------------------------------------------------------


def _discovered(source: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"type": "videos_discovered", "source": source, "entries": list(entries)}


def test_discovered_videos_are_pending_and_runnable_with_the_manifest_line_winning() -> None:
    """videos_discovered makes pending videos in listing order; available_entries merges them with the
    manifest, whose line wins for the same id; the first discovery of an id wins over later ones."""
    log = stamp(
        [
            {"type": "log_created", "log_id": "x"},
            _discovered("chan", _entry("Aaaaaaaaaaa", YT + "Aaaaaaaaaaa"), _entry("Bbbbbbbbbbb", YT + "Bbbbbbbbbbb")),
            _discovered("other", _entry("Aaaaaaaaaaa", "https://elsewhere.example/")),
        ]
    )
    state = fold(log)
    assert list(state.queue_order) == ["Aaaaaaaaaaa", "Bbbbbbbbbbb"]
    assert state.videos["Aaaaaaaaaaa"].status is Status.PENDING
    assert (
        state.discovered["Aaaaaaaaaaa"]["url"] == YT + "Aaaaaaaaaaa"
        and state.discovered["Aaaaaaaaaaa"]["source"] == "chan"
    )
    line = {"video_id": "Bbbbbbbbbbb", "path": "/local/b.mp4"}
    available = decide.available_entries(state, {"Bbbbbbbbbbb": line})
    assert available["Bbbbbbbbbbb"] is line and available["Aaaaaaaaaaa"]["url"] == YT + "Aaaaaaaaaaa"


def test_available_entries_are_a_view_of_discovered_and_manifest_without_parsing_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merged entries behave as {**discovered, **manifest} (order, membership, length, priorities) and
    parse a manifest line only when it is asked for."""
    from nkod import manifest

    path = tmp_path / "videos.jsonl"
    path.write_bytes(
        b'{"video_id":"m1","url":"https://x.example/1","priority":5}\n{"video_id":"d1","url":"https://x.example/d"}\n'
    )
    entries = manifest.load(path).entries
    discovered = {"d1": {"video_id": "d1", "url": "https://y/", "priority": 9}, "d2": {"video_id": "d2", "priority": 2}}
    view = decide.Available(discovered, entries)
    assert list(view) == ["d2", "m1", "d1"] and len(view) == 3 and "d2" in view and "zz" not in view
    assert view["d1"]["url"] == "https://x.example/d"  # the manifest's line wins
    assert view.priorities == {"d2": 2, "m1": 5}
    calls: list[str] = []
    original = manifest.Entries.__getitem__

    def counted(self: manifest.Entries, vid: str) -> dict[str, Any]:
        calls.append(vid)
        return original(self, vid)

    monkeypatch.setattr(manifest.Entries, "__getitem__", counted)
    assert "m1" in view and len(view) == 3 and view.priorities and list(view)
    assert calls == []


def test_discovered_videos_and_sources_survive_a_snapshot(tmp_path: Path) -> None:
    """Discovered entries and each source's refresh state go through a real snapshot file unchanged."""
    log_path, snap = tmp_path / "events.jsonl", tmp_path / "snapshot.json"
    w = eventlog.LogWriter(log_path, 1)
    w.append(
        [
            {"type": "log_created", "log_id": "x"},
            _discovered("chan", _entry("Aaaaaaaaaaa", YT + "Aaaaaaaaaaa")),
            {"type": "source_refreshed", "name": "chan", "url": "u", "count": 1, "new": 1},
            {"type": "source_refresh_failed", "name": "chan", "url": "u", "error": "HTTP Error 404"},
        ],
        "2026-11-28T05:00:00.000000Z",
    )
    r = snapshot.replay(log_path, snap)
    snapshot.write(snap, r.projector)
    again = snapshot.replay(log_path, snap)
    assert again.snapshot_used
    assert again.projector.state() == snapshot.replay(log_path, snap, use_snapshot=False).projector.state()
    assert (
        again.projector.sources["chan"]["last_error"] == "HTTP Error 404"
        and again.projector.sources["chan"]["total"] == 1
    )
    assert list(again.projector.discovered) == ["Aaaaaaaaaaa"]


def test_the_sources_golden_log_replays_to_its_recorded_state() -> None:
    """tests/data/sources-v1 (odd values included) replays forever to exactly the recorded state."""
    events, result = eventlog.read_all(SOURCES_LOG / "events.jsonl")
    assert result.torn is None
    doc = snapshot.state_to_doc(fold(events))
    doc["offset"] = result.end_offset
    assert orjson.loads(orjson.dumps(doc)) == orjson.loads((SOURCES_LOG / "state.json").read_bytes())
    kinds = {e["type"] for e in events}
    assert {"videos_discovered", "source_refreshed", "source_refresh_failed"} <= kinds


# -- config and requests -----------------------------------------------------------------------------


def test_sources_tables_are_read_with_defaults_and_max_videos_as_limit() -> None:
    """[[sources]]: name defaults to the URL; max_videos is limit; priority and refresh are kept."""
    cfg = config_from_mapping(
        {
            "sources": [
                {"url": "https://www.youtube.com/@a/videos", "priority": 5, "max_videos": 20, "refresh": 600},
                {"url": "http://x/feed.xml", "name": "feed"},
            ]
        },
        "t.toml",
    )
    a, b = cfg.sources
    assert (a.name, a.priority, a.limit, a.refresh) == ("https://www.youtube.com/@a/videos", 5, 20, 600.0)
    assert (b.name, b.limit, b.refresh) == ("feed", 0, 3600.0)


@pytest.mark.parametrize(
    ("sources", "key"),
    [
        ([{"url": "http://x/1"}, {"url": "http://x/2", "refresh": -1}], "sources[2].refresh"),
        ([{"url": "ftp://x/1"}], "sources[1].url"),
        ([{"name": "n"}], "sources[1].url"),
        ([{"url": "http://x/1", "colour": "red"}], "sources[1].colour"),
        ([{"url": "http://x/1", "limit": 3, "max_videos": 4}], "sources[1].max_videos"),
        ([{"url": "http://x/1", "name": "a"}, {"url": "http://x/2", "name": "a"}], "sources[2].name"),
        ([{"url": "http://x/1", "priority": "high"}], "sources[1].priority"),
    ],
)
def test_a_bad_sources_entry_names_its_key(sources: list[dict[str, Any]], key: str) -> None:
    """A bad [[sources]] value is an error naming the file and the entry's key (counted from 1)."""
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({"sources": sources}, "t.toml")
    assert str(exc.value).startswith(f"t.toml: {key}:")


def test_an_add_request_with_an_unsafe_id_is_rejected_naming_it(tmp_path: Path) -> None:
    """The daemon checks what nkoctl sent: an entry with an unsafe id or a non-http URL rejects the request."""
    good = _entry("Aaaaaaaaaaa", YT + "Aaaaaaaaaaa")
    path = spool.submit(tmp_path / "requests", "add", listings=[{"source": "s", "entries": [good]}])
    assert spool.parse(path).body["listings"][0]["entries"] == [good]
    bad = spool.submit(
        tmp_path / "requests", "add", listings=[{"source": "s", "entries": [good, {**good, "video_id": "../x"}]}]
    )
    with pytest.raises(RequestError, match=r"listings\[0\]\.entries\[1\]: video_id '\.\./x'"):
        spool.parse(bad)
