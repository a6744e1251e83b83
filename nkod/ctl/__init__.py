"""``nkoctl``: see where things stand and steer the daemon. Never writes the event log (fsck --repair
and reset excepted, and those only while no daemon runs: they take the daemon's lock themselves).

One module per command group: ``status`` (status, metrics), ``queue`` (retry, plan, import-checkpoint),
``history`` (show, log), ``maintenance`` (fsck, reset); ``base`` holds what they share and ``cli`` the parser.
"""

from nkod.ctl.base import EXIT_ERROR, EXIT_LOG, EXIT_USAGE, SYSTEM_DATA_DIR, CtlError, resolve_data_dir
from nkod.ctl.cli import Ctl, build_parser, main
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
