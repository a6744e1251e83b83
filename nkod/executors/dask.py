"""The dask executor: each job is a task on a Dask distributed cluster; the daemon still commits and logs.

Imported only when ``[daemon] executor = "dask"`` (``pip install 'nkod[dask]'``); the local path never loads
distributed. The task (`nkod.executors.dask_task.run_attempt`) runs the usual worker process inside the
attempt's staging directory on the shared filesystem, ``<shared_dir>/staging/<log id>/<video>/<seq>.<nonce>/``,
and leaves its ending there in ``done.json``; the daemon renames ``work/`` into ``output/<video>/`` (so
output/ must be on the shared filesystem) and appends ``video_completed`` only for the attempt the log says
is running. Each task's key, ``nkod-<log id>-<video>-<started seq>``, is also published as a dataset, which
the scheduler keeps when the daemon dies: a restarted daemon re-attaches to it (`reattach`).

How each failure ends (the daemon's log decides retries; the cluster must not retry by itself:
``distributed.scheduler.allowed-failures: 0``, and tasks are submitted with ``retries=0``):

- a worker or host lost: the task errs (KilledWorker): a transient failure, retried with nkod's backoff;
- the daemon killed: re-attached at restart; ended meanwhile: taken from done.json; else interrupted;
- the scheduler lost: the running attempts are orphans: committed if their done.json appears within
  ``orphan_grace``, else recorded interrupted (run first once a scheduler is back; the executor reconnects
  by itself, from a background thread, so the loop never waits on the network to find one);
- stop, timeout: a ``stop`` file asks the task to SIGTERM the processor (``kill``: SIGKILL); an attempt that
  still does not end is fenced: its directory is removed (the task kills its processor when it sees that)
  and nothing it writes later is read.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from nkod.config import DaskConfig
from nkod.decide import Outcome
from nkod.executors.base import TERM_GRACE, Job, outcome_from_message
from nkod.executors.dask_task import run_attempt

FENCE_AFTER = 10.0  # seconds after SIGKILL was asked before an attempt that has not ended is given up (fenced)
LOOK_EVERY = 1.0  # seconds between reads of a running attempt's progress.json / where.json
MONITOR_EVERY = 1.0  # seconds between the background thread's looks at the cluster
CALL_TIMEOUT = 5.0  # the longest any one request to the scheduler may take (a paused scheduler never answers)


class ClusterUnavailable(Exception):
    """The scheduler cannot be reached (transient: the daemon exits 75 and systemd retries)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot reach the Dask scheduler at {address}: {reason}")
        self.address = address


class ClusterSetupError(Exception):
    """Something a person must fix (distributed not installed, the shared dir unusable): exit 2."""


@dataclass
class DaskJob(Job):
    key: str = ""
    attempt_dir: Path = field(default_factory=Path)
    future: Any = None
    ending: dict[str, Any] | None = None  # from done.json or the task's result
    error: str | None = None  # the task failed as a Dask task (its worker was lost)
    lost_at: float | None = None  # the scheduler connection was lost while this ran (an orphan)
    next_look: float = 0.0
    next_find: float = 0.0


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def scheduler_address(config: DaskConfig) -> str:
    """The address to connect to: the configured one, or the one in the scheduler file (read each time: a
    restarted scheduler may write a new one)."""
    if config.scheduler_address:
        return config.scheduler_address
    doc = _read_json(Path(config.scheduler_file))
    if doc is None or not isinstance(doc.get("address"), str):
        raise ClusterUnavailable(config.scheduler_file, "the scheduler file is missing or has no address yet")
    return str(doc["address"])


class DaskExecutor:
    name = "dask"
    stages_locally = False

    def __init__(
        self,
        config: DaskConfig,
        log_id: str,
        clock: Callable[[], float],
        wake: Callable[[], None],
        log: Any,
    ) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise ClusterSetupError(
                "executor = \"dask\" needs Dask distributed: pip install 'nkod[dask]' (in nkod's venv)"
            ) from exc
        self.config = config
        self.clock = clock
        self.wake = wake
        self.log = log
        self.shared = Path(config.shared_dir)
        self.staging = self.shared / "staging" / log_id
        self.cache = self.shared / "cache"
        self.prefix = f"nkod-{log_id}-"
        self.client: Any = None
        self.address = config.scheduler_address or config.scheduler_file
        self.cluster: dict[str, Any] = {"connected": False, "workers": 0, "slots": 0}
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._was_connected = False
        # Datasets of jobs that are over, unpublished by the watcher thread: the loop never waits on the network.
        self._unpublish: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.call_timeout = min(CALL_TIMEOUT, config.connect_timeout)

    # -- connection ---------------------------------------------------------------------------------
    def _connect(self) -> Any:
        from distributed import Client

        address = scheduler_address(self.config)
        self.address = address
        try:
            return Client(  # type: ignore[no-untyped-call]
                address, timeout=self.config.connect_timeout, set_as_default=False, name="nkod", heartbeat_interval=2
            )
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailable(address, str(exc) or type(exc).__name__) from exc

    def connect(self) -> None:
        """At start-up: the shared dir checked, the scheduler reached (ClusterUnavailable if it cannot be),
        then a background thread keeps watching (and reconnecting)."""
        if not self.shared.is_dir():
            raise ClusterSetupError(f"[dask] shared_dir {self.shared}: no such directory (mount it first)")
        try:
            self.staging.mkdir(parents=True, exist_ok=True)
            self.cache.mkdir(exist_ok=True)
        except OSError as exc:
            raise ClusterSetupError(f"[dask] shared_dir {self.shared}: cannot write: {exc.strerror or exc}") from exc
        self.client = self._connect()
        self._was_connected = True
        try:
            self._refresh_cluster()
        except Exception as exc:  # connected, yet no answer: a hung scheduler
            raise ClusterUnavailable(self.address, f"no answer: {type(exc).__name__}: {exc}") from exc
        self._monitor = threading.Thread(target=self._watch, name="nkod-dask", daemon=True)
        self._monitor.start()

    def check_output_dir(self, output: Path) -> None:
        """Outputs are committed by renaming the staging dir's work/ into output/: one filesystem."""
        if os.stat(output).st_dev != os.stat(self.staging).st_dev:
            raise ClusterSetupError(
                f"output dir {output} is not on the filesystem of [dask] shared_dir {self.shared}: outputs are"
                " committed by a rename; mount the shared filesystem (e.g. a bind mount of a directory in it)"
                f" at {output}"
            )

    def _connected(self) -> bool:
        client = self.client
        return client is not None and client.status == "running"

    def _watch(self) -> None:
        while not self._stop.wait(MONITOR_EVERY):
            try:
                if self._connected():
                    try:
                        self._refresh_cluster()
                    except Exception as exc:  # connected, but no answer in time: a hung scheduler or network
                        self._unanswered(f"{type(exc).__name__}: {exc}")
                        continue
                    if not self._was_connected:  # distributed reconnected by itself (or the scheduler answers again)
                        self._was_connected = True
                        self.log.info("dask_scheduler_connected", scheduler=self.address, **self.cluster)
                        self.wake()
                    self._drain_unpublish()
                    continue
                if self._was_connected:
                    self._was_connected = False
                    self.cluster = {**self.cluster, "connected": False, "workers": 0, "slots": 0}
                    self.log.warning("dask_scheduler_lost", scheduler=self.address)
                    self.wake()
                client = self.client
                if client is not None and client.status == "connecting":
                    continue  # distributed is trying again by itself
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close(timeout=1)
                self.client = self._connect()
                self._was_connected = True
                self._refresh_cluster()
                self.log.info("dask_scheduler_connected", scheduler=self.address, **self.cluster)
                self.wake()
            except ClusterUnavailable as exc:
                self.cluster = {**self.cluster, "connected": False, "error": str(exc)}
            except Exception as exc:  # never let the watcher die: the loop reads its state only
                self.cluster = {**self.cluster, "connected": False, "error": f"{type(exc).__name__}: {exc}"}

    def _unanswered(self, error: str) -> None:
        """The scheduler's connection is up but it does not answer: no job is started until it does."""
        if self._was_connected:
            self._was_connected = False
            self.log.warning("dask_scheduler_unresponsive", scheduler=self.address, error=error)
            self.wake()
        self.cluster = {**self.cluster, "connected": False, "workers": 0, "slots": 0, "error": error}

    def _drain_unpublish(self) -> None:
        while True:
            try:
                key = self._unpublish.get_nowait()
            except queue.Empty:
                return
            try:
                self.client.unpublish_dataset(key, callback_timeout=self.call_timeout)
            except KeyError:
                pass  # not published (any more)
            except Exception:
                self._unpublish.put(key)  # tried again on the next look
                return

    def _refresh_cluster(self) -> None:
        # Not client.scheduler_info(): it waits without a bound and keeps its old answer on errors.
        client = self.client
        info = client.sync(client.scheduler.identity, n_workers=-1, callback_timeout=self.call_timeout)
        workers = info.get("workers") or {}
        self.cluster = {
            "connected": True,
            "workers": len(workers),
            "slots": sum(int(w.get("nthreads") or 0) for w in workers.values()),
        }

    def ready(self) -> bool:
        """Connected, to a scheduler with workers: a task queued where nothing can run it would only spend
        its video_timeout waiting."""
        cluster = self.cluster
        return (
            self._connected()
            and self._was_connected
            and cluster.get("connected") is True
            and bool(cluster.get("workers"))
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "scheduler": self.address, **self.cluster}

    def close(self) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(self.call_timeout + MONITOR_EVERY)
        if self._connected() and self._was_connected:
            self._drain_unpublish()  # the last jobs' datasets (one bounded try when the scheduler is hung)
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=2)

    # -- jobs ---------------------------------------------------------------------------------------
    def new_job(self, **fields: Any) -> DaskJob:
        vid, seq = fields["video_id"], fields["started_seq"]
        attempt_dir = self.staging / vid / f"{seq}.{os.urandom(4).hex()}"
        fields["workdir"] = attempt_dir / "work"
        return DaskJob(**fields, key=f"{self.prefix}{vid}-{seq}", attempt_dir=attempt_dir)

    def start(self, job: Job, spec: dict[str, Any]) -> None:
        assert isinstance(job, DaskJob)
        if not self._connected():
            raise ConnectionError(f"not connected to the Dask scheduler at {self.address}")
        job.workdir.mkdir(parents=True)
        spec = {
            **spec,
            "workdir": str(job.workdir),
            "attempt_dir": str(job.attempt_dir),
            "cache_dir": str(self.cache),
            "timeout": job.deadline - job.started if job.deadline is not None else 0,
        }
        try:
            future = self.client.submit(run_attempt, spec, key=job.key, pure=False, retries=0)
            # A plain future is forgotten when its client dies; a published dataset is kept for a restarted
            # daemon to find (reattach).
            self.client.publish_dataset(future, name=job.key, override=True, callback_timeout=self.call_timeout)
        except Exception as exc:
            shutil.rmtree(job.attempt_dir, ignore_errors=True)  # the task, if it runs, finds its attempt over
            self._unpublish.put(job.key)  # a publish that timed out may still reach the scheduler later
            self._unanswered(f"{type(exc).__name__}: {exc}")  # no more starts until the watcher hears it again
            raise ConnectionError(f"cannot submit to the Dask scheduler at {self.address}: {exc}") from exc
        self._track(job, future)

    def _track(self, job: DaskJob, future: Any) -> None:
        job.future = future
        future.add_done_callback(lambda _f: self.wake())

    def readable(self, fd: int, job: Job) -> None:
        pass  # registers no fds: a done callback wakes the loop

    def collect(self, job: Job) -> bool:
        assert isinstance(job, DaskJob)
        now = self.clock()
        if job.ending is None:
            job.ending = _read_json(job.attempt_dir / "done.json")
        if job.ending is None and job.error is None and job.future is not None and job.future.done():
            self._settle_future(job, now)
        if job.ending is None and job.error is None and job.future is None:
            if job.lost_at is None:
                job.lost_at = now
            if self._orphan_expired(job, now, "Dask scheduler lost"):
                return True
            if self._fenced(job, now):  # stopped (grace, timeout): not kept until orphan_grace
                return True
            self._find_again(job, now)
            return False
        if job.error is not None:
            if job.stop_reason is None:
                job.outcome = Outcome(ok=False, kind="transient", error=job.error)
            job.returncode = -9
            return True
        if job.ending is not None:
            message = job.ending.get("message")
            job.outcome = outcome_from_message(message) or job.outcome
            code = job.ending.get("returncode")
            job.returncode = code if isinstance(code, int) else -9
            job.timed_out = job.timed_out or job.ending.get("timed_out") is True
            self._look(job, now, force=True)
            return True
        if self._fenced(job, now):
            return True
        # Its future is pending. If the scheduler does not answer (hung: its connection stays open, so the
        # future is never cancelled), nothing would tell us this attempt's worker was lost: an orphan too.
        if self._was_connected:
            job.lost_at = None
        elif job.lost_at is None:
            job.lost_at = now
        elif self._orphan_expired(job, now, "Dask scheduler not answering"):
            return True
        self._look(job, now)
        return False

    def _orphan_expired(self, job: DaskJob, now: float, why: str) -> bool:
        """An orphan (since `job.lost_at`) that gave no result within orphan_grace: recorded interrupted."""
        assert job.lost_at is not None
        if now - job.lost_at < self.config.orphan_grace:
            return False
        job.stop_reason = job.stop_reason or f"{why}: no result within orphan_grace ({self.config.orphan_grace:g} s)"
        job.returncode = -9
        return True

    def _fenced(self, job: DaskJob, now: float) -> bool:
        """Asked to stop and to die, and still nothing FENCE_AFTER later: its worker is unreachable. Given
        up (fenced: forget removes its directory, so nothing it writes later is read)."""
        if job.kill_at is None or now < job.kill_at + FENCE_AFTER:
            return False
        self.log.warning("dask_attempt_fenced", video_id=job.video_id, key=job.key)
        job.returncode = -9
        return True

    def _settle_future(self, job: DaskJob, now: float) -> None:
        future = job.future
        status = future.status
        if status == "finished":
            try:
                result = future.result(timeout=self.call_timeout)
            except Exception:  # the result could not be fetched: done.json (read next pass) or orphan
                job.future = None
                return
            if isinstance(result, dict):
                job.ending = result
        elif status == "error":
            exc = future.exception(timeout=self.config.connect_timeout)
            where = job.where.get("worker") or job.where.get("host") or "its worker"
            job.error = f"Dask task failed on {where}: {type(exc).__name__}: {exc}"
        else:  # cancelled: the client lost the scheduler (its futures are dropped): an orphan for now
            job.future = None
            job.lost_at = job.lost_at or now
            self.log.warning("dask_attempt_orphaned", video_id=job.video_id, grace=self.config.orphan_grace)

    def _find_again(self, job: DaskJob, now: float) -> None:
        """An orphan: once a scheduler is back, is the task still known there (the scheduler never died;
        only the connection did)?"""
        if now < job.next_find or not (self._connected() and self._was_connected):
            return  # not while the scheduler is away or does not answer: each try would hold the loop
        job.next_find = now + 1.0
        with contextlib.suppress(Exception):
            future = self.client.get_dataset(job.key, default=None, callback_timeout=self.call_timeout)
            if future is not None:
                job.lost_at = None
                self._track(job, future)

    def _look(self, job: DaskJob, now: float, force: bool = False) -> None:
        if not force and now < job.next_look:
            return
        job.next_look = now + LOOK_EVERY
        progress = _read_json(job.attempt_dir / "progress.json")
        if progress is not None:
            job.progress = progress
        if not job.where:
            job.where = _read_json(job.attempt_dir / "where.json") or {}

    def forget(self, job: Job) -> None:
        """After the job's ending is recorded: its dataset unpublished, its staging directory removed (what
        was committed has been renamed out of it already)."""
        assert isinstance(job, DaskJob)
        shutil.rmtree(job.attempt_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            job.attempt_dir.parent.rmdir()  # only if empty
        if job.future is not None:
            job.future.release()
            job.future = None
        self._unpublish.put(job.key)  # by the watcher: a hung scheduler must not hold the loop

    def running(self, job: Job) -> bool:
        assert isinstance(job, DaskJob)
        return job.ending is None and not (job.attempt_dir / "done.json").exists()

    def _touch(self, job: Job, name: str) -> None:
        assert isinstance(job, DaskJob)
        with contextlib.suppress(OSError):
            (job.attempt_dir / name).touch()

    def terminate(self, job: Job) -> None:
        self._touch(job, "stop")

    def kill(self, job: Job) -> None:
        self._touch(job, "kill")

    def wait(self, job: Job) -> None:
        """Until the task has ended (it kills its processor within a poll of the kill file), or a bound:
        a task on an unreachable worker never answers, and is fenced by forget instead."""
        assert isinstance(job, DaskJob)
        asked = job.kill_at if job.kill_at is not None else self.clock()
        deadline = asked + TERM_GRACE + FENCE_AFTER  # from when the kill was asked: jobs waited in turn share it
        while self.clock() < deadline and self.running(job):
            if job.future is not None and job.future.done():
                return
            time.sleep(0.1)
        if self.running(job):
            job.kill_at = self.clock() - FENCE_AFTER  # collect gives it up now

    def poll_interval(self, jobs: list[Job]) -> float | None:
        return None

    # -- restart ------------------------------------------------------------------------------------
    def reattach(self, running: list[Job]) -> list[Job]:
        """At start-up, for the videos the log says were running: the ones whose attempt still runs on the
        cluster (its dataset is published) or ended while the daemon was down (done.json), as jobs to collect
        as usual. The rest are truly gone (recorded interrupted by the caller). Every other staging directory
        and dataset of this log is removed: they belong to attempts that are over (zombies included)."""
        attached: list[Job] = []
        keep: set[Path] = set()
        for candidate in running:
            vid, seq = candidate.video_id, candidate.started_seq
            found = sorted((self.staging / vid).glob(f"{seq}.*")) if (self.staging / vid).is_dir() else []
            if not found:
                continue
            attempt_dir = found[0]
            key = f"{self.prefix}{vid}-{seq}"
            future = None
            with contextlib.suppress(Exception):
                future = self.client.get_dataset(key, default=None, callback_timeout=self.call_timeout)
            ending = _read_json(attempt_dir / "done.json")
            started = (attempt_dir / "where.json").exists()
            if future is None and ending is None and not started:
                continue  # never ran, and no scheduler holds it: truly gone
            # No dataset (the scheduler was restarted, or the daemon died before publishing) but the task did
            # start: it may still be running on its worker and leave its done.json. An orphan, given
            # orphan_grace as in a running daemon, not interrupted (and its processor killed) at once.
            fields = {k: getattr(candidate, k) for k in ("video_id", "attempt", "started_seq", "started", "deadline")}
            job = DaskJob(**fields, workdir=attempt_dir / "work", key=key, attempt_dir=attempt_dir, ending=ending)
            if future is not None:
                self._track(job, future)
            self.log.info(
                "dask_attempt_reattached", video_id=vid, key=key, ended=ending is not None, orphan=future is None
            )
            attached.append(job)
            keep.add(attempt_dir)
        self._clean(keep, {j.key for j in attached if isinstance(j, DaskJob)})
        return attached

    def _clean(self, keep: set[Path], keep_keys: set[str]) -> None:
        if self.staging.is_dir():
            for video_dir in self.staging.iterdir():
                for attempt_dir in video_dir.iterdir() if video_dir.is_dir() else []:
                    if attempt_dir not in keep:
                        shutil.rmtree(attempt_dir, ignore_errors=True)
                with contextlib.suppress(OSError):
                    video_dir.rmdir()
        with contextlib.suppress(Exception):
            for name in self.client.list_datasets(callback_timeout=self.call_timeout):
                if isinstance(name, str) and name.startswith(self.prefix) and name not in keep_keys:
                    self._unpublish.put(name)
