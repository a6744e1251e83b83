"""A real Dask cluster on 127.0.0.1 for tests: `dask scheduler` and `dask worker`s as separate processes,
each leading its own process group, torn down by PID. Never any address but 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import binary, env, wait_for

HOST = "127.0.0.1"

# What nkod's README asks of a cluster: the scheduler never retries a task itself (nkod's log does),
# and a silent worker is dropped quickly. Shortened further so tests see a lost worker in seconds.
CLUSTER_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "4s",
    "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
    "DASK_DISTRIBUTED__DIAGNOSTICS__NVML": "False",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "2s",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class Cluster:
    """A scheduler on a fixed loopback port (so it can be restarted at the same address) and workers."""

    def __init__(self, root: Path, workers: int = 2, nthreads: int = 1) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"tcp://{HOST}:{self.port}"
        self.nthreads = nthreads
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._count = workers

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(
            [binary("dask"), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env(**CLUSTER_ENV),
            cwd=self.root,
            process_group=0,
        )

    @property
    def scheduler_file(self) -> Path:
        """The JSON file the scheduler writes its address into (`dask scheduler --scheduler-file`)."""
        return self.root / "scheduler.json"

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn(
            [
                "scheduler",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--no-dashboard",
                "--no-show",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
            "scheduler",
        )
        wait_for(self._scheduler_up, timeout=60, interval=0.1, what="dask scheduler listening")

    def _scheduler_up(self) -> bool:
        assert self.scheduler is not None
        if self.scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited: {(self.root / 'scheduler.log').read_text()[-2000:]}")
        with socket.socket() as s:
            return s.connect_ex((HOST, self.port)) == 0

    def start_worker(self) -> subprocess.Popen[bytes]:
        n = len(self.workers)
        proc = self._spawn(
            [
                "worker",
                self.address,
                "--host",
                HOST,
                "--no-nanny",
                "--nthreads",
                str(self.nthreads),
                "--name",
                f"w{n}",
                "--no-dashboard",
                "--death-timeout",
                "60",
                "--memory-limit",
                "0",
            ],
            f"worker{n}",
        )
        self.workers.append(proc)
        return proc

    def start(self) -> Cluster:
        self.start_scheduler()
        for _ in range(self._count):
            self.start_worker()
        self.wait_workers(self._count)
        return self

    def connected_workers(self) -> int:
        """Workers the scheduler knows, as a client sees them (a short-lived client, in a subprocess)."""
        code = (
            "import sys; from distributed import Client\n"
            f"c = Client({self.address!r}, timeout=5)\n"
            "print(len(c.scheduler_info(n_workers=-1)['workers'])); c.close()"
        )
        done = subprocess.run(
            [binary("python"), "-c", code], capture_output=True, text=True, timeout=60, env=env(**CLUSTER_ENV)
        )
        return int(done.stdout.strip() or 0) if done.returncode == 0 else -1

    def wait_workers(self, n: int, timeout: float = 90) -> None:
        wait_for(lambda: self.connected_workers() >= n, timeout=timeout, interval=0.5, what=f"{n} dask workers")

    def kill_scheduler(self) -> None:
        assert self.scheduler is not None
        _stop(self.scheduler)
        self.scheduler = None

    def stop(self) -> None:
        for w in self.workers:
            _stop(w)
        if self.scheduler is not None:
            _stop(self.scheduler)


@contextlib.contextmanager
def cluster(root: Path, workers: int = 2, nthreads: int = 1) -> Iterator[Cluster]:
    c = Cluster(root, workers, nthreads)
    try:
        yield c.start()
    finally:
        c.stop()
