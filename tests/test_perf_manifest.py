"""A million-line manifest: read a block at a time, common lines checked in batches, kept compactly; the
result is always what checking each line on its own gives."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkod import manifest

_SMALL_MAX = 40  # MAX_LINE_BYTES while these properties run: over-long lines are cheap to make


def _lines_one_at_a_time(source: IO[bytes]) -> Iterator[tuple[int, bytes | None, int]]:
    """The reference: the line-at-a-time reader nkod used before (readline bounded by MAX_LINE_BYTES + 2,
    an over-long line skipped in chunks), yielding (number, stripped line or None when too long, length)."""
    limit = manifest.MAX_LINE_BYTES
    number = 0
    if source.read(3) != b"\xef\xbb\xbf":  # (the BOM before the line: an over-long first line stays one line)
        source.seek(0)
    while raw := source.readline(limit + 2):
        number += 1
        if not raw.endswith(b"\n") and len(raw) == limit + 2:
            while (chunk := source.readline(1 << 16)) and not chunk.endswith(b"\n"):
                raw += chunk
            yield number, None, len((raw + chunk).rstrip(b"\r\n"))  # (its CRs before the newline not counted)
            continue
        line = raw.strip()
        yield number, (line if len(line) <= limit else None), len(line)


def _reference(data: bytes, path: Path) -> tuple[dict[str, Any], dict[str, int], dict[str, int], list[Any]]:
    m = manifest.Manifest(path=path, entries=manifest.Entries(str(path.parent)))
    for number, line, length in _lines_one_at_a_time(io.BytesIO(data)):
        manifest._take(m, number, line, length)
    return _seen(m)


def _seen(m: manifest.Manifest) -> tuple[dict[str, Any], dict[str, int], dict[str, int], list[Any]]:
    entries = {vid: m.entries[vid] for vid in m.entries}
    order = list(m.entries)
    assert order == list(entries)
    assert list(m.entries.items()) == list(entries.items())  # (items() splits each batch's block once)
    return entries, dict(m.lines), dict(m.entries.priorities), [p.as_dict() for p in m.problems]


_common = st.builds(
    lambda i, prio, end: b'{"video_id": "v%d", "path": "x%d.mp4"%s}%s' % (i, i, prio, end),
    st.integers(0, 40),
    st.sampled_from([b"", b', "priority": 2', b', "priority": -1', b', "priority": 0', b', "priority": true']),
    st.sampled_from([b"\n", b"\r\n", b"  \n", b"\t\n"]),
)
_manifest_line = st.one_of(
    _common,
    _common,
    _common,
    st.builds(lambda i: b'{"video_id": "u%d", "url": "https://e.org/%d"}\n' % (i, i), st.integers(0, 5)),
    st.builds(lambda i: b'{"video_id": "u%d", "path": "p", "url": "ftp://x"}\n' % i, st.integers(0, 5)),
    st.builds(lambda i: b'{"video_id": "w%d", "path": "p.mp4", "url": "HTTP://e.org"}\n' % i, st.integers(0, 5)),
    st.builds(lambda i: b'{"video_id": "w%d", "path": null, "url": "http://e.org"}\n' % i, st.integers(0, 5)),
    st.builds(
        lambda i, u: b'{"video_id": "w%d", "url": %s}\n' % (i, u),
        st.integers(0, 5),
        st.sampled_from([b'""', b"5", b"null"]),
    ),
    st.builds(lambda i: b'{"video_id": "w%d", "path": "", "url": "https://e.org"}\n' % i, st.integers(0, 5)),
    st.builds(lambda n: b'{"video_id": "long", "path": "%s"}\n' % (b"y" * n), st.integers(0, 60)),
    st.builds(lambda n: b"z" * n + b"\r" * (n % 3) + b"\n", st.integers(30, 120)),  # near and over the limit
    st.just(b"not json\n"),
    st.just(b"\xff\xfe\n"),
    st.just(b"# a comment\n"),
    st.just(b"\n"),
    st.just(b"   \n"),
    st.just(b"[1, 2]\n"),
    st.just(b'{"video_id": "v1", "path": ""}\n'),
    st.just(b'{"video_id": "../x", "path": "p"}\n'),
    st.just(b'{"video_id": 7, "path": "p"}\n'),
    st.just(b'{"video_id": "k", "path": "p"},{"video_id": "q", "path": "p"}\n'),  # two objects: not JSON
    st.builds(lambda i: b'{"video_id": "v%d"}\n' % i, st.integers(0, 5)),  # no source
    # Another entry's id as this one's path (its JSON string is in this line too), and an id written with
    # JSON escapes: a batch's lines are kept joined, and each entry must still be found on its own line.
    st.builds(lambda i, j: b'{"path": "v%d", "video_id": "v%d"}\n' % (j, i), st.integers(0, 40), st.integers(0, 40)),
    st.builds(lambda i: b'{"video_id": "\\u0076%d", "path": "e.mp4"}\n' % i, st.integers(0, 40)),
)
_manifest_file = st.tuples(st.booleans(), st.lists(_manifest_line, max_size=40), st.binary(max_size=50)).map(
    lambda t: (b"\xef\xbb\xbf" if t[0] else b"") + b"".join(t[1]) + t[2].replace(b"\n", b"")  # a partial last line
)


@settings(max_examples=300, deadline=None)
@given(_manifest_file, st.sampled_from([1, 7, 64, 1 << 22]), st.sampled_from([1, 3, 1024]))
def test_a_manifest_read_in_blocks_and_batches_equals_checking_each_line_alone(
    data: bytes, block: int, batch: int
) -> None:
    """Whatever the lines (common, with a URL, bad, duplicate, blank, over-long, a BOM, CRLF, a last line
    without its newline) and wherever the blocks and batches end, the manifest read a block at a time with
    its common lines checked in batches has the entries, line numbers, priorities and problems (each naming
    its line) that checking each line on its own gives."""
    path = Path("/m/videos.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(manifest, "MAX_LINE_BYTES", _SMALL_MAX)
        mp.setattr(manifest, "_BLOCK", block)
        mp.setattr(manifest, "_BATCH", batch)
        assert _seen(manifest.parse(data, path)) == _reference(data, path)


@settings(max_examples=150, deadline=None)
@given(_manifest_file, st.lists(st.integers(0, 2000), max_size=6), st.sampled_from([1, 5, 1 << 22]))
def test_a_manifest_read_as_it_grows_equals_checking_each_line_alone(data: bytes, cuts: list[int], block: int) -> None:
    """The incremental reader, reading the file after each append (the cuts fall anywhere, in the middle of
    a line too), ends with what checking each line of the whole file gives, and what each read `added` is
    among its entries: together they name every entry."""
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(manifest, "MAX_LINE_BYTES", _SMALL_MAX)
        mp.setattr(manifest, "_BLOCK", block)
        path = Path(tmp) / "videos.jsonl"
        path.write_bytes(b"")
        reader = manifest.Reader(path)
        added: set[str] = set()
        at = 0
        for cut in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
            with open(path, "ab") as f:
                f.write(data[at:cut])
            at = cut
            m = reader.read()
            assert set(reader.added) <= set(m.entries)
            added |= set(reader.added)
        assert _seen(m) == _reference(data, path)
        assert set(m.entries) <= added


@settings(max_examples=100, deadline=None)
@given(_manifest_file, st.sampled_from([1, 3, 1024]))
def test_a_manifest_handed_back_by_the_plan_child_equals_the_one_it_read(data: bytes, batch: int) -> None:
    """What `LoadAside`'s child writes (each line or batch block once) reads back as the same entries, line
    numbers, priorities and problems."""
    path = Path("/m/videos.jsonl")
    with tempfile.TemporaryFile() as f, pytest.MonkeyPatch.context() as mp:
        mp.setattr(manifest, "MAX_LINE_BYTES", _SMALL_MAX)
        mp.setattr(manifest, "_BATCH", batch)
        read = manifest.parse(data, path)
        assert manifest._write_loaded(f.fileno(), read) == 0
        assert _seen(manifest._read_loaded(f.fileno(), path, None)) == _seen(read)


def test_a_batch_of_lines_is_kept_in_blocks_and_each_entry_found_on_its_line() -> None:
    """A batch of 1,024 common lines costs a bytes object per block of 16 lines, not one per line (~33 bytes
    each), and each of its ids still gives its own line, even when another line of the block names it or
    its id is written with JSON escapes."""
    lines = [b'{"video_id":"v%d","path":"v%d"}' % (i, (i + 1) % 1024) for i in range(1023)]
    lines.append(b'{"video_id":"\\u0076x","path":"vx.mp4"}')  # the id "vx"
    m = manifest.parse(b"\n".join(lines) + b"\n", Path("/m/videos.jsonl"))
    assert len({id(block) for block in m.entries._raw.values()}) == 1024 // manifest._LINES_PER_BLOCK
    assert [m.entries[f"v{i}"]["path"] for i in range(1023)] == [f"/m/v{(i + 1) % 1024}" for i in range(1023)]
    assert m.entries["vx"]["path"] == "/m/vx.mp4"
    with pytest.raises(KeyError):
        manifest.entry_in_block(b"\n".join(lines[:3]), "v7")


def test_a_common_line_costs_no_int_or_dict_entry_for_its_line_number() -> None:
    """The entries of a 10k-line manifest keep their line numbers in an array, not in a dict of ints: a
    duplicate still names the first line (a few are found by a scan, more by an index built then), and
    `lines` gives every number."""
    data = b"".join(b'{"video_id": "v%d", "path": "x.mp4"}\n' % i for i in range(10_000))
    m = manifest.parse(data + b'{"video_id": "v5000", "path": "y.mp4"}\n', Path("/m/videos.jsonl"))
    assert [p.error for p in m.problems] == ["duplicate video_id 'v5000' (first on line 5001)"]
    assert m.entries._numbers.itemsize <= 8 and len(m.entries._numbers) == 10_000
    assert m.entries._positions is None  # one duplicate: found by a scan, no index of every id built for it
    dups = b"".join(b'{"video_id": "v%d", "path": "y.mp4"}\n' % i for i in range(0, 10_000, 500))
    many = manifest.parse(data + dups, Path("/m/videos.jsonl"))
    assert [p.error for p in many.problems] == [
        f"duplicate video_id 'v{i}' (first on line {i + 1})" for i in range(0, 10_000, 500)
    ]
    assert m.lines["v9999"] == 10_000 and len(m.lines) == 10_000


def test_the_reader_adds_common_lines_without_a_call_per_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The incremental reader (the daemon's) reads 10k common lines and an appended one without checking
    any of them one at a time: only a bad line goes through the line-at-a-time checks, which name it."""
    path = tmp_path / "videos.jsonl"
    lines = (b'{"video_id": "v%d", "path": "x.mp4", "priority": %d}\n' % (i, i % 3) for i in range(10_000))
    path.write_bytes(b"".join(lines))
    one_at_a_time: list[int] = []
    take = manifest._take

    def counted(m: manifest.Manifest, number: int, line: bytes | None, length: int) -> str | None:
        one_at_a_time.append(number)
        return take(m, number, line, length)

    monkeypatch.setattr(manifest, "_take", counted)
    reader = manifest.Reader(path)
    assert len(reader.read().entries) == 10_000 and len(reader.added) == 10_000
    with open(path, "ab") as f:
        f.write(b'{"video_id": "w", "path": "y.mp4"}\n{"video_id": "u", "url": "https://e.org/u"}\n')
    m = reader.read()
    assert reader.added == ["w", "u"] and m.lines["u"] == 10_002 and m.entries.priorities["v5"] == 2
    assert one_at_a_time == []
    with open(path, "ab") as f:
        f.write(b'{"video_id": "v7"}\n')
    assert [p.line for p in reader.read().problems] == one_at_a_time == [10_003]
