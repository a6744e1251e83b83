"""Bulk loading with Python's cyclic garbage collector paused.

Loading a million videos (a snapshot's rows, a manifest's lines, a replay's events) allocates millions
of objects that live on; each collection the allocations trigger walks everything allocated so far, so
the collector alone made such loads ~40 % slower. None of these objects form reference cycles, so
nothing is lost by collecting after the load instead of during it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside the block (it is turned back on after, if it was on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
