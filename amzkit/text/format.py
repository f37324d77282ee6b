"""Row texts formatted for a fine-tuned text model: the fields a price depends on first, in words.

A transformer reads at most `max_len` tokens, so the 2025 catalog dump is rewritten as "item name. Quantity:
72 fluid ounces. bullet. bullet. description." (the quantity before the long fields that truncation cuts,
Value/Unit as words rather than "Value: 72.0 Unit: Fl Oz" lines). Formatters are a table keyed by schema.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from amzkit.core.schema import Schema, get_schema, row_text
from amzkit.text.catalog import CatalogEntry, clean_html, parse_catalog

# Canonical unit (text.catalog.UNITS) -> how a sentence says a quantity of it.
UNIT_WORDS: dict[str, str] = {
    "ounce": "ounces", "pound": "pounds", "gram": "grams", "kilogram": "kilograms", "milligram": "milligrams",
    "fl_oz": "fluid ounces", "milliliter": "milliliters", "liter": "liters", "gallon": "gallons",
    "quart": "quarts", "pint": "pints", "cup": "cups", "count": "count", "inch": "inches", "foot": "feet",
    "millimeter": "millimeters", "centimeter": "centimeters", "meter": "meters", "yard": "yards",
    "square_foot": "square feet",
}


def plain_number(value: float) -> str:
    """A number as a plain decimal, without exponent or needless zeros: 1500000, 1234.567, 12, 0.0000125."""
    return np.format_float_positional(float(value), trim="-")


def quantity_words(entry: CatalogEntry) -> str:
    """'72 fluid ounces', '6 count', '3 bunches' (an unknown unit as written), '2' (no unit), '' (no value)."""
    if entry.value is None:
        return ""
    number = plain_number(entry.value)
    if entry.unit in UNIT_WORDS:
        return f"{number} {UNIT_WORDS[entry.unit]}"
    if entry.unit == "other" and entry.unit_raw:
        return f"{number} {entry.unit_raw.lower()}"
    return number


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def catalog_model_text(raw: str | None) -> str:
    """One 2025 catalog text as "name. Quantity: 72 fluid ounces. bullets. description." ('' when empty)."""
    entry = parse_catalog(raw)
    quantity = quantity_words(entry)
    parts = [entry.item_name, f"Quantity: {quantity}" if quantity else None, *entry.bullet_points,
             entry.description]
    return " ".join(_sentence(part) for part in parts if part and part.strip())


def _catalog_texts(frame: pd.DataFrame, schema: Schema) -> list[str]:
    return [catalog_model_text(text) for text in frame[schema.text_columns[0]].tolist()]


def _joined_texts(frame: pd.DataFrame, schema: Schema) -> list[str]:
    """The text columns joined, HTML read as text (2023 descriptions hold '<p>', '<br>', '&amp;')."""
    return [clean_html(text) for text in row_text(frame, schema).tolist()]


# Schema.text_layout -> formatter; a layout without a row here has its text columns joined.
MODEL_TEXT_FORMATS: dict[str, Callable[[pd.DataFrame, Schema], list[str]]] = {
    "catalog": _catalog_texts,
    "title_bullets_description": _joined_texts,
}


def model_texts(frame: pd.DataFrame, schema: str | Schema) -> list[str]:
    """The model text of every row of `frame`, formatted for its schema."""
    schema = get_schema(schema)
    return MODEL_TEXT_FORMATS.get(schema.text_layout, _joined_texts)(frame, schema)
