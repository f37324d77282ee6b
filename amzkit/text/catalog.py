"""Parse the Amazon ML Challenge 2025 ``catalog_content`` text into structured fields.

A catalog text is a block of labelled lines::

    Item Name: ...
    Bullet Point 1: ...          (or an unnumbered "Bullet Point: ...")
    Product Description: ...     (optional; may hold HTML and span several lines)
    Value: 16.0
    Unit: Ounce

Units are not normalised in the data ("Ounce", "ounce", "oz", "Fl Oz", "Count", "None", ...);
:func:`normalize_unit` maps them onto a small canonical vocabulary (:data:`UNITS`) so that the
quantity can be converted to one base unit per family.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "UNITS",
    "UNIT_ALIASES",
    "CatalogEntry",
    "catalog_text",
    "clean_html",
    "normalize_unit",
    "pack_count_from_name",
    "parse_catalog",
    "parse_catalog_column",
]

# --------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------

_GRAMS_PER_OUNCE = 28.349523125  # avoirdupois ounce, exact by definition
_ML_PER_FL_OZ = 29.5735295625  # US fluid ounce, exact by definition
_CM_PER_INCH = 2.54

UNITS: dict[str, tuple[str, float]] = {
    # weight: base ounce
    "ounce": ("weight", 1.0),
    "pound": ("weight", 16.0),
    "gram": ("weight", 1.0 / _GRAMS_PER_OUNCE),  # 0.035274 oz
    "kilogram": ("weight", 1000.0 / _GRAMS_PER_OUNCE),  # 35.274 oz
    "milligram": ("weight", 0.001 / _GRAMS_PER_OUNCE),
    # volume: base US fluid ounce
    "fl_oz": ("volume", 1.0),
    "milliliter": ("volume", 1.0 / _ML_PER_FL_OZ),  # 0.033814 fl oz
    "liter": ("volume", 1000.0 / _ML_PER_FL_OZ),  # 33.814 fl oz
    "gallon": ("volume", 128.0),
    "quart": ("volume", 32.0),
    "pint": ("volume", 16.0),
    "cup": ("volume", 8.0),
    # count: base count
    "count": ("count", 1.0),
    # length: base inch
    "inch": ("length", 1.0),
    "foot": ("length", 12.0),
    "millimeter": ("length", 0.1 / _CM_PER_INCH),
    "centimeter": ("length", 1.0 / _CM_PER_INCH),
    "meter": ("length", 100.0 / _CM_PER_INCH),
    "yard": ("length", 36.0),
    # area: base square foot
    "square_foot": ("area", 1.0),
    # no conversion possible
    "other": ("other", math.nan),
    "none": ("none", math.nan),
}
"""Canonical unit -> (family, factor that converts one unit to the family's base unit)."""

BASE_UNIT_OF_FAMILY: dict[str, str] = {
    "weight": "ounce",
    "volume": "fl_oz",
    "count": "count",
    "length": "inch",
    "area": "square_foot",
}
"""The base unit that ``quantity_base`` is expressed in, per family."""


def _alias_table(spellings_by_unit: dict[str, list[str]]) -> dict[str, str]:
    """Invert {canonical: [spellings]} into {spelling: canonical}."""
    return {spelling: unit for unit, spellings in spellings_by_unit.items() for spelling in spellings}


UNIT_ALIASES: dict[str, str] = _alias_table(
    {
        "ounce": ["oz", "ozs", "ounce", "ounces", "onz", "wt oz", "net wt oz"],
        "fl_oz": [
            "fl oz", "floz", "fl ozs", "fl ounce", "fluid oz", "fluid ounce", "fluid ounces",
            "fz", "fl_oz", "oz fl",
        ],
        "pound": ["lb", "lbs", "pound", "pounds"],
        "gram": ["g", "gr", "grs", "gm", "gms", "gram", "grams", "gramm", "gramme", "grammes"],
        "kilogram": ["kg", "kgs", "kilo", "kilos", "kilogram", "kilograms", "kilogramme"],
        "milligram": ["mg", "milligram", "milligrams", "milligramme"],
        "milliliter": ["ml", "mls", "milliliter", "milliliters", "millilitre", "millilitres"],
        "liter": ["l", "lt", "ltr", "ltrs", "liter", "liters", "litre", "litres"],
        "gallon": ["gal", "gals", "gallon", "gallons"],
        "quart": ["qt", "qts", "quart", "quarts"],
        "pint": ["pt", "pts", "pint", "pints"],
        "cup": ["cup", "cups"],
        "count": [
            "count", "counts", "ct", "cnt", "each", "ea", "piece", "pieces", "pc", "pcs",
            "pack", "packs", "pk", "unit", "units", "item", "items",
            "bag", "bottle", "box", "can", "jar", "packet", "pouch", "capsule", "tablet", "pod", "bar",
            "roll", "sheet", "carton", "case", "tin", "stick", "sachet", "serving", "softgel", "lozenge",
            "k cup", "tea bag",
        ],
        "inch": ["in", "inch", "inches"],
        "foot": ["ft", "foot", "feet"],
        "millimeter": ["mm", "millimeter", "millimeters", "millimetre", "millimetres"],
        "centimeter": ["cm", "cms", "centimeter", "centimeters", "centimetre", "centimetres"],
        "yard": ["yd", "yds", "yard", "yards"],
        "meter": ["m", "meter", "meters", "metre", "metres"],
        "square_foot": [
            "sq ft", "sqft", "sq feet", "sq foot", "square ft", "square foot", "square feet", "ft2", "ft²",
        ],
        "none": ["", "none", "n/a", "na", "nan", "null"],
    }
)
"""Normalised raw spelling (lowercase, no dots, single spaces, see :func:`_unit_key`) -> canonical unit."""

_UNIT_ALIASES_WITHOUT_SPACES: dict[str, str] = {
    key.replace(" ", ""): unit for key, unit in UNIT_ALIASES.items()
}


_PER = re.compile(r"^per\s+")
_PARENTHESES = re.compile(r"\([^()]*\)")


def _unit_key(raw: str) -> str:
    """Lowercase, drop dots, a "(s)" suffix, any other parentheses ("Count (Pack of 1)") and a leading "per" ("per
    Count"), turn '-'/'_' into spaces, collapse whitespace."""
    key = raw.lower().replace("(s)", "")
    key = _PARENTHESES.sub(" ", key).replace(".", " ").replace("-", " ").replace("_", " ")
    return _PER.sub("", " ".join(key.split()))


def normalize_unit(raw: str | None) -> str:
    """Canonical unit for a raw ``Unit:`` text; unknown text -> "other", absent/None/N/A -> "none"."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return "none"
    key = _unit_key(str(raw))
    candidates = [key]
    if key.endswith("es"):
        candidates += [key[:-1], key[:-2]]  # "ounces" -> "ounce", "inches" -> "inch"
    elif key.endswith("s"):
        candidates.append(key[:-1])  # "grams" -> "gram"
    for candidate in candidates:
        if candidate in UNIT_ALIASES:
            return UNIT_ALIASES[candidate]
        squeezed = candidate.replace(" ", "")
        if squeezed in _UNIT_ALIASES_WITHOUT_SPACES:
            return _UNIT_ALIASES_WITHOUT_SPACES[squeezed]
    if " " in key:  # "Tea Bags", "Veggie Capsules", "Coffee Pods": a count noun named with a describing word
        last = normalize_unit(key.rsplit(" ", 1)[1])
        if UNITS[last][0] == "count":
            return last
    return "other"


# --------------------------------------------------------------------------------------------------
# Pack count from the item name
# --------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}
_NUMBER = r"(\d+|" + "|".join(_NUMBER_WORDS) + r")"
_INTEGER = r"(?<![\d.,/])(\d+)(?![.,]\d)"  # a whole number, not part of "1.5", "1,000" or "1/2"
_SIZE_UNIT = r"(?:fl\.?\s*oz|oz|ounces?|lbs?|pounds?|kg|g|grams?|mg|ml|l|ltr|liters?|litres?)"
_MULTIPLIED_UNIT = rf"(?:{_SIZE_UNIT}|ct|count)\b"
# After "pack of": a number that is no item's size ("12 Pack of 3.32 Oz", "(2 Pack of 32 Fl. Oz.)" say 12 and 2).
_NOT_A_SIZE = rf"\b(?![.,]\d)(?!\s*{_SIZE_UNIT}\b)"

# Most explicit phrasing first: "(Pack of 6)" beats a loose "6 Pack" elsewhere in the name.
_PACK_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        rf"\b(?:pack|case|set|box|bundle|carton|tray)\s+of\s+{_NUMBER}{_NOT_A_SIZE}",
        rf"\b(?:pack|pk)\s*of\s*(\d+){_NOT_A_SIZE}",  # "Packof 12", "(Pack of6)", "Pk Of 6"
        rf"\b(?:pack|pk)\s*-\s*(\d{{1,3}}){_NOT_A_SIZE}",  # "PK- 6", "(Pack - 18)"; not a product code
        rf"{_INTEGER}\s*(?:per|/)\s*(?:case|pack|pk|box|carton)\b",  # "12 per case", "30/pk"
        rf"{_INTEGER}\s*-?\s*(?:pack|pk|pck)s?\b",
        rf"{_INTEGER}\s*[x×]\s*\d+(?:\.\d+)?\s*{_MULTIPLIED_UNIT}",
    )
)
_MAX_PACK_COUNT = 10_000


def pack_count_from_name(name: str | None) -> int | None:
    """Pack size stated in an item name ("Pack of 6", "6-Pack", "12 per case", "2 x 500g"), else None."""
    if not isinstance(name, str) or not name:
        return None
    name = _collapse_whitespace(name)  # the patterns read any whitespace run as one; a long one made them quadratic
    for pattern in _PACK_PATTERNS:
        match = pattern.search(name)
        if match:
            token = match.group(1).lower()
            if len(token.lstrip("0")) > len(str(_MAX_PACK_COUNT)):  # int() refuses over 4300 digits
                return None
            count = _NUMBER_WORDS[token] if token in _NUMBER_WORDS else int(token)
            return count if 0 < count <= _MAX_PACK_COUNT else None
    return None


# --------------------------------------------------------------------------------------------------
# Catalog parsing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    """The fields of one ``catalog_content`` text."""

    item_name: str | None
    bullet_points: tuple[str, ...]
    description: str | None
    value: float | None
    unit_raw: str | None
    unit: str
    pack_count: int | None


EMPTY_ENTRY = CatalogEntry(
    item_name=None,
    bullet_points=(),
    description=None,
    value=None,
    unit_raw=None,
    unit="none",
    pack_count=None,
)

_LABEL_LINE = re.compile(
    r"^\s*(item\s*name|bullet\s*points?(?:\s*\d+)?|product\s*description|value|unit)\s*:[ \t]*(.*)$",
    re.IGNORECASE,
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BLOCK_TAG = re.compile(r"<\s*/?\s*(?:br|p|div|li|ul|ol|tr|td|h[1-6])\b[^>]*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]*>")
_ENTITY = re.compile(r"&(?:[a-zA-Z][a-zA-Z0-9]*|#[0-9]+|#[xX][0-9a-fA-F]+);")
_THOUSANDS_NUMBER = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def _collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def clean_html(text: str) -> str:
    """Strip HTML tags (block tags become spaces), unescape entities, collapse whitespace; twice, as some real
    descriptions are escaped twice ("&lt;br&gt;", "&amp;trade;")."""
    for _ in range(2):
        text = _BLOCK_TAG.sub(" ", text)
        text = _ANY_TAG.sub("", text)
        text = html.unescape(text)
    return _collapse_whitespace(text)


def _unescape_entities(text: str) -> str:
    """Complete HTML entities ("&amp;", "&#39;") as their characters; a bare "&" and the rest stay as written."""
    return _ENTITY.sub(lambda match: html.unescape(match.group()), text)


MAX_VALUE = 1e30  # a Value above this (or below 0) states no quantity: features are float32 (max 3.4e38)


def _parse_value(text: str) -> float | None:
    """A float from "12", "12.0" or "1,000.5"; None for anything else (nan, inf, a negative or absurdly large
    number: no quantity a listing could state)."""
    text = text.strip()
    if _THOUSANDS_NUMBER.fullmatch(text):
        text = text.replace(",", "")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 <= value <= MAX_VALUE else None


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _field_kind(label: str) -> str:
    label = label.lower()
    if label.startswith("item"):
        return "item_name"
    if label.startswith("bullet"):
        return "bullet"
    if label.startswith("product"):
        return "description"
    return label  # "value" or "unit"


def parse_catalog(text: str | None) -> CatalogEntry:
    """Parse one catalog text; never raises (None/NaN/empty give an empty entry with unit "none").

    Labels are matched case-insensitively at line start; an unlabelled line continues the previous
    field. Text before the first label is used as the item name when no ``Item Name:`` line exists.
    A repeated ``Value:``/``Unit:`` keeps the last one; repeated names/descriptions are joined.
    """
    if _is_missing(text):
        return EMPTY_ENTRY
    if not isinstance(text, str):
        text = str(text)

    fields: list[tuple[str, list[str]]] = []  # (kind, lines) in order of appearance
    preamble: list[str] = []
    for line in _LINE_BREAK.split(text):
        match = _LABEL_LINE.match(line)
        if match:
            fields.append((_field_kind(match.group(1)), [match.group(2)]))
        elif fields:
            fields[-1][1].append(line)
        else:
            preamble.append(line)

    names: list[str] = []
    bullets: list[str] = []
    descriptions: list[str] = []
    value_text: str | None = None
    unit_text: str | None = None
    for kind, lines in fields:
        joined = "\n".join(lines)
        if kind == "item_name":
            names.append(_collapse_whitespace(joined))
        elif kind == "bullet":
            bullets.append(_collapse_whitespace(_unescape_entities(joined)))
        elif kind == "description":
            descriptions.append(clean_html(joined))
        elif kind == "value":
            value_text = joined
        else:
            unit_text = _collapse_whitespace(joined)

    item_name = " ".join(name for name in names if name) or None
    if item_name is None:
        item_name = _collapse_whitespace("\n".join(preamble)) or None
    unit_raw = unit_text or None
    return CatalogEntry(
        item_name=item_name,
        bullet_points=tuple(bullet for bullet in bullets if bullet),
        description=" ".join(d for d in descriptions if d) or None,
        value=_parse_value(value_text) if value_text is not None else None,
        unit_raw=unit_raw,
        unit=normalize_unit(unit_raw),
        pack_count=pack_count_from_name(item_name),
    )


CATALOG_COLUMNS = (
    "item_name", "bullet_text", "n_bullets", "description", "value", "unit_raw", "unit", "unit_family",
    "pack_count", "quantity_base", "text_length",
)
"""Columns of :func:`parse_catalog_column`, in order."""


def parse_catalog_column(texts: pd.Series) -> pd.DataFrame:
    """Parse a column of catalog texts into one row of features each, keeping the input's index.

    ``quantity_base`` is ``value`` in the base unit of its family (ounce, fl_oz, count, inch,
    square_foot); NaN when the value is missing or the unit is "other"/"none".
    """
    if not isinstance(texts, pd.Series):
        texts = pd.Series(texts)
    entries = [parse_catalog(text) for text in texts]
    units = pd.Series([entry.unit for entry in entries], index=texts.index, dtype=object)
    values = np.array([np.nan if e.value is None else e.value for e in entries], dtype=float)
    factors = units.map(lambda unit: UNITS[unit][1]).to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "item_name": [entry.item_name for entry in entries],
            "bullet_text": [" | ".join(entry.bullet_points) for entry in entries],
            "n_bullets": np.array([len(entry.bullet_points) for entry in entries], dtype=np.int64),
            "description": [entry.description for entry in entries],
            "value": values,
            "unit_raw": [entry.unit_raw for entry in entries],
            "unit": units.to_numpy(),
            "unit_family": units.map(lambda unit: UNITS[unit][0]).to_numpy(),
            "pack_count": np.array(
                [np.nan if e.pack_count is None else e.pack_count for e in entries], dtype=float
            ),
            "quantity_base": values * factors,
            "text_length": np.array(
                [len(text) if isinstance(text, str) else 0 for text in texts], dtype=np.int64
            ),
        },
        index=texts.index,
        columns=list(CATALOG_COLUMNS),
    )


def _as_sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def catalog_text(entry: CatalogEntry | str | None) -> str:
    """One clean string "Item name. Bullet. Bullet. Description." for text models (raw text is parsed)."""
    if not isinstance(entry, CatalogEntry):
        entry = parse_catalog(entry)
    parts = [entry.item_name, *entry.bullet_points, entry.description]
    return " ".join(_as_sentence(part) for part in parts if part and part.strip())
