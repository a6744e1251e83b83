"""The daemon: the imperative shell around the pure core.

One thread runs the loop; signal handlers and the file watcher only set flags and wake it. Each video
runs in a worker process (``nkod.worker``). The loop:

    replay (snapshot + tail) → recover → READY=1 → [ read requests and manifest, start work, reap workers,
    enforce timeouts, write snapshot and views, ping the watchdog ]* → drain on stop → daemon_stopped

A transition is acted on only once its event is durable; an output is renamed into place before its
``video_completed`` is appended, and a crash between the two is settled by recovery (see ``decide``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import selectors
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import orjson

from nkod import __version__, decide, eventlog, gcpause, lock, manifest, snapshot, sources, spool, steering, views
from nkod.config import Config, load_config
from nkod.decide import Committed, Draft, Outcome, RetryPolicy
from nkod.errors import ConfigError, LockHeldError, LogError, StorageError
from nkod.executors.base import TERM_GRACE, Executor, Job
from nkod.executors.local import LocalExecutor, child_env
from nkod.fsutil import atomic_write, fsync_dir, permission_problem, read_regular
from nkod.hooks import Hooks
from nkod.logs import fixed as logs_fixed
from nkod.logs import get as get_logger
from nkod.notify import Notifier
from nkod.paths import Paths
from nkod.processor import load_processor, normalise_counts
from nkod.refresher import Finished, Refresher, RefreshStartError
from nkod.state import Projector, Status, Video, format_ts

if TYPE_CHECKING:
    from nkod.metrics import MetricsServer, Summary

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_LOG = 4
EXIT_CRASH = 1  # an unexpected error in nkod itself (what was running is recorded interrupted)
EXIT_STORAGE = 75  # EX_TEMPFAIL: systemd restarts us later, by which time space may be free
# EX_NOPERM: a file of ours that we may not read or write (its owner or mode, e.g. after `sudo` edits):
# restarting cannot fix it, so the unit's RestartPreventExitStatus= lists it; the message says the fix.
EXIT_NOPERM = 77
# The disk, not the video: the daemon stops with EXIT_STORAGE and systemd retries later.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
# The system is short of something for a while (fds, memory, processes): a video that cannot start now
# gets a transient failure and the daemon goes on.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN})


def describe_os_error(exc: OSError) -> str:
    """An OSError in words, with its errno name, and what it means when it is a shortage."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = f"{exc.strerror or exc}" + (f" ({name})" if name else "")
    if exc.filename:
        text += f": {exc.filename}"
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        text = f"out of file descriptors: {text}; raise the limit (LimitNOFILE=, ulimit -n)"
    return text


def read_committed(output_dir: Path) -> Committed | None:
    """The summary an output directory was committed with, or None if there is none readable."""
    try:
        doc = orjson.loads(read_regular(output_dir / "summary.json", 64 << 20, follow_symlinks=False))
        return Committed(started_seq=int(doc["started_seq"]), counts=normalise_counts(doc["counts"]))
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None


def remove_work(path: Path) -> None:
    """Remove a work dir, or whatever a processor left in its place (a file, a link); best effort."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


class CommitRefused(Exception):
    """An output could not be committed for a reason that is the video's, not the disk's: the processor
    left no work dir (removed it, or put a file there), or the system was short of fds for a moment."""

    def __init__(self, message: str, kind: str = "permanent") -> None:
        super().__init__(message)
        self.kind = kind


class Daemon:
    def __init__(
        self,
        data_dir: Path,
        config: Config,
        *,
        config_path: Path | None = None,
        once: bool = False,
        notifier: Notifier | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
        install_signals: bool = True,
        failpoints: eventlog.Failpoints | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.paths = Paths(data_dir)
        self.config = config
        self.config_path = config_path
        self.overrides = overrides or {}
        self.once = once
        self.notifier = notifier or Notifier()
        self.now = wall_clock
        self.clock = clock
        self.install_signals = install_signals
        self.failpoints = failpoints or eventlog.Failpoints()
        self.log = get_logger()
        self._event_log: Any = None  # the logger the lazy `log` hands on, once logging is configured (_log_event)
        self.jobs: dict[str, Job] = {}
        self.projector = Projector()
        self.writer: eventlog.LogWriter | None = None
        self.lock: lock.DataDirLock | None = None
        self.manifest = manifest.Manifest(path=self.paths.manifest(config))
        self._manifest_reader = manifest.Reader(self.paths.manifest(config))
        self._manifest_stamp: tuple[int, int, int] | None = None
        self._seen_problems: set[str] = set()
        self._signals = 0
        self._reload = False
        self._stop_reason = ""
        self.stopping = False
        self.stop_deadline = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._changed = threading.Event()
        self._watch_stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self.executor: Executor = LocalExecutor(self._selector)
        self._events_since_snapshot = 0
        self._views_seq = -1
        self._views_due = 0.0
        self._views_cost = 0.0
        self._last_rescan = 0.0
        self._last_extend = 0.0
        self._aborted = False
        self._unready_since: float | None = None  # --once: since when the executor could take no work
        self._executor_gave_up = False
        self._log_damage: str | None = None  # found by the verifier thread in the part a snapshot covers
        self._verifier: threading.Thread | None = None
        # Monotonic time (self.clock) when this daemon's session began: the events it appends carry
        # `session_seconds` measured from here, so a wall clock stepped back loses no session time.
        self._session_t0: float | None = None
        # Per video in backoff: (its not_before, the monotonic time it may start). Waits are measured on
        # the monotonic clock once seen, so a wall-clock step cannot stretch them (see decide.retry_wait).
        self._retry_due: dict[str, tuple[str, float]] = {}
        self.exit_code = EXIT_OK
        self.work = self.paths.work  # where outputs are made: on output/'s file system (see _staging_dir)
        self._request_files: set[str] | None = None  # request files the log names (built when needed)
        self._stuck_requests: set[tuple[str, int, int]] = set()  # handled, but we cannot delete them
        self._state_lock = threading.Lock()  # held while the projector changes: metrics read it from their thread
        self._metrics: MetricsServer | None = None
        self.hooks = Hooks(lambda: self.config.hooks, self.paths.root, self.log, clock)
        self.refresher = Refresher(clock, child_env())

    def available(self) -> Mapping[str, Mapping[str, Any]]:
        """The entries videos may run from (video_id → entry), for scheduling and spawning: the manifest's
        lines and the videos found by `nkoctl add` and [[sources]] (a view: nothing copied or parsed)."""
        return decide.available_entries(self.projector, self.manifest.entries)

    # -- policy from config ---------------------------------------------------------------------
    @property
    def policy(self) -> RetryPolicy:
        d = self.config.daemon
        return RetryPolicy(d.max_attempts, d.backoff_initial, d.backoff_factor, d.backoff_max)

    # -- the log ----------------------------------------------------------------------------------
    def append(self, drafts: list[Draft]) -> list[dict[str, Any]]:
        """Make drafts durable, then fold them in. Only after this returns may they be acted on."""
        assert self.writer is not None
        if self._session_t0 is not None and drafts:
            secs = self.session_seconds()
            drafts = [{**d, "session_seconds": secs} for d in drafts]
        events = self.writer.append(drafts, format_ts(self.now()))
        with self._state_lock:
            for event in events:
                self.projector.apply(event)
                self._log_event(event)
                if event["type"] == "video_retry_scheduled":  # its wait starts now, on the monotonic clock
                    self._retry_due.pop(event["video_id"], None)
                    self._retry_is_due(self.projector.videos[event["video_id"]], self.clock())
                if self._request_files is not None:
                    self._request_files.update(self._request_names(event))
            self.projector.offset = self.writer.offset
        self._events_since_snapshot += len(events)
        self.hooks.on_events(events)
        return events

    def session_seconds(self) -> float:
        """How long this daemon has been up, on the monotonic clock (0 before its daemon_started)."""
        return 0.0 if self._session_t0 is None else round(self.clock() - self._session_t0, 3)

    def _log_event(self, e: dict[str, Any]) -> None:
        kind = e["type"]
        log = self._event_log
        if log is None:  # (the lazy proxy's lookup on every call cost ~0.8 us of each line)
            log = self._event_log = logs_fixed(self.log)
            if log is None:
                log = self.log
        fields = {k: v for k, v in e.items() if k not in ("v", "ts", "type", "session_seconds")}
        if kind == "video_failed":
            log.error(kind, **fields)
        elif kind in (
            "video_retry_scheduled",
            "video_interrupted",
            "request_rejected",
            "log_repaired",
            "source_refresh_failed",
        ):
            log.warning(kind, **fields)
        elif kind == "manifest_checked":
            log.info(kind, seq=e["seq"], problems=len(e.get("problems", ())))
        elif kind == "videos_added":
            ids = e["video_ids"]
            log.info(kind, seq=e["seq"], count=len(ids), first=ids[0] if ids else None)
        elif kind == "videos_discovered":
            found = e["entries"]
            log.info(kind, seq=e["seq"], source=e["source"], count=len(found), first=found[0]["video_id"])
        else:
            log.info(kind, **fields)

    # -- start-up ---------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self._unlink_symlinked_spool()
            for d in (
                self.paths.root,
                self.paths.requests,
                self.paths.output,
                self.paths.work,
                self.paths.checkpoints,
                self.paths.cache,
            ):
                d.mkdir(parents=True, exist_ok=True)
            held = self.lock = lock.acquire(self.paths.root)
            self.work = self._staging_dir()
        except LockHeldError as exc:
            self.log.error("already_running", error=str(exc), pid=exc.pid)
            return EXIT_LOCKED
        except OSError as exc:  # read-only or full file system, or no permission: nothing was started
            if isinstance(exc, PermissionError):
                return self._permission_denied(exc)
            self.log.error("storage_failed", error=f"{exc.strerror or exc}: {exc.filename or self.paths.root}")
            return EXIT_STORAGE
        try:
            return self._run_locked()
        except PermissionError as exc:  # e.g. events.jsonl left root's by `sudo` editing: say whose and how to fix
            return self._permission_denied(exc)
        finally:
            held.release()

    def _other_videos(self) -> bool:
        """Are there videos to work through besides the manifest's: found by `nkoctl add` (in the log, or
        requested), or followed [[sources]]?"""
        return bool(self.projector.discovered or self.config.sources or spool.pending(self.paths.requests))

    def _permission_denied(self, exc: PermissionError) -> int:
        """One clear message (the file, its owner and mode, the fix) and an exit code systemd does not loop on."""
        self.log.error("permission_denied", error=permission_problem(exc, "nkod"), exit_code=EXIT_NOPERM)
        return EXIT_NOPERM

    def _storage_exit(self, exc: BaseException) -> int:
        """Log a failed durable write; the exit code says whether a restart can help (full disk) or not
        (a file we may not write)."""
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, PermissionError):
            cause = cause.__cause__
        if isinstance(cause, PermissionError):
            return self._permission_denied(cause)
        hint = getattr(exc, "hint", None) or "free space or make the data dir writable"
        if isinstance(exc, OSError) and exc.errno not in STORAGE_ERRNOS:
            self.log.error("system_error", error=describe_os_error(exc))
        elif isinstance(exc, OSError):
            self.log.error("storage_failed", error=describe_os_error(exc), hint=hint)
        else:
            self.log.error("storage_failed", error=str(exc), hint=hint)
        return EXIT_STORAGE

    def _unlink_symlinked_spool(self) -> None:
        """requests/ must be a real directory: nkod deletes and writes there (rejected/), and nothing may
        be written outside the data dir through a symlink. A symlink there is moved aside, and said."""
        spool_dir = self.paths.requests
        if spool_dir.is_symlink():
            aside = spool_dir.with_name(f"requests.symlink-{time.time_ns()}")
            os.rename(spool_dir, aside)
            self.log.warning(
                "requests_symlink_moved_aside",
                path=str(spool_dir),
                target=os.readlink(aside),
                moved_to=str(aside),
                hint="requests/ must be a directory inside the data dir; requests left in the target are not read",
            )

    def _staging_dir(self) -> Path:
        """work/, unless output/ is on another file system (a disk mounted there): an output is committed
        by a rename, which cannot cross file systems, so it is then made in output/.staging instead."""
        if os.stat(self.paths.output).st_dev == os.stat(self.paths.work).st_dev:
            return self.paths.work
        staging = self.paths.output / ".staging"
        staging.mkdir(exist_ok=True)
        self.log.info("staging_on_output_fs", output=str(self.paths.output), staging=str(staging))
        return staging

    def _run_locked(self) -> int:
        t0 = self.clock()
        if self.install_signals:  # first: they only set flags, and a SIGHUP must never kill us
            self._install_signal_handlers()
        if not self._start_metrics():
            return EXIT_USAGE
        try:
            with gcpause.paused(freeze=True):  # the state and the modules live as long as the daemon
                replay = snapshot.replay(self.paths.log, self.paths.snapshot)
        except LogError as exc:
            self.log.error("log_unreadable", error=str(exc))
            return EXIT_LOG
        if replay.snapshot_problem:
            self.log.warning("snapshot_ignored", reason=replay.snapshot_problem)
        self.projector = replay.projector
        manifest_path = self.paths.manifest(self.config)
        if self.once and not manifest_path.exists() and not self._other_videos():
            # nothing to do is a mistake here, not a success
            self.log.error(
                "manifest_missing",
                path=str(manifest_path),
                error="--once has no video list to work through",
                hint="check --data-dir (and [daemon] manifest), or write the manifest there first",
            )
            return EXIT_USAGE
        torn = replay.scan.torn
        if torn is not None:
            try:
                kept = eventlog.truncate_torn(self.paths.log, torn)
            except OSError as exc:
                self.log.error("storage_failed", error=f"cannot cut the torn tail of {self.paths.log}: {exc}")
                return EXIT_STORAGE
            self.log.warning(
                "log_torn_tail",
                line=torn.line,
                offset=torn.offset,
                bytes=torn.length,
                reason=torn.reason,
                kept_in=str(kept),
            )
        self.projector.offset = replay.scan.end_offset
        log_id = self.projector.log_id or os.urandom(8).hex()
        code = self._start_executor(log_id)
        if code is not None:
            return code
        try:
            self.writer = eventlog.LogWriter(
                self.paths.log,
                replay.scan.last_seq + 1,
                self.failpoints,
                self._head_crc(replay),
                vouch=self.paths.log_vouch,
            )
            if self.projector.seq == 0:
                self.append([{"type": "log_created", "log_id": log_id, "nkod_version": __version__}])
            session_t0 = self.clock()
            self.append(
                [
                    {
                        "type": "daemon_started",
                        "pid": os.getpid(),
                        "version": __version__,
                        "host": socket.gethostname(),
                        "workers": self.config.daemon.workers,
                        "processor": self.config.daemon.processor,
                        "once": self.once,
                        "replayed_events": replay.tail_events,
                        "snapshot_used": replay.snapshot_used,
                    }
                ]
            )
            self._session_t0 = session_t0
            if torn is not None:
                self.append(
                    [
                        {
                            "type": "log_repaired",
                            "line": torn.line,
                            "offset": torn.offset,
                            "bytes_dropped": torn.length,
                            "reason": torn.reason,
                        }
                    ]
                )
            running = self._running_videos()
            committed = self._committed_for_running(running)
            self._reattach(committed, running)
            if running:  # else recover has nothing to settle (and would pass over every video to see it)
                self.append(decide.recover(self.projector, committed, still_running=self.jobs.keys()))
            self._clean_work()
        except StorageError as exc:
            return self._storage_exit(exc)
        self.log.info(
            "ready",
            seq=self.projector.seq,
            videos=len(self.projector.videos),
            replay_ms=round((self.clock() - t0) * 1000, 1),
            data_dir=str(self.paths.root),
            head_read=replay.head_read,
        )
        self.notifier.ready(self._status_line())
        # The state is replayed and recovered: READY=1. The manifest (O(its lines) to parse) and the requests
        # are inputs the loop reads; they are read now, before any work starts. Derived files after that:
        # nothing waits on them, and a long replay earns a fresh snapshot.
        self._events_since_snapshot = replay.tail_events
        try:
            self._scan_manifest(force=True)
            self._process_requests()
            self._maybe_snapshot()
            self._write_views(force=True)
        except StorageError as exc:
            self.log.error("storage_failed", error=str(exc))
            return EXIT_STORAGE
        if replay.snapshot_offset and not replay.head_unchanged:
            # Start-up trusted the snapshot for the log's head; check those lines too, off the main loop,
            # so damage there stops the daemon just as a full replay would have refused to start. (Not when
            # the log is byte for byte what the last daemon left at its stop: that one checked it all.)
            self._verifier = threading.Thread(
                target=self._verify_head, args=(replay.snapshot_offset,), name="nkod-verify", daemon=True
            )
            self._verifier.start()
        watcher = threading.Thread(target=self._watch, name="nkod-watch", daemon=True)
        watcher.start()
        try:
            self._loop()
        except StorageError as exc:  # the disk refused: stop cleanly, retry later (or say whose file it is)
            self.exit_code = self._storage_exit(exc)
            self._abort_jobs("storage failure: " + str(exc))
        except OSError as exc:  # the disk, or the system (fds, memory): say which, stop cleanly, retry later
            self.exit_code = self._storage_exit(exc)
            self._abort_jobs(("storage failure: " if exc.errno in STORAGE_ERRNOS else "system error: ") + str(exc))
        except Exception as exc:  # a bug: record what was running, then stop (systemd restarts us)
            self.log.exception("daemon_failed", error=f"{type(exc).__name__}: {exc}")
            self._abort_jobs(f"daemon error: {type(exc).__name__}")
            self.exit_code = EXIT_CRASH
        finally:
            self._watch_stop.set()
        self._shutdown()
        return self.exit_code

    def _head_crc(self, replay: snapshot.Replay) -> int | None:
        """CRC-32 of the log as replayed (torn tail cut): from the snapshot's checked CRC plus the tail, else
        of the whole log (C speed: about 0.1 s for 100 MB), so snapshots can record it."""
        if replay.snapshot_head_crc is not None:
            start, seed = replay.snapshot_offset, replay.snapshot_head_crc
        else:
            start, seed = 0, 0
        return eventlog.crc_of_range(self.paths.log, start, replay.scan.end_offset, seed)

    def _verify_head(self, end_offset: int) -> None:
        """Verifier thread: check every line the snapshot covers (checksum, seq, version); only reads."""
        result = eventlog.ScanResult()
        try:
            for _event in eventlog.scan(self.paths.log, result=result):
                if result.end_offset >= end_offset:
                    break
        except LogError as exc:
            self._log_damage = str(exc)
            self._wake()
            return
        self.log.info("log_verified", lines=result.lines, bytes=result.end_offset)

    def _start_executor(self, log_id: str) -> int | None:
        """``executor = "dask"``: reach the cluster before anything is written (None: ready; else the exit
        code: 75 if the scheduler cannot be reached, so systemd tries again; 2 for what a person must fix)."""
        if self.config.daemon.executor != "dask":
            return None
        from nkod.executors.dask import ClusterSetupError, ClusterUnavailable, DaskExecutor

        try:
            executor = DaskExecutor(self.config.dask, log_id, self.clock, self._wake, self.log)
            executor.connect()
            executor.check_output_dir(self.paths.output)
        except ClusterSetupError as exc:
            self.log.error("dask_setup_failed", error=str(exc), config=self.config.source)
            return EXIT_USAGE
        except ClusterUnavailable as exc:
            self.log.error(
                "dask_unreachable",
                error=str(exc),
                key="dask.scheduler_address" if self.config.dask.scheduler_address else "dask.scheduler_file",
                address=exc.address,
                hint="start the scheduler (dask scheduler), or fix the address; systemd tries again",
            )
            return EXIT_STORAGE
        self.executor = executor
        self.log.info("dask_connected", **executor.describe())
        return None

    def _reattach(self, committed: Mapping[str, Committed], running: Mapping[str, Video]) -> None:
        """Videos the log says are running (`running`) whose attempt the executor still runs (a cluster
        outlives the daemon) or finished while we were down: they are collected as usual, not recorded
        interrupted."""
        now = self.clock()
        timeout = self.config.daemon.video_timeout
        candidates = [
            self.executor.new_job(
                video_id=vid,
                attempt=v.attempt,
                started_seq=v.started_seq,
                workdir=self.work / vid,
                started=now,
                deadline=now + timeout if timeout else None,
            )
            for vid, v in running.items()
            if not (vid in committed and committed[vid].started_seq == v.started_seq)
        ]
        for job in self.executor.reattach(candidates):
            self.jobs[job.video_id] = job

    def _running_videos(self) -> dict[str, Video]:
        """The videos the log says are running, by id. The pass over every video is made only when the
        status counts say there are some: after a clean stop there are none, and each of the three passes
        start-up made before READY=1 cost ~0.9 ms per 10k videos."""
        if not self.projector.status_counts[Status.RUNNING]:
            return {}
        return {vid: v for vid, v in self.projector.videos.items() if v.status is Status.RUNNING}

    def _committed_for_running(self, running: Mapping[str, Video]) -> dict[str, Committed]:
        found: dict[str, Committed] = {}
        for vid in running:
            c = read_committed(self.paths.output / vid)
            if c is not None:
                found[vid] = c
        return found

    def _clean_work(self) -> None:
        """Work dirs left by a previous daemon belong to attempts now recorded interrupted: remove.
        So do the temp files of derived writes it was making (never renamed, so never read)."""
        for work in {self.paths.work, self.work}:
            for entry in work.iterdir():
                remove_work(entry)
        for folder in (self.paths.root, self.paths.checkpoints):  # not requests/: nkoctl may be writing
            for tmp in folder.glob(".*.tmp"):
                try:
                    tmp.unlink(missing_ok=True)
                except OSError as exc:  # e.g. checkpoints/ is read-only: a leftover, harmless; say so
                    self.log.warning("temp_file_not_removed", file=str(tmp), error=exc.strerror or str(exc))

    # -- signals and wake-ups -------------------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        from nkod import _early_signals  # signals that came while we were starting: act on them now

        while _early_signals.PENDING:
            signum = _early_signals.PENDING.pop(0)
            if signum == signal.SIGHUP:
                self._on_reload_signal(signum, None)
            else:
                self._on_stop_signal(signum, None)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        self._stop_reason = signal.Signals(signum).name
        self._wake()

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._reload = True
        self._wake()

    def request_stop(self, reason: str = "requested") -> None:
        """Same as one SIGTERM (for embedding and tests)."""
        self._signals += 1
        self._stop_reason = reason
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _watch(self) -> None:
        """Watcher thread: only flags changes to the manifest or the spool and wakes the loop."""
        try:
            from watchfiles import watch

            manifest_path = self.paths.manifest(self.config)
            for _changes in watch(
                self.paths.requests,
                manifest_path.parent,
                recursive=False,
                stop_event=self._watch_stop,
                watch_filter=lambda _c, p: Path(p).parent == self.paths.requests or Path(p) == manifest_path,
                debounce=200,
                raise_interrupt=False,
            ):
                self._changed.set()
                self._wake()
        except Exception as exc:  # the periodic rescan still finds everything, only later
            self.log.warning(
                "watch_failed",
                error=f"{type(exc).__name__}: {exc}",
                fallback_seconds=self.config.daemon.rescan_interval,
            )

    # -- the loop ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            now = self.clock()
            if self._log_damage is not None and self.exit_code != EXIT_LOG:
                self.log.error("log_unreadable", error=self._log_damage, hint="nkoctl fsck")
                self.exit_code = EXIT_LOG
                self._stop_reason = "damaged log"
                self._signals = max(self._signals, 1)
            if self._signals and not self.stopping:
                self._begin_stop(now)
            if self._signals >= 2 and self.jobs and not self._aborted:
                self._abort_jobs(f"stopped at once (second {self._stop_reason})")
            if self._reload:
                self._reload = False
                self._reload_config()
            self._check_lock_file()
            self._reap_jobs()
            self._enforce_deadlines(now)
            if self._changed.is_set() or now - self._last_rescan >= self.config.daemon.rescan_interval:
                self._changed.clear()
                self._last_rescan = now
                self._scan_manifest()
                self._process_requests()
            self._refresh_sources()
            if not self.stopping:
                self._start_jobs()
            self._maybe_snapshot()
            self._write_views()
            self._hooks_pass()
            self.notifier.watchdog()
            self.notifier.status(self._status_line())
            if self.stopping and not self.jobs:
                return
            if self.once and not self.jobs and not self.stopping and not self._work_left():
                self._stop_reason = "once: nothing runnable left"
                return
            if self.once and self._gave_up_on_executor(now):
                return
            if self.writer is not None:  # events.crc: status trusts the log's head while nothing else writes
                self.writer.record()
            self._wait(self._timeout())

    def _gave_up_on_executor(self, now: float) -> bool:
        """--once with work left that the executor cannot take (a cluster without a scheduler or workers) for
        [dask] orphan_grace: a batch job must end, so it stops with exit 75 (try again later)."""
        if self.jobs or self.stopping or self.executor.ready() or not self._work_left():
            self._unready_since = None
            return False
        if self._unready_since is None:
            self._unready_since = now
            return False
        if now - self._unready_since < self.config.dask.orphan_grace:
            return False
        self.log.error(
            "executor_unavailable",
            error=f"no cluster to run videos on for {self.config.dask.orphan_grace:g} s (dask.orphan_grace)",
            **self.executor.describe(),
        )
        self.exit_code = EXIT_STORAGE  # 75: try again later
        self._executor_gave_up = True
        self._stop_reason = "once: the cluster is unavailable"
        return True

    def _check_lock_file(self) -> None:
        """nkod.lock deleted or replaced (by hand: "remove the stale lock"): the directory lock still keeps
        a second nkod out; put the file back so it and status keep naming us."""
        assert self.lock is not None
        found = self.lock.refresh()
        if found is not None:
            self.log.warning("lock_file_changed", path=str(self.lock.path), found=found)

    def _timeout(self) -> float:
        t = 0.5
        short = self.executor.poll_interval(list(self.jobs.values()))
        if short is not None:
            t = min(t, short)
        if self.notifier.watchdog_interval is not None:
            t = min(t, self.notifier.watchdog_interval / 2)
        return t

    def _wait(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            if key.fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
            elif isinstance(key.data, Job):  # registered by the executor for one of its jobs
                self.executor.readable(key.fd, key.data)

    def _work_left(self) -> bool:
        """For --once: is anything still to run in this process (including videos in backoff)?"""
        if not self.refresher.first_pass_done(self.config.sources):  # --once lists each source once first
            return True
        if self.projector.paused:
            return False
        entries = self.available()
        videos = self.projector.videos
        return any(vid in entries and not videos[vid].skipped for vid in (*self.projector.redo, *self.projector.queue))

    # -- starting work ------------------------------------------------------------------------------
    def _start_jobs(self) -> None:
        free = self.config.daemon.workers - len(self.jobs)
        if free <= 0 or not self.executor.ready():
            return
        # Running videos are in neither index, so what next_runnable returns is never already running.
        mono = self.clock()
        entries = self.available()
        picks = decide.next_runnable(
            self.projector,
            entries,
            self.now(),
            free,
            lambda v: self._retry_is_due(v, mono),
            steering.entry_priorities(entries),
        )
        if not picks:
            return
        for vid in picks:
            self._retry_due.pop(vid, None)
        for vid in picks if self.executor.stages_locally else ():
            workdir = self.work / vid
            if workdir.is_dir() and not workdir.is_symlink():
                shutil.rmtree(workdir)
            elif workdir.exists() or workdir.is_symlink():  # a file a processor left there: not a dir to clear
                workdir.unlink()
            workdir.mkdir()
        # Group commit: every start of this pass in one append, one fsync.
        # Each start names the entry it ran from, so a later change to the line can be told (status, plan).
        starts = [
            {**decide.start_draft(self.projector.videos[vid]), "entry_hash": steering.entry_fingerprint(entries[vid])}
            for vid in picks
        ]
        for event in self.append(starts):
            self._spawn(event["video_id"], event)

    def _retry_is_due(self, video: Video, mono: float) -> bool:
        """May `video` start, as far as its backoff goes? The first time a wait is seen, its end is fixed on
        the monotonic clock: what is left of it on the wall clock, at most the delay it was scheduled with
        and backoff_max (decide.retry_wait). A wall clock stepped back later cannot hold it longer."""
        if video.not_before is None:
            return True
        anchor = self._retry_due.get(video.video_id)
        if anchor is None or anchor[0] != video.not_before:
            wait = decide.retry_wait(video, self.now(), self.policy.backoff_max)
            anchor = (video.not_before, mono + wait)
            self._retry_due[video.video_id] = anchor
        return mono >= anchor[1]

    def _spawn(self, vid: str, event: dict[str, Any]) -> None:
        """Start the worker for a video whose video_started is durable. If the system cannot make one
        (out of fds, memory, processes), the video gets a transient failure now: never left running."""
        try:
            self._spawn_worker(vid, event)
        except OSError as exc:
            remove_work(self.work / vid)
            self.log.warning("worker_start_failed", video_id=vid, error=describe_os_error(exc))
            outcome = Outcome(
                ok=False, kind="transient", error=f"cannot start a worker process: {describe_os_error(exc)}"
            )
            self.append(decide.outcome_drafts(self.projector.videos[vid], outcome, self.policy, self.now()))

    def _spawn_worker(self, vid: str, event: dict[str, Any]) -> None:
        workdir = self.work / vid
        job_spec = {
            "video": self.available()[vid],
            "workdir": str(workdir),
            "cache_dir": str(self.paths.cache),
            "processor": self.config.daemon.processor,
            "settings": dict(self.config.pipeline),
            "attempt": event["attempt"],
            "workers": self.config.daemon.workers,
        }
        timeout = self.config.daemon.video_timeout
        now = self.clock()
        job = self.executor.new_job(
            video_id=vid,
            attempt=event["attempt"],
            started_seq=event["seq"],
            workdir=workdir,
            started=now,
            deadline=now + timeout if timeout else None,
        )
        self.executor.start(job, job_spec)
        self.jobs[vid] = job

    # -- worker messages and endings --------------------------------------------------------------
    def _reap_jobs(self) -> None:
        """Record how each exited worker ended. Outputs are committed one by one; the events of all the
        workers reaped in this pass go in one append (group commit: one fsync however many finished)."""
        drafts: list[Draft] = []
        ended: list[Job] = []
        storage_error: str | None = None
        for job in list(self.jobs.values()):
            if not self.executor.collect(job):
                continue
            del self.jobs[job.video_id]
            try:
                drafts.extend(self._finish(job))
            except StorageError as exc:  # record what is already committed, then stop
                # Not forgotten: its ending is not recorded, and what it left (a remote attempt's done.json
                # and work/) lets the next start commit it instead of running it again.
                storage_error = str(exc)
                break
            ended.append(job)
            if job.outcome is not None and job.outcome.kind == "storage":
                storage_error = f"a worker could not write: {job.outcome.error}"
                break
        if drafts:
            self.append(drafts)
            self.failpoints.hit("after_append")
        for job in ended:
            self.executor.forget(job)
        if storage_error is not None:
            raise StorageError(storage_error)

    def _finish(self, job: Job) -> list[Draft]:
        """The event recording how `job` ended (its output committed first, if it succeeded)."""
        video = self.projector.videos[job.video_id]
        outcome = job.outcome
        code = job.returncode
        if outcome is not None and outcome.ok:
            try:
                self._commit(job)
            except CommitRefused as exc:
                remove_work(job.workdir)
                outcome = Outcome(ok=False, kind=exc.kind, error=str(exc))
            return decide.outcome_drafts(video, outcome, self.policy, self.now())
        remove_work(job.workdir)
        if outcome is not None and outcome.kind == "storage":
            # The disk, not the video: recorded interrupted (redone first); the caller stops the daemon.
            return [decide.interrupted_draft(video, f"storage: {outcome.error}")]
        if job.timed_out:
            timeout = self.config.daemon.video_timeout
            outcome = Outcome(ok=False, kind="transient", error=f"timed out after {timeout:g} s")
        elif job.stop_reason is not None:
            return [decide.interrupted_draft(video, job.stop_reason)]
        elif outcome is None:
            assert code is not None
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            outcome = Outcome(ok=False, kind="transient", error=f"worker process died ({how}) without a result")
        return decide.outcome_drafts(video, outcome, self.policy, self.now())

    def _commit(self, job: Job) -> None:
        """Commit the output (temp dir → fsync → rename into place); its event is appended by the caller.

        A crash after the rename and before that append is settled at start-up by `decide.recover`."""
        assert job.outcome is not None
        vid = job.video_id
        summary = {
            "video_id": vid,
            "started_seq": job.started_seq,
            "attempt": job.attempt,
            "counts": job.outcome.counts,
            "finished_at": format_ts(self.now()),
            "seconds": round(self.clock() - job.started, 3),
            "video": self.available().get(vid, {}),
        }
        target = self.paths.output / vid
        if job.workdir.is_symlink() or not job.workdir.is_dir():
            raise CommitRefused(f"the processor removed its work dir {job.workdir} (or replaced it): nothing to commit")
        renamed = False
        try:
            try:
                atomic_write(job.workdir / "summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2))
            except OSError as exc:
                if exc.errno in STORAGE_ERRNOS or exc.errno in RESOURCE_ERRNOS:
                    raise
                # The work dir is the processor's: gone, replaced or made unwritable by it.
                raise CommitRefused(
                    f"cannot write the summary into the work dir {job.workdir}: {describe_os_error(exc)}"
                ) from exc
            self.failpoints.hit("before_output_rename")
            if target.exists() and self.projector.videos[vid].redo:
                # nkoctl redo: the previous output is kept under archive/redo/ until now, the new one's commit.
                kept = self.paths.archive / "redo" / f"{vid}-{format_ts(self.now()).replace(':', '')}"
                kept.parent.mkdir(parents=True, exist_ok=True)
                os.rename(target, kept)
                fsync_dir(kept.parent)
                self.log.info("output_archived", video_id=vid, path=str(kept), reason="redo")
            elif target.exists():
                # An output whose completion the log lacks (a crash, or a repair that dropped the line): it
                # may be the only copy of finished work, so it is kept aside, never deleted.
                kept = self.paths.archive / "replaced-outputs" / f"{vid}-{format_ts(self.now()).replace(':', '')}"
                kept.parent.mkdir(parents=True, exist_ok=True)
                os.rename(target, kept)
                fsync_dir(kept.parent)
                self.log.warning("output_kept_aside", video_id=vid, path=str(kept))
            os.rename(job.workdir, target)
            renamed = True
            fsync_dir(self.paths.output)
            fsync_dir(job.workdir.parent)
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # cannot happen with _staging_dir, unless mounts changed under us
                raise StorageError(
                    f"cannot commit output of {vid}: {job.workdir} and {target} are on different file systems",
                    hint="restart nkod (it stages on output/'s file system when it starts); mounts must not change"
                    " while it runs",
                ) from exc
            if exc.errno in RESOURCE_ERRNOS and not renamed:  # short of fds or memory for a moment
                raise CommitRefused(f"cannot commit output: {describe_os_error(exc)}", kind="transient") from exc
            raise StorageError(f"cannot commit output of {vid} to {target}: {exc.strerror or exc}") from exc
        self.failpoints.hit("after_output_rename")

    # -- timeouts and stopping --------------------------------------------------------------------
    def _enforce_deadlines(self, now: float) -> None:
        for job in self.jobs.values():
            if job.deadline is not None and now >= job.deadline and job.kill_at is None:
                job.timed_out = True
                self.log.warning("video_timeout", video_id=job.video_id, seconds=self.config.daemon.video_timeout)
                self._terminate(job, "timeout")
            if job.kill_at is not None and now >= job.kill_at and self.executor.running(job):
                self.executor.kill(job)
        if self.stopping:
            remaining = self.stop_deadline - now
            if remaining <= 0:
                for job in self.jobs.values():
                    if job.stop_reason is None:
                        grace = self.config.daemon.stop_grace
                        self._terminate(job, f"stop grace period ({grace:g} s) expired")
            if self.jobs and now - self._last_extend >= 1.0:
                self._last_extend = now
                self.notifier.extend_timeout(max(remaining, 0) + TERM_GRACE + 10)

    def _terminate(self, job: Job, reason: str) -> None:
        job.stop_reason = reason
        self.executor.terminate(job)
        job.kill_at = self.clock() + TERM_GRACE

    def _begin_stop(self, now: float) -> None:
        self.stopping = True
        grace = self.config.daemon.stop_grace
        self.stop_deadline = now + grace
        running = sorted(self.jobs)
        self.log.info("stopping", signal=self._stop_reason, running=running, grace_seconds=grace)
        self.notifier.stopping(f"stopping: waiting up to {grace:g} s for {len(running)} running video(s)")
        if running:
            self.notifier.extend_timeout(grace + TERM_GRACE + 10)
            self._last_extend = now

    def _abort_jobs(self, reason: str) -> None:
        """Stop every worker now and wait for each, so each is recorded before we exit."""
        self._aborted = True
        for job in self.jobs.values():
            job.stop_reason = job.stop_reason or reason
            job.kill_at = self.clock()
            self.executor.kill(job)
        for job in list(self.jobs.values()):
            self.executor.wait(job)
        try:
            self._reap_jobs()
        except StorageError as exc:
            self.log.error("storage_failed", error=str(exc))
            self.exit_code = EXIT_STORAGE
        self.stopping = True

    def _refresh_sources(self) -> None:
        """[[sources]]: reap a listing that ended (its videos become events), start the next one due."""
        try:
            finished = self.refresher.poll(self.config.sources, start_new=not self.stopping)
        except RefreshStartError as exc:  # out of processes or fds for now: tried again at its next refresh
            finished = [Finished(exc.source, None, str(exc))]
        for done in finished:
            src = done.source
            if done.entries is None:
                self.append([{"type": "source_refresh_failed", "name": src.name, "url": src.url, "error": done.error}])
                continue
            valid = [e for e in done.entries if sources.entry_problem(e) is None]
            listing = {"source": src.name, "url": src.url, "priority": src.priority, "entries": valid}
            known = sources.Known.of(self.projector.videos, self.projector.discovered, self.manifest.entries)
            self.append(sources.discover_drafts(known, [listing]).drafts)

    def _shutdown(self) -> None:
        self.refresher.close()
        self.executor.close()
        if self._verifier is not None:  # a short run (--once) still learns what the verifier finds
            self._verifier.join()
            if self._log_damage is not None and self.exit_code != EXIT_LOG:
                self.log.error("log_unreadable", error=self._log_damage, hint="nkoctl fsck")
                self.exit_code = EXIT_LOG
        reason = self._stop_reason or "stopped"
        try:
            # After a storage or permission failure the log may not take a line; a cluster that went away is
            # no reason to skip the stop's record and snapshot.
            if self.exit_code not in (EXIT_STORAGE, EXIT_NOPERM) or self._executor_gave_up:
                self.append([{"type": "daemon_stopped", "reason": reason, "exit_code": self.exit_code}])
                if self.exit_code == EXIT_LOG:  # the next start must meet the damage before any work
                    self.paths.snapshot.unlink(missing_ok=True)
                else:
                    self._write_snapshot(final=True)
                self._write_views(force=True)
        except (StorageError, OSError) as exc:
            self.log.error("storage_failed", error=str(exc))
            self.exit_code = EXIT_STORAGE
        with contextlib.suppress(OSError):
            self.paths.activity.unlink()
        self._stop_observers(reason)
        if self.writer is not None:
            self.writer.close()
        self.log.info("stopped", reason=reason, exit_code=self.exit_code, seq=self.projector.seq)

    # -- config reload ----------------------------------------------------------------------------
    def _reload_config(self) -> None:
        from nkod.config import with_overrides

        try:
            fresh = with_overrides(load_config(self.config_path), **self.overrides)
            load_processor(fresh.daemon.processor)  # a bad one would fail every remaining video
        except ConfigError as exc:
            self.log.error("config_reload_failed", error=str(exc), kept=self.config.source)
            return
        if fresh.daemon.executor != self.config.daemon.executor or fresh.dask != self.config.dask:
            # The executor holds running videos: it changes at the next start, not under them.
            self.log.warning("executor_change_needs_restart", kept=self.config.daemon.executor)
            fresh = dataclasses.replace(
                fresh,
                daemon=dataclasses.replace(fresh.daemon, executor=self.config.daemon.executor),
                dask=self.config.dask,
            )
        self.config = fresh
        self.append([{"type": "config_reloaded", "source": fresh.source, "workers": fresh.daemon.workers}])

    # -- manifest and requests --------------------------------------------------------------------
    def _scan_manifest(self, force: bool = False) -> None:
        path = self.paths.manifest(self.config)
        try:
            st = path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if not force and stamp == self._manifest_stamp:
            return
        self._manifest_stamp = stamp
        if self._manifest_reader.path != path:  # the config names another file now
            self._manifest_reader = manifest.Reader(path)
        # Only the bytes appended since the last read are parsed (the whole file if it was rewritten).
        loaded = self._manifest_reader.read()
        if not loaded.readable:  # e.g. swapped for a FIFO: report it, and keep running what was read before
            loaded.entries = self.manifest.entries
        self.manifest = loaded
        added = self._manifest_reader.added if loaded.readable else []
        self._manifest_reader.added = []  # (a million ids after a first read: not kept while idle)
        new = [vid for vid in added if vid not in self.projector.videos]
        drafts: list[Draft] = []
        if new:
            drafts.append({"type": "videos_added", "video_ids": new})
        if loaded.readable:
            # Lines gone, back or changed: only a whole read can show those; an append only adds lines.
            compared = self.projector.videos if self._manifest_reader.whole else added
            drafts += steering.compare_drafts(self.projector.videos, self.available(), compared)
        problems = tuple(p.as_dict() for p in self.manifest.problems)
        if problems != tuple(self.projector.manifest_problems):
            drafts.append({"type": "manifest_checked", "path": str(path), "problems": list(problems)})
        for p in self.manifest.problems:
            if str(p) not in self._seen_problems:
                self._seen_problems.add(str(p))
                if self.manifest.missing:  # plainly, with where it was looked for: often a --data-dir typo
                    self.log.warning(
                        "manifest_missing",
                        path=p.path,
                        hint=f"write the video list to {p.path} (a JSON object a line); nkod reads it when it appears",
                    )
                elif p.line:
                    self.log.warning("manifest_line_skipped", file=p.path, line=p.line, error=p.error)
                else:
                    self.log.warning("manifest_unreadable", file=p.path, error=p.error)
        self.append(drafts)

    def _process_requests(self) -> None:
        for path in spool.pending(self.paths.requests):
            if self._already_handled(path):  # applied or rejected before, but it could not be removed
                self._remove_request(path)
                continue
            try:
                req = spool.parse(path)
                drafts = self._request_drafts(req)
            except Exception as exc:  # a bad request never stops the daemon
                reason = str(exc)
                self.append([{"type": "request_rejected", "file": path.name, "error": reason}])
                try:
                    spool.reject(path, reason)
                except OSError as move_exc:
                    self._cannot_remove(path, move_exc)
                continue
            self._act_on(self.append(drafts))
            self._remove_request(path)  # only now: its events are durable
        with contextlib.suppress(OSError):
            fsync_dir(self.paths.requests)

    def _act_on(self, events: list[dict[str, Any]]) -> None:
        """What a durable steering event asks of running workers: pause --now and cancel stop them (each
        is then recorded interrupted, with the reason, when its worker is reaped)."""
        for e in events:
            if e["type"] == "queue_paused" and e.get("now") is True:
                for job in self.jobs.values():
                    if job.stop_reason is None:
                        self._terminate(job, "paused (nkoctl pause --now)")
            elif e["type"] == "video_cancel_requested":
                cancelled = self.jobs.get(e["video_id"])
                if cancelled is not None and cancelled.stop_reason is None:
                    self._terminate(cancelled, "cancelled")

    def _already_handled(self, path: Path) -> bool:
        """Does the log already name this request file? Asked only where we cannot delete files in
        requests/ (the one way a handled request outlives its events), so the log is read only then."""
        if self._request_files is None:
            if os.access(self.paths.requests, os.W_OK | os.X_OK):
                return False
            names: set[str] = set()
            for e in eventlog.scan(self.paths.log):
                names.update(self._request_names(e))
            self._request_files = names
        return path.name in self._request_files

    @staticmethod
    def _request_names(e: dict[str, Any]) -> list[str]:
        """The request file(s) an event was made from (request names are unique: a timestamp + random)."""
        return [name for key in ("file", "request") if isinstance(name := e.get(key), str)]

    def _remove_request(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            self._cannot_remove(path, exc)

    def _cannot_remove(self, path: Path, exc: OSError) -> None:
        """A handled request we may not delete (requests/ made by root): say once how to fix it, and go
        on; the log names the file, so neither this run nor the next applies it again."""
        try:
            st = path.stat()
            key = (path.name, st.st_ino, st.st_mtime_ns)
        except OSError:
            return
        if key in self._stuck_requests:
            return
        self._stuck_requests.add(key)
        spool_dir = self.paths.requests
        self.log.error(
            "request_not_removed",
            file=str(path),
            error=exc.strerror or str(exc),
            hint=f"{spool_dir} must belong to the user nkod runs as (uid {os.getuid()}, gid {os.getgid()}): "
            f"chown -R {os.getuid()}:{os.getgid()} {spool_dir} && chmod 2770 {spool_dir}. "
            "The request was handled once and is not applied again.",
        )

    def _request_drafts(self, req: spool.Request) -> list[Draft]:
        if req.type == "retry":
            drafts, refused = decide.retry_drafts(self.projector, req.body.get("video_ids"), req.name)
            if refused:
                why = []
                for vid in refused:
                    v = self.projector.videos.get(vid)
                    why.append(f"{vid}: {'unknown video' if v is None else v.status.value}")
                drafts.append(
                    {
                        "type": "request_rejected",
                        "file": req.name,
                        "error": "not retried (only failed or waiting videos are): " + "; ".join(why),
                    }
                )
            if not drafts:
                drafts.append({"type": "request_rejected", "file": req.name, "error": "no failed videos to retry"})
            return drafts
        if req.type == "import_checkpoint":
            return self._import_drafts(req)
        if req.type in steering.REQUESTS:
            videos = steering.with_entries(self.projector.videos, self.available())
            drafts, refused_why = steering.request_drafts(videos, req.type, req.body, req.name)
            if not drafts:  # none applies (the video finished meanwhile…): rejected, and nkoctl says why
                raise ValueError(f"{req.type}: " + "; ".join(f"{vid}: {why}" for vid, why in refused_why))
            if refused_why:
                drafts.append(
                    {
                        "type": "request_rejected",
                        "file": req.name,
                        "error": f"not applied ({req.type}): " + "; ".join(f"{vid}: {why}" for vid, why in refused_why),
                    }
                )
            return drafts
        if req.type == "add":  # entries nkoctl listed; what is known by now (an earlier add, too) is skipped
            known = sources.Known.of(self.projector.videos, self.projector.discovered, self.manifest.entries)
            return sources.discover_drafts(known, req.body["listings"], request=req.name, adhoc=True).drafts
        raise ValueError(f"request type {req.type!r} is not handled by the daemon")

    def _import_drafts(self, req: spool.Request) -> list[Draft]:
        drafts: list[Draft] = []
        skipped = 0
        for vid in req.body["completed"]:
            v = self.projector.videos.get(vid)
            if v is not None and v.status in (Status.COMPLETED, Status.RUNNING):
                skipped += 1
                continue
            drafts.append(
                {
                    "type": "video_imported",
                    "video_id": vid,
                    "status": "completed",
                    "source": req.body.get("source"),
                    "request": req.name,
                }
            )
        for f in req.body.get("failed", []):
            vid = f["id"]
            v = self.projector.videos.get(vid)
            if (v is not None and v.status is not Status.PENDING) or vid in req.body["completed"]:
                skipped += 1
                continue
            drafts.append(
                {
                    "type": "video_imported",
                    "video_id": vid,
                    "status": "failed",
                    "error": str(f.get("error") or ""),
                    "timestamp": str(f.get("timestamp") or ""),
                    "source": req.body.get("source"),
                    "request": req.name,
                }
            )
        if not drafts:
            drafts.append(
                {
                    "type": "request_rejected",
                    "file": req.name,
                    "error": f"nothing to import ({skipped} already known here)",
                }
            )
        return drafts

    # -- derived files ----------------------------------------------------------------------------
    def _maybe_snapshot(self) -> None:
        if self._events_since_snapshot >= self.config.daemon.snapshot_every:
            self._write_snapshot()

    def _write_snapshot(self, final: bool = False) -> None:
        try:
            w = self.writer
            head_crc = w.crc if w is not None and w.offset == self.projector.offset else None
            log_stat = None
            # The last snapshot of a run: when the log on disk is byte for byte what this daemon checked and
            # wrote (one read of it, at the stop), it records the log's stat, and until the log changes
            # status and the next start need not read the whole head again to check it.
            if (
                final
                and w is not None
                and head_crc is not None
                and eventlog.crc_of_range(w.path, 0, w.offset) == head_crc
            ):
                log_stat = snapshot.log_stat(self.paths.log)
            snapshot.write(self.paths.snapshot, self.projector, self.failpoints, head_crc, log_stat)
        except OSError as exc:  # only an optimisation: never stop work for it
            self.log.warning("snapshot_failed", error=str(exc))
            return
        self._events_since_snapshot = 0

    def _write_views(self, force: bool = False) -> None:
        now = self.clock()
        if not force and (now < self._views_due or (self.projector.seq == self._views_seq and not self.jobs)):
            return
        t0 = time.perf_counter()
        try:
            self._write_view_files()
        except OSError as exc:
            self.log.warning("views_failed", error=str(exc))
        self._views_cost = time.perf_counter() - t0
        self._views_seq = self.projector.seq
        # Views are O(videos): space them out so they stay a small share of the loop's time.
        self._views_due = now + max(self.config.daemon.views_interval, 20 * self._views_cost)

    def _write_view_files(self) -> None:
        p = self.projector
        session = self.session_seconds()
        elapsed = views.elapsed_seconds(p, self.now(), daemon_running=True, session_seconds=session)
        opt = orjson.OPT_INDENT_2
        atomic_write(
            self.paths.checkpoints / "extraction_checkpoint.json",
            orjson.dumps(views.checkpoint_view(p), option=opt),
        )
        atomic_write(
            self.paths.checkpoints / "extraction_progress.json",
            orjson.dumps(views.progress_view(p, elapsed), option=opt),
        )
        activity = {
            "pid": os.getpid(),
            "updated_at": format_ts(self.now()),
            # This session's length, and the monotonic clock it was read at: nkoctl adds what passed since
            # on the same (system-wide) monotonic clock, so a wall-clock step does not change elapsed time.
            "session_seconds": session,
            "monotonic": round(self.clock(), 3),
            "stopping": self.stopping,
            "workers": self.config.daemon.workers,
            "executor": self.executor.describe(),
            "running": {
                vid: {  # the processor's progress first: its keys (untrusted) cannot hide nkod's own
                    **j.progress,
                    "attempt": j.attempt,
                    "seconds": round(self.clock() - j.started, 1),
                    **({"where": j.where} if j.where else {}),
                }
                for vid, j in self.jobs.items()
            },
        }
        atomic_write(self.paths.activity, orjson.dumps(activity, default=str))

    def _status_line(self) -> str:
        p = self.projector
        done = p.status_counts[Status.COMPLETED]
        failed = p.status_counts[Status.FAILED]
        text = f"{done}/{len(p.videos)} done, {len(self.jobs)} running, {failed} failed"
        if self.jobs:
            vid, job = next(iter(self.jobs.items()))
            stage = job.progress.get("stage")
            text += f"; current: {vid}" + (f" ({stage})" if stage else "")
        cluster = self.executor.describe()
        if cluster.get("name") == "dask":
            text += f"; cluster: {cluster.get('workers', 0)} workers" if cluster.get("connected") else "; cluster lost"
        if self.projector.paused:
            text = "paused (nkoctl resume): " + text
        if self.stopping:
            text = "stopping: " + text
        return text

    # -- metrics and hooks ------------------------------------------------------------------------
    def _start_metrics(self) -> bool:
        """Serve ``[daemon] metrics_listen`` (if set) from a daemon thread; False if it cannot listen."""
        listen = self.config.daemon.metrics_listen
        if not listen:
            return True
        from nkod.config import parse_listen
        from nkod.metrics import MetricsServer  # only now: prometheus_client is not loaded without metrics

        host, port = parse_listen(listen)
        try:
            self._metrics = MetricsServer(host, port, self._metrics_summary)
        except OSError as exc:
            self.log.error(
                "metrics_failed",
                error=f"cannot listen on {listen}: {exc.strerror or exc}",
                key="daemon.metrics_listen",
                config=self.config.source,
            )
            return False
        self.log.info("metrics_listening", url=self._metrics.url)
        return True

    def _metrics_summary(self) -> Summary | None:
        """Called by the metrics server's thread at each scrape; None (no samples) until the log is
        replayed: an empty state would read as a reset of every counter."""
        from nkod.metrics import summarize

        if self.writer is None:
            return None
        with self._state_lock:  # only for the copy (dict copies), not for the whole summary
            state = self.projector.state()
        return dataclasses.replace(summarize(state, self.now(), daemon_running=True), executor=self.executor.describe())

    def _hooks_pass(self) -> None:
        self.hooks.poll()
        self.hooks.idle(not self.jobs and not self._work_left(), self._idle_fields)

    def _idle_fields(self) -> dict[str, Any]:
        p = self.projector
        return {
            "seq": p.seq,
            "ts": format_ts(self.now()),
            "total": len(p.videos),
            "completed": p.status_counts[Status.COMPLETED],
            "failed": p.status_counts[Status.FAILED],
        }

    def _stop_observers(self, reason: str) -> None:
        """At stop: on_stopped (from daemon_stopped, or without it when it could not be written), then
        wait for running hooks, each at most its timeout; then close the metrics endpoint."""
        self.hooks.stopping(
            {"type": "daemon_stopped", "reason": reason, "exit_code": self.exit_code, "seq": self.projector.seq}
        )
        wait = self.hooks.longest_wait()
        if wait:
            self.notifier.extend_timeout(wait + 10)
        self.hooks.wait(stop_now=lambda: self._signals >= 2)
        if self._metrics is not None:
            self._metrics.close()
