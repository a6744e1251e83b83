"""Hostile input: manifests, request files and config files built to break things (hypothesis).

No crash; a clear error naming the file and line (or key); valid items unaffected; nothing written
outside the data dir; no id ever names a path; nothing reaches a shell.
"""

from __future__ import annotations

import functools
import os
import time
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nkod import manifest, spool
from nkod.config import load_config
from nkod.errors import ConfigError, RequestError
from tests.helpers import DataDir, wait_for
from tests.torture_helpers import assert_finished_exactly_once, assert_status_works

UNSAFE_IDS = [
    "../x", "a/b", ".", "..", "", "x" * 10_000, "a b", "a\x00b", "ߒߞߏ", "/etc/passwd", "~root", "*", "-" * 65,
    "$(touch PWNED)", "`touch PWNED`", "a;touch PWNED", "a|touch PWNED", "a\ntouch PWNED", "..\\x", "C:\\x",
]  # fmt: skip
SHELLISH = ["$(touch {m})", "`touch {m}`", "; touch {m}", "| touch {m}", "&& touch {m}", "'\"; touch {m}; #"]

_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def _hostile_line(kind: str, draw: Any) -> bytes:
    if kind == "unsafe_id":
        vid = draw(
            st.sampled_from(UNSAFE_IDS) | st.text(max_size=80).filter(lambda s: manifest.id_problem(s) is not None)
        )
        return orjson.dumps({"video_id": vid, "path": "x.mp4"})
    if kind == "bad_json":
        return bytes(draw(st.binary(max_size=120).filter(lambda b: b"\n" not in b and b"\r" not in b)))
    if kind == "not_utf8":
        return b'{"video_id": "bad-\xff\xfe", "path": "x.mp4"}'
    if kind == "not_object":
        return orjson.dumps(
            draw(st.lists(_json_value, max_size=3) | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10))
        )
    if kind == "no_source":
        return orjson.dumps({"video_id": f"nosrc-{draw(st.integers(0, 99))}"})
    if kind == "bad_url":
        url = draw(st.sampled_from(["file:///etc/passwd", "javascript:alert(1)", "ftp://x", "", "//x"]))
        return orjson.dumps({"video_id": f"badurl-{draw(st.integers(0, 99))}", "url": url})
    if kind == "bad_path":
        return orjson.dumps({"video_id": f"badpath-{draw(st.integers(0, 99))}", "path": draw(st.sampled_from([1, ""]))})
    if kind == "non_string_id":
        return orjson.dumps({"video_id": draw(_json_value.filter(lambda v: not isinstance(v, str))), "path": "x"})
    raise AssertionError(kind)


KINDS = ["unsafe_id", "bad_json", "not_utf8", "not_object", "no_source", "bad_url", "bad_path", "non_string_id"]


@st.composite
def manifests(draw: Any) -> tuple[bytes, dict[str, int], set[int]]:
    """Manifest bytes, the valid ids it holds (with their line numbers), and the lines that must be problems."""
    lines: list[bytes] = []
    valid: dict[str, int] = {}
    bad: set[int] = set()
    n = draw(st.integers(1, 25))
    for _ in range(n):
        choice = draw(st.sampled_from(["valid", "valid", "dup", "blank", "comment", *KINDS]))
        number = len(lines) + 1
        if choice == "valid":
            vid = f"ok-{len(valid)}"
            extra = draw(st.dictionaries(st.sampled_from(["title", "sleep2", "note"]), _json_value, max_size=2))
            lines.append(orjson.dumps({"video_id": vid, "path": "clip.mp4", **extra}))
            valid[vid] = number
        elif choice == "dup" and valid:
            lines.append(orjson.dumps({"video_id": draw(st.sampled_from(sorted(valid))), "path": "again.mp4"}))
            bad.add(number)
        elif choice == "blank":
            lines.append(b"   ")
        elif choice == "comment":
            lines.append(b"# a comment, even {not json")
        elif choice in KINDS:
            line = _hostile_line(choice, draw)
            if not line.strip() or line.strip().startswith(b"#"):
                line = b"{" + line  # keep it a hostile line, not a blank or a comment
            lines.append(line)
            bad.add(number)
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    return eol.join(lines) + draw(st.sampled_from([b"", eol])), valid, bad


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_manifest_parse_never_crashes_keeps_valid_lines_and_names_bad_ones(
    case: tuple[bytes, dict[str, int], set[int]],
) -> None:
    """Any mix of good and hostile lines: every valid line is kept, every bad one is a problem naming file:line."""
    data, valid, bad = case
    path = Path("/data/videos.jsonl")
    m = manifest.parse(data, path)
    assert {vid: m.lines[vid] for vid in m.entries} == valid
    assert {p.line for p in m.problems} == bad
    for p in m.problems:
        assert p.path == str(path) and str(p).startswith(f"{path}:{p.line}: ") and p.error
    for vid, entry in m.entries.items():
        assert manifest.id_problem(vid) is None
        assert entry["path"] == "/data/clip.mp4"


def test_manifest_huge_line_is_one_problem_and_costs_nothing_else(tmp_path: Path) -> None:
    """A line over the 1 MiB limit, around valid ones: one problem naming its line; the others are kept."""
    huge = orjson.dumps({"video_id": "huge", "path": "x", "pad": "y" * (manifest.MAX_LINE_BYTES + 10)})
    data = b'{"video_id": "a", "path": "x"}\n' + huge + b'\n{"video_id": "b", "path": "x"}\n'
    m = manifest.parse(data, tmp_path / "videos.jsonl")
    assert list(m.entries) == ["a", "b"]
    assert [(p.line, "bytes" in p.error) for p in m.problems] == [(2, True)]


# -- the real daemon on a hostile manifest ------------------------------------------------------------


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_daemon_on_hostile_manifest_runs_valid_videos_only_and_writes_nowhere_else(tmp_path: Path) -> None:
    """Unsafe ids, bad JSON, non-UTF-8, shell metacharacters: nkod runs the valid videos, reports each bad
    line by number, creates no path from an id, runs no shell, and writes only inside its data dir."""
    marker = tmp_path / "PWNED"
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    d = DataDir(sandbox / "data", workers=2)
    lines: list[bytes] = []
    good: list[str] = []
    for i, vid in enumerate(UNSAFE_IDS):
        lines.append(orjson.dumps({"video_id": vid.replace("PWNED", str(marker)), "path": "x.mp4"}))
        ok = f"good-{i}"
        title = SHELLISH[i % len(SHELLISH)].format(m=marker)
        lines.append(orjson.dumps({"video_id": ok, "path": title, "url": None, "title": title, "frames": 1}))
        good.append(ok)
    lines += [b"{not json", b'{"video_id": "bad-\xff", "path": "x"}', b"[1,2]", b'{"video_id": "good-0", "path": "y"}']
    (d.root / "videos.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    outside_before = _tree(tmp_path) - {str(p.relative_to(tmp_path)) for p in d.root.rglob("*")}
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert_finished_exactly_once(d, good)
    assert not marker.exists(), "a shell ran something from the manifest"
    assert sorted(os.listdir(d.root / "output")) == sorted(good)
    outside_after = {p for p in _tree(tmp_path) if not p.startswith("sandbox/data/") and p != "sandbox/data"}
    assert outside_after - outside_before <= {"sandbox/data.out"}, outside_after - outside_before
    status = assert_status_works(d)
    bad_lines = {p["line"] for p in status.get("manifest_problems", [])}
    expected_bad = {2 * i + 1 for i in range(len(UNSAFE_IDS))} | {len(lines) - 3 + k for k in range(4)}
    assert bad_lines == expected_bad, (sorted(bad_lines), sorted(expected_bad))
    said = r.stdout + r.stderr
    assert "manifest_line_skipped" in said and f"{d.root / 'videos.jsonl'}" in said


# -- request files ------------------------------------------------------------------------------------

_request_body = st.one_of(
    st.binary(max_size=200),
    _json_value.map(orjson.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["retry", "import_checkpoint", "reset", "rm -rf", ""])},
        optional={
            "video_ids": st.none() | st.lists(st.sampled_from(UNSAFE_IDS) | st.text(max_size=12), max_size=4),
            "completed": _json_value,
            "failed": _json_value | st.lists(st.dictionaries(st.sampled_from(["id", "error"]), _json_value)),
        },
    ).map(orjson.dumps),
)


@settings(max_examples=400, deadline=None)
@given(_request_body)
def test_request_parse_never_crashes_and_errors_name_the_file(body: bytes) -> None:
    """Any bytes in a request file: a checked request, or a RequestError naming the file; nothing else."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "00000000000000000001-abcd.json"
        path.write_bytes(body)
        try:
            req = spool.parse(path)
        except RequestError as exc:
            assert str(path) in str(exc)
            return
        assert req.type in spool.REQUEST_TYPES
        # The ids the daemon will act on are all safe.
        if req.type == "retry" and req.body.get("video_ids") is not None:
            assert all(manifest.id_problem(v) is None for v in req.body["video_ids"])
        if req.type == "import_checkpoint":
            assert all(manifest.id_problem(v) is None for v in req.body["completed"])
            assert all(manifest.id_problem(f.get("id")) is None for f in req.body.get("failed", []))


def _done_or_failed_again(d: DataDir, failures: int) -> bool:
    return d.completed_count()["h1"] == 1 or d.types("h1").count("video_failed") > failures


def test_daemon_rejects_hostile_requests_keeps_running_and_applies_the_valid_one(tmp_path: Path) -> None:
    """Garbage, unsafe ids, unknown types, non-UTF-8 in requests/: each is moved to rejected/ with a reason
    and logged as request_rejected; the daemon keeps running and a valid retry still works."""
    d = DataDir(tmp_path / "data", workers=1, max_attempts=1)
    d.manifest([{"video_id": "h1", "frames": 1, "fail": "transient", "fail_attempts": 1}, {"video_id": "h2"}])
    proc = d.start()
    try:
        wait_for(lambda: "video_failed" in d.types("h1") and d.completed_count()["h2"] == 1, what="h1 failed")
        req = d.root / "requests"
        hostile = {
            "a.json": b"{not json",
            "b.json": b"\xff\xfe\x00",
            "c.json": orjson.dumps({"type": "retry", "video_ids": ["../../etc"]}),
            "d.json": orjson.dumps({"type": "$(touch PWNED)"}),
            "e.json": orjson.dumps([1, 2, 3]),
            "f.json": orjson.dumps({"type": "import_checkpoint", "completed": "h1"}),
            "g.json": orjson.dumps({"type": "import_checkpoint", "completed": [], "failed": [{"id": "a/b"}]}),
            "h.json": b"",
        }
        for name, body in hostile.items():
            (req / f".{name}.tmp").write_bytes(body)
            os.rename(req / f".{name}.tmp", req / name)
        wait_for(lambda: not [n for n in hostile if (req / n).exists()], what="requests handled")
        for name in hostile:
            assert (req / "rejected" / name).exists(), name
            assert (req / "rejected" / f"{name}.reason.txt").read_text().strip()
        rejected = {e["file"] for e in d.events() if e["type"] == "request_rejected"}
        assert set(hostile) <= rejected
        assert proc.poll() is None, "a hostile request stopped the daemon"
        d.manifest([{"video_id": "h1", "frames": 1}, {"video_id": "h2"}])  # the operator fixes the cause
        for _ in range(5):  # (a retry restarts attempts at 1) if the daemon had not reread the fix yet, again
            time.sleep(1.0)
            failures = d.types("h1").count("video_failed")
            r = d.ctl("retry", "h1", "--wait", "10")
            assert r.returncode == 0, r.stderr
            wait_for(functools.partial(_done_or_failed_again, d, failures))
            if d.completed_count()["h1"] == 1:
                break
        assert d.completed_count()["h1"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
    assert_finished_exactly_once(d, ["h1", "h2"])


# -- config files -------------------------------------------------------------------------------------

_toml_scalar = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=False).map(lambda f: repr(f) if f == f and abs(f) != float("inf") else "inf"),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=20).map(lambda s: orjson.dumps(s).decode()),
    st.sampled_from(["[1, 2]", "{ a = 1 }", "1979-05-27T07:32:00Z", "nan", "-inf"]),
)
_keys = st.sampled_from(
    ["workers", "processor", "max_attempts", "backoff_initial", "backoff_factor", "backoff_max", "video_timeout",
     "stop_grace", "snapshot_every", "views_interval", "rescan_interval", "manifest", "log_format", "bogus"]
)  # fmt: skip
_config_text = st.one_of(
    st.binary(max_size=200),
    st.lists(st.tuples(_keys, _toml_scalar), max_size=6).map(
        lambda kv: "[daemon]\n" + "".join(f"{k} = {v}\n" for k, v in kv)
    ),
    st.sampled_from(["[daemon", "[nope]\nx = 1\n", "daemon = 3\n", "[daemon.sub]\nx=1\n", "[pipeline]\nbogus = 1\n"]),
)


@settings(max_examples=400, deadline=None)
@given(_config_text)
def test_config_load_never_crashes_and_errors_name_the_file(text: str | bytes) -> None:
    """Any config file: a valid Config, or a ConfigError naming the file (and the key when there is one)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nkod.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            config = load_config(path)
        except ConfigError as exc:
            assert str(path) in str(exc), str(exc)
            return
        config.daemon.validate(str(path))  # what loaded is valid
        assert config.source == str(path)
        if isinstance(text, str) and text.startswith("[daemon]"):
            table = tomllib.loads(text).get("daemon", {})
            assert "bogus" not in table


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (b"[daemon]\nworkers = 0\n", "daemon.workers"),
        (b"[daemon]\nworkers = true\n", "daemon.workers"),
        (b'[daemon]\nworkers = "2; rm -rf /"\n', "daemon.workers"),
        (b"[daemon]\nbogus = 1\n", "daemon.bogus"),
        (b"[daemon]\nstop_grace = -1\n", "daemon.stop_grace"),
        (b"[daemon\n", "not valid TOML"),
        (b"\xff\xfe[daemon]\n", "not UTF-8"),
        (b'[daemon]\nprocessor = "os:system"\nworkers = 1\n[nope]\n', "nope"),
    ],
)
def test_nkod_refuses_bad_config_with_exit_2_naming_file_and_key(tmp_path: Path, text: bytes, where: str) -> None:
    """nkod with a bad config exits 2 before touching the data dir, naming the file and the key or problem."""
    d = DataDir(tmp_path / "data")
    d.config.write_bytes(text)
    r = d.run()
    said = r.stdout + r.stderr
    assert r.returncode == 2, said
    assert str(d.config) in said and where in said, said
    assert "Traceback" not in said
    assert not (d.root / "events.jsonl").exists()
