"""`nkoctl plan` and loading a million videos (issue 13, row 7): each shortcut gives exactly what the slow,
obvious way gives."""

from __future__ import annotations

import math
import os
import signal
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkod import decide, manifest, snapshot
from nkod.ctl import queue
from nkod.decide import PlanRow
from nkod.state import Projector, State, Status, Video, fold, format_ts, parse_ts
from tests.helpers import DataDir, wait_for
from tests.strategies import events, steering_events

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _body(state: State) -> snapshot._Body:
    doc, rest = snapshot._parse(snapshot.encode(state))
    assert rest is not None
    return snapshot._body(doc, rest)


@given(st.one_of(events, steering_events))
def test_snapshot_rows_read_a_chunk_at_a_time_equal_the_parsed_ones(
    log: list[dict[str, Any]],
) -> None:
    """Videos read from a snapshot's rows (parsed a chunk at a time) equal the rows parsed one by one."""
    state = fold(log)
    body = _body(state)
    parsed = {snapshot._row_id(row): snapshot._video_from_row(row) for row in body.all_rows()}
    assert body.videos() == parsed == dict(state.videos)


def test_a_row_that_looks_plain_for_an_id_json_escapes_is_parsed_and_refused() -> None:
    """An id with a quote never takes the plain-row path: its row is parsed and checked against the id."""
    vid = 'x","s":"failed'
    rows = orjson.dumps([vid]) + b'\n{"id":"x","s":"failed"}\n'
    with pytest.raises(ValueError, match="video row 0"):
        snapshot._Body(rows, f"{zlib.crc32(rows):08x}").videos()


def _indexes_the_obvious_way(s: State) -> tuple[list[str], list[str], dict[Status, int], list[str]]:
    redo = dict.fromkeys(v for v in s.redo_order if v in s.videos and s.videos[v].status is Status.INTERRUPTED)
    queue_ = dict.fromkeys(v for v in s.queue_order if v in s.videos and s.videos[v].status is Status.PENDING)
    counts = dict.fromkeys(Status, 0)
    for vid, v in s.videos.items():
        counts[v.status] += 1
        if v.status is Status.INTERRUPTED:
            redo.setdefault(vid, None)
        elif v.status is Status.PENDING:
            queue_.setdefault(vid, None)
    boosted = sorted((v for v in s.videos.values() if v.priority_boost), key=lambda v: v.priority_boost)
    return list(redo), list(queue_), counts, [v.video_id for v in boosted]


@given(st.one_of(events, steering_events), st.data())
def test_projector_indexes_built_from_a_state_equal_a_scan_of_its_videos(
    log: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Projector(state)'s redo, queue, counts and boosted, with the state's orders cut, reordered or naming
    unknown ids, equal the obvious per-video scan."""
    s = fold(log)
    ids = [*s.videos, "unknown"]
    order = st.lists(st.sampled_from(ids), max_size=len(ids) + 2)
    s = s._replace(redo_order=tuple(data.draw(order)), queue_order=tuple(data.draw(order)))
    p = Projector(s)
    assert (list(p.redo), list(p.queue), p.status_counts, list(p.boosted)) == _indexes_the_obvious_way(s)


_text = st.text(max_size=12)
_rows = st.lists(
    st.builds(
        PlanRow,
        st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), _text),
        st.sampled_from(["run", "wait", "skip"]),
        st.one_of(st.sampled_from(["pending", "completed"]), _text),
        st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 5)),
    ),
    max_size=12,
)


@given(_rows)
def test_plan_json_is_the_text_of_orjsons_indented_document(rows: list[PlanRow]) -> None:
    """plan --json, written a chunk of rows at a time, is byte for byte orjson's indent-2 list of dicts."""
    doc = [
        {"video_id": r.video_id, "action": r.action, "reason": r.reason}
        | ({} if r.wait_seconds is None else {"wait_seconds": r.wait_seconds})
        for r in rows
    ]
    chunk, queue._PLAN_CHUNK = queue._PLAN_CHUNK, 3  # chunk boundaries inside the example
    try:
        assert "".join(queue.plan_json(rows)) == orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
    finally:
        queue._PLAN_CHUNK = chunk


def _problem_the_obvious_way(obj: Any) -> str | tuple[str, int]:
    """What the manifest's checks (one at a time) say of one parsed line: a problem, or (id, priority)."""
    if not isinstance(obj, dict):
        return "not an object"
    if "video_id" not in obj:
        return "no video_id"
    why = manifest.id_problem(obj["video_id"])
    if why:
        return why
    path, url = obj.get("path"), obj.get("url")
    if path is None and url is None:
        return "needs 'path' or 'url'"
    if path is not None and (not isinstance(path, str) or not path):
        return "'path' must be a non-empty string"
    if url is not None and (not isinstance(url, str) or not url.lower().startswith(("http://", "https://"))):
        return "'url' must be an http(s) URL"
    priority = obj.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        return "'priority' must be an integer"
    return obj["video_id"], priority


_MISSING = object()
_field = {
    "video_id": [_MISSING, "ok-1", "", "x" * 65, "a b", 7, None],
    "path": [_MISSING, "a.mp4", "", 5, None],
    "url": [_MISSING, _MISSING, "https://x.invalid/v", "ftp://x", None, 3],
    "priority": [_MISSING, 2, -1, True, 1.5, "3", None],
}
# Each field is most often the common line's value, so that lines wrong in one field alone are frequent.
_lines = st.fixed_dictionaries({k: st.one_of(st.just(v[1]), st.sampled_from(v)) for k, v in _field.items()}).map(
    lambda d: {k: v for k, v in d.items() if v is not _MISSING}
)


@given(st.lists(_lines, max_size=8))
def test_the_manifests_quick_check_of_a_common_line_agrees_with_the_full_checks(lines: list[Mapping[str, Any]]) -> None:
    """Each line is an entry (with its priority) or a problem exactly when the checks one at a time say so."""
    m = manifest.parse(b"".join(orjson.dumps(obj) + b"\n" for obj in lines), Path("/m/videos.jsonl"))
    problems = {p.line: p.error for p in m.problems}
    seen: set[str] = set()
    for number, obj in enumerate(lines, 1):
        expected = _problem_the_obvious_way(obj)
        if isinstance(expected, tuple) and expected[0] in seen:
            assert "duplicate video_id" in problems[number]
        elif isinstance(expected, tuple):
            seen.add(expected[0])
            assert m.lines[expected[0]] == number and number not in problems
            assert m.entries.priorities.get(expected[0], 0) == expected[1]
        else:
            assert number in problems


def test_plan_of_plain_and_steered_videos_is_unchanged_by_the_shortcuts() -> None:
    """decide.plan over a state read back from its snapshot gives the rows of the state it was written from."""
    videos = {f"v{i}": Video(f"v{i}") for i in range(5)}
    videos["v1"] = Video("v1", failures=2, not_before="2026-06-01T00:00:10.000000Z", retry_delay=10.0, error="e")
    videos["v2"] = Video("v2", status=Status.COMPLETED)
    videos["v3"] = Video("v3", priority_boost=7, redo=True)
    state = State(videos=videos, queue_order=tuple(videos))
    back = snapshot.state_from_doc(snapshot.state_to_doc(state), _body(state).videos())
    entries = {vid: {"path": "x"} for vid in videos} | {"v4": {"path": "x", "priority": 3}}
    assert decide.plan(back, entries, NOW) == decide.plan(state, entries, NOW)
    assert [r.action for r in decide.plan(back, entries, NOW)] == ["run", "run", "run", "wait", "skip"]


def test_videos_added_makes_one_video_object_per_new_video() -> None:
    """A million-line manifest's videos_added: no draft nor placeholder per new video, whose freed blocks
    stayed in the daemon's memory (peak traced memory per video ~ one Video and its index entries)."""
    import tracemalloc

    ids = [f"m{i:07d}" for i in range(50_000)]
    p = Projector()
    p.apply({"v": 1, "seq": 1, "ts": "2026-06-01T00:00:00.000000Z", "type": "log_created", "log_id": "x"})
    tracemalloc.start()
    try:
        p.apply({"v": 1, "seq": 2, "ts": "2026-06-01T00:00:01.000000Z", "type": "videos_added", "video_ids": ids})
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(p.videos) == len(p.queue) == p.status_counts[Status.PENDING] == len(ids)
    assert peak / len(ids) < 400, f"{peak / len(ids):.0f} bytes per added video at the peak"


def test_projector_queue_keys_are_the_videos_own_id_strings() -> None:
    """A state's queue order holds its own copies of the ids (a snapshot parses them apart): the projector
    keeps the videos' strings, not a second million of them."""
    videos = {vid: Video(vid) for vid in (f"v{i}" for i in range(5))}
    copies = tuple("".join(["v", str(i)]) for i in range(5))  # equal strings, other objects
    p = Projector(State(videos=videos, queue_order=copies))
    assert list(p.queue) == list(videos)
    assert all(key is p.videos[key].video_id for key in p.queue)


@given(steering_events, st.data())
def test_run_order_without_priorities_equals_the_loop_over_the_indexes(
    log: list[dict[str, Any]], data: st.DataObject
) -> None:
    """With no entry priorities, run_order (its queue part filtered in C) is redo, then boosted, then the
    queue, each without skipped videos or ids that have no entry."""
    from nkod import steering

    p = Projector(fold(log))
    available = set(data.draw(st.lists(st.sampled_from([*p.videos, "x"]))) if p.videos else [])
    v = p.videos
    expected = [vid for vid in p.redo if vid in available and not v[vid].skipped]
    boosted = [vid for vid in p.boosted if vid in v and v[vid].status is Status.PENDING and not v[vid].skipped]
    boosted = [vid for vid in boosted if vid in available]
    expected += boosted + [vid for vid in p.queue if vid in available and vid not in boosted and not v[vid].skipped]
    assert list(steering.run_order(p, available, {})) == expected


# -- plan's shortcuts against plan as it was written before them -----------------------------------------


def _plan_before(state: Projector, entries: Mapping[str, Any], now: datetime) -> list[PlanRow]:
    """decide.plan as it was before its shortcuts for a manifest whose ids are the log's videos (every
    id looked up in the entries, every video looked up in the run order): the reference they must equal."""
    from itertools import compress, filterfalse, repeat
    from operator import and_, eq, not_

    from nkod import steering

    priorities = steering.entry_priorities(entries)
    row = tuple.__new__
    videos = state.videos
    waits: list[PlanRow] = []
    rest: list[PlanRow] = []
    in_order = list(steering.run_order_videos(state, entries.keys(), priorities))
    order = [v.video_id for v in in_order]
    plain: Any = map(eq, map(decide._PLAN_FIELDS, in_order), repeat(decide._PLAIN_PLAN))
    if priorities:
        plain = map(and_, plain, map(not_, map(priorities.__contains__, order)))
    others = list(compress(range(len(order)), map(not_, plain)))
    runs = [PlanRow(vid, "run", "pending") for vid in order]
    waiting: list[int] = []
    for i in others:
        vid, v = order[i], in_order[i]
        wait = decide.retry_wait(v, now, math.inf) if v.not_before is not None else 0
        if wait > 0 and v.status is Status.PENDING:
            left = (parse_ts(v.not_before or "") - now).total_seconds()
            until = v.not_before if left <= wait else format_ts(now + timedelta(seconds=wait))
            why = f"backoff after attempt {v.attempt} until {until}: {v.error}"
            waits.append(row(PlanRow, (vid, "wait", why, round(wait, 3))))
            waiting.append(i)
            continue
        if v.status is Status.INTERRUPTED:
            reason = "interrupted: redone first"
        else:
            reason = "pending" if v.failures == 0 else f"retry after {v.failures} failure(s)"
            if v.priority_boost:
                reason += ", prioritized (nkoctl prioritize)"
            elif priorities and priorities.get(vid):
                reason += f", priority {priorities[vid]}"
        if v.redo:
            reason += "; redo: the previous output is archived when this one is committed"
        runs[i] = PlanRow(vid, "run", reason)
    runs = [r for i, r in enumerate(runs) if i not in set(waiting)]
    placed = set(order)
    for vid in filterfalse(placed.__contains__, videos):
        v = videos[vid]
        if v.status in (Status.PENDING, Status.INTERRUPTED):
            if v.skipped:
                why = f"skipped: {v.skip_reason}" if v.skip_reason else "skipped"
                rest.append(PlanRow(vid, "skip", f"{why} (nkoctl unskip {vid})"))
            else:
                rest.append(PlanRow(vid, "skip", "removed: not in the manifest any more (runs if its line returns)"))
        elif v.status is Status.COMPLETED:
            reason = "completed" + (" (imported)" if v.imported else "")
            if steering.changed_since_completed(v, entries):
                reason += f"; changed since completed: nkoctl redo {vid}"
            rest.append(PlanRow(vid, "skip", reason))
        elif v.status is Status.FAILED:
            rest.append(PlanRow(vid, "skip", f"failed: {v.error} (nkoctl retry {vid})"))
        elif v.status is Status.RUNNING:
            rest.append(PlanRow(vid, "skip", "running now"))
    return runs + waits + rest


@given(steering_events, st.data())
def test_plan_with_its_shortcuts_equals_plan_without_them(log: list[dict[str, Any]], data: st.DataObject) -> None:
    """decide.plan's rows, and with `every_video_available` (told when each video has an entry), equal the
    rows of plan without shortcuts, over varied states (failed, skipped, prioritized, redone, backoff) and
    entries (some videos' only, in another order, unknown ids, entry priorities), the queue in the videos'
    order or another."""
    s = fold(log)
    p = Projector(s._replace(queue_order=tuple(data.draw(st.permutations(s.queue_order)))))
    every = st.just(list(p.videos))  # (the case plan's shortcuts are for: the manifest is the log's videos)
    ids = data.draw(st.one_of(every, st.lists(st.sampled_from([*p.videos, "new1", "new2"]), unique=True)))
    priority = st.sampled_from([0, 0, 1, 2, -1]) if data.draw(st.booleans()) else st.just(0)
    entries = {vid: {"path": "x", "priority": data.draw(priority)} for vid in ids}
    now = data.draw(st.sampled_from([NOW, datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)]))
    expected = _plan_before(p, entries, now)
    assert decide.plan(p, entries, now) == expected
    if all(vid in entries for vid in p.videos):
        assert decide.plan(p, entries, now, every_video_available=True) == expected


def _plan_text_before(d: DataDir) -> str:
    """`plan --json`'s text for `d` as plan computed it before its shortcuts (the manifest's new ids
    looked up one by one, the rows by `_plan_before`)."""
    from itertools import filterfalse

    from nkod import steering
    from nkod.ctl.cli import Ctl

    p = snapshot.replay(d.log, d.root / "snapshot.json").projector
    entries = manifest.load(d.root / "videos.jsonl").entries
    new = list(filterfalse(p.videos.__contains__, entries))
    if new:
        p = steering.preview(p, [{"type": "videos_added", "video_ids": new}], p.last_ts or "1970-01-01T00:00:00Z")
    shown, _queued = Ctl(d.root).with_queued_requests(p, entries, None)
    rows = _plan_before(shown, entries, datetime.now(UTC))
    fresh = set(new)
    rows = [r._replace(reason=r.reason + " (new in the manifest)") if r.video_id in fresh else r for r in rows]
    return "".join(queue.plan_json(rows))


def test_nkoctl_plan_of_a_manifest_the_daemon_added_whole_is_the_plan_without_shortcuts(tmp_path: Path) -> None:
    """`nkoctl plan --json` on a manifest whose ids are the log's videos in order (plan then skips the
    lookup of each id) prints what plan without shortcuts prints: with the daemon stopped mid-run (an
    interrupted video, the others pending; with an entry priority and without), with a request waiting, with a
    line added."""
    d = DataDir(tmp_path / "data", stop_grace=0.5)
    n = 20_000  # a manifest over 1 MiB: read in a child process (manifest.LoadAside)
    priorities = {5: 2, 7: 1, 9: -1}  # v5 starts first and is interrupted; v7 then runs first, v9 last
    d.manifest(
        [
            {"video_id": f"v{i}", "fail": "hang"} | ({"priority": priorities[i]} if i in priorities else {})
            for i in range(n)
        ]
    )
    assert (d.root / "videos.jsonl").stat().st_size > 1 << 20
    proc = d.start()
    try:
        wait_for(lambda: "video_started" in d.types(), what="a video started")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    for step in ("stopped", "no priority", "request", "added"):
        if step == "no priority":  # the same ids in the same order: the run order's queue taken whole
            d.manifest([{"video_id": f"v{i}", "fail": "hang"} for i in range(n)])
        elif step == "request":
            assert d.ctl("skip", "v7").returncode == 0  # queued: the daemon is not running
        elif step == "added":
            d.manifest([{"video_id": "w1"}], append=True)
        r = d.ctl("plan", "--json")
        assert r.returncode == 0, r.stderr
        assert r.stdout == _plan_text_before(d), step


# -- the manifest read in a child process (nkoctl plan) -------------------------------------------------


def _manifest_facts(m: manifest.Manifest) -> tuple[Any, ...]:
    """Everything a Manifest says: its entries (parsed) in order with their line numbers, the priorities in
    order, the problems, and whether the file was there and readable."""
    entries = [(vid, m.entries[vid], m.entries.line_of(vid)) for vid in m.entries]
    return entries, list(m.entries.priorities.items()), m.problems, m.readable, m.missing, m.path, len(m.entries)


_bad_lines = st.sampled_from(
    [b"", b"# a comment", b"{", b"\xff\xfe", b"[1]", b'  {"video_id":"ok-1","path":"a.mp4"}\r', b'{"video_id":"q"}']
)


@given(st.lists(st.one_of(_lines.map(orjson.dumps), _bad_lines), max_size=10), st.booleans(), st.booleans())
def test_a_manifest_read_in_a_child_process_is_the_manifest_load_reads(
    lines: list[bytes], bom: bool, known_ids: bool
) -> None:
    """LoadAside(path).result() gives what load(path) gives: the same entries, line numbers, priorities and
    problems (bad lines, duplicates, a byte order mark, a last line without its newline), whether or not it
    is handed the ids it may share."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "videos.jsonl"
        path.write_bytes((manifest._BOM if bom else b"") + b"\n".join(lines))
        expected = manifest.load(path)
        known = dict.fromkeys(expected.entries) if known_ids else {"other": None}
        got = manifest.LoadAside(path, min_bytes=0).result(known)
        assert _manifest_facts(got) == _manifest_facts(expected)


def test_a_missing_or_unreadable_manifest_read_aside_is_the_problem_load_reports(tmp_path: Path) -> None:
    """No file, or a FIFO: the same problem (and flags) as load, and no wait on the FIFO."""
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    for path in (tmp_path / "none.jsonl", fifo):
        assert _manifest_facts(manifest.LoadAside(path, min_bytes=0).result()) == _manifest_facts(manifest.load(path))


def test_a_manifest_whose_child_process_was_killed_is_loaded_in_process(tmp_path: Path) -> None:
    """The child killed before it wrote anything: result() still gives load's manifest (read here)."""
    path = tmp_path / "videos.jsonl"
    path.write_bytes(b"".join(b'{"video_id":"v%d","path":"a.mp4"}\n' % i for i in range(200_000)))
    read = manifest.LoadAside(path, min_bytes=0)
    children = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
    assert children, "no child process"
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    assert _manifest_facts(read.result()) == _manifest_facts(manifest.load(path))


def test_a_manifest_of_the_known_ids_in_order_shares_their_strings(tmp_path: Path) -> None:
    """When the manifest's ids are the caller's known ids in the same order, the entries hold those very
    strings (no second million of them; lookups of one in the other find the same object)."""
    path = tmp_path / "videos.jsonl"
    path.write_bytes(b"".join(b'{"video_id":"v%d","path":"a.mp4"}\n' % i for i in range(50)))
    known = {f"v{i}": None for i in range(50)}
    m = manifest.LoadAside(path, min_bytes=0).result(known)
    assert all(a is b for a, b in zip(m.entries, known, strict=True))
    assert m.entries["v3"] == {"video_id": "v3", "path": str(tmp_path / "a.mp4")}


@pytest.mark.parametrize("keep", [0, 10, 0.5, 0.9])
def test_a_cut_short_result_of_the_manifests_child_is_refused(tmp_path: Path, keep: float) -> None:
    """What the child wrote, cut short anywhere (a child killed while writing it): an error, never a
    Manifest with fewer entries (LoadAside.result then loads the manifest itself)."""
    path = tmp_path / "videos.jsonl"
    path.write_bytes(b"".join(b'{"video_id":"v%d","path":"a.mp4"}\n' % i for i in range(1000)) + b"bad\n")
    fd = os.memfd_create("test")
    try:
        assert manifest._write_loaded(fd, manifest.load(path)) == 0
        size = os.fstat(fd).st_size
        os.ftruncate(fd, int(keep * size) if isinstance(keep, float) else keep)
        with pytest.raises(ValueError):
            manifest._read_loaded(fd, path, None)
    finally:
        os.close(fd)
