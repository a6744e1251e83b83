"""Snapshot format 4 (issue 13, row 6): the videos' rows as column chunks, one line per chunk of videos, so
a start parses ~22 lists per chunk instead of one per video; older formats still load, a damaged chunk is
refused with its reason (and the log replayed in full), and status parses only the chunks its tail names."""

from __future__ import annotations

import tempfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkod import codec, eventlog, snapshot, statusfast, statusview, views
from nkod.state import PristineVideo, Projector, State, Video, fold
from tests import strategies
from tests.helpers import format3_row, format3_snapshot

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CHUNKS = st.sampled_from([1, 2, 3, snapshot.CHUNK_VIDEOS])


def _lines(data: bytes) -> list[Any]:
    return [orjson.loads(line) for line in data.split(b"\n")[2:] if line]


@given(events=strategies.events, chunk=CHUNKS)
def test_each_line_is_a_chunk_of_columns_and_the_snapshot_loads_as_the_same_state(
    events: list[dict[str, Any]], chunk: int
) -> None:
    """Any folded state, any chunk size: line j holds videos [j*chunk, (j+1)*chunk) as one column per field
    (null when every value is the field's default), and loading gives the state back, each untouched video
    a PristineVideo, each row (status's reader) the format-3 row of its video."""
    state = fold(events)
    data = snapshot.encode(state, chunk=chunk)
    doc, rest = snapshot._parse(data)
    assert doc["v"] == snapshot.SNAPSHOT_VERSION == 4 and doc["fields"] == list(Video._fields)
    assert doc["chunk"] == chunk
    videos = list(state.videos.values())
    lines = _lines(data)
    assert len(lines) == -(-len(videos) // chunk)
    for j, line in enumerate(lines):
        part = videos[j * chunk : (j + 1) * chunk]
        assert line[0] == [v.video_id for v in part]
        for f in range(1, len(Video._fields)):
            values = orjson.loads(orjson.dumps([v[f] for v in part], default=dict))
            default = Video("")[f]
            assert line[f] == (None if all(v[f] is default for v in part) else values)
    assert rest is not None
    body = snapshot._body(doc, rest)
    loaded = body.videos()
    assert loaded == dict(state.videos)
    assert all(type(v) is (PristineVideo if v == Video(v.video_id) else Video) for v in loaded.values())
    assert all(tuple(v) == tuple(state.videos[vid]) for vid, v in loaded.items())
    assert body.all_rows() == [orjson.loads(format3_row(v)) for v in videos]


@given(events=strategies.events, chunk=CHUNKS, data=st.data())
def test_a_format_4_snapshot_plus_the_tail_equals_the_full_replay(
    events: list[dict[str, Any]], chunk: int, data: st.DataObject
) -> None:
    """Any log cut anywhere: the state before the cut written as a format-4 snapshot and loaded, then the
    events after it folded in, is the state of the whole log."""
    cut = data.draw(st.integers(0, len(events)), label="snapshot after event")
    before = Projector(fold(events[:cut]))
    doc, rest = snapshot._parse(snapshot.encode(before, chunk=chunk))
    assert rest is not None
    restored = snapshot.state_from_doc(doc["state"], snapshot._body(doc, rest).videos())
    assert fold(events[cut:], restored) == fold(events)


@given(events=strategies.events)
def test_a_format_3_snapshot_still_loads_as_the_same_state(events: list[dict[str, Any]]) -> None:
    """Any folded state written as format 3 (one row per line) loads as before: the same videos, each
    untouched one a PristineVideo."""
    state = fold(events)
    doc, rest = snapshot._parse(format3_snapshot(state))
    assert doc["v"] == 3 and rest is not None
    loaded = snapshot._body(doc, rest).videos()
    assert loaded == dict(state.videos)
    assert all(type(v) is (PristineVideo if v == Video(v.video_id) else Video) for v in loaded.values())


def _state(n: int, started: tuple[int, ...] = (), ids: list[str] | None = None) -> State:
    """`n` videos added (ids v0, v1, ... unless given), those at `started` started (the others untouched)."""
    ids = [f"v{i}" for i in range(n)] if ids is None else ids
    drafts: list[dict[str, Any]] = [{"type": "log_created", "log_id": "L"}]
    drafts.append({"type": "videos_added", "video_ids": ids})
    drafts += [{"type": "video_started", "video_id": ids[i], "attempt": 1} for i in started]
    return fold(strategies.stamp(drafts))


@given(
    ids=st.lists(st.sampled_from(["a", "b", 'q"uote', "back\\slash", "ߒߞߏ", "tab\t"]), max_size=12).map(
        lambda names: [f"{name}{i}" for i, name in enumerate(names)] + [f"p{i}" for i in range(40)]
    ),
    started=st.sets(st.integers(0, 51), max_size=5),
    chunk=st.integers(1, 5),
    shuffle=st.randoms(),
)
def test_runs_of_untouched_chunks_among_others_load_in_order_as_pristine(
    ids: list[str], started: set[int], chunk: int, shuffle: Any
) -> None:
    """Any mix of lines of only ids (compared a run at a time) and other lines, ids JSON escapes among them:
    the videos load in the ids' order, each untouched one a PristineVideo."""
    shuffle.shuffle(ids)
    state = _state(len(ids), tuple(i for i in started if i < len(ids)), ids)
    doc, rest = snapshot._parse(snapshot.encode(state, chunk=chunk))
    assert rest is not None
    loaded = snapshot._body(doc, rest).videos()
    assert list(loaded) == ids and loaded == dict(state.videos)
    assert [type(v) for v in loaded.values()] == [
        PristineVideo if v == Video(v.video_id) else Video for v in state.videos.values()
    ]


@pytest.mark.parametrize("n", [0, 1, 127, 128, 129, 1000])
def test_a_big_manifest_s_untouched_videos_load_as_pristine_and_stay_as_small_as_in_format_3(n: int) -> None:
    """Chunks of untouched videos are only their ids (not bigger than format 3's rows of an id alone) and
    load as PristineVideos; a chunk with one started video among them too, the others still pristine."""
    untouched = _state(n)
    # (A full chunk is smaller than its format-3 rows; only the last, short, one may be up to its nulls bigger.)
    size, size3 = (len(data.partition(b"\n")[2]) for data in (snapshot.encode(untouched), format3_snapshot(untouched)))
    assert size <= size3 + len(snapshot._NULL_COLUMNS) + 2
    assert n < snapshot.CHUNK_VIDEOS or size < size3
    for state in (untouched, _state(n, started=(n // 2,) if n else ())):
        data = snapshot.encode(state)
        doc, rest = snapshot._parse(data)
        assert rest is not None
        loaded = snapshot._body(doc, rest).videos()
        assert loaded == dict(state.videos)
        assert [type(v) for v in loaded.values()] == [
            PristineVideo if v == Video(v.video_id) else Video for v in state.videos.values()
        ]


# -- refused: each damaged chunk names why, and the daemon's replay rebuilds from the log ------------------

_ROW_OF_B = [["a", "b"], ["completed", "pending"], *[None] * (len(Video._fields) - 2)]


def _chunk(**columns: Any) -> list[Any]:
    """A 2-video chunk of ids a, b (b pending, a completed) with some columns replaced."""
    line = [list(c) if isinstance(c, list) else c for c in _ROW_OF_B]
    for name, value in columns.items():
        line[Video._fields.index(name)] = value
    return line


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ([_chunk(video_id=["a", "x"])], "video chunk 0 is not of the ids"),  # ids other than the ids line's
        ([_chunk(video_id=None)], "video chunk 0 is not of the ids"),
        ([_chunk(status=["completed"])], "a column that is not 2 values"),  # a column of the wrong length
        ([_chunk(attempt=[1, 2, 3])], "a column that is not 2 values"),
        ([_chunk(counts={"frames": 1})], "a column that is not 2 values"),  # a column that is not a list
        ([_chunk(status=["completed", "bogus"])], "'bogus'"),  # an unknown status
        ([_chunk(counts=[{"frames": 1}, [1]])], "mapping"),  # counts that are not an object
        ([_chunk()[:-1]], "is not 22 columns"),  # a field count other than the header's fields
        ([[*_chunk(), None]], "is not 22 columns"),
        ([{"video_id": ["a", "b"]}], "is not 22 columns"),  # not an array of columns
        ([_chunk(), _chunk()], "more video rows than the ids"),  # a line too many
        ([], "video rows end before chunk 0"),  # a line too few
    ],
)
def test_a_damaged_chunk_is_refused_with_its_reason_and_the_log_replayed_instead(
    tmp_path: Path, lines: list[Any], reason: str
) -> None:
    """A format-4 body whose chunk is not the ids line's, has a column of the wrong length or type, an
    unknown status, counts that are not objects, or other than the header's number of fields, or whose
    lines are more or fewer than its chunks: the snapshot is refused, naming why, and replay rebuilds the
    state from the log, the same as without it."""
    log = tmp_path / "events.jsonl"
    w = eventlog.LogWriter(log, 1)
    w.append([{"type": "log_created", "log_id": "L"}, {"type": "videos_added", "video_ids": ["a", "b"]}])
    w.append([{"type": "video_started", "video_id": "a", "attempt": 1}])
    w.append([{"type": "video_completed", "video_id": "a", "attempt": 1, "counts": {"frames": 3}}])
    w.close()
    events, _ = eventlog.read_all(log)
    p = Projector(fold(events))
    p.offset = log.stat().st_size
    good = snapshot.encode(p.state(), head_crc=zlib.crc32(log.read_bytes()), chunk=2)
    first, _, body = good.partition(b"\n")
    ids_line = body.partition(b"\n")[0]
    bad = ids_line + b"\n" + b"".join(orjson.dumps(line) + b"\n" for line in lines)
    doc = orjson.loads(first)["doc"]
    doc["body_crc"] = f"{zlib.crc32(bad):08x}"
    head = orjson.dumps(doc)
    (tmp_path / "snapshot.json").write_bytes(b'{"crc":"%08x","doc":%s}\n%s' % (zlib.crc32(head), head, bad))
    r = snapshot.replay(log, tmp_path / "snapshot.json")
    assert not r.snapshot_used
    assert "is damaged" in (r.snapshot_problem or "") and reason in (r.snapshot_problem or ""), r.snapshot_problem
    assert r.projector.state() == snapshot.replay(log, tmp_path / "none.json").projector.state() == p.state()
    # The good snapshot (the same but for the chunk) is used.
    (tmp_path / "snapshot.json").write_bytes(good)
    assert snapshot.replay(log, tmp_path / "snapshot.json").snapshot_used


@pytest.mark.parametrize("chunk", [0, -1, "2", None, 2.0])
def test_a_snapshot_whose_chunk_size_is_not_a_positive_count_is_refused(tmp_path: Path, chunk: Any) -> None:
    """The header's videos per chunk must be a count of at least one: anything else is damage."""
    state = _state(3, started=(1,))
    first, _, body = snapshot.encode(state, chunk=2).partition(b"\n")
    doc = orjson.loads(first)["doc"]
    doc["chunk"] = chunk
    with pytest.raises(ValueError, match="videos per chunk"):
        snapshot._body(doc, body).videos()


# -- status: only the chunks that hold the rows its tail names ------------------------------------------


def _mixed(n: int) -> State:
    return _state(n, started=tuple(range(0, n, 5)))


@given(n=st.integers(0, 40), chunk=st.integers(1, 9), wanted=st.sets(st.integers(0, 45), max_size=6))
def test_rows_of_a_chunked_snapshot_at_any_places_are_their_format_3_rows(n: int, chunk: int, wanted: set[int]) -> None:
    """Both status readers (snapshot._Body.rows_at, statusfast.snapshot_rows) give, for any places, the
    format-3 rows of the videos there, found by chunk from the nearer end; ids not held are left out."""
    state = _mixed(n)
    videos = list(state.videos.values())
    doc, rest = snapshot._parse(snapshot.encode(state, chunk=chunk))
    assert rest is not None
    places = sorted(i for i in wanted if i < n)
    expected = [orjson.loads(format3_row(videos[i])) for i in places]
    assert snapshot._body(doc, rest).rows_at(places) == expected
    index, rows = statusfast.snapshot_rows(rest, doc["body_crc"], dict.fromkeys(f"v{i}" for i in wanted), chunk)
    assert rows == expected and index == {f"v{i}": i for i in range(n)}


def test_status_parses_only_the_chunks_of_the_rows_it_needs() -> None:
    """A chunk other than those holding the wanted rows may hold anything (it is not parsed); one that is
    wanted and damaged is refused by both readers."""
    state = _mixed(10)
    doc, rest = snapshot._parse(snapshot.encode(state, chunk=4))
    assert rest is not None
    lines = rest.split(b"\n")
    lines[2] = b"[" + b" " * (len(lines[2]) - 2) + b"]"  # chunk 1 (videos 4-7): no longer its chunk
    damaged = b"\n".join(lines)
    doc["body_crc"] = f"{zlib.crc32(damaged):08x}"
    body = snapshot._body(doc, damaged)
    assert body.rows_at([0, 9]) == [orjson.loads(format3_row(state.videos[v])) for v in ("v0", "v9")]
    assert statusfast.snapshot_rows(damaged, doc["body_crc"], {"v0": None, "v9": None}, 4)[1] == body.rows_at([0, 9])
    with pytest.raises(ValueError, match="video chunk 1 is not 22 columns"):
        body.rows_at([5])
    with pytest.raises(ValueError, match="video chunk 1"):
        statusfast.snapshot_rows(damaged, doc["body_crc"], {"v5": None}, 4)
    with pytest.raises(ValueError, match="video chunk 1"):
        body.videos()


@settings(max_examples=60, deadline=None)
@given(log=strategies.events, data=st.data())
def test_status_s_fast_path_still_reads_a_format_3_snapshot_as_the_full_replay(
    log: list[dict[str, Any]], data: st.DataObject
) -> None:
    """A format-3 snapshot (left by the nkod before an upgrade) at any point of any log, the head vouched
    for as a running daemon leaves it: status's fast path reads its rows one per line and gives the full
    replay's document."""
    cut = data.draw(st.integers(1, len(log)), label="snapshot after event")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log_path = root / "events.jsonl"
        log_path.write_bytes(b"".join(map(codec.encode, log)))
        p = Projector()
        p.apply_all(log[:cut])
        p.offset = len(b"".join(map(codec.encode, log[:cut])))
        stat = snapshot.log_stat(log_path)
        assert stat is not None
        head = f"{zlib.crc32(log_path.read_bytes()[: p.offset]):08x}"
        (root / "snapshot.json").write_bytes(format3_snapshot(p.state(), head_crc=head))
        (root / "events.crc").write_bytes(eventlog.vouch_record(stat, zlib.crc32(log_path.read_bytes())))
        state, summary = statusfast.read(str(root))
        got = statusview.status_doc(state, NOW, None, None, None, summary)
        full = snapshot.replay(log_path, root / "snapshot.json", use_snapshot=False)
        assert got == views.status_doc(full.projector, NOW, None)


@pytest.mark.parametrize("cut", ["a line too few", "a line too many"])
def test_both_status_readers_refuse_a_body_whose_line_count_is_not_its_chunks(cut: str) -> None:
    """Rows are found by line number, so a body with a line more or fewer than its chunks is refused
    (even where the lines wanted would parse)."""
    doc, rest = snapshot._parse(snapshot.encode(_mixed(10), chunk=4))
    assert rest is not None
    damaged = rest.rsplit(b"\n", 2)[0] + b"\n" if cut == "a line too few" else rest + rest.split(b"\n")[1] + b"\n"
    doc["body_crc"] = f"{zlib.crc32(damaged):08x}"
    with pytest.raises(ValueError, match="do not match the ids"):
        snapshot._body(doc, damaged).rows_at([0])
    with pytest.raises(statusfast.Fallback, match="do not match the ids"):
        statusfast.snapshot_rows(damaged, doc["body_crc"], {"v0": None}, 4)


def test_statusfast_s_defaults_are_the_video_fields_defaults() -> None:
    """A null column holds each field's default as JSON gives it back (statusfast's copy, without orjson)."""
    assert statusfast.VIDEO_DEFAULTS[1:] == orjson.loads(orjson.dumps(Video("")[:]))[1:]
    assert statusfast.ROWS_AS_ARRAYS == snapshot.ROWS_AS_ARRAYS
