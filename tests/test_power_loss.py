"""Power loss and bit rot, simulated on a log and a snapshot written by the real daemon.

A power cut can leave the log cut at any byte of its last records; a bad disk can change any byte. The
reader must never crash, must treat a cut tail as torn (repaired on start), must name damage in the
middle by line and byte offset, and ``nkoctl fsck --repair`` must fix it keeping a backup. A damaged or
mismatched snapshot is ignored and the state rebuilt from the log, never trusted.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from nkod import codec, eventlog, snapshot
from nkod.errors import LogCorruptError
from tests.helpers import DataDir
from tests.torture_helpers import (
    LONG,
    assert_finished_exactly_once,
    assert_fsck_ok,
    assert_snapshot_agrees,
    assert_status_works,
    torture_seed,
)

IDS = [f"p{i}" for i in range(8)]
LAST_RECORDS = 6 if LONG else 4
FLIP_ROUNDS = 3000 if LONG else 400


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """A data dir after two real runs: a whole log with every common event type, and its snapshot."""
    d = DataDir(tmp_path_factory.mktemp("golden") / "data", workers=1, backoff_initial=0.05, backoff_max=0.1)
    videos = [{"video_id": vid, "frames": i % 3 + 1} for i, vid in enumerate(IDS)]
    videos[2].update(fail="transient", fail_attempts=1)
    d.manifest(videos[:5])
    assert d.run().returncode == 0
    d.manifest(videos)
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert_finished_exactly_once(d, IDS)
    return d


def _copy(golden: DataDir, tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "data", workers=1, backoff_initial=0.05, backoff_max=0.1)
    shutil.rmtree(d.root)
    shutil.copytree(golden.root, d.root)
    return d


def _line_starts(data: bytes) -> list[int]:
    starts = [0]
    for i, b in enumerate(data):
        if b == 0x0A:
            starts.append(i + 1)
    return starts  # the last one is len(data) for a whole log


# -- the log: cut at every byte ---------------------------------------------------------------------


def test_log_cut_at_every_byte_of_last_records_reads_as_torn_tail(golden: DataDir, tmp_path: Path) -> None:
    """Cut the log at every byte offset of its last records: the good prefix replays; the rest is torn."""
    data = golden.log.read_bytes()
    starts = _line_starts(data)
    full, _ = eventlog.read_all(golden.log)
    log = tmp_path / "events.jsonl"
    first = starts[-1 - LAST_RECORDS]
    for cut in range(first, len(data) + 1):
        log.write_bytes(data[:cut])
        whole = sum(1 for s in starts[1:] if s <= cut)  # lines that end at or before the cut
        rep = snapshot.replay(log, tmp_path / "no-snapshot.json")
        assert rep.projector.seq == whole, cut
        if whole == len(full):
            assert [e["seq"] for e in full] == list(range(1, whole + 1))
        if cut in starts:
            assert rep.scan.torn is None, cut
        else:
            torn = rep.scan.torn
            assert torn is not None and torn.offset == starts[whole] and torn.line == whole + 1, (cut, torn)
            assert torn.offset + torn.length == cut


def test_log_cut_at_every_byte_still_matches_full_fold(golden: DataDir, tmp_path: Path) -> None:
    """The state read from a cut log is the fold of exactly the events before the cut."""
    from nkod.state import fold

    data = golden.log.read_bytes()
    starts = _line_starts(data)
    full, _ = eventlog.read_all(golden.log)
    log = tmp_path / "events.jsonl"
    for whole in range(len(full) - LAST_RECORDS, len(full) + 1):
        for cut in (starts[whole], starts[whole] + 1, (starts[whole] + starts[min(whole + 1, len(full))]) // 2):
            log.write_bytes(data[:cut])
            got = snapshot.replay(log, tmp_path / "none.json").projector.state()
            want = fold(full[:whole])
            assert (got.seq, dict(got.videos), dict(got.totals)) == (want.seq, dict(want.videos), dict(want.totals))


@pytest.mark.parametrize("where", ["middle_of_last_line", "one_byte_short", "only_newline_missing"])
def test_daemon_repairs_power_cut_in_last_completion_and_keeps_it(tmp_path: Path, where: str) -> None:
    """Power cut inside the last `video_completed`: nkod cuts the torn line, logs it, and recovers the completion."""
    d = DataDir(tmp_path / "data", workers=1)
    d.manifest([{"video_id": vid, "frames": 2} for vid in IDS[:3]])
    r = d.run(NKOD_FAILPOINT="after_append")  # dies right after the first completion is durable
    assert r.returncode == -9
    data = d.log.read_bytes()
    last = data[:-1].rfind(b"\n") + 1
    assert codec.decode(data[last:-1])["type"] == "video_completed"
    cut = {"middle_of_last_line": (last + len(data)) // 2, "one_byte_short": len(data) - 2,
           "only_newline_missing": len(data) - 1}[where]  # fmt: skip
    d.log.write_bytes(data[:cut])
    assert_status_works(d)
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    events = assert_finished_exactly_once(d, IDS[:3])
    repaired = [e for e in events if e["type"] == "log_repaired"]
    assert len(repaired) == 1 and repaired[0]["offset"] == last, repaired
    assert next(e.get("recovered") for e in events if e["type"] == "video_completed") is True
    kept = list(d.root.glob("events.jsonl.torn-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == data[last:cut]


# -- the log: random byte flips ---------------------------------------------------------------------


def _flip(data: bytes, rng: random.Random, count: int) -> tuple[bytes, list[int]]:
    buf = bytearray(data)
    where = sorted(rng.sample(range(len(buf)), count))
    for i in where:
        buf[i] = rng.choice([b for b in range(256) if b != buf[i]])
    return bytes(buf), where


def test_random_byte_flips_never_crash_replay_and_name_the_line(golden: DataDir, tmp_path: Path) -> None:
    """Flip random bytes anywhere: replay gives the same events, a torn tail, or an error naming the first bad line."""
    seed = torture_seed("log byte flips")
    rng = random.Random(seed)
    data = golden.log.read_bytes()
    starts = _line_starts(data)
    full, _ = eventlog.read_all(golden.log)
    log = tmp_path / "events.jsonl"
    outcomes = {"same": 0, "torn": 0, "named": 0}
    for _ in range(FLIP_ROUNDS):
        damaged, where = _flip(data, rng, rng.choice([1, 1, 1, 2, 3]))
        log.write_bytes(damaged)
        first_line = max(i for i, s in enumerate(starts) if s <= where[0]) + 1  # 1-based line of the first flip
        try:
            rep = snapshot.replay(log, tmp_path / "none.json")
        except LogCorruptError as exc:
            assert exc.line == first_line, (seed, where, exc.line, first_line, str(exc))
            assert exc.offset == starts[first_line - 1]
            assert f"line {first_line} (byte offset {exc.offset})" in str(exc) and str(log) in str(exc)
            outcomes["named"] += 1
            continue
        if rep.scan.torn is not None:
            # Only damage in the last line(s) with no good line after it may pass for a torn tail.
            assert rep.scan.torn.offset == starts[first_line - 1], (seed, where, rep.scan.torn)
            assert rep.projector.seq == first_line - 1
            outcomes["torn"] += 1
            continue
        # Undetected only if nothing that matters changed (e.g. the case of a hex digit of a crc).
        got, _ = eventlog.read_all(log)
        assert got == full, (seed, where)
        outcomes["same"] += 1
    print(f"byte flips: seed={seed} rounds={FLIP_ROUNDS} outcomes={outcomes}")
    assert outcomes["named"] > FLIP_ROUNDS // 2


def test_damage_in_the_middle_stops_nkod_and_fsck_repairs_with_backup(golden: DataDir, tmp_path: Path) -> None:
    """A damaged middle line: nkod exits 4 naming file/line/offset; fsck explains; --repair fixes, backup kept."""
    d = _copy(golden, tmp_path)
    (d.root / "snapshot.json").unlink()  # else the damaged line is under the snapshot: see the next test
    data = d.log.read_bytes()
    starts = _line_starts(data)
    line = len(starts) // 2  # 1-based line number of a line in the middle
    pos = starts[line - 1] + 12
    damaged = data[:pos] + (b"X" if data[pos : pos + 1] != b"X" else b"Y") + data[pos + 1 :]
    d.log.write_bytes(damaged)
    r = d.run()
    assert r.returncode == 4, r.stdout + r.stderr
    said = r.stdout + r.stderr
    assert str(d.log) in said and f"line {line}" in said and f"byte offset {starts[line - 1]}" in said, said
    assert d.log.read_bytes() == damaged, "nkod changed a damaged log"
    status = d.ctl("status", "--json")
    assert status.returncode == 4 and f"line {line}" in status.stderr
    fsck = d.ctl("fsck")
    assert fsck.returncode == 4 and f"line {line} (byte offset {starts[line - 1]})" in fsck.stderr, fsck.stderr
    fix = d.ctl("fsck", "--repair")
    assert fix.returncode == 0, fix.stdout + fix.stderr
    backups = list(d.root.glob("events.jsonl.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == damaged
    assert_fsck_ok(d)
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert_fsck_ok(d)
    assert assert_status_works(d)["completed"] == len(IDS)


def test_damage_under_the_snapshot_stops_nkod_and_fsck_repairs_it(golden: DataDir, tmp_path: Path) -> None:
    """Bit rot in lines a good snapshot already covers: nkod starts from the snapshot, its verifier finds the
    damage in the head and it exits 4 naming the line, as a full replay would; `nkoctl fsck` repairs it."""
    d = _copy(golden, tmp_path)
    data = d.log.read_bytes()
    starts = _line_starts(data)
    line = 3
    pos = starts[line - 1] + 12
    d.log.write_bytes(data[:pos] + (b"X" if data[pos : pos + 1] != b"X" else b"Y") + data[pos + 1 :])
    r = d.run()
    assert r.returncode == 4 and f"line {line} (byte offset {starts[line - 1]})" in r.stdout, r.stdout + r.stderr
    fsck = d.ctl("fsck")
    assert fsck.returncode == 4 and f"line {line} (byte offset {starts[line - 1]})" in fsck.stderr, fsck.stderr
    assert d.ctl("fsck", "--repair").returncode == 0
    assert_fsck_ok(d)
    assert d.run().returncode == 0
    assert assert_status_works(d)["completed"] == len(IDS)


def test_fsck_repair_of_random_damage_always_yields_a_replayable_log(golden: DataDir, tmp_path: Path) -> None:
    """Random multi-byte damage, then `fsck --repair`: the log replays and nkod runs on it to the end."""
    seed = torture_seed("fsck repair")
    rng = random.Random(seed)
    data = golden.log.read_bytes()
    for i in range(8 if LONG else 3):
        d = _copy(golden, tmp_path / f"r{i}")
        damaged, where = _flip(data, rng, rng.randint(1, 4))
        d.log.write_bytes(damaged)
        fix = d.ctl("fsck", "--repair")
        assert fix.returncode == 0, (seed, where, fix.stdout + fix.stderr)
        assert_fsck_ok(d)
        r = d.run()
        assert r.returncode == 0, (seed, where, r.stdout + r.stderr)
        assert_fsck_ok(d)
        doc = assert_status_works(d)
        assert doc["completed"] == len(IDS), (seed, where, doc)


# -- the snapshot -------------------------------------------------------------------------------------


def _replay_equals_full(d: DataDir) -> None:
    a = snapshot.replay(d.log, d.root / "snapshot.json").projector.state()
    b = snapshot.replay(d.log, d.root / "snapshot.json", use_snapshot=False).projector.state()
    assert a == b


def test_snapshot_cut_at_every_byte_is_ignored_and_state_rebuilt(golden: DataDir, tmp_path: Path) -> None:
    """A snapshot cut at any byte is never used; replay from the log gives the same state."""
    d = _copy(golden, tmp_path)
    snap = d.root / "snapshot.json"
    data = snap.read_bytes()
    assert snapshot.load(snap, d.log).state is not None
    want = snapshot.replay(d.log, snap, use_snapshot=False).projector.state()
    for cut in range(len(data)):
        snap.write_bytes(data[:cut])
        loaded = snapshot.load(snap, d.log)
        assert loaded.state is None and loaded.problem, cut
        assert snapshot.replay(d.log, snap).projector.state() == want


def test_snapshot_byte_flips_are_never_trusted(golden: DataDir, tmp_path: Path) -> None:
    """Flip random snapshot bytes: it is either rejected, or (a flip with no effect) gives the true state."""
    seed = torture_seed("snapshot byte flips")
    rng = random.Random(seed)
    d = _copy(golden, tmp_path)
    snap = d.root / "snapshot.json"
    data = snap.read_bytes()
    want = snapshot.replay(d.log, snap, use_snapshot=False).projector.state()
    rejected = 0
    for _ in range(FLIP_ROUNDS):
        damaged, where = _flip(data, rng, rng.choice([1, 2, 3]))
        snap.write_bytes(damaged)
        loaded = snapshot.load(snap, d.log)
        if loaded.state is None:
            rejected += 1
        rep = snapshot.replay(d.log, snap)
        assert rep.projector.state() == want, (seed, where)
    assert rejected > FLIP_ROUNDS * 0.9


def test_snapshot_ahead_of_log_or_from_another_log_is_ignored(golden: DataDir, tmp_path: Path) -> None:
    """A snapshot past the end of a (cut) log, or taken of a different log, is ignored; nkod rebuilds and runs."""
    d = _copy(golden, tmp_path)
    data = d.log.read_bytes()
    starts = _line_starts(data)
    d.log.write_bytes(data[: starts[len(starts) // 2]])  # the log lost its second half; the snapshot did not
    loaded = snapshot.load(d.root / "snapshot.json", d.log)
    assert loaded.state is None and "does not match" in (loaded.problem or "")
    _replay_equals_full(d)
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "snapshot_ignored" in r.stdout + r.stderr
    assert_fsck_ok(d)
    assert_snapshot_agrees(d)


def test_snapshot_of_a_different_log_with_same_seq_and_offset_is_not_trusted(tmp_path: Path) -> None:
    """Two logs alike in line lengths but not in content: one's snapshot must not be used for the other."""
    from nkod.state import Projector

    def make(path: Path, completed: str, ts: str) -> list[dict[str, object]]:
        drafts: list[dict[str, object]] = [
            {"type": "log_created", "log_id": "0" * 16 if completed == "aa" else "1" * 16},
            {"type": "videos_added", "video_ids": ["aa", "bb"]},
            {"type": "video_started", "video_id": completed, "attempt": 1},
            {"type": "video_completed", "video_id": completed, "attempt": 1, "counts": {"frames": 1}},
        ]
        events = [{"v": 1, "seq": i, "ts": ts, **dr} for i, dr in enumerate(drafts, start=1)]
        path.write_bytes(b"".join(codec.encode(e) for e in events))
        return events

    log_a, log_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    events_a = make(log_a, "aa", "2026-01-01T00:00:00.000000Z")
    make(log_b, "bb", "2026-01-02T00:00:00.000000Z")
    assert log_a.stat().st_size == log_b.stat().st_size
    p = Projector()
    p.apply_all(events_a)
    p.offset = log_a.stat().st_size
    snap = tmp_path / "snapshot.json"
    snapshot.write(snap, p)
    assert snapshot.load(snap, log_a).state is not None
    loaded = snapshot.load(snap, log_b)
    assert loaded.state is None, "the snapshot of log a was trusted for log b"
    state_b = snapshot.replay(log_b, snap).projector.state()
    assert state_b.videos["bb"].status == "completed" and state_b.videos["aa"].status == "pending"


def test_damaged_snapshot_is_rewritten_by_the_daemon(golden: DataDir, tmp_path: Path) -> None:
    """nkod says it ignored a damaged snapshot, rebuilds from the log, and writes a good one."""
    d = _copy(golden, tmp_path)
    snap = d.root / "snapshot.json"
    snap.write_bytes(snap.read_bytes()[:-40] + b"garbage" * 5)
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "snapshot_ignored" in r.stdout + r.stderr
    assert snapshot.load(snap, d.log).state is not None
    assert_snapshot_agrees(d)
    assert_finished_exactly_once(d, IDS)


# -- kill -9 during `nkoctl fsck --repair` -------------------------------------------------------------


def test_kill9_during_fsck_repair_leaves_the_old_log_or_the_repaired_one(tmp_path: Path) -> None:
    """SIGKILL `nkoctl fsck --repair` at random moments: the log is always either the damaged original or
    a whole repaired log, never missing or half-written; a last repair then succeeds and nkod runs."""
    import subprocess
    import time

    from tests.helpers import binary, env

    seed = torture_seed("fsck --repair kills")
    rng = random.Random(seed)
    root = tmp_path / "data"
    root.mkdir()
    n = 30_000 if not LONG else 150_000  # videos; two events each: a repair that takes about a second
    drafts: list[dict[str, object]] = [{"type": "log_created", "log_id": "f" * 16}]
    ids = [f"v{i:06d}" for i in range(n)]
    drafts += [{"type": "videos_added", "video_ids": ids[i : i + 1000]} for i in range(0, n, 1000)]
    for vid in ids:
        drafts.append({"type": "video_started", "video_id": vid, "attempt": 1})
        drafts.append({"type": "video_completed", "video_id": vid, "attempt": 1, "counts": {"frames": 3}})
    ts = "2026-01-01T00:00:00.000000Z"
    root.joinpath("events.jsonl").write_bytes(
        b"".join(codec.encode({"v": 1, "seq": i, "ts": ts, **dr}) for i, dr in enumerate(drafts, start=1))
    )
    data = root.joinpath("events.jsonl").read_bytes()
    starts = _line_starts(data)
    line = len(starts) // 3
    pos = starts[line - 1] + 20
    damaged = data[:pos] + (b"X" if data[pos : pos + 1] != b"X" else b"Y") + data[pos + 1 :]
    log = root / "events.jsonl"
    log.write_bytes(damaged)
    argv = [binary("nkoctl"), "--data-dir", str(root), "fsck", "--repair"]
    t0 = time.monotonic()
    subprocess.run(argv, env=env(), capture_output=True, check=False, timeout=120)  # how long a repair takes
    duration = time.monotonic() - t0
    outcomes = {"old": 0, "repaired": 0}
    for _ in range(12 if LONG else 6):
        log.write_bytes(damaged)
        for extra in root.glob("events.jsonl.bak-*"):
            extra.unlink()
        proc = subprocess.Popen(argv, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, duration))
        proc.kill()
        proc.wait()
        now = log.read_bytes()
        if now == damaged:
            outcomes["old"] += 1
            continue
        events, result = eventlog.read_all(log)  # raises if the replaced log is not whole
        assert result.torn is None and events[-1]["type"] == "log_repaired", (seed, len(now))
        outcomes["repaired"] += 1
    print(f"fsck --repair kills: seed={seed} repair_seconds={duration:.2f} outcomes={outcomes}")
    log.write_bytes(damaged)
    r = subprocess.run(argv, env=env(), capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    events, result = eventlog.read_all(log)
    assert result.torn is None and len(events) == len(starts) - 1  # one line dropped, log_repaired added
