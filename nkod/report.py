"""``nkoctl report``: one self-contained HTML file that shows a long run at a glance.

Reading (:func:`collect`) scans the log and each completed video's ``output/<id>/summary.json`` and
``manifest.json``; rendering (:func:`render_html`) draws the plots with matplotlib as SVG and embeds
them as ``data:`` images, so the file needs no network, no script and no other file to open. Every
string that comes from a video, a URL, a manifest or an error is HTML-escaped.

matplotlib is the optional extra ``nkod[report]``: the daemon and the other commands never import it.
"""

from __future__ import annotations

import base64
import html
import io
import re
import statistics
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nkod import __version__, eventlog
from nkod.manifest import id_problem
from nkod.manifest import load as load_manifest
from nkod.paths import Paths
from nkod.state import Projector, Status, parse_ts

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from nkod.ctl import Ctl

INSTALL_HINT = "nkoctl report needs matplotlib: pip install 'nkod[report]' (or: pip install matplotlib)"

# Failure reasons, from the error text; the first pattern that matches names the reason.
_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("rate limited", re.compile(r"rate.?limit|HTTP 429|too many requests|not a bot", re.I)),
    ("timed out", re.compile(r"timed? ?out|timeout", re.I)),
    ("worker died", re.compile(r"worker process died", re.I)),
    ("unavailable", re.compile(r"unavailable|private|removed|HTTP 40[34]|HTTP 410|not found|geo|age", re.I)),
    ("disk", re.compile(r"no space|disk|ENOSPC|read-only", re.I)),
    ("network", re.compile(r"network|connection|HTTP 5\d\d|resolve|unreachable|reset by peer", re.I)),
    ("not media", re.compile(r"not media|invalid data|no video stream|cannot open", re.I)),
)


def failure_reason(error: str, kind: str) -> str:
    """A short reason for a failure: a known kind of error, else the error's kind (transient/permanent)."""
    for name, pattern in _REASONS:
        if pattern.search(error):
            return name
    return f"other ({kind})" if kind else "other"


@dataclass
class VideoRow:
    video_id: str
    status: str
    title: str = ""
    attempts: int = 0
    seconds: float | None = None  # the run that completed it: video_started → video_completed
    completed_at: datetime | None = None
    error: str = ""
    error_kind: str = ""
    failed_at: str = ""
    frames: float = 0
    nko_detections: float = 0
    nko_frames: float = 0
    audio_segments: float = 0
    audio_seconds: float = 0.0
    detector_cost: float = 0.0
    imported: bool = False


@dataclass
class FailureEvent:
    at: datetime
    video_id: str
    reason: str
    final: bool  # video_failed (else a retry was scheduled)


@dataclass
class ReportData:
    data_dir: str
    videos: list[VideoRow]
    completions: list[datetime]  # in log order
    failures: list[FailureEvent]
    started_at: datetime | None
    last_event_at: datetime | None
    seq: int
    notes: list[str] = field(default_factory=list)  # problems met while reading (shown in the report)

    def by_status(self, status: Status) -> list[VideoRow]:
        return [v for v in self.videos if v.status == status.value]


def _read_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        notes.append(f"{path}: unreadable ({exc})")
        return None
    if not isinstance(doc, dict):
        notes.append(f"{path}: not a JSON object")
        return None
    return doc


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def collect(paths: Paths) -> ReportData:
    """Everything the report shows, from the log and the committed outputs. Raises LogError on a damaged log."""
    notes: list[str] = []
    scan = eventlog.ScanResult()
    events = list(eventlog.scan(paths.log, result=scan)) if paths.log.exists() else []
    if scan.torn is not None:
        notes.append(f"{paths.log}: the last line is torn ({scan.torn.reason}); it is left out")
    projector = Projector()
    projector.apply_all(events)
    started: dict[str, datetime] = {}
    seconds: dict[str, float] = {}
    completions: list[datetime] = []
    failures: list[FailureEvent] = []
    for e in events:
        kind = e["type"]
        if kind == "video_started":
            started[e["video_id"]] = parse_ts(e["ts"])
        elif kind == "video_completed":
            at = parse_ts(e["ts"])
            completions.append(at)
            began = started.get(e["video_id"])
            if began is not None:
                seconds[e["video_id"]] = (at - began).total_seconds()
        elif kind in ("video_retry_scheduled", "video_failed"):
            error = str(e.get("error", ""))
            err_kind = str(e.get("error_kind", "transient" if kind == "video_retry_scheduled" else "permanent"))
            failures.append(
                FailureEvent(parse_ts(e["ts"]), e["video_id"], failure_reason(error, err_kind), kind == "video_failed")
            )
    titles = {
        vid: str(entry.get("title") or "") for vid, entry in load_manifest(paths.root / "videos.jsonl").entries.items()
    }
    rows: list[VideoRow] = []
    for v in projector.videos.values():
        counts = dict(v.counts or {})
        row = VideoRow(
            video_id=v.video_id,
            status=v.status.value,
            title=titles.get(v.video_id, ""),
            attempts=v.starts,
            seconds=seconds.get(v.video_id) if v.status is Status.COMPLETED else None,
            completed_at=parse_ts(v.completed_at) if v.completed_at and v.status is Status.COMPLETED else None,
            error=v.error or "",
            error_kind=v.error_kind or "",
            failed_at=v.failed_at or "",
            frames=_number(counts.get("frames")),
            nko_detections=_number(counts.get("nko_detections")),
            nko_frames=_number(counts.get("nko_frames", counts.get("nko_detections"))),
            audio_segments=_number(counts.get("audio_segments")),
            detector_cost=_number(counts.get("detector_cost_usd")),
            imported=v.imported,
        )
        if v.status is Status.COMPLETED and not v.imported and not id_problem(v.video_id):
            _read_output(paths.output / v.video_id, row, notes)
        rows.append(row)
    return ReportData(
        data_dir=str(paths.root),
        videos=rows,
        completions=completions,
        failures=failures,
        started_at=parse_ts(projector.created_at) if projector.created_at else None,
        last_event_at=parse_ts(projector.last_ts) if projector.last_ts else None,
        seq=projector.seq,
        notes=notes,
    )


def _read_output(directory: Path, row: VideoRow, notes: list[str]) -> None:
    """Title, audio duration and detector cost from a committed output (written by the pipeline/nkod)."""
    summary = _read_json(directory / "summary.json", notes)
    manifest = _read_json(directory / "manifest.json", notes)
    if summary is not None:
        video = summary.get("video")
        if isinstance(video, dict) and isinstance(video.get("title"), str):
            row.title = video["title"]
        if row.seconds is None and isinstance(summary.get("seconds"), int | float):
            row.seconds = float(summary["seconds"])
    if manifest is None:
        return
    if isinstance(manifest.get("title"), str):
        row.title = manifest["title"]
    segments = manifest.get("audio_segments")
    if isinstance(segments, list):
        row.audio_seconds = sum(_number(s.get("duration")) for s in segments if isinstance(s, dict))
    info = manifest.get("detector_info")
    if not row.detector_cost and isinstance(info, dict):
        row.detector_cost = _number(info.get("estimated_cost_usd", info.get("cost_usd")))


# -- rendering ----------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def _svg(fig: Figure) -> str:
    """The figure as an <img> with an SVG data: URI (each SVG stays its own document: no id clashes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="" src="data:image/svg+xml;base64,{data}">'


def _empty(fig: Figure, text: str) -> None:
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#666", transform=ax.transAxes)
    ax.set_axis_off()


def _dates(times: Sequence[datetime]) -> Any:
    """matplotlib's date numbers for `times` (what its date axes plot)."""
    from matplotlib.dates import date2num

    return date2num(list(times))  # type: ignore[no-untyped-call]


def _time_axis(ax: Axes) -> None:
    """Dates on the x axis, labelled concisely (the day once, then hours)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_xlabel("time (UTC)")


def _time_bins(start: datetime, end: datetime) -> tuple[list[datetime], float]:
    """Bin edges covering [start, end] (about 30 bins of a round size) and the bin width in hours."""
    span = max((end - start).total_seconds(), 10.0)
    for width in (10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if span / width <= 40:
            break
    edges = [start + timedelta(seconds=width * i) for i in range(int(span // width) + 2)]
    return edges, width / 3600


def _plot_progress(data: ReportData) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    if not data.completions:
        _empty(fig, "no video completed yet")
        return _svg(fig)
    ax = fig.subplots()
    times = sorted(data.completions)
    start = data.started_at or times[0]
    ax.step(_dates([start, *times]), range(len(times) + 1), where="post", color="#1f77b4")
    _time_axis(ax)
    ax.set_ylabel("videos completed", color="#1f77b4")
    edges, hours = _time_bins(start, max(times[-1], data.last_event_at or times[-1]))
    rate = ax.twinx()
    counts = Counter(min(int((t - start).total_seconds() // (hours * 3600)), len(edges) - 2) for t in times)
    per_hour = [counts.get(i, 0) / hours for i in range(len(edges) - 1)]
    rate.stairs(per_hour, _dates(edges), color="#ff7f0e", lw=1)
    rate.set_ylabel("videos per hour", color="#ff7f0e")
    rate.set_ylim(bottom=0)
    ax.set_title("Videos completed over time, and the rate")
    ax.grid(alpha=0.3)
    return _svg(fig)


def _plot_durations(data: ReportData) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2))
    secs = [v.seconds for v in data.videos if v.seconds is not None]
    if not secs:
        _empty(fig, "no timed video yet")
        return _svg(fig)
    unit, div = ("minutes", 60.0) if max(secs) >= 180 else ("seconds", 1.0)
    values = [s / div for s in secs]
    ax = fig.subplots()
    ax.hist(values, bins=min(40, max(5, len(values) // 3)), color="#2ca02c", edgecolor="white")
    med = statistics.median(values)
    ax.axvline(med, color="#333", ls="--", lw=1)
    ax.text(med, ax.get_ylim()[1] * 0.95, f" median {med:.3g} {unit}", va="top", fontsize=9)
    ax.set_xlabel(f"time per video ({unit})")
    ax.set_ylabel("videos")
    ax.set_title("Time per video")
    ax.grid(alpha=0.3)
    return _svg(fig)


def _plot_failures(data: ReportData) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2))
    if not data.failures:
        _empty(fig, "no failures")
        return _svg(fig)
    times = [f.at for f in data.failures]
    start = min([*times, *([data.started_at] if data.started_at else [])])
    end = max([*times, *([data.last_event_at] if data.last_event_at else [])])
    edges, _hours = _time_bins(start, end)
    ax = fig.subplots()
    reasons = sorted({f.reason for f in data.failures})
    ax.hist(
        [_dates([f.at for f in data.failures if f.reason == r]) for r in reasons],
        bins=_dates(edges),
        stacked=True,
        label=reasons,
    )
    _time_axis(ax)
    ax.set_ylabel("failed attempts")
    ax.set_title("Failures by reason over time (retried and final)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _svg(fig)


def _plot_per_video(data: ReportData) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.6))
    done = sorted(
        (v for v in data.videos if v.status == Status.COMPLETED.value and v.completed_at is not None),
        key=lambda v: v.completed_at or datetime.min,
    )
    if not done:
        _empty(fig, "no video completed yet")
        return _svg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    xs = range(len(done))
    top.bar(xs, [v.nko_detections for v in done], color="#9467bd")
    top.set_ylabel("N'Ko detections")
    top.set_title("Per video, in completion order")
    bottom.bar(xs, [v.audio_seconds / 3600 for v in done], color="#17becf")
    bottom.set_ylabel("audio hours")
    bottom.set_ylim(bottom=0)
    if len(done) <= 40:
        bottom.set_xticks(list(xs), [v.video_id for v in done], rotation=60, ha="right", fontsize=7)
    else:
        bottom.set_xlabel(f"{len(done)} videos")
    for ax in (top, bottom):
        ax.grid(alpha=0.3, axis="y")
    return _svg(fig)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0; } .sub { color: #666; margin-top: 4px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 18px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 1.4em; } .card span { color: #666; font-size: 0.85em; }
img.plot { width: 100%; max-width: 1000px; display: block; margin: 8px 0 20px; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; margin-bottom: 20px; }
th, td { border-bottom: 1px solid #eee; padding: 4px 8px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; } td.err { font-family: monospace; white-space: pre-wrap; }
.note { color: #a60; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[tuple[str, str]]]) -> str:
    """`rows` hold (css class, already-escaped cell) pairs; a header ending in '#' is a number column."""
    head = "".join(f'<th class="num">{_e(h[:-1])}</th>' if h.endswith("#") else f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="{c}">{cell}</td>' for c, cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _title_cell(v: VideoRow) -> tuple[str, str]:
    return ("", f'<span dir="auto">{_e(v.title)}</span>' if v.title else "")


def render_html(data: ReportData, now: datetime) -> str:
    """The report page. Needs matplotlib (ImportError otherwise)."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "nkod-report", "font.size": 9}):
        plots = [_plot_progress(data), _plot_durations(data), _plot_failures(data), _plot_per_video(data)]
    done = data.by_status(Status.COMPLETED)
    failed = data.by_status(Status.FAILED)
    total_audio = sum(v.audio_seconds for v in done)
    elapsed = (data.last_event_at - data.started_at).total_seconds() if data.started_at and data.last_event_at else 0
    cards = [
        (f"{len(done)} / {len(data.videos)}", "videos completed"),
        (str(len(failed)), "failed"),
        (f"{total_audio / 3600:.2f}", "hours of audio"),
        (f"{sum(v.frames for v in done):,.0f}", "frames"),
        (f"{sum(v.nko_frames for v in done):,.0f}", "N'Ko frames"),
        (f"{sum(v.nko_detections for v in done):,.0f}", "N'Ko detections"),
        (f"{sum(v.audio_segments for v in done):,.0f}", "audio segments"),
        (f"${sum(v.detector_cost for v in done):,.2f}", "detector cost"),
        (_duration(elapsed), "first to last event"),
    ]
    timed = sorted((v for v in done if v.seconds is not None), key=lambda v: v.seconds or 0.0, reverse=True)[:10]
    slowest = _table(
        ("video", "title", "time#", "attempts#", "frames#", "audio segments#"),
        (
            [
                ("", _e(v.video_id)),
                _title_cell(v),
                ("num", _e(_duration(v.seconds or 0.0))),
                ("num", str(v.attempts)),
                ("num", f"{v.frames:.0f}"),
                ("num", f"{v.audio_segments:.0f}"),
            ]
            for v in timed
        ),
    )
    failed_table = _table(
        ("video", "title", "attempts#", "kind", "failed at", "error"),
        (
            [
                ("", _e(v.video_id)),
                _title_cell(v),
                ("num", str(v.attempts)),
                ("", _e(v.error_kind)),
                ("", _e(v.failed_at)),
                ("err", _e(v.error)),
            ]
            for v in failed
        ),
    )
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in data.notes)
    card_html = "".join(f"<div class='card'><b>{_e(big)}</b><span>{_e(small)}</span></div>" for big, small in cards)
    since = f"from {_e(data.started_at.isoformat())} " if data.started_at else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nkod report: {_e(data.data_dir)}</title>
<style>{_CSS}</style></head>
<body>
<h1>nkod report</h1>
<p class="sub">{_e(data.data_dir)} · {since}log seq {data.seq} · made {_e(now.isoformat(timespec="seconds"))}
 by nkoctl {_e(__version__)}</p>
{notes}
<div class="cards">{card_html}</div>
<h2>Progress</h2>
{plots[0]}
<h2>Time per video</h2>
{plots[1]}
<h2>Failures</h2>
{plots[2]}
<h2>N'Ko detections and audio per video</h2>
{plots[3]}
<h2>Slowest videos</h2>
{slowest if timed else "<p>none completed yet</p>"}
<h2>Failed videos ({len(failed)})</h2>
{failed_table if failed else "<p>none</p>"}
</body></html>
"""


def write_report(ctl: Ctl, output: Path) -> int:
    """``nkoctl report``: write the page to `output` ('-': stdout), atomically."""
    from datetime import UTC

    from nkod.ctl import EXIT_ERROR, EXIT_LOG, CtlError
    from nkod.errors import LogError
    from nkod.fsutil import atomic_write

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        ctl.console.print(f"nkoctl: {INSTALL_HINT}", highlight=False, markup=False)
        return EXIT_ERROR
    if not ctl.paths.root.is_dir():
        raise CtlError(f"{ctl.paths.root}: no such data directory (use --data-dir)")
    try:
        data = collect(ctl.paths)
    except LogError as exc:
        raise CtlError(str(exc), EXIT_LOG) from exc
    page = render_html(data, datetime.now(UTC)).encode()
    if str(output) == "-":
        sys.stdout.buffer.write(page)
        sys.stdout.flush()
        return 0
    try:
        atomic_write(output, page, mode=0o644)
    except OSError as exc:
        raise CtlError(f"cannot write {output}: {exc.strerror or exc}") from exc
    done = len(data.by_status(Status.COMPLETED))
    ctl.console.print(
        f"wrote {output} ({len(data.videos)} videos, {done} completed, {len(data.failures)} failed attempts)",
        highlight=False,
        markup=False,
    )
    return 0
