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

from nkod.ctl.base import EXIT_ERROR, EXIT_USAGE, CtlError, resolve_data_dir
from nkod.ctl.history import HistoryCommands
from nkod.ctl.maintenance import MaintenanceCommands
from nkod.ctl.queue import QueueCommands
from nkod.ctl.sources import SourcesCommands
from nkod.ctl.status import StatusCommands


class Ctl(StatusCommands, QueueCommands, HistoryCommands, MaintenanceCommands, SourcesCommands):
    """nkoctl's commands, one group per module of this package."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nkoctl", description="See where nkod stands and steer it.")
    p.add_argument("--data-dir", type=Path, help="data directory (default: $NKOD_DATA_DIR, ./data, /var/lib/nkod)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("status", help="progress, failures, what runs now (works with or without the daemon)")
    s.add_argument("--json", action="store_true", help="machine-readable")
    s.add_argument("--watch", action="store_true", help="refresh live until Ctrl+C")
    s.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    r = sub.add_parser("retry", help="run failed videos again (no IDs: all failed)")
    r.add_argument("ids", nargs="*", metavar="ID")
    r.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a running daemon to confirm")
    pl = sub.add_parser("plan", help="what would run, in order, and what is skipped and why")
    pl.add_argument("--json", action="store_true")
    sh = sub.add_parser("show", help="one video's state and history")
    sh.add_argument("id", metavar="ID")
    lg = sub.add_parser("log", help="print events readably")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    lg.add_argument("-n", "--lines", type=int, help="only the last N events")
    lg.add_argument("--json", action="store_true", help="raw JSON lines")
    lg.add_argument("--video", metavar="ID", help="only this video's events")
    fs = sub.add_parser("fsck", help="check the log; explain damage; --repair fixes it (backup kept)")
    fs.add_argument("--repair", action="store_true")
    rs = sub.add_parser("reset", help="archive the log and outputs and start a fresh run (daemon stopped)")
    rs.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    im = sub.add_parser("import-checkpoint", help="import the old run_extraction.py's checkpoint")
    im.add_argument("file", type=Path)
    im.add_argument("--wait", type=float, default=5.0)
    rp = sub.add_parser(
        "report",
        help="write one self-contained HTML report with plots (needs nkod[report])",
        description="Write one self-contained HTML file (plots inlined, no network needed to open it): progress "
        "and rate, time per video, failures by reason, N'Ko detections and audio per video, dataset totals, "
        "the slowest and the failed videos.",
        epilog="example: nkoctl report -o run.html",
    )
    rp.add_argument("-o", "--output", type=Path, default=Path("report.html"), help="file to write ('-': stdout)")
    cp = sub.add_parser(
        "completion",
        help="print the shell completion script for nkoctl",
        description="Print nkoctl's completion script for bash, zsh or fish (generated from the parser).",
        epilog='example: eval "$(nkoctl completion bash)"   (or: nkoctl completion fish | source)',
    )
    cp.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    ad = sub.add_parser(
        "add",
        usage="%(prog)s [options] URL [URL ...]",
        help="add the videos of URLs: a video, playlist, channel or feed (listed with yt-dlp, nothing downloaded)",
        description="List each URL with yt-dlp's flat extraction (no media downloaded) and add the videos not "
        "known yet (by id, by URL, or as the same site video under another listing); print what is added and "
        "what is skipped and why. All or nothing: if a URL cannot be listed, nothing is added. Exit codes: 0 ok, "
        "1 a URL could not be listed (network, HTTP error, no videos), 2 a bad or unsupported URL.",
        epilog="example: nkoctl add --limit 50 https://www.youtube.com/@handle",
    )
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
    so = sub.add_parser(
        "sources",
        help="followed ([[sources]]) and added sources: last listing, count, last error",
        description="List the [[sources]] of the config file and the URLs given to nkoctl add, each with its "
        "last listing's time, how many videos it listed and added, and its last error.",
        epilog="example: nkoctl sources --config /etc/nkod/nkod.toml",
    )
    so.add_argument("--config", type=Path, help="config file (default: $NKOD_CONFIG, else /etc/nkod/nkod.toml)")
    so.add_argument("--json", action="store_true", help="machine-readable")
    mt = sub.add_parser("metrics", help="Prometheus metrics from the log (for node_exporter's textfile collector)")
    mt.add_argument("-o", "--output", type=Path, help="write this file atomically (e.g. DIR/nkod.prom), not stdout")
    return p


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
                return ctl.retry(args.ids, args.wait)
            case "plan":
                return ctl.plan(args.json)
            case "show":
                return ctl.show(args.id)
            case "log":
                return ctl.log(args.follow, args.lines, args.json, args.video)
            case "fsck":
                return ctl.fsck(args.repair)
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
            case "add":
                return ctl.add(args.urls, args.limit, args.priority, args.dry_run, args.json, args.wait)
            case "sources":
                return ctl.sources(args.config, args.json)
    except CtlError as exc:
        ctl.console.print(f"[red]nkoctl:[/] {exc}", highlight=False)
        return exc.code
    except RequestError as exc:
        ctl.console.print(f"[red]nkoctl:[/] {exc}", highlight=False)
        return EXIT_ERROR
    except PermissionError as exc:
        ctl.console.print(f"[red]nkoctl:[/] {exc} (are you in the nkod group?)", highlight=False)
        return EXIT_ERROR
    return EXIT_USAGE
