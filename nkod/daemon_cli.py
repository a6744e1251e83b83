"""``nkod``: the daemon's command line."""

from __future__ import annotations

from nkod import _early_signals

_early_signals.install()  # before the heavier imports below: a stop during start-up is remembered

import argparse  # noqa: E402
import faulthandler  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from nkod import __version__, headcrc  # noqa: E402
from nkod.processor import BUILTIN_PROCESSOR  # noqa: E402


def default_data_dir() -> Path:
    """--data-dir, else $NKOD_DATA_DIR, else $STATE_DIRECTORY (systemd StateDirectory=), else ./data."""
    for var in ("NKOD_DATA_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return Path(value.split(":")[0])
    return Path("data")


def may_create_data_dir(given: Path | None) -> bool:
    """nkod makes its data dir only where it is the usual place: systemd's StateDirectory (which systemd
    makes anyway) or the default ./data. One named by --data-dir or $NKOD_DATA_DIR must exist."""
    return given is None and not os.environ.get("NKOD_DATA_DIR")


def default_config_path() -> Path | None:
    value = os.environ.get("NKOD_CONFIG")
    return Path(value) if value else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nkod",
        description="Work through videos.jsonl: download, frames, N'Ko detection, audio segments. "
        "Resumes by itself; never loses or repeats finished work.",
    )
    p.add_argument("--data-dir", type=Path, help="data directory (default: $NKOD_DATA_DIR, $STATE_DIRECTORY, ./data)")
    p.add_argument("--config", type=Path, help="TOML config file (default: $NKOD_CONFIG, else built-in defaults)")
    p.add_argument("--workers", type=int, help="videos processed at once, each in its own process")
    p.add_argument("--once", action="store_true", help="process what is runnable, then exit 0")
    p.add_argument("--processor", metavar="MODULE:FUNC", help=f"processor to run (default {BUILTIN_PROCESSOR})")
    p.add_argument("--log-format", choices=("auto", "console", "journal", "plain", "json"))
    p.add_argument(
        "--executor",
        choices=("local", "dask"),
        help="where videos run: local child processes (default) or a Dask cluster ([dask] in the config)",
    )
    p.add_argument(
        "--scheduler-address",
        metavar="tcp://HOST:PORT",
        help="the Dask scheduler to run videos on ([dask] scheduler_address)",
    )
    p.add_argument(
        "--shared-dir",
        metavar="DIR",
        help="with --executor dask: a directory mounted at the same path on every host ([dask] shared_dir)",
    )
    p.add_argument("--print-config", action="store_true", help="print the effective config as TOML and exit")
    p.add_argument(
        "--check-config",
        action="store_true",
        help="check the config file (and the processor it names) and exit: 0 if good, 2 naming the file and key if"
        " not (the systemd unit's ExecReload= runs this first, so a bad file makes `systemctl reload` fail)",
    )
    p.add_argument("--version", action="version", version=f"nkod {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    faulthandler.enable()  # a watchdog SIGABRT leaves the stuck stack in the journal
    args = build_parser().parse_args(argv)
    if not (args.check_config or args.print_config):
        # After a crash the log's head is read for its CRC before READY: begun now, it overlaps the imports.
        headcrc.start(str(args.data_dir or default_data_dir()))
    from nkod.config import load_config, render_toml, with_overrides
    from nkod.errors import ConfigError
    from nkod.logs import configure as configure_logging
    from nkod.logs import get as get_logger

    config_path = args.config or default_config_path()
    overrides = {
        "workers": args.workers,
        "processor": args.processor,
        "log_format": args.log_format,
        "executor": args.executor,
        "scheduler_address": args.scheduler_address,
        "shared_dir": args.shared_dir,
    }
    try:
        config = with_overrides(load_config(config_path), **overrides)
    except ConfigError as exc:
        print(f"nkod: config error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        from nkod.processor import load_processor

        try:
            load_processor(config.daemon.processor)
        except ConfigError as exc:
            print(f"nkod: config error: {exc}", file=sys.stderr)
            return 2
        print(f"nkod: config OK ({config.source})")
        return 0
    if args.print_config:
        pipeline = None
        if config.daemon.processor == BUILTIN_PROCESSOR:
            from nkod.pipeline.settings import effective_table, parse_settings

            pipeline = effective_table(parse_settings(config.pipeline, config.source))
        sys.stdout.write(render_toml(config, pipeline))
        return 0
    configure_logging(config.daemon.log_format)
    from nkod.daemon import Daemon
    from nkod.processor import load_processor

    try:
        load_processor(config.daemon.processor)  # fail now, not in every worker
    except ConfigError as exc:
        get_logger().error("config_error", error=str(exc))
        return 2
    data_dir = (args.data_dir or default_data_dir()).resolve()
    if not data_dir.is_dir() and not may_create_data_dir(args.data_dir):
        # A typo in --data-dir (or $NKOD_DATA_DIR) must not start a fresh, empty run somewhere else.
        get_logger().error(
            "data_dir_missing",
            path=str(data_dir),
            hint="create it first (mkdir -p) or fix --data-dir / $NKOD_DATA_DIR",
        )
        return 2
    daemon = Daemon(data_dir, config, config_path=config_path, once=args.once, overrides=overrides)
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
