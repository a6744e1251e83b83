"""nkod.gcpause: the cyclic collector is off inside the block and back as it was after."""

from __future__ import annotations

import gc

import pytest

from nkod import gcpause


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    """Inside: off; after: on again (it was on), also when the block raises."""
    assert gc.isenabled()
    with gcpause.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gcpause.paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    """A caller that turned the collector off keeps it off (nested pauses included)."""
    gc.disable()
    try:
        with gcpause.paused(), gcpause.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
