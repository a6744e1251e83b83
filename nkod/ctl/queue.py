"""nkoctl retry, plan and import-checkpoint: what runs next, and requests to the daemon."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import filterfalse, groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nkod.fsutil import read_regular
from nkod.manifest import LoadAside, id_problem
from nkod.state import Status

if TYPE_CHECKING:
    from nkod.decide import PlanRow

from nkod.ctl.base import EXIT_ERROR, EXIT_USAGE, CtlBase, CtlError, literal

MAX_CHECKPOINT_BYTES = 1 << 30  # the old run's checkpoint: a bound on what a wrong file can cost


class QueueCommands(CtlBase):
    def retry(self, ids: list[str], wait: float, as_json: bool = False) -> int:
        from nkod import decide, spool

        for vid in ids:
            why = id_problem(vid)
            if why:
                raise CtlError(f"retry: {why}", EXIT_USAGE)
        p = self.load()
        _drafts, refused = decide.retry_drafts(p, ids or None, "preview")
        if ids and len(refused) == len(set(ids)):
            for vid in refused:
                v = p.videos.get(vid)
                self.console.print(
                    f"{vid}: {'unknown video' if v is None else v.status.value}: nothing to retry", markup=False
                )
            return EXIT_ERROR
        targets = [
            vid
            for vid in (ids or [v.video_id for v in p.videos.values() if v.status is Status.FAILED])
            if vid not in refused
        ]
        skipped = [
            {"id": vid, "status": "unknown video" if p.videos.get(vid) is None else p.videos[vid].status.value}
            for vid in refused
        ]
        if not targets:
            self.console.print("no failed videos to retry")
            if as_json:
                sys.stdout.write(orjson.dumps({"queued": [], "skipped": skipped, "request": None}).decode() + "\n")
            return 0
        for item in skipped:
            self.console.print(f"[yellow]skipped[/] {literal(item['id'])}: {item['status']}")
        path = spool.submit(self.paths.requests, "retry", video_ids=ids or None)
        self._report_submission(path, f"retry of {len(targets)} video(s): {', '.join(targets[:10])}", wait)
        if as_json:
            doc = {"queued": targets, "skipped": skipped, "request": path.name, "applied": not path.exists()}
            sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        return 0

    def plan(self, as_json: bool) -> int:
        from nkod import gcpause

        with gcpause.paused():  # a row per video: a million-line manifest makes millions of objects
            return self._plan(as_json)

    def _plan(self, as_json: bool) -> int:
        from nkod import decide, steering

        # The manifest is read in a child process while the snapshot is read here (each ~1 s for a million).
        manifest_read = LoadAside(self.paths.root / "videos.jsonl")
        try:
            p = self.load()
        except BaseException:
            manifest_read.discard()
            raise
        m = manifest_read.result(p.videos)
        available = decide.available_entries(p, m.entries)  # the manifest and videos found by nkoctl add
        # Lines the daemon has not read yet: it adds them as pending (in manifest order) when it reads the
        # manifest, before it applies the requests waiting in requests/; both are shown done, in that order.
        # The common case of a big manifest: its ids are the log's videos, in the same order (the daemon
        # added them all); one comparison in memory order instead of a lookup of each id by hash.
        same = len(available) == len(p.videos) and list(available) == list(p.videos)
        new = [] if same else list(filterfalse(p.videos.__contains__, available))  # (C-level)
        if new:
            p = steering.preview(p, [{"type": "videos_added", "video_ids": new}], p.last_ts or "1970-01-01T00:00:00Z")
        shown, queued = self.with_queued_requests(p, available, self.daemon_pid())
        rows = decide.plan(shown, available, datetime.now(UTC), every_video_available=same and shown is p)
        if new:
            fresh = set(new)
            rows = [r._replace(reason=r.reason + " (new in the manifest)") if r.video_id in fresh else r for r in rows]
        # (on stderr: plan --json stays a list of rows)
        if shown.paused:
            self.console.print("[yellow]paused:[/] nothing starts until `nkoctl resume`", highlight=False)
        for req in queued:
            target = "".join(f" {vid}" for vid in req.get("video_ids") or [])
            self.console.print(f"[yellow]request {req['type']}{target}[/]: {req['state']}", highlight=False)
        if as_json:
            for text in plan_json(rows):
                sys.stdout.write(text)
            return 0
        from rich.table import Table
        from rich.text import Text

        # Ids, reasons (error texts: "[youtube] ID: ...") and the path are shown literally, never as markup.
        table = Table(title=Text(f"Plan for {self.paths.root} ({sum(r.action == 'run' for r in rows)} to run)"))
        table.add_column("#", justify="right")
        table.add_column("video")
        table.add_column("action")
        table.add_column("why")
        n = 0
        for r in rows:
            if r.action == "run":
                n += 1
            style = {"run": "green", "wait": "yellow", "skip": "dim"}[r.action]
            table.add_row(
                str(n) if r.action == "run" else "", Text(r.video_id), Text(r.action, style=style), Text(r.reason)
            )
        self.out.print(table)
        for problem in m.problems:
            self.console.print(f"[yellow]skipped line[/] {literal(problem)}", highlight=False)
        return 0

    def import_checkpoint(self, file: Path, wait: float) -> int:
        from nkod import spool

        completed, failed = parse_seed_checkpoint(file)
        path = spool.submit(
            self.paths.requests, "import_checkpoint", completed=completed, failed=failed, source=str(file)
        )
        self._report_submission(path, f"import of {len(completed)} completed and {len(failed)} failed", wait)
        return 0


_PLAN_HEAD = '  {\n    "video_id": '
_PLAIN_IDS = re.compile(r"[A-Za-z0-9_-]*")  # ids JSON writes as they are, between quotes
_PLAN_CHUNK = 10_000
_ROW_KIND = itemgetter(1, 2, 3)  # action, reason, wait_seconds
_ROW_ID = itemgetter(0)


def plan_json(rows: list[PlanRow]) -> Iterator[str]:
    """`plan --json`: the rows as a JSON list of {video_id, action, reason[, wait_seconds]} objects, the
    same text as ``orjson.dumps(list of dicts, OPT_INDENT_2)`` plus a newline, written a chunk of rows at a
    time: a million rows as one list of dicts and one document cost ~1 s and their memory twice over.
    Consecutive rows that differ only in their id (most of a big plan: "run", "pending") are written by
    one join of their ids."""
    if not rows:
        yield "[]\n"
        return
    dump = orjson.dumps
    yield "[\n"
    for start in range(0, len(rows), _PLAN_CHUNK):
        parts = []
        for (action, reason, wait), group in groupby(rows[start : start + _PLAN_CHUNK], _ROW_KIND):
            ids = list(map(_ROW_ID, group))
            waited = "" if wait is None else ',\n    "wait_seconds": ' + dump(wait).decode()
            tail = f',\n    "action": {dump(action).decode()},\n    "reason": {dump(reason).decode()}{waited}\n  }}'
            if _PLAIN_IDS.fullmatch("".join(ids)):
                parts.append(_PLAN_HEAD + '"' + ('"' + tail + ",\n" + _PLAN_HEAD + '"').join(ids) + '"' + tail)
            else:
                parts.append(",\n".join(_PLAN_HEAD + dump(vid).decode() + tail for vid in ids))
        yield (",\n" if start else "") + ",\n".join(parts)
    yield "\n]\n"


def parse_seed_checkpoint(file: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Read the old run_extraction.py's extraction_checkpoint.json; errors name the file and entry."""
    try:
        doc = orjson.loads(read_regular(file, MAX_CHECKPOINT_BYTES))
    except OSError as exc:
        raise CtlError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise CtlError(f"{file}: not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("completed_videos", []), list):
        raise CtlError(f"{file}: not an extraction_checkpoint.json (needs a 'completed_videos' list)")
    completed: list[str] = []
    for i, vid in enumerate(doc.get("completed_videos", [])):
        why = id_problem(vid)
        if why:
            raise CtlError(f"{file}: completed_videos[{i}]: {why}")
        completed.append(vid)
    failed: list[dict[str, Any]] = []
    raw_failed = doc.get("failed_videos", [])
    if not isinstance(raw_failed, list):
        raise CtlError(f"{file}: 'failed_videos' must be a list")
    for i, f in enumerate(raw_failed):
        if not isinstance(f, dict):
            raise CtlError(f"{file}: failed_videos[{i}]: expected an object with id, error, timestamp")
        why = id_problem(f.get("id"))
        if why:
            raise CtlError(f"{file}: failed_videos[{i}]: {why}")
        failed.append({"id": f["id"], "error": str(f.get("error", "")), "timestamp": str(f.get("timestamp", ""))})
    return completed, failed
