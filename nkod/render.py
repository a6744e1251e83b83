"""How nkoctl shows things to a person (rich). Pure formatting: data in, renderables out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def status_panel(doc: dict[str, Any]) -> RenderableType:
    """The seed's status box, from ``status --json``'s document (its content: `nkod.statusbox.content`)."""
    from nkod.statusbox import TITLE, content

    rows, sections = content(doc)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value, style in rows:
        grid.add_row(label, value if style is None else Text(value, style=style))
    parts: list[RenderableType] = [Panel(grid, title=TITLE, border_style="blue", expand=False)]
    for title, lines, footer in sections:
        text = Text(title + "\n", style="bold")
        for line in lines:
            text.append(line + "\n")
        if footer is not None:
            text.append(footer + "\n", style="dim")
        parts.append(text)
    return Group(*parts)


# Processor bookkeeping that status summarises ("detection was off for N videos"): not a count for people.
INTERNAL_COUNTS = frozenset({"nko_detection_off"})


def counts_text(counts: Mapping[str, Any]) -> str:
    """A video's counts as readable key=value pairs, internal markers left out."""
    return " ".join(f"{k}={v}" for k, v in counts.items() if k not in INTERNAL_COUNTS)


def value_text(value: Any) -> str:
    """A field's value for people: strings as they are, everything else as JSON (never a Python repr)."""
    if isinstance(value, str):
        return value
    import orjson  # (here: nkoctl status, which imports this module, need not pay for it)

    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


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
