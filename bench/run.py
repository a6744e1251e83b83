#!/usr/bin/env python3
"""Benchmarks of the nkod engine, each against a baseline measured in the same run.

    python bench/run.py [--quick] [--dir DIR] [--only 1,3,...] [--out FILE]

1. bookkeeping cost per video at 1k / 10k / 100k videos vs the seed's scheme (rewrite the whole
   checkpoint JSON after every state change, as run_extraction.py does);
2. durable transitions per second vs a bare Python loop appending and fsyncing the same bytes;
   plus the real daemon end to end with 1 and N workers;
3. ``nkoctl status --json`` (and the box) wall time on a log of 1M events (with snapshot) vs a bare
   ``python -c pass`` and vs the same command on a 1k-event log, all alternated;
4. cold replay of 1M events vs ``orjson.loads`` over the same lines;
5. daemon RSS after READY with 1M events of history vs 1k;
6. start to READY=1 with 1M events of history (a real NOTIFY_SOCKET bound here) vs 1k, alternated;
7. a 1M-line manifest: daemon RSS once it has read it vs a 1k-line one; the daemon's CPU to add one
   appended line; ``nkoctl plan --json`` on it.

Two states of a history are measured where they differ: "clean stop" (the snapshot the daemon leaves
when it stops: at the end of the log, recording the log's stat once it checked the bytes) and
"running" (a snapshot ``snapshot_every / 2`` events behind, as while the daemon runs or after a
crash, with the daemon's ``events.crc``: the log's stat and CRC after its last append, so status reads
only the tail; row 3 also times it without that file, when the head is read again to check its CRC;
row 6 starts both with it, as a daemon killed with SIGKILL leaves it, and without it).

Histories are synthetic (bench/synth.py) but written with the real codec and snapshot writer. Prints a
markdown table (and writes it to --out, default bench/results/engine_bench.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(REPO), str(HERE)):  # nkod from this checkout; synth.py beside this file
    if _p not in sys.path:
        sys.path.insert(0, _p)

import orjson  # noqa: E402
from synth import COUNTS, make_history  # noqa: E402

from nkod import decide, eventlog, gcpause, logs, snapshot  # noqa: E402
from nkod.config import Config, DaemonConfig  # noqa: E402
from nkod.daemon import Daemon  # noqa: E402
from nkod.decide import Outcome  # noqa: E402
from nkod.notify import Notifier  # noqa: E402

BIN = Path(sys.executable).parent
PROCESSOR = "tests.processors:process"  # a trivial processor: these benchmarks measure the engine
TAIL = DaemonConfig().snapshot_every // 2  # the average tail behind the daemon's latest snapshot
PROC_LOCKS_GAP = 0.05  # row 3: the pause before each timed run (see Bench.status)


@dataclass
class Row:
    bench: str
    nkod: str
    baseline: str
    ratio: float
    ratio_label: str
    target: str
    met: bool | None
    note: str = ""


def _fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "NKOD_FAILPOINT")}
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def _config_file(path: Path, **daemon: Any) -> Path:
    settings = {"processor": PROCESSOR, "views_interval": 2.0, "rescan_interval": 5.0, **daemon}
    path.write_text("[daemon]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    return path


def _copy_history(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("events.jsonl", "snapshot.json", "videos.jsonl"):
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)
            # Flush the copy now: else the daemon's first fsync writes 170 MB and is billed to start-up.
            fd = os.open(dst / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return dst


def _clean_stop(root: Path) -> Path:
    """Leave `root`'s snapshot as a daemon leaves it when it stops: at the log's end, with the CRC of the
    whole log and (the bytes checked) the log's stat."""
    rep = snapshot.replay(root / "events.jsonl", root / "snapshot.json")
    log = root / "events.jsonl"
    crc = eventlog.crc_of_range(log, 0, rep.scan.end_offset)
    snapshot.write(root / "snapshot.json", rep.projector, head_crc=crc, log_stat=snapshot.log_stat(log))
    return root


def _running(root: Path) -> Path:
    """Leave `root` as a running (or crashed) daemon does: its snapshot behind the log's end, and its
    ``events.crc`` recording, after its last append, the log's stat and the CRC of all its bytes."""
    log = root / "events.jsonl"
    crc = eventlog.crc_of_range(log, 0, log.stat().st_size)
    assert crc is not None
    eventlog.vouch_path(log).write_bytes(eventlog.vouch_record(eventlog.stat_key(os.stat(log)), crc))
    return root


@contextlib.contextmanager
def _lock_held(root: Path) -> Iterator[int]:
    """A process holding `root`'s lock as a running daemon does (nkod.lock.acquire), until the block ends;
    yields its PID."""
    hold = (
        "import sys, pathlib; from nkod import lock; lock.acquire(pathlib.Path(sys.argv[1])); print(flush=True); "
        "sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env()
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"\n", "the lock holder did not start"
        yield proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def _left_by_exited_holder(root: Path) -> Path:
    """Leave `root`'s nkod.lock as a daemon that stopped or was killed leaves it: its PID, no process's now."""
    hold = "import sys, pathlib; from nkod import lock; lock.acquire(pathlib.Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", hold, str(root)], check=True, env=_env())
    return root


def _walls(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd="/")
        times.append(time.perf_counter() - t0)
    return times


class Bench:
    def __init__(self, work: Path, quick: bool) -> None:
        self.work = work
        self.quick = quick
        self.rows: list[Row] = []
        self._h1m: Path | None = None
        self._devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the bench
        logs.configure("plain", stream=self._devnull)  # the daemon's log lines are formatted, then dropped

    def say(self, text: str) -> None:
        print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)

    # -- shared fixtures ---------------------------------------------------------------------------
    def history_1m(self) -> Path:
        """1M events over 10k videos; the snapshot TAIL events behind the end (the daemon snapshots every
        snapshot_every events, so that is the average tail)."""
        if self._h1m is None:
            root = self.work / "h1m"
            if not (root / ".done").exists():
                self.say("generating a 1M-event history (10k videos) with the real codec …")
                t0 = time.perf_counter()
                make_history(root, videos=10_000, events=1_000_000, snapshot_tail=TAIL)
                (root / ".done").write_text("ok\n")
                self.say(
                    f"  done in {time.perf_counter() - t0:.1f} s ({(root / 'events.jsonl').stat().st_size >> 20} MiB)"
                )
            self._h1m = root
        return self._h1m

    def history_1k(self) -> Path:
        root = self.work / "h1k"
        if not (root / ".done").exists():
            make_history(root, videos=300, events=1_000, snapshot_tail=0)
            (root / ".done").write_text("ok\n")
        return root

    def history_1k_behind(self) -> Path:
        """1k events over 300 videos, the snapshot TAIL events behind the end: row 3's running 1k case."""
        root = self.work / "h1k-behind"
        if not (root / ".done").exists():
            make_history(root, videos=300, events=1_000, snapshot_tail=TAIL)
            (root / ".done").write_text("ok\n")
        return root

    def daemon_in_process(self, root: Path) -> Daemon:
        """The real Daemon object on `root`, replayed, with its log writer open (no loop, no signals)."""
        config = Config(daemon=DaemonConfig(processor=PROCESSOR), source="bench")
        d = Daemon(root, config, notifier=Notifier(), install_signals=False)
        for sub in (d.paths.requests, d.paths.output, d.paths.work, d.paths.checkpoints):
            sub.mkdir(parents=True, exist_ok=True)
        rep = snapshot.replay(d.paths.log, d.paths.snapshot)
        d.projector = rep.projector
        d.projector.offset = rep.scan.end_offset
        # As the daemon opens it: knowing the CRC of the log it checked, and keeping events.crc after each append.
        crc = eventlog.crc_of_range(d.paths.log, 0, rep.scan.end_offset)
        d.writer = eventlog.LogWriter(d.paths.log, rep.scan.last_seq + 1, head_crc=crc, vouch=d.paths.log_vouch)
        return d

    # -- 1. bookkeeping per video --------------------------------------------------------------------
    def bookkeeping(self) -> None:
        for n in (1_000, 10_000, 100_000):
            self.say(f"1. bookkeeping at {n:,} videos")
            m_nkod = 300 if self.quick else 2_000
            m_seed = {1_000: 200, 10_000: 40, 100_000: 6 if self.quick else 20}[n]
            root = self.work / f"book{n}"
            shutil.rmtree(root, ignore_errors=True)
            make_history(root, videos=n, events=2 * n + n // 1000 + 8, pending=m_nkod)
            d = self.daemon_in_process(root)
            pending = list(d.projector.queue)[:m_nkod]
            now = datetime.now(UTC)
            t0 = time.perf_counter()
            for vid in pending:
                d.append([decide.start_draft(d.projector.videos[vid])])
                d.append(decide.outcome_drafts(d.projector.videos[vid], Outcome(ok=True, counts=COUNTS), d.policy, now))
                d._maybe_snapshot()
            loop = (time.perf_counter() - t0) / len(pending)
            t0 = time.perf_counter()
            snapshot.write(d.paths.snapshot, d.projector)
            snap = time.perf_counter() - t0
            t0 = time.perf_counter()
            d._write_view_files()
            views = time.perf_counter() - t0
            assert d.writer is not None
            d.writer.close()
            # The snapshot is written every snapshot_every events (2 per video): amortise it honestly.
            per_video = loop + snap * 2 / d.config.daemon.snapshot_every
            seed = seed_bookkeeping(self.work / f"seed{n}", n, m_seed)
            ratio = per_video / seed
            met = ratio <= 1 / 20 if n == 100_000 else None
            self.rows.append(
                Row(
                    f"1. bookkeeping per video, {n:,} videos",
                    _fmt_s(per_video),
                    _fmt_s(seed),
                    ratio,
                    "nkod / seed",
                    "≤ 1/20 of the seed at 100k" if n == 100_000 else "flat in n",
                    met,
                    f"2 fsynced appends + fold {_fmt_s(loop)}; snapshot {_fmt_s(snap)} per "
                    f"{d.config.daemon.snapshot_every:,} events; "
                    f"seed-format views {_fmt_s(views)} per write (time-throttled, off the commit path)",
                )
            )
            shutil.rmtree(root, ignore_errors=True)

    # -- 2. durable transitions per second -------------------------------------------------------------
    def transitions(self) -> None:
        self.say("2. durable transitions per second")
        rounds, per_round = (10, 50) if self.quick else (40, 100)  # videos (2 transitions each) per round
        root = self.work / "trans"
        shutil.rmtree(root, ignore_errors=True)
        make_history(root, videos=100, events=1_000, pending=rounds * per_round)
        d = self.daemon_in_process(root)
        assert d.writer is not None
        pending = list(d.projector.queue)
        bare_path = self.work / "bare.jsonl"
        bare_path.unlink(missing_ok=True)
        bare_fd = os.open(bare_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        now = datetime.now(UTC)
        nkod_t = bare_t = 0.0
        count = 0
        # fsync latency drifts by 3x over seconds on a VM disk: alternate short rounds of nkod and of the
        # bare loop (which writes exactly the bytes nkod just appended), and compare the sums.
        for r in range(rounds):
            chunk = pending[r * per_round : (r + 1) * per_round]
            start = d.writer.offset
            t0 = time.perf_counter()
            for vid in chunk:
                d.append([decide.start_draft(d.projector.videos[vid])])
                d.append(decide.outcome_drafts(d.projector.videos[vid], Outcome(ok=True, counts=COUNTS), d.policy, now))
            nkod_t += time.perf_counter() - t0
            with open(d.paths.log, "rb") as f:
                f.seek(start)
                lines = f.read().splitlines(keepends=True)
            count += len(lines)
            t0 = time.perf_counter()
            for line in lines:
                os.write(bare_fd, line)
                os.fsync(bare_fd)
            bare_t += time.perf_counter() - t0
        os.close(bare_fd)
        d.writer.close()
        nkod_rate, bare = count / nkod_t, count / bare_t
        self.rows.append(
            Row(
                "2. durable transitions/s, engine (1 event per append)",
                f"{nkod_rate:,.0f}/s",
                f"{bare:,.0f}/s",
                nkod_rate / bare,
                "nkod / bare loop",
                "≥ 0.8× the bare loop",
                nkod_rate / bare >= 0.8,
                f"{count} transitions through Daemon.append (encode, write, fsync, fold, log line), in {rounds} "
                "rounds alternating with the bare loop (os.write + os.fsync of the same lines)",
            )
        )
        for workers in sorted({1, os.cpu_count() or 2}):
            rate, videos = self.daemon_transitions(workers)
            self.rows.append(
                Row(
                    f"2. durable transitions/s, real daemon, {workers} worker(s)",
                    f"{rate:,.0f}/s",
                    f"{bare:,.0f}/s",
                    rate / bare,
                    "nkod / bare loop",
                    "(context)",
                    None,
                    f"{videos} videos end to end with a no-op processor: one worker process per video bounds it",
                )
            )

    def daemon_transitions(self, workers: int) -> tuple[float, int]:
        n = 60 if self.quick else 300
        root = self.work / f"e2e{workers}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        (root / "videos.jsonl").write_bytes(
            b"".join(orjson.dumps({"video_id": f"e{i:05d}", "path": "none.mp4", "frames": 0}) + b"\n" for i in range(n))
        )
        cfg = _config_file(self.work / f"e2e{workers}.toml", workers=workers)
        argv = [str(BIN / "nkod"), "--data-dir", str(root), "--config", str(cfg), "--once", "--log-format", "plain"]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=_env(), timeout=600)
        events, _ = eventlog.read_all(root / "events.jsonl")
        moves = [e for e in events if e["type"] in ("video_started", "video_completed")]
        span = (_parse(moves[-1]["ts"]) - _parse(moves[0]["ts"])).total_seconds()
        return len(moves) / span, n

    # -- 3. status ----------------------------------------------------------------------------------
    def status(self) -> None:
        self.say("3. nkoctl status on 1M events (clean stop, running) and 1k events, vs a bare interpreter")
        running = _running(_copy_history(self.history_1m(), self.work / "status-running"))
        unvouched = _copy_history(self.history_1m(), self.work / "status-unvouched")  # no events.crc
        # The stopped and crashed cases as a daemon leaves them: nkod.lock naming its PID, which is no process's.
        crashed = _left_by_exited_holder(_running(_copy_history(self.history_1m(), self.work / "status-crashed")))
        stopped = _left_by_exited_holder(_clean_stop(_copy_history(self.history_1m(), self.work / "status-stopped")))
        small = _left_by_exited_holder(_clean_stop(_copy_history(self.history_1k(), self.work / "status-1k")))
        small_running = _running(_copy_history(self.history_1k_behind(), self.work / "status-1k-running"))
        small_crashed = _left_by_exited_holder(
            _running(_copy_history(self.history_1k_behind(), self.work / "status-1k-crashed"))
        )
        runs = 7 if self.quick else 15
        nkoctl = str(BIN / "nkoctl")
        argv = {
            "bare": [sys.executable, "-c", "pass"],
            "1k": [nkoctl, "--data-dir", str(small), "status", "--json"],
            "stopped": [nkoctl, "--data-dir", str(stopped), "status", "--json"],
            "running": [nkoctl, "--data-dir", str(running), "status", "--json"],
            "1k-running": [nkoctl, "--data-dir", str(small_running), "status", "--json"],
            "crashed": [nkoctl, "--data-dir", str(crashed), "status", "--json"],
            "1k-crashed": [nkoctl, "--data-dir", str(small_crashed), "status", "--json"],
            "unvouched": [nkoctl, "--data-dir", str(unvouched), "status", "--json"],
            "box": [nkoctl, "--data-dir", str(stopped), "status"],
            "box-1k": [nkoctl, "--data-dir", str(small), "status"],
            "import": [sys.executable, "-c", "import nkod"],
        }
        walls: dict[str, list[float]] = {k: [] for k in argv}
        # The running cases with their lock held, as by the daemon: status names its PID. "crashed" is the same
        # history with nobody holding the lock (the daemon was killed): status reads /proc/locks to say so.
        with _lock_held(running), _lock_held(unvouched), _lock_held(small_running):
            for _ in range(runs):  # alternate, so load on a shared box hits all alike
                for k, cmd in argv.items():
                    # Each run starts as a monitoring script's periodic call does: the first read of
                    # /proc/locks (who holds the lock, where its holder does not answer F_GETLK) waits for
                    # an RCU grace period (10-20 ms here) unless another read came within the last few tens
                    # of ms. Back to back, a command's cost depended on the one before it (the 1k case paid
                    # it after the bare run; the 1M case after it did not).
                    time.sleep(PROC_LOCKS_GAP)
                    walls[k] += _walls(cmd, 1)
        med = {k: statistics.median(v) for k, v in walls.items()}
        bare = med["bare"]
        common = (
            f"median of {runs} alternated runs, each {PROC_LOCKS_GAP * 1000:.0f} ms after the previous (so none"
            f" shares another's /proc/locks read); bare `python -c pass` {_fmt_s(bare)}, "
            f"`import nkod` {_fmt_s(med['import'])}; nkod's modules byte-compiled, as installed"
        )
        for key, small_key, label in (
            ("stopped", "1k", "after a clean stop"),
            ("running", "1k-running", f"daemon running (snapshot {TAIL} events behind)"),
            ("crashed", "1k-crashed", f"after a crash (snapshot {TAIL} events behind, nobody holds the lock)"),
        ):
            self.rows.append(
                Row(
                    f"3. `nkoctl status --json`, 1M events, {label}",
                    _fmt_s(med[key]),
                    _fmt_s(bare) + " (bare interpreter)",
                    med[key] / bare,
                    "nkod / bare",
                    "≤ 4× a bare interpreter",
                    med[key] <= 4 * bare,
                    f"{common}; fastest {_fmt_s(min(walls[key]))}; 10k videos"
                    + (
                        ""
                        if key == "stopped"
                        else (
                            "; its lock held by another process (nkod.lock.acquire, as by the daemon)"
                            if key == "running"
                            else ""
                        )
                        + "; the daemon's events.crc vouches for the head the snapshot covers (only the tail"
                        " is read)"
                        + (
                            f"; without it (the log changed since) the head (170 MB) is read to check its CRC:"
                            f" {_fmt_s(med['unvouched'])}"
                            if key == "running"
                            else ""
                        )
                    ),
                )
            )
            self.rows.append(
                Row(
                    f"3. `nkoctl status --json`, 1M vs 1k events, {label}",
                    _fmt_s(med[key]),
                    _fmt_s(med[small_key]) + " (1k events, the same case)",
                    med[key] / med[small_key],
                    "1M / 1k",
                    "≤ 1.2×",
                    med[key] <= 1.2 * med[small_key],
                    common,
                )
            )
        self.rows.append(
            Row(
                "3. `nkoctl status` (the box), 1M events, after a clean stop",
                _fmt_s(med["box"]),
                _fmt_s(bare) + " (bare interpreter)",
                med["box"] / bare,
                "nkod / bare",
                "≤ 6× a bare interpreter",
                med["box"] <= 6 * bare,
                f"{common}; the box on 1k events {_fmt_s(med['box-1k'])}; drawn without importing rich"
                " (nkod.statusbox, byte for byte as rich draws it)",
            )
        )

    # -- 4. cold replay -----------------------------------------------------------------------------
    def replay(self) -> None:
        self.say("4. cold replay of 1M events")
        log = self.history_1m() / "events.jsonl"
        t0 = time.perf_counter()
        rep = snapshot.replay(log, self.work / "no-snapshot.json", use_snapshot=False)
        nkod_t = time.perf_counter() - t0
        assert rep.projector.seq == 1_000_000 and rep.scan.torn is None
        del rep
        t0 = time.perf_counter()
        with gcpause.paused():  # the reader alone, as the replay runs it: checked chunks of events, no fold
            for _events in eventlog.scan_chunks(log):
                pass
        scan_t = time.perf_counter() - t0
        loads = orjson.loads
        t0 = time.perf_counter()
        with open(log, "rb") as f:
            n = 0
            for line in f:
                loads(line)
                n += 1
        base_t = time.perf_counter() - t0
        ratio = base_t / nkod_t
        self.rows.append(
            Row(
                "4. cold replay, 1M events (no snapshot)",
                f"{_fmt_s(nkod_t)} ({1e6 / nkod_t:,.0f} ev/s)",
                f"{_fmt_s(base_t)} ({n / base_t:,.0f} lines/s)",
                ratio,
                "nkod speed / orjson speed",
                "≥ 0.5×",
                ratio >= 0.5,
                f"of nkod's {_fmt_s(nkod_t)}, reading and checking lines (crc, seq, version) is {_fmt_s(scan_t)}, "
                f"folding into the state the other {_fmt_s(max(0.0, nkod_t - scan_t))}",
            )
        )

    # -- 5 & 6. the real daemon up to READY=1 -------------------------------------------------------
    def start_daemon(
        self, src: Path, name: str, clean_stop: bool = False, vouched: bool = False
    ) -> tuple[float, int, int]:
        """Start the real nkod on a copy of `src` (with the snapshot a clean stop leaves, if asked; or, if
        `vouched`, with the ``events.crc`` a killed daemon leaves); seconds to READY=1, VmHWM and VmRSS (kB)
        after it."""
        root = _copy_history(src, self.work / name)
        if clean_stop:
            _clean_stop(root)
        if vouched:
            _running(root)
        cfg = _config_file(self.work / f"{name}.toml")
        sock_path = self.work / f"{name}.notify"
        sock_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(sock_path))
            sock.settimeout(120)
            env = _env()
            env["NOTIFY_SOCKET"] = str(sock_path)
            argv = [str(BIN / "nkod"), "--data-dir", str(root), "--config", str(cfg), "--log-format", "plain"]
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            try:
                while True:
                    msg = sock.recv(65536)
                    if b"READY=1" in msg.split(b"\n"):
                        ready = time.perf_counter() - t0
                        break
                mem = _proc_mem(proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(root, ignore_errors=True)
        return ready, mem["VmHWM"], mem["VmRSS"]

    def daemon_start(self) -> None:
        runs = 5 if self.quick else 9
        self.say("5/6. real daemon start with 1k and 1M events of history (clean stop, running)")
        small: list[tuple[float, int, int]] = []
        big: list[tuple[float, int, int]] = []
        crashed: list[tuple[float, int, int]] = []
        small_crashed: list[tuple[float, int, int]] = []
        killed: list[tuple[float, int, int]] = []
        small_killed: list[tuple[float, int, int]] = []
        for _ in range(runs):  # alternate, so load on a shared box hits all alike
            small.append(self.start_daemon(self.history_1k(), "d1k", clean_stop=True))
            big.append(self.start_daemon(self.history_1m(), "d1m", clean_stop=True))
            small_killed.append(self.start_daemon(self.history_1k_behind(), "d1k-killed", vouched=True))
            killed.append(self.start_daemon(self.history_1m(), "d1m-killed", vouched=True))
            small_crashed.append(self.start_daemon(self.history_1k_behind(), "d1k-crash"))
            crashed.append(self.start_daemon(self.history_1m(), "d1m-crash"))
        hwm_small = statistics.median(s[1] for s in small)
        hwm_big = statistics.median(b[1] for b in big)
        rss_small = statistics.median(s[2] for s in small)
        rss_big = statistics.median(b[2] for b in big)
        delta = (hwm_big - hwm_small) / 1024
        self.rows.append(
            Row(
                "5. daemon memory after READY, 1M vs 1k events",
                f"{hwm_big / 1024:.1f} MB peak ({rss_big / 1024:.1f} MB RSS)",
                f"{hwm_small / 1024:.1f} MB peak ({rss_small / 1024:.1f} MB RSS)",
                hwm_big / hwm_small,
                "1M / 1k",
                "≤ +20 MB",
                delta <= 20,
                f"VmHWM +{delta:.1f} MB, VmRSS +{(rss_big - rss_small) / 1024:.1f} MB; "
                "1M events = 10k videos, 1k events = 300 videos",
            )
        )
        for rows, base, label in (
            (big, small, "after a clean stop"),
            (killed, small_killed, f"snapshot {TAIL} events behind, events.crc kept (after kill -9)"),
            (crashed, small_crashed, f"snapshot {TAIL} events behind, no events.crc (after a crash)"),
        ):
            ready_big = statistics.median(b[0] for b in rows)
            ready_small = statistics.median(s[0] for s in base)
            self.rows.append(
                Row(
                    f"6. start to READY=1, 1M events of history, {label}",
                    _fmt_s(ready_big),
                    _fmt_s(ready_small) + " (1k events, the same case)",
                    ready_big / ready_small,
                    "1M / 1k",
                    "≤ 1.15× and ≤ 200 ms (quiet box)",
                    ready_big <= 1.15 * ready_small and ready_big <= 0.200,
                    f"median of {runs} alternated (fastest {_fmt_s(min(b[0] for b in rows))}); real NOTIFY_SOCKET; "
                    f"processor {PROCESSOR}"
                    + (
                        "; the head the snapshot covers is read to check its CRC before READY"
                        if rows is crashed
                        else "; the killed daemon's events.crc vouches for the head (the log's stat and CRC after its "
                        "last append): only the tail is read"
                        if rows is killed
                        else ""
                    ),
                )
            )

    # -- 7. a 1M-line manifest ------------------------------------------------------------------------
    def big_manifest(self) -> None:
        n_big = 1_000_000
        self.say(f"7. a {n_big:,}-line manifest: memory, one appended line, plan")
        small = self._manifest_daemon("m1k", 1_000)
        big = self._manifest_daemon("m1m", n_big)
        delta = (big["rss"] - small["rss"]) / 1024
        self.rows.append(
            Row(
                "7. daemon RSS with a 1M-line manifest read, vs 1k lines",
                f"{big['rss'] / 1024:.0f} MB RSS ({big['hwm'] / 1024:.0f} MB peak)",
                f"{small['rss'] / 1024:.0f} MB RSS ({small['hwm'] / 1024:.0f} MB peak)",
                big["rss"] / small["rss"],
                "1M / 1k",
                "≤ +150 MB",
                delta <= 150,
                f"VmRSS +{delta:.0f} MB once the daemon added all videos (each a PristineVideo, the id alone, in the "
                f"videos dict and the queue) and keeps the manifest's lines (16 to a bytes object); "
                f"read in {big['read_s']:.1f} s",
            )
        )
        self.rows.append(
            Row(
                "7. one line appended to a 1M-line manifest: daemon CPU until it is added",
                f"{big['append_cpu'] * 1e3:.1f} ms",
                f"{small['append_cpu'] * 1e3:.1f} ms (1k lines)",
                big["append_cpu"] / max(small["append_cpu"], 1e-6),
                "1M / 1k",
                "≤ 50 ms, no full re-parse",
                big["append_cpu"] <= 0.050,
                "median of 3; CPU of all the daemon's threads (schedstat) from the append to the videos_added line, "
                "less its idle rate; the part read before is checked by one CRC pass (C), not parsed",
            )
        )
        self.rows.append(
            Row(
                "7. `nkoctl plan --json`, 1M-line manifest",
                _fmt_s(big["plan_s"]),
                _fmt_s(small["plan_s"]) + " (1k lines)",
                big["plan_s"] / small["plan_s"],
                "1M / 1k",
                "≤ 2 s",
                big["plan_s"] <= 2.0,
                "median of 3; after the daemon stopped (its snapshot of 1M videos); output to /dev/null; a manifest"
                " over 1 MiB is read in a child process while the snapshot is read (on a second core, if free)",
            )
        )

    def _manifest_daemon(self, name: str, n: int) -> dict[str, float]:
        root = self.work / name
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        line = b'{"video_id":"m%07d","path":"none.mp4","fail":"hang"}\n'  # one video hangs; the rest wait
        with open(root / "videos.jsonl", "wb") as f:
            for i in range(0, n, 100_000):
                f.write(b"".join(line % j for j in range(i, min(n, i + 100_000))))
        # views_interval: the seed-format views are O(videos) and time-throttled; kept out of this measure.
        cfg = _config_file(self.work / f"{name}.toml", views_interval=3600.0, rescan_interval=3600.0, stop_grace=0.5)
        argv = [str(BIN / "nkod"), "--data-dir", str(root), "--config", str(cfg), "--log-format", "plain"]
        log = root / "events.jsonl"
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
        out: dict[str, float] = {}
        try:
            _wait_file(log, b'"video_started"', 600)
            out["read_s"] = time.perf_counter() - t0
            _settle(proc.pid)
            mem = _proc_mem(proc.pid)
            out["rss"], out["hwm"] = mem["VmRSS"], mem["VmHWM"]
            costs = []
            for k in range(3):
                idle = _settle(proc.pid)
                c0, w0 = _cpu(proc.pid), time.perf_counter()
                with open(root / "videos.jsonl", "ab") as f:
                    f.write(b'{"video_id":"added%d","path":"none.mp4"}\n' % k)
                _wait_file(log, b'"added%d"' % k, 60)
                costs.append(_cpu(proc.pid) - c0 - idle * (time.perf_counter() - w0))
            out["append_cpu"] = max(0.0, statistics.median(costs))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=600)
        plan = [str(BIN / "nkoctl"), "--data-dir", str(root), "plan", "--json"]
        out["plan_s"] = statistics.median(_walls(plan, 3))  # one run swings by ±0.4 s on a shared box
        shutil.rmtree(root, ignore_errors=True)
        return out

    # -- the table ------------------------------------------------------------------------------------
    def table(self) -> str:
        out = [
            "| benchmark | nkod | baseline | ratio | target | met |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            met = "—" if r.met is None else ("yes" if r.met else "**no**")
            ratio = f"{r.ratio:.3g} ({r.ratio_label})"
            out.append(f"| {r.bench} | {r.nkod} | {r.baseline} | {ratio} | {r.target} | {met} |")
        out.append("")
        out.append("Notes:")
        for r in self.rows:
            if r.note:
                out.append(f"- {r.bench}: {r.note}")
        return "\n".join(out) + "\n"


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _cpu(pid: int) -> float:
    """CPU seconds all of a process's threads have run (schedstat: nanoseconds, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def _settle(pid: int, window: float = 1.0, quiet: float = 0.05, limit: float = 120.0) -> float:
    """Wait until the process is idle (under `quiet` of a CPU over `window`); its idle CPU rate."""
    deadline = time.perf_counter() + limit
    while True:
        c0, t0 = _cpu(pid), time.perf_counter()
        time.sleep(window)
        rate = (_cpu(pid) - c0) / (time.perf_counter() - t0)
        if rate < quiet or time.perf_counter() > deadline:
            return rate


def _wait_file(path: Path, needle: bytes, timeout: float) -> None:
    """Wait until `needle` appears in the file (each look reads only what was added since the last)."""
    deadline = time.perf_counter() + timeout
    pos = 0
    while time.perf_counter() < deadline:
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            data = b""
        if needle in data:
            return
        pos = max(pos, pos + len(data) - len(needle))
        time.sleep(0.005)
    raise TimeoutError(f"{needle!r} not in {path} after {timeout} s")


def _proc_mem(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


# -- the seed's scheme, as /work/shared/seed/resume-mechanism.md shows it ------------------------------


@dataclass
class SeedCheckpoint:
    completed_videos: list[str]
    failed_videos: list[dict[str, Any]]
    current_video: str | None
    started_at: str
    last_updated: str


def seed_save(path: Path, checkpoint: SeedCheckpoint) -> None:
    """save_checkpoint() of run_extraction.py: the whole checkpoint, json.dump with indent=2, no fsync."""
    checkpoint.last_updated = datetime.now().isoformat()
    with open(path, "w") as f:
        json.dump(asdict(checkpoint), f, indent=2)


def seed_bookkeeping(root: Path, n: int, m: int) -> float:
    """Seconds per video of the seed's loop: save with current_video set, then again after it ends."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "extraction_checkpoint.json"
    now = datetime.now().isoformat()
    cp = SeedCheckpoint([f"vid{i:07d}" for i in range(n)], [], None, now, now)
    seed_save(path, cp)
    t0 = time.perf_counter()
    for i in range(m):
        vid = f"new{i:07d}"
        cp.current_video = vid
        seed_save(path, cp)
        cp.completed_videos.append(vid)
        cp.current_video = None
        seed_save(path, cp)
    per = (time.perf_counter() - t0) / m
    shutil.rmtree(root, ignore_errors=True)
    return per


def machine() -> str:
    def run(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "(unavailable)"

    lscpu = "\n".join(run(["lscpu"]).splitlines()[:10])
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.rstrip()
    return (
        f"nproc: {run(['nproc'])}\n\nlscpu | head:\n```\n{lscpu}\n```\n\nfree -h:\n```\n{free}\n```\n"
        f"\nPython {platform.python_version()}, {platform.platform()}\n"
    )


def _compile_nkod() -> None:
    """Byte-compile nkod's modules as an install leaves them (pip writes a wheel's .pyc files when it installs
    it). From a checkout with PYTHONDONTWRITEBYTECODE=1 (set on some dev boxes) every `nkoctl`/`nkod` run
    would compile its ~25 modules from source again (~25 ms of each status call), which no install pays."""
    import compileall

    compileall.compile_dir(REPO / "nkod", quiet=1)


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    tmp = Path(tempfile.mkdtemp(prefix="nkod-bench-", dir="/var/tmp"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (under 3 minutes on 2 cores)")
    p.add_argument("--dir", type=Path, help="work directory (kept; histories reused); default a temp dir on disk")
    p.add_argument("--only", help="comma-separated benchmark numbers, e.g. 1,4")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "engine_bench.md")
    p.add_argument("--readme", type=Path, help="also write the results into this file's bench:begin/end section")
    args = p.parse_args(argv)
    only = {int(x) for x in args.only.split(",")} if args.only else {1, 2, 3, 4, 5, 6, 7}
    t0 = time.perf_counter()
    _compile_nkod()
    load_before = os.getloadavg()
    with _workdir(args.dir) as work:
        b = Bench(work, args.quick)
        steps: list[tuple[int, Callable[[], None]]] = [
            (1, b.bookkeeping),
            (2, b.transitions),
            (3, b.status),
            (4, b.replay),
            (5, b.daemon_start),
            (7, b.big_manifest),
        ]
        for number, step in steps:
            if number in only or (number == 5 and 6 in only):
                step()
        table = b.table()
    total = time.perf_counter() - t0
    mode = "--quick" if args.quick else "full"
    header = (
        f"Engine benchmarks ({mode}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {total:.0f} s, "
        f"`python bench/run.py{' --quick' if args.quick else ''}`; load average (1 min) {load_before[0]:.2f} "
        f"before, {os.getloadavg()[0]:.2f} after (the machine is shared)\n\n"
    )
    print(header + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = header + table + "\n### Machine\n\n" + machine()
    args.out.write_text(result)
    if args.readme is not None:
        update_readme(args.readme, result)
    return 0


def update_readme(path: Path, result: str) -> None:
    """Replace what lies between the ``<!-- bench:begin …-->`` and ``<!-- bench:end -->`` lines."""
    text = path.read_text()
    begin = text.index("<!-- bench:begin")
    begin = text.index("\n", begin) + 1
    end = text.index("<!-- bench:end -->", begin)
    path.write_text(text[:begin] + "\n" + result + "\n" + text[end:])


if __name__ == "__main__":
    sys.exit(main())
