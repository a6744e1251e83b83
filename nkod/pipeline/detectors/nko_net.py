"""The local N'Ko detector's network, run with numpy only (no torch, no download).

A small fully convolutional net reads a grey frame scaled to height 360 and gives, for every 8x8-pixel
cell, the probabilities of four classes: background, N'Ko, Latin-or-other text, Arabic. Text cells are
joined into lines (:func:`text_regions`); a line's score is the mean N'Ko probability of its cells, and
a frame's score is its best line's. Lines at or above the threshold are the regions reported in the
manifest.

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
HEIGHT = 360  # frames are read at this height (text from ~10 px high at 720p)
TEXT_LEVEL = 0.3  # a cell is text when its background probability is at most 1 - TEXT_LEVEL
JOIN_CELLS = 3  # text cells of a row at most this many cells apart belong to one line

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
        w = max(CELL, round(width * HEIGHT / height / CELL) * CELL)
        arr = np.asarray(grey.resize((w, HEIGHT), Image.Resampling.BILINEAR), dtype=np.float32) / np.float32(255.0)
        probs = self.probabilities(arr)
        regions = text_regions(probs, width / (w / CELL), height / (HEIGHT / CELL))
        best = max((r.score for r in regions), default=0.0)
        return FrameResult(best, tuple(r for r in regions if r.score >= region_threshold))


def read_frame(path: Path) -> tuple[Image.Image, tuple[int, int]]:
    """A saved frame as a grey image, decoded at a reduced size where JPEG allows (at least HEIGHT
    high: 1280x720 decodes straight to 640x360), and the frame's real size."""
    with Image.open(path) as image:
        size = image.size
        if image.format == "JPEG" and image.height > HEIGHT:
            image.draft("L", (image.width * HEIGHT // image.height, HEIGHT))
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


def text_regions(probs: F32, cell_x: float, cell_y: float) -> list[Region]:
    """The text lines of a probability map, each scored by its cells' mean N'Ko probability.

    Cells that are text (background probability at most 1 - TEXT_LEVEL) are joined into lines: cells
    of a row closer than JOIN_CELLS are one line (words), and touching cells one region. A line's
    score is the mean N'Ko probability of its text cells: a Latin line with a few N'Ko-looking cells
    is outvoted by the rest of the line, which a single cell's maximum would not be.
    """
    text = probs[:, :, 0] <= 1.0 - TEXT_LEVEL
    if not text.any():
        return []
    has_left = np.zeros_like(text)
    has_right = np.zeros_like(text)
    for k in range(1, JOIN_CELLS + 1):  # a gap of up to JOIN_CELLS cells between words is filled
        has_left[:, k:] |= text[:, :-k]
        has_right[:, :-k] |= text[:, k:]
    joined = text | (has_left & has_right)
    labels = _components(joined)
    nko = probs[:, :, NKO_CLASS]
    out = []
    for label in np.unique(labels[text]):
        cells = (labels == label) & text
        ys, xs = np.nonzero(cells)
        score = float(nko[cells].mean())
        out.append(
            Region(
                round(int(xs.min()) * cell_x),
                round(int(ys.min()) * cell_y),
                round((int(xs.max()) + 1) * cell_x),
                round((int(ys.max()) + 1) * cell_y),
                score,
            )
        )
    out.sort(key=lambda r: (-r.score, r.y0, r.x0))
    return out


def _components(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """4-connected component labels of `mask` (the smallest flat index in each; -1 outside)."""
    h, w = mask.shape
    big = np.int64(h * w)
    labels = np.where(mask, np.arange(h * w, dtype=np.int64).reshape(h, w), big)
    while True:  # propagate the minimum label to neighbours until nothing changes
        new = labels.copy()
        np.minimum(new[1:], labels[:-1], out=new[1:])
        np.minimum(new[:-1], labels[1:], out=new[:-1])
        np.minimum(new[:, 1:], labels[:, :-1], out=new[:, 1:])
        np.minimum(new[:, :-1], labels[:, 1:], out=new[:, :-1])
        new = np.where(mask, new, big)
        if np.array_equal(new, labels):
            return np.where(mask, labels, -1)
        labels = new
