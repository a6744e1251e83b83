"""fsync_tree: every file and directory under the work dir is synced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nkod.pipeline.fsync import fsync_tree


def test_syncs_every_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
