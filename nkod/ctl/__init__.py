"""``nkoctl``: see where things stand and steer the daemon. Never writes the event log (fsck --repair
and reset excepted, and those only while no daemon runs: they take the daemon's lock themselves).

One module per command group: ``status`` (status, metrics), ``queue`` (retry, plan, import-checkpoint),
``history`` (show, log), ``maintenance`` (fsck, reset); ``base`` holds what they share and ``cli`` the parser.

The names below are imported when first asked for: ``nkoctl status`` (typed many times a day, polled by
monitoring) loads only what it uses, not every command group and the parser of every subcommand.
"""

from __future__ import annotations

import sys

from nkod import _lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from nkod.ctl.base import EXIT_ERROR, EXIT_LOG, EXIT_USAGE, SYSTEM_DATA_DIR, CtlError, resolve_data_dir
    from nkod.ctl.cli import Ctl, build_parser
    from nkod.ctl.history import tail_offset
    from nkod.ctl.maintenance import Fsck, committed_outputs
    from nkod.ctl.queue import MAX_CHECKPOINT_BYTES, parse_seed_checkpoint
    from nkod.ctl.status import Follower

__all__ = [
    "EXIT_ERROR",
    "EXIT_LOG",
    "EXIT_USAGE",
    "MAX_CHECKPOINT_BYTES",
    "SYSTEM_DATA_DIR",
    "Ctl",
    "CtlError",
    "Follower",
    "Fsck",
    "build_parser",
    "committed_outputs",
    "main",
    "parse_seed_checkpoint",
    "resolve_data_dir",
    "tail_offset",
]

_LAZY = {
    "EXIT_ERROR": "nkod.ctl.base",
    "EXIT_LOG": "nkod.ctl.base",
    "EXIT_USAGE": "nkod.ctl.base",
    "SYSTEM_DATA_DIR": "nkod.ctl.base",
    "CtlError": "nkod.ctl.base",
    "resolve_data_dir": "nkod.ctl.base",
    "Ctl": "nkod.ctl.cli",
    "build_parser": "nkod.ctl.cli",
    "tail_offset": "nkod.ctl.history",
    "Fsck": "nkod.ctl.maintenance",
    "committed_outputs": "nkod.ctl.maintenance",
    "MAX_CHECKPOINT_BYTES": "nkod.ctl.queue",
    "parse_seed_checkpoint": "nkod.ctl.queue",
    "Follower": "nkod.ctl.status",
}


__getattr__ = _lazy_exports(__name__, _LAZY, globals())


def main(argv: list[str] | None = None) -> int:
    """nkoctl. A plain ``status [--json] [--data-dir DIR]`` runs without building the parser of every
    subcommand (~10 ms) nor importing the other command groups; anything else goes to the full parser."""
    plain = _plain_status(sys.argv[1:] if argv is None else argv)
    if plain is not None:
        from nkod import proclocks

        proclocks.prefetch()  # its wait overlaps the imports below
        from nkod import statusfast

        code = statusfast.plain_status(*plain)  # the snapshot's first line answers the common case
        if code is not None:
            return code
        from nkod.ctl.status import plain_status

        return plain_status(*plain)
    from nkod.ctl.cli import main as full_main

    return full_main(argv)


def _plain_status(args: list[str]) -> tuple[str | None, bool] | None:
    """(the --data-dir given or None, --json) when `args` is exactly what the fast path handles as argparse
    would: `status` once, `--json` after it, `--data-dir DIR` (or `--data-dir=DIR`) before and/or after it
    (after wins, as with the parser). None for anything else (help, --watch, abbreviations, odd values...)."""
    import os

    if "_ARGCOMPLETE" in os.environ:  # a completion request: the parser answers it
        return None
    data_dir: str | None = None
    as_json = seen_status = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "status" and not seen_status:
            seen_status = True
        elif arg == "--json" and seen_status and not as_json:
            as_json = True
        elif arg == "--data-dir" or arg.startswith("--data-dir="):
            if arg == "--data-dir":
                i += 1
                if i == len(args):
                    return None
                value = args[i]
            else:
                value = arg.removeprefix("--data-dir=")
            if not value or value.startswith("-"):
                return None
            data_dir = value
        else:
            return None
        i += 1
    return (data_dir, as_json) if seen_status else None
