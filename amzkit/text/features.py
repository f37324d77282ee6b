"""Engineered feature groups for 03_train, as a table of group name -> builder.

Every builder is label-free (it reads text only), so computing it on train and test together
leaks no target; anything fit on labels lives in train.py, inside the folds.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from amzkit.core.schema import Schema, get_schema, row_text
from amzkit.text.catalog import (
    BASE_UNIT_OF_FAMILY,
    MAX_VALUE,
    UNITS,
    normalize_unit,
    pack_count_from_name,
    parse_catalog_column,
)
from amzkit.text.quantity import pack_total_features

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
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'&.-]*")

# Words that signal a dearer or a cheaper listing: term -> regex on lower-cased text (`premium_value` group).
PREMIUM_TERMS: dict[str, str] = {
    "luxury": r"\bluxur(?:y|ious)\b",
    "premium": r"\bpremium\b",
    "deluxe": r"\bdeluxe\b",
    "handmade": r"\bhand[\s-]?(?:made|crafted|forged|stitched|woven|blown)\b",
    "artisan": r"\bartisan(?:al)?\b",
    "professional_grade": r"\b(?:professional|pro|commercial|restaurant|salon)[\s-]grade\b",
    "genuine_leather": r"\b(?:genuine|full[\s-]grain|top[\s-]grain|real)\s+leather\b",
    "solid_wood": r"\bsolid\s+(?:wood|oak|walnut|teak|maple|cherry|pine|mahogany|acacia)\b",
    "gold": r"\b(?:(?:9|10|14|18|22|24)\s?k(?:t|arat)?|solid)\s+(?:yellow\s+|white\s+|rose\s+)?gold\b"
            r"(?![\s-]*(?:plated|plating|tone|filled|finish|colou?r))",
    "sterling_silver": r"\b(?:sterling\s+silver|925\s+silver|silver\s+925)\b",
    "designer": r"\bdesigner\b",
    "imported": r"\bimported\s+from\b",
    "limited_edition": r"\blimited\s+edition\b",
    "certified": r"\b(?:certified|authentic)\b",
    "heavy_duty": r"\bheavy[\s-]duty\b",
    "high_end": r"\b(?:high[\s-]end|top[\s-]of[\s-]the[\s-]line|finest|exquisite|elegant)\b",
    "gemstone": r"\b(?:diamond|sapphire|emerald|ruby|gemstone|pearl)s?\b",
    "cashmere": r"\b(?:cashmere|merino|alpaca|mulberry\s+silk)\b",
}
VALUE_TERMS: dict[str, str] = {
    "value_pack": r"\bvalue[\s-](?:pack|size|bundle)\b",
    "budget": r"\bbudget\b",
    "economy": r"\beconom(?:y|ical)\b",
    "basic": r"\bbasics?\b",
    "generic": r"\bgeneric\b",
    "bulk": r"\b(?:bulk|wholesale)\b",
    "cheap": r"\b(?:cheap|inexpensive|low[\s-]cost)\b",
    "discount": r"\b(?:discount|clearance|bargain|on\s+sale)\b",
    "multipack": r"\b(?:multi[\s-]?pack|combo\s+pack|family\s+(?:size|pack)|mega\s+pack|jumbo\s+pack)\b",
    "affordable": r"\b(?:affordable|low\s+price|great\s+value|best\s+value|value\s+for\s+money)\b",
    "disposable": r"\bdisposable\b",
    "imitation": r"\b(?:imitation|faux|artificial|synthetic|replica)\b",
    "plated": r"\b(?:gold|silver|chrome)[\s-]*(?:plated|tone)\b",
    "novelty": r"\b(?:novelty|party\s+favou?rs?|dollar\s+store)\b",
}
_PREMIUM_RES = {name: re.compile(pattern) for name, pattern in PREMIUM_TERMS.items()}
_VALUE_RES = {name: re.compile(pattern) for name, pattern in VALUE_TERMS.items()}

# Materials named in the text: material -> regex on lower-cased text (`materials` group, vocab.material_tokens).
MATERIALS: dict[str, str] = {
    "cotton": r"\bcotton\b",
    "leather": r"\bleather\b",
    "stainless_steel": r"\bstainless[\s-]*steel\b",
    "steel": r"\b(?:carbon\s+|alloy\s+|high[\s-]carbon\s+)?steel\b",
    "wood": r"\b(?:wood|wooden|hardwood|plywood|oak|walnut|teak|maple|pine|mahogany|acacia|beech|rosewood"
            r"|sheesham)\b",
    "bamboo": r"\bbamboo\b",
    "glass": r"\b(?:glass|borosilicate|crystal)\b",
    "ceramic": r"\b(?:ceramic|porcelain|stoneware|earthenware|terracotta)\b",
    "plastic": r"\b(?:plastic|polypropylene|pvc|abs|polyethylene|hdpe|bpa[\s-]free)\b",
    "acrylic": r"\bacrylic\b",
    "silicone": r"\bsilicone\b",
    "aluminium": r"\balumin(?:i)?um\b",
    "gold": r"\bgold\b",
    "silver": r"\b(?:silver|sterling)\b",
    "brass": r"\bbrass\b",
    "copper": r"\bcopper\b",
    "cast_iron": r"\bcast[\s-]iron\b",
    "titanium": r"\btitanium\b",
    "wool": r"\b(?:wool|woolen|woollen|merino|cashmere)\b",
    "silk": r"\bsilk(?:en)?\b",
    "linen": r"\blinen\b",
    "polyester": r"\bpolyester\b",
    "nylon": r"\bnylon\b",
    "spandex": r"\b(?:spandex|elastane|lycra)\b",
    "denim": r"\bdenim\b",
    "rubber": r"\b(?:rubber|latex)\b",
    "foam": r"\b(?:foam|memory\s+foam)\b",
    "marble": r"\bmarble\b",
    "stone": r"\b(?:granite|slate|quartz|stone)\b",
    "paper": r"\b(?:paper|cardboard|kraft)\b",
    "carbon_fiber": r"\bcarbon[\s-]fib(?:er|re)\b",
}
_MATERIAL_RES = {name: re.compile(pattern) for name, pattern in MATERIALS.items()}


def _title_bullets_description(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    title, bullets, description = schema.text_columns
    return pd.DataFrame({"item_name": frame[title].fillna("").astype(str), "bullet_text": frame[bullets].fillna(""),
                         "description": frame[description].fillna("")}, index=frame.index)


# How an edition's text columns read as fields (Schema.text_layout): "catalog" is the 2025 catalog_content
# (text.catalog: item name, bullets, Value/Unit and the quantity they state), one column; the 2023 edition has
# title, bullets and description as three columns, and states no quantity.
TEXT_LAYOUTS: dict[str, Callable[[pd.DataFrame, Schema], pd.DataFrame]] = {
    "catalog": lambda frame, schema: parse_catalog_column(frame[schema.text_columns[0]]),
    "title_bullets_description": _title_bullets_description,
}


def _parsed(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    return TEXT_LAYOUTS[schema.text_layout](frame, schema)


def states_quantity(parsed: pd.DataFrame) -> bool:
    """Whether parsed text fields carry the listing's stated quantity (Value/Unit: the 2025 catalog)."""
    return "quantity_base" in parsed.columns


def parsed_rows(frame: pd.DataFrame, schema: str | Schema) -> pd.DataFrame:
    """The rows' text fields (2025: text.catalog.parse_catalog_column, with Value/Unit; 2023: item_name (TITLE),
    bullet_text, description)."""
    return _parsed(frame, get_schema(schema))


def has_product_words(parsed: pd.DataFrame) -> np.ndarray:
    """Per row of `parsed_rows`: whether its name, bullets or description hold a word. A row without (only the
    catalog's Value/Unit lines) is nobody's text twin: two such rows read as TF-IDF cosine 1.0."""
    return np.logical_or.reduce([parsed[column].fillna("").astype(str).str.contains(r"\w").to_numpy()
                                 for column in ("item_name", "bullet_text", "description")])


def item_names(frame: pd.DataFrame, schema: str | Schema) -> pd.Series:
    """The item name per row as written (2025: parsed from catalog_content; 2023: TITLE); "" where absent."""
    return _parsed(frame, get_schema(schema))["item_name"].fillna("").astype(str)


def quantity_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Value, unit, unit family, base-unit quantity and pack count (2025); pack count from the title (2023)."""
    if not states_quantity(parsed):
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


_LENGTH_UNIT = (r"mm|millimet(?:er|re)s?|cm|centimet(?:er|re)s?|m|met(?:er|re)s?|in|inch(?:es)?|\"|''"
                r"|ft|feet|foot|yards?|yds?")
# A number: 12, 12.5, .75, a fraction 7/8, or a mixed one 70-7/8 / 70 7/8 (the 2023 titles' inches). It starts
# after no digit, nor after a digit and "/" or "." (the 2 of 1/2), so "50cm/20in" and "Approx.24.5cm" still read.
_NUMBER = r"\d+(?:\.\d+)?(?:(?:-|[^\S\n])\d+/\d+)?|\d+/\d+|(?<![\w.])\.\d+"
_LENGTH_MENTION = re.compile(
    rf"(?<!\d)(?<!\d[/.])({_NUMBER})(?:\s*(?:x|\*|by)\s*({_NUMBER}))?(?:\s*(?:x|\*|by)\s*({_NUMBER}))?"
    rf"(\s*|-)({_LENGTH_UNIT})(?![a-z])",  # "12-Inch", "6-ft" ("3-in-1" is no length: see below)
    re.IGNORECASE,
)
_MIXED = re.compile(r"(?:(\d+(?:\.\d+)?)(?:-|\s+))?(\d+)/(\d+)")


def _number(text: str) -> float:
    """The value of a _NUMBER match: "12.5" -> 12.5, "7/8" -> 0.875, "70-7/8" -> 70.875; "30/40" (no fraction
    below 1: two sizes) -> 40, the last, as a plain list reads; a /0 -> nan."""
    mixed = _MIXED.fullmatch(text)
    if mixed is None:
        return float(text)
    whole, numerator, denominator = mixed.groups()
    if not int(denominator):
        return np.nan
    if not whole and int(numerator) >= int(denominator):
        return float(denominator)
    return (float(whole) if whole else 0.0) + int(numerator) / int(denominator)
# "in" is also a preposition and a capital "M" also a size, so, outside an "a x b" dimension ("12 x 8 in Blue",
# "1 M x 2 M": always lengths), those two units count only when:
# - "in": no bare number follows ("3 in 1", "3in1", "1 in 6" are not lengths; "28in 76cm" is), and, with a space
#   before "in", the line ends there, or punctuation or a size word follows ("6 in.", "6 in)", "6 in long"), or a
#   label precedes the number ("Length: 30 in Chest") -- so "2 in Blue", "1969 in Japan", "4 in a box" are not;
# - "M": glued to a decimal ("1.5M"); "8 M US", "8.5 M US" (shoe width), "6M", "5 M+" (months), "3M" (brand),
#   "100M" (million) are not. A lower-case "m" and "meter(s)" are always metres.
_BARE_NUMBER_NEXT = re.compile(rf"[^\S\n]*-?\d+(?:\.\d+)?(?!\.?\d)(?!\s*(?:{_LENGTH_UNIT})(?![a-z]))", re.IGNORECASE)
_CLOSES_SPACED_IN = re.compile(
    r"[^\S\n]*(?:$|\n|[^\w\s]|(?:long|wide|high|tall|deep|thick|length|width|height|depth|dia(?:meter)?|[lwhd])\b)",
    re.IGNORECASE,
)
_LABEL_BEFORE = re.compile(r"[a-z][^\S\n]*:[^\S\n]*$", re.IGNORECASE)
_X_BEFORE = re.compile(r"(?:\bx|\*|\bby)\s*$", re.IGNORECASE)
_X_AFTER = re.compile(r"\s*(?:x|\*|by)\s*\d", re.IGNORECASE)


def _reads_as_length(text: str, match: re.Match) -> bool:
    """False when the match's "in" or "M" is the preposition or the size, not the unit (rules above)."""
    gap, unit, start, end = match.group(4), match.group(5), match.start(), match.end()
    if unit.lower() != "in" and unit != "M":
        return True
    if (match.group(2) is not None or _X_AFTER.match(text, end)
            or _X_BEFORE.search(text, max(0, start - 8), start)):
        return True
    if unit == "M":
        return not gap and "." in match.group(1)
    if _BARE_NUMBER_NEXT.match(text, end):
        return False
    return (not gap or bool(_CLOSES_SPACED_IN.match(text, end))
            or bool(_LABEL_BEFORE.search(text, max(0, start - 40), start)))


def length_mentions(text: str) -> list[float]:
    """Every length written in `text` ("12 inch", "30 x 20 cm", '5"', '70-7/8"'), converted to inches; HTML
    entities read as their characters (the 2023 descriptions write inch marks as &quot;)."""
    text = html.unescape(text) if text and "&" in text else (text or "")
    values = []
    for match in _LENGTH_MENTION.finditer(text):
        unit = match.group(5).lower()
        canonical = "inch" if unit in ('"', "''") else normalize_unit(unit)
        family, factor = UNITS.get(canonical, ("other", np.nan))
        if family != "length" or not _reads_as_length(text, match):
            continue
        # nan (a /0) and a number above MAX_VALUE (a 400-digit one is inf; 1e307 m overflows in inches) are no length
        values += [value * factor for value in (_number(v) for v in match.groups()[:3] if v) if value <= MAX_VALUE]
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


def brand_words(item_name: str, n: int = 2) -> list[str]:
    """The item name's first `n` words from its first word that is not a stop word, lower-cased."""
    words = [w for w in (word.lower().strip(".'") for word in _WORD.findall(item_name or "")) if w]
    start = next((i for i, word in enumerate(words) if word not in _BRAND_STOP), len(words))
    return words[start:start + n]


def brand_of(item_name: str) -> str:
    """A brand guess: the item name's first word that is not a stop word, lower-cased."""
    first = brand_words(item_name, 1)
    return first[0] if first else "unknown"


def brand_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Brand as a category; brands seen fewer than RARE_BRAND_COUNT times are pooled as 'rare'."""
    brand = parsed["item_name"].fillna("").astype(str).map(brand_of)
    return pd.DataFrame({"brand": brand}, index=frame.index)


def category_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The schema's own category columns (2023: PRODUCT_TYPE_ID)."""
    return pd.DataFrame({c: frame[c].astype(str) for c in schema.category_columns}, index=frame.index)


def _term_flags(text: pd.Series, patterns: dict[str, re.Pattern], prefix: str) -> pd.DataFrame:
    return pd.DataFrame({f"{prefix}{name}": text.str.contains(rx).astype(np.int8) for name, rx in patterns.items()},
                        index=text.index)


def premium_value_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Premium and value wording (PREMIUM_TERMS, VALUE_TERMS).

    prem_<term>, val_<term>: 0/1, the term appears anywhere in the text; premium_count, value_count: how many
    distinct terms of each table appear; premium_net: premium_count - value_count; premium_in_name,
    value_in_name: 0/1, a term of that table appears in the item name itself.
    """
    text = row_text(frame, schema).str.lower()
    name = parsed["item_name"].fillna("").astype(str).str.lower()
    premium, value = _term_flags(text, _PREMIUM_RES, "prem_"), _term_flags(text, _VALUE_RES, "val_")
    out = pd.concat([premium, value], axis=1)
    out["premium_count"] = premium.sum(axis=1).astype(np.int16)
    out["value_count"] = value.sum(axis=1).astype(np.int16)
    out["premium_net"] = out["premium_count"] - out["value_count"]
    out["premium_in_name"] = _term_flags(name, _PREMIUM_RES, "").max(axis=1).astype(np.int8)
    out["value_in_name"] = _term_flags(name, _VALUE_RES, "").max(axis=1).astype(np.int8)
    return out


def materials_in(text: str) -> list[str]:
    """The MATERIALS named in `text` (any case), in table order."""
    lowered = (text or "").lower()
    return [name for name, rx in _MATERIAL_RES.items() if rx.search(lowered)]


def materials_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """mat_<material>: 0/1, the material (MATERIALS table) is named in the text; material_count: how many are."""
    out = _term_flags(row_text(frame, schema).str.lower(), _MATERIAL_RES, "mat_")
    out["material_count"] = out.sum(axis=1).astype(np.int16)
    return out


def interaction_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Products and ratios of label-free columns that a tree finds hard to build from the columns alone.

    - qty_<family>_log (2025): log1p of the base-unit quantity, one column per unit family (weight, volume,
      count, length, area), NaN for rows of another family: a 16 oz pack and 16 count are different scales.
    - qty_times_pack_log (2025): log1p(base-unit quantity x pack count), the total when Value states one item
      of a pack (pack count 1 when the name states none); NaN without a quantity.
    - <category>_text_ratio (schemas with a category column, 2023 PRODUCT_TYPE_ID): the text's length over the
      median text length of its category (train+test rows, label-free); <category>_rows: rows of that category.
    - name_digit_share: share of the item name's characters that are digits (model numbers, sizes).
    - name_words_x_digit_share: name words x name_digit_share (long, spec-heavy names).
    """
    out = pd.DataFrame(index=frame.index)
    if states_quantity(parsed):
        quantity = parsed["quantity_base"].astype(float)
        family = parsed["unit_family"].astype(str)
        for name in BASE_UNIT_OF_FAMILY:
            out[f"qty_{name}_log"] = np.log1p(quantity.where(family == name))
        out["qty_times_pack_log"] = np.log1p(quantity * parsed["pack_count"].astype(float).fillna(1.0))
    text_chars = row_text(frame, schema).str.len().astype(float)
    for column in schema.category_columns:
        category = frame[column].astype(str)
        median = text_chars.groupby(category).transform("median")
        out[f"{column}_text_ratio"] = text_chars / median.clip(lower=1.0)
        out[f"{column}_rows"] = category.map(category.value_counts()).astype(float)
    name = parsed["item_name"].fillna("").astype(str)
    out["name_digit_share"] = name.str.count(r"\d") / name.str.len().clip(lower=1)
    out["name_words_x_digit_share"] = name.str.split().str.len().fillna(0) * out["name_digit_share"]
    return out


def pack_totals_features(frame: pd.DataFrame, parsed: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Item size, count, packs and total quantity per family from the item name and Value/Unit (text.quantity)."""
    return pack_total_features(parsed).set_axis(frame.index)


FEATURE_GROUPS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, Schema], pd.DataFrame]] = {
    "quantity": quantity_features,
    "text_stats": text_stats_features,
    "keywords": keyword_features,
    "brand": brand_features,
    "category": category_features,
    "dimensions": dimension_features,
    "premium_value": premium_value_features,
    "materials": materials_features,
    "interactions": interaction_features,
    "pack_totals": pack_totals_features,
}
CATEGORICAL = {"unit", "unit_family", "brand", "PRODUCT_TYPE_ID"}


def build_features(
    train: pd.DataFrame, test: pd.DataFrame, schema: str | Schema, groups: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature frames for train and test (same columns, categories share one vocabulary)."""
    x_train, x_test, _ = build_grouped_features(train, test, schema, groups)
    return x_train, x_test


def build_grouped_features(
    train: pd.DataFrame, test: pd.DataFrame, schema: str | Schema, groups: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """build_features' train and test frames, and the feature group each column comes from."""
    schema = get_schema(schema)
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown:
        raise ValueError(f"unknown feature groups {unknown}; choose from {sorted(FEATURE_GROUPS)}")
    both = pd.concat([train[list(schema.test_columns)], test[list(schema.test_columns)]], ignore_index=True)
    parsed = _parsed(both, schema)
    parts = [FEATURE_GROUPS[g](both, parsed, schema) for g in groups]
    labels = list(groups)
    if schema.category_columns and "category" not in groups:
        parts.append(category_features(both, parsed, schema))
        labels.append("category")
    features = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=both.index)
    column_groups = [label for label, part in zip(labels, parts, strict=True) for _ in part.columns]
    for col in [c for c in features.columns if c in CATEGORICAL]:
        counts = features[col].value_counts()
        rare = counts.index[counts < RARE_BRAND_COUNT]
        features[col] = features[col].where(~features[col].isin(rare), "rare").astype("category")
    n = len(train)
    return features.iloc[:n].reset_index(drop=True), features.iloc[n:].reset_index(drop=True), column_groups
