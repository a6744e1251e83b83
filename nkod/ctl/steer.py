"""nkoctl pause, resume, skip, unskip, cancel, prioritize, redo: steering the queue while it runs.

Each is a request file the daemon turns into events (see nkod.steering for what applies to what). Bad ids
are refused here, before anything is written: an unsafe or unknown id exits 2; ids the request cannot apply
to (skip a completed video, redo a pending one…) are named with the reason, and if none is left, exit 1.
"""

from __future__ import annotations

from typing import Any

from nkod import spool, steering
from nkod.ctl.base import EXIT_ERROR, EXIT_USAGE, CtlBase, CtlError
from nkod.manifest import id_problem


class SteerCommands(CtlBase):
    def pause(self, now: bool, wait: float) -> int:
        path = spool.submit(self.paths.requests, "pause", now=now)
        what = "pause (running videos stopped, redone first on resume)" if now else "pause (running videos finish)"
        self._report_submission(path, what, wait)
        return 0

    def resume(self, wait: float) -> int:
        path = spool.submit(self.paths.requests, "resume")
        self._report_submission(path, "resume", wait)
        return 0

    def steer(self, kind: str, ids: list[str], wait: float, **body: Any) -> int:
        """skip / unskip / cancel / prioritize / redo of `ids`."""
        for vid in ids:
            why = id_problem(vid)
            if why:
                raise CtlError(f"{kind}: {why}", EXIT_USAGE)
        p = self.load()
        available = self.available_entries(p) or {}
        shown, _queued = self.with_queued_requests(p, available, self.daemon_pid())
        videos = steering.with_entries(shown.videos, available)
        unknown = [vid for vid in dict.fromkeys(ids) if vid not in videos]
        if unknown:
            raise CtlError(
                f"{kind}: unknown video id(s): {', '.join(unknown)} (not in {self.paths.log} nor the manifest);"
                " nothing was requested",
                EXIT_USAGE,
            )
        _drafts, refused = steering.request_drafts(videos, kind, {"video_ids": ids, **body}, "preview")
        for vid, why in refused:
            self.console.print(f"[yellow]not {kind}[/] {vid}: {why}", highlight=False)
        targets = [vid for vid in dict.fromkeys(ids) if vid not in dict(refused)]
        if not targets:
            raise CtlError(f"{kind}: nothing to do; nothing was requested", EXIT_ERROR)
        path = spool.submit(self.paths.requests, kind, video_ids=targets, **body)
        self._report_submission(path, f"{kind} of {len(targets)} video(s): {', '.join(targets[:10])}", wait)
        return 0
