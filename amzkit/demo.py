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
the text, while the text (category, brand, quantity, pack, keywords) carries most of it.
"""

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

FORMAT_VERSION = 1
MARKER_NAME = "demo_marker.json"
TALL_IMAGE_RATIO = 300 / 224  # an occasional portrait image is image_px wide and round(image_px * this) high
TALL_IMAGE_RATE = 0.06
JPEG_QUALITY = 90

PRICE_RANGE = (0.5, 3000.0)
NOISE_SIGMA = 0.25
PREMIUM_PACKAGING_RATE = 0.2
PREMIUM_PACKAGING_EFFECT = 0.4  # added to log(price); visible only in pixels
QUALITY_EFFECT = 0.25  # per standard deviation of the latent quality; visible only as background brightness

DUPLICATE_RATE = 0.02  # share of train rows that relist an existing train product
DUPLICATE_PRICE_SIGMA = 0.04
MISSING_DESCRIPTION_RATE = 0.25
HTML_DESCRIPTION_RATE = 0.35
UNNUMBERED_BULLET_RATE = 0.03
NO_BULLETS_RATE = 0.02
UNIT_NONE_RATE = 0.02

SAMPLE_ID_RANGE = (10_000, 1_000_000)  # 5-6 digit ids

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class UnitSpec:
    """One measurement unit: size in base units (oz or count), item-name spellings, raw `Unit:` spellings."""

    to_base: float
    name_spellings: tuple[str, ...]
    unit_spellings: tuple[str, ...]


UNITS: dict[str, UnitSpec] = {
    "oz": UnitSpec(1.0, ("Ounce", "oz", "Oz"), ("Ounce", "ounce", "oz")),
    "fl oz": UnitSpec(1.0, ("Fl Oz", "fl oz", "Fluid Ounce"), ("Fl Oz", "Fluid Ounce", "fl oz")),
    "lb": UnitSpec(16.0, ("lb", "Pound", "lbs"), ("Pound", "lb")),
    "g": UnitSpec(1 / 28.3495, ("g", "Gram"), ("Gram", "grams")),
    "kg": UnitSpec(35.274, ("kg", "Kilogram"), ("Kilogram", "kg")),
    "ml": UnitSpec(1 / 29.5735, ("ml", "mL"), ("ml",)),
    "l": UnitSpec(33.814, ("Liter", "L"), ("Liter",)),
    "count": UnitSpec(1.0, ("Count", "Ct"), ("Count", "count")),
}


@dataclass(frozen=True)
class Category:
    """A product category: price base, sizes, text phrases and image look."""

    nouns: tuple[str, ...]  # product names; unique to the category (tests map item names back with them)
    sizes: tuple[tuple[float, str], ...]  # (amount, US unit key) of one unit; some listings restate in metric
    unit_price: float  # USD per base unit (oz or count) at the reference quantity
    reference_qty: float  # base units
    elasticity: float  # d log(price) / d log(total quantity)
    multipack_rate: float  # probability that a listing is a pack of several units
    food: bool
    bullets: tuple[str, ...]
    descriptions: tuple[str, ...]
    shape: str  # bottle, jar, box, bag or can
    palette: tuple[RGB, ...]  # body colours (never gold or black: those mean premium packaging)


CATEGORIES: dict[str, Category] = {
    "olive oil": Category(
        nouns=("Extra Virgin Olive Oil", "Pure Olive Oil", "Light Tasting Olive Oil"),
        sizes=((16.9, "fl oz"), (25.5, "fl oz"), (33.8, "fl oz"), (50.7, "fl oz"), (68.0, "fl oz")),
        unit_price=0.55,
        reference_qty=25.5,
        elasticity=0.75,
        multipack_rate=0.25,
        food=True,
        bullets=(
            "Cold pressed from hand-picked olives",
            "Rich, fruity flavor with a peppery finish",
            "Ideal for salads, dipping and sauteing",
            "First cold extraction within hours of harvest",
            "Dark glass bottle protects freshness",
            "High in monounsaturated fats",
        ),
        descriptions=(
            "Rich and fruity olive oil for everyday cooking.",
            "Imported from Italy.",
            "Pressed from a blend of Mediterranean olives.",
        ),
        shape="bottle",
        palette=((46, 94, 40), (86, 120, 34), (30, 70, 50)),
    ),
    "coffee": Category(
        nouns=("Whole Bean Coffee", "Ground Coffee", "Espresso Roast Coffee"),
        sizes=((10.0, "oz"), (12.0, "oz"), (20.0, "oz"), (32.0, "oz"), (2.0, "lb")),
        unit_price=0.9,
        reference_qty=12.0,
        elasticity=0.7,
        multipack_rate=0.25,
        food=True,
        bullets=(
            "Medium roast with notes of chocolate and caramel",
            "100% Arabica beans",
            "Roasted and packed in small batches",
            "Smooth, balanced and never bitter",
            "Works with drip, pour-over and French press",
            "Resealable bag keeps beans fresh",
        ),
        descriptions=(
            "A smooth, full-bodied roast for your morning cup.",
            "Sourced from high-altitude farms in Central America.",
            "Roasted to bring out a sweet, chocolatey finish.",
        ),
        shape="bag",
        palette=((92, 58, 36), (60, 40, 30), (140, 90, 50)),
    ),
    "snacks": Category(
        nouns=("Kettle Cooked Potato Chips", "Trail Mix", "Sourdough Pretzels"),
        sizes=((1.0, "oz"), (1.5, "oz"), (7.0, "oz"), (10.0, "oz"), (16.0, "oz")),
        unit_price=0.6,
        reference_qty=8.0,
        elasticity=0.65,
        multipack_rate=0.55,
        food=True,
        bullets=(
            "Crunchy, satisfying snack for lunch boxes",
            "Individually wrapped single-serve bags",
            "No artificial flavors or preservatives",
            "Perfect for work, school and travel",
            "Made with simple ingredients",
            "Great for parties and game day",
        ),
        descriptions=(
            "A crunchy snack made with simple ingredients.",
            "Perfect for sharing, or not.",
            "Cooked in small batches for extra crunch.",
        ),
        shape="bag",
        palette=((200, 50, 40), (230, 120, 30), (180, 30, 90)),
    ),
    "spices": Category(
        nouns=("Ground Cinnamon", "Smoked Paprika", "Black Peppercorns"),
        sizes=((1.5, "oz"), (2.0, "oz"), (2.5, "oz"), (4.0, "oz"), (16.0, "oz")),
        unit_price=2.4,
        reference_qty=2.5,
        elasticity=0.6,
        multipack_rate=0.2,
        food=True,
        bullets=(
            "Bold aroma and flavor",
            "Finely ground for even seasoning",
            "Packed in a shaker jar",
            "Essential for baking, rubs and marinades",
            "Kosher certified",
            "Freshness sealed",
        ),
        descriptions=(
            "A pantry staple with a warm, bold flavor.",
            "Carefully sourced and ground for freshness.",
            "Adds depth to sweet and savory dishes.",
        ),
        shape="jar",
        palette=((150, 60, 30), (120, 40, 40), (60, 90, 60)),
    ),
    "tea": Category(
        nouns=("Green Tea Bags", "English Breakfast Black Tea", "Chamomile Herbal Tea"),
        sizes=((16.0, "count"), (20.0, "count"), (40.0, "count"), (100.0, "count")),
        unit_price=0.25,
        reference_qty=20.0,
        elasticity=0.7,
        multipack_rate=0.4,
        food=True,
        bullets=(
            "Individually wrapped tea bags",
            "Naturally caffeine free",
            "Steep 3 to 5 minutes for best flavor",
            "Enjoy hot or iced",
            "Whole leaf blend",
            "Compostable tea bags",
        ),
        descriptions=(
            "A soothing cup for any time of day.",
            "Blended from whole leaves for a full flavor.",
            "Carefully sourced from estate gardens.",
        ),
        shape="box",
        palette=((40, 110, 80), (140, 30, 50), (50, 70, 140)),
    ),
    "pasta sauce": Category(
        nouns=("Marinara Sauce", "Tomato Basil Pasta Sauce", "Arrabbiata Sauce"),
        sizes=((15.0, "oz"), (24.0, "oz"), (26.0, "oz"), (32.0, "oz")),
        unit_price=0.25,
        reference_qty=24.0,
        elasticity=0.75,
        multipack_rate=0.3,
        food=True,
        bullets=(
            "Made with vine-ripened tomatoes",
            "Slow simmered for rich flavor",
            "No added sugar",
            "Ready to heat and serve",
            "Made with extra virgin olive oil",
            "Family recipe",
        ),
        descriptions=(
            "A classic sauce made from vine-ripened tomatoes.",
            "Slow cooked with garlic and fresh basil.",
            "Perfect on pasta, pizza and more.",
        ),
        shape="jar",
        palette=((170, 30, 30), (200, 70, 40), (120, 20, 30)),
    ),
    "pet food": Category(
        nouns=("Dry Dog Food", "Grain Free Dry Cat Food", "Puppy Formula Dog Food"),
        sizes=((3.0, "lb"), (5.0, "lb"), (15.0, "lb"), (24.0, "lb"), (30.0, "lb")),
        unit_price=0.275,
        reference_qty=80.0,
        elasticity=0.7,
        multipack_rate=0.3,
        food=False,
        bullets=(
            "Real meat is the first ingredient",
            "Complete and balanced nutrition",
            "Supports healthy digestion",
            "No corn, wheat or soy",
            "Crunchy kibble helps clean teeth",
            "Made without artificial colors",
        ),
        descriptions=(
            "Complete nutrition your pet will love.",
            "Made with real meat and wholesome grains.",
            "Formulated with veterinarians.",
        ),
        shape="bag",
        palette=((40, 80, 160), (200, 90, 30), (60, 130, 60)),
    ),
    "vitamins": Category(
        nouns=("Vitamin D3 Softgels", "Multivitamin Gummies", "Magnesium Glycinate Capsules"),
        sizes=((60.0, "count"), (90.0, "count"), (120.0, "count"), (240.0, "count"), (365.0, "count")),
        unit_price=0.18,
        reference_qty=90.0,
        elasticity=0.6,
        multipack_rate=0.15,
        food=False,
        bullets=(
            "Supports immune health",
            "One daily serving",
            "Third-party tested for purity",
            "Easy to swallow",
            "No artificial colors or flavors",
            "Made in a GMP certified facility",
        ),
        descriptions=(
            "A daily supplement to support your wellness routine.",
            "Formulated for optimal absorption.",
            "These statements have not been evaluated by the FDA.",
        ),
        shape="bottle",
        palette=((230, 120, 40), (40, 120, 190), (200, 60, 90)),
    ),
    "candles": Category(
        nouns=("Scented Jar Candle", "Soy Wax Candle", "Three Wick Candle"),
        sizes=((3.5, "oz"), (7.0, "oz"), (14.5, "oz"), (22.0, "oz")),
        unit_price=1.65,
        reference_qty=14.5,
        elasticity=0.7,
        multipack_rate=0.15,
        food=False,
        bullets=(
            "Long lasting burn time",
            "Cotton wick for a clean burn",
            "Hand poured",
            "Fills the room with fragrance",
            "Makes a thoughtful gift",
            "Reusable glass jar",
        ),
        descriptions=(
            "A warm, inviting fragrance for any room.",
            "Hand poured with a cotton wick.",
            "Notes of vanilla, cedar and amber.",
        ),
        shape="jar",
        palette=((180, 120, 170), (120, 160, 190), (210, 180, 150)),
    ),
    "shampoo": Category(
        nouns=("Moisturizing Shampoo", "Clarifying Shampoo", "Volumizing Shampoo"),
        sizes=((8.5, "fl oz"), (12.0, "fl oz"), (16.9, "fl oz"), (28.0, "fl oz"), (33.8, "fl oz")),
        unit_price=0.8,
        reference_qty=13.5,
        elasticity=0.65,
        multipack_rate=0.2,
        food=False,
        bullets=(
            "Gently cleanses without stripping",
            "Sulfate free formula",
            "Safe for color treated hair",
            "Light, fresh scent",
            "Adds shine and softness",
            "Suitable for all hair types",
        ),
        descriptions=(
            "A gentle shampoo for healthy looking hair.",
            "Formulated with plant-based cleansers.",
            "Leaves hair soft, shiny and manageable.",
        ),
        shape="bottle",
        palette=((60, 150, 190), (150, 80, 170), (90, 170, 120)),
    ),
    "sparkling water": Category(
        nouns=("Sparkling Water", "Lime Seltzer Water", "Sparkling Mineral Water"),
        sizes=((8.0, "fl oz"), (12.0, "fl oz"), (16.9, "fl oz")),
        unit_price=0.0625,
        reference_qty=96.0,
        elasticity=0.8,
        multipack_rate=0.85,
        food=True,
        bullets=(
            "Zero calories and zero sweeteners",
            "Crisp, refreshing bubbles",
            "Naturally flavored",
            "Great for mixing",
            "Recyclable cans",
            "Serve chilled",
        ),
        descriptions=(
            "Crisp, refreshing and naturally flavored.",
            "Nothing artificial, just bubbles.",
            "A refreshing alternative to soda.",
        ),
        shape="can",
        palette=((60, 160, 200), (200, 60, 60), (120, 190, 80)),
    ),
    "cereal": Category(
        nouns=("Honey Almond Granola", "Whole Grain Oat Cereal", "Frosted Wheat Squares"),
        sizes=((11.0, "oz"), (12.0, "oz"), (18.0, "oz"), (24.0, "oz")),
        unit_price=0.42,
        reference_qty=12.0,
        elasticity=0.7,
        multipack_rate=0.3,
        food=True,
        bullets=(
            "Good source of fiber",
            "Made with whole grains",
            "Delicious with milk or yogurt",
            "Crunchy clusters",
            "A wholesome start to the day",
            "No high fructose corn syrup",
        ),
        descriptions=(
            "A wholesome breakfast made with whole grains.",
            "Lightly sweetened and perfectly crunchy.",
            "Enjoy with milk, yogurt or straight from the box.",
        ),
        shape="box",
        palette=((210, 90, 40), (80, 60, 160), (40, 140, 170)),
    ),
    "honey": Category(
        nouns=("Raw Wildflower Honey", "Clover Honey", "Manuka Honey"),
        sizes=((8.0, "oz"), (12.0, "oz"), (16.0, "oz"), (32.0, "oz"), (3.0, "lb")),
        unit_price=0.75,
        reference_qty=16.0,
        elasticity=0.75,
        multipack_rate=0.15,
        food=True,
        bullets=(
            "Raw and unfiltered",
            "Sourced from local beekeepers",
            "Naturally sweet, nothing added",
            "Perfect for tea, toast and baking",
            "May crystallize naturally",
            "Squeeze-free pour spout",
        ),
        descriptions=(
            "Pure honey straight from the hive.",
            "Harvested from wildflower meadows.",
            "Naturally sweet with floral notes.",
        ),
        shape="jar",
        palette=((170, 100, 30), (150, 80, 20), (120, 70, 40)),
    ),
    "soup": Category(
        nouns=("Chicken Noodle Soup", "Tomato Bisque Soup", "Lentil Vegetable Soup"),
        sizes=((10.5, "oz"), (16.3, "oz"), (18.6, "oz"), (32.0, "oz")),
        unit_price=0.19,
        reference_qty=18.0,
        elasticity=0.75,
        multipack_rate=0.5,
        food=True,
        bullets=(
            "Ready to heat and eat",
            "Made with real vegetables",
            "Microwavable in minutes",
            "A hearty, comforting meal",
            "Good source of protein",
            "Easy open lid",
        ),
        descriptions=(
            "A hearty, comforting soup made with real ingredients.",
            "Simmered slowly for homemade taste.",
            "Ready in minutes.",
        ),
        shape="can",
        palette=((190, 40, 40), (225, 225, 215), (60, 100, 150)),
    ),
}


@dataclass(frozen=True)
class Brand:
    """A brand: log-price premium and how often it is listed."""

    premium: float
    weight: float


BRANDS: dict[str, Brand] = {
    "Valueway": Brand(-0.45, 3.0),
    "Basics Co.": Brand(-0.35, 3.0),
    "Everyday Pantry": Brand(-0.25, 3.0),
    "Harvest Lane": Brand(-0.10, 3.0),
    "Green Meadow": Brand(0.0, 3.0),
    "Sunvale": Brand(0.0, 3.0),
    "Blue Ridge Farms": Brand(0.05, 2.5),
    "Cedar & Pine": Brand(0.15, 2.0),
    "Golden Grove": Brand(0.20, 2.0),
    "Maison Verte": Brand(0.45, 1.2),
    "Alder Reserve": Brand(0.60, 0.8),
    "Aurelia Luxe": Brand(1.00, 0.4),
    "Noble Atelier": Brand(1.30, 0.25),
}


@dataclass(frozen=True)
class Keyword:
    """A claim in the item name with its log-price effect."""

    effect: float
    phrase: str
    bullet: str
    food_only: bool


KEYWORDS: dict[str, Keyword] = {
    "organic": Keyword(0.20, "Organic", "USDA certified organic", False),
    "gourmet": Keyword(0.30, "Gourmet", "Gourmet recipe crafted in small batches", True),
    "premium": Keyword(0.25, "Premium", "Premium quality ingredients", False),
    "artisan": Keyword(0.30, "Artisan", "Artisan made by skilled craftspeople", False),
    "imported": Keyword(0.15, "Imported", "Imported from Europe", True),
    "gluten-free": Keyword(0.10, "Gluten-Free", "Certified gluten-free", True),
    "non-gmo": Keyword(0.05, "Non-GMO", "Non-GMO Project verified", False),
    "bulk": Keyword(-0.15, "Bulk", "Bulk size for stocking up", False),
    "value pack": Keyword(-0.10, "Value Pack", "Value pack: more for less", False),
    "family size": Keyword(-0.05, "Family Size", "Family size for sharing", True),
}

METRIC_RATE = 0.12  # share of weight/volume listings stated in metric units
METRIC_OF: dict[str, tuple[str, str]] = {"oz": ("g", "kg"), "lb": ("g", "kg"), "fl oz": ("ml", "l")}

PACK_SIZES: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 24)
PACK_WEIGHTS: tuple[float, ...] = (0.25, 0.12, 0.15, 0.2, 0.08, 0.15, 0.05)
PACK_PHRASES: tuple[str, ...] = ("paren", "dash", "case")  # (Pack of 6) / 6-Pack / 6 per case
KEYWORD_COUNT_WEIGHTS: tuple[float, ...] = (0.45, 0.4, 0.15)  # 0, 1 or 2 keywords per listing
GENERIC_BULLETS: tuple[str, ...] = (
    "Satisfaction guaranteed",
    "Packaging may vary",
    "Ships in recyclable packaging",
    "Store in a cool, dry place",
)
SHAPES: tuple[str, ...] = ("bottle", "jar", "box", "bag", "can")

PREMIUM_BODY: RGB = (22, 20, 18)
PREMIUM_GOLD: RGB = (212, 175, 55)
PREMIUM_GLOSS: RGB = (110, 108, 104)
LABEL_COLOUR: RGB = (245, 240, 228)
INK_COLOUR: RGB = (30, 30, 30)


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


def make_demo(
    out_dir: str | Path, n_train: int = 600, n_test: int = 200, seed: int = 0, image_px: int = 224
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

    files.images_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # an interrupted regeneration must never look finished

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
