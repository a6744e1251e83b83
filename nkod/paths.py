"""Everything under the data directory, by name (shared by the daemon and nkoctl, importing neither)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from nkod.config import Config


@dataclass(frozen=True)
class Paths:
    """Everything under the data directory, by name."""

    root: Path

    @property
    def log(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def log_vouch(self) -> Path:
        """The running daemon's record of the log's stat and CRC (derived; see eventlog.LogWriter)."""
        return self.root / "events.crc"

    @property
    def snapshot(self) -> Path:
        return self.root / "snapshot.json"

    @property
    def requests(self) -> Path:
        return self.root / "requests"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def lock(self) -> Path:
        return self.root / "nkod.lock"

    @property
    def activity(self) -> Path:
        return self.root / "activity.json"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    def manifest(self, config: Config) -> Path:
        return self.root / config.daemon.manifest
