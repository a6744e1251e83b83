"""The annotated example config (``data/nkod.example.toml``), generated from the config schema.

Keys and default values come from the dataclasses that parse the file (``DaemonConfig``, ``HooksConfig``,
the pipeline's settings), so the example cannot drift from what nkod accepts; the comments are here, one per
key, and a test checks that every key has one. Regenerate with ``python scripts/make_example_config.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from nkod.config import DaemonConfig, DaskConfig, SourceConfig, _render_table, _toml_value
from nkod.hooks import HooksConfig

HEADER = """\
# nkod configuration. Install as /etc/nkod/nkod.toml for the systemd service (the unit sets
# NKOD_CONFIG=/etc/nkod/nkod.toml), or pass `--config FILE` / set $NKOD_CONFIG.
# Every key is optional; the values below are the built-in defaults. `nkod --print-config`
# shows the effective config; `nkod --check-config` checks a file. Command-line flags
# (--workers, --processor) override this file. `systemctl reload nkod` checks, then re-reads
# this file without stopping work in progress.
#
# Generated from the config schema by scripts/make_example_config.py: edit that, not this file.
"""

DAEMON_DOCS: Mapping[str, str] = {
    "workers": "Videos processed at once, each in its own worker process.",
    "processor": "The processor, as MODULE:FUNC. The default is the built-in pipeline.",
    "manifest": "The video list, relative to the data dir (/var/lib/nkod under systemd).",
    "max_attempts": "Attempts per video before a transient error (network, rate limit, timeout) makes it failed.",
    "backoff_initial": "Seconds before the first retry.",
    "backoff_factor": "Each further retry waits this many times longer.",
    "backoff_max": "The longest wait between attempts, also for a server's Retry-After and across clock steps.",
    "video_timeout": "A video still running after this many seconds is stopped and retried (0 = no limit).",
    "stop_grace": "On SIGTERM / `systemctl stop`: seconds a running video may take to finish before it is\n"
    "stopped and recorded interrupted (it is redone first on the next start).",
    "snapshot_every": "Write a snapshot (faster start-up) every this many events.",
    "views_interval": "Seconds between rewrites of the derived views (checkpoints/, activity.json).",
    "rescan_interval": "Seconds between re-reads of videos.jsonl and requests/ (changes are also noticed at once).",
    "log_format": 'auto | console | journal | plain | json. "auto" picks journal under systemd.',
    "metrics_listen": 'HOST:PORT of a Prometheus /metrics endpoint, e.g. "127.0.0.1:9464" (empty: off).\n'
    "Read at start only.",
    "executor": 'Where videos run: "local" (child processes of the daemon) or "dask" (a Dask cluster:\n'
    "see [dask] below; `workers` is then the number of videos in flight across the cluster). Read at start only.",
}

DASK_NOTE = """\
# The Dask cluster, with executor = "dask" (pip install 'nkod[dask]'); the README's "Running on a
# cluster" has the scheduler and worker units. Read at start only. Uncomment and edit:"""

DASK_EXAMPLE: Mapping[str, object] = {
    "scheduler_address": "tcp://10.0.0.5:8786",
    "shared_dir": "/srv/nkod-shared",
    "orphan_grace": 60.0,
    "connect_timeout": 10.0,
}

DASK_DOCS: Mapping[str, str] = {
    "scheduler_address": "The running `dask scheduler` (or scheduler_file = the file it writes with --scheduler-file).",
    "shared_dir": "Mounted at the same path on every host (NFS, CephFS): staging/ and cache/ live here.\n"
    "The data dir's output/ must be on the same filesystem (outputs are committed by a rename);\n"
    "the log stays on the daemon's local disk.",
    "orphan_grace": "Scheduler lost: seconds a running video may still deliver its output; then it is recorded\n"
    "interrupted and runs first once a scheduler is back.",
    "connect_timeout": "Seconds for each attempt to reach the scheduler (unreachable at start: exit 75).",
}

HOOKS_DOCS: Mapping[str, str] = {
    "on_completed": "Run after a video's output is committed and recorded,\n"
    'e.g. ["/usr/local/bin/notify", "done"].\n'
    "Each hook is an argv list (no shell) with the event in NKOD_* environment variables\n"
    "(NKOD_EVENT, NKOD_VIDEO_ID, NKOD_ERROR, NKOD_ATTEMPT, NKOD_DATA_DIR, ...). Empty: none.",
    "on_failed": "Run when a video is recorded failed (attempts used, or a permanent error).",
    "on_idle": "Run once each time the work runs out (nothing left to run or running).",
    "on_stopped": "Run when the daemon stops (it waits for this one, at most `timeout`).",
    "timeout": "Seconds a hook may run before its process group is killed.",
}

SOURCES_NOTE = """\
# Followed sources (none by default): channels, playlists or feeds the daemon lists with yt-dlp at
# start and every `refresh` seconds, in a child process; videos not seen before are added by
# themselves. One [[sources]] table per source; `nkoctl sources` shows each one's last refresh.
# For a one-off list use `nkoctl add URL` instead. Uncomment and edit:"""

SOURCES_EXAMPLE: Mapping[str, object] = {
    "url": "https://www.youtube.com/@handle/videos",
    "name": "handle",
    "priority": 10,
    "limit": 50,
    "refresh": 3600.0,
}

SOURCES_DOCS: Mapping[str, str] = {
    "url": "A channel (/@handle, /channel/UC..., its /videos tab), a playlist, an RSS feed...",
    "name": "Shown by nkoctl sources and in the log (default: the URL).",
    "priority": "Videos of higher-priority sources run first (the old --all-channels order).",
    "limit": "Only the listing's first N videos (0: all); `max_videos` is the same key.",
    "refresh": "Seconds between listings (0: only at start).",
}

PIPELINE_NOTE = """\
# The built-in pipeline (download, frames, N'Ko detection, audio segments): every key with its
# default. What each one does: the README's "Configuration: the [pipeline] table"."""


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in text.splitlines()]


def _documented_table(name: str, values: Mapping[str, object], docs: Mapping[str, str]) -> list[str]:
    lines = [f"[{name}]"]
    for key, value in values.items():
        lines.extend(_comment(docs[key]))
        lines.append(f"{key} = {_toml_value(value)}")
    return lines


def render_example() -> str:
    """The whole example file: every key of every table, at its default."""
    from nkod.pipeline.settings import effective_table, parse_settings

    daemon = {f.name: getattr(DaemonConfig(), f.name) for f in dataclasses.fields(DaemonConfig)}
    hooks = {f.name: list(v) if isinstance(v := getattr(HooksConfig(), f.name), tuple) else v
             for f in dataclasses.fields(HooksConfig)}  # fmt: skip
    lines = [HEADER]
    lines.extend(_documented_table("daemon", daemon, DAEMON_DOCS))
    lines.append("")
    lines.extend(_documented_table("hooks", hooks, HOOKS_DOCS))
    lines.append("")
    lines.append(SOURCES_NOTE)
    defaults = SourceConfig()
    lines.append("# [[sources]]")
    for key, value in SOURCES_EXAMPLE.items():
        assert hasattr(defaults, key)  # the example names only real keys
        lines.extend(_comment(SOURCES_DOCS[key]))
        lines.append(f"# {key} = {_toml_value(value)}")
    lines.append("")
    lines.append(DASK_NOTE)
    lines.append("# [dask]")
    dask_defaults = DaskConfig()
    for key, value in DASK_EXAMPLE.items():
        assert hasattr(dask_defaults, key)
        lines.extend(_comment(DASK_DOCS[key]))
        lines.append(f"# {key} = {_toml_value(value)}")
    lines.append("")
    lines.append(PIPELINE_NOTE)
    lines.extend(_render_table("pipeline", effective_table(parse_settings({}, "<defaults>"))))
    return "\n".join(lines) + "\n"
