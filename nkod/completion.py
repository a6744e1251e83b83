"""Shell completion for ``nkoctl`` (bash, zsh, fish), by argcomplete.

The script ``nkoctl completion SHELL`` prints is argcomplete's: on <Tab> it runs ``nkoctl`` with
``_ARGCOMPLETE`` set, and ``nkoctl``'s own parser answers (:func:`complete`), so completions follow
the parser as it grows and nothing is kept by hand.
"""

from __future__ import annotations

import argparse

PROG = "nkoctl"


def script(shell: str) -> str:
    """The completion script to load in `shell` (bash, zsh or fish)."""
    from argcomplete.shell_integration import shellcode

    return shellcode([PROG], shell=shell)


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the completion request in the environment, then exit (argcomplete's protocol)."""
    import argcomplete

    argcomplete.autocomplete(parser)
