"""What every nkoctl command shares: errors and exit codes, finding the data dir, reading the state."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson

from nkod import eventlog, lock, snapshot, views
from nkod.ctl import SYSTEM_DATA_DIR_NAME, data_dir_name
from nkod.errors import LockHeldError, LogCorruptError, LogError, RequestError
from nkod.fsutil import permission_problem, read_regular
from nkod.paths import Paths
from nkod.state import Projector

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any

    from rich.console import Console


# rich is imported only where something is drawn: `status --json` and scripts should not pay for it.

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_LOG = 4
EXIT_INTERRUPTED = 130  # Ctrl+C (`status --watch`, `log -f`, any command): 128 + SIGINT, as shells report it
SYSTEM_DATA_DIR = Path(SYSTEM_DATA_DIR_NAME)


def literal(text: object) -> str:
    """`text` made safe to put in a rich markup string: its brackets print as they are.

    Whatever comes from a video, a URL, a manifest, a path or an error (yt-dlp's "[youtube] ID: ...")
    goes through this (or into a rich Text) before a console prints it."""
    from rich.markup import escape

    return escape(str(text))


class CtlError(Exception):
    """A message for the user and an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def resolve_data_dir(given: Path | None) -> Path:
    """--data-dir, $NKOD_DATA_DIR, $STATE_DIRECTORY, ./data if it exists, the system service's
    /var/lib/nkod if it exists, else ./data (`nkod.ctl.data_dir_name`)."""
    return Path(data_dir_name(None if given is None else str(given)))


class CtlBase:
    """What every command group shares: the data dir's paths, the consoles, reading the state, the lock."""

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

    def failed(self, exc: CtlError | RequestError | PermissionError) -> int:
        """Say what went wrong, on stderr, and return the exit code (a CtlError's own, else EXIT_ERROR)."""
        # A PermissionError: which file, whose, which mode, and what to do; not a guess at the cause.
        message = permission_problem(exc) if isinstance(exc, PermissionError) else exc
        self.console.print(f"[red]nkoctl:[/] {literal(message)}", highlight=False)
        return exc.code if isinstance(exc, CtlError) else EXIT_ERROR

    def daemon_pid(self, for_status: bool = False) -> int | None:
        """The running daemon's PID, or None. `for_status`: status's display, which also takes "its last
        holder has exited" from nkod.lock alone, as status's fast path does (`proclocks.holder_pid`): both
        paths then answer alike, and neither waits on /proc/locks after a crash."""
        return lock.holder_pid(self.paths.root, trust_exited=for_status)

    def load(self) -> Projector:
        if not self.paths.root.is_dir():
            raise CtlError(f"{self.paths.root}: no such data directory (use --data-dir)")
        try:
            replay = snapshot.replay(self.paths.log, self.paths.snapshot)
        except LogCorruptError as exc:
            raise CtlError(str(exc), EXIT_LOG) from exc
        except LogError as exc:
            raise CtlError(str(exc), EXIT_LOG) from exc
        self._note_torn(replay.scan)
        return replay.projector

    def _note_torn(self, scan: eventlog.ScanResult) -> None:
        if scan.torn is not None:
            t = scan.torn
            self.console.print(
                f"[yellow]note:[/] {literal(self.paths.log)} ends in a torn line {t.line} ({t.length} bytes,"
                f" {literal(t.reason)});"
                " the daemon cuts it at its next start",
                highlight=False,
            )

    def status_replay(self) -> snapshot.StatusReplay | None:
        """The snapshot's summary plus the log's tail, for status (None: no usable snapshot, or a damaged
        log: then a full replay, which says what is wrong)."""
        if not self.paths.root.is_dir():
            return None
        try:
            fast = snapshot.status_replay(self.paths.log, self.paths.snapshot)
        except LogError:
            return None
        if fast is not None:
            self._note_torn(fast.scan)
        return fast

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

    def status_doc(
        self,
        projector: Projector | None = None,
        log_damaged: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`summary`: views.summary of the state's videos, when `projector` holds only some of them."""
        p = projector or self.load()
        pid = self.daemon_pid(for_status=True)
        activity = self.activity() if pid else None
        session = views.live_session_seconds(activity, pid, time.monotonic())
        from nkod import spool

        if not spool.pending(self.paths.requests):
            doc = views.status_doc(p, datetime.now(UTC), pid, activity, session, summary)
        else:  # shown as they will be once applied: then status needs every video, not the summary
            from nkod import steering

            if summary is not None:
                p = self.load()
            log_seq = p.seq
            available = self.available_entries(p)
            # As the daemon will apply them: the manifest lines it has not read yet first, then the requests.
            new = [vid for vid in available or () if vid not in p.videos]
            if new:
                p = steering.preview(
                    p, [{"type": "videos_added", "video_ids": new}], p.last_ts or "1970-01-01T00:00:00Z"
                )
            shown, queued = self.with_queued_requests(p, available, pid)
            doc = views.status_doc(shown, datetime.now(UTC), pid, activity, session)
            doc["seq"] = log_seq  # the log's, not the preview's
            doc["pending_requests"] = queued
        doc["log_damaged"] = log_damaged
        return doc

    def available_entries(self, p: Projector) -> Mapping[str, Any] | None:
        """The entries videos may run from, as the daemon sees them; None when the manifest cannot be read
        (then nothing is called removed)."""
        from nkod import decide
        from nkod.manifest import load as load_manifest

        m = load_manifest(self.paths.root / "videos.jsonl")
        if not m.readable or not (self.paths.root / "videos.jsonl").is_file():
            return None
        return decide.available_entries(p, m.entries)  # a view: no line parsed until asked for

    def with_queued_requests(
        self, p: Projector, available: Mapping[str, Any] | None, pid: int | None
    ) -> tuple[Projector, list[dict[str, Any]]]:
        """The state as it will be once the request files waiting in requests/ are applied (steering and
        retry requests), and a description of each: nkoctl status and plan show both."""
        from nkod import decide, spool, steering
        from nkod.errors import RequestError

        paths = spool.pending(self.paths.requests)
        if not paths:
            return p, []
        state = "pending (nkod has not applied it yet)" if pid else "queued (daemon not running)"
        shown = steering.preview(p, [], p.last_ts or "1970-01-01T00:00:00.000000Z")
        listed: list[dict[str, Any]] = []
        for path in paths:
            try:
                req = spool.parse(path)
            except (RequestError, OSError) as exc:
                listed.append({"file": path.name, "type": None, "state": "invalid: " + str(exc)})
                continue
            item: dict[str, Any] = {"file": path.name, "type": req.type, "state": state}
            if isinstance(req.body.get("video_ids"), list):
                item["video_ids"] = req.body["video_ids"]
            if req.type in steering.REQUESTS:
                videos = steering.with_entries(shown.videos, available or {})
                drafts, _refused = steering.request_drafts(videos, req.type, req.body, req.name)
            elif req.type == "retry":
                drafts, _ids = decide.retry_drafts(shown, req.body.get("video_ids"), req.name)
            else:
                drafts = []
            if drafts:
                shown = steering.preview(shown, drafts, shown.last_ts or "1970-01-01T00:00:00.000000Z")
            listed.append(item)
        return shown, listed

    def _report_submission(self, path: Path, what: str, wait: float) -> None:
        pid = self.daemon_pid()
        if pid is None:
            self.console.print(literal(f"queued {what}; nkod is not running: applied when it starts ({path.name})"))
            return
        deadline = time.monotonic() + wait
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if path.exists():
            self.console.print(literal(f"queued {what}; nkod (PID {pid}) has not picked it up yet ({path.name})"))
        elif (path.parent / "rejected" / path.name).exists():
            reason_file = path.parent / "rejected" / f"{path.name}.reason.txt"
            reason = read_regular(reason_file, 1 << 20, follow_symlinks=False).decode(errors="replace").strip()
            raise CtlError(f"nkod rejected the request: {reason}")
        else:
            self.console.print(literal(f"done: {what} (nkod PID {pid})"))

    def _take_lock(self, what: str) -> lock.DataDirLock:
        """The daemon's own lock (the data directory's), so no nkod can start or append meanwhile."""
        if not self.paths.root.is_dir():
            raise CtlError(f"{what}: {self.paths.root}: no such data directory (use --data-dir)")
        try:
            return lock.acquire(self.paths.root)
        except LockHeldError as exc:
            who = f"PID {exc.pid}" if exc.pid else "PID unknown"
            raise CtlError(
                f"{what}: nkod is running ({who}) on {self.paths.root}; stop it first (systemctl stop nkod)"
            ) from None
