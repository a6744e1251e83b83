"""PristineVideo: a video added and not yet touched, stored as a 1-tuple, reads as ``Video(video_id)``."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkod import snapshot
from nkod.state import PristineVideo, Projector, Status, Video, _draft, _freeze, fold, replace
from tests import strategies

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
other_videos = st.builds(
    Video,
    video_id=ids,
    status=st.sampled_from(list(Status)),
    starts=st.integers(0, 3),
    skipped=st.booleans(),
    error=st.none() | st.text(max_size=5),
)


@given(vid=ids)
def test_a_pristine_video_reads_as_the_video_of_its_id_alone(vid: str) -> None:
    """Fields, length, indexing, slicing, iteration, unpacking, membership, dict and repr all as Video(vid)."""
    p, v = PristineVideo(vid), Video(vid)
    assert [getattr(p, name) for name in Video._fields] == [getattr(v, name) for name in Video._fields]
    assert len(p) == len(v) == len(Video._fields)
    assert [p[i] for i in range(-len(v), len(v))] == [v[i] for i in range(-len(v), len(v))]
    assert p[1:] == v[1:] and p[:] == v[:] and p[::2] == v[::2]
    assert tuple(p) == tuple(v) and list(p) == list(v)
    first, second, *rest = p
    assert (first, second, rest) == (vid, Status.PENDING, list(v[2:]))
    assert (vid in p) and (Status.PENDING in p) and p.count(None) == v.count(None) and p.index(False) == v.index(False)
    assert p._asdict() == v._asdict() and repr(p) == repr(v) and str(p) == str(v)
    assert p + (1,) == v + (1,) and p * 2 == v * 2  # noqa: RUF005  (the operator is what is tested)
    assert (1,) + p == (1,) + v and 2 * p == 2 * v  # noqa: RUF005
    assert type(p)(*p) == v and type(type(p)(*p)) is Video and type(p)(vid) == p
    assert dataclasses.astuple(_Holder(p)) == dataclasses.astuple(_Holder(v))
    assert dataclasses.asdict(_Holder(p)) == dataclasses.asdict(_Holder(v))


@dataclasses.dataclass
class _Holder:
    video: Video


@given(vid=ids, other=other_videos, same_id=st.booleans(), kind=st.sampled_from(["video", "pristine", "tuple"]))
def test_a_pristine_video_compares_and_hashes_as_the_video_of_its_id_alone(
    vid: str, other: Any, same_id: bool, kind: str
) -> None:
    """Equal to Video(vid) from either side, and to another PristineVideo(vid); unequal and ordered against
    any other Video (of the same id too, where the later fields decide), another PristineVideo or a plain
    tuple exactly as Video(vid) is; the same hash, so either finds the other in a dict."""
    p, v = PristineVideo(vid), Video(vid)
    if same_id:
        other = other._replace(video_id=vid)
    if kind == "pristine":
        other = PristineVideo(other.video_id)
    elif kind == "tuple":
        other = tuple(other)
    assert p == v and v == p and p == PristineVideo(vid)
    assert not p != v and not v != p  # noqa: SIM202  (__ne__ is what is tested)
    by_video: dict[Video, int] = {v: 1}
    by_pristine: dict[Video, int] = {p: 1}
    assert hash(p) == hash(v) and by_video[p] == 1 and by_pristine[v] == 1
    assert (p == other) is (v == other) and (other == p) is (other == v) and (p != other) is (v != other)
    for compare in (
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
        lambda a, b: b < a,
        lambda a, b: sorted([b, a]),
    ):
        assert _outcome(compare, p, other) == _outcome(compare, v, other)


@pytest.mark.parametrize("other", [5, "abc", None, ["abc"], object()])
def test_a_pristine_video_compares_with_what_is_not_a_tuple_as_a_video_does(other: object) -> None:
    """Unequal to what is not a tuple, and unordered with it (its comparisons give NotImplemented)."""
    p, v = PristineVideo("abc"), Video("abc")
    assert (p == other) is (v == other) is False and (p != other) is (v != other) is True
    assert p.__eq__(other) is NotImplemented and p.__lt__(other) is NotImplemented  # type: ignore[operator]
    for compare in (lambda a, b: a < b, lambda a, b: a >= b, lambda a, b: b > a):
        assert _outcome(compare, p, other) is _outcome(compare, v, other) is TypeError


def _outcome(compare: Any, a: Any, b: Any) -> Any:
    """What `compare(a, b)` gives, or the type of what it raises (None and a string do not order)."""
    try:
        return compare(a, b)
    except TypeError as exc:
        return type(exc)


@given(vid=ids)
def test_a_changed_pristine_video_is_a_video_and_copies_stay_equal(vid: str) -> None:
    """_replace, replace, _make and a draft frozen give a plain Video; copy, deepcopy and pickle keep it equal."""
    p, v = PristineVideo(vid), Video(vid)
    changed = p._replace(status=Status.RUNNING, starts=1)
    assert type(changed) is Video and changed == v._replace(status=Status.RUNNING, starts=1)
    assert type(replace(p, failures=2)) is Video and replace(p, failures=2) == replace(v, failures=2)
    assert type(PristineVideo._make(tuple(v))) is Video
    assert type(_freeze(_draft(p))) is Video and _freeze(_draft(p)) == v
    pickled = [pickle.loads(pickle.dumps(p, protocol)) for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
    for copied in (copy.copy(p), copy.deepcopy(p), *pickled):
        assert copied == v and type(copied) is PristineVideo and tuple.__len__(copied) == 1


def test_a_pristine_video_is_a_quarter_of_the_size() -> None:
    """What it is for: a million-line manifest holds a million of them."""
    assert sys.getsizeof(PristineVideo("m0000001")) * 4 <= sys.getsizeof(Video("m0000001"))


def test_videos_added_makes_pristine_videos_and_the_next_event_a_video() -> None:
    """The fold's videos_added stores PristineVideo; the video's first start replaces it with a Video."""
    ts = "2026-11-28T00:00:00.000000Z"
    p = Projector()
    p.apply_all(
        [
            {"seq": 1, "ts": ts, "type": "log_created", "log_id": "x"},
            {"seq": 2, "ts": ts, "type": "videos_added", "video_ids": ["a", "b"]},
        ]
    )
    assert type(p.videos["a"]) is PristineVideo and p.videos["a"] == Video("a")
    assert tuple.__len__(p.videos["a"]) == 1  # (what it is for: the id alone is stored)
    p.apply({"seq": 3, "ts": ts, "type": "video_started", "video_id": "a", "attempt": 1})
    assert type(p.videos["a"]) is Video and p.videos["a"].status is Status.RUNNING
    assert type(p.videos["b"]) is PristineVideo


@given(events=strategies.events)
def test_a_state_with_pristine_videos_round_trips_through_a_snapshot(events: list[dict[str, Any]]) -> None:
    """Any folded state: its snapshot loads back equal, each untouched video again a PristineVideo, and the
    loaded state's snapshot is byte for byte the same (a PristineVideo writes the row of its id alone)."""
    state = fold(events)
    data = snapshot.encode(state)
    doc, rest = snapshot._parse(data)
    assert rest is not None
    loaded = snapshot._body(doc, rest).videos()
    assert loaded == dict(state.videos)
    assert all((type(v) is PristineVideo) == (v == Video(v.video_id)) for v in loaded.values())
    assert all(tuple.__len__(v) == 1 for v in loaded.values() if type(v) is PristineVideo)
    assert snapshot.encode(state._replace(videos=loaded)) == data


_BYPASSES = re.compile(r"tuple\.__\w+__\(|Video\.\w+\.__get__|%\s*(?:v|video)\b(?!\w)")


def test_nkod_never_reads_a_video_past_the_api_a_pristine_video_keeps() -> None:
    """Tuple's unbound methods, Video's field descriptors and `%` with a video as the argument tuple see the
    one item a PristineVideo stores: no module of nkod uses them (a grep, so a new one is caught here)."""
    root = Path(__file__).resolve().parent.parent / "nkod"
    found = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _BYPASSES.search(line) and "``" not in line and not line.lstrip().startswith("#")  # (not in docs)
    ]
    assert found == []
