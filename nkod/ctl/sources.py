"""nkoctl add and sources: videos from channels, playlists and feeds, and the followed sources' state."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nkod import eventlog, spool
from nkod.ctl.base import EXIT_ERROR, EXIT_USAGE, CtlBase, CtlError
from nkod.errors import ConfigError, LogError

if TYPE_CHECKING:  # nkoctl's other commands should not pay for yt-dlp's helpers and URL parsing
    from nkod.sources import Discovery

SYSTEM_CONFIG = Path("/etc/nkod/nkod.toml")


class SourcesCommands(CtlBase):
    def add(self, urls: list[str], limit: int | None, priority: int, dry_run: bool, as_json: bool, wait: float) -> int:
        """List each URL (yt-dlp, flat), then ask the daemon to add what is not known yet. All or nothing:
        if any URL cannot be listed, nothing is sent."""
        from nkod.expand import ListingError, list_url
        from nkod.manifest import load as load_manifest
        from nkod.sources import Known, discover_drafts, is_http_url

        for url in urls:
            if not is_http_url(url):
                raise CtlError(f"add: {url!r} is not an http(s) URL (a video, playlist, channel or feed)", EXIT_USAGE)
        if limit is not None and limit < 1:
            raise CtlError(f"add: --limit must be at least 1, got {limit}", EXIT_USAGE)
        p = self.load()
        listings: list[dict[str, Any]] = []
        failures: list[ListingError] = []
        for url in dict.fromkeys(urls):
            try:
                listing = list_url(url, limit)
            except ListingError as exc:
                failures.append(exc)
                continue
            entries = [e.as_dict(priority) for e in listing.entries]
            listings.append({"source": url, "url": url, "priority": priority, "entries": entries})
        if failures:
            from rich.markup import escape

            for failure in failures:
                self.console.print(f"[red]nkoctl:[/] add: {escape(str(failure))}", highlight=False)
            self.console.print("nothing added (fix or leave out the URL(s) above)", highlight=False)
            return EXIT_USAGE if any(f.kind == "bad-url" for f in failures) else EXIT_ERROR
        manifest = load_manifest(self.paths.root / "videos.jsonl")
        preview = discover_drafts(Known.of(p.videos, p.discovered, manifest.entries), listings)
        new = sum(len(v) for v in preview.added.values())
        request: Path | None = None
        if not dry_run and new:
            request = spool.submit(self.paths.requests, "add", listings=listings)
        if as_json:
            sys.stdout.write(
                orjson.dumps(self._add_doc(listings, preview, dry_run, request), option=orjson.OPT_INDENT_2).decode()
                + "\n"
            )
        else:
            self._print_preview(listings, preview, dry_run)
        if dry_run:
            self.console.print("dry run: nothing was added")
        elif not new:
            self.console.print("nothing to add: every listed video is already known")
        if request is not None:
            self._report_submission(request, f"add of {new} video(s)", wait)
            self._report_applied(request.name, p.offset, p.seq)
        return 0

    @staticmethod
    def _add_doc(
        listings: list[dict[str, Any]], preview: Discovery, dry_run: bool, request: Path | None
    ) -> dict[str, Any]:
        return {
            "dry_run": dry_run,
            "request": request.name if request is not None else None,
            "sources": [
                {
                    "source": lst["source"],
                    "listed": len(lst["entries"]),
                    "added": [
                        {k: e[k] for k in ("video_id", "url", "title", "priority")}
                        for e in preview.added[lst["source"]]
                    ],
                    "skipped": [
                        {"video_id": s.video_id, "url": s.url, "reason": s.reason}
                        for s in preview.skipped[lst["source"]]
                    ],
                }
                for lst in listings
            ],
        }

    def _print_preview(self, listings: list[dict[str, Any]], preview: Discovery, dry_run: bool) -> None:
        verb = "would add" if dry_run else "adding"
        for lst in listings:
            name = lst["source"]
            added, skipped = preview.added[name], preview.skipped[name]
            self.out.print(
                f"{name}: {len(lst['entries'])} listed, {verb} {len(added)}, skipping {len(skipped)} already known",
                highlight=False,
                markup=False,
            )
            for e in added:
                self.out.print(f"  + {e['video_id']}  {e.get('title') or e['url']}", highlight=False, markup=False)
            for s in skipped:
                self.out.print(f"  = {s.video_id}: {s.reason}", highlight=False, markup=False)

    def _report_applied(self, name: str, offset: int, seq: int) -> None:
        """What the daemon did with the request (it dedupes again: another add may have come first)."""
        added = skipped = 0
        found = False
        try:
            for e in eventlog.scan(self.paths.log, start_offset=offset, prev_seq=seq, first_line=seq + 1):
                if e.get("request") == name and e.get("type") == "source_refreshed":
                    found = True
                    added += int(e.get("new") or 0)
                    skipped += int(e.get("skipped") or 0)
        except (LogError, OSError, ValueError):
            return
        if found:
            self.console.print(f"nkod added {added} video(s), skipped {skipped} already known")

    def sources(self, config: Path | None, as_json: bool) -> int:
        """Configured ([[sources]]) and ad-hoc (nkoctl add) sources, with their last listing's outcome."""
        from nkod.config import load_config

        path = config or (Path(os.environ["NKOD_CONFIG"]) if os.environ.get("NKOD_CONFIG") else None)
        if path is None and SYSTEM_CONFIG.is_file():
            path = SYSTEM_CONFIG
        try:
            configured = load_config(path).sources if path is not None else ()
        except ConfigError as exc:
            raise CtlError(str(exc), EXIT_USAGE) from exc
        p = self.load()
        rows: list[dict[str, Any]] = []
        for src in configured:
            info = p.sources.get(src.name, {})
            rows.append(
                {
                    "name": src.name,
                    "url": src.url,
                    "kind": "followed",
                    "priority": src.priority,
                    "limit": src.limit,
                    "refresh": src.refresh,
                    **_state_fields(info),
                }
            )
        named = {src.name for src in configured}
        for name, info in p.sources.items():
            if name not in named:
                rows.append(
                    {
                        "name": name,
                        "url": info.get("url") or name,
                        "kind": "added" if info.get("adhoc") else "no longer configured",
                        **_state_fields(info),
                    }
                )
        if as_json:
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        if not rows:
            self.console.print(
                f"no sources: none configured ({path or 'no config file'}) and none added with nkoctl add"
            )
            return 0
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=escape(f"Sources ({path or 'no config file'})"))
        for col in ("name", "kind", "last listed", "listed", "videos added", "last error"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                escape(r["name"]),
                r["kind"],
                r["last_refresh"] or "never",
                str(r["count"]),
                str(r["total"]),
                f"[red]{escape(r['last_error'])}[/] ({r['last_error_at']})" if r["last_error"] else "",
            )
        self.out.print(table)
        return 0


def _state_fields(info: Any) -> dict[str, Any]:
    return {
        "last_refresh": info.get("last_refresh"),
        "count": info.get("count", 0),
        "total": info.get("total", 0),
        "last_error": info.get("last_error"),
        "last_error_at": info.get("last_error_at"),
    }


__all__ = ["EXIT_ERROR", "SourcesCommands"]
