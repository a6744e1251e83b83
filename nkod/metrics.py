"""Prometheus metrics, derived from the state (the log's fold), never counted separately.

The same code serves the daemon's endpoint (``[daemon] metrics_listen``; a scrape reads the live
projector under the daemon's lock) and ``nkoctl metrics`` (the state replayed from snapshot + log, for
node_exporter's textfile collector). :func:`summarize` is pure: one pass over the videos gives a frozen
:class:`Summary`; :class:`StateCollector` turns a summary into metric families at scrape time.

Imported only when metrics are wanted: ``prometheus_client`` is not loaded by a daemon without them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from nkod import __version__
from nkod.state import Projector, State, Status, parse_ts
from nkod.views import elapsed_seconds

# Totals of the processors' counts (summed over completed videos) exposed as gauges: name, count key, help.
TOTALS = (
    ("nkod_frames", "frames", "Frames extracted, over completed videos."),
    ("nkod_nko_detections", "nko_detections", "Frames with N'Ko text detected, over completed videos."),
    ("nkod_nko_frames", "nko_frames", "N'Ko frames kept, over completed videos."),
    ("nkod_audio_segments", "audio_segments", "Audio segments cut, over completed videos."),
    ("nkod_media_seconds", "duration_seconds", "Seconds of media processed, over completed videos."),
    ("nkod_detector_calls", "detector_calls", "Calls to the N'Ko detector's API, over completed videos."),
    ("nkod_detector_cost_usd", "detector_cost_usd", "Estimated detector cost in USD, over completed videos."),
)


@dataclass(frozen=True)
class Summary:
    """What the metrics say, computed in one pass over the state."""

    seq: int
    log_bytes: int
    log_id: str | None
    daemon_running: bool
    videos: Mapping[str, int]  # status -> count (every status present)
    waiting_backoff: int
    failed_by_kind: Mapping[str, int]
    completed_total: int  # completions recorded by nkod in this log (imports excluded)
    starts_total: int  # video_started events in this log (attempts begun)
    totals: Mapping[str, float]
    last_completion: float | None  # unix time of the latest completion by nkod
    now: float  # unix time the summary is for
    elapsed_seconds: float
    manifest_problems: int
    paused: bool = False
    executor: Mapping[str, Any] | None = None  # the daemon's executor (a cluster's state), when live


def summarize(state: State | Projector, now: datetime, daemon_running: bool) -> Summary:
    """The metrics of `state` at `now`. Pure (the caller reads the clock)."""
    statuses: Counter[str] = Counter({s.value: 0 for s in Status})
    failed_by_kind: Counter[str] = Counter()
    waiting = starts = 0
    last: str | None = None
    for v in state.videos.values():
        statuses[v.status.value] += 1
        starts += v.starts
        if v.status is Status.FAILED:
            failed_by_kind["imported" if v.imported else (v.error_kind or "permanent")] += 1
        elif v.status is Status.PENDING and v.not_before is not None:
            waiting += 1
        elif v.status is Status.COMPLETED and not v.imported and v.completed_at:
            # ISO-8601 UTC strings of one format sort as the times do
            last = v.completed_at if last is None else max(last, v.completed_at)
    return Summary(
        seq=state.seq,
        log_bytes=state.offset,
        log_id=state.log_id,
        daemon_running=daemon_running,
        videos=MappingProxyType(dict(statuses)),
        waiting_backoff=waiting,
        failed_by_kind=MappingProxyType(dict(failed_by_kind)),
        completed_total=state.completed_by_nkod,
        starts_total=starts,
        totals=MappingProxyType(dict(state.totals)),
        last_completion=parse_ts(last).timestamp() if last else None,
        now=now.timestamp(),
        elapsed_seconds=elapsed_seconds(state, now, daemon_running),
        manifest_problems=len(state.manifest_problems),
        paused=state.paused,
    )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


Read = Callable[[], Summary | None]  # a summary now, or None when there is nothing to say yet


class StateCollector(Collector):
    """Metric families from a :class:`Summary` taken at scrape time (`read` is called once per scrape)."""

    def __init__(self, read: Read) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        s = self.read()
        if s is None:
            return
        info = {"version": __version__, "log_id": s.log_id or ""}
        yield InfoMetricFamily("nkod", "nkod version and the log it serves.", value=info)
        yield _gauge("nkod_daemon_running", "1 while a daemon serves this data directory.", int(s.daemon_running))
        videos = GaugeMetricFamily("nkod_videos", "Videos by status (running: being processed now).", labels=["status"])
        for status, count in sorted(s.videos.items()):
            videos.add_metric([status], count)
        yield videos
        yield _gauge("nkod_videos_waiting_backoff", "Pending videos waiting out a retry backoff.", s.waiting_backoff)
        failed = GaugeMetricFamily("nkod_failed_videos", "Failed videos by error kind.", labels=["error_kind"])
        for kind, count in sorted(s.failed_by_kind.items()):
            failed.add_metric([kind], count)
        yield failed
        yield CounterMetricFamily(
            "nkod_videos_completed", "Videos completed by nkod in this log (imports excluded).", value=s.completed_total
        )
        yield CounterMetricFamily("nkod_video_starts", "Attempts begun in this log.", value=s.starts_total)
        for name, key, doc in TOTALS:
            yield _gauge(name, doc, s.totals.get(key, 0))
        if s.last_completion is not None:
            yield _gauge(
                "nkod_last_completion_timestamp_seconds", "Unix time of the latest completion.", s.last_completion
            )
            yield _gauge(
                "nkod_seconds_since_last_completion",
                "Seconds since the latest video completed.",
                max(0.0, s.now - s.last_completion),
            )
        yield _gauge("nkod_elapsed_seconds", "Seconds a daemon ran on this log, all sessions.", s.elapsed_seconds)
        yield _gauge("nkod_log_seq", "Sequence number of the last event in the log.", s.seq)
        yield _gauge("nkod_log_bytes", "Size of the log read so far, in bytes.", s.log_bytes)
        yield _gauge("nkod_manifest_problems", "Manifest lines skipped as invalid.", s.manifest_problems)
        yield _gauge("nkod_paused", "1 while the queue is paused (nkoctl pause): no new video starts.", s.paused)
        if s.executor is not None and s.executor.get("name") == "dask":
            connected = bool(s.executor.get("connected"))
            yield _gauge("nkod_cluster_connected", "1 while the daemon is connected to its Dask scheduler.", connected)
            yield _gauge("nkod_cluster_workers", "Dask workers the scheduler has.", s.executor.get("workers", 0))
            yield _gauge("nkod_cluster_slots", "Threads (video slots) of those workers.", s.executor.get("slots", 0))


def registry(read: Read) -> CollectorRegistry:
    """A registry holding only nkod's metrics (not the client's process/platform defaults), so the
    daemon's endpoint and ``nkoctl metrics`` expose the same families."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StateCollector(read))
    return reg


def exposition(summary: Summary) -> bytes:
    """The Prometheus text exposition of `summary`."""
    return generate_latest(registry(lambda: summary))


class MetricsServer:
    """The HTTP endpoint in a daemon thread; ``close()`` stops it."""

    def __init__(self, host: str, port: int, read: Read) -> None:
        self._server, self._thread = start_http_server(port, host, registry(read))
        self.address: tuple[Any, ...] = self._server.server_address

    @property
    def url(self) -> str:
        host, port = self.address[0], self.address[1]
        return f"http://[{host}]:{port}/metrics" if ":" in str(host) else f"http://{host}:{port}/metrics"

    def close(self) -> None:
        closer = threading.Thread(target=self._server.shutdown, daemon=True)
        closer.start()
        closer.join(timeout=2.0)
        self._server.server_close()
