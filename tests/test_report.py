"""``nkoctl report``: a self-contained HTML page, opened in the real headless Chromium."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from nkod.report import failure_reason
from tests import chromium
from tests.helpers import REPO, DataDir, binary, env

needs_chromium = pytest.mark.skipif(
    chromium.find() is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)"
)

HOSTILE_TITLE = "<script>console.error('title ran as script')</script> ߒߞߏ [bold]x[/bold]"
HOSTILE_PATH = "samples/<img src=x onerror=console.error(1)> [/path/x].mp4"


def _sample_run(root: Path) -> DataDir:
    """The built-in pipeline on the shipped sample clips (N'Ko captions detector on), plus a video whose
    title and missing file name are HTML that would run if it were not escaped."""
    d = DataDir(root, processor="nkod.pipeline:process", max_attempts=1)
    with open(d.config, "a") as f:
        f.write('\n[pipeline]\ndetector = "captions"\n')
    shutil.copytree(REPO / "data" / "samples", root / "samples")
    lines = [orjson.loads(line) for line in (REPO / "data" / "videos.jsonl").read_bytes().splitlines() if line]
    lines.append({"video_id": "broken_one", "path": HOSTILE_PATH, "title": HOSTILE_TITLE})
    d.manifest(lines)
    r = d.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.status()["completed"] == 3
    return d


def _report(d: DataDir, out: Path) -> subprocess.CompletedProcess[str]:
    return d.ctl("report", "-o", str(out))


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataDir, Path]:
    base = tmp_path_factory.mktemp("report")
    d = _sample_run(base / "data")
    out = base / "report.html"
    r = _report(d, out)
    assert r.returncode == 0, r.stderr
    return d, out


def test_report_shows_the_dataset_totals_and_escapes_every_string(sample_report: tuple[DataDir, Path]) -> None:
    """The page names the totals (hours of audio, frames, N'Ko frames, detector cost) and the failed video
    with its error; titles and errors appear HTML-escaped, never as markup."""
    _d, out = sample_report
    page = out.read_text()
    for label in ("hours of audio", "frames", "N&#x27;Ko frames", "detector cost", "Slowest videos", "broken_one"):
        assert label in page, label
    assert "<script>" not in page
    assert "&lt;script&gt;console.error(&#x27;title ran as script&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=console.error(1)&gt; [/path/x].mp4" in page
    assert "https://" not in page.replace("https://matplotlib.org", "")  # nothing to fetch


@needs_chromium
def test_report_renders_in_chromium_without_console_errors_or_network(sample_report: tuple[DataDir, Path]) -> None:
    """Opened from disk in headless Chromium: no console error, every plot decodes, and the page asks for
    nothing but itself and its inline data: images."""
    _d, out = sample_report
    page = chromium.open_page(out.as_uri())
    assert page.console_errors == []
    assert page.images >= 4 and page.broken_images == 0
    assert page.title.startswith("nkod report")
    outside = [u for u in page.requests if not u.startswith(("file:", "data:"))]
    assert outside == []


@needs_chromium
def test_report_screenshot_has_the_viewport_size_and_is_not_blank(sample_report: tuple[DataDir, Path]) -> None:
    """A 1280×900 screenshot of the page has text, coloured plot marks and is far from a blank page."""
    _d, out = sample_report
    png = chromium.open_page(out.as_uri(), width=1280, height=900).screenshot
    (out.parent / "report.png").write_bytes(png)  # kept beside the report for a person to look at
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (1280, 900)
    pixels = np.asarray(image).astype(np.int16)
    not_white = (pixels < 240).any(axis=2).mean()
    colourful = (pixels.max(axis=2) - pixels.min(axis=2) > 60).mean()  # plot lines and bars, not grey text
    assert pixels.std() > 20, "the screenshot is flat"
    assert not_white > 0.03, f"only {not_white:.1%} of the screenshot is not white"
    assert colourful > 0.002, f"only {colourful:.2%} of the screenshot is coloured: no plot drawn?"


@needs_chromium
def test_chromium_harness_sees_console_errors_and_outside_requests(tmp_path: Path) -> None:
    """The checks above can fail: a page with console.error and an image from elsewhere is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><title>bad</title><script>console.error('boom')</script><img src='http://127.0.0.1:9/x.png'>"
    )
    page = chromium.open_page(bad.as_uri())
    assert any("boom" in e for e in page.console_errors)
    assert "http://127.0.0.1:9/x.png" in page.requests
    assert page.broken_images == 1


def test_report_to_stdout_is_the_same_page(sample_report: tuple[DataDir, Path]) -> None:
    """`-o -` writes the page on stdout."""
    d, _out = sample_report
    r = d.ctl("report", "-o", "-")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("<!DOCTYPE html>") and "broken_one" in r.stdout


def test_report_without_matplotlib_says_what_to_install(tmp_path: Path) -> None:
    """Without matplotlib, `nkoctl report` exits 1 naming the extra to install, and writes nothing."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "a"}])
    assert d.run().returncode == 0
    shadow = tmp_path / "no-matplotlib" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    out = tmp_path / "r.html"
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(d.root), "report", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(PYTHONPATH=f"{shadow.parent}:{REPO}"),
    )
    assert r.returncode == 1
    assert "pip install 'nkod[report]'" in r.stderr
    assert not out.exists()


def test_report_counts_retries_and_failures_from_the_log(tmp_path: Path) -> None:
    """A run with a retried and a failed video: the report lists the failure with its error and attempts."""
    d = DataDir(tmp_path / "data", max_attempts=2)
    d.manifest([{"video_id": "ok1"}, {"video_id": "ok2", "sleep": 0.2}, {"video_id": "limited", "fail": "transient"}])
    assert d.run().returncode == 0
    out = tmp_path / "r.html"
    r = _report(d, out)
    assert r.returncode == 0, r.stderr
    assert "2 completed, 2 failed attempts" in r.stderr
    page = out.read_text()
    assert "Failed videos (1)" in page
    assert "rate limited (HTTP 429) on limited (gave up after 2 attempts)" in page


def test_report_on_a_missing_data_dir_is_an_error(tmp_path: Path) -> None:
    """A mistyped --data-dir is named, exit 1, and no file is written."""
    out = tmp_path / "r.html"
    r = subprocess.run(
        [binary("nkoctl"), "--data-dir", str(tmp_path / "nope"), "report", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
    )
    assert r.returncode == 1
    assert "nope: no such data directory" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        ("rate limited (HTTP 429) on x", "transient", "rate limited"),
        ("timed out after 7200 s", "transient", "timed out"),
        ("worker process died (killed by signal 9) without a result", "transient", "worker died"),
        ("video x is unavailable", "permanent", "unavailable"),
        ("something odd", "permanent", "other (permanent)"),
    ],
)
def test_failure_reason_groups_errors(error: str, kind: str, reason: str) -> None:
    """Failures are grouped by a short reason read from the error text, else by their kind."""
    assert failure_reason(error, kind) == reason


def test_report_of_a_run_not_started_yet_renders(tmp_path: Path) -> None:
    """A data dir with a manifest and no log yet: a page that says nothing is completed, exit 0."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "a"}])
    out = tmp_path / "r.html"
    r = _report(d, out)
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert "0 / 0" in page and "none completed yet" in page


def test_report_on_a_damaged_log_exits_4_naming_the_line(tmp_path: Path) -> None:
    """Damage in the middle of the log: exit 4 with the file and line, as every other nkoctl read."""
    d = DataDir(tmp_path / "data")
    d.manifest([{"video_id": "a"}, {"video_id": "b"}])
    assert d.run().returncode == 0
    lines = d.log.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"', b"'", 1)
    d.log.write_bytes(b"\n".join(lines))
    out = tmp_path / "r.html"
    r = _report(d, out)
    assert r.returncode == 4, r.stderr
    assert "events.jsonl" in r.stderr and "line 3" in r.stderr
    assert not out.exists()
