"""Build hook: man pages nkod(1) and nkoctl(1), made by argparse-manpage from the binaries' own parsers.

They are shipped in the wheel as data (``share/man/man1``), so ``pip``/``pipx`` put them under the
environment's ``share/man``. Nothing is kept by hand: a new option or subcommand is in the next build.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ENVIRONMENT = r""".TP
.B NKOD_DATA_DIR
the data directory when \-\-data\-dir is not given
.TP
.B STATE_DIRECTORY
the data directory under systemd (StateDirectory=nkod)
.TP
.B NKOD_CONFIG
the TOML config file when \-\-config is not given (nkod)"""

SEE_ALSO = {
    "nkod": ".BR nkoctl (1)\n\nThe README of nkod: how it keeps your work, the config reference, systemd.",
    "nkoctl": ".BR nkod (1)\n\nThe README of nkod: the nkoctl reference and troubleshooting.",
}


class ManPagesHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        self._out = Path(tempfile.mkdtemp(prefix="nkod-man-"))
        for name, text in _man_pages(Path(self.root)).items():
            page = self._out / f"{name}.1"
            page.write_text(text, encoding="utf-8")
            build_data["shared_data"][str(page)] = f"share/man/man1/{name}.1"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        out = getattr(self, "_out", None)
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)


def _man_pages(root: Path) -> dict[str, str]:
    """{program: roff text}, from the build_parser() of nkod/daemon_cli.py and nkod/ctl/cli.py in `root`."""
    from argparse_manpage.manpage import Manpage

    sys.path.insert(0, str(root))
    # nkod.daemon_cli installs early signal handlers when imported: keep the build's own.
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        from nkod import __version__, ctl, daemon_cli
    except ImportError as exc:  # the hook's environment has only the dependencies pyproject.toml names
        raise RuntimeError(
            f"hatch_build.py: importing nkod.ctl and nkod.daemon_cli needs {exc.name!r}: import it lazily "
            "there, or add it to [tool.hatch.build.targets.wheel.hooks.custom] dependencies in pyproject.toml"
        ) from exc
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        sys.path.remove(str(root))
    pages = {}
    for module, summary in (
        (daemon_cli, "crash-safe daemon for the N'Ko video dataset pipeline"),
        (ctl, "see where nkod stands and steer it"),
    ):
        parser = module.build_parser()
        page = Manpage(parser)
        page.description = summary
        page.source = f"nkod {__version__}"
        page.manual = "nkod manual"
        page.add_section("environment", "=", ENVIRONMENT)
        page.add_section("see also", "=", SEE_ALSO[parser.prog])
        pages[parser.prog] = str(page)
    return pages
