"""The [pipeline] table: defaults, nested tables, errors naming the key."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from nkod.config import config_from_mapping, render_toml
from nkod.errors import ConfigError
from nkod.pipeline.settings import PipelineSettings, effective_table, parse_settings


def test_empty_table_gives_the_documented_defaults() -> None:
    """No [pipeline] keys means threshold 0.3, 2 s scenes, 100 frames, detector auto, FLAC at 16 kHz."""
    s = parse_settings({}, "cfg.toml")
    assert s == PipelineSettings()
    assert s.frames.scene_threshold == 0.3
    assert s.frames.min_scene_seconds == 2.0
    assert s.frames.max_frames == 100
    assert s.detector == "auto"
    assert s.audio is True
    assert s.segments.sample_rate == 16000
    assert s.segments.format == "flac"


def test_nested_tables_and_int_for_float_are_accepted() -> None:
    """[pipeline.vision_api] and friends parse; an integer is fine where a float is expected."""
    s = parse_settings(
        {
            "detector": "vision-api",
            "audio": False,
            "frames": {"scene_threshold": 0.4, "min_scene_seconds": 1},
            "segments": {"format": "wav", "vad": "silero"},
            "vision_api": {"base_url": "http://127.0.0.1:8080/v1", "model": "m", "price_per_call": 0.002},
            "captions": {"languages": ["nqo", "nqo-GN"]},
        },
        "cfg.toml",
    )
    assert s.detector == "vision-api" and s.audio is False
    assert s.frames.min_scene_seconds == 1.0 and isinstance(s.frames.min_scene_seconds, float)
    assert s.segments.format == "wav"
    assert s.vision_api.base_url == "http://127.0.0.1:8080/v1"
    assert s.captions.languages == ("nqo", "nqo-GN")


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ({"detectr": "none"}, "pipeline.detectr", "unknown key"),
        ({"frames": {"treshold": 0.3}}, "pipeline.frames.treshold", "unknown key"),
        ({"detector": "ocr"}, "pipeline.detector", "must be one of"),
        ({"frames": {"scene_threshold": 0}}, "pipeline.frames.scene_threshold", "must be >"),
        ({"frames": {"max_frames": "100"}}, "pipeline.frames.max_frames", "expected int"),
        ({"frames": {"max_frames": 1.5}}, "pipeline.frames.max_frames", "expected int"),
        ({"audio": "yes"}, "pipeline.audio", "expected bool"),
        ({"frames": {"jpeg_quality": True}}, "pipeline.frames.jpeg_quality", "boolean"),
        ({"segments": {"format": "mp3"}}, "pipeline.segments.format", "must be one of"),
        ({"segments": {"min_seconds": 40.0}}, "pipeline.segments.min_seconds", "max_seconds"),
        ({"vision_api": {"base_url": "ftp://x"}}, "pipeline.vision_api.base_url", "http"),
        ({"vision_api": "gemini"}, "pipeline.vision_api", "must be a table"),
        ({"captions": {"languages": "nqo"}}, "pipeline.captions.languages", "list of strings"),
        ({"segments": {"vad": "silero", "sample_rate": 22050}}, "pipeline.segments.sample_rate", "silero"),
    ],
)
def test_bad_keys_and_values_name_the_key(table: dict[str, Any], key: str, words: str) -> None:
    """Unknown keys and bad values raise ConfigError naming the file and pipeline.<key>."""
    with pytest.raises(ConfigError) as info:
        parse_settings(table, "cfg.toml")
    assert info.value.key == key
    assert info.value.source == "cfg.toml"
    assert words in str(info.value)
    assert str(info.value).startswith(f"cfg.toml: {key}: ")


def test_effective_table_round_trips_through_toml() -> None:
    """The effective table, rendered by --print-config as TOML, parses back to the same settings."""
    s = parse_settings({"detector": "captions", "frames": {"max_frames": 7}}, "cfg.toml")
    table = effective_table(s)
    assert table["frames"]["max_frames"] == 7
    assert table["captions"]["languages"] == ["nqo"]
    config = config_from_mapping({"pipeline": table}, "cfg.toml")
    text = render_toml(config, table)
    parsed = tomllib.loads(text)
    assert parse_settings(parsed["pipeline"], "rendered") == s


def test_engine_config_rejects_bad_pipeline_keys() -> None:
    """nkod's config loader validates [pipeline] with this parser."""
    with pytest.raises(ConfigError, match=r"pipeline\.frames\.nope"):
        config_from_mapping({"pipeline": {"frames": {"nope": 1}}}, "nkod.toml")
