"""The request spool: atomic request files, checked before they turn into events."""

from __future__ import annotations

from pathlib import Path

import pytest

from nkod import spool
from nkod.errors import RequestError


def test_submit_writes_one_complete_file_oldest_first(tmp_path: Path) -> None:
    """submit() leaves only complete .json files, listed in the order they were made."""
    a = spool.submit(tmp_path, "retry", video_ids=["x"])
    b = spool.submit(tmp_path, "retry", video_ids=None)
    assert spool.pending(tmp_path) == [a, b]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    req = spool.parse(a)
    assert req.type == "retry" and req.body["video_ids"] == ["x"]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"type":"rm -rf"}', "unknown request type"),
        (b'{"type":"retry","video_ids":"a"}', "must be a list"),
        (b'{"type":"retry","video_ids":["../a"]}', "may only use"),
        (b'{"type":"import_checkpoint","completed":["a"],"failed":[1]}', "list of objects"),
    ],
)
def test_bad_requests_name_the_file_and_the_problem(tmp_path: Path, content: bytes, error: str) -> None:
    """A malformed request raises RequestError naming its path and what is wrong."""
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(RequestError, match=error) as err:
        spool.parse(path)
    assert str(path) in str(err.value)


def test_reject_moves_the_file_aside_with_its_reason(tmp_path: Path) -> None:
    """A rejected request is kept under rejected/ with a .reason.txt beside it."""
    path = tmp_path / "r.json"
    path.write_text("{")
    spool.reject(path, "not JSON")
    assert (tmp_path / "rejected" / "r.json").exists()
    assert (tmp_path / "rejected" / "r.json.reason.txt").read_text() == "not JSON\n"
    assert spool.pending(tmp_path) == []
