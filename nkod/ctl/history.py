"""nkoctl show and log: one video's story, and the log's events."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nkod import eventlog
from nkod.errors import LogError
from nkod.fsutil import open_regular
from nkod.manifest import id_problem

if TYPE_CHECKING:
    pass

from nkod.ctl.base import EXIT_INTERRUPTED, EXIT_LOG, EXIT_USAGE, CtlBase, CtlError


class HistoryCommands(CtlBase):
    SHOW_FIELDS = (
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
    )

    def show(self, vid: str, as_json: bool = False) -> int:
        why = id_problem(vid)
        if why:
            raise CtlError(f"show: {why}", EXIT_USAGE)
        p = self.load()
        v = p.videos.get(vid)
        if v is None:
            raise CtlError(f"{vid}: not known in {self.paths.log}")
        from rich.markup import escape
        from rich.text import Text

        from nkod.render import INTERNAL_COUNTS, counts_text, event_line, value_text

        out_dir = self.paths.output / vid
        history = [
            e for e in eventlog.scan(self.paths.log) if e.get("video_id") == vid or vid in (e.get("video_ids") or ())
        ]
        if as_json:
            doc: dict[str, Any] = {"video_id": vid, "status": v.status.value}
            doc |= {key: getattr(v, key) for key in self.SHOW_FIELDS}
            doc["counts"] = {k: n for k, n in (v.counts or {}).items() if k not in INTERNAL_COUNTS}
            doc["output"] = str(out_dir) if out_dir.is_dir() else None
            doc["history"] = history
            sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
            return 0
        # Everything below comes from the log (error texts, URLs): printed literally, never as markup.
        self.out.print(f"[bold]{escape(vid)}[/]: {v.status.value}", highlight=False)
        for key in self.SHOW_FIELDS:
            value = getattr(v, key)
            if value not in (None, 0, False):
                self.out.print(Text(f"  {key}: {value_text(value)}"))
        if v.counts and counts_text(v.counts):
            self.out.print(Text(f"  counts: {counts_text(v.counts)}"))
        if out_dir.is_dir():
            self.out.print(Text(f"  output: {out_dir}"))
        self.out.print("history:")
        for e in history:
            self.out.print(Text("  " + event_line(e)))
        return 0

    def log(self, follow: bool, lines: int | None, as_json: bool, vid: str | None) -> int:
        path = self.paths.log
        if not self.paths.root.is_dir():
            raise CtlError(f"{self.paths.root}: no such data directory (use --data-dir)")
        start = tail_offset(path, lines) if lines is not None else 0
        from nkod.render import event_line

        out = sys.stdout.buffer

        def scan_from(offset: int, seq: int) -> tuple[int, int]:
            result = eventlog.ScanResult()
            # --json prints each line as it is in the log, byte for byte (checksum included): scan checks
            # the lines and yields one event per line, in order, so the raw file is read line by line beside it.
            with contextlib.ExitStack() as stack:
                raw = stack.enter_context(open_regular(path)) if as_json and path.exists() else None
                if raw is not None:
                    raw.seek(offset)
                for e in eventlog.scan(path, start_offset=offset, prev_seq=seq, result=result):
                    line = raw.readline() if raw is not None else b""
                    if vid and e.get("video_id") != vid:
                        continue
                    out.write(line if raw is not None else (event_line(e) + "\n").encode())
            out.flush()
            return result.end_offset, result.last_seq

        try:
            offset, seq = scan_from(start, 0)
            while follow:
                time.sleep(0.3)
                size = path.stat().st_size if path.exists() else 0
                if size < offset:  # reset or repair replaced the log
                    offset, seq = 0, 0
                    out.write(b"-- log replaced, reading from the start --\n")
                if size == offset:
                    continue
                offset, seq = scan_from(offset, seq)
        except LogError as exc:
            raise CtlError(str(exc), EXIT_LOG) from exc
        except BrokenPipeError:
            pass
        except KeyboardInterrupt:  # the usual exit status of a program stopped by Ctrl+C
            return EXIT_INTERRUPTED
        return 0


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
