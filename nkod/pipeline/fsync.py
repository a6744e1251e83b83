"""Make what the pipeline wrote durable: the engine renames the work dir but fsyncs nothing itself."""

from __future__ import annotations

import os
from pathlib import Path


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> int:
    """fsync every file and directory under `root` (files first, each directory after its entries).

    Returns how many files and directories were synced. Symlinks are not followed.
    """
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        here = Path(dirpath)
        for name in filenames:
            path = here / name
            if path.is_symlink():
                continue
            _fsync_path(path)
            count += 1
        del dirnames  # subdirectories were already synced (bottom-up walk)
        _fsync_path(here)
        count += 1
    return count
