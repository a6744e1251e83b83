"""nkod: a crash-safe daemon for the N'Ko video dataset pipeline, and nkoctl to steer it."""

from nkod.errors import NkodError, PermanentError, ProcessingError, TransientError
from nkod.processor import Report

__version__ = "0.1.0"

__all__ = ["NkodError", "PermanentError", "ProcessingError", "Report", "TransientError", "__version__"]
