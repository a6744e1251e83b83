#!/usr/bin/env python3
"""Benchmark the built-in pipeline: frames + audio extraction vs the ffmpeg CLI, and 2 workers vs 1.

    python bench/pipeline_bench.py [--minutes 10] [--repeat 3] [--clips 4] [--clip-seconds 60]
                                   [--only all|extraction|throughput]

1. Makes (once, cached in bench/results/) a 1280x720 30 fps H.264 clip with 44.1 kHz stereo AAC,
   scenes every 2-9 s and speech-like bursts between silences.
2. Times nkod's pipeline (``nkod.pipeline:process``, detector ``none``, audio on: scene frames as
   JPEG, 16 kHz mono FLAC segments, manifest, fsync) against the ffmpeg CLI doing the same extraction:
   pass 1 decodes everything, writes a JPEG per ``select='gt(scene,0.3)'`` frame and runs
   ``silencedetect`` on the 16 kHz mono audio; pass 2 writes FLAC segments cut at those silences.
   The ffmpeg binary is only the baseline: it is installed with apt-get if missing (as root), else
   the baseline is skipped with a message.
3. Runs the processor on N short clips in 1 worker process, then in 2, and reports the throughput
   ratio (with decoder threads on auto, and pinned to 1 thread per worker).

Prints a markdown table and writes it to bench/results/pipeline_bench.md.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import av  # noqa: E402
from pipeline_clip import make_bench_clip  # noqa: E402

from nkod.pipeline import process  # noqa: E402
from nkod.processor import Report  # noqa: E402

RESULTS = HERE / "results"


def ensure_ffmpeg() -> str | None:
    """Path of the ffmpeg CLI, installing Debian's package if we can; None (with a message) if not."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("ffmpeg not found: installing it for the baseline (apt-get install -y ffmpeg)...", flush=True)
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "ffmpeg"], check=False, capture_output=True)
        return shutil.which("ffmpeg")
    print("ffmpeg not found: install it (e.g. `sudo apt-get install -y ffmpeg`) to get the baseline")
    return None


def cached_clip(seconds: float) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"pipeline_bench_{round(seconds)}s.mp4"
    if not path.exists():
        print(f"making {path.name} ({seconds:g} s of 1280x720 H.264 + AAC; once, then cached)...", flush=True)
        t = time.perf_counter()
        make_bench_clip(path, seconds)
        print(f"  done in {time.perf_counter() - t:.0f} s, {path.stat().st_size / 1e6:.1f} MB", flush=True)
    return path


def _report(settings: dict[str, Any], cache: Path, workers: int = 1) -> Report:
    return Report(lambda message: None, settings=settings, cache_dir=cache, attempt=1, workers=workers)


def run_nkod(clip: Path, settings: dict[str, Any] | None = None, workers: int = 1) -> tuple[float, dict[str, Any]]:
    """One full process() run in a fresh work dir; seconds and counts."""
    with tempfile.TemporaryDirectory(prefix="nkod-bench-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        cache = Path(tmp) / "cache"
        cache.mkdir()
        t = time.perf_counter()
        counts = process({"video_id": "bench", "path": str(clip)}, workdir, _report(settings or {}, cache, workers))
        return time.perf_counter() - t, dict(counts)


def run_ffmpeg(ffmpeg: str, clip: Path) -> tuple[float, dict[str, Any]]:
    """The same extraction with the ffmpeg CLI (two passes: frames + silence detection, then segments)."""
    with tempfile.TemporaryDirectory(prefix="ffmpeg-bench-") as tmp:
        frames, audio = Path(tmp) / "frames", Path(tmp) / "audio"
        frames.mkdir()
        audio.mkdir()
        t = time.perf_counter()
        pass1 = subprocess.run(
            [
                ffmpeg, "-hide_banner", "-nostats", "-y", "-i", str(clip),
                "-map", "0:v", "-vf", "select='gt(scene,0.3)'", "-fps_mode", "vfr", "-q:v", "3",
                str(frames / "%04d.jpg"),
                "-map", "0:a", "-ac", "1", "-af", "aresample=16000,silencedetect=n=-40dB:d=0.5", "-f", "null", "-",
            ],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        starts = [float(x) for x in re.findall(r"silence_start: ([0-9.]+)", pass1.stderr)]
        ends = [float(x) for x in re.findall(r"silence_end: ([0-9.]+)", pass1.stderr)]
        cuts = [round((a + b) / 2, 3) for a, b in zip(starts, ends, strict=False) if a > 0]
        subprocess.run(
            [
                ffmpeg, "-hide_banner", "-nostats", "-y", "-i", str(clip), "-map", "0:a", "-ac", "1", "-ar", "16000",
                "-c:a", "flac", "-f", "segment", "-segment_times", ",".join(map(str, cuts)) or "1e9",
                str(audio / "%04d.flac"),
            ],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        elapsed = time.perf_counter() - t
        return elapsed, {"frames": len(list(frames.iterdir())), "audio_segments": len(list(audio.iterdir()))}


def _throughput_with(clip: Path, jobs: int, settings: dict[str, Any], processes: int) -> float:
    return throughput(clip, jobs, processes, settings)


def _worker(job: tuple[str, dict[str, Any], int]) -> float:
    return run_nkod(Path(job[0]), job[1], job[2])[0]


def throughput(clip: Path, jobs: int, processes: int, settings: dict[str, Any]) -> float:
    """Videos per minute processing `jobs` copies of `clip` with `processes` worker processes."""
    ctx = multiprocessing.get_context("fork")
    t = time.perf_counter()
    with ctx.Pool(processes) as pool:
        # Each process is one of `processes` daemon workers: the auto decoder-thread count shares the CPUs.
        pool.map(_worker, [(str(clip), settings, processes)] * jobs, chunksize=1)
    return jobs / (time.perf_counter() - t) * 60


def _ffmpeg_throughput(ffmpeg: str, clip: Path, jobs: int, processes: int) -> float:
    """Videos per minute for a plain single-threaded ffmpeg decode: what the CPUs give two processes."""
    cmd = [ffmpeg, "-v", "error", "-threads", "1", "-i", str(clip), "-f", "null", "-"]
    t = time.perf_counter()
    pending = list(range(jobs))
    running: list[subprocess.Popen[bytes]] = []
    while pending or running:
        while pending and len(running) < processes:
            pending.pop()
            running.append(subprocess.Popen(cmd))
        running.pop(0).wait()
    return jobs / (time.perf_counter() - t) * 60


def median_of(repeat: int, fn: Callable[[], tuple[float, dict[str, Any]]]) -> tuple[float, dict[str, Any]]:
    runs = [fn() for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), runs[-1][1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the main clip (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--clips", type=int, default=4, help="videos per run in the parallel test")
    parser.add_argument("--clip-seconds", type=float, default=60.0, help="length of those videos")
    parser.add_argument("--only", choices=("all", "extraction", "throughput"), default="all")
    args = parser.parse_args(argv)

    ffmpeg = ensure_ffmpeg()
    load_before = os.getloadavg()[0]
    lines = [
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
        f"PyAV {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}), "
        f"load average at start {load_before:.2f}",
        "",
    ]
    if args.only in ("all", "extraction"):
        clip = cached_clip(args.minutes * 60)
        lines += [
            f"### Extraction of a {args.minutes:g}-minute 1280x720 H.264 clip (median of {args.repeat})",
            "",
            "| extractor | seconds | frames | audio segments | x realtime |",
            "|---|---:|---:|---:|---:|",
        ]
        print("timing nkod...", flush=True)
        nkod_s, nkod_counts = median_of(args.repeat, lambda: run_nkod(clip))
        row = "| {} | {:.2f} | {} | {} | {:.0f}x |"
        lines.append(
            row.format("nkod pipeline (PyAV)", nkod_s, nkod_counts["frames"], nkod_counts["audio_segments"],
                       args.minutes * 60 / nkod_s)
        )  # fmt: skip
        exact_s, exact_counts = median_of(args.repeat, lambda: run_nkod(clip, {"frames": {"skip_nonref": False}}))
        lines.append(
            row.format("nkod, every frame decoded (skip_nonref = false)", exact_s, exact_counts["frames"],
                       exact_counts["audio_segments"], args.minutes * 60 / exact_s)
        )  # fmt: skip
        ratio_line = ""
        if ffmpeg:
            print("timing ffmpeg CLI...", flush=True)
            ff_s, ff_counts = median_of(args.repeat, lambda: run_ffmpeg(ffmpeg, clip))
            lines.append(
                row.format("ffmpeg CLI (2 passes)", ff_s, ff_counts["frames"], ff_counts["audio_segments"],
                           args.minutes * 60 / ff_s)
            )  # fmt: skip
            ratio_line = (
                f"nkod / ffmpeg time ratio: **{nkod_s / ff_s:.2f}x** with the defaults, "
                f"{exact_s / ff_s:.2f}x decoding every frame like ffmpeg (target <= 1.2x)"
            )
        else:
            lines.append("| ffmpeg CLI | skipped: ffmpeg not installed | | | |")
        lines += ["", ratio_line, ""]

    if args.only in ("all", "throughput"):
        short = cached_clip(args.clip_seconds)
        lines += [
            f"### Throughput: {args.clips} videos of {args.clip_seconds:g} s, 1 vs 2 worker processes "
            f"(median of {args.repeat})",
            "",
            "| decoder threads | 1 process (videos/min) | 2 processes (videos/min) | speed-up |",
            "|---|---:|---:|---:|",
        ]

        def paired(one_run: Callable[[int], float]) -> tuple[float, float]:
            """Medians over `repeat` alternating 1-process / 2-process runs (load drifts between them)."""
            ones, twos = [], []
            for _ in range(args.repeat):
                ones.append(one_run(1))
                twos.append(one_run(2))
            return statistics.median(ones), statistics.median(twos)

        for label, settings in (
            ("1 per worker (default)", {}),
            ("auto: CPUs / workers (`threads = 0`)", {"frames": {"threads": 0}}),
        ):
            print(f"timing 1 vs 2 processes, threads {label}...", flush=True)
            one, two = paired(functools.partial(_throughput_with, short, args.clips, settings))
            lines.append(f"| {label} | {one:.1f} | {two:.1f} | {two / one:.2f}x |")
        if ffmpeg:
            print("timing the machine's own ceiling: ffmpeg decode, 1 vs 2 processes...", flush=True)
            one, two = paired(lambda n: _ffmpeg_throughput(ffmpeg, short, args.clips, n))
            lines.append(f"| reference: `ffmpeg -threads 1` decode only | {one:.1f} | {two:.1f} | {two / one:.2f}x |")
    lines += ["", f"Load average at the end: {os.getloadavg()[0]:.2f} (other work on the machine skews the numbers)"]
    table = "\n".join(lines)
    print()
    print(table)
    (RESULTS / "pipeline_bench.md").write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
