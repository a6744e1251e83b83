"""nkod: a crash-safe daemon for the N'Ko video dataset pipeline, and nkoctl to steer it."""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (nkoctl status: ~2 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
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


def _lazy_exports(package: str, table: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name of `table` (name -> module) when first asked for,
    then keeps it in `namespace` (the package's globals)."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__


__getattr__ = _lazy_exports(__name__, _LAZY, globals())
