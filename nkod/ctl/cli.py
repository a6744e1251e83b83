"""nkoctl's command line: the parser and the dispatch to the command groups."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nkod.errors import RequestError

if TYPE_CHECKING:
    pass

from nkod.ctl.base import EXIT_INTERRUPTED, EXIT_USAGE, CtlError, resolve_data_dir
from nkod.ctl.history import HistoryCommands
from nkod.ctl.maintenance import MaintenanceCommands
from nkod.ctl.queue import QueueCommands
from nkod.ctl.sources import SourcesCommands
from nkod.ctl.status import StatusCommands
from nkod.ctl.steer import SteerCommands


class Ctl(StatusCommands, QueueCommands, HistoryCommands, MaintenanceCommands, SteerCommands, SourcesCommands):
    """nkoctl's commands, one group per module of this package."""


DATA_DIR_HELP = "data directory (default: $NKOD_DATA_DIR, $STATE_DIRECTORY, ./data if it exists, /var/lib/nkod)"


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, *, help: str, description: str, example: str
) -> argparse.ArgumentParser:
    """A subcommand with its one-line help, a description and an example (its epilog); it takes --data-dir too,
    so `nkoctl status --data-dir X` works as well as `nkoctl --data-dir X status`."""
    p = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # SUPPRESS: given after the subcommand it wins; not given, the one before the subcommand stands.
    p.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, metavar="DIR", help=DATA_DIR_HELP)
    return p


def build_parser() -> argparse.ArgumentParser:
    from nkod import __version__

    p = argparse.ArgumentParser(
        prog="nkoctl",
        description="See where nkod stands and steer it.",
        epilog="example:\n  nkoctl status\n  nkoctl --data-dir /var/lib/nkod show xsUrdpKD5wM",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--version", action="version", version=f"nkoctl {__version__}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = add_command(
        sub,
        "status",
        help="progress, failures, what runs now (works with or without the daemon)",
        description="Progress, failures and what runs now, from the log (works whether nkod runs or not). "
        "--watch refreshes until Ctrl+C (exit 130); piped or with --json it prints one JSON document per "
        "refresh (JSON lines).",
        example="nkoctl status\nnkoctl status --json | jq .failed\nnkoctl status --watch --interval 5",
    )
    s.add_argument("--json", action="store_true", help="machine-readable JSON (with --watch: one line per refresh)")
    s.add_argument("--watch", action="store_true", help="refresh live until Ctrl+C")
    s.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    r = add_command(
        sub,
        "retry",
        help="run failed videos again (no IDs: all failed)",
        description="Ask nkod to run failed videos again (all of them when no ID is given). The request is a "
        "file in requests/; a stopped nkod applies it when it starts.",
        example="nkoctl retry\nnkoctl retry xsUrdpKD5wM abc123",
    )
    r.add_argument("ids", nargs="*", metavar="ID", help="video ids to retry (default: every failed video)")
    r.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a running daemon to confirm")
    r.add_argument("--json", action="store_true", help="print what was queued and skipped as JSON")
    pl = add_command(
        sub,
        "plan",
        help="what would run, in order, and what is skipped and why",
        description="What nkod would run next, in order, and what it skips or waits for, and why.",
        example="nkoctl plan\nnkoctl plan --json",
    )
    pl.add_argument("--json", action="store_true", help="machine-readable JSON")
    sh = add_command(
        sub,
        "show",
        help="one video's state and history",
        description="One video's state (attempts, error, counts, output) and every event about it.",
        example="nkoctl show xsUrdpKD5wM\nnkoctl show --json xsUrdpKD5wM",
    )
    sh.add_argument("id", metavar="ID", help="the video id")
    sh.add_argument("--json", action="store_true", help="the state and history as JSON")
    lg = add_command(
        sub,
        "log",
        help="print events readably",
        description="Print the log's events, one line each (--json: the log's lines byte for byte). "
        "-f follows new events until Ctrl+C (exit 130).",
        example="nkoctl log -n 20\nnkoctl log -f --video xsUrdpKD5wM\n"
        "nkoctl log --json | jq -c 'select(.type==\"video_failed\")'",
    )
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    lg.add_argument("-n", "--lines", type=int, help="only the last N events")
    lg.add_argument("--json", action="store_true", help="the log's lines as they are (JSON lines, checksums kept)")
    lg.add_argument("--video", metavar="ID", help="only this video's events")
    fs = add_command(
        sub,
        "fsck",
        help="check the log; explain damage; --repair fixes it (backup kept)",
        description="Check events.jsonl line by line and explain any damage. --repair (nkod stopped) keeps every "
        "good event, keeps a backup, and keeps the file's owner and mode.",
        example="nkoctl fsck\nsudo systemctl stop nkod && sudo nkoctl fsck --repair",
    )
    fs.add_argument("--repair", action="store_true", help="repair the log (nkod must be stopped; a backup is kept)")
    fs.add_argument("--json", action="store_true", help="the findings (and the repair) as JSON")
    rs = add_command(
        sub,
        "reset",
        help="archive the log and outputs and start a fresh run (daemon stopped)",
        description="Move the log, snapshot, checkpoints and outputs into archive/STAMP, so the next nkod start "
        "begins a fresh run. nkod must be stopped.",
        example="nkoctl reset\nnkoctl reset --yes",
    )
    rs.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    im = add_command(
        sub,
        "import-checkpoint",
        help="import the old run_extraction.py's checkpoint",
        description="Import the old run_extraction.py's extraction_checkpoint.json: its completed videos are "
        "not run again, its failed ones are recorded failed.",
        example="nkoctl import-checkpoint old/extraction_checkpoint.json",
    )
    im.add_argument("file", type=Path, help="the extraction_checkpoint.json to import")
    im.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a running daemon to confirm")
    rp = add_command(
        sub,
        "report",
        help="write one self-contained HTML report with plots (needs nkod[report])",
        description="Write one self-contained HTML file (plots inlined, no network needed to open it): progress "
        "and rate, time per video, failures by reason, N'Ko detections and audio per video, dataset totals, "
        "the slowest and the failed videos.",
        example="nkoctl report -o run.html",
    )
    rp.add_argument("-o", "--output", type=Path, default=Path("report.html"), help="file to write ('-': stdout)")
    cp = add_command(
        sub,
        "completion",
        help="print the shell completion script for nkoctl",
        description="Print nkoctl's completion script for bash, zsh or fish (generated from the parser).",
        example='eval "$(nkoctl completion bash)"   (or: nkoctl completion fish | source)',
    )
    cp.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    mt = add_command(
        sub,
        "metrics",
        help="Prometheus metrics from the log (for node_exporter's textfile collector)",
        description="Print the daemon's Prometheus metrics computed from the log, for when nkod is not running "
        "(node_exporter's textfile collector).",
        example="nkoctl metrics -o /var/lib/node_exporter/textfile_collector/nkod.prom",
    )
    ad = add_command(
        sub,
        "add",
        help="add the videos of URLs: a video, playlist, channel or feed (listed with yt-dlp, nothing downloaded)",
        description="List each URL with yt-dlp's flat extraction (no media downloaded) and add the videos not "
        "known yet (by id, by URL, or as the same site video under another listing); print what is added and "
        "what is skipped and why. All or nothing: if a URL cannot be listed, nothing is added. Exit codes: 0 ok, "
        "1 a URL could not be listed (network, HTTP error, no videos), 2 a bad or unsupported URL.",
        example="nkoctl add --limit 50 https://www.youtube.com/@handle",
    )
    ad.usage = "%(prog)s [options] URL [URL ...]"
    ad.add_argument(
        "urls", nargs="+", metavar="URL", help="a video, playlist, channel (/@handle, /channel/UC...) or feed"
    )
    ad.add_argument("--limit", type=int, metavar="N", help="at most the first N videos of each URL's listing")
    ad.add_argument(
        "--priority", type=int, default=0, metavar="P", help="videos with a higher priority run first (default 0)"
    )
    ad.add_argument("--dry-run", action="store_true", help="list and show what would be added; add nothing")
    ad.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    ad.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a running daemon to confirm")
    so = add_command(
        sub,
        "sources",
        help="followed ([[sources]]) and added sources: last listing, count, last error",
        description="List the [[sources]] of the config file and the URLs given to nkoctl add, each with its "
        "last listing's time, how many videos it listed and added, and its last error.",
        example="nkoctl sources --config /etc/nkod/nkod.toml",
    )
    so.add_argument("--config", type=Path, help="config file (default: $NKOD_CONFIG, else /etc/nkod/nkod.toml)")
    so.add_argument("--json", action="store_true", help="machine-readable")
    mt.add_argument("-o", "--output", type=Path, help="write this file atomically (e.g. DIR/nkod.prom), not stdout")
    _add_steering(sub)
    return p


def _add_steering(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """pause, resume, skip, unskip, cancel, prioritize, redo (nkod/ctl/steer.py)."""
    wait_help = "seconds to wait for a running daemon to confirm"
    pa = add_command(
        sub,
        "pause",
        help="start no new video until resume (running ones finish; --now stops them)",
        description="Pause the queue: no new video starts until `nkoctl resume`. Running videos finish, or with "
        "--now are stopped and recorded interrupted (redone first on resume). Survives restarts and kill -9.",
        example="nkoctl pause --now",
    )
    pa.add_argument("--now", action="store_true", help="also stop the running videos now (recorded interrupted)")
    re_ = add_command(
        sub,
        "resume",
        help="start videos again after pause",
        description="Resume a paused queue: interrupted videos first, then the rest in order.",
        example="nkoctl resume",
    )
    for cmd in (pa, re_):
        cmd.add_argument("--wait", type=float, default=5.0, help=wait_help)
    specs = {
        "skip": (
            "never start these videos (not counted as remaining)",
            "Skip videos: they never start and leave the remaining count and the ETA; status lists them apart. "
            "A running video cannot be skipped: cancel it.",
            'example: nkoctl skip abc123 def456 --reason "no text in it"',
        ),
        "unskip": (
            "undo skip: the videos may run again",
            "Let skipped videos run again, in their old place in the queue.",
            "example: nkoctl unskip abc123",
        ),
        "cancel": (
            "stop running videos now (recorded interrupted, and skipped unless --requeue)",
            "Stop running videos now: each is recorded interrupted, and skipped unless --requeue (then it runs "
            "again first).",
            "example: nkoctl cancel abc123 --requeue",
        ),
        "prioritize": (
            "run these videos next",
            "Run these videos next, before any other waiting video, in the order given (interrupted videos still "
            "go first). A manifest line's `priority` key (an integer, higher first) orders the rest.",
            "example: nkoctl prioritize abc123 def456",
        ),
        "redo": (
            "process completed videos again (old output archived when the new one commits)",
            "Process completed videos again, e.g. after changing detector settings. The previous output stays in "
            "output/ID/ until the new one is committed; then it is moved to archive/redo/ID-TIME/. If the redo "
            "fails, the video is failed (nkoctl retry runs it again) and its previous output stays in place.",
            "example: nkoctl redo abc123",
        ),
    }
    for name, (short, long, example) in specs.items():
        cmd = add_command(sub, name, help=short, description=long, example=example.removeprefix("example: "))
        cmd.add_argument("ids", nargs="+", metavar="ID", help="video id(s), as in the manifest")
        if name in ("skip", "cancel"):
            cmd.add_argument("--reason", help="why (shown in status and the log)")
        if name == "cancel":
            cmd.add_argument("--requeue", action="store_true", help="run it again (first) instead of skipping it")
        cmd.add_argument("--wait", type=float, default=5.0, help=wait_help)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if argv is None and "_ARGCOMPLETE" in os.environ:  # a completion request from the shell script
        from nkod.completion import complete

        complete(parser)
    args = parser.parse_args(argv)
    ctl = Ctl(resolve_data_dir(args.data_dir))
    try:
        match args.command:
            case "status":
                return ctl.status(args.json, args.watch, args.interval)
            case "retry":
                return ctl.retry(args.ids, args.wait, args.json)
            case "plan":
                return ctl.plan(args.json)
            case "show":
                return ctl.show(args.id, args.json)
            case "log":
                return ctl.log(args.follow, args.lines, args.json, args.video)
            case "fsck":
                return ctl.fsck(args.repair, args.json)
            case "reset":
                return ctl.reset(args.yes)
            case "import-checkpoint":
                return ctl.import_checkpoint(args.file, args.wait)
            case "report":
                from nkod.report import write_report

                return write_report(ctl, args.output)
            case "completion":
                from nkod.completion import script

                sys.stdout.write(script(args.shell))
                return 0
            case "metrics":
                return ctl.metrics(args.output)
            case "pause":
                return ctl.pause(args.now, args.wait)
            case "resume":
                return ctl.resume(args.wait)
            case "skip" | "cancel":
                extra = {"reason": args.reason} if args.reason else {}
                if args.command == "cancel":
                    extra["requeue"] = args.requeue
                return ctl.steer(args.command, args.ids, args.wait, **extra)
            case "unskip" | "prioritize" | "redo":
                return ctl.steer(args.command, args.ids, args.wait)
            case "add":
                return ctl.add(args.urls, args.limit, args.priority, args.dry_run, args.json, args.wait)
            case "sources":
                return ctl.sources(args.config, args.json)
    except (CtlError, RequestError, PermissionError) as exc:
        return ctl.failed(exc)
    except KeyboardInterrupt:
        # Ctrl+C (a long plan, fsck or --wait): no traceback; what was submitted stays queued, and nothing
        # nkoctl writes is left half-written (its files are replaced whole).
        sys.stderr.write("\nnkoctl: interrupted\n")
        return EXIT_INTERRUPTED
    return EXIT_USAGE
