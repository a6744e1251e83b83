#!/usr/bin/env python3
"""The dask executor against the local one, on the same machine, measured in one run, alternated.

    python bench/cluster_bench.py [--quick] [--rounds R] [--out FILE]

1. The real pipeline: N videos (the shipped sample clips, listed several times under distinct ids), with
   ``executor = "local"`` and with ``executor = "dask"`` on a loopback cluster of 2 workers x 1 thread
   (scheduler and workers as separate processes, started once: a cluster outlives the runs), both with
   ``workers = 2``; each run is a whole ``nkod --once`` from start to exit. Target: dask <= 1.1x local.
2. The fixed cost of each run (start-up and exit with nothing to do; the dask executor imports distributed
   and connects to the scheduler), so the real pipeline's ratio can also be read without it.
3. The bookkeeping of the Dask path: the same with videos that do nothing (a test processor writing one
   small file), so the difference per video is what running through Dask costs (submit, publish, the
   staging directory on the shared filesystem, done.json, collect, unpublish).

Each pair of runs is alternated (local, dask, local, dask...) so load on a shared box hits both alike.
Prints a markdown table and writes it to --out (default bench/results/cluster_bench.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.dask_cluster import Cluster  # noqa: E402  (the same loopback cluster the tests use)
from tests.helpers import binary, env  # noqa: E402


def _manifest(path: Path, entries: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def real_entries(copies: int, samples: Path) -> list[dict[str, object]]:
    base = [json.loads(line) for line in (REPO / "data" / "videos.jsonl").read_text().splitlines() if line.strip()]
    return [
        {**e, "video_id": f"{e['video_id']}-{i}", "path": str(samples / Path(str(e["path"])).name)}
        for i in range(copies)
        for e in base
    ]


def run_once(root: Path, entries: list[dict[str, object]], executor: str, cluster: Cluster, processor: str) -> float:
    """A fresh data dir; `nkod --once` to the end; its wall time."""
    if root.exists():
        shutil.rmtree(root)
    data, shared = root / "data", root / "shared"
    data.mkdir(parents=True)
    shared.mkdir()
    _manifest(data / "videos.jsonl", entries)
    argv = [binary("nkod"), "--data-dir", str(data), "--once", "--log-format", "plain", "--workers", "2"]
    if processor:
        argv += ["--processor", processor]
    if executor == "dask":
        argv += ["--executor", "dask", "--scheduler-address", cluster.address, "--shared-dir", str(shared)]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=1800)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"nkod --once ({executor}) exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr}")
    if not entries:
        return wall
    completed = sum(1 for line in (data / "events.jsonl").read_text().splitlines() if '"video_completed"' in line)
    if completed != len(entries):
        raise SystemExit(f"{executor}: {completed} of {len(entries)} videos completed")
    return wall


def compare(
    work: Path, entries: list[dict[str, object]], cluster: Cluster, rounds: int, processor: str = ""
) -> tuple[list[float], list[float]]:
    local: list[float] = []
    dask: list[float] = []
    if entries:  # imports and caches warm on every worker
        run_once(work / "warm", entries[:2], "dask", cluster, processor)
        run_once(work / "warm", entries[:2], "local", cluster, processor)
    for _ in range(rounds):  # alternated
        local.append(run_once(work / "local", entries, "local", cluster, processor))
        dask.append(run_once(work / "dask", entries, "dask", cluster, processor))
    return local, dask


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer videos and rounds (under a minute)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cluster_bench.md")
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    copies = 2 if args.quick else 5
    trivial_n = 40 if args.quick else 100
    with tempfile.TemporaryDirectory(prefix="nkod-cluster-bench-") as tmp:
        work = Path(tmp)
        samples = work / "samples"
        shutil.copytree(REPO / "data" / "samples", samples)
        cluster = Cluster(work / "cluster", workers=2, nthreads=1)
        try:
            cluster.start()
            entries = real_entries(copies, samples)
            real_local, real_dask = compare(work, entries, cluster, rounds)
            trivial = [{"video_id": f"t{i:04d}", "path": "none.mp4", "frames": 1} for i in range(trivial_n)]
            triv_local, triv_dask = compare(work, trivial, cluster, rounds, "tests.processors:process")
            empty_local, empty_dask = compare(work, [], cluster, rounds, "tests.processors:process")
        finally:
            cluster.stop()
    med = statistics.median
    ratio = med(d / loc for loc, d in zip(real_local, real_dask, strict=True))
    per_video = med((d - loc) / trivial_n for loc, d in zip(triv_local, triv_dask, strict=True))
    start_local, start_dask = med(empty_local), med(empty_dask)
    steady = (med(real_dask) - start_dask) / (med(real_local) - start_local)
    load = os.getloadavg()
    lines = [
        f"# nkod cluster benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`python bench/cluster_bench.py{' --quick' if args.quick else ''}` on {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; loopback cluster of 2 workers x 1 thread,"
        " nkod workers = 2; each figure the median of the alternated rounds.",
        "",
        "| measure | local | dask | ratio / overhead | target |",
        "|---|---|---|---|---|",
        f"| real pipeline, {len(entries)} videos (the 3 samples x {copies}), `nkod --once` wall | "
        f"{med(real_local):.2f} s | {med(real_dask):.2f} s | **{ratio:.2f}x** | <= 1.1x |",
        f"| the same less each one's fixed start-up and exit (row 3) | {med(real_local) - start_local:.2f} s | "
        f"{med(real_dask) - start_dask:.2f} s | **{steady:.2f}x** | |",
        f"| start-up and exit, no videos (`nkod --once`, empty manifest; dask: import distributed, connect) | "
        f"{start_local:.2f} s | {start_dask:.2f} s | +{start_dask - start_local:.2f} s | |",
        f"| bookkeeping: {trivial_n} videos that do nothing, `nkod --once` wall | {med(triv_local):.2f} s | "
        f"{med(triv_dask):.2f} s | **{per_video * 1000:.0f} ms per video** | (about 0.1 s) |",
        "",
        f"rounds: empty local {[round(x, 2) for x in empty_local]}, dask {[round(x, 2) for x in empty_dask]};"
        f" real local {[round(x, 2) for x in real_local]}, dask {[round(x, 2) for x in real_dask]};"
        f" trivial local {[round(x, 2) for x in triv_local]}, dask {[round(x, 2) for x in triv_dask]}",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
