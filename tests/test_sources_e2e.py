"""Sources end to end: the real nkoctl and nkod, yt-dlp listing a loopback HTTP server's RSS feeds and HTML
page of real clips (nothing leaves 127.0.0.1)."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import REPO, DataDir, binary, env, kill9, wait_for

CLIP = REPO / "data" / "samples" / "scenes_tones.mp4"


class Site:
    """A directory served on 127.0.0.1 (files may change between requests)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def clips(self, *names: str) -> None:
        for name in names:
            if not (self.root / name).exists():
                shutil.copyfile(CLIP, self.root / name)

    def feed(self, name: str, clips: list[str], copy: bool = True) -> str:
        """An RSS feed whose items are the clips (made real files unless `copy` is False); its URL."""
        if copy:
            self.clips(*clips)
        items = "".join(
            f"<item><title>Clip {c}</title><guid>{c}-guid</guid><link>{self.base}/{c}</link>"
            f'<enclosure url="{self.base}/{c}" type="video/mp4" length="1"/></item>'
            for c in clips
        )
        doc = (
            '<?xml version="1.0"?><rss version="2.0"><channel><title>Feed</title>'
            f"<link>{self.base}/</link><description>d</description>{items}</channel></rss>"
        )
        (self.root / name).write_text(doc)
        return f"{self.base}/{name}"

    def page(self, name: str, clips: list[str]) -> str:
        self.clips(*clips)
        videos = "".join(f'<video src="{c}"></video>' for c in clips)
        (self.root / name).write_text(f"<html><head><title>Page</title></head><body>{videos}</body></html>")
        return f"{self.base}/{name}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path / "site")
    yield s
    s.server.shutdown()
    s.server.server_close()


def _discovered(d: DataDir) -> list[dict[str, Any]]:
    return [entry for e in d.events() if e["type"] == "videos_discovered" for entry in e["entries"]]


def _urls(d: DataDir) -> list[str]:
    return [e["url"] for e in _discovered(d)]


def _follow(d: DataDir, *sources: dict[str, Any]) -> None:
    with open(d.config, "a") as f:
        for src in sources:
            f.write("\n[[sources]]\n" + "".join(f"{k} = {orjson.dumps(v).decode()}\n" for k, v in src.items()))


def test_add_a_feed_and_a_page_then_nkod_processes_them_with_the_real_pipeline(tmp_path: Path, site: Site) -> None:
    """nkoctl add lists an RSS feed and an HTML page (a clip on both is one video), prints what it adds and
    skips; nkod --once downloads and processes each with the built-in pipeline; a second add adds nothing."""
    feed = site.feed("feed.xml", ["a.mp4", "b.mp4"])
    page = site.page("page.html", ["b.mp4", "c.mp4"])
    d = DataDir(tmp_path / "data", processor="nkod.pipeline:process")
    r = d.ctl("add", feed, page)
    assert r.returncode == 0, r.stderr
    assert "Clip a.mp4" in r.stdout and f"{page}: 2 listed, adding 1, skipping 1" in r.stdout
    assert "same URL as generic-" in r.stdout
    run = d.run(timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(_urls(d)) == [f"{site.base}/{c}" for c in ("a.mp4", "b.mp4", "c.mp4")]
    assert d.status()["completed"] == 3
    done = [e for e in d.events() if e["type"] == "video_completed"]
    assert all(e["counts"]["frames"] > 0 for e in done)
    titles = {e["title"] for e in _discovered(d)}
    assert {"Clip a.mp4", "Clip b.mp4"} <= titles
    again = d.ctl("add", feed, "--json")
    assert again.returncode == 0, again.stderr
    doc = orjson.loads(again.stdout)
    assert doc["request"] is None and [len(s["skipped"]) for s in doc["sources"]] == [2]
    assert "nothing to add" in again.stderr


def test_dry_run_lists_but_adds_nothing(tmp_path: Path, site: Site) -> None:
    """--dry-run prints what would be added and writes no request and no event."""
    feed = site.feed("feed.xml", ["a.mp4", "b.mp4"])
    d = DataDir(tmp_path / "data")
    d.manifest([])  # (nkod --once with no manifest and nothing else to do is a usage error)
    assert d.run().returncode == 0
    before = d.log.read_bytes()
    r = d.ctl("add", "--dry-run", feed)
    assert r.returncode == 0, r.stderr
    assert "would add 2" in r.stdout and "dry run: nothing was added" in r.stderr
    assert not list((d.root / "requests").glob("*.json"))
    assert d.run().returncode == 0 and _discovered(d) == []
    assert d.log.read_bytes().startswith(before)


@pytest.mark.parametrize(
    ("path", "code", "says"),
    [
        ("/missing.xml", 1, "HTTP Error 404"),
        ("/plain.html", 2, "not something yt-dlp can list"),
        ("/empty.xml", 1, "no videos found"),
        ("ftp", 2, "is not an http(s) URL"),
        ("closed", 1, "Connection refused"),
    ],
)
def test_a_url_that_cannot_be_listed_names_it_and_nothing_is_written(
    tmp_path: Path, site: Site, path: str, code: int, says: str
) -> None:
    """Unreachable (404, connection refused), unsupported (a page with no video), an empty channel/feed and a
    non-http URL: a message naming the URL, exit 1 (could not list) or 2 (bad URL), and nothing added,
    even for the good URL given with it."""
    good = site.feed("feed.xml", ["a.mp4"])
    (site.root / "plain.html").write_text("<html><body>no videos here</body></html>")
    site.feed("empty.xml", [])
    url = {"ftp": "ftp://127.0.0.1/x", "closed": "http://127.0.0.1:9/x"}.get(path, site.base + path)
    d = DataDir(tmp_path / "data")
    d.root.mkdir(parents=True, exist_ok=True)
    r = d.ctl("add", good, url)
    assert r.returncode == code, r.stdout + r.stderr
    assert url in r.stderr and says in r.stderr
    assert not (d.root / "requests").exists() or not list((d.root / "requests").glob("*.json"))
    assert not d.log.exists()


def test_limit_5_of_a_10000_item_feed_adds_the_first_5(tmp_path: Path, site: Site) -> None:
    """--limit 5 on a listing of 10,000 videos adds its first 5, in order."""
    names = [f"v{i:05d}.mp4" for i in range(10_000)]
    feed = site.feed("big.xml", names, copy=False)
    d = DataDir(tmp_path / "data")
    r = d.ctl("add", "--limit", "5", "--priority", "3", feed, timeout=120)
    assert r.returncode == 0, r.stderr
    assert d.run(timeout=120).returncode == 0
    assert _urls(d) == [f"{site.base}/{n}" for n in names[:5]]
    assert {e["priority"] for e in _discovered(d)} == {3}


def test_two_adds_at_once_lose_nothing_and_duplicate_nothing(tmp_path: Path, site: Site) -> None:
    """Two nkoctl add with overlapping feeds, at the same time, against a running daemon: every video once."""
    one = site.feed("one.xml", ["a.mp4", "b.mp4", "c.mp4"])
    two = site.feed("two.xml", ["b.mp4", "c.mp4", "d.mp4"])
    d = DataDir(tmp_path / "data")
    proc = d.start()
    try:
        wait_for(lambda: "daemon_started" in d.types(), what="nkod started")
        adds = [
            subprocess.Popen(
                [binary("nkoctl"), "--data-dir", str(d.root), "add", url, "--wait", "30"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env(),
            )
            for url in (one, two, one)
        ]
        for a in adds:
            out, err = a.communicate(timeout=120)
            assert a.returncode == 0, out + err
        wanted = {f"{site.base}/{c}" for c in ("a.mp4", "b.mp4", "c.mp4", "d.mp4")}
        wait_for(lambda: d.status()["completed"] == 4, timeout=60, what="4 videos completed")
    finally:
        kill9(proc)
    urls = _urls(d)
    assert sorted(urls) == sorted(wanted)
    assert max(d.completed_count().values()) == 1 and len(d.completed_count()) == 4
    assert sum(1 for e in d.events() if e["type"] == "source_refreshed") == 3


def test_followed_sources_refresh_while_the_daemon_runs_and_failures_are_retried(tmp_path: Path, site: Site) -> None:
    """[[sources]]: a feed listed at start gains an item and the running daemon adds it without a restart; a
    source that fails (404) is a warning event with the reason, costs nothing, and is listed again at the
    next refresh; nkoctl sources shows each one's last refresh, count and error."""
    feed = site.feed("feed.xml", ["a.mp4", "b.mp4"])
    missing = f"{site.base}/later.xml"
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "local1"}])
    _follow(
        d, {"url": feed, "name": "feed", "priority": 2, "refresh": 1}, {"url": missing, "name": "later", "refresh": 1}
    )
    proc = d.start()
    try:
        wait_for(lambda: d.status()["completed"] == 3, timeout=60, what="feed and manifest videos completed")
        wait_for(lambda: "source_refresh_failed" in d.types(), timeout=30, what="the missing source recorded failed")
        failed = [e for e in d.events() if e["type"] == "source_refresh_failed"]
        assert failed and failed[0]["name"] == "later" and "404" in failed[0]["error"]
        site.feed("feed.xml", ["a.mp4", "b.mp4", "new.mp4"])
        wait_for(lambda: f"{site.base}/new.mp4" in _urls(d), timeout=30, what="the new item discovered")
        site.feed("later.xml", ["c.mp4"])
        wait_for(lambda: d.status()["completed"] == 5, timeout=60, what="new item and the recovered source done")
        r = d.ctl("sources", "--config", str(d.config), "--json")
        assert r.returncode == 0, r.stderr
        rows = {row["name"]: row for row in orjson.loads(r.stdout)}
        assert rows["feed"]["count"] == 3 and rows["feed"]["total"] == 3 and rows["feed"]["last_error"] is None
        assert rows["later"]["total"] == 1 and rows["later"]["last_refresh"] is not None
        assert proc.poll() is None
    finally:
        kill9(proc)
    assert {e["priority"] for e in _discovered(d) if e["url"].endswith(("a.mp4", "new.mp4"))} == {2}
    assert Counter(_urls(d)).most_common(1)[0][1] == 1


def test_once_lists_followed_sources_before_it_ends(tmp_path: Path, site: Site) -> None:
    """nkod --once lists each [[sources]] first, then processes what they added, then exits 0; a source that
    cannot be listed is recorded, never fatal."""
    feed = site.feed("feed.xml", ["a.mp4"])
    d = DataDir(tmp_path / "data")
    _follow(d, {"url": feed, "name": "feed"}, {"url": "http://127.0.0.1:9/gone.xml", "name": "gone"})
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.status()["completed"] == 1
    assert [e["name"] for e in d.events() if e["type"] == "source_refresh_failed"] == ["gone"]
    table = d.ctl("sources", "--config", str(d.config))
    assert table.returncode == 0 and "gone" in table.stdout and "Connection refused" in table.stdout
