"""nkoctl fsck and reset: checking and repairing the log, starting a fresh run (daemon stopped)."""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nkod import codec
from nkod.fsutil import fsync_dir, fsync_file, make_dir, owner_for
from nkod.manifest import id_problem
from nkod.paths import Paths
from nkod.state import Projector, Status, format_ts

if TYPE_CHECKING:
    from rich.console import Console

from nkod.ctl.base import EXIT_ERROR, EXIT_LOG, CtlBase, CtlError, literal


class MaintenanceCommands(CtlBase):
    def fsck(self, repair: bool, as_json: bool = False) -> int:
        fsck = Fsck(self.paths, self.console)
        code = fsck.run(repair)
        if as_json:  # the findings on stdout; the explanations stay on stderr
            sys.stdout.write(orjson.dumps(fsck.doc | {"exit_code": code}, option=orjson.OPT_INDENT_2).decode() + "\n")
        return code

    def reset(self, yes: bool, confirm: Callable[[str], str] = input) -> int:
        held = self._take_lock("reset")
        try:
            if not self.paths.log.exists():
                self.console.print(f"nothing to reset: {self.paths.log} does not exist", markup=False)
                return 0
            p = self.load()
            done = sum(1 for v in p.videos.values() if v.status is Status.COMPLETED)
            if not yes:
                answer = confirm(
                    f"Archive the log ({p.seq} events, {done} completed videos) and the outputs, and start "
                    f"a fresh run? Type 'reset' to confirm: "
                )
                if answer.strip() != "reset":
                    self.console.print("not reset", markup=False)
                    return EXIT_ERROR
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            target = self.paths.archive / stamp
            try:
                # run as root (sudo nkoctl reset), the archive is still the data dir owner's, as the rest
                make_dir(target, owner_for(self.paths.root))
                for item in (self.paths.log, self.paths.snapshot, self.paths.checkpoints):
                    if item.exists():
                        os.rename(item, target / item.name)
                if self.paths.output.exists():
                    self._archive_output(target, stamp)
            except OSError as exc:
                raise CtlError(
                    f"reset stopped: {exc.strerror or exc}: {exc.filename or ''}; what was moved is in {target}"
                ) from exc
            self.console.print(f"archived to {target}; the next nkod start begins a fresh run", markup=False)
            return 0
        finally:
            held.release()

    def _archive_output(self, target: Path, stamp: str) -> None:
        """Move output/ into the archive; output/ as a mount point (its own file system) cannot be
        moved, so its contents are moved into ``output/.archive/STAMP`` on that same file system."""
        out = self.paths.output
        try:
            os.rename(out, target / out.name)
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EBUSY):
                raise
        inner = out / ".archive" / stamp
        inner.mkdir(parents=True)
        for entry in sorted(os.listdir(out)):
            if entry != ".archive":
                os.rename(out / entry, inner / entry)
        self.console.print(
            f"{out} is a mount point (a separate file system), so it stays where it is: its contents were "
            f"moved to {inner} on that file system, not to {target}. Delete them there when no longer needed.",
            markup=False,
        )


class Fsck:
    """Explains what is wrong with a log and repairs it (keeping a backup) when asked."""

    def __init__(self, paths: Paths, console: Console) -> None:
        self.paths = paths
        self.console = console
        # What was found and done, for `fsck --json`.
        self.doc: dict[str, Any] = {"path": str(paths.log), "exists": False, "ok": True, "repaired": False}

    def run(self, repair: bool) -> int:
        path = self.paths.log
        if not path.exists():
            self.console.print(f"{path}: no log yet; nothing to check", markup=False)
            return 0
        # --repair takes the daemon's lock before reading, so no append can slip in between.
        held = CtlBase(self.paths.root, self.console)._take_lock("fsck --repair") if repair else None
        try:
            return self._check(path, repair)
        finally:
            if held is not None:
                held.release()

    def _check(self, path: Path, repair: bool) -> int:
        good, bad, gaps, torn_at, newer = self._classify(path)
        self.doc |= {
            "exists": True,
            "ok": not (bad or gaps or newer) and torn_at is None,
            "events": len(good),
            "damaged": [{"line": n, "offset": off, "reason": reason} for n, off, reason, _raw in bad],
            "gaps": [{"line": n, "offset": off, "reason": reason} for n, off, reason in gaps],
            "torn_at": torn_at,
            "newer_version": None if newer is None else {"line": newer[0], "version": newer[1]},
        }
        if newer:
            line_no, version = newer
            self.console.print(
                f"{path}: line {line_no} has format version {version}, this nkod reads up to"
                f" {codec.FORMAT_VERSION}: it was written by a newer nkod. Upgrade nkod; nothing was changed.",
                highlight=False,
                markup=False,
            )
            return EXIT_LOG
        if not bad and not gaps and torn_at is None:
            self.console.print(f"{path}: OK, {len(good)} events, seq 1..{len(good)}", markup=False)
            return 0
        for line_no, offset, reason, raw in bad:
            self.console.print(
                f"{path}: line {line_no} (byte offset {offset}): {reason}", highlight=False, markup=False
            )
            self.console.print(f"    {raw[:200]!r}", highlight=False, markup=False)
        for line_no, offset, reason in gaps:
            self.console.print(
                f"{path}: line {line_no} (byte offset {offset}): {reason}", highlight=False, markup=False
            )
        if torn_at is not None:
            self.console.print(
                f"{path}: torn tail from byte {torn_at} (a write cut by a crash or power loss)", markup=False
            )
        if not repair:
            self.console.print(
                "run `nkoctl fsck --repair` (with nkod stopped) to repair; a backup is kept", markup=False
            )
            return EXIT_LOG
        return self._repair(path, good, bad, gaps, torn_at)

    def _classify(
        self, path: Path
    ) -> tuple[
        list[dict[str, Any]],
        list[tuple[int, int, str, bytes]],
        list[tuple[int, int, str]],
        int | None,
        tuple[int, int] | None,
    ]:
        """Good events; damaged or repeated lines to drop (line, offset, reason, bytes); seq gaps, whose
        events are kept (line, offset, reason); where a torn tail starts; and the first line of a newer
        format (line, version). Lines are judged by ``codec.check`` and torn tails found by the same rule
        as nkod's reader (eventlog.scan): bad lines after the last line whose checksum holds."""
        data = path.read_bytes()
        good: list[dict[str, Any]] = []
        bad: list[tuple[int, int, str, bytes]] = []
        offset = 0
        raw_lines = data.split(b"\n")
        last = raw_lines.pop()  # after the final newline: b"" unless the last write was torn
        last_checksummed = 0  # the last line whose checksum holds: bad lines before it are damage
        newer: tuple[int, int] | None = None
        decoded: list[tuple[int, int, bytes, dict[str, Any] | None, str]] = []
        for number, raw in enumerate(raw_lines, start=1):
            try:
                e = codec.check(raw)
                decoded.append((number, offset, raw, e, ""))
                last_checksummed = number
            except codec.NewerVersion as exc:
                newer = newer or (number, exc.version)
                last_checksummed = number
            except codec.BadRecord as exc:
                decoded.append((number, offset, raw, None, str(exc)))
                last_checksummed = number
            except codec.LineError as exc:
                decoded.append((number, offset, raw, None, str(exc)))
            offset += len(raw) + 1
        if last:
            try:
                codec.decode(last)
                last_checksummed = len(raw_lines) + 1  # an unterminated but checksummed last line
            except codec.LineError:
                pass
        torn_at: int | None = None
        gaps: list[tuple[int, int, str]] = []
        expect = 1
        for number, off, raw, maybe, reason in decoded:
            if maybe is None:
                if number > last_checksummed:
                    torn_at = off if torn_at is None else torn_at
                else:
                    bad.append((number, off, reason, raw))
                continue
            e = maybe
            if e["seq"] < expect:  # a repeated or out-of-order line: dropped
                bad.append((number, off, f"seq {e['seq']} again (expected {expect})", raw))
                continue
            if e["seq"] > expect:  # lines are missing before this one: it is kept
                gaps.append((number, off, f"seq jumps from {expect - 1} to {e['seq']} (lines missing)"))
            expect = e["seq"] + 1
            good.append(e)
        if last:
            torn_at = offset if torn_at is None else torn_at
        return good, bad, gaps, torn_at, newer

    def _repair(
        self,
        path: Path,
        good: list[dict[str, Any]],
        bad: list[tuple[int, int, str, bytes]],
        gaps: list[tuple[int, int, str]],
        torn_at: int | None,
    ) -> int:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = path.with_name(f"{path.name}.bak-{stamp}")
        import shutil  # only here: status, which imports this module too, should not pay for it

        old = os.stat(path)  # the repaired log keeps its owner, group and mode: the service must still append
        owner = owner_for(self.paths.root)
        shutil.copy2(path, backup)
        if owner is not None:  # sudo nkoctl fsck --repair: the backup is the data dir owner's, like the rest
            os.chown(backup, *owner)
        fsync_file(backup)
        fsync_dir(path.parent)  # the backup exists before the log is touched
        # Keep every good event in order, renumbered so seq is contiguous again, and say what was dropped.
        # orig_seq keeps the number an output's summary.json may name (video_started), across repairs.
        events = []
        for seq, e in enumerate(good, start=1):
            e = dict(e)
            if e["seq"] != seq:
                e.setdefault("orig_seq", e["seq"])
            e["seq"] = seq
            events.append(e)
        dropped = [{"line": n, "offset": off, "reason": reason} for n, off, reason, _raw in bad]
        restored = self._restore_completions(events)
        events.extend(restored)
        events.append(
            {
                "v": codec.FORMAT_VERSION,
                "seq": len(events) + 1,
                "ts": format_ts(datetime.now(UTC)),
                "type": "log_repaired",
                "dropped": dropped,
                "gaps": [{"line": n, "offset": off, "reason": reason} for n, off, reason in gaps],
                "torn_at": torn_at,
                "backup": backup.name,
                "restored": [e["video_id"] for e in restored],
            }
        )
        tmp = path.with_name(f".{path.name}.repair")
        with open(tmp, "wb") as f:
            if os.geteuid() == 0 and (old.st_uid, old.st_gid) != (0, 0):
                os.fchown(f.fileno(), old.st_uid, old.st_gid)
            os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode))
            for e in events:
                f.write(codec.encode(e))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
        self.doc |= {"repaired": True, "backup": str(backup), "restored": [e["video_id"] for e in restored]}
        self.paths.snapshot.unlink(missing_ok=True)  # offsets changed: rebuilt at the next start
        self.console.print(
            f"repaired {path}: kept {len(good)} events, dropped {len(bad)} damaged line(s)"
            + (", cut the torn tail" if torn_at is not None else "")
            + f"; backup at {backup}",
            markup=False,
        )
        for e in restored:
            self.console.print(
                f"restored the completion of {e['video_id']} from {e['restored_from']} (its line was dropped)",
                highlight=False,
                markup=False,
            )
        if bad:
            self.console.print(
                "videos whose events were dropped may run again, except those with a committed output;"
                " nothing completed is deleted",
                markup=False,
            )
        return 0

    def _restore_completions(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``video_completed`` events for committed outputs (``output/<id>/summary.json``) whose completion
        the repaired log lacks (its line was dropped), so a finished video is not redone. Numbered after
        `events`, stamped with the last kept event's time (a repair must not stretch elapsed time)."""
        projector = Projector()
        try:
            projector.apply_all(events)
        except (KeyError, TypeError, ValueError) as exc:
            self.console.print(
                f"[yellow]note:[/] cannot fold the repaired log ({literal(repr(exc))}); no completion restored"
            )
            return []
        ts = events[-1]["ts"] if events else format_ts(datetime.now(UTC))
        restored: list[dict[str, Any]] = []
        for vid, summary_path, summary in committed_outputs(self.paths.output, self.console):
            v = projector.videos.get(vid)
            if v is not None and v.status is Status.COMPLETED:
                continue
            restored.append(
                {
                    "v": codec.FORMAT_VERSION,
                    "seq": len(events) + len(restored) + 1,
                    "ts": ts,
                    "type": "video_completed",
                    "video_id": vid,
                    "attempt": summary["attempt"],
                    "counts": summary["counts"],
                    "recovered": True,
                    # The summary names the seq its start had before any renumbering (orig_seq).
                    "started_seq": summary["started_seq"],
                    "restored_from": str(summary_path.relative_to(self.paths.root)),
                }
            )
        return restored


def committed_outputs(output: Path, console: Console) -> list[tuple[str, Path, dict[str, Any]]]:
    """(video_id, summary path, summary) of each committed output, sorted by id; an unreadable or
    inconsistent summary is named on `console` and skipped."""
    found: list[tuple[str, Path, dict[str, Any]]] = []
    if not output.is_dir():
        return found
    for folder in sorted(output.iterdir()):
        summary_path = folder / "summary.json"
        if not folder.is_dir() or id_problem(folder.name) or not summary_path.exists():
            continue
        try:
            doc = orjson.loads(summary_path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            console.print(f"[yellow]skipped[/] {literal(summary_path)}: unreadable ({literal(exc)})", highlight=False)
            continue
        problem = _summary_problem(doc, folder.name)
        if problem:
            console.print(f"[yellow]skipped[/] {literal(summary_path)}: {literal(problem)}", highlight=False)
            continue
        found.append((folder.name, summary_path, doc))
    return found


def _summary_problem(doc: object, vid: str) -> str | None:
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("video_id") != vid:
        return f"video_id {doc.get('video_id')!r} does not match its folder {vid!r}"
    for key in ("started_seq", "attempt"):
        if type(doc.get(key)) is not int:
            return f"{key!r} is {doc.get(key)!r}, not an integer"
    counts = doc.get("counts")
    if not isinstance(counts, dict) or not all(
        isinstance(k, str) and type(n) in (int, float) for k, n in counts.items()
    ):
        return f"'counts' is {counts!r}, not an object of numbers"
    return None
