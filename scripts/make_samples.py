#!/usr/bin/env python3
"""Make the shipped sample videos (data/samples/) and their manifest (data/videos.jsonl).

    python scripts/make_samples.py [--out data] [--font /usr/share/fonts/truetype/noto/NotoSansNKo-Regular.ttf]

Three short clips with several scenes and sound bursts separated by silences, so that ``nkod --once``
on a fresh checkout does real work (frames at the cuts, audio segments between the silences):

- ``nko_burned.mp4``: N'Ko text burned into the picture (for the ``vision-api`` detector). Needs
  Pillow with RAQM (``PIL.features.check('raqm')``) and a font with N'Ko glyphs: Debian's
  ``fonts-noto-core`` has NotoSansNKo-Regular.ttf.
- ``nko_captions.mkv``: an SRT subtitle stream with N'Ko cues (for the ``captions`` detector).
- ``scenes_tones.mp4``: plain scenes, tones and noise, no text.

Paths in the manifest are relative to its directory.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from PIL import features

from nkod.pipeline.synth import PALETTE, Burst, Cue, Scene, make_clip, scenes_from_durations

DEFAULT_FONT = Path("/usr/share/fonts/truetype/noto/NotoSansNKo-Regular.ttf")

# Short N'Ko phrases (Manding): "N'Ko", "good morning", "the N'Ko alphabet", "Manding language".
PHRASES = ("ߒߞߏ", "ߌ ߣߌ ߛߐ߰ߡߊ", "ߒߞߏ ߛߓߍߛߎ߲", "ߡߊ߲߬ߘߋ߲߬ ߞߊ߲")

BURSTS = (
    Burst(0.4, 2.2, 220.0, 0.4),
    Burst(3.0, 4.6, 0.0, 0.15),
    Burst(5.4, 7.9, 330.0, 0.4),
    Burst(8.8, 10.2, 0.0, 0.15),
    Burst(10.9, 13.5, 440.0, 0.4),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    parser.add_argument("--font", type=Path, default=DEFAULT_FONT)
    args = parser.parse_args(argv)
    samples = args.out / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    if not args.font.is_file() or not features.check("raqm"):
        print(
            f"need a font with N'Ko glyphs ({args.font}: apt-get install fonts-noto-core) "
            "and Pillow built with RAQM for the burned-in clip",
            file=sys.stderr,
        )
        return 1

    clip = functools.partial(make_clip, width=480, height=272, fps=25, crf=30)
    burned = [Scene(3.0, PALETTE[i % len(PALETTE)], PHRASES[i % len(PHRASES)]) for i in range(4)]
    burned.append(Scene(2.5, PALETTE[5]))
    clip(samples / "nko_burned.mp4", burned, bursts=BURSTS, font_path=args.font, font_size=44)

    cues = [
        Cue(0.5, 2.5, PHRASES[0]),
        Cue(3.0, 4.5, "N'Ko (caption in Latin script)"),
        Cue(5.5, 7.8, PHRASES[1]),
        Cue(11.0, 13.4, PHRASES[3]),
    ]
    clip(samples / "nko_captions.mkv", scenes_from_durations([3.0, 2.2, 3.3, 2.5, 3.5]), bursts=BURSTS, cues=cues)
    clip(samples / "scenes_tones.mp4", scenes_from_durations([2.5, 3.0, 2.0, 3.5, 3.0]), bursts=BURSTS)

    entries = [
        {"video_id": "nko_burned", "path": "samples/nko_burned.mp4", "title": "N'Ko text burned into the picture"},
        {"video_id": "nko_captions", "path": "samples/nko_captions.mkv", "title": "N'Ko subtitle stream (SRT)"},
        {"video_id": "scenes_tones", "path": "samples/scenes_tones.mp4", "title": "Scenes, tones and silences"},
    ]
    manifest = args.out / "videos.jsonl"
    manifest.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    for path in sorted(samples.iterdir()):
        print(f"{path}  {path.stat().st_size // 1024} KiB")
    print(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
