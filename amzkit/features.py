"""Engineered feature groups for 03_train, as a table of group name -> builder.

Every builder is label-free (it reads text only), so computing it on train and test together
leaks no target; anything fit on labels lives in train.py, inside the folds.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from amzkit.catalog import UNITS, normalize_unit, pack_count_from_name, parse_catalog_column
from amzkit.schema import Schema, get_schema, row_text

KEYWORDS: dict[str, str] = {
    "organic": r"\borganic\b",
    "gluten_free": r"\bgluten[\s-]?free\b",
    "gourmet": r"\bgourmet\b",
    "premium": r"\b(?:premium|luxury|deluxe|artisan)\b",
    "bulk": r"\b(?:bulk|value pack|family size|economy|wholesale)\b",
    "natural": r"\b(?:all[\s-]natural|natural)\b",
    "sugar_free": r"\b(?:sugar[\s-]?free|no sugar|zero sugar)\b",
    "vegan": r"\bvegan\b",
    "kosher": r"\bkosher\b",
    "non_gmo": r"\bnon[\s-]?gmo\b",
    "keto": r"\b(?:keto|low carb)\b",
    "gift": r"\b(?:gift|basket|assortment|variety pack|sampler)\b",
    "professional": r"\b(?:professional|commercial|industrial)\b",
    "refill": r"\brefill\b",
    "travel": r"\b(?:travel size|mini|trial size|sample)\b",
}
_KEYWORD_RES = {name: re.compile(pattern) for name, pattern in KEYWORDS.items()}
RARE_BRAND_COUNT = 3
_BRAND_STOP = {"the", "a", "an", "new", "pack", "set", "case", "box"}


def _parsed(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    if schema.name == "amazon2025":
        return parse_catalog_column(frame["catalog_content"])
    title = frame["TITLE"].fillna("").astype(str)
    return pd.DataFrame({"item_name": title, "bullet_text": frame["BULLET_POINTS"].fillna(""),
                         "description": frame["DESCRIPTION"].fillna("")}, index=frame.index)


def quantity_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Value, unit, unit family, base-unit quantity and pack count (2025); pack count from the title (2023)."""
    if schema.name != "amazon2025":
        return pd.DataFrame({"pack_count": parsed["item_name"].map(pack_count_from_name).astype(float)})
    out = pd.DataFrame(index=frame.index)
    out["value"] = parsed["value"].astype(float)
    out["quantity_base_log"] = np.log1p(parsed["quantity_base"].astype(float))
    out["pack_count"] = parsed["pack_count"].astype(float)
    out["unit"] = parsed["unit"].astype(str)
    out["unit_family"] = parsed["unit_family"].astype(str)
    per_item = parsed["quantity_base"].astype(float) / parsed["pack_count"].astype(float).fillna(1.0)
    out["quantity_per_item_log"] = np.log1p(per_item)
    return out


def text_stats_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Lengths and counts of the text fields."""
    text = row_text(frame, schema)
    name = parsed["item_name"].fillna("").astype(str)
    description = parsed["description"].fillna("").astype(str)
    out = pd.DataFrame(index=frame.index)
    out["text_chars"] = text.str.len()
    out["text_words"] = text.str.split().str.len().fillna(0)
    out["name_chars"] = name.str.len()
    out["name_words"] = name.str.split().str.len().fillna(0)
    out["description_chars"] = description.str.len()
    out["digit_count"] = text.str.count(r"\d")
    out["upper_ratio"] = text.str.count(r"[A-Z]") / out["text_chars"].clip(lower=1)
    if "n_bullets" in parsed:
        out["n_bullets"] = parsed["n_bullets"].astype(float)
    return out


def keyword_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """0/1 flags for price-related words (organic, gourmet, bulk, ...)."""
    text = row_text(frame, schema).str.lower()
    return pd.DataFrame({f"kw_{name}": text.str.contains(rx).astype(np.int8) for name, rx in _KEYWORD_RES.items()},
                        index=frame.index)


_LENGTH_MENTION = re.compile(
    r"(\d+(?:\.\d+)?)(?:\s*(?:x|\*|by)\s*(\d+(?:\.\d+)?))?(?:\s*(?:x|\*|by)\s*(\d+(?:\.\d+)?))?"
    r"\s*(mm|millimet(?:er|re)s?|cm|centimet(?:er|re)s?|m|met(?:er|re)s?|in|inch(?:es)?|\"|''|ft|feet|foot|yards?|yds?)(?![a-z])",
    re.IGNORECASE,
)


def length_mentions(text: str) -> list[float]:
    """Every length written in `text` ("12 inch", "30 x 20 cm", '5"'), converted to inches."""
    values = []
    for match in _LENGTH_MENTION.finditer(text or ""):
        unit = match.group(4).lower()
        canonical = "inch" if unit in ('"', "''") else normalize_unit(unit)
        family, factor = UNITS.get(canonical, ("other", np.nan))
        if family != "length":
            continue
        values += [float(v) * factor for v in match.groups()[:3] if v]
    return values


def dimension_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Lengths written in the text, in inches: largest, smallest, first, count (name and whole text)."""
    text = row_text(frame, schema)
    name = parsed["item_name"].fillna("").astype(str)
    rows = []
    for full, title in zip(text, name, strict=True):
        everywhere, in_name = length_mentions(full), length_mentions(title)
        rows.append((max(everywhere, default=np.nan), min(everywhere, default=np.nan),
                     everywhere[0] if everywhere else np.nan, len(everywhere), max(in_name, default=np.nan)))
    out = pd.DataFrame(rows, columns=["dim_max", "dim_min", "dim_first", "dim_count", "dim_name_max"],
                       index=frame.index)
    for column in ("dim_max", "dim_min", "dim_first", "dim_name_max"):
        out[column] = np.log1p(out[column])
    return out


def brand_of(item_name: str) -> str:
    """A brand guess: the item name's first word that is not a stop word, lower-cased."""
    for word in re.findall(r"[A-Za-z][A-Za-z0-9'&.-]*", item_name or ""):
        word = word.lower().strip(".'")
        if word and word not in _BRAND_STOP:
            return word
    return "unknown"


def brand_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Brand as a category; brands seen fewer than RARE_BRAND_COUNT times are pooled as 'rare'."""
    brand = parsed["item_name"].fillna("").astype(str).map(brand_of)
    return pd.DataFrame({"brand": brand}, index=frame.index)


def category_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The schema's own category columns (2023: PRODUCT_TYPE_ID)."""
    return pd.DataFrame({c: frame[c].astype(str) for c in schema.category_columns}, index=frame.index)


FEATURE_GROUPS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, Schema], pd.DataFrame]] = {
    "quantity": quantity_features,
    "text_stats": text_stats_features,
    "keywords": keyword_features,
    "brand": brand_features,
    "category": category_features,
    "dimensions": dimension_features,
}
CATEGORICAL = {"unit", "unit_family", "brand", "PRODUCT_TYPE_ID"}


def build_features(
    train: pd.DataFrame, test: pd.DataFrame, schema: str | Schema, groups: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature frames for train and test (same columns, categories share one vocabulary)."""
    schema = get_schema(schema)
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown:
        raise ValueError(f"unknown feature groups {unknown}; choose from {sorted(FEATURE_GROUPS)}")
    both = pd.concat([train[list(schema.test_columns)], test[list(schema.test_columns)]], ignore_index=True)
    parsed = _parsed(both, schema)
    parts = [FEATURE_GROUPS[g](both, parsed, schema) for g in groups]
    if schema.category_columns and "category" not in groups:
        parts.append(category_features(both, parsed, schema))
    features = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=both.index)
    for col in [c for c in features.columns if c in CATEGORICAL]:
        counts = features[col].value_counts()
        rare = counts.index[counts < RARE_BRAND_COUNT]
        features[col] = features[col].where(~features[col].isin(rare), "rare").astype("category")
    n = len(train)
    return features.iloc[:n].reset_index(drop=True), features.iloc[n:].reset_index(drop=True)
