"""The local N'Ko detector's network, run with numpy only (no torch, no download).

A small fully convolutional net reads a grey frame and gives, for every 8x8-pixel cell of its input, the
probabilities of four classes: background, N'Ko, Latin-or-other text, Arabic. It runs on the frame
scaled to height 360 (text from ~10 px) and to height 180 (large titles); a frame's score is the
highest N'Ko probability averaged over 3x3 cells, over both scales. Cells above the threshold make the
regions reported in the manifest.

The weights ship in the package (``nko_detector.npz``, made by ``scripts/train_nko_detector.py``):
each layer is ``wN`` (kernel*kernel*in, out) float32, ``bN`` (out,), and ``arch`` (JSON) says kernel,
stride and dilation per layer; batch norm is already folded into the weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

WEIGHTS_PATH = Path(__file__).with_name("nko_detector.npz")
CLASSES = ("background", "nko", "latin_or_other", "arabic")
NKO_CLASS = 1
CELL = 8
SCALES = (360, 180)

F32 = npt.NDArray[np.float32]


class WeightsError(Exception):
    """The weights file is missing or not a valid detector weights file (the message names the path)."""


@dataclass(frozen=True)
class Layer:
    """One convolution: weights as a (kernel*kernel*in, out) matrix, then ReLU unless it is the last."""

    weight: F32
    bias: F32
    kernel: int
    stride: int
    dilation: int
    relu: bool


@dataclass(frozen=True)
class Region:
    """A box (in the frame's pixels) where N'Ko was seen, with the highest cell probability in it."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"box": [self.x0, self.y0, self.x1, self.y1], "score": round(self.score, 4)}


@dataclass(frozen=True)
class FrameResult:
    """The N'Ko score of a frame (0..1) and the regions above the region threshold."""

    score: float
    regions: tuple[Region, ...]


class NkoNet:
    """The loaded network. Loading checks every array; inference is deterministic (pure numpy)."""

    def __init__(self, layers: list[Layer], version: str, sha256: str = "") -> None:
        self.layers = layers
        self.version = version
        self.sha256 = sha256

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> NkoNet:
        """Load and check the weights; :class:`WeightsError` naming `path` if missing or damaged."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise WeightsError(f"N'Ko detector weights not found: {path} (reinstall nkod)") from exc
        except OSError as exc:
            raise WeightsError(f"N'Ko detector weights cannot be read: {path}: {exc}") from exc
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                arrays = {k: np.asarray(data[k]) for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise WeightsError(f"N'Ko detector weights are damaged: {path}: {exc}") from exc
        try:
            arch = json.loads(str(arrays["arch"]))
            layers: list[Layer] = []
            channels = 1
            for i, spec in enumerate(arch["layers"]):
                w = arrays[f"w{i}"].astype(np.float32)
                b = arrays[f"b{i}"].astype(np.float32)
                k, s, d = int(spec["kernel"]), int(spec["stride"]), int(spec["dilation"])
                if w.ndim != 2 or w.shape[0] != k * k * channels or b.shape != (w.shape[1],):
                    raise ValueError(f"layer {i}: weight {w.shape} / bias {b.shape} do not fit {channels} inputs")
                if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                    raise ValueError(f"layer {i}: weights are not finite")
                layers.append(Layer(w, b, k, s, d, relu=i < len(arch["layers"]) - 1))
                channels = w.shape[1]
            if channels != len(CLASSES):
                raise ValueError(f"the last layer has {channels} outputs, not {len(CLASSES)}")
            version = str(arch.get("version", ""))
        except (KeyError, ValueError, TypeError) as exc:
            raise WeightsError(f"N'Ko detector weights are not valid: {path}: {exc}") from exc
        return cls(layers, version, hashlib.sha256(raw).hexdigest())

    def probabilities(self, grey: F32) -> F32:
        """Per-cell class probabilities (H/8, W/8, 4) of a grey image scaled to 0..1."""
        x = grey[:, :, None]
        for layer in self.layers:
            x = _conv(x, layer)
        x = x - x.max(axis=2, keepdims=True)
        e = np.exp(x)
        probs: F32 = e / e.sum(axis=2, keepdims=True)
        return probs

    def frame(
        self, image: Image.Image, region_threshold: float = 0.5, size: tuple[int, int] | None = None
    ) -> FrameResult:
        """Score one frame (any size, any mode) and find its N'Ko regions.

        `size` is the frame's real size when `image` is a reduced decode of it (:func:`read_frame`):
        regions are reported in the real frame's pixels.
        """
        grey = image.convert("L")
        width, height = size or grey.size
        best = 0.0
        regions: list[Region] = []
        source = grey
        for target in SCALES:
            w = max(CELL, round(width * target / height / CELL) * CELL)
            resized = source.resize((w, target), Image.Resampling.BILINEAR)
            source = resized  # the next, smaller scale is made from this one (cheaper, same result)
            arr = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
            nko = self.probabilities(arr)[:, :, NKO_CLASS]
            smooth = _box3(nko)
            best = max(best, float(smooth.max()))
            cell_x = width / (w / CELL)
            cell_y = height / (target / CELL)
            regions.extend(_regions(smooth, region_threshold, cell_x, cell_y))
        return FrameResult(best, tuple(_merge(regions)))


def read_frame(path: Path) -> tuple[Image.Image, tuple[int, int]]:
    """A saved frame as a grey image, decoded at a reduced size where JPEG allows (at least SCALES[0]
    high: 1280x720 decodes straight to 640x360), and the frame's real size."""
    with Image.open(path) as image:
        size = image.size
        if image.format == "JPEG" and image.height > SCALES[0]:
            image.draft("L", (image.width * SCALES[0] // image.height, SCALES[0]))
        grey = image.convert("L")
    return grey, size


def _conv(x: F32, layer: Layer) -> F32:
    """A 'same'-padded convolution of an (H, W, C) array as one matrix product (im2col)."""
    h, w, _ = x.shape
    k, s, d = layer.kernel, layer.stride, layer.dilation
    if k == 1:
        cols = x[::s, ::s]
    else:
        pad = d * (k // 2)
        xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        parts = [
            xp[ky * d : ky * d + (ho - 1) * s + 1 : s, kx * d : kx * d + (wo - 1) * s + 1 : s]
            for ky in range(k)
            for kx in range(k)
        ]
        cols = np.concatenate(parts, axis=2)
    ho, wo = cols.shape[0], cols.shape[1]
    out = cols.reshape(ho * wo, -1) @ layer.weight
    out += layer.bias
    if layer.relu:
        np.maximum(out, 0, out=out)
    result: F32 = out.reshape(ho, wo, -1)
    return result


def _box3(p: F32) -> F32:
    """Mean over each cell's 3x3 neighbourhood (edges padded by repetition)."""
    q = np.pad(p, 1, mode="edge")
    h, w = p.shape
    total = sum(q[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    out: F32 = np.asarray(total, dtype=np.float32) / np.float32(9.0)
    return out


def _regions(p: F32, threshold: float, cell_x: float, cell_y: float) -> list[Region]:
    """Boxes of the 4-connected groups of cells at or above `threshold`, in frame pixels."""
    mask = p >= threshold
    seen = np.zeros_like(mask)
    out: list[Region] = []
    h, w = mask.shape
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        stack = [(int(y), int(x))]
        seen[y, x] = True
        ys, xs, best = [], [], 0.0
        while stack:
            cy, cx = stack.pop()
            ys.append(cy)
            xs.append(cx)
            best = max(best, float(p[cy, cx]))
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        out.append(
            Region(
                round(min(xs) * cell_x),
                round(min(ys) * cell_y),
                round((max(xs) + 1) * cell_x),
                round((max(ys) + 1) * cell_y),
                best,
            )
        )
    return out


def _merge(regions: list[Region]) -> list[Region]:
    """Overlapping boxes (the same text seen at both scales) become one; biggest score first."""
    merged: list[Region] = []
    for r in sorted(regions, key=lambda r: -r.score):
        for i, m in enumerate(merged):
            if r.x0 < m.x1 and m.x0 < r.x1 and r.y0 < m.y1 and m.y0 < r.y1:
                merged[i] = Region(min(m.x0, r.x0), min(m.y0, r.y0), max(m.x1, r.x1), max(m.y1, r.y1), m.score)
                break
        else:
            merged.append(r)
    return merged
