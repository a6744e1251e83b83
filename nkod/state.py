"""The pure core: what the event log means.

``state = fold(events)``. Each event type has one ``_mutate_<type>`` function; none does I/O, reads a
clock or logs. Time comes in on the events (``ts``).

:class:`State` is frozen. :class:`Projector` is the same fold kept open for the daemon, which applies
one event at a time and cannot afford to copy every video per event: it mutates private dicts of frozen
:class:`Video` values and hands out frozen :class:`State` copies on demand. ``apply``/``fold`` are built
on it, so there is one implementation of the semantics.

Within one :meth:`Projector.apply_all` call (a replay: a million events over a few thousand videos) a
video is copied once, the first time an event touches it, and that private copy is then changed in
place by the following events: nothing outside can see it before the call returns, and from then on it
is never changed again (the next call copies it first). So the result is the same as building a new
frozen Video per event, at a fraction of the cost.
"""

from __future__ import annotations

import math
import re
from collections import namedtuple
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from itertools import compress, repeat
from operator import attrgetter, is_
from types import MappingProxyType, SimpleNamespace

VIDEO_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # (here, not in nkod.manifest: status loads no manifest code)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any

    Event = Mapping[str, Any]
else:
    Event = Mapping  # the alias at run time (annotations are strings here, never evaluated)


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class _NamedTupleMeta(type):
    """``class X(_NamedTuple)`` with annotated fields and defaults builds a ``collections.namedtuple``, as
    ``typing.NamedTuple`` does (which mypy sees), without importing typing at run time (nkoctl status)."""

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> Any:
        if not bases:  # _NamedTuple itself
            return super().__new__(mcs, name, bases, ns)
        names = tuple(ns.get("__annotations__", ()))
        record = namedtuple(name, names, defaults=[ns[n] for n in names if n in ns], module=ns["__module__"])  # type: ignore[misc]
        record.__doc__ = ns.get("__doc__")
        return record


if TYPE_CHECKING:
    from typing import NamedTuple as _NamedTuple
else:

    class _NamedTuple(metaclass=_NamedTupleMeta):
        pass


class Video(_NamedTuple):
    """One video's place in its life: pending → running → completed | failed | interrupted.

    A named tuple (immutable): a million of them are built from a snapshot's rows, and ``tuple.__new__``
    makes one from a row's list in C (a frozen slots dataclass cost 22 ``object.__setattr__`` calls)."""

    video_id: str
    status: Status = Status.PENDING
    failures: int = 0  # transient failures in the current cycle (a retry request resets it)
    starts: int = 0  # video_started events ever
    attempt: int = 0  # attempt number of the latest start
    started_seq: int = 0  # seq of the latest video_started: names the output it may commit
    started_at: str | None = None
    not_before: str | None = None  # backoff: not to be started before this time
    error: str | None = None
    error_kind: str | None = None
    failed_at: str | None = None
    completed_at: str | None = None
    counts: Mapping[str, float] | None = None
    imported: bool = False  # completed/failed by the old run_extraction.py (import-checkpoint)
    retry_delay: float | None = None  # the backoff `not_before` was scheduled with (seconds): bounds the wait
    # Steering (nkoctl skip/prioritize/redo): a skipped video is never started; a boost (the seq of its
    # video_prioritized) runs it before any other waiting video; redo: its committed output is replaced
    # (archived) when this new run commits.
    skipped: bool = False
    skip_reason: str | None = None
    priority_boost: int = 0
    redo: bool = False
    entry_hash: str | None = None  # fingerprint of the entry its latest start ran from
    # As the daemon last compared the log with the entries (manifest_compared): no entry any more (not
    # started, not counted); completed from an entry that has changed since (`nkoctl redo` applies it).
    removed: bool = False
    entry_changed: bool = False


_VIDEO_FIELDS: tuple[str, ...] = Video._fields
_tuple_new = tuple.__new__


_STATUS_OF_VALUE = {s.value: s for s in Status}
_N_FIELDS = len(_VIDEO_FIELDS)
_PRISTINE_REST: tuple[Any, ...] = tuple(Video(video_id="")[1:])  # every field but the id at its default


class PristineVideo(Video):
    """``Video(video_id)``, every other field at its default (a video added and not yet touched by any
    later event), stored as a 1-tuple of its id: 64 bytes instead of 240, and a million-line manifest holds
    a million of them (~150 MB less). Through Video's API it reads as that Video: its fields, ``len``,
    indexing, iteration, unpacking, equality, ordering and hash (with a Video of the same fields too),
    ``+`` and ``*``, ``repr``, ``_replace`` and ``_make`` (which give a Video), copying and pickling.

    What bypasses that API sees the one item stored: tuple's unbound methods (``tuple.__eq__(v, p)``),
    Video's field descriptors (``Video.status.__get__(p)``), ``%`` with it as the argument tuple. nkod uses
    none of them (a test greps for them). One is always a 1-tuple of the id (``PristineVideo(id)``, or
    ``tuple.__new__(PristineVideo, (id,))`` as the fold and the loader make it in C): one made with more
    items would read as pending whatever it holds."""

    __slots__ = ()

    def __new__(cls, video_id: str, *fields: Any, **named: Any) -> PristineVideo:
        """PristineVideo(id); with more fields, as Video's constructor (``type(p)(*p)`` is a Video)."""
        if fields or named:
            return Video(video_id, *fields, **named)  # type: ignore[return-value]  # (other fields: a Video)
        video: PristineVideo = _tuple_new(cls, (video_id,))
        return video

    def _whole(self) -> tuple[Any, ...]:
        """The Video's tuple of fields (the id is the one item stored; `video_id` reads it)."""
        return (self.video_id, *_PRISTINE_REST)

    def __len__(self) -> int:
        return _N_FIELDS

    def __iter__(self) -> Iterator[Any]:
        return iter(self._whole())

    def __getitem__(self, key: Any) -> Any:
        return self._whole()[key]

    def __contains__(self, value: object) -> bool:
        return value in self._whole()

    def count(self, value: Any) -> int:
        return self._whole().count(value)

    def index(self, value: Any, *bounds: Any) -> int:
        return self._whole().index(value, *bounds)

    def __eq__(self, other: object) -> Any:
        if not isinstance(other, tuple):
            return NotImplemented
        return self._whole() == _fields_of(other)

    def __ne__(self, other: object) -> Any:
        if not isinstance(other, tuple):
            return NotImplemented
        return self._whole() != _fields_of(other)

    def __lt__(self, other: tuple[Any, ...]) -> Any:
        if not isinstance(other, tuple):
            return NotImplemented
        return self._whole() < _fields_of(other)

    def __le__(self, other: tuple[Any, ...]) -> Any:
        if not isinstance(other, tuple):
            return NotImplemented
        return self._whole() <= _fields_of(other)

    def __gt__(self, other: tuple[Any, ...]) -> Any:
        if not isinstance(other, tuple):
            return NotImplemented
        return self._whole() > _fields_of(other)

    def __ge__(self, other: tuple[Any, ...]) -> Any:
        if not isinstance(other, tuple):
            return NotImplemented
        return self._whole() >= _fields_of(other)

    def __hash__(self) -> int:
        return hash(self._whole())

    def __add__(self, other: tuple[Any, ...]) -> tuple[Any, ...]:
        return self._whole() + other

    def __radd__(self, other: tuple[Any, ...]) -> tuple[Any, ...]:
        return other + self._whole()

    def __mul__(self, n: Any) -> tuple[Any, ...]:
        whole: tuple[Any, ...] = self._whole() * n
        return whole

    def __rmul__(self, n: Any) -> tuple[Any, ...]:
        whole: tuple[Any, ...] = self._whole() * n
        return whole

    def __repr__(self) -> str:
        return repr(Video._make(self._whole()))

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self.video_id,)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PristineVideo, (self.video_id,))

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Video:  # type: ignore[override]  # (a Video: its fields may differ)
        return Video._make(iterable)

    def _asdict(self) -> dict[str, Any]:
        return dict(zip(_VIDEO_FIELDS, self._whole(), strict=True))


def _fields_of(other: tuple[Any, ...]) -> tuple[Any, ...]:
    """What a PristineVideo compares with: a tuple's items, a PristineVideo's whole fields."""
    return other._whole() if isinstance(other, PristineVideo) else other


# Every field but the id reads its default from the class (found before Video's descriptors, which would
# read past the one item stored).
for _name, _default in zip(_VIDEO_FIELDS[1:], _PRISTINE_REST, strict=True):
    setattr(PristineVideo, _name, _default)
del _name, _default


_STATUS_AT, _COUNTS_AT = _VIDEO_FIELDS.index("status"), _VIDEO_FIELDS.index("counts")


def video_from_fields(fields: list[Any]) -> Video:
    """A Video from the list of its fields in order as JSON gives them back (the status as its value, the
    counts an object), or from its id alone (the rest at their defaults): a snapshot's format-3 row (or a
    format-4 chunk's, as status reads it). The list is changed in place. A wrong number of fields, an
    unknown status or counts that are not an object raise (ValueError, KeyError, TypeError)."""
    if len(fields) == 1:
        return PristineVideo(fields[0])
    if len(fields) != _N_FIELDS:
        raise ValueError(f"video row of {len(fields)} fields, not {_N_FIELDS}")
    fields[_STATUS_AT] = _STATUS_OF_VALUE[fields[_STATUS_AT]]
    counts = fields[_COUNTS_AT]
    if counts is not None:
        fields[_COUNTS_AT] = MappingProxyType(counts)
    video: Video = _tuple_new(Video, fields)
    return video


def replace(video: Video, **changes: Any) -> Video:
    """``Video._replace``, with a misspelt field a TypeError (as ``dataclasses.replace`` raised)."""
    unknown = changes.keys() - _VIDEO_FIELDS
    if unknown:
        raise TypeError(f"Video has no field(s) {sorted(unknown)}")
    return video._replace(**changes)


class _Draft:
    """A video being changed inside one :meth:`Projector.apply_all` call: Video's fields, mutable (setting
    a slot is cheap); frozen into a Video when the call ends."""

    __slots__ = _VIDEO_FIELDS
    video_id: str
    status: Status
    failures: int
    starts: int
    attempt: int
    started_seq: int
    started_at: str | None
    not_before: str | None
    error: str | None
    error_kind: str | None
    failed_at: str | None
    completed_at: str | None
    counts: Mapping[str, float] | None
    imported: bool
    retry_delay: float | None
    skipped: bool
    skip_reason: str | None
    priority_boost: int
    redo: bool
    entry_hash: str | None
    removed: bool
    entry_changed: bool


_draft_setters = tuple(getattr(_Draft, name).__set__ for name in _VIDEO_FIELDS)
_draft_values = attrgetter(*_VIDEO_FIELDS)  # a draft's fields as a tuple, in C


def _draft(v: Video) -> _Draft:
    d = _Draft.__new__(_Draft)
    for set_field, value in zip(_draft_setters, v, strict=True):
        set_field(d, value)
    return d


def _freeze(d: _Draft) -> Video:
    video: Video = _tuple_new(Video, _draft_values(d))
    return video


class Session(_NamedTuple):
    """Daemon run-time bookkeeping, for elapsed time and rate. (Like State, a named tuple rather than a
    dataclass: nkoctl status's fold of a running daemon's tail imports this module, and dataclasses with
    inspect, ast and dis cost it ~6 ms.)"""

    active_seconds: float = 0.0  # closed daemon sessions
    open_since: str | None = None  # ts of the daemon_started not yet closed
    pid: int | None = None
    # The open session's length as of its latest event, measured by the daemon on the monotonic clock
    # (`session_seconds` on its events); None in logs older than that field: then the wall clock is used.
    open_seconds: float | None = None


_EMPTY: Mapping[str, Any] = MappingProxyType({})  # (immutable: one default shared by every State)


class State(_NamedTuple):
    """The fold's result: what the log says, at `seq`. Immutable (a named tuple; see Session)."""

    seq: int = 0
    offset: int = 0  # not part of the meaning: where in the log `seq` ends (set by the reader)
    log_id: str | None = None
    created_at: str | None = None
    last_ts: str | None = None
    videos: Mapping[str, Video] = _EMPTY
    totals: Mapping[str, float] = _EMPTY
    completed_by_nkod: int = 0  # completions in this log not from import (for the rate)
    session: Session = Session()
    manifest_problems: tuple[Mapping[str, Any], ...] = ()
    # The order videos became runnable (interrupted ones, pending ones): part of the meaning, since it is
    # the order they run in; kept here so a state rebuilt from a snapshot runs them in the same order.
    redo_order: tuple[str, ...] = ()
    queue_order: tuple[str, ...] = ()
    paused: bool = False  # nkoctl pause: no new video starts until nkoctl resume
    # Videos found by `nkoctl add` and [[sources]] (videos_discovered): video_id → its entry (video_id, url,
    # title, priority, site, site_id, source); the first entry for an id wins. A manifest line of the same id
    # wins over it when the daemon runs (decide.available_entries).
    discovered: Mapping[str, Mapping[str, Any]] = _EMPTY
    # Each source's last refresh: name → {url, last_refresh, count, new, total, last_error, last_error_at, adhoc}.
    sources: Mapping[str, Mapping[str, Any]] = _EMPTY


def state_of_doc(doc: Mapping[str, Any], videos: dict[str, Video]) -> State:
    """The State a snapshot's "state" document describes, with its `videos` already built (here, not in
    nkod.snapshot, so that nkoctl status's fast path builds it without importing orjson)."""
    s = doc["session"]
    return State(
        seq=doc["seq"],
        offset=doc["offset"],
        log_id=doc["log_id"],
        created_at=doc["created_at"],
        last_ts=doc["last_ts"],
        videos=MappingProxyType(videos),
        totals=MappingProxyType(dict(doc["totals"])),
        completed_by_nkod=doc["completed_by_nkod"],
        session=Session(
            active_seconds=s["active_seconds"],
            open_since=s["open_since"],
            pid=s["pid"],
            open_seconds=s.get("open_seconds"),
        ),
        manifest_problems=tuple(doc["manifest_problems"]),
        redo_order=tuple(doc.get("redo", ())),
        queue_order=tuple(doc.get("queue", ())),
        paused=doc.get("paused") is True,
        discovered=MappingProxyType({entry["video_id"]: entry for entry in doc.get("discovered", ())}),
        sources=MappingProxyType(dict(doc.get("sources", {}))),
    )


def format_ts(dt: datetime) -> str:
    """UTC time as the log writes it: 2026-11-26T15:00:00.000000Z (by hand: strftime costs 4 µs)."""
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}Z"
    )


def parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def try_parse_ts(ts: object) -> datetime | None:
    """`ts` as an aware datetime, or None when it is not a timestamp the log writes."""
    if not isinstance(ts, str):
        return None
    try:
        dt = parse_ts(ts)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else None


def seconds_between(start: str, end: str) -> float:
    a, b = try_parse_ts(start), try_parse_ts(end)
    return max(0.0, (b - a).total_seconds()) if a is not None and b is not None else 0.0


# -- reading event fields: a checksummed line can hold any JSON value, and the fold must never raise ----
# (a log nkod wrote must always replay). A value of the wrong type is treated as absent.
MAX_COUNT = 2**53


def _text(value: object, default: str | None = None) -> str | None:
    return value if isinstance(value, str) else default


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _ts_or_none(value: object) -> str | None:
    return value if try_parse_ts(value) is not None else None  # type: ignore[return-value]


def _counts(value: object) -> dict[str, float]:
    """The numeric counts in `value`: a non-mapping is no counts; a non-finite or huge value is skipped."""
    if not isinstance(value, Mapping):
        return {}
    return {
        k: v
        for k, v in value.items()
        if isinstance(k, str)
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and abs(v) <= MAX_COUNT
    }


def _problem(value: object) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("path"), str)
        and isinstance(value.get("line"), int)
        and isinstance(value.get("error"), str)
    )


def _session_length(p: Projector, end_ts: str | None) -> float:
    """How long the open session ran: the daemon's monotonic count if its events carry one (immune to
    wall-clock steps), else the wall clock from its daemon_started to `end_ts` (logs older than that)."""
    if p.open_seconds is not None:
        return p.open_seconds
    s = p._session
    if s.open_since is None or end_ts is None:
        return 0.0
    return seconds_between(s.open_since, end_ts)


_status_of = attrgetter("status")
_video_id_of = attrgetter("video_id")
_NO_VIDEO = SimpleNamespace(status=None, video_id=None)


def _dict_copy(videos: Mapping[str, Video]) -> dict[str, Video]:
    """A dict of `videos` (a read-only view's copy is the C copy of the dict under it, ~10x dict(view))."""
    copied = videos.copy() if isinstance(videos, MappingProxyType | dict) else None
    return copied if type(copied) is dict else dict(videos)


def _in_status(order: Sequence[str], videos: Mapping[str, Video], status: Status) -> dict[str, None]:
    """The ids in `order` (kept) of the videos in `status`, by identity, in C-level passes (no Python
    loop per id: a million-video queue). Each id kept is one the videos hold already (its Video's own
    `video_id`, or its key in `videos`), not the one in `order` (a snapshot's order list parses its own
    copies: a million of them kept, ~57 MB, and slower lookups that must compare the characters)."""
    if not order:
        return {}
    # Most often (a big manifest added and not yet started) `order` is the videos' own order: checked in
    # passes over the videos in memory order, it then needs no lookup by id (~3x faster at a million).
    own = list(compress(videos, map(is_, map(_status_of, videos.values()), repeat(status))))
    if len(own) == len(order) and own == list(order):
        return dict.fromkeys(own)
    found = tuple(map(videos.get, order, repeat(_NO_VIDEO)))
    return dict.fromkeys(compress(map(_video_id_of, found), map(is_, map(_status_of, found), repeat(status))))


_NUMBER = frozenset((int, float))  # not bool: True is not a duration
_PENDING, _RUNNING, _INTERRUPTED, _COMPLETED = Status.PENDING, Status.RUNNING, Status.INTERRUPTED, Status.COMPLETED


class Projector:
    """The fold, kept open. ``apply(event)`` mutates this projector only; ``state()`` freezes a copy."""

    def __init__(self, state: State | None = None) -> None:
        s = state or State()
        self.seq = s.seq
        self.offset = s.offset
        self.log_id = s.log_id
        self.created_at = s.created_at
        self.last_ts = s.last_ts
        self.videos: dict[str, Video] = _dict_copy(s.videos)
        self.totals: dict[str, float] = dict(s.totals)
        self.completed_by_nkod = s.completed_by_nkod
        self._session = s.session
        # Kept apart from the frozen Session: it changes with nearly every event, and a new Session per
        # event would cost the replay's hot path.
        self.open_seconds = s.session.open_seconds
        self.manifest_problems = s.manifest_problems
        self.paused = s.paused
        self._drafts: dict[str, _Draft] = {}  # the videos the running apply_all call changes, in place
        # Indexes so the daemon never scans every video per decision: interrupted videos (redone first)
        # and pending ones, each in the order they became runnable; and how many are in each status.
        # Built in C-level passes over the videos (a million-video snapshot: one Python loop per video with
        # a few dict updates each cost ~1 s); the statuses are compared by identity (Status's hash is Python).
        videos = self.videos
        interrupted, pending = Status.INTERRUPTED, Status.PENDING
        self.redo: dict[str, None] = _in_status(s.redo_order, videos, interrupted)
        self.queue: dict[str, None] = _in_status(s.queue_order, videos, pending)
        self.discovered: dict[str, Mapping[str, Any]] = dict(s.discovered)
        self.sources: dict[str, Mapping[str, Any]] = dict(s.sources)
        statuses = list(map(_status_of, videos.values()))
        self.status_counts: dict[Status, int] = {status: statuses.count(status) for status in Status}
        # A state without the order (a snapshot older than it): what remains goes in video order.
        if self.status_counts[interrupted] != len(self.redo):
            for vid, v in videos.items():
                if v.status is interrupted:
                    self.redo.setdefault(vid, None)
        if self.status_counts[pending] != len(self.queue):
            for vid, v in videos.items():
                if v.status is pending:
                    self.queue.setdefault(vid, None)
        # Prioritized videos still waiting, in the order they were prioritized (see steering.run_order).
        boosted = [v for v in videos.values() if v.priority_boost]
        boosted.sort(key=lambda v: v.priority_boost)
        self.boosted: dict[str, None] = dict.fromkeys(v.video_id for v in boosted)

    # -- reading ------------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        s = self._session
        if s.open_seconds == self.open_seconds:
            return s
        return Session(s.active_seconds, s.open_since, s.pid, self.open_seconds)

    def state(self) -> State:
        return State(
            seq=self.seq,
            offset=self.offset,
            log_id=self.log_id,
            created_at=self.created_at,
            last_ts=self.last_ts,
            videos=MappingProxyType(dict(self.videos)),
            totals=MappingProxyType(dict(self.totals)),
            completed_by_nkod=self.completed_by_nkod,
            session=self.session,
            manifest_problems=self.manifest_problems,
            redo_order=tuple(self.redo),
            queue_order=tuple(self.queue),
            paused=self.paused,
            discovered=MappingProxyType(dict(self.discovered)),
            sources=MappingProxyType(dict(self.sources)),
        )

    # -- the fold -----------------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        self.apply_all((event,))

    def apply_all(self, events: Iterable[Event]) -> None:
        mutators = _MUTATORS
        last = self.seq
        try:
            for event in events:  # once per event of a replay: kept lean
                seq = event["seq"]
                if seq != last + 1:
                    raise ValueError(f"event seq {seq} does not follow {last}")
                kind = event["type"]
                mutate = mutators.get(kind)
                if mutate is not None:  # an unknown type of the same version changes nothing
                    mutate(self, event)
                secs = event.get("session_seconds")  # on nearly every event a daemon writes
                if secs is not None:
                    if secs.__class__ is float:  # _note_session_seconds, inline
                        if (
                            self._session.open_since is not None
                            and 0 <= secs < math.inf
                            and (self.open_seconds is None or secs > self.open_seconds)
                        ):
                            self.open_seconds = secs
                    else:
                        self._note_session_seconds(secs)
                self.seq = last = seq
                if kind != "log_repaired" or "backup" not in event:
                    # nkoctl fsck's repair note is not the daemon's word: it must not stretch a session's time
                    self.last_ts = event["ts"]
        finally:
            # What this call changed, frozen: from now on nothing changes these values in place.
            videos = self.videos
            for vid, d in self._drafts.items():
                videos[vid] = _freeze(d)
            self._drafts.clear()

    # -- helpers for mutators -------------------------------------------------------------------
    def _note_session_seconds(self, secs: Any) -> None:
        """The daemon's monotonic count on an event of the open session: it only grows (a hand-made log
        cannot shrink it); a value that is not a number, or outside a session, is ignored."""
        if secs.__class__ not in _NUMBER or not isinstance(secs, int | float) or self._session.open_since is None:
            return
        if 0 <= secs < math.inf and (self.open_seconds is None or secs > self.open_seconds):
            self.open_seconds = float(secs)

    def _add_totals(self, counts: Mapping[str, float], sign: int) -> None:
        for key, value in counts.items():
            self.totals[key] = self.totals.get(key, 0) + sign * value

    def _current(self, vid: str) -> Video | _Draft | None:
        """`vid` as this apply_all call sees it (its draft, if an event of the call changed it)."""
        return self._drafts.get(vid) or self.videos.get(vid)

    def _edit(self, vid: str) -> tuple[_Draft, Status | None, Mapping[str, float] | None]:
        """`vid`'s draft in this apply_all call (made from its Video on first touch, or new), to be changed
        and then passed to :meth:`_settle`; with its status and counts before (None: a new video)."""
        d = self._drafts.get(vid)
        if d is not None:
            return d, d.status, d.counts
        v = self.videos.get(vid)
        if v is None:
            v = Video(video_id=vid)
            self.videos[vid] = v  # its place in the order: the draft is frozen into it at the end
            d = self._drafts[vid] = _draft(v)
            return d, None, None
        d = self._drafts[vid] = _draft(v)
        return d, v.status, v.counts

    def _settle(self, v: _Draft, old: Status | None, old_counts: Mapping[str, float] | None) -> None:
        """Bring the indexes and totals up to date after :meth:`_edit`'s draft changed."""
        new = v.status
        if new is not old:
            counts = self.status_counts
            if old is not None:
                counts[old] -= 1
            counts[new] += 1
            vid = v.video_id
            if new is Status.INTERRUPTED:
                self.queue.pop(vid, None)
                self.redo.setdefault(vid, None)
            elif new is Status.PENDING:
                self.redo.pop(vid, None)
                self.queue.setdefault(vid, None)  # a video already waiting keeps its place
            else:
                self.redo.pop(vid, None)
                self.queue.pop(vid, None)
        if old is Status.COMPLETED and old_counts:
            self._add_totals(old_counts, -1)
        if new is Status.COMPLETED and v.counts:
            self._add_totals(v.counts, +1)


# -- one mutator per event type --------------------------------------------------------------------


def _mutate_log_created(p: Projector, e: Event) -> None:
    p.log_id = _text(e.get("log_id"))
    p.created_at = e["ts"]


def _mutate_daemon_started(p: Projector, e: Event) -> None:
    s = p._session
    active = s.active_seconds
    if s.open_since is not None:  # the previous daemon died: close at its last word
        active += _session_length(p, p.last_ts)
    p._session = Session(active_seconds=active, open_since=_ts_or_none(e.get("ts")), pid=_int(e.get("pid"), 0) or None)
    p.open_seconds = None


def _mutate_daemon_stopped(p: Projector, e: Event) -> None:
    s = p._session
    active = s.active_seconds
    if s.open_since is not None:
        if "session_seconds" in e:
            p._note_session_seconds(e["session_seconds"])
        active += _session_length(p, e["ts"])
    p._session = Session(active_seconds=active, open_since=None, pid=None)
    p.open_seconds = None


def _mutate_videos_added(p: Projector, e: Event) -> None:
    ids = e.get("video_ids")
    videos, counts, redo, queue = p.videos, p.status_counts, p.redo, p.queue
    pending = Status.PENDING
    for vid in ids if isinstance(ids, list) else ():
        if isinstance(vid, str) and vid and vid not in videos:
            # What _edit + _settle do for a new video left as it is, without its draft: a million-line
            # manifest's videos_added made a draft and two Videos per video, and their freed blocks, between
            # the kept ones, stayed in the daemon's memory (~190 MB). A later event of the same call copies
            # it into a draft as it would any video. (A PristineVideo: a 1-tuple, not Video's 22.)
            videos[vid] = _tuple_new(PristineVideo, (vid,))
            counts[pending] += 1
            redo.pop(vid, None)
            queue.setdefault(vid, None)


def _vid(e: Event) -> str | None:
    """The video an event names (a non-empty string id); an event naming none changes nothing."""
    vid = e.get("video_id")
    return vid if isinstance(vid, str) and vid else None


# Each video mutator reads the event's fields (any JSON value: one of the wrong type counts as absent)
# before it edits the video.


# The three mutators of nearly every event (a video started, retried, interrupted) do what `_vid`, `_int`,
# `_text`, `_edit` and `_settle` do, inline where the event is as nkod writes it (a call costs ~0.1 µs; a
# replay of a million events spent ~40 % of its fold in those calls), and call them otherwise.


def _mutate_video_started(p: Projector, e: Event) -> None:
    vid = e.get("video_id")
    if vid.__class__ is not str or not vid:
        vid = _vid(e)
        if vid is None:
            return
    attempt, orig, ts = e.get("attempt"), e.get("orig_seq"), e["ts"]
    started_seq = e["seq"] if orig is None else _int(orig, e["seq"])
    v = p._drafts.get(vid)
    if v is None:
        v, old, old_counts = p._edit(vid)
    else:
        old, old_counts = v.status, v.counts
    v.status = _RUNNING
    v.starts = v.starts + 1
    v.attempt = attempt if attempt.__class__ is int else _int(attempt, v.attempt + 1)
    v.started_seq = started_seq  # fsck --repair renumbers; outputs name the original
    v.started_at = ts
    v.not_before = None
    v.retry_delay = None
    v.priority_boost = 0  # a boost is spent by the start it asked for
    entry_hash = e.get("entry_hash")
    v.entry_hash = entry_hash if entry_hash is None or entry_hash.__class__ is str else _text(entry_hash)
    p.boosted.pop(vid, None)
    if old is not _RUNNING:  # _settle, for a video that now runs
        counts = p.status_counts
        if old is not None:
            counts[old] -= 1
        counts[_RUNNING] += 1
        p.redo.pop(vid, None)
        p.queue.pop(vid, None)
    if old is _COMPLETED and old_counts:
        p._add_totals(old_counts, -1)


def _mutate_video_completed(p: Projector, e: Event) -> None:
    vid = _vid(e)
    if vid is None:
        return
    counts, ts = MappingProxyType(_counts(e.get("counts"))), e["ts"]
    v, old, old_counts = p._edit(vid)
    v.status = Status.COMPLETED
    v.counts = counts
    v.completed_at = ts
    v.error = None
    v.error_kind = None
    v.not_before = None
    v.retry_delay = None
    v.redo = False
    v.entry_changed = False  # completed from the entry it has now
    v.skipped = False  # a cancel (skip) that came as it completed must not keep a later redo from running
    v.skip_reason = None
    p._settle(v, old, old_counts)
    p.completed_by_nkod += 1


def _mutate_video_retry_scheduled(p: Projector, e: Event) -> None:
    vid = e.get("video_id")
    if vid.__class__ is not str or not vid:
        vid = _vid(e)
        if vid is None:
            return
    not_before = e.get("not_before")
    if not_before.__class__ is str:  # _ts_or_none
        try:
            if parse_ts(not_before).tzinfo is None:
                not_before = None
        except ValueError:
            not_before = None
    else:
        not_before = _ts_or_none(not_before)
    error, kind, delay = e.get("error"), e.get("error_kind"), e.get("delay_seconds")
    if error.__class__ is not str:
        error = _text(error, "no error text")
    if kind.__class__ is not str:
        kind = _text(kind, "transient")
    # _retry_delay (max(0.0, x) as a comparison: the same 0.0 for -0.0 and NaN)
    delay = (delay if delay > 0.0 else 0.0) if delay.__class__ is float else _retry_delay(e)
    v = p._drafts.get(vid)
    if v is None:
        v, old, old_counts = p._edit(vid)
    else:
        old, old_counts = v.status, v.counts
    v.status = _PENDING
    v.failures = v.failures + 1
    v.not_before = not_before
    v.retry_delay = delay
    v.error = error
    v.error_kind = kind
    if old is not _PENDING:  # _settle, for a video that now waits
        counts = p.status_counts
        if old is not None:
            counts[old] -= 1
        counts[_PENDING] += 1
        p.redo.pop(vid, None)
        p.queue.setdefault(v.video_id, None)  # a video already waiting keeps its place
    if old is _COMPLETED and old_counts:
        p._add_totals(old_counts, -1)


def _retry_delay(e: Event) -> float | None:
    """The backoff a retry was scheduled with: its `delay_seconds`, else what lies between the event's own
    time and its `not_before` (the two were taken from the same clock reading). None if neither reads."""
    delay = e.get("delay_seconds")
    if isinstance(delay, int | float) and not isinstance(delay, bool):
        return max(0.0, float(delay))
    start, end = try_parse_ts(e.get("ts")), try_parse_ts(e.get("not_before"))
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _mutate_video_failed(p: Projector, e: Event) -> None:
    vid = _vid(e)
    if vid is None:
        return
    error, kind, ts = _text(e.get("error"), "no error text"), _text(e.get("error_kind"), "permanent"), e["ts"]
    v, old, old_counts = p._edit(vid)
    v.status = Status.FAILED
    v.failures = v.failures + 1
    v.error = error
    v.error_kind = kind
    v.failed_at = ts
    v.not_before = None
    v.retry_delay = None
    p._settle(v, old, old_counts)


def _mutate_video_interrupted(p: Projector, e: Event) -> None:
    vid = e.get("video_id")
    if vid.__class__ is not str or not vid:
        vid = _vid(e)
        if vid is None:
            return
    reason = e.get("reason")
    if reason is not None and reason.__class__ is not str:
        reason = _text(reason)
    v = p._drafts.get(vid)
    if v is None:
        v, old, old_counts = p._edit(vid)
    else:
        old, old_counts = v.status, v.counts
    v.status = _INTERRUPTED
    v.error = reason
    v.error_kind = "interrupted"
    if old is not _INTERRUPTED:  # _settle, for a video to be redone first
        counts = p.status_counts
        if old is not None:
            counts[old] -= 1
        counts[_INTERRUPTED] += 1
        p.queue.pop(vid, None)
        p.redo.setdefault(v.video_id, None)  # (its own id string: kept, not the event's)
    if old is _COMPLETED and old_counts:
        p._add_totals(old_counts, -1)


def _mutate_retry_requested(p: Projector, e: Event) -> None:
    vid = _vid(e)
    if vid is None:
        return
    now = p._current(vid)
    if now is None or now.status in (Status.RUNNING, Status.COMPLETED):
        return
    v, old, old_counts = p._edit(vid)
    # an interrupted video stays interrupted (it runs first anyway); a failed one waits again
    v.status = Status.PENDING if v.status is not Status.INTERRUPTED else Status.INTERRUPTED
    v.failures = 0
    v.not_before = None
    v.retry_delay = None
    v.error = None
    v.error_kind = None
    v.failed_at = None
    p._settle(v, old, old_counts)


def _mutate_video_imported(p: Projector, e: Event) -> None:
    vid = _vid(e)
    if vid is None:
        return
    completed, when = e.get("status") == "completed", _text(e.get("timestamp")) or e["ts"]
    error = None if completed else (_text(e.get("error")) or "failed in the old run (imported)")
    v, old, old_counts = p._edit(vid)
    if completed:
        v.status = Status.COMPLETED
        v.completed_at = when
    else:
        v.status = Status.FAILED
        v.error = error
        v.error_kind = "permanent"
        v.failed_at = when
    v.imported = True
    p._settle(v, old, old_counts)


def _mutate_manifest_checked(p: Projector, e: Event) -> None:
    problems = e.get("problems")
    p.manifest_problems = tuple(x for x in problems if _problem(x)) if isinstance(problems, list) else ()


# -- steering (nkoctl pause/resume/skip/unskip/prioritize/redo/cancel; decided in nkod.steering) ----


def _mutate_queue_paused(p: Projector, e: Event) -> None:
    p.paused = True


def _mutate_queue_resumed(p: Projector, e: Event) -> None:
    p.paused = False


def _mutate_video_skipped(p: Projector, e: Event) -> None:
    vid = _vid(e)
    if vid is None:
        return
    reason = _text(e.get("reason"))
    v, old, old_counts = p._edit(vid)
    v.skipped = True
    v.skip_reason = reason
    p._settle(v, old, old_counts)


def _mutate_video_unskipped(p: Projector, e: Event) -> None:
    vid = _vid(e)
    if vid is None or p._current(vid) is None:
        return
    v, old, old_counts = p._edit(vid)
    v.skipped = False
    v.skip_reason = None
    p._settle(v, old, old_counts)


def _mutate_video_prioritized(p: Projector, e: Event) -> None:
    vid = _vid(e)
    current = p._current(vid) if vid is not None else None
    if vid is None or current is None or current.status in (Status.RUNNING, Status.COMPLETED):
        return
    v, old, old_counts = p._edit(vid)
    v.priority_boost = e["seq"]
    p._settle(v, old, old_counts)
    p.boosted.pop(vid, None)
    p.boosted[vid] = None  # prioritized again: goes behind those prioritized since


def _mutate_video_redo_requested(p: Projector, e: Event) -> None:
    vid = _vid(e)
    current = p._current(vid) if vid is not None else None
    if vid is None or current is None or current.status is not Status.COMPLETED:
        return
    v, old, old_counts = p._edit(vid)
    v.status = Status.PENDING
    v.redo = True
    v.failures = 0
    v.not_before = None
    v.retry_delay = None
    p._settle(v, old, old_counts)


def _mutate_video_cancel_requested(p: Projector, e: Event) -> None:
    """The record of a cancel request; what it does comes as video_interrupted (and video_skipped)."""


def _mutate_manifest_compared(p: Projector, e: Event) -> None:
    """The daemon compared the videos with the entries they may run from: ids whose entry went away
    (`removed`) or came back (`restored`), completed ones whose entry changed (`changed`) or changed back
    (`unchanged`). Ids the log does not know are ignored."""
    for key, field_name, value in (
        ("removed", "removed", True),
        ("restored", "removed", False),
        ("changed", "entry_changed", True),
        ("unchanged", "entry_changed", False),
    ):
        ids = e.get(key)
        for vid in ids if isinstance(ids, list) else ():
            if not isinstance(vid, str) or p._current(vid) is None:
                continue
            v, old, old_counts = p._edit(vid)
            setattr(v, field_name, value)
            p._settle(v, old, old_counts)


def _discovered_entry(raw: object, source: str | None) -> dict[str, Any] | None:
    """A ``videos_discovered`` entry as the fold keeps it, or None when it cannot name a runnable video
    (an unsafe id, no http(s) URL). Fields of the wrong type are dropped or defaulted."""
    if not isinstance(raw, Mapping):
        return None
    vid, url = raw.get("video_id"), raw.get("url")
    if not isinstance(vid, str) or not VIDEO_ID_RE.fullmatch(vid):
        return None
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        return None
    return {
        "video_id": vid,
        "url": url,
        "title": _text(raw.get("title")),
        "priority": _int(raw.get("priority"), 0),
        "site": _text(raw.get("site"), "") or "",
        "site_id": _text(raw.get("site_id"), "") or "",
        "source": source,
    }


def _mutate_videos_discovered(p: Projector, e: Event) -> None:
    entries = e.get("entries")
    source = _text(e.get("source"))
    for raw in entries if isinstance(entries, list) else ():
        entry = _discovered_entry(raw, source)
        if entry is None or entry["video_id"] in p.discovered:
            continue
        vid = entry["video_id"]
        p.discovered[vid] = entry
        if vid not in p.videos:
            v, old, old_counts = p._edit(vid)  # a new pending video, in the order it was found
            p._settle(v, old, old_counts)


def _source_name(e: Event) -> str | None:
    return _text(e.get("name")) or _text(e.get("url"))


def _mutate_source_refreshed(p: Projector, e: Event) -> None:
    name = _source_name(e)
    if not name:
        return
    old = p.sources.get(name, {})
    new = max(0, _int(e.get("new")))
    p.sources[name] = {
        **old,
        "url": _text(e.get("url"), name),
        "last_refresh": e["ts"],
        "count": max(0, _int(e.get("count"))),
        "new": new,
        "total": _int(old.get("total")) + new,
        "last_error": None,
        "adhoc": e.get("adhoc") is True,
    }


def _mutate_source_refresh_failed(p: Projector, e: Event) -> None:
    name = _source_name(e)
    if not name:
        return
    old = p.sources.get(name, {})
    p.sources[name] = {
        "total": 0,
        "count": 0,
        "last_refresh": None,
        **old,
        "url": _text(e.get("url"), name),
        "last_error": _text(e.get("error"), "no error text"),
        "last_error_at": e["ts"],
        "adhoc": e.get("adhoc") is True,
    }


_MUTATORS = {name.removeprefix("_mutate_"): fn for name, fn in list(globals().items()) if name.startswith("_mutate_")}


def apply(state: State, event: Event) -> State:
    """The state after one more event. Pure: `state` is not changed."""
    return fold([event], state)


def fold(events: Iterable[Event], state: State | None = None) -> State:
    """The state after `events`, starting from `state` (empty by default). Pure."""
    projector = Projector(state)
    projector.apply_all(events)
    return projector.state()
