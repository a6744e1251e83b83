"""The detection cache: content-hash keyed, atomic, damaged entries read as misses."""

from __future__ import annotations

from pathlib import Path

from nkod.pipeline.detectors.cache import DetectionCache

SHA = "ab" + "0" * 62


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    """A stored result comes back equal, from a file named by the hash."""
    cache = DetectionCache(tmp_path, "fp1")
    assert cache.get(SHA) is None
    cache.put(SHA, {"has_nko": True, "nko_text": "ߒߞߏ"})
    assert cache.get(SHA) == {"has_nko": True, "nko_text": "ߒߞߏ"}
    assert (tmp_path / "detections" / "fp1" / "ab" / f"{SHA}.json").is_file()


def test_fingerprints_do_not_share_entries(tmp_path: Path) -> None:
    """Another model (another fingerprint) does not see this one's answers."""
    DetectionCache(tmp_path, "fp1").put(SHA, {"has_nko": True})
    assert DetectionCache(tmp_path, "fp2").get(SHA) is None


def test_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    """A truncated entry (power cut before it reached the disk) is ignored, not an error."""
    cache = DetectionCache(tmp_path, "fp1")
    cache.put(SHA, {"has_nko": True})
    path = tmp_path / "detections" / "fp1" / "ab" / f"{SHA}.json"
    path.write_text('{"has_nk')
    assert cache.get(SHA) is None


def test_no_temp_files_are_left(tmp_path: Path) -> None:
    """Writes go through a temp file renamed into place."""
    cache = DetectionCache(tmp_path, "fp1")
    for i in range(3):
        cache.put(SHA, {"i": i})
    assert [p.name for p in (tmp_path / "detections" / "fp1" / "ab").iterdir()] == [f"{SHA}.json"]
