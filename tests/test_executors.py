"""The executors: the local one (a child process per video) must never load Dask."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import DataDir

# PYTHONPROFILEIMPORTTIME (= python -X importtime) makes the daemon write one line per module it imports
# to stderr: "import time: self | cumulative | name".
IMPORTED = re.compile(r"^import time:.*\|\s*(\S+)\s*$", re.MULTILINE)


def test_local_executor_run_never_imports_dask_or_distributed(tmp_path: Path) -> None:
    """A --once run with the default (local) executor never imports dask or distributed into the daemon:
    Dask is an optional extra, loaded only for executor = "dask"."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": f"v{i}", "frames": 1} for i in range(1, 3)])
    r = d.run("--workers", "2", PYTHONPROFILEIMPORTTIME="1")
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    assert d.completed_count() == {"v1": 1, "v2": 1}
    modules = set(IMPORTED.findall(r.stderr))
    assert "nkod.daemon" in modules and "nkod.executors.local" in modules  # the daemon was profiled
    loaded = sorted(m for m in modules if m.split(".")[0] in ("dask", "distributed"))
    assert not loaded, f"the local executor loaded {loaded}"
