"""The processor interface: what runs inside a worker process for one video.

A processor is any importable function::

    def process(video: dict, workdir: pathlib.Path, report: nkod.Report) -> dict

`video` is the manifest line (``video_id`` plus ``path`` or ``url`` and any other keys; a relative
``path`` is already resolved against the manifest's directory). Everything the processor writes into
`workdir` becomes ``output/<video_id>/`` once it returns, committed atomically by the daemon. It returns
counts: ``frames``, ``nko_detections``, ``audio_segments`` (missing ones count as 0; more keys allowed,
numbers only; ``nko_detection_off: 1`` makes ``nkoctl status`` say detection was off for the video). The
worker fsyncs everything in `workdir` after the processor returns. To fail it raises
:class:`nkod.TransientError` or :class:`nkod.PermanentError`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from nkod.errors import ConfigError

REQUIRED_COUNTS = ("frames", "nko_detections", "audio_segments")
BUILTIN_PROCESSOR = "nkod.pipeline:process"


class ProgressSink(Protocol):
    def __call__(self, message: Mapping[str, Any]) -> None: ...


class Report:
    """Handed to a processor: progress reporting plus the context it may need.

    Call it to report progress: ``report("frames", done=10, total=100)``. The daemon logs the stage
    and shows it in ``nkoctl status``. Attributes:

    - ``settings``: the ``[pipeline]`` table of the config (a plain dict);
    - ``cache_dir``: a directory shared by all workers and kept across runs (write atomically);
    - ``attempt``: 1 for the first try of this video, 2 for the first retry, ...
    - ``workers``: how many videos the daemon runs at once (to share the CPUs fairly).
    """

    def __init__(
        self,
        sink: ProgressSink,
        *,
        settings: Mapping[str, Any],
        cache_dir: Path,
        attempt: int,
        workers: int = 1,
    ) -> None:
        self._sink = sink
        self.workers = workers
        self.settings: dict[str, Any] = dict(settings)
        self.cache_dir = cache_dir
        self.attempt = attempt

    def __call__(self, stage: str, **fields: Any) -> None:
        self._sink({"stage": stage, **fields})


Processor = Callable[[dict[str, Any], Path, Report], Mapping[str, Any]]


def load_processor(spec: str) -> Processor:
    """Import ``MODULE:FUNC``; a clear ConfigError when it is not there or not callable."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError("--processor", None, f"{spec!r} is not of the form MODULE:FUNC")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("--processor", None, f"cannot import module {module_name!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError("--processor", None, f"{module_name!r} has no callable {func_name!r}")
    return func  # type: ignore[no-any-return]


MAX_COUNT = 2**53  # beyond this a float cannot count in ones: no real count is this big
ERROR_KINDS = ("transient", "permanent", "storage")


def bad_count(key: object, value: object) -> str | None:
    """Why `key`=`value` cannot be a count (None if it can): a string key, a finite number, not huge."""
    if not isinstance(key, str):
        return f"count with non-string key {key!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"count {key}={value!r} is not a number"
    if not math.isfinite(value):
        return f"count {key}={value!r} is not a finite number"
    if abs(value) > MAX_COUNT:
        return f"count {key}={value!r} is too large (limit {MAX_COUNT})"
    return None


def normalise_counts(raw: object) -> dict[str, int | float]:
    """The counts a processor returned, checked: a mapping of names to finite numbers, required keys filled.

    Raises ValueError naming the bad key and value: nothing that cannot replay may reach the log."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"processor returned {type(raw).__name__}, expected a dict of counts")
    counts: dict[str, int | float] = {}
    for key, value in raw.items():
        problem = bad_count(key, value)
        if problem is not None:
            raise ValueError(f"processor returned {problem}")
        counts[key] = value
    for key in REQUIRED_COUNTS:
        counts.setdefault(key, 0)
    return counts


def coerce_retry_after(value: object) -> float | None:
    """A Retry-After in seconds as a float, or None when it is not one (missing, garbage, negative, nan).

    Accepts numbers and numeric strings ("120", as read from an HTTP header)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
