"""nkod: a crash-safe daemon for the N'Ko video dataset pipeline, and nkoctl to steer it."""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from typing import Any

    from nkod.errors import NkodError, PermanentError, ProcessingError, TransientError
    from nkod.processor import Report

__version__ = "0.1.0"

__all__ = ["NkodError", "PermanentError", "ProcessingError", "Report", "TransientError", "__version__"]

# Imported when first asked for: `nkoctl status` and `import nkod.<module>` should not pay for them.
_LAZY = {
    "NkodError": "nkod.errors",
    "PermanentError": "nkod.errors",
    "ProcessingError": "nkod.errors",
    "TransientError": "nkod.errors",
    "Report": "nkod.processor",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nkod' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
