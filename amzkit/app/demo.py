"""Embedded, deterministic demo competition in the Amazon ML Challenge 2025 schema.

`make_demo` writes ``train.csv`` / ``test.csv`` (``sample_id, catalog_content, image_link[, price]``),
``solution.csv`` (the hidden test prices, for scoring the demo) and ``images/<sample_id>.jpg``.

Hidden price structure (natural log, per listing)::

    log(price) = log(unit_price * reference_qty)                  # category base
               + elasticity * log(total_qty / reference_qty)      # total quantity in base units (oz or count)
               + brand premium + sum(keyword effects)             # all stated in the text
               + 0.40 * premium_packaging + 0.25 * quality        # image-only: never stated in the text
               + Normal(0, 0.25)                                  # lognormal noise
    price = clip(exp(log(price)), 0.5, 3000), rounded to cents

``premium_packaging`` paints the product black with a gold label and a glossy highlight band; ``quality``
(standard normal) sets the background brightness.  So pixel colour statistics carry real price signal beyond
the text, while the text (category, brand, quantity, pack, keywords) carries most of it."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from amzkit.app.demo_catalog import (
    BRANDS,
    CATEGORIES,
    DUPLICATE_PRICE_SIGMA,
    DUPLICATE_RATE,
    GENERIC_BULLETS,
    HTML_DESCRIPTION_RATE,
    INK_COLOUR,
    KEYWORD_COUNT_WEIGHTS,
    KEYWORDS,
    LABEL_COLOUR,
    METRIC_OF,
    METRIC_RATE,
    MISSING_DESCRIPTION_RATE,
    NO_BULLETS_RATE,
    NOISE_SIGMA,
    PACK_PHRASES,
    PACK_SIZES,
    PACK_WEIGHTS,
    PREMIUM_BODY,
    PREMIUM_GLOSS,
    PREMIUM_GOLD,
    PREMIUM_PACKAGING_EFFECT,
    PREMIUM_PACKAGING_RATE,
    PRICE_RANGE,
    QUALITY_EFFECT,
    RGB,
    SHAPES,
    UNIT_NONE_RATE,
    UNITS,
    UNNUMBERED_BULLET_RATE,
    Category,
)

FORMAT_VERSION = 1


MARKER_NAME = "demo_marker.json"


TALL_IMAGE_RATIO = 300 / 224  # an occasional portrait image is image_px wide and round(image_px * this) high


TALL_IMAGE_RATE = 0.06


JPEG_QUALITY = 90


SAMPLE_ID_RANGE = (10_000, 1_000_000)  # 5-6 digit ids


@dataclass(frozen=True)
class DemoFiles:
    """Paths written by `make_demo`."""

    train_csv: Path
    test_csv: Path
    solution_csv: Path
    images_dir: Path


@dataclass(frozen=True)
class _Listing:
    """One generated product listing: its text, latent image look and hidden price."""

    category: str
    brand: str
    catalog_content: str
    premium_packaging: bool
    quality: float
    body_colour: RGB
    tall: bool
    offset: tuple[float, float]
    scale: float
    price: float


def _pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float] | None = None):
    """One element of `options` (optionally weighted), drawn from `rng`."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    probabilities = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=probabilities / probabilities.sum()))]


def _format_amount(amount: float) -> str:
    """`33.8` -> '33.8', `12.0` -> '12' as in real item names."""
    return f"{amount:g}"


def _metric(amount: float, unit_key: str) -> tuple[float, str]:
    """A US size restated in rounded metric units: 16.9 fl oz -> 500 ml, 33.8 fl oz -> 1 l."""
    small, large = METRIC_OF[unit_key]
    metric = amount * UNITS[unit_key].to_base / UNITS[small].to_base
    if metric >= 1000:
        return round(metric / 1000, 1), large
    return float(round(metric / 5) * 5 if metric >= 100 else round(metric)), small


def _brand_initials(brand: str) -> str:
    """Label text: the initials of the brand's words ('Blue Ridge Farms' -> 'BRF')."""
    return "".join(word[0] for word in brand.split() if word[0].isalpha())[:3].upper()


def _item_name(brand: str, phrases: list[str], noun: str, size: str, pack: int, pack_style: str) -> str:
    """The `Item Name:` text, with the pack phrase in one of the real spellings."""
    head = " ".join([brand, *phrases, noun])
    if pack == 1:
        return f"{head}, {size}"
    if pack_style == "paren":
        return f"{head}, {size} (Pack of {pack})"
    if pack_style == "dash":
        return f"{head}, {pack}-Pack, {size}"
    return f"{head}, {size}, {pack} per case"


def _description(rng: np.random.Generator, category: Category, noun: str, brand: str) -> str | None:
    """The optional `Product Description:` text; sometimes HTML, sometimes missing."""
    if rng.random() < MISSING_DESCRIPTION_RATE:
        return None
    order = rng.permutation(len(category.descriptions))[: int(rng.integers(1, 3))]
    sentences = [f"{noun} by {brand.rstrip('.')}.", *(category.descriptions[i] for i in sorted(order))]
    if rng.random() < HTML_DESCRIPTION_RATE:
        return "<p>" + "<br>".join(sentences) + "</p>"
    return " ".join(sentences)


def _catalog_content(
    item_name: str, bullets: list[str], description: str | None, value: float, unit: str, unnumbered: bool
) -> str:
    """The multi-line `catalog_content` field."""
    lines = [f"Item Name: {item_name}"]
    if unnumbered and bullets:
        lines.append(f"Bullet Point: {bullets[0]}")
    else:
        lines.extend(f"Bullet Point {number}: {text}" for number, text in enumerate(bullets, start=1))
    if description is not None:
        lines.append(f"Product Description: {description}")
    lines.append(f"Value: {round(value, 2)}")
    lines.append(f"Unit: {unit}")
    return "\n".join(lines)


def _bullets(rng: np.random.Generator, category: Category, keywords: list[str]) -> list[str]:
    """Two to five category bullets, keyword claims and sometimes a generic line, in random order."""
    if rng.random() < NO_BULLETS_RATE:
        return []
    chosen = [category.bullets[i] for i in rng.permutation(len(category.bullets))[: int(rng.integers(2, 6))]]
    chosen += [KEYWORDS[name].bullet for name in keywords]
    if rng.random() < 0.3:
        chosen.append(_pick(rng, GENERIC_BULLETS))
    return [chosen[i] for i in rng.permutation(len(chosen))]


def _make_listing(rng: np.random.Generator) -> _Listing:
    """Draw one product: text, latent image look and its hidden price."""
    category_name = _pick(rng, sorted(CATEGORIES))
    category = CATEGORIES[category_name]
    brand_names = sorted(BRANDS)
    brand = _pick(rng, brand_names, [BRANDS[name].weight for name in brand_names])
    noun = _pick(rng, category.nouns)
    amount, unit_key = _pick(rng, category.sizes)
    total_qty = amount * UNITS[unit_key].to_base
    if unit_key in METRIC_OF and rng.random() < METRIC_RATE:
        amount, unit_key = _metric(amount, unit_key)
    unit = UNITS[unit_key]
    pack = int(_pick(rng, PACK_SIZES, PACK_WEIGHTS)) if rng.random() < category.multipack_rate else 1
    pack_style = _pick(rng, PACK_PHRASES)

    allowed = [name for name in sorted(KEYWORDS) if category.food or not KEYWORDS[name].food_only]
    if pack == 1:
        allowed = [name for name in allowed if name != "value pack"]
    n_keywords = int(rng.choice(len(KEYWORD_COUNT_WEIGHTS), p=KEYWORD_COUNT_WEIGHTS))
    keywords = [allowed[i] for i in sorted(rng.permutation(len(allowed))[:n_keywords])]

    size_text = f"{_format_amount(amount)} {_pick(rng, unit.name_spellings)}"
    item_name = _item_name(brand, [KEYWORDS[k].phrase for k in keywords], noun, size_text, pack, pack_style)
    bullets = _bullets(rng, category, keywords)
    description = _description(rng, category, noun, brand)
    value = amount * pack
    unit_text = "None" if rng.random() < UNIT_NONE_RATE else _pick(rng, unit.unit_spellings)
    unnumbered = bool(rng.random() < UNNUMBERED_BULLET_RATE)
    text = _catalog_content(item_name, bullets, description, value, unit_text, unnumbered)

    premium_packaging = bool(rng.random() < PREMIUM_PACKAGING_RATE)
    quality = float(rng.normal())
    total_qty *= pack
    log_price = (
        np.log(category.unit_price * category.reference_qty)
        + category.elasticity * np.log(total_qty / category.reference_qty)
        + BRANDS[brand].premium
        + sum(KEYWORDS[k].effect for k in keywords)
        + PREMIUM_PACKAGING_EFFECT * premium_packaging
        + QUALITY_EFFECT * quality
        + rng.normal(0.0, NOISE_SIGMA)
    )
    price = round(float(np.clip(np.exp(log_price), *PRICE_RANGE)), 2)
    return _Listing(
        category=category_name,
        brand=brand,
        catalog_content=text,
        premium_packaging=premium_packaging,
        quality=quality,
        body_colour=_pick(rng, category.palette),
        tall=bool(rng.random() < TALL_IMAGE_RATE),
        offset=(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.03, 0.03))),
        scale=float(rng.uniform(0.9, 1.08)),
        price=price,
    )


def _relist(rng: np.random.Generator, listing: _Listing) -> _Listing:
    """The same product listed again: identical item name, bullets reordered, a close price."""
    lines = listing.catalog_content.split("\n")
    bullet_rows = [i for i, line in enumerate(lines) if line.startswith("Bullet Point ")]
    texts = [lines[i].split(": ", 1)[1] for i in bullet_rows]
    for number, (row, source) in enumerate(
        zip(bullet_rows, rng.permutation(len(texts)), strict=True), start=1
    ):
        lines[row] = f"Bullet Point {number}: {texts[source]}"
    price = round(
        float(np.clip(listing.price * np.exp(rng.normal(0.0, DUPLICATE_PRICE_SIGMA)), *PRICE_RANGE)), 2
    )
    return replace(listing, catalog_content="\n".join(lines), price=price)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's embedded default font at `size` pixels."""
    return ImageFont.load_default(size=size)


def _background(listing: _Listing) -> RGB:
    """Neutral backdrop whose brightness follows the latent quality score."""
    level = int(np.clip(178 + 38 * listing.quality, 90, 250))
    return (level, level, level - 6)


def _draw_product(draw: ImageDraw.ImageDraw, listing: _Listing, shape: str, width: int, height: int) -> tuple:
    """Draw the product body; returns the label band box (x0, y0, x1, y1)."""
    body = PREMIUM_BODY if listing.premium_packaging else listing.body_colour
    trim = PREMIUM_GOLD if listing.premium_packaging else tuple(max(0, c - 50) for c in listing.body_colour)
    cx = width * (0.5 + listing.offset[0])
    cy = height * (0.5 + listing.offset[1])
    s = listing.scale

    def x(fraction: float) -> float:
        return cx + fraction * width * s

    def y(fraction: float) -> float:
        return cy + fraction * height * s

    draw.ellipse((x(-0.3), y(0.34), x(0.3), y(0.42)), fill=(90, 90, 90))  # floor shadow
    if shape == "bottle":
        draw.rectangle((x(-0.06), y(-0.3), x(0.06), y(-0.12)), fill=body)
        draw.rectangle((x(-0.07), y(-0.37), x(0.07), y(-0.29)), fill=trim)
        draw.rounded_rectangle((x(-0.16), y(-0.15), x(0.16), y(0.38)), radius=width * 0.05 * s, fill=body)
        box = (x(-0.16), y(0.0), x(0.16), y(0.2))
    elif shape == "jar":
        draw.rounded_rectangle((x(-0.25), y(-0.15), x(0.25), y(0.36)), radius=width * 0.06 * s, fill=body)
        draw.rectangle((x(-0.23), y(-0.26), x(0.23), y(-0.14)), fill=trim)
        box = (x(-0.25), y(-0.02), x(0.25), y(0.22))
    elif shape == "box":
        draw.polygon(
            [(x(0.18), y(-0.3)), (x(0.26), y(-0.36)), (x(0.26), y(0.3)), (x(0.18), y(0.36))], fill=trim
        )
        draw.polygon(
            [(x(-0.22), y(-0.3)), (x(-0.14), y(-0.36)), (x(0.26), y(-0.36)), (x(0.18), y(-0.3))], fill=trim
        )
        draw.rectangle((x(-0.22), y(-0.3), x(0.18), y(0.36)), fill=body)
        box = (x(-0.22), y(-0.05), x(0.18), y(0.13))
    elif shape == "bag":
        outline = [
            (x(-0.2), y(-0.3)),
            (x(0.2), y(-0.3)),
            (x(0.27), y(0.1)),
            (x(0.22), y(0.37)),
            (x(-0.22), y(0.37)),
            (x(-0.27), y(0.1)),
        ]
        draw.polygon(outline, fill=body)
        teeth = [(x(-0.2 + 0.04 * i), y(-0.3 - 0.025 * (i % 2))) for i in range(11)]
        draw.line(teeth, fill=trim, width=max(1, int(width * 0.012)))
        box = (x(-0.25), y(-0.02), x(0.25), y(0.18))
    elif shape == "can":
        draw.rectangle((x(-0.17), y(-0.28), x(0.17), y(0.34)), fill=body)
        draw.ellipse((x(-0.17), y(0.3), x(0.17), y(0.38)), fill=body)
        draw.ellipse((x(-0.17), y(-0.32), x(0.17), y(-0.24)), fill=trim)
        box = (x(-0.17), y(-0.06), x(0.17), y(0.16))
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    if listing.premium_packaging:  # glossy highlight band down the body
        draw.rectangle(
            (box[0] + (box[2] - box[0]) * 0.12, y(-0.12), box[0] + (box[2] - box[0]) * 0.2, y(0.32)),
            fill=PREMIUM_GLOSS,
        )
    return box


def _render(listing: _Listing, image_px: int) -> bytes:
    """The listing's product photo as JPEG bytes."""
    width = image_px
    height = round(image_px * TALL_IMAGE_RATIO) if listing.tall else image_px
    image = Image.new("RGB", (width, height), _background(listing))
    draw = ImageDraw.Draw(image)
    box = _draw_product(draw, listing, CATEGORIES[listing.category].shape, width, height)
    band = PREMIUM_GOLD if listing.premium_packaging else LABEL_COLOUR
    ink = PREMIUM_BODY if listing.premium_packaging else INK_COLOUR
    draw.rectangle(box, fill=band)
    font = _font(max(8, int((box[3] - box[1]) * 0.6)))
    text = _brand_initials(listing.brand)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    origin = ((box[0] + box[2] - (right - left)) / 2 - left, (box[1] + box[3] - (bottom - top)) / 2 - top)
    draw.text(origin, text, fill=ink, font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary name beside `path`, then rename over it (never a half-written file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as deterministic CSV bytes."""
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def _marker_record(n_train: int, n_test: int, seed: int, image_px: int) -> dict[str, int]:
    """What the marker file records about a finished run."""
    return {
        "format_version": FORMAT_VERSION,
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
        "image_px": image_px,
    }


def _is_complete(files: DemoFiles, marker: Path, record: dict[str, int]) -> bool:
    """True when a finished run with the same parameters left every output in place."""
    try:
        if json.loads(marker.read_text()) != record:
            return False
        links = [
            pd.read_csv(path, usecols=["image_link"])["image_link"]
            for path in (files.train_csv, files.test_csv)
        ]
        return files.solution_csv.is_file() and all(
            (files.train_csv.parent / link).is_file() for column in links for link in column
        )
    except (OSError, ValueError, KeyError):
        return False


def _remove_leftovers(folder: Path, keep_images: set[str] | None = None) -> None:
    """Drop temporary files of killed runs and, given `keep_images`, images of earlier runs not in it."""
    for path in sorted(folder.iterdir()):
        stale_image = (
            keep_images is not None
            and re.fullmatch(r"\d+\.jpg", path.name) is not None
            and path.name not in keep_images
        )
        temporary = path.name.startswith(".") and path.name.endswith(".tmp")
        if path.is_file() and (stale_image or temporary):
            path.unlink(missing_ok=True)


def _reads_as_demo_table(path: Path) -> bool:
    """True when every row of the CSV at `path` links the demo's own picture, images/<its sample_id>.jpg."""
    try:
        frame = pd.read_csv(path, usecols=["sample_id", "image_link"], dtype=str)
    except (OSError, ValueError):
        return False
    return len(frame) > 0 and bool((frame["image_link"] == "images/" + frame["sample_id"] + ".jpg").all())


def _refuse_other_data(root: Path, files: DemoFiles, marker: Path) -> None:
    """Refuse to write the demo over a train.csv / test.csv that no demo wrote (a folder without the demo's
    marker, or a table whose rows are not the demo's: the user's data copied into a folder a demo once wrote):
    the demo would replace them and delete the `<digits>.jpg` pictures in images/ it did not make."""
    theirs = [path.name for path in (files.train_csv, files.test_csv)
              if path.is_file() and not (marker.is_file() and _reads_as_demo_table(path))]
    if not marker.is_file() and files.images_dir.is_dir() and any(files.images_dir.iterdir()):
        theirs.append("images/")  # pictures put there before their CSVs: the demo would delete its <digits>.jpg
    if theirs:
        raise FileExistsError(f"{root} holds {' and '.join(theirs)} that the demo did not write (no {MARKER_NAME}, "
                              "or rows not linking images/<sample_id>.jpg): "
                              "the demo would replace them. Give the demo another folder (-p data_dir demo writes "
                              "<work_dir>/data: choose another -p work_dir), or pass your data with -p data_dir "
                              f"{root}")


DEMO_N_TRAIN, DEMO_N_TEST, DEMO_SEED = 600, 200, 0  # the demo competition `make demo` runs on


def make_demo(
    out_dir: str | Path, n_train: int = DEMO_N_TRAIN, n_test: int = DEMO_N_TEST, seed: int = DEMO_SEED,
    image_px: int = 224
) -> DemoFiles:
    """Write a deterministic demo competition (train/test/solution CSVs and images) into `out_dir`.

    Reruns with the same parameters are skipped when every output and the marker file are present.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train} and {n_test}")
    if image_px < 32:
        raise ValueError(f"image_px must be >= 32, got {image_px}")
    root = Path(out_dir)
    files = DemoFiles(root / "train.csv", root / "test.csv", root / "solution.csv", root / "images")
    marker = root / MARKER_NAME
    record = _marker_record(n_train, n_test, seed, image_px)
    if _is_complete(files, marker, record):
        return files
    _refuse_other_data(root, files, marker)

    files.images_dir.mkdir(parents=True, exist_ok=True)
    # the folder stays marked as the demo's, but an interrupted regeneration must never look finished
    _write_atomic(marker, (json.dumps({**record, "complete": False}, sort_keys=True) + "\n").encode("utf-8"))

    rng = np.random.default_rng(seed)
    n_duplicates = round(DUPLICATE_RATE * n_train) if n_train >= 10 else 0
    train = [_make_listing(rng) for _ in range(n_train - n_duplicates)]
    test = [_make_listing(rng) for _ in range(n_test)]
    sources = rng.choice(len(train), size=n_duplicates, replace=False)
    train += [_relist(rng, train[int(i)]) for i in sources]
    train = [train[int(i)] for i in rng.permutation(len(train))]
    low, high = SAMPLE_ID_RANGE
    ids = (rng.choice(high - low, size=n_train + n_test, replace=False) + low).tolist()

    rows = []
    for sample_id, listing in zip(ids, train + test, strict=True):
        link = f"{files.images_dir.name}/{sample_id}.jpg"
        _write_atomic(root / link, _render(listing, image_px))
        rows.append(
            {
                "sample_id": sample_id,
                "catalog_content": listing.catalog_content,
                "image_link": link,
                "price": listing.price,
            }
        )
    frame = pd.DataFrame(rows).astype({"sample_id": "int64", "price": "float64"})
    _write_atomic(files.train_csv, _csv_bytes(frame.iloc[:n_train]))
    _write_atomic(files.test_csv, _csv_bytes(frame.iloc[n_train:].drop(columns="price")))
    _write_atomic(files.solution_csv, _csv_bytes(frame.iloc[n_train:][["sample_id", "price"]]))
    _remove_leftovers(files.images_dir, {f"{sample_id}.jpg" for sample_id in ids})
    _remove_leftovers(root)
    _write_atomic(marker, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
    return files
