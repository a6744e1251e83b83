"""How nkoctl shows things to a person (rich). Pure formatting: data in, renderables out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


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


def status_panel(doc: dict[str, Any]) -> RenderableType:
    """The seed's status box, from ``status --json``'s document."""
    total, done = doc["total"], doc["completed"]
    pct = 100 * done / total if total else 0.0
    frames = doc["frames"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    if doc.get("log_damaged"):
        grid.add_row(
            "Log:",
            Text("DAMAGED: nkod will not start; run `nkoctl fsck` (figures: last good state)", style="bold red"),
        )
    grid.add_row("Videos:", f"{done:,} / {total:,} ({pct:.1f}%)  {bar(done, total)}")
    grid.add_row("Frames:", f"{frames:,} extracted")
    detections = doc["nko_detections"]
    nko_pct = f" ({100 * detections / frames:.0f}%)" if frames else ""
    detection = doc.get("nko_detection", "on")
    if detection == "off":
        grid.add_row("N'Ko:", Text('detection off (detector = "none"; set [pipeline] detector)', style="dim"))
    elif detection == "partly off":
        off = doc.get("nko_detection_off_videos", 0)
        grid.add_row("N'Ko:", f"{detections:,} detections{nko_pct}; detection was off for {off:,} videos")
    else:
        grid.add_row("N'Ko:", f"{detections:,} detections{nko_pct}")
    cost = detector_cost(doc)
    if cost:
        grid.add_row("Detector:", cost)
    grid.add_row("Audio:", f"{doc['audio_segments']:,} segments")
    failed = len(doc["failed"])
    grid.add_row("Failed:", Text(f"{failed} video{'s' if failed != 1 else ''}", style="red" if failed else ""))
    if doc["interrupted"]:
        grid.add_row("Interrupted:", f"{len(doc['interrupted'])} (redone first)")
    if doc.get("waiting_backoff"):
        grid.add_row("Backoff:", f"{doc['waiting_backoff']} waiting to retry")
    grid.add_row("", "")
    grid.add_row("Elapsed:", duration(doc["elapsed_seconds"]))
    eta = doc["eta_seconds"]
    if eta is None:
        grid.add_row("ETA:", "—")
    elif eta == 0:
        grid.add_row("ETA:", "nothing left to run")
    else:
        grid.add_row("ETA:", f"~{duration(eta)} remaining")
    grid.add_row("Rate:", f"{doc['rate_per_hour']:.1f} videos/hour")
    grid.add_row("", "")
    if doc["daemon_running"]:
        daemon = Text(f"running (PID {doc['daemon_pid']})", style="green")
    else:
        daemon = Text("not running", style="yellow")
    grid.add_row("Daemon:", daemon)
    activity = doc.get("activity") or {}
    executor = activity.get("executor") if doc["daemon_running"] else None
    if isinstance(executor, dict) and executor.get("name") == "dask":
        grid.add_row("Cluster:", cluster_text(executor))
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
            grid.add_row("Currently:", Text(f"Processing {vid}{extra}"))
    elif running:
        grid.add_row("Currently:", Text(f"{', '.join(running)} (interrupted: redone at next start)", style="yellow"))
    if doc.get("manifest_problems"):
        grid.add_row("Manifest:", Text(f"{len(doc['manifest_problems'])} line(s) skipped", style="yellow"))
    _steering_rows(grid, doc)
    parts: list[RenderableType] = [Panel(grid, title="Pipeline Status", border_style="blue", expand=False)]
    if doc["failed"]:
        lines = Text("Failed Videos:\n", style="bold")
        for i, f in enumerate(doc["failed"], 1):
            attempts = f"after {f['attempts']} attempt{'s' if f['attempts'] != 1 else ''}" if f["attempts"] else ""
            if attempts and attempts in f["error"]:  # a give-up's error already says "(gave up after N attempts)"
                attempts = ""
            lines.append(f"  {i}. {f['id']} - {f['error']}" + (f" ({attempts})" if attempts else "") + "\n")
        lines.append("  Retry with: nkoctl retry [ID…]\n", style="dim")
        parts.append(lines)
    if doc.get("skipped"):
        lines = Text("Skipped Videos:\n", style="bold")
        for i, sk in enumerate(doc["skipped"][:50], 1):
            lines.append(f"  {i}. {sk['id']}" + (f" - {sk['reason']}" if sk["reason"] else "") + "\n")
        lines.append("  Undo with: nkoctl unskip ID…\n", style="dim")
        parts.append(lines)
    if doc.get("manifest_problems"):
        lines = Text("Manifest lines skipped:\n", style="bold")
        for p in doc["manifest_problems"][:20]:
            lines.append(f"  {p['path']}:{p['line']}: {p['error']}\n")
        parts.append(lines)
    return Group(*parts)


def cluster_text(executor: Mapping[str, Any]) -> Text:
    """The Dask cluster as the daemon last saw it: its workers and slots, or that it is reconnecting."""
    scheduler = executor.get("scheduler", "?")
    if not executor.get("connected"):
        error = f": {executor['error']}" if executor.get("error") else ""
        return Text(f"not connected to {scheduler} (reconnecting{error})", style="yellow")
    workers, slots = executor.get("workers", 0), executor.get("slots", 0)
    text = f"{workers} worker{'s' if workers != 1 else ''}, {slots} slot{'s' if slots != 1 else ''} on {scheduler}"
    return Text(text, style="" if workers else "yellow")


# Processor bookkeeping that status summarises ("detection was off for N videos"): not a count for people.
INTERNAL_COUNTS = frozenset({"nko_detection_off"})


def counts_text(counts: Mapping[str, Any]) -> str:
    """A video's counts as readable key=value pairs, internal markers left out."""
    return " ".join(f"{k}={v}" for k, v in counts.items() if k not in INTERNAL_COUNTS)


def value_text(value: Any) -> str:
    """A field's value for people: strings as they are, everything else as JSON (never a Python repr)."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _steering_rows(grid: Table, doc: dict[str, Any]) -> None:
    """Paused, skipped, removed, changed, and requests not applied yet (nkoctl pause/skip/…)."""
    if doc.get("paused"):
        grid.add_row("Queue:", Text("PAUSED: no new video starts (nkoctl resume)", style="bold yellow"))
    if doc.get("skipped"):
        grid.add_row("Skipped:", f"{len(doc['skipped'])} (not counted as remaining)")
    if doc.get("removed"):
        shown = ", ".join(doc["removed"][:5]) + (" …" if len(doc["removed"]) > 5 else "")
        grid.add_row("Removed:", Text(f"{len(doc['removed'])} no longer in the manifest: {shown}"))
    for vid in doc.get("changed_since_completed", [])[:10]:
        grid.add_row("Changed:", Text(f"{vid}: changed since completed: nkoctl redo {vid}"))
    for req in doc.get("pending_requests", []):
        ids = req.get("video_ids") or []
        target = " " + ", ".join(ids[:5]) if ids else ""
        grid.add_row("Request:", Text(f"{req['type']}{target}: {req['state']}", style="yellow"))


def event_line(e: dict[str, Any]) -> str:
    """One event as a readable line: seq, time, type, video, the rest as key=value (values JSON).

    Plain text: print it literally (never as rich markup, it holds error texts and URLs)."""
    skip = {"v", "seq", "ts", "type", "video_id", "crc", "session_seconds"}  # bookkeeping: see --json
    rest = []
    for key, value in e.items():
        if key in skip:
            continue
        if key == "video_ids" and isinstance(value, list) and len(value) > 5:
            value = [*value[:5], f"…+{len(value) - 5}"]
        if key == "counts" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in INTERNAL_COUNTS}
        rest.append(f"{key}={value_text(value)}")
    vid = e.get("video_id", "")
    return f"{e['seq']:>7} {e['ts'][:23]} {e['type']:<22} {vid:<14} " + " ".join(rest)
