#!/usr/bin/env python3
"""Evaluate the local N'Ko detector on held-out frames the training never saw.

    OMP_NUM_THREADS=1 taskset -c 0 python bench/nko_detector_eval.py [--per-cell 8] [--weights FILE]

Held out by construction (see ``bench/nko_data.py``): held-out fonts, held-out words (hash split) and
whole-frame 1280x720 layouts the training never composes (subtitles, slides, lower thirds, tickers,
signs, title cards), with N'Ko, N'Ko + Latin, Latin, Arabic, other scripts, digits and no text; plus
frames of clips made by the project's own clip generator (``nkod.pipeline.synth.make_clip``, H.264) with
a held-out N'Ko font, and the frames of the shipped sample clips (``data/samples``).

Every frame is saved as a JPEG (quality 90, as the pipeline saves frames) and scored through the
runtime's own path (:func:`read_frame` + :meth:`NkoNet.frame`), so the CPU time includes decoding.
Prints precision, recall, AUC, the fraction of non-N'Ko frames flagged, Arabic/Latin/other confusion,
the fraction of frames a ``prefilter = "local"`` cascade would send to the API, and CPU ms per frame.
Needs the training fonts' packages and Babel (``pip install -e '.[train]'``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the worker runs it
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import nko_data  # noqa: E402

from nkod.pipeline.detectors.nko_net import WEIGHTS_PATH, NkoNet, read_frame  # noqa: E402
from nkod.pipeline.synth import PALETTE, Scene, make_clip  # noqa: E402


@dataclass(frozen=True)
class Scored:
    """One evaluated frame."""

    group: str  # synthetic layouts, clip generator, shipped samples
    kind: str
    layout: str
    has_nko: bool
    font: str
    size: int
    score: float
    cpu_ms: float
    fonts: tuple[str, ...] = ()


def auc(pos: list[float], neg: list[float]) -> float:
    """Area under the ROC curve (probability that a N'Ko frame outscores a non-N'Ko one; ties 1/2)."""
    if not pos or not neg:
        return float("nan")
    p = np.asarray(pos)[:, None]
    n = np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def score_file(net: NkoNet, path: Path) -> tuple[float, float]:
    started = time.process_time()
    grey, size = read_frame(path)
    result = net.frame(grey, 0.5, size)
    return result.score, (time.process_time() - started) * 1000


def synthetic(net: NkoNet, tmp: Path, seed: int, per_cell: int, split: str) -> list[Scored]:
    out = []
    for i, frame in enumerate(nko_data.eval_frames(seed, per_cell, split)):
        path = tmp / f"syn{i}.jpg"
        frame.image.save(path, quality=90)
        score, ms = score_file(net, path)
        truth = (frame.kind, frame.layout, frame.has_nko, frame.nko_font, frame.nko_size)
        out.append(Scored("layouts", *truth, score, ms, frame.fonts))
    return out


def generator_clips(net: NkoNet, tmp: Path, seed: int) -> list[Scored]:
    """Clips from the project's clip generator with a held-out N'Ko font and held-out words."""
    rng = np.random.default_rng(seed)
    font = nko_data.DEJAVU / "DejaVuSans-Bold.ttf"  # held out for N'Ko; also has Latin and Arabic
    out = []
    for c, size in enumerate((28, 40, 56, 80)):
        kinds = ["nko", "latin", "nko", "arabic", "", "nko", "digits", ""]
        scenes = [
            Scene(1.0, PALETTE[i % len(PALETTE)], nko_data.phrase(k, "eval", rng, 1, 3) if k else "")
            for i, k in enumerate(kinds)
        ]
        clip = tmp / f"clip{c}.mp4"
        make_clip(clip, scenes, width=1280, height=720, fps=5, audio=False, font_path=font, font_size=size, crf=30)
        with av.open(str(clip)) as container:
            frames = [Image.fromarray(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
        for i, kind in enumerate(kinds):
            path = tmp / f"clip{c}_{i}.jpg"
            frames[i * 5 + 2].save(path, quality=90)
            score, ms = score_file(net, path)
            label = kind or "empty"
            out.append(Scored("clip-generator", label, "synth-scene", kind == "nko", font.name, size, score, ms))
    return out


def shipped_samples(net: NkoNet, tmp: Path) -> list[Scored]:
    """The frames in the middle of each scene of data/samples (the burned-in clip uses Noto Sans NKo)."""
    samples = HERE.parent / "data" / "samples"
    # (scene start in seconds, N'Ko in the picture) per scene; see scripts/make_samples.py.
    truth: dict[str, list[tuple[float, bool]]] = {
        "nko_burned.mp4": [(0, True), (3, True), (6, True), (9, True), (12, False)],
        "scenes_tones.mp4": [(0, False), (2.5, False), (5.5, False), (7.5, False), (11, False)],
    }
    out = []
    for name, scenes in truth.items():
        with av.open(str(samples / name)) as container:
            frames = [
                (float(f.time or 0), Image.fromarray(f.to_ndarray(format="rgb24"))) for f in container.decode(video=0)
            ]
        for i, (start, label) in enumerate(scenes):
            image = min(frames, key=lambda tf: abs(tf[0] - (start + 1.0)))[1]
            path = tmp / f"sample_{name}_{i}.jpg"
            image.save(path, quality=90)
            score, ms = score_file(net, path)
            kind = "nko" if label else "empty"
            out.append(Scored("shipped-samples", kind, name, label, "NotoSansNKo (training font)", 44, score, ms))
    return out


def rates(items: list[Scored], threshold: float) -> dict[str, float]:
    pos = [s.score for s in items if s.has_nko]
    neg = [s.score for s in items if not s.has_nko]
    tp = sum(1 for s in pos if s >= threshold)
    fp = sum(1 for s in neg if s >= threshold)
    return {
        "frames": len(items),
        "nko_frames": len(pos),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / len(pos) if pos else float("nan"),
        "non_nko_flagged": fp / len(neg) if neg else float("nan"),
        "auc": auc(pos, neg),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    p.add_argument("--per-cell", type=int, default=8, help="frames per (kind, layout) pair")
    p.add_argument("--seed", type=int, default=20261128)
    p.add_argument("--threshold", type=float, default=0.4, help="the local detector's yes/no threshold")
    p.add_argument("--prefilter", type=float, default=0.25, help="the cascade's send threshold")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--validation",
        action="store_true",
        help="the layouts with TRAINING fonts and words (a validation set for choosing thresholds), not held out",
    )
    args = p.parse_args(argv)

    net = NkoNet.load(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if args.validation:
            items = synthetic(net, t, args.seed + 7, args.per_cell, "train")
        else:
            items = synthetic(net, t, args.seed, args.per_cell, "eval")
            items += generator_clips(net, t, args.seed + 1)
            items += shipped_samples(net, t)

    what = "VALIDATION (training fonts and words)" if args.validation else "HELD-OUT"
    print(f"{what}; weights: {args.weights} ({net.version}); threshold {args.threshold}, pre-filter {args.prefilter}")
    print(f"{'set':<18}{'frames':>7}{'N’Ko':>6}{'precision':>10}{'recall':>8}{'flagged':>9}{'AUC':>7}")
    groups = ("all", "layouts", "clip-generator", "shipped-samples")
    summary: dict[str, object] = {}
    for group in groups:
        sel = [s for s in items if group == "all" or s.group == group]
        r = rates(sel, args.threshold)
        summary[group] = r
        print(
            f"{group:<18}{r['frames']:>7}{r['nko_frames']:>6}{r['precision']:>10.3f}{r['recall']:>8.3f}"
            f"{r['non_nko_flagged']:>9.3f}{r['auc']:>7.3f}"
        )
    print("\nflagged as N'Ko at the threshold, by what the frame holds (all sets):")
    by_kind: dict[str, list[Scored]] = defaultdict(list)
    for s in items:
        by_kind[s.kind].append(s)
    kinds = {}
    for kind, sel in sorted(by_kind.items()):
        frac = sum(1 for s in sel if s.score >= args.threshold) / len(sel)
        kinds[kind] = frac
        print(f"  {kind:<12}{len(sel):>5} frames  {100 * frac:5.1f}% flagged")
    print("\nflagged by font, frames without N'Ko (layouts set):")
    for kind in ("arabic", "latin", "other"):
        by_font: dict[str, list[Scored]] = defaultdict(list)
        for s in items:
            if s.kind == kind:
                for f in s.fonts:
                    by_font[f].append(s)
        parts = [
            f"{f} {sum(1 for s in sel if s.score >= args.threshold) / len(sel):.2f} (n={len(sel)})"
            for f, sel in sorted(by_font.items())
        ]
        print(f"  {kind}: " + "; ".join(parts))
    print("\nN'Ko recall by layout / font / text size (px at 720p):")
    for label, key in (("layout", "layout"), ("font", "font"), ("size", "size")):
        groups_of: dict[str, list[Scored]] = defaultdict(list)
        for s in items:
            if s.has_nko:
                v = getattr(s, key)
                if key == "size":
                    v = "<30" if v < 30 else "30-49" if v < 50 else "50-79" if v < 80 else ">=80"
                groups_of[str(v)].append(s)
        parts = [
            f"{k} {sum(1 for s in sel if s.score >= args.threshold) / len(sel):.2f} (n={len(sel)})"
            for k, sel in sorted(groups_of.items())
        ]
        print(f"  {label}: " + "; ".join(parts))
    print("\nthreshold sweep (all sets): threshold recall non-N'Ko-flagged Arabic-flagged Latin-flagged")
    sweep = []
    arabic = [s for s in items if s.kind == "arabic"]
    latin = [s for s in items if s.kind == "latin"]
    for level in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7):
        r = rates(items, level)
        fa = sum(1 for s in arabic if s.score >= level) / max(1, len(arabic))
        fl = sum(1 for s in latin if s.score >= level) / max(1, len(latin))
        sweep.append({"threshold": level, "recall": r["recall"], "non_nko_flagged": r["non_nko_flagged"]})
        print(f"  {level:<5} {r['recall']:.3f} {r['non_nko_flagged']:.3f} {fa:.3f} {fl:.3f}")
    sent = sum(1 for s in items if s.score >= args.prefilter) / len(items)
    kept = [s for s in items if s.has_nko]
    recall_sent = sum(1 for s in kept if s.score >= args.prefilter) / len(kept)
    non = [s for s in items if not s.has_nko]
    non_sent = sum(1 for s in non if s.score >= args.prefilter) / len(non)
    print(
        f"\ncascade at pre-filter {args.prefilter}: {100 * sent:.1f}% of all frames sent to the API "
        f"({100 * non_sent:.1f}% of non-N'Ko frames), N'Ko frames sent (recall kept) {recall_sent:.3f}"
    )
    ms = [s.cpu_ms for s in items if s.group != "shipped-samples"]
    print(
        f"CPU per 1280x720 frame (JPEG decode + network + lines, one thread): "
        f"median {statistics.median(ms):.1f} ms, "
        f"p90 {float(np.percentile(ms, 90)):.1f} ms"
    )
    if args.json:
        summary.update(
            {
                "flagged_by_kind": kinds,
                "sweep": sweep,
                "cascade_sent_fraction": sent,
                "cascade_recall": recall_sent,
                "cpu_ms_median": statistics.median(ms),
                "weights_version": net.version,
            }
        )
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
