"""Shared checks for the crash, power-loss, disk-fault and hostile-input tests.

Everything here reads a data directory from the outside, the way a person would after a crash: the log
through the real reader (``nkod.eventlog``), outputs through the file system, status through the real
``nkoctl`` binary.
"""

from __future__ import annotations

import collections
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from nkod import eventlog
from tests.helpers import DataDir

LONG = os.environ.get("NKOD_TORTURE", "") == "long"


def torture_seed(name: str) -> int:
    """The random seed for one test: ``$NKOD_TORTURE_SEED`` to replay a failure, else a fresh one (printed)."""
    raw = os.environ.get("NKOD_TORTURE_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(1 << 32)
    print(f"{name}: NKOD_TORTURE_SEED={seed}  (set it to replay this run)")
    return seed


def log_events(d: DataDir) -> tuple[list[dict[str, Any]], eventlog.ScanResult]:
    """Every checked event of the log, through the real reader (raises on damage in the middle)."""
    return eventlog.read_all(d.log)


def completed_ids(events: Iterable[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(e["video_id"] for e in events if e["type"] == "video_completed")


def assert_never_redone(events: list[dict[str, Any]]) -> None:
    """No video is started again, or completed again, once a `video_completed` for it is in the log."""
    done_at: dict[str, int] = {}
    for e in events:
        vid = e.get("video_id")
        if vid is None:
            continue
        if e["type"] in ("video_started", "video_completed") and vid in done_at:
            raise AssertionError(
                f"{vid} was completed at seq {done_at[vid]} and then {e['type']} again at seq {e['seq']}"
            )
        if e["type"] == "video_completed":
            done_at[vid] = e["seq"]


def assert_log_replays(d: DataDir) -> list[dict[str, Any]]:
    """The log reads back whole: contiguous seq, good checksums, no torn tail. Returns its events."""
    events, result = log_events(d)
    assert result.torn is None, f"{d.log} ends in a torn tail: {result.torn}"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    return events


def assert_fsck_ok(d: DataDir) -> None:
    r = d.ctl("fsck")
    assert r.returncode == 0, f"nkoctl fsck failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    # "OK", or no log at all yet (killed before the daemon created it)
    assert "OK" in r.stderr + r.stdout or "no log yet" in r.stderr + r.stdout, r.stderr + r.stdout


def assert_status_works(d: DataDir) -> dict[str, Any]:
    """`nkoctl status --json` answers (exit 0, a JSON object with the documented keys)."""
    r = d.ctl("status", "--json")
    assert r.returncode == 0, f"nkoctl status --json failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    doc = orjson.loads(r.stdout)
    assert isinstance(doc, dict)
    for key in ("total", "completed", "pending", "running", "failed", "interrupted", "daemon_running"):
        assert key in doc, f"status --json has no {key!r}: {doc}"
    return doc


def start_seq_of_completion(events: list[dict[str, Any]]) -> dict[str, int]:
    """For each completed video, the seq of the `video_started` its completion belongs to (the last before)."""
    last_start: dict[str, int] = {}
    result: dict[str, int] = {}
    for e in events:
        if e["type"] == "video_started":
            last_start[e["video_id"]] = e["seq"]
        elif e["type"] == "video_completed" and e["video_id"] in last_start:
            result[e["video_id"]] = last_start[e["video_id"]]
    return result


def assert_outputs_whole(d: DataDir, events: list[dict[str, Any]]) -> None:
    """Each completed video's output: summary.json from the start that completed it, counts == files on disk."""
    starts = start_seq_of_completion(events)
    for e in events:
        if e["type"] != "video_completed":
            continue
        vid = e["video_id"]
        out = d.root / "output" / vid
        summary = orjson.loads((out / "summary.json").read_bytes())
        assert summary["video_id"] == vid
        assert summary["started_seq"] == starts[vid], f"{vid}: output from start {summary['started_seq']}"
        frames = sorted(p.name for p in (out / "frames").iterdir())
        assert len(frames) == summary["counts"]["frames"] == e["counts"]["frames"], f"{vid}: {frames}"
        for i, name in enumerate(frames):
            assert name == f"{i:04d}.txt"
            assert (out / "frames" / name).read_text() == f"{vid} frame {i}\n", f"{vid}/{name} is not whole"


def assert_finished_exactly_once(d: DataDir, ids: Iterable[str]) -> list[dict[str, Any]]:
    """The end state: log whole, fsck OK, every id completed exactly once, never redone, outputs whole."""
    events = assert_log_replays(d)
    counts = completed_ids(events)
    wanted = set(ids)
    missing = sorted(wanted - set(counts))
    twice = sorted(vid for vid, n in counts.items() if n != 1)
    assert not missing, f"never completed: {missing[:20]} ({len(missing)})"
    assert not twice, f"completed more than once: {[(v, counts[v]) for v in twice[:20]]}"
    assert set(counts) == wanted, f"unknown ids completed: {sorted(set(counts) - wanted)[:20]}"
    assert_never_redone(events)
    assert_outputs_whole(d, events)
    assert_fsck_ok(d)
    doc = assert_status_works(d)
    assert doc["completed"] == len(wanted) and doc["total"] == len(wanted), doc
    return events


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def assert_snapshot_agrees(d: DataDir) -> None:
    """Replay through snapshot + tail gives exactly the state a full replay of the log gives."""
    from nkod import snapshot

    snap = d.root / "snapshot.json"
    with_snap = snapshot.replay(d.log, snap, use_snapshot=True)
    full = snapshot.replay(d.log, snap, use_snapshot=False)
    assert with_snap.snapshot_problem is None, with_snap.snapshot_problem
    assert with_snap.projector.state() == full.projector.state()
