"""Issue 13, `nkoctl status` at any size: the plain command's fast entry, and the running daemon's
``events.crc`` record, which lets status trust the log's head without reading it while nothing else wrote."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from nkod import codec, envelope, eventlog, litejson, snapshot, state, statusbox, statusfast, statusview, views
from nkod.ctl import _plain_status
from nkod.render import status_panel
from nkod.state import Projector
from tests.helpers import DataDir, binary, env, format3_row, kill9, wait_for
from tests.strategies import events

TIME_FIELDS = ("elapsed_seconds", "rate_per_hour", "eta_seconds")


def _doc(r: Any) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(r.stdout)
    for key in TIME_FIELDS:
        doc.pop(key, None)
    return doc


def _running_daemon(tmp_path: Path) -> tuple[DataDir, Any]:
    """A real daemon working on a video that hangs, after a first run stopped cleanly: its snapshot is
    behind the log's end and the log's stat no longer the one that snapshot recorded."""
    d = DataDir(tmp_path / "data", snapshot_every=1000)
    d.manifest([{"video_id": f"v{i}", "frames": 1} for i in range(3)])
    assert d.run().returncode == 0
    d.manifest([{"video_id": "hangs", "fail": "hang"}], append=True)
    proc = d.start()
    wait_for(lambda: "video_started" in d.types("hangs"), what="the hanging video to start")
    snap = orjson.loads((d.root / "snapshot.json").read_bytes().split(b"\n")[0][24:-1])
    assert snap["state"]["offset"] < d.log.stat().st_size and snap["log_stat"] != snapshot.log_stat(d.log)
    return d, proc


def _head_read(d: DataDir) -> bool:
    replay = snapshot.status_replay(d.log, d.root / "snapshot.json")
    assert replay is not None
    return replay.head_read


def test_status_trusts_the_head_the_running_or_killed_daemon_vouches_for_until_the_log_changes(
    tmp_path: Path,
) -> None:
    """While nkod runs, and after kill -9, status reads only the log's tail (the daemon's events.crc holds
    the log's stat and CRC); once the log's stat changes (same bytes, touched), the head is read again."""
    d, proc = _running_daemon(tmp_path)
    try:
        wait_for(lambda: not _head_read(d), what="status to trust the running daemon's record")
        running = d.ctl("status", "--json")
        assert running.returncode == 0, running.stderr
        assert len(orjson.loads(running.stdout)["running"]) == 1
    finally:
        kill9(proc)
    assert not _head_read(d)
    r = d.ctl("status", "--json")
    assert r.returncode == 0 and orjson.loads(r.stdout)["completed"] == 3, r.stderr
    os.utime(d.log)  # the same bytes, but no stat vouches for them now
    assert _head_read(d)
    assert _doc(d.ctl("status", "--json")) == _doc(r)


def test_status_sees_damage_to_the_head_after_a_crash_even_with_the_mtime_set_back(tmp_path: Path) -> None:
    """A byte of the head flipped after kill -9, the log's mtime put back: status exits 4 naming the line
    (ctime cannot be set back, so the daemon's record no longer vouches for the log)."""
    d, proc = _running_daemon(tmp_path)
    kill9(proc)
    first = d.log.read_bytes().split(b"\n")[0]
    st = d.log.stat()
    with open(d.log, "r+b") as f:
        f.seek(len(first) + 20)
        byte = f.read(1)
        f.seek(len(first) + 20)
        f.write(bytes([byte[0] ^ 0x04]))
    os.utime(d.log, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = d.ctl("status", "--json")
    assert r.returncode == 4, r.stderr
    assert "line 2" in orjson.loads(r.stdout)["log_damaged"]


def test_the_writer_withdraws_its_record_once_someone_else_wrote_the_log(tmp_path: Path) -> None:
    """events.crc holds the log's stat and CRC after the last append (written by record(), once per loop
    pass); when another process appended between two of the writer's appends, the writer empties it and
    vouches no more (what it did not write or check)."""
    log, vouch = tmp_path / "events.jsonl", tmp_path / "events.crc"
    w = eventlog.LogWriter(log, 1, vouch=vouch)
    w.append([{"type": "log_created", "log_id": "x", "nkod_version": "0"}])
    w.record()
    assert eventlog.read_vouch(vouch) == (snapshot.log_stat(log), eventlog.crc_of_range(log, 0, w.offset))
    with open(log, "ab") as f:
        f.write(b"not the writer's\n")
    w.append([{"type": "daemon_started", "pid": 1}])
    w.record()
    assert eventlog.read_vouch(vouch) is None
    w.append([{"type": "daemon_started", "pid": 2}])
    w.close()
    assert eventlog.read_vouch(vouch) is None


def test_plain_status_prints_what_the_full_parser_prints(tmp_path: Path) -> None:
    """`status --json` and the box (the fast entry) print what the full parser prints for the same data
    (`--interval` sends it there), and a missing data dir gets the same message and exit code."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": f"v{i}", "frames": 1} for i in range(3)] + [{"video_id": "bad", "fail": "permanent"}])
    assert d.run().returncode == 0
    fast, full = d.ctl("status", "--json"), d.ctl("status", "--json", "--interval", "2")
    assert fast.returncode == full.returncode == 0 and _doc(fast) == _doc(full) and len(_doc(fast)["failed"]) == 1
    box, full_box = d.ctl("status"), d.ctl("status", "--interval", "2")
    assert box.returncode == full_box.returncode == 0 and "bad" in box.stdout
    assert box.stdout.count("\n") == full_box.stdout.count("\n")
    missing = tmp_path / "nowhere"
    fast_err = DataDir(missing).ctl("status", "--json")
    full_err = DataDir(missing).ctl("status", "--json", "--interval", "2")
    assert (fast_err.returncode, fast_err.stderr) == (full_err.returncode, full_err.stderr)


@pytest.mark.parametrize(
    ("args", "plain"),
    [
        (["status"], (None, False)),
        (["status", "--json"], (None, True)),
        (["--data-dir", "A", "status", "--json"], ("A", True)),
        (["status", "--data-dir=B"], ("B", False)),
        (["--data-dir", "A", "status", "--data-dir", "B"], ("B", False)),  # after the command wins
        (["--json", "status"], None),  # not an option of nkoctl itself: the parser says so
        (["status", "--watch"], None),
        (["status", "--js"], None),  # an abbreviation: the parser decides
        (["status", "--data-dir"], None),
        (["status", "--data-dir", "-x"], None),
        (["status", "status"], None),
        (["status", "-h"], None),
        (["plan"], None),
        ([], None),
    ],
)
def test_only_a_plain_status_takes_the_fast_entry(args: list[str], plain: tuple[str | None, bool] | None) -> None:
    """The fast entry takes `status [--json] [--data-dir DIR]` as argparse reads it; anything else goes to
    the full parser."""
    assert _plain_status(args) == plain


def test_a_fifo_in_place_of_events_crc_neither_blocks_nkod_nor_misleads_status(tmp_path: Path) -> None:
    """events.crc as a FIFO: nkod runs without its record (no hang opening it) and status reads the head."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "v1", "frames": 1}])
    os.mkfifo(d.root / "events.crc")
    assert d.run(timeout=60).returncode == 0
    assert eventlog.read_vouch(d.root / "events.crc") is None
    r = d.ctl("status", "--json")
    assert r.returncode == 0 and orjson.loads(r.stdout)["completed"] == 1, r.stderr


def _array_rows() -> list[list[object]]:
    """Seven format-3 rows as the snapshot writes them: every other one only its id."""
    return [
        orjson.loads(format3_row(state.Video(f"v{i}", attempt=i, starts=i) if i % 2 else state.Video(f"v{i}")))
        for i in range(7)
    ]


@pytest.mark.parametrize("wanted", [[0], [6], [0, 6], [1, 2], [4, 5], [3], [2, 5], [1, 4, 5], []])
def test_rows_found_from_either_end_are_the_rows_at_those_places(wanted: list[int]) -> None:
    """status parses only the rows its tail names, splitting from the nearer end: each is the row at its
    place, as a full split gives it."""
    rows = _array_rows()
    body = orjson.dumps([r[0] for r in rows]) + b"\n" + b"".join(orjson.dumps(r) + b"\n" for r in rows)
    parsed = snapshot._Body(body, f"{zlib.crc32(body):08x}", arrays=True)
    assert parsed.rows_at(wanted) == [rows[i] for i in wanted]
    assert parsed.all_rows() == rows


# -- the fast path without orjson (nkod.statusfast, nkod.litejson) ----------------------------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)

# Lines orjson (codec.check, replay, fsck) reads or refuses in ways a stdlib parser would not, and ordinary ones.
CRAFTED = [
    b'{"a":1,"a":2}',
    b'{"a":1,"b":2,"a":3}',  # a duplicate key: the last value, at the first one's place
    b"18446744073709551615",
    b"18446744073709551616",  # beyond 64 bits: orjson reads a float
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"1e400",  # infinite as a double: orjson refuses
    b"-1e400",
    b"1e-400",
    b"-0",
    b"-0.0",
    b"NaN",
    b"[Infinity]",
    b"[-Infinity]",
    b'"\\ud800"',  # a lone surrogate: orjson refuses
    b'"\\udc00\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\xed\xa0\x80"',  # a surrogate in UTF-8 bytes
    b'"\xff"',
    b'"\x01"',  # a raw control character
    b'"\\u0000"',
    b'"\x7f"',
    b" {} ",
    b"{}\n",
    b"[1,]",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b'"\\x"',
    b"",
    b"[" * 1000 + b"]" * 1000,
    b"[" * 1030 + b"]" * 1030,
    b'{"a" : [1 , 2.5e3, true, false, null, "\\/\\"\\\\\\n\xc3\xa9"]}',
    b"123456789012345678901234567890.5",
    b"2.5e-324",
    b'{"v":1,"seq":7,"ts":"2026-11-26T15:00:00.000000Z","type":"video_started","video_id":"x"}',
]


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down, dict keys in the same order (1 is not 1.0)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if type(x) is dict:
            if list(x) != list(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif type(x) is list:
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif x != y:
            return False
    return True


def _has_float(value: Any) -> bool:
    stack = [value]
    while stack:
        x = stack.pop()
        if type(x) is float:
            return True
        if type(x) is dict:
            stack.extend(x.values())
        elif type(x) is list:
            stack.extend(x)
    return False


def _agrees_with_orjson(data: bytes) -> None:
    try:
        expected: tuple[str, Any] = ("read", orjson.loads(data))
    except orjson.JSONDecodeError:
        expected = ("refused", None)
    try:
        got: tuple[str, Any] = ("read", litejson.loads(data))
    except litejson.Unsure:
        got = ("unsure", None)
    # Never a value orjson refuses, never a value other than orjson's: unsure sends it to orjson.
    assert got[0] == "unsure" or (expected[0] == "read" and _same(got[1], expected[1])), (data, got, expected)
    try:
        both: tuple[str, Any] = ("read", litejson.loads_or_orjson(data))
    except ValueError:
        both = ("refused", None)
    assert both[0] == expected[0] and _same(both[1], expected[1]), (data, both, expected)


@pytest.mark.parametrize("data", CRAFTED)
def test_the_light_json_reader_never_disagrees_with_orjson_on_crafted_lines(data: bytes) -> None:
    """NaN/Infinity, lone surrogates, duplicate keys, big ints, bad UTF-8, whitespace, deep nesting: the
    light reader gives orjson's value or says it is not sure (then orjson decides); never its own answer."""
    _agrees_with_orjson(data)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_the_light_json_reader_reads_what_orjson_reads(value: Any) -> None:
    """Any JSON value as orjson writes it (and as the stdlib writes it, escapes and all): the light reader's
    value is orjson's, type for type."""
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:  # an int beyond 64 bits (orjson does not write it): the stdlib does
        encoded = b""
    for data in (encoded, json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")):
        if data:
            _agrees_with_orjson(data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789.eE+-"), min_size=1, max_size=25))
def test_the_light_json_reader_parses_numbers_as_orjson_does(text: str) -> None:
    """Number-like text (valid or not): the same value and type as orjson, or orjson decides."""
    _agrees_with_orjson(text.encode())


@settings(max_examples=200, deadline=None)
@given(_json_values)
def test_the_light_json_writer_writes_what_orjson_indent_2_writes(value: Any) -> None:
    """``status --json`` written without orjson: the same value as orjson's OPT_INDENT_2 text, and the same
    lines (the layout), whatever the value."""
    try:
        expected = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONEncodeError:
        return
    got = litejson.dumps_indent2(value)
    assert _same(orjson.loads(got), orjson.loads(expected))
    assert got.count("\n") == expected.count("\n")
    if not _has_float(value):  # floats aside (1e-07 where orjson writes 1e-7), the very same text
        assert got == expected


def _write_log(path: Path, log: list[dict[str, Any]]) -> int:
    with open(path, "wb") as f:
        for e in log:
            f.write(codec.encode(e))
    return path.stat().st_size


@settings(max_examples=150, deadline=None)
@given(events, st.data())
def test_the_fast_path_document_equals_a_full_replays(log: list[dict[str, Any]], data: st.DataObject) -> None:
    """For any log and any snapshot point, with the log's head vouched for as the daemon leaves it (the
    clean stop's log_stat when the snapshot is at the end, else a running daemon's events.crc), the document
    from the snapshot's first line, plus the tail folded into the rows it names, is the one a full replay
    gives (whatever the snapshot's videos per line)."""
    cut = data.draw(st.integers(1, len(log)), label="snapshot after event")
    chunk = data.draw(st.sampled_from([1, 2, snapshot.CHUNK_VIDEOS]), label="videos per snapshot line")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log_path = root / "events.jsonl"
        size = _write_log(log_path, log)
        p = Projector()
        p.apply_all(log[:cut])
        p.offset = len(b"".join(codec.encode(e) for e in log[:cut]))
        head = eventlog.crc_of_range(log_path, 0, p.offset)
        stat = snapshot.log_stat(log_path)
        assert stat is not None and head is not None
        if p.offset == size:
            snapshot.write(root / "snapshot.json", p, head_crc=head, log_stat=stat, chunk=chunk)
        else:
            snapshot.write(root / "snapshot.json", p, head_crc=head, chunk=chunk)
            (root / "events.crc").write_bytes(eventlog.vouch_record(stat, zlib.crc32(log_path.read_bytes())))
        state, summary = statusfast.read(str(root))
        got = statusview.status_doc(state, NOW, None, None, None, summary)
        full = snapshot.replay(log_path, root / "snapshot.json", use_snapshot=False)
        assert got == views.status_doc(full.projector, NOW, None)


def test_the_fast_path_reads_snapshot_rows_in_the_order_of_the_video_fields() -> None:
    """statusfast reads format-3 rows as the fields of Video in order (a copy: importing nkod.state after a
    clean stop, or nkod.snapshot at all, costs dataclasses and orjson)."""
    assert statusfast.VIDEO_FIELDS == list(state.Video._fields) == snapshot._FIELD_NAMES
    # The line envelope is not copied: status's fast path and codec check lines with nkod.envelope's code.
    assert envelope.FORMAT_VERSION == codec.FORMAT_VERSION and codec.LineError is envelope.LineError
    assert statusfast._decode.__globals__["envelope"] is envelope
    assert statusfast.SNAPSHOT_VERSION == snapshot.SNAPSHOT_VERSION
    assert statusfast.MAX_SNAPSHOT_BYTES == snapshot.MAX_SNAPSHOT_BYTES


def _stopped(tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": f"v{i}", "frames": 1} for i in range(3)] + [{"video_id": "bad", "fail": "permanent"}])
    assert d.run().returncode == 0
    return d


def _imports(d: DataDir, *args: str) -> tuple[Any, str]:
    """nkoctl's result and the modules it imported (python -X importtime)."""
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(d.root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(COLUMNS="200", PYTHONPROFILEIMPORTTIME="1"),
    )
    return r, r.stderr


def test_status_json_after_a_clean_stop_imports_neither_orjson_nor_the_state_classes(tmp_path: Path) -> None:
    """After a clean stop `nkoctl status --json` answers from the snapshot's first line without importing
    orjson, pathlib, dataclasses or nkod.state (~20 ms), and prints what the full path prints."""
    d = _stopped(tmp_path)
    r, imported = _imports(d, "status", "--json")
    assert r.returncode == 0, r.stderr
    for module in ("orjson", "pathlib", "dataclasses", "nkod.state", "nkod.snapshot", "typing"):
        assert f" {module}\n" not in imported, module
    full = d.ctl("status", "--json", "--interval", "2")
    assert _doc(r) == _doc(full) and _doc(r)["completed"] == 3 and len(_doc(r)["failed"]) == 1


def test_the_fast_path_leaves_what_it_does_not_vouch_for_to_the_full_path(tmp_path: Path) -> None:
    """A request waiting, a snapshot behind the log's end, a damaged snapshot, a summary orjson must read:
    status prints what the full path prints (and reads the snapshot with orjson then)."""
    d = _stopped(tmp_path)
    (d.root / "requests").mkdir(exist_ok=True)
    (d.root / "requests" / "0001-skip.json").write_text('{"type":"skip","video_ids":["bad"]}')
    r, imported = _imports(d, "status", "--json")
    assert r.returncode == 0 and " orjson\n" in imported and _doc(r)["pending_requests"], r.stderr
    assert _doc(r) == _doc(d.ctl("status", "--json", "--interval", "2"))
    (d.root / "requests" / "0001-skip.json").unlink()
    snap = d.root / "snapshot.json"
    first, rest = snap.read_bytes().split(b"\n", 1)
    body = first[24:-1].replace(b'"waiting":0', b'"waiting":18446744073709551616')  # orjson: a float
    assert body != first[24:-1]
    snap.write_bytes(b'{"crc":"%08x","doc":%s}\n%s' % (zlib.crc32(body), body, rest))
    os.utime(d.log)  # (the log's stat changed: the head is read, and still the same)
    r = d.ctl("status", "--json")
    assert r.returncode == 0 and _doc(r) == _doc(d.ctl("status", "--json", "--interval", "2")), r.stderr
    snap.write_bytes(b"not a snapshot\n")
    r = d.ctl("status", "--json")
    assert r.returncode == 0 and _doc(r)["completed"] == 3, r.stderr


def test_status_json_while_the_daemon_runs_folds_the_tail_without_orjson(tmp_path: Path) -> None:
    """While nkod runs (its snapshot behind the log's end, its events.crc vouching for the log), and after
    kill -9, status --json folds the tail into the rows it names without importing orjson or pathlib, and
    prints what the full path prints."""
    d, proc = _running_daemon(tmp_path)
    try:
        wait_for(lambda: not _head_read(d), what="status to trust the running daemon's record")
        r, imported = _imports(d, "status", "--json")
    finally:
        kill9(proc)
    assert r.returncode == 0, r.stderr
    assert _doc(r)["running"] == ["hangs"] and _doc(r)["daemon_running"]
    crashed, imported_after = _imports(d, "status", "--json")
    for module in ("orjson", "pathlib", "nkod.snapshot", "nkod.eventlog"):
        assert f" {module}\n" not in imported, module
        assert f" {module}\n" not in imported_after, module
    assert _doc(crashed) == _doc(d.ctl("status", "--json", "--interval", "2")) and _doc(crashed)["running"] == ["hangs"]


# -- the box without rich (nkod.statusbox) ---------------------------------------------------------------

_texts = st.text(alphabet=st.sampled_from("ab [/]:é—█\tN'Ko-_,.()0"), max_size=30)
_ids = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=40)


@st.composite
def _status_docs(draw: st.DrawFn) -> dict[str, Any]:
    """status --json documents with every row and section the box may show, text with markup, emoji codes,
    tabs, wide and non-ASCII characters in it, and lengths that do and do not fit the width."""
    running = draw(st.booleans())
    failed = draw(
        st.lists(
            st.fixed_dictionaries(
                {"id": _ids, "error": _texts, "attempts": st.integers(0, 3), "timestamp": st.just("")}
            ),
            max_size=3,
        )
    )
    done = draw(st.integers(0, 10**6))
    executor = st.fixed_dictionaries(
        {
            "name": st.just("dask"),
            "connected": st.booleans(),
            "workers": st.integers(0, 3),
            "slots": st.integers(0, 4),
            "scheduler": _texts,
            "error": _texts,
        }
    )
    activity = st.fixed_dictionaries(
        {
            "executor": executor,
            "running": st.dictionaries(
                _ids,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "stage": _texts,
                        "percent": st.floats(0, 100),
                        "done": st.integers(0, 9),
                        "total": st.integers(0, 9),
                        "where": st.fixed_dictionaries({}, optional={"worker": _texts, "host": _texts}),
                    },
                ),
                max_size=2,
            ),
        }
    )
    doc = {
        "total": done + draw(st.integers(0, 10**6)),
        "completed": done,
        "frames": draw(st.integers(0, 10**9)),
        "nko_detections": draw(st.integers(0, 10**6)),
        "nko_detection": draw(st.sampled_from(["on", "off", "partly off"])),
        "nko_detection_off_videos": draw(st.integers(0, 9)),
        "detector_calls": draw(st.integers(0, 10**4)),
        "detector_cost_usd": draw(st.floats(0, 10**4)),
        "prefilter_frames_sent": draw(st.integers(0, 9)),
        "prefilter_frames_skipped": draw(st.integers(0, 9)),
        "prefilter_saved_usd": draw(st.floats(0, 99)),
        "audio_segments": draw(st.integers(0, 10**6)),
        "failed": failed,
        "interrupted": draw(st.lists(_ids, max_size=2)),
        "waiting_backoff": draw(st.integers(0, 3)),
        "elapsed_seconds": draw(st.floats(0, 10**6)),
        "eta_seconds": draw(st.one_of(st.none(), st.just(0.0), st.floats(1, 10**6))),
        "rate_per_hour": draw(st.floats(0, 10**4)),
        "daemon_running": running,
        "daemon_pid": 4242 if running else None,
        "activity": draw(st.one_of(st.none(), activity)),
        "running": draw(st.lists(_ids, max_size=2)),
        "log_damaged": draw(st.one_of(st.none(), st.just("line 2: checksum mismatch"))),
        "manifest_problems": draw(
            st.lists(st.fixed_dictionaries({"path": _texts, "line": st.integers(1, 99), "error": _texts}), max_size=2)
        ),
        "paused": draw(st.booleans()),
        "skipped": draw(st.lists(st.fixed_dictionaries({"id": _ids, "reason": _texts}), max_size=2)),
        "removed": draw(st.lists(_ids, max_size=7)),
        "changed_since_completed": draw(st.lists(_ids, max_size=2)),
        "pending_requests": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "type": st.sampled_from(["skip", "retry"]),
                        "state": _texts,
                        "video_ids": st.lists(_ids, max_size=6),
                    }
                ),
                max_size=2,
            )
        ),
    }
    return doc


def _rich_box(doc: dict[str, Any], width: int, terminal: bool = False) -> str:
    console = Console(soft_wrap=True, highlight=False, file=io.StringIO(), width=width, force_terminal=terminal or None)
    console.print(status_panel(doc))
    text: str = console.file.getvalue()  # type: ignore[attr-defined]
    return text


@settings(max_examples=400, deadline=None)
@given(_status_docs(), st.integers(20, 220))
def test_the_plain_box_is_what_rich_prints_whenever_it_draws_it(doc: dict[str, Any], width: int) -> None:
    """Wherever statusbox.draw answers (no markup or emoji code, one cell per character, fits the width), its
    text is byte for byte what rich prints to a console of that width that is not a terminal."""
    drawn = statusbox.draw(doc, width)
    if drawn is not None:
        assert drawn == _rich_box(doc, width)


def test_the_plain_box_draws_the_common_documents() -> None:
    """A plain document (some failed, a daemon at work) is drawn without rich at a usual width: the shortcut
    is not one that never applies."""
    doc = {
        **dict.fromkeys(("frames", "nko_detections", "audio_segments", "detector_calls", "waiting_backoff"), 0),
        "total": 10,
        "completed": 7,
        "failed": [{"id": "bad", "error": "permanent: no such file", "attempts": 1, "timestamp": ""}],
        "interrupted": [],
        "elapsed_seconds": 100.0,
        "eta_seconds": 50.0,
        "rate_per_hour": 2.5,
        "daemon_running": True,
        "daemon_pid": 99,
        "running": ["v9"],
        "activity": {"running": {"v9": {"stage": "frames", "percent": 40}}},
    }
    drawn = statusbox.draw(doc, 80)
    assert drawn is not None and drawn == _rich_box(doc, 80) and "Processing v9 — frames 40%" in drawn


@pytest.mark.parametrize(
    ("environ", "isatty", "encoding"),
    [
        ({}, False, "utf-8"),
        ({}, True, "utf-8"),
        ({"FORCE_COLOR": "1"}, False, "utf-8"),
        ({"FORCE_COLOR": ""}, True, "utf-8"),
        ({"TTY_COMPATIBLE": "1"}, False, "utf-8"),
        ({"TTY_COMPATIBLE": "0"}, True, "utf-8"),
        ({"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"}, False, "utf-8"),
        ({"NO_COLOR": "1"}, True, "utf-8"),
        ({"NO_COLOR": "1"}, False, "utf-8"),
        ({"TERM": "dumb"}, True, "utf-8"),
        ({"TERM": "xterm-256color", "COLORTERM": "truecolor"}, True, "utf-8"),
        ({}, False, "ascii"),
        ({}, True, "ascii"),
        ({}, False, "UTF-8"),
    ],
)
def test_the_box_is_drawn_without_rich_only_where_rich_writes_what_it_imitates(
    environ: dict[str, str], isatty: bool, encoding: str
) -> None:
    """statusbox imitates rich's plain text where rich's Console is not a terminal, and its SGR codes where it
    is one with colours (not NO_COLOR, not a dumb terminal); always with the Unicode box (a UTF-8 stream)."""

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return isatty

        @property
        def encoding(self) -> str:  # type: ignore[override]
            return encoding

    console = Console(file=Stream(), _environ=environ)
    if not console.encoding.startswith("utf"):
        expected = None
    elif not console.is_terminal:
        expected = "plain"
    else:
        expected = "ansi" if console.color_system is not None and not console.no_color else None
    assert statusbox.output_mode(environ, isatty, encoding) == expected


@settings(max_examples=300, deadline=None)
@given(_status_docs(), st.integers(20, 220), st.sampled_from(["standard", "256", "truecolor"]))
def test_the_box_for_a_terminal_is_what_rich_prints_whenever_it_draws_it(
    doc: dict[str, Any], width: int, colors: str
) -> None:
    """At a terminal, wherever statusbox.draw answers, its text (SGR codes and all) is byte for byte what rich
    prints in any of its colour systems."""
    drawn = statusbox.draw(doc, width, ansi=True)
    if drawn is not None:
        console = Console(
            soft_wrap=True,
            highlight=False,
            file=io.StringIO(),
            width=width,
            force_terminal=True,
            color_system=colors,  # type: ignore[arg-type]
        )
        console.print(status_panel(doc))
        assert drawn == console.file.getvalue()  # type: ignore[attr-defined]


def test_the_box_piped_is_drawn_without_rich_as_rich_draws_it(tmp_path: Path) -> None:
    """`nkoctl status` into a pipe draws the box without importing rich, byte for byte as the full path (rich)
    draws it; a width too narrow for it goes to rich, which wraps it."""
    d = _stopped(tmp_path)
    r, imported = _imports(d, "status")
    assert r.returncode == 0, r.stderr
    assert " rich\n" not in imported and " rich.console\n" not in imported
    full = d.ctl("status", "--interval", "2")
    assert r.stdout == full.stdout and "Pipeline Status" in r.stdout and "Failed Videos:" in r.stdout
    narrow = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(d.root), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(COLUMNS="30", PYTHONPROFILEIMPORTTIME="1"),
    )
    assert narrow.returncode == 0 and " rich.console\n" in narrow.stderr


@pytest.mark.parametrize("wanted", [[0], [6], [0, 6], [1, 2], [4, 5], [3], [2, 5], [1, 4, 5], [], [9]])
def test_the_fast_path_finds_rows_from_either_end_as_the_snapshot_module_does(wanted: list[int]) -> None:
    """statusfast.snapshot_rows splits the snapshot's rows only from the nearer end: each row it returns is
    the one snapshot._Body gives for that place (an id the snapshot does not hold is left out)."""
    rows = _array_rows()
    body = orjson.dumps([r[0] for r in rows]) + b"\n" + b"".join(orjson.dumps(r) + b"\n" for r in rows)
    index, got = statusfast.snapshot_rows(body, f"{zlib.crc32(body):08x}", dict.fromkeys(f"v{i}" for i in wanted))
    places = [i for i in wanted if i < len(rows)]
    assert got == snapshot._Body(body, f"{zlib.crc32(body):08x}", arrays=True).rows_at(sorted(places))
    assert index == {r[0]: i for i, r in enumerate(rows)}
    with pytest.raises(statusfast.Fallback):
        statusfast.snapshot_rows(body[:-1], f"{zlib.crc32(body[:-1]):08x}", {"v0": None})


def _in_terminal(d: DataDir, *args: str) -> tuple[int, bytes, str]:
    """nkoctl run with its stdout a terminal (a pty): (exit code, what it wrote there, its stderr)."""
    import pty

    main, sub = pty.openpty()
    try:
        proc = subprocess.Popen(
            [binary("nkoctl"), "--data-dir", str(d.root), *args],
            stdout=sub,
            stderr=subprocess.PIPE,
            env=env(COLUMNS="120", PYTHONPROFILEIMPORTTIME="1", TERM="xterm-256color"),
        )
        os.close(sub)
        sub = -1
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, stderr = proc.communicate(timeout=60)
    finally:
        os.close(main)
        if sub >= 0:
            os.close(sub)
    return proc.returncode, b"".join(chunks), stderr.decode()


def test_the_box_at_a_terminal_is_drawn_without_rich_with_rich_colours(tmp_path: Path) -> None:
    """`nkoctl status` at a terminal draws the box with rich's colour codes, byte for byte as the full path
    (rich) draws it there, without importing rich."""
    d = _stopped(tmp_path)
    code, fast, imported = _in_terminal(d, "status")
    assert code == 0, imported
    assert " rich\n" not in imported and " rich.console\n" not in imported
    full_code, full, _ = _in_terminal(d, "status", "--interval", "2")
    assert full_code == 0 and fast == full and b"\x1b[34m" in fast and b"Failed Videos:" in fast
