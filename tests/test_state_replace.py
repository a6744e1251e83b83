"""The fold's and the snapshot loader's fast paths behave exactly like the plain dataclass code they replace."""

from __future__ import annotations

import zlib
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkod import codec, snapshot
from nkod.state import Projector, Status, Video, fold, replace
from tests import strategies

_values: dict[str, st.SearchStrategy[Any]] = {
    "status": st.sampled_from(list(Status)),
    "failures": st.integers(0, 10),
    "starts": st.integers(0, 10),
    "attempt": st.integers(0, 10),
    "started_seq": st.integers(0, 10**9),
    "started_at": st.none() | st.text(max_size=30),
    "not_before": st.none() | st.text(max_size=30),
    "error": st.none() | st.text(max_size=30),
    "error_kind": st.none() | st.sampled_from(["transient", "permanent", "interrupted"]),
    "failed_at": st.none() | st.text(max_size=30),
    "completed_at": st.none() | st.text(max_size=30),
    "counts": st.none() | st.dictionaries(st.text(max_size=5), st.integers(0, 99)).map(MappingProxyType),
    "imported": st.booleans(),
    "retry_delay": st.none() | st.floats(0, 10**4),
}


@given(base=st.fixed_dictionaries({}, optional=_values), changes=st.fixed_dictionaries({}, optional=_values))
def test_replace_equals_keyword_construction(base: dict[str, Any], changes: dict[str, Any]) -> None:
    """Any base video and any set of changed fields: the Video built with all of them, still immutable,
    the original untouched."""
    video = Video("vid", **base)
    before = Video("vid", **base)
    got = replace(video, **changes)
    assert got == Video("vid", **{**base, **changes})
    assert video == before
    with pytest.raises(AttributeError):
        got.status = Status.FAILED  # type: ignore[misc]


def test_replace_rejects_unknown_fields() -> None:
    """A misspelt field is an error, as with dataclasses.replace."""
    with pytest.raises(TypeError):
        replace(Video("vid"), statsu=Status.FAILED)


# -- snapshot rows: the fast loader builds the same Videos as the keyword constructor ------------------


def _reference_from_doc(doc: dict[str, Any]) -> dict[str, Video]:
    """The loader as it was before the fast path: Video(**kwargs) per row."""
    from nkod.snapshot import _VIDEO_FIELDS

    videos: dict[str, Video] = {}
    for row in doc["videos"]:
        kwargs: dict[str, Any] = {name: row[short] for short, name in _VIDEO_FIELDS if short in row}
        if "status" in kwargs:
            kwargs["status"] = Status(kwargs["status"])
        if "counts" in kwargs:
            kwargs["counts"] = MappingProxyType(kwargs["counts"])
        videos[row["id"]] = Video(video_id=row["id"], **kwargs)
    return videos


@given(events=strategies.events)
def test_snapshot_round_trip_equals_keyword_construction(events: list[dict[str, Any]]) -> None:
    """Any folded state: to_doc then from_doc gives the same state, and the same Videos as Video(**kwargs)."""
    state = fold(events)
    doc = orjson.loads(orjson.dumps(snapshot.state_to_doc(state)))
    back = snapshot.state_from_doc(doc)
    assert back == state
    assert dict(back.videos) == _reference_from_doc(doc)


@pytest.mark.parametrize(
    "rows",
    [
        [["id", "x"]],
        ["x"],
        [{"id": "a", "s": "bogus"}],
        [{"id": "a", "c": [1]}],
        [{"s": "pending"}],
        [{"id": "a", "s": []}],
    ],
)
def test_malformed_snapshot_rows_are_rejected_as_damage(tmp_path: Path, rows: list[Any]) -> None:
    """Rows that are not objects, unknown statuses, bad counts, no id: the snapshot is refused, never a crash."""
    p = Projector()
    p.apply_all(strategies.stamp([{"type": "log_created", "log_id": "x"}]))
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"".join(codec.encode(e) for e in strategies.stamp([{"type": "log_created", "log_id": "x"}])))
    p.offset = log.stat().st_size
    doc = snapshot.state_to_doc(p)
    doc["videos"] = rows
    body = orjson.dumps({"v": snapshot.SNAPSHOT_VERSION, "state": doc})
    (tmp_path / "snapshot.json").write_bytes(b'{"crc":"%08x","doc":%s}' % (zlib.crc32(body), body))
    loaded = snapshot.load(tmp_path / "snapshot.json", log)
    assert loaded.state is None and "damaged" in (loaded.problem or "")
