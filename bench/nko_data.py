"""Synthetic data for the local N'Ko detector: training crops and held-out evaluation frames.

Used by ``scripts/train_nko_detector.py`` (training crops) and ``bench/nko_detector_eval.py`` (held-out
1280x720 frames). The two are kept apart BY CONSTRUCTION:

- fonts: every script's fonts are split into a training list and a held-out list (:data:`FONTS`);
- words: every word is assigned to one side by a hash of its text (:func:`split_of`), so no word of the
  evaluation frames was ever rendered for training;
- layouts: training sees single text lines (or a line on a box/band) on random backgrounds in small
  crops; evaluation frames are whole 1280x720 layouts (slides, subtitles, lower thirds, tickers,
  signs, title cards) that the training never composes.

Text comes from Babel's CLDR data (``nqo``: ~1,700 real N'Ko words with tone marks; ``bm``/``fr``/``en``
for Latin; ``ar``/``fa``/``ur`` for Arabic; other locales for other scripts). Needs the Debian fonts
fonts-noto-core, fonts-dejavu-core/-extra, fonts-evertype-conakry, unifont and Pillow with raqm.
Deterministic for a given seed.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageFont

NOTO = Path("/usr/share/fonts/truetype/noto")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
CONAKRY = Path("/usr/share/fonts/truetype/evertype-conakry/Conakry.ttf")
UNIFONT = Path("/usr/share/fonts/opentype/unifont/unifont.otf")

# Classes of the per-cell output (the runtime's order).
BACKGROUND, NKO, LATIN_OTHER, ARABIC = 0, 1, 2, 3
IGNORE = 255

# script -> (training fonts, held-out fonts)
FONTS: dict[str, tuple[list[Path], list[Path]]] = {
    "nko": (
        [
            NOTO / "NotoSansNKo-Regular.ttf",
            DEJAVU / "DejaVuSans.ttf",
            DEJAVU / "DejaVuSansCondensed-Bold.ttf",
            UNIFONT,
        ],
        [CONAKRY, DEJAVU / "DejaVuSans-Bold.ttf", DEJAVU / "DejaVuSansCondensed.ttf"],
    ),
    "latin": (
        [
            DEJAVU / "DejaVuSans.ttf",
            DEJAVU / "DejaVuSerif-Bold.ttf",
            DEJAVU / "DejaVuSansMono.ttf",
            DEJAVU / "DejaVuSansCondensed-Oblique.ttf",
            NOTO / "NotoSans-Regular.ttf",
            NOTO / "NotoSans-Bold.ttf",
            NOTO / "NotoSerif-Regular.ttf",
            NOTO / "NotoSans-CondensedBlack.ttf",
            NOTO / "NotoSans-Light.ttf",
            NOTO / "NotoSerif-Italic.ttf",
            NOTO / "NotoSerifDisplay-Regular.ttf",
            UNIFONT,
        ],
        [
            DEJAVU / "DejaVuSans-Bold.ttf",
            DEJAVU / "DejaVuSerif.ttf",
            NOTO / "NotoSans-Italic.ttf",
            NOTO / "NotoSerif-Bold.ttf",
            NOTO / "NotoSans-ExtraCondensedMedium.ttf",
            NOTO / "NotoSansDisplay-Regular.ttf",
        ],
    ),
    "arabic": (
        [
            NOTO / "NotoNaskhArabic-Regular.ttf",
            NOTO / "NotoKufiArabic-Regular.ttf",
            NOTO / "NotoSansArabic-Bold.ttf",
            DEJAVU / "DejaVuSans.ttf",
            NOTO / "NotoSansArabic-Light.ttf",
        ],
        [
            NOTO / "NotoNaskhArabic-Bold.ttf",
            NOTO / "NotoNastaliqUrdu-Regular.ttf",
            NOTO / "NotoSansArabic-Regular.ttf",
            NOTO / "NotoKufiArabic-Black.ttf",
        ],
    ),
}

# Other scripts (negatives, class "Latin or other"): locale -> (training font, held-out font).
OTHER_SCRIPTS: dict[str, tuple[Path, Path]] = {
    "ru": (DEJAVU / "DejaVuSans.ttf", NOTO / "NotoSerif-Regular.ttf"),
    "el": (NOTO / "NotoSans-Regular.ttf", DEJAVU / "DejaVuSerif.ttf"),
    "he": (NOTO / "NotoSansHebrew-Regular.ttf", NOTO / "NotoSerifHebrew-Regular.ttf"),
    "am": (NOTO / "NotoSansEthiopic-Regular.ttf", NOTO / "NotoSerifEthiopic-Regular.ttf"),
    "hi": (NOTO / "NotoSansDevanagari-Regular.ttf", NOTO / "NotoSerifDevanagari-Regular.ttf"),
    "ff_Adlm": (NOTO / "NotoSansAdlam-Regular.ttf", NOTO / "NotoSansAdlamUnjoined-Regular.ttf"),
    "vai": (NOTO / "NotoSansVai-Regular.ttf", NOTO / "NotoSansVai-Regular.ttf"),
    "zgh": (NOTO / "NotoSansTifinagh-Regular.ttf", NOTO / "NotoSansTifinagh-Regular.ttf"),
    "th": (NOTO / "NotoSansThai-Regular.ttf", NOTO / "NotoSerifThai-Regular.ttf"),
    "ka": (NOTO / "NotoSansGeorgian-Regular.ttf", NOTO / "NotoSerifGeorgian-Regular.ttf"),
    "hy": (NOTO / "NotoSansArmenian-Regular.ttf", NOTO / "NotoSerifArmenian-Regular.ttf"),
    "ta": (NOTO / "NotoSansTamil-Regular.ttf", NOTO / "NotoSerifTamil-Regular.ttf"),
    "bn": (NOTO / "NotoSansBengali-Regular.ttf", NOTO / "NotoSerifBengali-Regular.ttf"),
    "km": (NOTO / "NotoSansKhmer-Regular.ttf", NOTO / "NotoSerifKhmer-Regular.ttf"),
}

_NKO = re.compile("[\u07c0-\u07ff]")
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f]")


def split_of(word: str) -> str:
    """'train' or 'eval' for a word, by a hash of its text: the same word is always on the same side."""
    return "eval" if hashlib.sha256(word.encode()).digest()[0] % 5 == 0 else "train"


def _strings(locale: str) -> list[str]:
    from babel import localedata

    out: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, str):
            out.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list | tuple):
            for v in obj:
                walk(v)
        else:
            try:
                for v in dict(obj).values():
                    walk(v)
            except (TypeError, ValueError):
                pass

    walk(localedata.load(locale))
    return out


def _words(strings: list[str], keep: re.Pattern[str] | None, drop: re.Pattern[str] | None) -> list[str]:
    words: set[str] = set()
    for s in strings:
        for w in s.split():
            w = w.strip("{}()[],.;:«»\"'")
            if len(w) < 2 or "{" in w or "%" in w:
                continue
            if keep is not None and not keep.search(w):
                continue
            if drop is not None and drop.search(w):
                continue
            words.add(w)
    return sorted(words)


@functools.cache
def vocabulary() -> dict[str, dict[str, list[str]]]:
    """kind -> split -> words. Kinds: nko, latin, arabic and each key of OTHER_SCRIPTS."""
    latin_re = re.compile("[A-Za-zÀ-ɏƐƆŊɲɛɔŋ]")
    non_latin = re.compile("[^\\x20-\\x7eÀ-ɏƐƆŊɲɛɔŋ’'-]")
    kinds: dict[str, list[str]] = {
        "nko": _words(_strings("nqo"), _NKO, None),
        "latin": _words(_strings("bm") + _strings("fr") + _strings("en"), latin_re, non_latin),
        "arabic": _words(_strings("ar") + _strings("fa") + _strings("ur"), _ARABIC, None),
    }
    for loc in OTHER_SCRIPTS:
        kinds[loc] = _words(_strings(loc), None, re.compile("[A-Za-z0-9]"))
    out: dict[str, dict[str, list[str]]] = {}
    for kind, words in kinds.items():
        out[kind] = {"train": [w for w in words if split_of(w) == "train"], "eval": []}
        out[kind]["eval"] = [w for w in words if split_of(w) == "eval"]
    return out


def digits_text(rng: np.random.Generator) -> str:
    """Dates, times, prices, scores, phone numbers: text that is neither N'Ko nor words."""
    r = int(rng.integers(0, 6))
    a, b, c = (int(x) for x in rng.integers(0, 60, 3))
    if r == 0:
        return f"{a % 24:02d}:{b:02d}"
    if r == 1:
        return f"{1 + a % 28:02d}/{1 + b % 12:02d}/{1990 + c:04d}"
    if r == 2:
        return f"{a * 37 % 1000},{b:02d} €"
    if r == 3:
        return f"{a % 10} - {b % 10}"
    if r == 4:
        return f"+223 {a:02d} {b:02d} {c:02d} {a + b:02d}"
    return f"{2000 + a} · {b}%"


def phrase(kind: str, split: str, rng: np.random.Generator, nmin: int = 1, nmax: int = 5) -> str:
    """A few words of one kind; N'Ko phrases sometimes carry N'Ko digits or punctuation."""
    if kind == "digits":
        return digits_text(rng)
    words = vocabulary()[kind][split]
    n = int(rng.integers(nmin, nmax + 1))
    text = " ".join(words[int(i)] for i in rng.integers(0, len(words), n))
    if kind == "nko" and rng.random() < 0.15:
        digits = "".join(chr(0x07C0 + int(d)) for d in rng.integers(0, 10, int(rng.integers(1, 5))))
        text = f"{text} {digits}" if rng.random() < 0.5 else f"{digits} {text}"
    if kind == "nko" and rng.random() < 0.1:
        text += str(rng.choice(["߸", "߹", " ߷", "!", "."]))
    return text


def font_for(kind: str, split: str, rng: np.random.Generator) -> Path:
    """A font for this kind of text from this split's font list."""
    if kind in ("nko", "latin", "arabic"):
        fonts = FONTS[kind][0 if split == "train" else 1]
        return fonts[int(rng.integers(0, len(fonts)))]
    if kind == "digits":
        return font_for("latin", split, rng)
    return OTHER_SCRIPTS[kind][0 if split == "train" else 1]


def label_of(kind: str) -> int:
    return NKO if kind == "nko" else ARABIC if kind == "arabic" else LATIN_OTHER


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.RAQM)


def pick_kind(rng: np.random.Generator, p_nko: float) -> str:
    """N'Ko with probability p_nko; else Latin (most), Arabic, digits or another script."""
    if rng.random() < p_nko:
        return "nko"
    r = rng.random()
    if r < 0.45:
        return "latin"
    if r < 0.65:
        return "arabic"
    if r < 0.75:
        return "digits"
    others = sorted(OTHER_SCRIPTS)
    return others[int(rng.integers(0, len(others)))]


# -- backgrounds -------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: int) -> npt.NDArray[np.float32]:
    small = rng.random((max(2, h // scale + 2), max(2, w // scale + 2))).astype(np.float32)
    img = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """An RGB background: flat, gradient, smooth textures, clutter of shapes and lines, or a mix."""
    r = rng.random()
    base = rng.integers(0, 256, 3).astype(np.float32)
    if r < 0.25:
        arr = np.broadcast_to(base, (h, w, 3)).copy()
    elif r < 0.45:
        other = rng.integers(0, 256, 3).astype(np.float32)
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
        t = t[None, :, None] if t.shape[0] == w else t[:, None, None]
        arr = np.broadcast_to(base * (1 - t) + other * t, (h, w, 3)).copy()
    else:
        arr = np.zeros((h, w, 3), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            scale = int(rng.choice([4, 16, 48, 160]))
            noise = _smooth_noise(rng, h, w, scale)
            color = rng.integers(0, 256, 3).astype(np.float32)
            arr += noise[..., None] * color
        arr = arr / max(1.0, float(arr.max()) / 255.0)
        if rng.random() < 0.4:  # fine grain: foliage, crowds, fabric
            arr += rng.normal(0, float(rng.uniform(5, 40)), (h, w, 1)).astype(np.float32)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.6:
        clutter(image, rng, int(rng.integers(1, 12)))
    return image


def clutter(image: Image.Image, rng: np.random.Generator, n: int) -> None:
    """Rectangles, ellipses, lines, grids and stripes: edges that are not text."""
    draw = ImageDraw.Draw(image)
    w, h = image.size
    for _ in range(n):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.integers(2, w // 2 + 3)), y0 + int(rng.integers(2, h // 2 + 3))
        r = rng.random()
        if r < 0.3:
            draw.rectangle((x0, y0, x1, y1), fill=color)
        elif r < 0.5:
            draw.ellipse((x0, y0, x1, y1), outline=color, width=int(rng.integers(1, 6)))
        elif r < 0.75:
            draw.line((x0, y0, x1, y1), fill=color, width=int(rng.integers(1, 5)))
        elif r < 0.9:  # stripes / grid
            step = int(rng.integers(3, 20))
            for k in range(x0, x1, step):
                draw.line((k, y0, k, y1), fill=color, width=1)
            if rng.random() < 0.5:
                for k in range(y0, y1, step):
                    draw.line((x0, k, x1, k), fill=color, width=1)
        else:  # a wiggly curve (cables, hand drawing)
            xs = np.cumsum(rng.normal(0, 6, 30)) + x0
            ys = np.cumsum(rng.normal(0, 6, 30)) + y0
            draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=color, width=int(rng.integers(1, 4)))


# -- text ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextItem:
    """One rendered text line: its kind, text and the box of its ink in the image."""

    kind: str
    text: str
    box: tuple[int, int, int, int]
    size: int


def _contrasting(rng: np.random.Generator, bg: tuple[int, ...]) -> tuple[int, int, int]:
    luma = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
    for _ in range(20):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        if abs(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] - luma) > float(rng.uniform(50, 120)):
            return c  # type: ignore[return-value]
    return (0, 0, 0) if luma > 128 else (255, 255, 255)


def draw_text(
    image: Image.Image,
    rng: np.random.Generator,
    kind: str,
    text: str,
    font_path: Path,
    size: int,
    xy: tuple[int, int],
    *,
    anchor_right: bool = False,
    style: str = "",
) -> TextItem | None:
    """Draw `text` with a random look (colour, outline, shadow, box); None when it does not fit at all."""
    font = _font(font_path, size)
    draw = ImageDraw.Draw(image)
    direction = "rtl" if kind in ("nko", "arabic", "he", "ff_Adlm") else None
    try:
        box = tuple(int(v) for v in draw.textbbox((0, 0), text, font=font, direction=direction))
    except (OSError, ValueError):
        return None
    tw, th = box[2] - box[0], box[3] - box[1]
    if tw <= 0 or th <= 0:
        return None
    x, y = xy
    if anchor_right:
        x -= tw
    x -= box[0]
    y -= box[1]
    sample = image.getpixel((min(max(0, x + box[0] + tw // 2), image.width - 1), min(max(0, xy[1]), image.height - 1)))
    bg = sample if isinstance(sample, tuple) else (int(sample or 0),) * 3
    style = style or str(rng.choice(["plain", "plain", "outline", "shadow", "box", "band"]))
    fill = _contrasting(rng, bg)
    stroke_width, stroke_fill = 0, None
    pad = max(2, size // 4)
    ink = (x + box[0], y + box[1], x + box[2], y + box[3])
    if style in ("box", "band"):
        boxcolor = tuple(int(c) for c in rng.integers(0, 256, 3))
        fill = _contrasting(rng, boxcolor)
        if style == "band":
            draw.rectangle((0, ink[1] - pad, image.width, ink[3] + pad), fill=boxcolor)
        else:
            draw.rectangle((ink[0] - pad, ink[1] - pad, ink[2] + pad, ink[3] + pad), fill=boxcolor)
    elif style == "outline":
        stroke_width = max(1, int(size * rng.uniform(0.04, 0.12)))
        stroke_fill = (0, 0, 0) if sum(fill) > 380 else (255, 255, 255)
    elif style == "shadow":
        off = max(1, size // 15)
        draw.text((x + off, y + off), text, font=font, fill=(0, 0, 0), direction=direction)
    draw.text(
        (x, y),
        text,
        font=font,
        fill=fill,
        direction=direction,
        stroke_width=stroke_width,
        stroke_fill=stroke_fill,
    )
    return TextItem(kind, text, ink, size)


def degrade(image: Image.Image, rng: np.random.Generator, strength: float = 1.0) -> Image.Image:
    """Blur, noise and JPEG artefacts as a video frame has them."""
    if rng.random() < 0.4 * strength:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.3))))
    if rng.random() < 0.3 * strength:
        arr = np.asarray(image, dtype=np.float32)
        arr = arr + rng.normal(0, float(rng.uniform(2, 12)), arr.shape).astype(np.float32)
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), image.mode)
    if rng.random() < 0.6 * strength:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=int(rng.integers(15, 90)))
        image = Image.open(io.BytesIO(buf.getvalue()))
        image.load()
    return image


# -- training crops --------------------------------------------------------------------------------------

CROP = 128
CELL = 8


def cell_labels(items: list[TextItem], scale: float, size: int) -> npt.NDArray[np.uint8]:
    """Per 8x8-cell class of a crop: the text line whose ink box covers the cell (IGNORE at its rim)."""
    n = size // CELL
    labels = np.zeros((n, n), np.uint8)
    cover = np.zeros((len(items) + 1, n, n), np.float32)
    for i, item in enumerate(items, 1):
        x0, y0, x1, y1 = (v * scale for v in item.box)
        ys = np.arange(n) * CELL
        oy = np.clip(np.minimum(ys + CELL, y1) - np.maximum(ys, y0), 0, CELL) / CELL
        ox = np.clip(np.minimum(ys + CELL, x1) - np.maximum(ys, x0), 0, CELL) / CELL
        cover[i] = oy[:, None] * ox[None, :]
    best = cover.argmax(axis=0)
    frac = cover.max(axis=0)
    for i, item in enumerate(items, 1):
        cls = label_of(item.kind)
        ink_h = (item.box[3] - item.box[1]) * scale
        sel = best == i
        if ink_h < 5:  # too small to read at this scale: no claim either way
            labels[sel & (frac > 0.1)] = IGNORE
            continue
        labels[sel & (frac >= 0.35)] = cls
        labels[sel & (frac > 0.05) & (frac < 0.35)] = IGNORE
    return labels


def training_crop(rng: np.random.Generator, p_nko: float = 0.45) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """One grey 128x128 crop at the network's scale and its 16x16 per-cell labels (training split)."""
    factor = float(rng.choice([1.0, 1.0, 1.5, 2.0, 3.0]))
    big = round(CROP * factor)
    image = background(rng, big, big)
    items: list[TextItem] = []
    for _ in range(int(rng.choice([0, 1, 1, 2, 2, 3]))):
        kind = pick_kind(rng, p_nko)
        # Ink height at the network's scale from ~5 px to ~60 px; small text is common in videos.
        net_size = float(np.exp(rng.uniform(np.log(8), np.log(64))))
        size = max(6, round(net_size * factor))
        text = phrase(kind, "train", rng, 1, 4)
        x = int(rng.integers(-big // 3, big))
        y = int(rng.integers(-size // 2, big - size // 2))
        item = draw_text(image, rng, kind, text, font_for(kind, "train", rng), size, (x, y))
        if item is not None:
            items.append(item)
    if rng.random() < 0.3:
        clutter(image, rng, int(rng.integers(1, 4)))  # shapes over or beside text
    image = degrade(image, rng)
    grey = image.convert("L")
    if big != CROP:
        grey = grey.resize((CROP, CROP), Image.Resampling.BILINEAR)
    arr = np.asarray(grey, dtype=np.uint8)
    # Items painted later may cover earlier ones; label order follows painting order (later wins ties).
    labels = cell_labels(items[::-1], CROP / big, CROP)
    return arr, labels


def training_set(seed: int, n: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """`n` crops and labels, deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    xs = np.zeros((n, CROP, CROP), np.uint8)
    ys = np.zeros((n, CROP // CELL, CROP // CELL), np.uint8)
    for i in range(n):
        xs[i], ys[i] = training_crop(rng)
    return xs, ys


# -- held-out evaluation frames ---------------------------------------------------------------------------

FRAME_KINDS = ("nko", "nko+latin", "latin", "arabic", "other", "digits", "empty")
LAYOUTS = ("subtitle", "slide", "lower-third", "ticker", "signs", "title-card")


@dataclass(frozen=True)
class EvalFrame:
    """A held-out 1280x720 frame and what it holds."""

    image: Image.Image
    kind: str
    layout: str
    has_nko: bool
    nko_font: str
    nko_size: int
    fonts: tuple[str, ...] = ()  # every font drawn with (for confusion by font)


def _text_kinds(frame_kind: str, rng: np.random.Generator) -> list[str]:
    if frame_kind == "nko":
        return ["nko"]
    if frame_kind == "nko+latin":
        return ["nko", "latin"]
    if frame_kind == "other":
        others = sorted(OTHER_SCRIPTS)
        return [others[int(rng.integers(0, len(others)))]]
    return [frame_kind]


def eval_frame(rng: np.random.Generator, frame_kind: str, layout: str, split: str = "eval") -> EvalFrame:
    """One whole-frame layout: held-out fonts and words (split "eval"); with split "train", the same
    layouts with training fonts and words, a validation set for choosing thresholds."""
    w, h = 1280, 720
    image = background(rng, h, w)
    nko_font, nko_size = "", 0
    fonts: list[str] = []
    if frame_kind == "empty":
        clutter(image, rng, int(rng.integers(0, 20)))
        return EvalFrame(degrade(image, rng, 0.7), frame_kind, layout, False, "", 0)
    kinds = _text_kinds(frame_kind, rng)

    def line(kind: str, size: int, xy: tuple[int, int], *, right: bool = False, style: str = "") -> None:
        nonlocal nko_font, nko_size
        font = font_for(kind, split, rng)
        fonts.append(font.name)
        text = phrase(kind, split, rng, 1, 6 if size < 50 else 3)
        if kind == "nko":
            nko_font, nko_size = font.name, size
        draw_text(image, rng, kind, text, font, size, xy, anchor_right=right or kind in ("nko", "arabic"), style=style)

    def kind_at(i: int) -> str:
        return kinds[i % len(kinds)]

    if layout == "subtitle":
        size = int(rng.integers(24, 56))
        style = str(rng.choice(["outline", "box", "shadow", "plain"]))
        for i in range(int(rng.integers(1, 3))):
            y = h - int(h * 0.08) - (i + 1) * int(size * 1.5)
            line(kind_at(i), size, (w // 2 + int(rng.integers(100, 400)), y), right=True, style=style)
    elif layout == "slide":
        title = int(rng.integers(40, 80))
        line(kind_at(0), title, (w - 80, 60), right=True)
        body = int(rng.integers(22, 40))
        for i in range(int(rng.integers(2, 6))):
            line(kind_at(i + 1), body, (w - 100, 60 + title * 2 + i * int(body * 1.8)), right=True, style="plain")
    elif layout == "lower-third":
        size = int(rng.integers(24, 44))
        y = h - int(h * rng.uniform(0.18, 0.3))
        line(kind_at(0), size, (int(rng.integers(400, 900)), y), right=True, style="band")
        line(kind_at(1), int(size * 0.7), (int(rng.integers(400, 900)), y + int(size * 1.6)), right=True, style="box")
    elif layout == "ticker":
        size = int(rng.integers(20, 34))
        line(kind_at(0), size, (w - 20, h - size - 20), right=True, style="band")
        clutter(image, rng, 3)
    elif layout == "signs":
        for i in range(int(rng.integers(1, 4))):
            size = int(rng.integers(20, 70))
            x, y = int(rng.integers(300, w)), int(rng.integers(0, h - size))
            line(kind_at(i), size, (x, y), right=True, style=str(rng.choice(["plain", "box"])))
    else:  # title card: one big centred line
        size = int(rng.integers(60, 130))
        line(kind_at(0), size, (w // 2 + int(rng.integers(100, 500)), h // 2 - size // 2), right=True)
    image = degrade(image, rng, 0.7)
    return EvalFrame(image, frame_kind, layout, "nko" in kinds, nko_font, nko_size, tuple(sorted(set(fonts))))


def eval_frames(seed: int, per_cell: int, split: str = "eval") -> Iterator[EvalFrame]:
    """`per_cell` frames for every (frame kind, layout) pair, deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    for kind in FRAME_KINDS:
        for layout in LAYOUTS:
            for _ in range(per_cell if kind != "empty" else max(1, per_cell // 3)):
                yield eval_frame(rng, kind, layout, split)
