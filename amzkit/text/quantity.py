"""Quantities written in a 2025 item name: the size of one item, the count inside it, the packs, and totals.

The catalog's `Value`/`Unit` lines state one number, sometimes the size of one item ("12 Ounce (Pack of 6)",
Value 12), sometimes the whole pack (Value 72), sometimes just a count (Value 12, Unit Count, for "12 per
case"). The name usually says more: the item size ("12 Ounce", "500mL", "2-Pound Bags"), a count inside each
item ("80ct K-Cups", "50 tea bags") and the packs ("Pack of 6", "12 per case", "(24 Cans)"). `name_quantities`
reads those, and `pack_total_features` (the `pack_totals` feature group) turns them and Value/Unit into one
total quantity per row in each unit family, and says how Value relates to the name.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from amzkit.text.catalog import MAX_VALUE, UNITS, normalize_unit, pack_count_from_name

# A size: a number (1.5, .5, 1,000) and a weight or volume unit; "fl oz" before "oz", "lb" before "l". It may follow
# the packs and a glued "x" ("6x8OZ", "12 X16 oz": six 8 oz items), not another letter nor "/" ("1/2 oz").
_SIZE = re.compile(
    r"(?:(?<=\d[x×])|(?<=\d\s[x×])|(?<![\w./]))(?<!\d,)(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+)\s*-?\s*"
    r"(fl\.?\s*oz\.?|fluid\s+ounces?|fz|ounces?|oz\.?|pounds?|lbs?\.?|kilograms?|kgs?|grams?|gms?|gr|g"
    r"|milliliters?|millilitres?|ml|liters?|litres?|ltrs?|l|gallons?|gal|quarts?|qt|pints?|pt)(?![a-z])",
    re.IGNORECASE,
)
# A count of small things inside one item ("80ct", "40 Count", "50 tea bags", "12 K-Cups", "60 PC").
_COUNT = re.compile(
    r"(?<![\w.])([1-9]\d{0,4})\s*-?\s*(?:count|ct|pc|pcs|pieces?|tea\s*bags|bags|pods|k-?\s*cups?|capsules|sachets"
    r"|packets|sticks|servings?|bars|cans|bottles|pouches|cups|tablets|rolls|sheets|slices|stems|cookies|crackers"
    r"|tortillas|lollipops|donuts|doughnuts|pellets|pops|stick\s*packs|units)\b",
    re.IGNORECASE,
)
# Packs, then a parenthesis that opens on a count ("24 Packages (288 Tortillas)"): the count is all the packs'.
_PACKS_BEFORE = re.compile(r"(?<![\w.])(\d{1,4})\s*-?\s*[a-z]+\s*\(\s*$", re.IGNORECASE)
# "<packs>-<size> <containers>": "2-14 Ounce Jars", "24 - 1 oz Bags", "12 - 9.5 oz Snack Packs" (a range, "6-8 oz",
# names no plural container after it).
_SIZED_CONTAINERS = (
    r"(?<![\w.,/-])(\d{1,3})\s*-\s*(?=(?:\d+(?:\.\d+)?|\.\d+)\s*-?\s*(?:fl\.?\s*oz|oz|ounces?|lbs?|pounds?|g|grams?|ml"
    r"|l|liters?|litres?)\.?\s+(?:[a-z]+\s+)?(?:cans|bottles|bags|boxes|jars|pouches|packs|packages|packets|tins|cartons"
    r"|bars|rolls|cups|tubs|containers)\b)"
)
# Packs that `pack_count_from_name` does not read: "(24 Cans)", "(2 bags)", "6 Packs of 4-Count", "2-14 Ounce Jars".
_EXTRA_PACK = re.compile(
    r"\(\s*(\d{1,4})\s*(?:cans|bottles|bags|boxes|jars|pouches|packs|packages|tins|cartons|bars)\s*\)"
    rf"|(?<![\w.])(\d{{1,4}})\s+packs?\s+of\b|{_SIZED_CONTAINERS}",
    re.IGNORECASE,
)
MAX_COUNT = 10_000


@dataclass(frozen=True)
class NameQuantities:
    """What an item name says about quantity; None where it says nothing."""

    item_size: float | None  # one item's size in its family's base unit (ounce, fl_oz)
    size_family: str | None  # "weight" or "volume"
    item_count: int | None  # small things inside one item (80ct K-Cups)
    packs: int | None  # items per listing (Pack of 6, 12 per case, (24 Cans))
    size_is_pack_total: bool = False  # item_size is the whole pack's ("40lb (4lb Pack of 10)"), not one item's


def _number(text: str) -> float:
    return float(text.replace(",", ""))


# A size that is not the product's own: what it makes or holds ("Makes 64 oz", "300-Pound Capacity").
_NOT_OWN_BEFORE = re.compile(r"\b(?:makes?|yields?|up\s+to|enough\s+for|fits|holds)\s*$", re.IGNORECASE)
_NOT_OWN_AFTER = re.compile(r"^\s*-?\s*(?:capacity|load)\b", re.IGNORECASE)
# A nutrient's grams in a serving ("15g Protein", "16g of Protein", "50mg Caffeine", "20g High Protein", "7 g
# Plant-Based Protein", "10g Whey Protein", "37g Whole Grains") or a serving's own ("5g per Serving"), not the item's
# weight; under 100 g, so that "500g Sugar" stays a size.
_NUTRIENT_AFTER = re.compile(
    r"^\s*(?:of\s+)?(?:(?:high|plant(?:[\s-]+based)?|whey|lean|meat|total|added|dietary|prebiotic|complete)\s+){0,2}"
    r"(?:protein|sugars?|fib(?:er|re)|(?:net\s+)?carbs?|carbohydrates?|fats?|caffeine|sodium|collagen|whole\s+grains?)\b"
    r"|^\s*(?:per|a|/)\s*(?:serving|scoop)\b",
    re.IGNORECASE,
)
# A bare "L" that labels a length in a dimension ("26L x 18W in.", "9.6H x 9.5L x 3.5W"), not litres: an "x" joins
# it to a number lettered W, H, D or L (or one glued to a unit mark) before or after.
_DIMENSION_LETTER = r"\d\s*[LWHD](?![a-z])\s*(?:in\b\.?|\"|'')?"
_DIMENSION_AFTER = re.compile(r"^\s*(?:in\b\.?|\"|'')?\s*[x×*]\s*(?:\d+(?:\.\d+)?|\.\d+)\s*[LWHD](?![a-z])",
                              re.IGNORECASE)
_DIMENSION_BEFORE = re.compile(rf"{_DIMENSION_LETTER}\s*[x×*]\s*$", re.IGNORECASE)
# After a size, a box or case and, in parentheses, the packs inside it: the size is the box's ("28.1oz Box (28 Packs)",
# "6.75lb Case (36 Pouches)"); not "12oz Box (Pack of 3)" (three boxes) nor "5 Ounce Cans (24 Cans)".
_INNER_PACKS_AFTER = re.compile(
    r"\.?\s*(?:box|case)\s*\(\s*(\d{1,4})\s+(?:[a-z-]+\s+)?(?:pouches|bars|packs|packets|bags|snacks|sticks)\s*\)",
    re.IGNORECASE,
)
# After a size, one container and "(Pack of N)": the size of each of the N ("12 Ounce Bag (Pack of 6)"; not "2 oz
# Servings (Pack of 6)").
_PACK_OF_AFTER = re.compile(
    r"\.?\s*(?:bag|box|jar|can|bottle|pouch|carton|tin|tub|package|canister|container)\s*\(\s*pack\s+of\s+\d+\s*\)",
    re.IGNORECASE,
)
# A group in parentheses that states the packs: a size inside it is one inner item ("(4lb Pack of 10)",
# "(5-4 Lb Bags)"). The groups are found first and the pack words searched in each: one pattern for both
# (r"\([^()]*(?:\bpack|...)[^()]*\)") retried every "pack" to the end of the text after a "(" never closed,
# so a long name took time quadratic in its length (an 88 KB one 3 s).
_PAREN_GROUP = re.compile(r"\([^()]*\)")
_PACK_WORD = re.compile(rf"\bpack|{_SIZED_CONTAINERS}", re.IGNORECASE)
# How far before and after a size the rules above read (their phrases are far shorter): searching the whole rest of
# the name for each size made a long name (a catalog text without labels is all name) quadratic.
_CONTEXT = 200


def _size_matches(name: str) -> list[tuple[float, str, int]]:
    """(size in the family's base unit, family, where it starts) of every weight or volume written in `name`, in
    order, but those a product makes or holds and a nutrient's grams."""
    sizes = []
    for match in _SIZE.finditer(name):
        before, after = max(0, match.start() - _CONTEXT), name[match.end():match.end() + _CONTEXT]
        if _NOT_OWN_BEFORE.search(name, before, match.start()) or _NOT_OWN_AFTER.match(after):
            continue
        if match.group(2).lower() == "l" and (_DIMENSION_AFTER.match(after)
                                               or _DIMENSION_BEFORE.search(name, before, match.start())):
            continue
        value = _number(match.group(1))
        unit = normalize_unit(match.group(2).rstrip("."))
        if unit in ("gram", "milligram") and value < 100 and _NUTRIENT_AFTER.match(after):
            continue
        family, factor = UNITS.get(unit, ("other", math.nan))
        # A number above MAX_VALUE (a 400-digit one reads as inf) is no size, as a Value above it is none.
        if family in ("weight", "volume") and 0 < value <= MAX_VALUE and math.isfinite(factor):
            sizes.append((value * factor, family, match.start()))
    return sizes


def name_quantities(name: str | None) -> NameQuantities:
    """The item size, item count and packs written in an item name."""
    if not isinstance(name, str) or not name:
        return NameQuantities(None, None, None, None)
    name = " ".join(name.split())  # the rules read any whitespace run as one; a long one made them quadratic
    sizes = _size_matches(name)
    size = sizes[0][:2] if sizes else None
    counted = next((m for m in _COUNT.finditer(name) if 0 < int(m.group(1)) <= MAX_COUNT), None)
    count = int(counted.group(1)) if counted else None
    packs = pack_count_from_name(name)
    if packs is None:
        extra = _EXTRA_PACK.search(name)
        if extra:
            value = int(next(group for group in extra.groups() if group))
            packs = value if 0 < value <= MAX_COUNT else None
    if packs is not None and count == packs:
        count = None  # "24 Pack" read twice: once as packs, once as a count
    elif counted and packs and count % packs == 0:
        before = _PACKS_BEFORE.search(name[:counted.start()])
        if before and int(before.group(1)) == packs:
            count //= packs  # "24 Packages (288 Tortillas)": the count in parentheses is the packs' total
    return NameQuantities(size[0] if size else None, size[1] if size else None, count, packs,
                          _size_is_pack_total(name, sizes, packs))


def _nan(value) -> float:
    return np.nan if value is None else float(value)


def pack_total_features(parsed: pd.DataFrame) -> pd.DataFrame:
    """The `pack_totals` group from parsed catalog rows (text.catalog.parse_catalog_column; without Value/Unit
    columns, as for 2023 titles, only what the name says).

    - name_size_log: log1p of one item's size from the name (ounces or fl oz); name_count_log: log1p of the
      count inside one item; name_packs: the packs the name states (its pack phrases and "(24 Cans)").
    - value_per_item: 1 when Value (a weight or volume, as the name's size) equals the name's item size (Value
      states one item), 0 when it equals size x packs (Value states the pack), NaN otherwise.
    - total_<weight|volume>_log: log1p of the listing's total in that family: Value when it is the pack total,
      Value x packs when it states one item, the name's total (size x packs) when Value is a count or absent.
    - total_items_log: log1p(packs x count inside each item), the number of single things sold; a Count
      Value above 1 where the name states neither, or where it is a whole multiple of the name's (the name states
      the packs but not the count inside them, or the count but not the packs); the name's count alone where a
      Count Value repeats it and the packs divide it ("1200 Count (Pack of 12)", Count 1200: 1200 in all).
    A name whose first size is the pack's total ("40lb (4lb Pack of 10)": an inner size in the parentheses of
    its pack phrase, times the packs, makes it; "28.1oz Box (28 Packs)": a box's size) states no item size to
    multiply: a Value equal to it states the pack, one equal to the inner size one item. A placeholder
    Value gives way to the name's total: one at most a tenth of the name's size ("1" for a "5 lbs" bag), and a Value
    of 1 or of the name's packs (a count written in a weight or volume unit: "Ounce" 6 for "7.5oz Pack of 6") under
    four fifths of it ("1" Ounce for an "8.47 oz" pouch).
    """
    quantities = [name_quantities(name) for name in parsed["item_name"]]
    size = np.array([_nan(q.item_size) for q in quantities])
    family = np.array([q.size_family or "" for q in quantities], dtype=object)
    count = np.array([_nan(q.item_count) for q in quantities])
    packs = np.array([_nan(q.packs) for q in quantities])
    if "quantity_base" in parsed:
        value_base = parsed["quantity_base"].to_numpy(dtype=float)
        value_family = parsed["unit_family"].astype(str).to_numpy()
        value = parsed["value"].to_numpy(dtype=float)
    else:  # no Value/Unit lines (the 2023 schema): the name alone
        value_base, value_family = np.full(len(parsed), np.nan), np.full(len(parsed), "", dtype=object)
        value = np.full(len(parsed), np.nan)
    # Ounces and fluid ounces are near enough (1 fl oz of water weighs 1.04 oz) to compare sizes across them.
    sized = np.isin(value_family, ("weight", "volume")) & np.isin(family, ("weight", "volume"))
    same = sized & np.isfinite(size) & np.isfinite(value_base)
    packs_or_one = np.where(np.isfinite(packs), packs, 1.0)
    size_is_total = np.array([q.size_is_pack_total for q in quantities], dtype=bool)
    name_total = np.where(size_is_total, size, size * packs_or_one)
    # A Value of one item: the name's item size, or the inner item of a pack-total name ("36 Ounce (12 Ounce Bags,
    # Pack of 3)", Value 12).
    per_item = same & np.where(size_is_total, np.isclose(value_base * packs_or_one, size, rtol=0.02),
                               np.isclose(value_base, size, rtol=0.02))
    per_pack = same & ~per_item & np.isclose(value_base, name_total, rtol=0.02)
    with np.errstate(invalid="ignore"):
        a_count = ((value == 1.0) | ((value == packs) & (packs > 1))) & (value_base <= 0.8 * size)
        placeholder = same & ~per_item & ~per_pack & ((value_base <= 0.1 * size) | a_count)
    stated = np.full(len(parsed), np.nan)
    stated[per_item & (packs_or_one > 1)] = 1.0
    stated[per_pack & (packs_or_one > 1)] = 0.0
    out = pd.DataFrame(index=parsed.index)
    out["name_size_log"] = np.log1p(size)
    out["name_count_log"] = np.log1p(count)
    out["name_packs"] = packs
    out["value_per_item"] = stated
    for name in ("weight", "volume"):
        from_value = np.where(value_family == name, np.where(placeholder, name_total,
                                                             value_base * np.where(stated == 1.0, packs_or_one, 1.0)),
                              np.nan)
        from_name = np.where(family == name, name_total, np.nan)
        out[f"total_{name}_log"] = np.log1p(np.where(np.isfinite(from_value), from_value, from_name))
    with np.errstate(invalid="ignore"):
        counted = np.where((value_family == "count") & (value_base > 1), value_base, np.nan)
        # A first count that a Count Value repeats and the packs divide is already the packs' total ("1200 Count (Pack
        # of 12)", Count 1200; "36 Count Pods, ... 12 Count (Pack of 3)", Count 36), not each pack's.
        count_is_total = (counted == count) & (packs > 1) & (np.mod(count, packs) == 0)
    items = np.where(count_is_total, count, packs_or_one * np.where(np.isfinite(count), count, 1.0))
    with np.errstate(invalid="ignore"):
        # A Count Value that is a whole multiple of the name's items counts the single things the name states only
        # in part ("15 Piece, 10-Count": 150; "Toothpicks (24 Pack)": 480); not one that is the name's size in
        # ounces ("12 oz (Pack of 2)", Count 12).
        multiple = (counted > items) & (np.mod(counted, items) == 0) & ~np.isclose(counted, size)
    named = np.isfinite(packs) | np.isfinite(count)
    out["total_items_log"] = np.log1p(np.where(named & ~multiple, items, counted))
    return out


def pack_groups(name: str) -> list[tuple[int, int]]:
    """(start, end) of each group in parentheses of `name` that states the packs ("(Pack of 6)", "(12 Ounce Bags,
    Pack of 3)", "(5-4 Lb Bags)"), in order; in time linear in the name's length."""
    return [match.span() for match in _PAREN_GROUP.finditer(name)
            if _PACK_WORD.search(name, match.start() + 1, match.end() - 1)]


def _size_is_pack_total(name: str, sizes: list[tuple[float, str, int]], packs: int | None) -> bool:
    """Whether the name's first size (of `sizes`, _size_matches) is the pack's total: a size inside the parentheses
    of a pack phrase, or just before "(Pack of N)", times the packs, makes it ("40lb (4lb Pack of 10)", "36 Ounce (12
    Ounce Bags, Pack of 3)", "72 Ounce, ... 12 Ounce Bag (Pack of 6)"); or it is a box's or case's that names the
    packs inside it ("28.1oz Box (28 Packs)", "6.75lb Case (36 Pouches)", "18.3oz Box (10 Bars)")."""
    if packs is None or packs <= 1 or not sizes:
        return False
    inside = _INNER_PACKS_AFTER.match(name, _SIZE.match(name, sizes[0][2]).end())
    if inside and int(inside.group(1)) == packs:
        return True
    groups = pack_groups(name)
    starts = [low for low, _ in groups]  # the groups do not overlap: the one that may hold a size is the last before it

    def in_group(start: int) -> bool:
        at = bisect.bisect_left(starts, start) - 1
        return at >= 0 and start < groups[at][1]

    return any(math.isclose(inner * packs, sizes[0][0], rel_tol=0.02) for inner, _, start in sizes[1:]
               if in_group(start)
               or _PACK_OF_AFTER.match(name, _SIZE.match(name, start).end()))


def total_quantity_log(parsed: pd.DataFrame, totals: pd.DataFrame | None = None) -> np.ndarray:
    """log1p of the listing's total quantity in its Value's family (weight, volume; items for counts and rows
    without a unit), NaN where unknown: the scale a price per unit multiplies. `totals`: pack_total_features."""
    totals = pack_total_features(parsed) if totals is None else totals
    family = parsed["unit_family"].astype(str).to_numpy() if "unit_family" in parsed else np.full(len(parsed), "")
    return np.where(family == "weight", totals["total_weight_log"],
                    np.where(family == "volume", totals["total_volume_log"], totals["total_items_log"]))
