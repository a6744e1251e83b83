"""The status box's content (which rows, which sections: `content`), and the box drawn as plain text
(`draw`) where rich would draw exactly that: importing rich costs ~45 ms, 4-5x a bare interpreter, more
than ``nkoctl status`` may take (issue 13).

`nkod.render.status_panel` builds rich's renderables from `content`, so both draw the same box. `draw` is
used only where rich's output is plain text laid out as below: not a terminal (no colours; a pipe, a file,
``watch``), UTF-8 output, every line within the console's width (no wrapping), and only characters of one
cell whose markup and emoji codes rich would leave alone; anything else (and every terminal) is rich's.
tests/test_status_fast.py checks `draw` against rich on generated documents.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

TITLE = "Pipeline Status"

# A row of the box's grid: (label, value, style). `style` None: the value is a string rich reads as markup
# (as ``grid.add_row(label, "…")``); else a literal Text with that style ("" for none).
Row = tuple[str, str, "str | None"]
# A section under the box: (bold title, literal lines, dim footer or None).
Section = tuple[str, list[str], "str | None"]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def bar(done: int, total: int, width: int = 30) -> str:
    filled = round(width * done / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def detector_cost(doc: dict[str, Any]) -> str:
    """What detection cost, and what the local pre-filter saved; empty when detection was free."""
    calls, cost = doc.get("detector_calls", 0), doc.get("detector_cost_usd", 0.0)
    sent, skipped = doc.get("prefilter_frames_sent", 0), doc.get("prefilter_frames_skipped", 0)
    if not (calls or cost or sent or skipped):
        return ""
    text = f"${cost:,.2f} ({calls:,} API calls)"
    if sent or skipped:
        saved = doc.get("prefilter_saved_usd", 0.0)
        text += f"; local pre-filter sent {sent:,} frames, skipped {skipped:,}, saved ${saved:,.2f}"
    return text


def cluster_row(executor: Mapping[str, Any]) -> tuple[str, str]:
    """The Dask cluster as the daemon last saw it: its workers and slots, or that it is reconnecting
    (text, style)."""
    scheduler = executor.get("scheduler", "?")
    if not executor.get("connected"):
        error = f": {executor['error']}" if executor.get("error") else ""
        return f"not connected to {scheduler} (reconnecting{error})", "yellow"
    workers, slots = executor.get("workers", 0), executor.get("slots", 0)
    text = f"{workers} worker{'s' if workers != 1 else ''}, {slots} slot{'s' if slots != 1 else ''} on {scheduler}"
    return text, "" if workers else "yellow"


def content(doc: dict[str, Any]) -> tuple[list[Row], list[Section]]:
    """The seed's status box, from ``status --json``'s document: the grid's rows and the sections below."""
    rows: list[Row] = []
    add = rows.append
    total, done = doc["total"], doc["completed"]
    pct = 100 * done / total if total else 0.0
    frames = doc["frames"]
    if doc.get("log_damaged"):
        add(("Log:", "DAMAGED: nkod will not start; run `nkoctl fsck` (figures: last good state)", "bold red"))
    add(("Videos:", f"{done:,} / {total:,} ({pct:.1f}%)  {bar(done, total)}", None))
    add(("Frames:", f"{frames:,} extracted", None))
    detections = doc["nko_detections"]
    nko_pct = f" ({100 * detections / frames:.0f}%)" if frames else ""
    detection = doc.get("nko_detection", "on")
    if detection == "off":
        add(("N'Ko:", 'detection off (detector = "none"; set [pipeline] detector)', "dim"))
    elif detection == "partly off":
        off = doc.get("nko_detection_off_videos", 0)
        add(("N'Ko:", f"{detections:,} detections{nko_pct}; detection was off for {off:,} videos", None))
    else:
        add(("N'Ko:", f"{detections:,} detections{nko_pct}", None))
    cost = detector_cost(doc)
    if cost:
        add(("Detector:", cost, None))
    add(("Audio:", f"{doc['audio_segments']:,} segments", None))
    failed = len(doc["failed"])
    add(("Failed:", f"{failed} video{'s' if failed != 1 else ''}", "red" if failed else ""))
    if doc["interrupted"]:
        add(("Interrupted:", f"{len(doc['interrupted'])} (redone first)", None))
    if doc.get("waiting_backoff"):
        add(("Backoff:", f"{doc['waiting_backoff']} waiting to retry", None))
    add(("", "", None))
    add(("Elapsed:", duration(doc["elapsed_seconds"]), None))
    eta = doc["eta_seconds"]
    if eta is None:
        add(("ETA:", "—", None))
    elif eta == 0:
        add(("ETA:", "nothing left to run", None))
    else:
        add(("ETA:", f"~{duration(eta)} remaining", None))
    add(("Rate:", f"{doc['rate_per_hour']:.1f} videos/hour", None))
    add(("", "", None))
    if doc["daemon_running"]:
        add(("Daemon:", f"running (PID {doc['daemon_pid']})", "green"))
    else:
        add(("Daemon:", "not running", "yellow"))
    activity = doc.get("activity") or {}
    executor = activity.get("executor") if doc["daemon_running"] else None
    if isinstance(executor, dict) and executor.get("name") == "dask":
        add(("Cluster:", *cluster_row(executor)))
    running = doc["running"]
    if running and doc["daemon_running"]:
        for vid in running:
            info = (activity.get("running") or {}).get(vid, {})
            stage = info.get("stage")
            extra = f" — {stage}" if stage else ""
            if isinstance(info.get("percent"), int | float):
                extra += f" {float(info['percent']):.0f}%"
            elif "done" in info and "total" in info:
                extra += f" {info['done']}/{info['total']}"
            where = info.get("where")
            if isinstance(where, dict) and (where.get("worker") or where.get("host")):
                extra += f" on {where.get('worker') or where.get('host')}"
                if where.get("worker") and where.get("host"):
                    extra += f" ({where['host']})"
            add(("Currently:", f"Processing {vid}{extra}", ""))
    elif running:
        add(("Currently:", f"{', '.join(running)} (interrupted: redone at next start)", "yellow"))
    if doc.get("manifest_problems"):
        add(("Manifest:", f"{len(doc['manifest_problems'])} line(s) skipped", "yellow"))
    rows.extend(_steering_rows(doc))
    sections: list[Section] = []
    if doc["failed"]:
        lines = []
        for i, f in enumerate(doc["failed"], 1):
            attempts = f"after {f['attempts']} attempt{'s' if f['attempts'] != 1 else ''}" if f["attempts"] else ""
            if attempts and attempts in f["error"]:  # a give-up's error already says "(gave up after N attempts)"
                attempts = ""
            lines.append(f"  {i}. {f['id']} - {f['error']}" + (f" ({attempts})" if attempts else ""))
        sections.append(("Failed Videos:", lines, "  Retry with: nkoctl retry [ID…]"))
    if doc.get("skipped"):
        lines = [
            f"  {i}. {sk['id']}" + (f" - {sk['reason']}" if sk["reason"] else "")
            for i, sk in enumerate(doc["skipped"][:50], 1)
        ]
        sections.append(("Skipped Videos:", lines, "  Undo with: nkoctl unskip ID…"))
    if doc.get("manifest_problems"):
        lines = [f"  {p['path']}:{p['line']}: {p['error']}" for p in doc["manifest_problems"][:20]]
        sections.append(("Manifest lines skipped:", lines, None))
    return rows, sections


def _steering_rows(doc: dict[str, Any]) -> list[Row]:
    """Paused, skipped, removed, changed, and requests not applied yet (nkoctl pause/skip/…)."""
    rows: list[Row] = []
    if doc.get("paused"):
        rows.append(("Queue:", "PAUSED: no new video starts (nkoctl resume)", "bold yellow"))
    if doc.get("skipped"):
        rows.append(("Skipped:", f"{len(doc['skipped'])} (not counted as remaining)", None))
    if doc.get("removed"):
        shown = ", ".join(doc["removed"][:5]) + (" …" if len(doc["removed"]) > 5 else "")
        rows.append(("Removed:", f"{len(doc['removed'])} no longer in the manifest: {shown}", ""))
    for vid in doc.get("changed_since_completed", [])[:10]:
        rows.append(("Changed:", f"{vid}: changed since completed: nkoctl redo {vid}", ""))
    for req in doc.get("pending_requests", []):
        ids = req.get("video_ids") or []
        target = " " + ", ".join(ids[:5]) if ids else ""
        rows.append(("Request:", f"{req['type']}{target}: {req['state']}", "yellow"))
    return rows


# -- the box as plain text -----------------------------------------------------------------------

_ONE_CELL = frozenset(map(chr, range(0x20, 0x7F))) | frozenset("█░—…")  # what `draw` measures as one cell


def _plain(text: str) -> bool:
    """Does `text` take one cell per character, as `draw` counts it?"""
    return _ONE_CELL.issuperset(text)


def _as_markup_is_literal(text: str) -> bool:
    """Would rich print this markup string as it is? (no tag: no "["; no emoji code: at most one ":")"""
    return "[" not in text and text.count(":") <= 1


def console_width(environ: Mapping[str, str]) -> int:
    """The width rich's Console (not a terminal) lays out in: $COLUMNS, else the terminal of stdin, stdout or
    stderr, else 80 (rich.console.Console.size)."""
    columns = environ.get("COLUMNS")
    width = None
    for fd in (0, 1, 2):
        try:
            width = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    if columns is not None and columns.isdigit():
        width = int(columns)
    return width or 80


def plain_output(environ: Mapping[str, str], isatty: bool, encoding: str | None) -> bool:
    """Would rich write plain text (no terminal, so no escape codes) with its Unicode box characters?"""
    if environ.get("TTY_COMPATIBLE", "") == "1":
        return False
    if environ.get("TTY_COMPATIBLE", "") != "0":
        force = environ.get("FORCE_COLOR")
        if force is not None and force != "":
            return False
        if force is None and isatty:
            return False
    return (encoding or "utf-8").lower().startswith("utf")


def draw(doc: dict[str, Any], width: int) -> str | None:
    """The box and its sections as rich prints them to a console of `width` columns that is not a terminal
    (soft wrap, no highlighting); None where rich would draw something else (see the module's doc)."""
    rows, sections = content(doc)
    for label, value, style in rows:
        if not (_plain(label) and _plain(value) and _as_markup_is_literal(label)):
            return None
        if style is None and not _as_markup_is_literal(value):
            return None
    left = max(len(label) for label, _, _ in rows)
    right = max(len(value) for _, value, _ in rows)
    inner = max(1 + left + 2 + right + 1, len(TITLE) + 4)  # the panel's padding, and room for its title
    if inner + 2 > width:
        return None
    span = inner - len(TITLE) - 4  # the top border's dashes around " title " (less the corners' own)
    out = ["╭─" + "─" * (span // 2) + f" {TITLE} " + "─" * (span - span // 2) + "─╮"]
    pad = inner - (1 + left + 2 + right + 1)
    for label, value, _ in rows:
        out.append(f"│ {label.ljust(left)}  {value.ljust(right)}{' ' * pad} │")
    out.append("╰" + "─" * inner + "╯")
    for title, lines, footer in sections:
        texts = [title, *lines, *([footer] if footer is not None else [])]
        if any(not _plain(t) or len(t) > width for t in texts):
            return None
        out.extend(texts)
        out.append("")
    return "\n".join(out) + "\n"
