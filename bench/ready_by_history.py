#!/usr/bin/env python3
"""Start to READY=1: what the history's length costs alone, the videos held the same.

    python bench/ready_by_history.py [--dir DIR] [--runs N]

Row 6 of bench/run.py compares 1M events over 10k videos with 1k events over 300 videos, so its ratio is
the state's size (10k videos' snapshot rows) as much as the history's length. This script compares 1M
events with 1k events over the same 300 videos (both after a clean stop, and both after a crash: the
snapshot 500 events behind, no events.crc), alternated, and prints the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import TAIL, Bench, _compile_nkod, _workdir  # noqa: E402
from synth import make_history  # noqa: E402


def _history(work: Path, name: str, events: int, tail: int) -> Path:
    root = work / name
    if not (root / ".done").exists():
        make_history(root, videos=300, events=events, snapshot_tail=tail)
        (root / ".done").write_text("ok\n")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, help="work directory (kept; histories reused); default a temp dir")
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args(argv)
    _compile_nkod()
    with _workdir(args.dir) as work:
        b = Bench(work, quick=True)
        cases = {
            "1k, clean stop": (_history(work, "r1k", 1_000, 0), True),
            "1M, clean stop": (_history(work, "r1m", 1_000_000, 0), True),
            "1k, after a crash": (_history(work, "r1k-behind", 1_000, TAIL), False),
            "1M, after a crash": (_history(work, "r1m-behind", 1_000_000, TAIL), False),
        }
        ready: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):  # alternated: load on a shared box hits all alike
            for k, (src, clean) in cases.items():
                ready[k].append(b.start_daemon(src, "start-" + k.replace(" ", "").replace(",", "-"), clean)[0])
        med = {k: statistics.median(v) for k, v in ready.items()}
        for k, v in med.items():
            print(f"{k:20} READY=1 in {v * 1e3:6.1f} ms (median of {args.runs})")
        for case in ("clean stop", "after a crash"):
            print(f"1M / 1k events, 300 videos, {case}: {med['1M, ' + case] / med['1k, ' + case]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
