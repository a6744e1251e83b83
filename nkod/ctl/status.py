"""nkoctl status (box, --json, --watch) and metrics: where things stand."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from nkod import eventlog
from nkod.ctl.base import EXIT_INTERRUPTED, EXIT_LOG, CtlBase, CtlError, literal, resolve_data_dir
from nkod.errors import LogError
from nkod.paths import Paths
from nkod.state import Projector


def plain_status(data_dir: str | None, as_json: bool) -> int:
    """`nkoctl status [--json]` without --watch, as `nkod.ctl.main` calls it (without the full parser)."""
    from nkod.errors import RequestError

    ctl = StatusCommands(resolve_data_dir(None if data_dir is None else Path(data_dir)))
    try:
        return ctl.status(as_json, False, 2.0)
    except (CtlError, RequestError, PermissionError) as exc:
        return ctl.failed(exc)


class StatusCommands(CtlBase):
    def status(self, as_json: bool, watch: bool, interval: float) -> int:
        if not watch:
            fast = self.status_replay()  # a snapshot's summary and the tail: no need to rebuild every video
            if fast is not None:
                doc, damage = self.status_doc(fast.projector, None, fast.summary), None
            else:
                projector, damage = self.load_despite_damage()
                doc = self.status_doc(projector, damage)
            if as_json:
                sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                from nkod.render import status_panel

                self.out.print(status_panel(doc))
            if damage is not None:
                self.console.print(f"[red]nkoctl:[/] {literal(damage)}", highlight=False)
                return EXIT_LOG
            return 0
        follower = Follower(self.paths, self.load)
        if as_json or not sys.stdout.isatty():
            # Piped (or --json): one JSON document per refresh, one line each, flushed (JSON lines).
            try:
                doc = self.status_doc(follower.projector)
                while True:
                    sys.stdout.write(orjson.dumps(doc).decode() + "\n")
                    sys.stdout.flush()
                    time.sleep(interval)
                    doc = self.status_doc(follower.refresh())
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED
            except BrokenPipeError:
                return 0
        from rich.live import Live

        from nkod.render import status_panel

        with Live(status_panel(self.status_doc(follower.projector)), console=self.out, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(status_panel(self.status_doc(follower.refresh())), refresh=True)
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED
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
