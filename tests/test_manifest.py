"""The manifest: valid lines are used, every bad line is named by file and line and skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from nkod import manifest


@pytest.mark.parametrize(
    ("video_id", "ok"),
    [
        ("xsUrdpKD5wM", True),
        ("-abc_12", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("../x", False),
        ("a/b", False),
        (".", False),
        ("..", False),
        ("a b", False),
        ("ߒߞߏ", False),
        (12, False),
        (None, False),
    ],
)
def test_video_id_must_be_safe_as_a_directory_name(video_id: object, ok: bool) -> None:
    """Only letters, digits, '-' and '_', 1..64 characters, name a directory."""
    assert (manifest.id_problem(video_id) is None) is ok


def test_relative_paths_resolve_against_the_manifest_directory(tmp_path: Path) -> None:
    """path: samples/a.mp4 is read relative to the manifest's folder; other keys are kept."""
    m = manifest.parse(b'{"video_id":"a","path":"samples/a.mp4","title":"t"}\n', tmp_path / "videos.jsonl")
    assert m.entries["a"] == {"video_id": "a", "path": str(tmp_path / "samples/a.mp4"), "title": "t"}


def test_each_problem_names_its_line_and_valid_lines_survive(tmp_path: Path) -> None:
    """Bad JSON, non-objects, missing/unsafe/duplicate ids, missing or bad sources: each named, rest kept."""
    data = b"\n".join(
        [
            b'{"video_id":"a","path":"x"}',
            b"{bad",
            b"[1,2]",
            b'{"path":"x"}',
            b'{"video_id":"a/b","path":"x"}',
            b'{"video_id":"a","path":"y"}',
            b'{"video_id":"c"}',
            b'{"video_id":"d","url":"file:///etc/passwd"}',
            b'{"video_id":"e","path":""}',
            b"\xff\xfe",
            b"",
            b"# a comment",
            b'{"video_id":"f","url":"https://h/v"}',
        ]
    )
    m = manifest.parse(data, tmp_path / "videos.jsonl")
    assert list(m.entries) == ["a", "f"]
    assert [(p.line, p.error.split(":")[0]) for p in m.problems] == [
        (2, "not JSON"),
        (3, "expected a JSON object, got list"),
        (4, "no video_id"),
        (5, "video_id 'a/b' may only use letters, digits, '-' and '_'"),
        (6, "duplicate video_id 'a' (first on line 1)"),
        (7, "c"),
        (8, "d"),
        (9, "e"),
        (10, "not UTF-8 (byte 0)"),
    ]
    assert str(m.problems[0]).startswith(f"{tmp_path / 'videos.jsonl'}:2: ")


def test_a_huge_line_is_refused_not_parsed(tmp_path: Path) -> None:
    """A line over 1 MiB is named and skipped."""
    m = manifest.parse(b'{"video_id":"a","path":"' + b"x" * (2 << 20) + b'"}\n', tmp_path / "m")
    assert not m.entries and "bytes" in m.problems[0].error


def test_missing_manifest_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """No videos.jsonl: an empty manifest with one problem saying so."""
    m = manifest.load(tmp_path / "videos.jsonl")
    assert not m.entries and "does not exist" in m.problems[0].error
