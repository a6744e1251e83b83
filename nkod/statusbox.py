"""The status box's content (which rows, which sections: `content`), and the box drawn as rich draws it
(`draw`) without importing rich: that import costs ~45 ms, 4-5x a bare interpreter, more than ``nkoctl
status`` may take (issue 13).

`nkod.render.status_panel` builds rich's renderables from `content`, so both draw the same box. `draw`
imitates rich where rich's output is plain text (not a terminal: a pipe, a file, ``watch``) or text with the
SGR codes of the box's standard colours (a terminal; they are the same in every colour system rich picks),
on a UTF-8 stream, with every line within the console's width (no wrapping) and only characters of one cell
whose markup and emoji codes rich would leave alone. Anything else (NO_COLOR, a dumb terminal, N'Ko or wide
characters, a narrow console...) is rich's. tests/test_status_fast.py checks `draw` against rich, byte for
byte, on generated documents.
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
    """The width rich's Console lays out in: $COLUMNS, else the terminal of stdin, stdout or stderr, else 80
    (rich.console.Console.size; a dumb terminal, which rich gives 80, is never drawn here)."""
    columns = environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns)
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def output_mode(environ: Mapping[str, str], isatty: bool, encoding: str | None) -> str | None:
    """How rich's Console would write to this stream: "plain" (not a terminal: no escape codes), "ansi" (a
    terminal: SGR codes, the standard colours the box uses look the same in every colour system), or None
    (what `draw` does not imitate: NO_COLOR, a dumb terminal, a stream that is not UTF-8)."""
    if not (encoding or "utf-8").lower().startswith("utf"):
        return None  # rich draws the box with ASCII characters then
    tty_compatible = environ.get("TTY_COMPATIBLE", "")
    force = environ.get("FORCE_COLOR")
    if tty_compatible in ("0", "1"):
        terminal = tty_compatible == "1"
    elif force is not None:
        terminal = force != ""
    else:
        terminal = isatty
    if not terminal:
        return "plain"
    if environ.get("NO_COLOR", "") != "" or environ.get("TERM", "").lower() in ("dumb", "unknown"):
        return None
    return "ansi"


# The SGR codes of the styles the box uses (rich: attributes first, then the colour).
_SGR = {
    "": "",
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "bold red": "1;31",
    "bold yellow": "1;33",
    "bold dim": "1;2",
}


def draw(doc: dict[str, Any], width: int, ansi: bool = False) -> str | None:
    """The box and its sections as rich prints them to a console of `width` columns (soft wrap, no
    highlighting), not a terminal or (`ansi`) a terminal; None where rich would draw something else (see the
    module's doc)."""
    rows, sections = content(doc)
    for label, value, style in rows:
        if not (_plain(label) and _plain(value) and _as_markup_is_literal(label)):
            return None
        if style is None and not _as_markup_is_literal(value):
            return None
        if style is not None and style not in _SGR:
            return None

    def seg(text: str, style: str) -> str:  # one of rich's segments: its text in its style
        code = _SGR[style] if ansi else ""
        return f"\x1b[{code}m{text}\x1b[0m" if code and text else text

    left = max(len(label) for label, _, _ in rows)
    right = max(len(value) for _, value, _ in rows)
    inner = max(1 + left + 2 + right + 1, len(TITLE) + 4)  # the panel's padding, and room for its title
    if inner + 2 > width:
        return None
    span = inner - len(TITLE) - 4  # the top border's dashes around " title " (less the corners' own)
    border = seg("│", "blue")
    out = [
        seg("╭─", "blue")
        + seg("─" * (span // 2), "blue")
        + seg(f" {TITLE} ", "blue")
        + seg("─" * (span - span // 2), "blue")
        + seg("─╮", "blue")
    ]
    pad = " " * (inner - (1 + left + 2 + right + 1))
    for label, value, style in rows:
        cell = seg(value.ljust(right), style or "")
        out.append(f"{border} {seg(label.ljust(left), 'bold')}{seg('  ', 'bold')}{cell}{pad} {border}")
    out.append(seg("╰" + "─" * inner + "╯", "blue"))
    for title, lines, footer in sections:
        if any(not _plain(t) or len(t) > width for t in (title, *lines, footer or "")):
            return None
        out.append(seg(title, "bold"))
        out.extend(seg(line, "bold") for line in lines)
        if footer is not None:
            out.append(seg(footer, "bold dim"))
        out.append("")
    return "\n".join(out) + "\n"
