"""nkoctl show and log: one video's story, and the log's events."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nkod import eventlog
from nkod.errors import LogError
from nkod.manifest import id_problem

if TYPE_CHECKING:
    pass

from nkod.ctl.base import EXIT_LOG, EXIT_USAGE, CtlBase, CtlError


class HistoryCommands(CtlBase):
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
            "skipped",
            "skip_reason",
            "priority_boost",
            "redo",
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
