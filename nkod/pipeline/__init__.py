"""The built-in pipeline processor: fetch → frames → N'Ko detection → audio segments → manifest.

``nkod.pipeline:process`` is what the engine runs for each video (see :mod:`nkod.processor`).
Modules, one job each: :mod:`settings` (the ``[pipeline]`` table), :mod:`fetch` (local file or
yt-dlp), :mod:`media` (open and describe), :mod:`frames` (scene changes → JPEG), :mod:`detectors`
(``none``, ``vision-api``, ``captions``), :mod:`audio` (speech segments → FLAC/WAV), :mod:`manifest`,
:mod:`fsync` (durability before the engine's rename), :mod:`synth` (synthetic test clips).
"""

from __future__ import annotations

from nkod.pipeline.run import process

__all__ = ["process"]
