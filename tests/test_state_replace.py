"""``nkod.state.replace`` (the fast copy the fold uses) behaves exactly like ``dataclasses.replace``."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkod.state import Status, Video, replace

_values: dict[str, st.SearchStrategy[Any]] = {
    "status": st.sampled_from(list(Status)),
    "failures": st.integers(0, 10),
    "starts": st.integers(0, 10),
    "attempt": st.integers(0, 10),
    "started_seq": st.integers(0, 10**9),
    "started_at": st.none() | st.text(max_size=30),
    "not_before": st.none() | st.text(max_size=30),
    "error": st.none() | st.text(max_size=30),
    "error_kind": st.none() | st.sampled_from(["transient", "permanent", "interrupted"]),
    "failed_at": st.none() | st.text(max_size=30),
    "completed_at": st.none() | st.text(max_size=30),
    "counts": st.none() | st.dictionaries(st.text(max_size=5), st.integers(0, 99)).map(MappingProxyType),
    "imported": st.booleans(),
}


@given(base=st.fixed_dictionaries({}, optional=_values), changes=st.fixed_dictionaries({}, optional=_values))
def test_replace_equals_dataclasses_replace(base: dict[str, Any], changes: dict[str, Any]) -> None:
    """Any base video and any set of changed fields: same value, still frozen, original untouched."""
    video = Video("vid", **base)
    before = dataclasses.replace(video)
    got = replace(video, **changes)
    assert got == dataclasses.replace(video, **changes)
    assert video == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.status = Status.FAILED  # type: ignore[misc]


def test_replace_rejects_unknown_fields() -> None:
    """A misspelt field is an error, as with dataclasses.replace."""
    with pytest.raises(TypeError):
        replace(Video("vid"), statsu=Status.FAILED)
