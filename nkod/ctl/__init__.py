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

SYSTEM_DATA_DIR_NAME = "/var/lib/nkod"  # base.SYSTEM_DATA_DIR as a str (no pathlib on status's fast path)

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
    "data_dir_name",
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
        import os

        from nkod import proclocks

        root, as_json = data_dir_name(plain[0]), plain[1]
        # Who holds the lock: its holder answers F_GETLK at once; else /proc/locks is read in a thread, its
        # wait overlapping the imports below.
        proclocks.prefetch(os.path.join(root, "nkod.lock"))
        from nkod import statusfast

        code = statusfast.plain_status(root, as_json)  # the snapshot's first line answers the common case
        if code is not None:
            return code
        from nkod.ctl.status import plain_status

        return plain_status(root, as_json)
    from nkod.ctl.cli import main as full_main

    return full_main(argv)


def data_dir_name(given: str | None) -> str:
    """--data-dir, $NKOD_DATA_DIR, $STATE_DIRECTORY, ./data if it exists, the system service's
    /var/lib/nkod if it exists, else ./data (`nkod.ctl.base.resolve_data_dir`, which gives it as a Path)."""
    import os

    if given is not None:
        return given
    for var in ("NKOD_DATA_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return value.split(":")[0]
    if os.path.isdir("data"):
        return "data"
    if os.path.isdir(SYSTEM_DATA_DIR_NAME):
        return SYSTEM_DATA_DIR_NAME
    return "data"


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
