#!/usr/bin/env python3
"""Benchmarks of the nkod engine, each against a baseline measured in the same run.

    python bench/run.py [--quick] [--dir DIR] [--only 1,3,...] [--out FILE]

1. bookkeeping cost per video at 1k / 10k / 100k videos vs the seed's scheme (rewrite the whole
   checkpoint JSON after every state change, as run_extraction.py does);
2. durable transitions per second vs a bare Python loop appending and fsyncing the same bytes;
   plus the real daemon end to end with 1 and N workers;
3. ``nkoctl status --json`` wall time on a log of 1M events (with snapshot) vs ``python -c "import nkod"``;
4. cold replay of 1M events vs ``orjson.loads`` over the same lines;
5. daemon RSS after READY with 1M events of history vs 1k;
6. start to READY=1 with 1M events of history (a real NOTIFY_SOCKET bound here) vs 1k.

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

from nkod import decide, eventlog, logs, snapshot  # noqa: E402
from nkod.config import Config, DaemonConfig  # noqa: E402
from nkod.daemon import Daemon  # noqa: E402
from nkod.decide import Outcome  # noqa: E402
from nkod.notify import Notifier  # noqa: E402

BIN = Path(sys.executable).parent
PROCESSOR = "tests.processors:process"  # a trivial processor: these benchmarks measure the engine


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
        """1M events over 10k videos; the snapshot 2,500 events behind the end (the daemon snapshots
        every 5,000 events, so that is the average tail)."""
        if self._h1m is None:
            root = self.work / "h1m"
            if not (root / ".done").exists():
                self.say("generating a 1M-event history (10k videos) with the real codec …")
                t0 = time.perf_counter()
                make_history(root, videos=10_000, events=1_000_000, snapshot_tail=2_500)
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

    def daemon_in_process(self, root: Path) -> Daemon:
        """The real Daemon object on `root`, replayed, with its log writer open (no loop, no signals)."""
        config = Config(daemon=DaemonConfig(processor=PROCESSOR), source="bench")
        d = Daemon(root, config, notifier=Notifier(), install_signals=False)
        for sub in (d.paths.requests, d.paths.output, d.paths.work, d.paths.checkpoints):
            sub.mkdir(parents=True, exist_ok=True)
        rep = snapshot.replay(d.paths.log, d.paths.snapshot)
        d.projector = rep.projector
        d.projector.offset = rep.scan.end_offset
        d.writer = eventlog.LogWriter(d.paths.log, rep.scan.last_seq + 1)
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
                    f"2 fsynced appends + fold {_fmt_s(loop)}; snapshot {_fmt_s(snap)} per 5,000 events; "
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
        self.say("3. nkoctl status --json on 1M events")
        root = _copy_history(self.history_1m(), self.work / "status")
        runs = 5 if self.quick else 9
        argv = [str(BIN / "nkoctl"), "--data-dir", str(root), "status", "--json"]
        status_runs: list[float] = []
        import_runs: list[float] = []
        for _ in range(runs):  # alternate, so load on a shared box hits both alike
            status_runs += _walls(argv, 1)
            import_runs += _walls([sys.executable, "-c", "import nkod"], 1)
        status, imp = statistics.median(status_runs), statistics.median(import_runs)
        self.rows.append(
            Row(
                "3. `nkoctl status --json`, 1M events + snapshot",
                _fmt_s(status),
                _fmt_s(imp),
                status / imp,
                "nkod / `import nkod`",
                "≤ 150 ms and ≤ 2× the import",
                status <= 0.150 and status <= 2 * imp,
                f"median of {runs} runs (fastest {_fmt_s(min(status_runs))}); 10k videos in the snapshot, "
                "2,500-event tail",
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
        for _event in eventlog.scan(log):  # the reader alone: decode + crc + seq/version checks, no fold
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
    def start_daemon(self, src: Path, name: str) -> tuple[float, int, int]:
        """Start the real nkod on a copy of `src`; seconds to READY=1, VmHWM and VmRSS (kB) after it."""
        root = _copy_history(src, self.work / name)
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
        self.say("5/6. real daemon start with 1k and 1M events of history")
        small: list[tuple[float, int, int]] = []
        big: list[tuple[float, int, int]] = []
        for _ in range(runs):  # alternate, so load on a shared box hits both alike
            small.append(self.start_daemon(self.history_1k(), "d1k"))
            big.append(self.start_daemon(self.history_1m(), "d1m"))
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
        ready_small = statistics.median(s[0] for s in small)
        ready_big = statistics.median(b[0] for b in big)
        self.rows.append(
            Row(
                "6. start to READY=1, 1M events of history",
                _fmt_s(ready_big),
                _fmt_s(ready_small) + " (1k events)",
                ready_big / ready_small,
                "1M / 1k",
                "≤ 300 ms",
                ready_big <= 0.300,
                f"median of {runs} (fastest {_fmt_s(min(b[0] for b in big))}); real NOTIFY_SOCKET; snapshot 2,500 "
                f"events behind; processor {PROCESSOR}",
            )
        )

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
    only = {int(x) for x in args.only.split(",")} if args.only else {1, 2, 3, 4, 5, 6}
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    with _workdir(args.dir) as work:
        b = Bench(work, args.quick)
        steps: list[tuple[int, Callable[[], None]]] = [
            (1, b.bookkeeping),
            (2, b.transitions),
            (3, b.status),
            (4, b.replay),
            (5, b.daemon_start),
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
