"""``nkoctl``: see where things stand and steer the daemon. Never writes the event log (fsck --repair
and reset excepted, and those only while no daemon runs: they take the daemon's lock themselves)."""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nkod import codec, decide, eventlog, lock, snapshot, spool, views
from nkod.errors import LockHeldError, LogCorruptError, LogError, RequestError
from nkod.fsutil import fsync_dir, fsync_file, make_dir, owner_for, read_regular
from nkod.manifest import id_problem
from nkod.manifest import load as load_manifest
from nkod.paths import Paths
from nkod.state import Projector, Status, format_ts

if TYPE_CHECKING:
    from rich.console import Console

# rich is imported only where something is drawn: `status --json` and scripts should not pay for it.

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_LOG = 4
SYSTEM_DATA_DIR = Path("/var/lib/nkod")
MAX_CHECKPOINT_BYTES = 1 << 30  # the old run's checkpoint: a bound on what a wrong file can cost


class CtlError(Exception):
    """A message for the user and an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def resolve_data_dir(given: Path | None) -> Path:
    """--data-dir, $NKOD_DATA_DIR, $STATE_DIRECTORY, ./data if it exists, the system service's
    /var/lib/nkod if it exists, else ./data."""
    if given is not None:
        return given
    for var in ("NKOD_DATA_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return Path(value.split(":")[0])
    local = Path("data")
    if local.is_dir():
        return local
    if SYSTEM_DATA_DIR.is_dir():
        return SYSTEM_DATA_DIR
    return local


class Ctl:
    def __init__(self, data_dir: Path, console: Console | None = None) -> None:
        self.paths = Paths(data_dir)
        self._console = console
        self._out: Console | None = None

    @property
    def console(self) -> Console:
        """Messages, on stderr."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._console

    @property
    def out(self) -> Console:
        """Results, on stdout."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(soft_wrap=True, highlight=False)
        return self._out

    # -- reading the state ---------------------------------------------------------------------
    def daemon_pid(self) -> int | None:
        return lock.holder_pid(self.paths.root)

    def load(self) -> Projector:
        if not self.paths.root.is_dir():
            raise CtlError(f"{self.paths.root}: no such data directory (use --data-dir)")
        try:
            replay = snapshot.replay(self.paths.log, self.paths.snapshot)
        except LogCorruptError as exc:
            raise CtlError(str(exc), EXIT_LOG) from exc
        except LogError as exc:
            raise CtlError(str(exc), EXIT_LOG) from exc
        if replay.scan.torn is not None:
            t = replay.scan.torn
            self.console.print(
                f"[yellow]note:[/] {self.paths.log} ends in a torn line {t.line} ({t.length} bytes, {t.reason});"
                " the daemon cuts it at its next start",
                highlight=False,
            )
        return replay.projector

    def activity(self) -> dict[str, Any] | None:
        try:
            doc = orjson.loads(read_regular(self.paths.activity, 64 << 20, follow_symlinks=False))
        except (OSError, orjson.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def load_despite_damage(self) -> tuple[Projector, str | None]:
        """The state, and what is wrong with the log if nkod would refuse it (None when it would not).

        A damaged log still shows where things stood: the snapshot's state (its head is not trusted for
        nkod, but it is the best picture) plus what of the tail reads, else the events before the damage."""
        try:
            return self.load(), None
        except CtlError as exc:
            if not isinstance(exc.__cause__, LogCorruptError):
                raise
            damage = str(exc.__cause__)
        loaded = snapshot.load(self.paths.snapshot, self.paths.log, check_head=False)
        p = Projector(loaded.state)
        result = eventlog.ScanResult()
        start, seq = (loaded.state.offset, loaded.state.seq) if loaded.state else (0, 0)
        try:
            for e in eventlog.scan(self.paths.log, start_offset=start, prev_seq=seq, first_line=seq + 1, result=result):
                p.apply(e)
        except LogError:
            pass  # the damage itself, or more of it: what was read so far stands
        p.offset = result.end_offset
        return p, damage

    def status_doc(self, projector: Projector | None = None, log_damaged: str | None = None) -> dict[str, Any]:
        p = projector or self.load()
        pid = self.daemon_pid()
        activity = self.activity() if pid else None
        session = views.live_session_seconds(activity, pid, time.monotonic())
        doc = views.status_doc(p, datetime.now(UTC), pid, activity, session)
        doc["log_damaged"] = log_damaged
        return doc

    # -- commands ------------------------------------------------------------------------------
    def status(self, as_json: bool, watch: bool, interval: float) -> int:
        if not watch:
            projector, damage = self.load_despite_damage()
            doc = self.status_doc(projector, damage)
            if as_json:
                sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                from nkod.render import status_panel

                self.out.print(status_panel(doc))
            if damage is not None:
                self.console.print(f"[red]nkoctl:[/] {damage}", highlight=False)
                return EXIT_LOG
            return 0
        from rich.live import Live

        from nkod.render import status_panel

        follower = Follower(self.paths, self.load)
        with Live(status_panel(self.status_doc(follower.projector)), console=self.out, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(status_panel(self.status_doc(follower.refresh())), refresh=True)
            except KeyboardInterrupt:
                pass
        return 0

    def retry(self, ids: list[str], wait: float) -> int:
        for vid in ids:
            why = id_problem(vid)
            if why:
                raise CtlError(f"retry: {why}", EXIT_USAGE)
        p = self.load()
        _drafts, refused = decide.retry_drafts(p, ids or None, "preview")
        if ids and len(refused) == len(set(ids)):
            for vid in refused:
                v = p.videos.get(vid)
                self.console.print(f"{vid}: {'unknown video' if v is None else v.status.value}: nothing to retry")
            return EXIT_ERROR
        targets = [
            vid
            for vid in (ids or [v.video_id for v in p.videos.values() if v.status is Status.FAILED])
            if vid not in refused
        ]
        if not targets:
            self.console.print("no failed videos to retry")
            return 0
        for vid in refused:
            v = p.videos.get(vid)
            self.console.print(f"[yellow]skipped[/] {vid}: {'unknown video' if v is None else v.status.value}")
        path = spool.submit(self.paths.requests, "retry", video_ids=ids or None)
        self._report_submission(path, f"retry of {len(targets)} video(s): {', '.join(targets[:10])}", wait)
        return 0

    def _report_submission(self, path: Path, what: str, wait: float) -> None:
        pid = self.daemon_pid()
        if pid is None:
            self.console.print(f"queued {what}; nkod is not running: applied when it starts ({path.name})")
            return
        deadline = time.monotonic() + wait
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if path.exists():
            self.console.print(f"queued {what}; nkod (PID {pid}) has not picked it up yet ({path.name})")
        elif (path.parent / "rejected" / path.name).exists():
            reason_file = path.parent / "rejected" / f"{path.name}.reason.txt"
            reason = read_regular(reason_file, 1 << 20, follow_symlinks=False).decode(errors="replace").strip()
            raise CtlError(f"nkod rejected the request: {reason}")
        else:
            self.console.print(f"done: {what} (nkod PID {pid})")

    def plan(self, as_json: bool) -> int:
        p = self.load()
        m = load_manifest(self.paths.root / "videos.jsonl")
        known = set(p.videos)
        available = list(m.entries)
        # Lines the daemon has not read yet would be added as pending at the end, in manifest order.
        new = [vid for vid in m.entries if vid not in known]
        rows = decide.plan(p.state(), available, datetime.now(UTC))
        runs = [r for r in rows if r.action == "run"]
        others = [r for r in rows if r.action != "run"]
        rows = runs + [decide.PlanRow(v, "run", "new in the manifest") for v in new] + others
        if as_json:
            doc = [
                {"video_id": r.video_id, "action": r.action, "reason": r.reason}
                | ({} if r.wait_seconds is None else {"wait_seconds": r.wait_seconds})
                for r in rows
            ]
            sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        from rich.table import Table

        table = Table(title=f"Plan for {self.paths.root} ({sum(r.action == 'run' for r in rows)} to run)")
        table.add_column("#", justify="right")
        table.add_column("video")
        table.add_column("action")
        table.add_column("why")
        n = 0
        for r in rows:
            if r.action == "run":
                n += 1
            style = {"run": "green", "wait": "yellow", "skip": "dim"}[r.action]
            table.add_row(str(n) if r.action == "run" else "", r.video_id, f"[{style}]{r.action}[/]", r.reason)
        self.out.print(table)
        for problem in m.problems:
            self.console.print(f"[yellow]skipped line[/] {problem}", highlight=False)
        return 0

    def show(self, vid: str) -> int:
        why = id_problem(vid)
        if why:
            raise CtlError(f"show: {why}", EXIT_USAGE)
        p = self.load()
        v = p.videos.get(vid)
        if v is None:
            raise CtlError(f"{vid}: not known in {self.paths.log}")
        self.out.print(f"[bold]{vid}[/]: {v.status.value}", highlight=False)
        for key in (
            "attempt",
            "failures",
            "starts",
            "error",
            "error_kind",
            "not_before",
            "retry_delay",
            "started_at",
            "completed_at",
            "failed_at",
            "imported",
        ):
            value = getattr(v, key)
            if value not in (None, 0, False):
                self.out.print(f"  {key}: {value}", highlight=False)
        if v.counts:
            self.out.print("  counts: " + ", ".join(f"{k}={val}" for k, val in v.counts.items()), highlight=False)
        out_dir = self.paths.output / vid
        if out_dir.is_dir():
            self.out.print(f"  output: {out_dir}", highlight=False)
        self.out.print("history:")
        from nkod.render import event_line

        for e in eventlog.scan(self.paths.log):
            if e.get("video_id") == vid or vid in (e.get("video_ids") or ()):
                self.out.print("  " + event_line(e), highlight=False)
        return 0

    def log(self, follow: bool, lines: int | None, as_json: bool, vid: str | None) -> int:
        path = self.paths.log
        start = tail_offset(path, lines) if lines is not None else 0
        from nkod.render import event_line

        def emit(e: dict[str, Any]) -> None:
            if vid and e.get("video_id") != vid:
                return
            if as_json:
                sys.stdout.write(orjson.dumps(e).decode() + "\n")
            else:
                sys.stdout.write(event_line(e) + "\n")

        result = eventlog.ScanResult()
        try:
            for e in eventlog.scan(path, start_offset=start, result=result):
                emit(e)
            sys.stdout.flush()
            offset, seq = result.end_offset, result.last_seq
            while follow:
                time.sleep(0.3)
                size = path.stat().st_size if path.exists() else 0
                if size < offset:  # reset or repair replaced the log
                    offset, seq = 0, 0
                    sys.stdout.write("-- log replaced, reading from the start --\n")
                if size == offset:
                    continue
                result = eventlog.ScanResult()
                for e in eventlog.scan(path, start_offset=offset, prev_seq=seq, result=result):
                    emit(e)
                sys.stdout.flush()
                offset, seq = result.end_offset, result.last_seq
        except LogError as exc:
            raise CtlError(str(exc), EXIT_LOG) from exc
        except (KeyboardInterrupt, BrokenPipeError):
            pass
        return 0

    def fsck(self, repair: bool) -> int:
        return Fsck(self.paths, self.console).run(repair)

    def reset(self, yes: bool, confirm: Callable[[str], str] = input) -> int:
        held = self._take_lock("reset")
        try:
            if not self.paths.log.exists():
                self.console.print(f"nothing to reset: {self.paths.log} does not exist")
                return 0
            p = self.load()
            done = sum(1 for v in p.videos.values() if v.status is Status.COMPLETED)
            if not yes:
                answer = confirm(
                    f"Archive the log ({p.seq} events, {done} completed videos) and the outputs, and start "
                    f"a fresh run? Type 'reset' to confirm: "
                )
                if answer.strip() != "reset":
                    self.console.print("not reset")
                    return EXIT_ERROR
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            target = self.paths.archive / stamp
            try:
                make_dir(self.paths.archive, owner_for(self.paths.root))
                target.mkdir()
                for item in (self.paths.log, self.paths.snapshot, self.paths.checkpoints):
                    if item.exists():
                        os.rename(item, target / item.name)
                if self.paths.output.exists():
                    self._archive_output(target, stamp)
            except OSError as exc:
                raise CtlError(
                    f"reset stopped: {exc.strerror or exc}: {exc.filename or ''}; what was moved is in {target}"
                ) from exc
            self.console.print(f"archived to {target}; the next nkod start begins a fresh run")
            return 0
        finally:
            held.release()

    def _archive_output(self, target: Path, stamp: str) -> None:
        """Move output/ into the archive; output/ as a mount point (its own file system) cannot be
        moved, so its contents are moved into ``output/.archive/STAMP`` on that same file system."""
        out = self.paths.output
        try:
            os.rename(out, target / out.name)
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EBUSY):
                raise
        inner = out / ".archive" / stamp
        inner.mkdir(parents=True)
        for entry in sorted(os.listdir(out)):
            if entry != ".archive":
                os.rename(out / entry, inner / entry)
        self.console.print(
            f"{out} is a mount point (a separate file system), so it stays where it is: its contents were "
            f"moved to {inner} on that file system, not to {target}. Delete them there when no longer needed."
        )

    def _take_lock(self, what: str) -> lock.DataDirLock:
        """The daemon's own lock (the data directory's), so no nkod can start or append meanwhile."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        try:
            return lock.acquire(self.paths.root)
        except LockHeldError as exc:
            who = f"PID {exc.pid}" if exc.pid else "PID unknown"
            raise CtlError(
                f"{what}: nkod is running ({who}) on {self.paths.root}; stop it first (systemctl stop nkod)"
            ) from None

    def import_checkpoint(self, file: Path, wait: float) -> int:
        completed, failed = parse_seed_checkpoint(file)
        path = spool.submit(
            self.paths.requests, "import_checkpoint", completed=completed, failed=failed, source=str(file)
        )
        self._report_submission(path, f"import of {len(completed)} completed and {len(failed)} failed", wait)
        return 0

    def metrics(self, output: Path | None) -> int:
        """The daemon's Prometheus metrics, from the log (for node_exporter's textfile collector)."""
        from nkod.fsutil import atomic_write
        from nkod.metrics import exposition, summarize

        text = exposition(summarize(self.load(), datetime.now(UTC), self.daemon_pid() is not None))
        if output is None:
            sys.stdout.buffer.write(text)
            sys.stdout.flush()
        else:  # the collector must never read half a file
            try:
                atomic_write(output, text, mode=0o644)
            except OSError as exc:
                raise CtlError(f"{output}: cannot write: {exc.strerror or exc}") from exc
        return 0


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


def tail_offset(path: Path, lines: int) -> int:
    """Byte offset where the last `lines` lines of `path` begin."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if lines <= 0:
        return size
    with open(path, "rb") as f:
        pos = size
        found = 0
        block = 65536
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step)
            end = len(data) - 1 if pos + step == size else len(data)
            idx = end
            while True:
                idx = data.rfind(b"\n", 0, idx)
                if idx < 0:
                    break
                found += 1
                if found >= lines:
                    return pos + idx + 1
        return 0


class Follower:
    """Keeps a projector current by scanning only what was appended since the last look."""

    def __init__(self, paths: Paths, load: Callable[[], Projector]) -> None:
        self.paths = paths
        self._load = load
        self.projector = load()

    def refresh(self) -> Projector:
        p = self.projector
        try:
            size = self.paths.log.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < p.offset:
            self.projector = self._load()
            return self.projector
        result = eventlog.ScanResult()
        try:
            for e in eventlog.scan(self.paths.log, start_offset=p.offset, prev_seq=p.seq, result=result):
                p.apply(e)
        except LogError:
            self.projector = self._load()
            return self.projector
        p.offset = result.end_offset
        return p


class Fsck:
    """Explains what is wrong with a log and repairs it (keeping a backup) when asked."""

    def __init__(self, paths: Paths, console: Console) -> None:
        self.paths = paths
        self.console = console

    def run(self, repair: bool) -> int:
        path = self.paths.log
        if not path.exists():
            self.console.print(f"{path}: no log yet; nothing to check")
            return 0
        # --repair takes the daemon's lock before reading, so no append can slip in between.
        held = Ctl(self.paths.root, self.console)._take_lock("fsck --repair") if repair else None
        try:
            return self._check(path, repair)
        finally:
            if held is not None:
                held.release()

    def _check(self, path: Path, repair: bool) -> int:
        good, bad, gaps, torn_at, newer = self._classify(path)
        if newer:
            line_no, version = newer
            self.console.print(
                f"{path}: line {line_no} has format version {version}, this nkod reads up to"
                f" {codec.FORMAT_VERSION}: it was written by a newer nkod. Upgrade nkod; nothing was changed.",
                highlight=False,
            )
            return EXIT_LOG
        if not bad and not gaps and torn_at is None:
            self.console.print(f"{path}: OK, {len(good)} events, seq 1..{len(good)}")
            return 0
        for line_no, offset, reason, raw in bad:
            self.console.print(f"{path}: line {line_no} (byte offset {offset}): {reason}", highlight=False)
            self.console.print(f"    {raw[:200]!r}", highlight=False)
        for line_no, offset, reason in gaps:
            self.console.print(f"{path}: line {line_no} (byte offset {offset}): {reason}", highlight=False)
        if torn_at is not None:
            self.console.print(f"{path}: torn tail from byte {torn_at} (a write cut by a crash or power loss)")
        if not repair:
            self.console.print("run `nkoctl fsck --repair` (with nkod stopped) to repair; a backup is kept")
            return EXIT_LOG
        return self._repair(path, good, bad, gaps, torn_at)

    def _classify(
        self, path: Path
    ) -> tuple[
        list[dict[str, Any]],
        list[tuple[int, int, str, bytes]],
        list[tuple[int, int, str]],
        int | None,
        tuple[int, int] | None,
    ]:
        """Good events; damaged or repeated lines to drop (line, offset, reason, bytes); seq gaps, whose
        events are kept (line, offset, reason); where a torn tail starts; and the first line of a newer
        format (line, version). Lines are judged by ``codec.check`` and torn tails found by the same rule
        as nkod's reader (eventlog.scan): bad lines after the last line whose checksum holds."""
        data = path.read_bytes()
        good: list[dict[str, Any]] = []
        bad: list[tuple[int, int, str, bytes]] = []
        offset = 0
        raw_lines = data.split(b"\n")
        last = raw_lines.pop()  # after the final newline: b"" unless the last write was torn
        last_checksummed = 0  # the last line whose checksum holds: bad lines before it are damage
        newer: tuple[int, int] | None = None
        decoded: list[tuple[int, int, bytes, dict[str, Any] | None, str]] = []
        for number, raw in enumerate(raw_lines, start=1):
            try:
                e = codec.check(raw)
                decoded.append((number, offset, raw, e, ""))
                last_checksummed = number
            except codec.NewerVersion as exc:
                newer = newer or (number, exc.version)
                last_checksummed = number
            except codec.BadRecord as exc:
                decoded.append((number, offset, raw, None, str(exc)))
                last_checksummed = number
            except codec.LineError as exc:
                decoded.append((number, offset, raw, None, str(exc)))
            offset += len(raw) + 1
        if last:
            try:
                codec.decode(last)
                last_checksummed = len(raw_lines) + 1  # an unterminated but checksummed last line
            except codec.LineError:
                pass
        torn_at: int | None = None
        gaps: list[tuple[int, int, str]] = []
        expect = 1
        for number, off, raw, maybe, reason in decoded:
            if maybe is None:
                if number > last_checksummed:
                    torn_at = off if torn_at is None else torn_at
                else:
                    bad.append((number, off, reason, raw))
                continue
            e = maybe
            if e["seq"] < expect:  # a repeated or out-of-order line: dropped
                bad.append((number, off, f"seq {e['seq']} again (expected {expect})", raw))
                continue
            if e["seq"] > expect:  # lines are missing before this one: it is kept
                gaps.append((number, off, f"seq jumps from {expect - 1} to {e['seq']} (lines missing)"))
            expect = e["seq"] + 1
            good.append(e)
        if last:
            torn_at = offset if torn_at is None else torn_at
        return good, bad, gaps, torn_at, newer

    def _repair(
        self,
        path: Path,
        good: list[dict[str, Any]],
        bad: list[tuple[int, int, str, bytes]],
        gaps: list[tuple[int, int, str]],
        torn_at: int | None,
    ) -> int:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = path.with_name(f"{path.name}.bak-{stamp}")
        shutil.copy2(path, backup)
        fsync_file(backup)
        fsync_dir(path.parent)  # the backup exists before the log is touched
        # Keep every good event in order, renumbered so seq is contiguous again, and say what was dropped.
        # orig_seq keeps the number an output's summary.json may name (video_started), across repairs.
        events = []
        for seq, e in enumerate(good, start=1):
            e = dict(e)
            if e["seq"] != seq:
                e.setdefault("orig_seq", e["seq"])
            e["seq"] = seq
            events.append(e)
        dropped = [{"line": n, "offset": off, "reason": reason} for n, off, reason, _raw in bad]
        restored = self._restore_completions(events)
        events.extend(restored)
        events.append(
            {
                "v": codec.FORMAT_VERSION,
                "seq": len(events) + 1,
                "ts": format_ts(datetime.now(UTC)),
                "type": "log_repaired",
                "dropped": dropped,
                "gaps": [{"line": n, "offset": off, "reason": reason} for n, off, reason in gaps],
                "torn_at": torn_at,
                "backup": backup.name,
                "restored": [e["video_id"] for e in restored],
            }
        )
        tmp = path.with_name(f".{path.name}.repair")
        with open(tmp, "wb") as f:
            owner = owner_for(self.paths.root)
            if owner is not None:  # sudo nkoctl fsck --repair: the service must still append to it
                os.fchown(f.fileno(), *owner)
            for e in events:
                f.write(codec.encode(e))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
        self.paths.snapshot.unlink(missing_ok=True)  # offsets changed: rebuilt at the next start
        self.console.print(
            f"repaired {path}: kept {len(good)} events, dropped {len(bad)} damaged line(s)"
            + (", cut the torn tail" if torn_at is not None else "")
            + f"; backup at {backup}"
        )
        for e in restored:
            self.console.print(
                f"restored the completion of {e['video_id']} from {e['restored_from']} (its line was dropped)",
                highlight=False,
            )
        if bad:
            self.console.print(
                "videos whose events were dropped may run again, except those with a committed output;"
                " nothing completed is deleted"
            )
        return 0

    def _restore_completions(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``video_completed`` events for committed outputs (``output/<id>/summary.json``) whose completion
        the repaired log lacks (its line was dropped), so a finished video is not redone. Numbered after
        `events`, stamped with the last kept event's time (a repair must not stretch elapsed time)."""
        projector = Projector()
        try:
            projector.apply_all(events)
        except (KeyError, TypeError, ValueError) as exc:
            self.console.print(f"[yellow]note:[/] cannot fold the repaired log ({exc!r}); no completion restored")
            return []
        ts = events[-1]["ts"] if events else format_ts(datetime.now(UTC))
        restored: list[dict[str, Any]] = []
        for vid, summary_path, summary in committed_outputs(self.paths.output, self.console):
            v = projector.videos.get(vid)
            if v is not None and v.status is Status.COMPLETED:
                continue
            restored.append(
                {
                    "v": codec.FORMAT_VERSION,
                    "seq": len(events) + len(restored) + 1,
                    "ts": ts,
                    "type": "video_completed",
                    "video_id": vid,
                    "attempt": summary["attempt"],
                    "counts": summary["counts"],
                    "recovered": True,
                    # The summary names the seq its start had before any renumbering (orig_seq).
                    "started_seq": summary["started_seq"],
                    "restored_from": str(summary_path.relative_to(self.paths.root)),
                }
            )
        return restored


def committed_outputs(output: Path, console: Console) -> list[tuple[str, Path, dict[str, Any]]]:
    """(video_id, summary path, summary) of each committed output, sorted by id; an unreadable or
    inconsistent summary is named on `console` and skipped."""
    found: list[tuple[str, Path, dict[str, Any]]] = []
    if not output.is_dir():
        return found
    for folder in sorted(output.iterdir()):
        summary_path = folder / "summary.json"
        if not folder.is_dir() or id_problem(folder.name) or not summary_path.exists():
            continue
        try:
            doc = orjson.loads(summary_path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            console.print(f"[yellow]skipped[/] {summary_path}: unreadable ({exc})", highlight=False)
            continue
        problem = _summary_problem(doc, folder.name)
        if problem:
            console.print(f"[yellow]skipped[/] {summary_path}: {problem}", highlight=False)
            continue
        found.append((folder.name, summary_path, doc))
    return found


def _summary_problem(doc: object, vid: str) -> str | None:
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("video_id") != vid:
        return f"video_id {doc.get('video_id')!r} does not match its folder {vid!r}"
    for key in ("started_seq", "attempt"):
        if type(doc.get(key)) is not int:
            return f"{key!r} is {doc.get(key)!r}, not an integer"
    counts = doc.get("counts")
    if not isinstance(counts, dict) or not all(
        isinstance(k, str) and type(n) in (int, float) for k, n in counts.items()
    ):
        return f"'counts' is {counts!r}, not an object of numbers"
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nkoctl", description="See where nkod stands and steer it.")
    p.add_argument("--data-dir", type=Path, help="data directory (default: $NKOD_DATA_DIR, ./data, /var/lib/nkod)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("status", help="progress, failures, what runs now (works with or without the daemon)")
    s.add_argument("--json", action="store_true", help="machine-readable")
    s.add_argument("--watch", action="store_true", help="refresh live until Ctrl+C")
    s.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    r = sub.add_parser("retry", help="run failed videos again (no IDs: all failed)")
    r.add_argument("ids", nargs="*", metavar="ID")
    r.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a running daemon to confirm")
    pl = sub.add_parser("plan", help="what would run, in order, and what is skipped and why")
    pl.add_argument("--json", action="store_true")
    sh = sub.add_parser("show", help="one video's state and history")
    sh.add_argument("id", metavar="ID")
    lg = sub.add_parser("log", help="print events readably")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    lg.add_argument("-n", "--lines", type=int, help="only the last N events")
    lg.add_argument("--json", action="store_true", help="raw JSON lines")
    lg.add_argument("--video", metavar="ID", help="only this video's events")
    fs = sub.add_parser("fsck", help="check the log; explain damage; --repair fixes it (backup kept)")
    fs.add_argument("--repair", action="store_true")
    rs = sub.add_parser("reset", help="archive the log and outputs and start a fresh run (daemon stopped)")
    rs.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    im = sub.add_parser("import-checkpoint", help="import the old run_extraction.py's checkpoint")
    im.add_argument("file", type=Path)
    im.add_argument("--wait", type=float, default=5.0)
    rp = sub.add_parser(
        "report",
        help="write one self-contained HTML report with plots (needs nkod[report])",
        description="Write one self-contained HTML file (plots inlined, no network needed to open it): progress "
        "and rate, time per video, failures by reason, N'Ko detections and audio per video, dataset totals, "
        "the slowest and the failed videos.",
        epilog="example: nkoctl report -o run.html",
    )
    rp.add_argument("-o", "--output", type=Path, default=Path("report.html"), help="file to write ('-': stdout)")
    cp = sub.add_parser(
        "completion",
        help="print the shell completion script for nkoctl",
        description="Print nkoctl's completion script for bash, zsh or fish (generated from the parser).",
        epilog='example: eval "$(nkoctl completion bash)"   (or: nkoctl completion fish | source)',
    )
    cp.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    mt = sub.add_parser("metrics", help="Prometheus metrics from the log (for node_exporter's textfile collector)")
    mt.add_argument("-o", "--output", type=Path, help="write this file atomically (e.g. DIR/nkod.prom), not stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if argv is None and "_ARGCOMPLETE" in os.environ:  # a completion request from the shell script
        from nkod.completion import complete

        complete(parser)
    args = parser.parse_args(argv)
    ctl = Ctl(resolve_data_dir(args.data_dir))
    try:
        match args.command:
            case "status":
                return ctl.status(args.json, args.watch, args.interval)
            case "retry":
                return ctl.retry(args.ids, args.wait)
            case "plan":
                return ctl.plan(args.json)
            case "show":
                return ctl.show(args.id)
            case "log":
                return ctl.log(args.follow, args.lines, args.json, args.video)
            case "fsck":
                return ctl.fsck(args.repair)
            case "reset":
                return ctl.reset(args.yes)
            case "import-checkpoint":
                return ctl.import_checkpoint(args.file, args.wait)
            case "report":
                from nkod.report import write_report

                return write_report(ctl, args.output)
            case "completion":
                from nkod.completion import script

                sys.stdout.write(script(args.shell))
                return 0
            case "metrics":
                return ctl.metrics(args.output)
    except CtlError as exc:
        ctl.console.print(f"[red]nkoctl:[/] {exc}", highlight=False)
        return exc.code
    except RequestError as exc:
        ctl.console.print(f"[red]nkoctl:[/] {exc}", highlight=False)
        return EXIT_ERROR
    except PermissionError as exc:
        ctl.console.print(f"[red]nkoctl:[/] {exc} (are you in the nkod group?)", highlight=False)
        return EXIT_ERROR
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
