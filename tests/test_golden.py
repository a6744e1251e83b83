"""Golden logs: every released log format keeps replaying to the same state, forever.

``tests/data/golden-v1/events.jsonl`` is a real log written by nkod 0.1.0 (format v1) through retries,
a permanent failure, a grace-period stop, an import, a retry request, a kill -9, a torn tail repaired,
a crash between output rename and append (recovered), a rejected request and a config reload.
``state.json`` is what it means; ``snapshot.json`` a v1 snapshot of it. Never regenerate these files:
add a new golden directory when the format changes.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from nkod import eventlog, snapshot
from nkod.state import fold

GOLDEN = sorted((Path(__file__).parent / "data").glob("golden-v*"))


@pytest.mark.parametrize("golden", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden_log_replays_to_its_recorded_state(golden: Path) -> None:
    """The golden log replays without error to exactly the recorded state."""
    events, result = eventlog.read_all(golden / "events.jsonl")
    assert result.torn is None
    doc = snapshot.state_to_doc(fold(events))
    doc["offset"] = result.end_offset
    assert doc == orjson.loads((golden / "state.json").read_bytes())


@pytest.mark.parametrize("golden", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden_snapshot_loads_and_matches_full_replay(golden: Path) -> None:
    """The golden snapshot is accepted for its log and gives the same state as a full replay."""
    with_snap = snapshot.replay(golden / "events.jsonl", golden / "snapshot.json")
    assert with_snap.snapshot_used and with_snap.snapshot_problem is None
    full = snapshot.replay(golden / "events.jsonl", golden / "snapshot.json", use_snapshot=False)
    assert with_snap.projector.state() == full.projector.state()


def test_golden_v1_covers_every_event_type() -> None:
    """The v1 golden log holds each event type the daemon writes, so each keeps replaying."""
    types = {e["type"] for e in eventlog.read_all(GOLDEN[0] / "events.jsonl")[0]}
    assert types >= {
        "log_created",
        "daemon_started",
        "daemon_stopped",
        "videos_added",
        "manifest_checked",
        "video_started",
        "video_completed",
        "video_failed",
        "video_retry_scheduled",
        "video_interrupted",
        "retry_requested",
        "video_imported",
        "log_repaired",
        "request_rejected",
        "config_reloaded",
    }


SNAPSHOTS = sorted((Path(__file__).parent / "data").glob("snapshot-v*"))


@pytest.mark.parametrize("golden", SNAPSHOTS, ids=[p.name for p in SNAPSHOTS])
def test_golden_snapshot_of_each_format_loads_and_with_its_tail_equals_the_full_replay(golden: Path) -> None:
    """A snapshot written by nkod in each snapshot format (its directory's name) keeps loading for its log,
    and with the log's tail after it gives the full replay's state, which is the recorded one."""
    version = int(golden.name.rpartition("-v")[2])
    first = (golden / "snapshot.json").read_bytes().partition(b"\n")[0]
    assert orjson.loads(first)["doc"]["v"] == version
    with_snap = snapshot.replay(golden / "events.jsonl", golden / "snapshot.json")
    assert with_snap.snapshot_used and with_snap.snapshot_problem is None and with_snap.tail_events > 0
    full = snapshot.replay(golden / "events.jsonl", golden / "snapshot.json", use_snapshot=False)
    assert with_snap.projector.state() == full.projector.state()
    doc = snapshot.state_to_doc(full.projector.state())
    assert doc == orjson.loads((golden / "state.json").read_bytes())
