"""Durable writes: atomic replace leaves the old or the new file, never half, and no temp files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nkod.fsutil import atomic_write, fsync_tree


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    """The file has the new content and the directory holds no temporary file."""
    path = tmp_path / "f.json"
    atomic_write(path, b"old")
    atomic_write(path, b"new" * 1000)
    assert path.read_bytes() == b"new" * 1000
    assert os.listdir(tmp_path) == ["f.json"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    """When the rename cannot happen the old content stays and the temp file is removed."""
    path = tmp_path / "d"
    path.mkdir()
    (path / "x").write_text("in the way")
    with pytest.raises(OSError):
        atomic_write(path, b"new")  # cannot replace a non-empty directory
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_fsync_tree_syncs_every_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files and directories (including the root) are each fsynced once; symlinks are skipped."""
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "a.jpg").write_bytes(b"x")
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "s.flac").write_bytes(b"y")
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "manifest.json")
    synced: list[int] = []
    real = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    assert fsync_tree(tmp_path) == 6
    assert len(synced) == 6
