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
from nkod.ctl.status import StatusCommands
from nkod.ctl.steer import SteerCommands


class Ctl(StatusCommands, QueueCommands, HistoryCommands, MaintenanceCommands, SteerCommands):
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
    mt = sub.add_parser("metrics", help="Prometheus metrics from the log (for node_exporter's textfile collector)")
    mt.add_argument("-o", "--output", type=Path, help="write this file atomically (e.g. DIR/nkod.prom), not stdout")
    _add_steering(sub)
    return p


def _add_steering(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """pause, resume, skip, unskip, cancel, prioritize, redo (nkod/ctl/steer.py)."""
    wait_help = "seconds to wait for a running daemon to confirm"
    pa = sub.add_parser(
        "pause",
        help="start no new video until resume (running ones finish; --now stops them)",
        description="Pause the queue: no new video starts until `nkoctl resume`. Running videos finish, or with "
        "--now are stopped and recorded interrupted (redone first on resume). Survives restarts and kill -9.",
        epilog="example: nkoctl pause --now",
    )
    pa.add_argument("--now", action="store_true", help="also stop the running videos now (recorded interrupted)")
    re_ = sub.add_parser(
        "resume",
        help="start videos again after pause",
        description="Resume a paused queue: interrupted videos first, then the rest in order.",
        epilog="example: nkoctl resume",
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
        cmd = sub.add_parser(name, help=short, description=long, epilog=example)
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
