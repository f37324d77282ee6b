"""Tests for amzkit.catalog: unit table, pack counts, the catalog parser and the column features."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amzkit.text.catalog import (
    UNIT_ALIASES,
    UNITS,
    CatalogEntry,
    catalog_text,
    normalize_unit,
    pack_count_from_name,
    parse_catalog,
    parse_catalog_column,
)

SAMPLE_FILE = "amz25_sample_test.csv"

# --------------------------------------------------------------------------------------------------
# Real rows
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_rows(shared_data) -> pd.DataFrame:
    path = shared_data / SAMPLE_FILE
    if not path.is_file():
        pytest.skip(f"real-data test skipped: {path} is absent")
    return pd.read_csv(path)


def test_real_rows_parse_completely(real_rows: pd.DataFrame) -> None:
    texts = real_rows.set_index("sample_id")["catalog_content"]
    parsed = parse_catalog_column(texts)

    assert len(parsed) == 100
    assert parsed.index.equals(texts.index)
    assert parsed["item_name"].map(lambda name: isinstance(name, str) and name != "").all()
    assert parsed["unit_raw"].map(lambda unit: isinstance(unit, str) and unit != "").all()

    # Every row has a "Value:" line; the only rows allowed no value are those whose Value text is "nan"
    # (the real file holds one: "Value: nan" / "Unit: None").
    raw_values = texts.str.extract(r"(?im)^Value:\s*(.*?)\s*$")[0]
    assert raw_values.notna().all()
    missing_value = parsed["value"].isna()
    assert missing_value.equals(raw_values.str.lower().eq("nan"))
    assert missing_value.sum() <= 1

    unknown = parsed.loc[parsed["unit"] == "other", "unit_raw"]
    assert unknown.empty, f"unit spellings the alias table does not know: {sorted(set(unknown))}"
    known = parsed["unit"].isin([unit for unit in UNITS if unit not in ("other", "none")])
    not_known = parsed.loc[~known, ["unit_raw", "unit"]]
    print("rows without a known canonical unit:\n", not_known.to_string())
    assert known.mean() >= 0.95, not_known.to_string()
    with_value = known & parsed["value"].notna()
    assert parsed.loc[with_value, "quantity_base"].notna().all()


def test_real_rows_fields_match_the_raw_lines(real_rows: pd.DataFrame) -> None:
    texts = real_rows["catalog_content"]
    parsed = parse_catalog_column(texts)
    first_lines = texts.str.split(r"\r?\n", n=1, regex=True).str[0]
    expected_names = first_lines.str.replace("Item Name: ", "", n=1).str.strip()
    assert parsed["item_name"].tolist() == expected_names.tolist()
    bullet_lines = texts.str.count(r"(?m)^Bullet Point(?: \d+)?:")
    assert parsed["n_bullets"].tolist() == bullet_lines.tolist()
    assert (parsed["text_length"] == texts.str.len()).all()
    assert not parsed["description"].dropna().str.contains(r"<[a-zA-Z/][^>]*>|&[a-z]+;|\r|\n").any()


# --------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ounce", "ounce"), ("ounce", "ounce"), ("OZ", "ounce"), ("oz", "ounce"), ("oz.", "ounce"),
        ("Ounces", "ounce"),
        ("Fl Oz", "fl_oz"), ("fl. oz", "fl_oz"), ("FL OZ", "fl_oz"), ("Fl. Oz", "fl_oz"), ("FL Oz", "fl_oz"),
        ("fl.oz.", "fl_oz"), ("floz", "fl_oz"), ("Fluid Ounce", "fl_oz"), ("Fluid Ounces", "fl_oz"),
        ("fluid ounce(s)", "fl_oz"), ("FZ", "fl_oz"),
        ("Count", "count"), ("count", "count"), ("ct", "count"), ("Each", "count"), ("ea", "count"),
        ("Piece", "count"), ("pieces", "count"), ("pcs", "count"), ("pack", "count"), ("Units", "count"),
        ("None", "none"), ("", "none"), ("  ", "none"), (None, "none"), ("N/A", "none"), ("n/a", "none"),
        ("Pound", "pound"), ("lb", "pound"), ("lbs", "pound"), ("LBS.", "pound"), ("pounds", "pound"),
        ("Gram", "gram"), ("grams", "gram"), ("g", "gram"), ("gr", "gram"), ("gramm", "gram"),
        ("Kilogram", "kilogram"), ("kg", "kilogram"), ("kgs", "kilogram"),
        ("mg", "milligram"), ("milligrams", "milligram"),
        ("ml", "milliliter"), ("mL", "milliliter"), ("millilitre", "milliliter"),
        ("Milliliters", "milliliter"),
        ("Liter", "liter"), ("Litre", "liter"), ("ltr", "liter"), ("l", "liter"), ("liters", "liter"),
        ("gallon", "gallon"), ("gal", "gallon"), ("Gallons", "gallon"),
        ("qt", "quart"), ("quarts", "quart"), ("pt", "pint"), ("Pints", "pint"), ("cups", "cup"),
        ("foot", "foot"), ("feet", "foot"), ("ft", "foot"),
        ("inch", "inch"), ("Inches", "inch"), ("in", "inch"),
        ("cm", "centimeter"), ("m", "meter"), ("meters", "meter"),
        ("sq ft", "square_foot"), ("Sq. Ft.", "square_foot"), ("square feet", "square_foot"),
        ("sqft", "square_foot"),
        ("Bottles", "count"), ("Pouches", "count"), ("Tablets", "count"),  # plural rule, not listed spellings
        ("xyzzy", "other"), ("tablespoon", "other"), ("12", "other"),
    ],
)
def test_normalize_unit(raw: str | None, expected: str) -> None:
    assert normalize_unit(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tea Bags", "count"), ("K-Cups", "count"), ("Coffee Pods", "count"), ("Veggie Capsules", "count"),
        ("per Count", "count"), ("Per Pound", "pound"), ("Count (Pack of 1)", "count"), ("fl oz (US)", "fl_oz"),
        ("Sticks", "count"), ("Cartons", "count"), ("Sachets", "count"), ("Softgels", "count"),
        ("Square Inch", "other"), ("Cubic Feet", "other"),  # an area or volume, not a length: no last-word reading
    ],
)
def test_units_written_with_a_describing_word_a_per_or_a_note(raw: str, expected: str) -> None:
    """A Unit line as sellers write it: a count noun after a describing word ("Tea Bags"), "per Count", a note in
    parentheses; each read "other" before."""
    assert normalize_unit(raw) == expected


def test_alias_table_is_normalised_and_points_into_units() -> None:
    assert set(UNIT_ALIASES.values()) <= set(UNITS)
    for spelling, unit in UNIT_ALIASES.items():
        assert spelling == spelling.lower().strip() and "." not in spelling and "  " not in spelling
        assert normalize_unit(spelling) == unit, spelling
        assert normalize_unit(spelling.upper()) == unit, spelling


def test_unit_table_families_and_factors() -> None:
    families = {family for family, _ in UNITS.values()}
    assert families == {"weight", "volume", "count", "length", "area", "other", "none"}
    expected_factors = {
        "ounce": 1.0, "pound": 16.0, "gram": 0.035274, "kilogram": 35.274, "milligram": 3.5274e-5,
        "fl_oz": 1.0, "milliliter": 0.033814, "liter": 33.814, "gallon": 128.0, "quart": 32.0,
        "pint": 16.0, "cup": 8.0, "count": 1.0, "inch": 1.0, "foot": 12.0, "centimeter": 0.393701,
        "meter": 39.3701, "square_foot": 1.0,
    }
    for unit, factor in expected_factors.items():
        assert UNITS[unit][1] == pytest.approx(factor, rel=1e-4), unit
    assert math.isnan(UNITS["other"][1]) and math.isnan(UNITS["none"][1])


# --------------------------------------------------------------------------------------------------
# Pack counts
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Beans 15 oz, Pack of 6", 6),
        ("Juice, 64 Ounce (Pack of 12)", 12),
        ("Soda 6-Pack", 6),
        ("Soda 6 Pack", 6),
        ("Soup 2pk", 2),
        ("Milk - 32 oz - 3 pk", 3),
        ("Tea (8 oz) - 2 Pack", 2),
        ("Water 12 per case", 12),
        ("Mac and Cheese - 6 oz - case of 12", 12),
        ("Knives Set of 4", 4),
        ("Crayons Box of 10", 10),
        ("Soap Bundle of 3", 3),
        ("Rice 2 x 500g", 2),
        ("Jalapenos 24x 26OZ", 24),
        ("Jerky 3 oz (Pack of 1)", 1),
        ("PACK OF 8 bottles", 8),
        ("Candy (Pack of Two)", 2),
        ("Seasoning 4g x 10 Packs", 10),
        ("Bagels 12 oz (4 Bagels/Pack) (Pack of 3)", 3),
        # real 2025 spellings: no space, "Pk", a size after "pack of" that is the item's, not the count
        ("Nuts, 1.5 Ounce (Pack of6)", 6),
        ("Chips Packof 12", 12),
        ("Soap Pk Of 6", 6),
        ("Bars, PK- 6", 6),
        ("Tea Bags, 12 Pack of 3.32 Oz", 12),
        ("Water (2 Pack of 32 Fl. Oz.)", 2),
        ("Peanuts; 2.5 oz., 30/pk", 30),  # "/pk" as "/pack": 30 per pack
        ("Cups 4 oz 50 per pk", 50),
    ],
)
def test_pack_count_positive(name: str, expected: int) -> None:
    assert pack_count_from_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "Size 6 Shoes",
        "Model 2024",
        "Peanut Butter 16 oz",
        "Salt Block (8\"x8\"x1.5\")",
        "Bowl 10- by 3-Inch",
        "Pack of 0",
        "Pack of 20000",
        "1.5 Pack",
        "1/2 Pack",
        "Tray 1.5 x 12 oz",
        "Variety Pack, Cherry",
        "",
        None,
    ],
)
def test_pack_count_negative(name: str | None) -> None:
    assert pack_count_from_name(name) is None


def test_a_number_of_thousands_of_digits_is_no_pack_count() -> None:
    # int() refuses a text of over 4300 digits: a garbled title with such a run crashed parsing a whole CSV
    name = "Widget " + "9" * 5000 + " Pack"
    assert pack_count_from_name(name) is None
    assert parse_catalog(f"Item Name: {name}\nValue: 1\nUnit: Count").pack_count is None
    assert pack_count_from_name("Pack of 00012") == 12


# --------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------

MULTILINE_HTML = (
    "Item Name: Hot Sauce, 10 oz (Pack of 6)\n"
    "Bullet Point 1: First bullet\n"
    "Bullet Point 2: Second bullet\n"
    "Product Description: <b>Bold claim</b><br>Line two &amp; more<br/>\n"
    "continues here &nbsp; with <p>a paragraph</p>\n"
    "\n"
    "and a last line&#39;s end\n"
    "Value: 60.0\n"
    "Unit: Fl Oz\n"
)


def test_multiline_description_html_is_cleaned() -> None:
    entry = parse_catalog(MULTILINE_HTML)
    assert entry.description == (
        "Bold claim Line two & more continues here with a paragraph and a last line's end"
    )
    assert entry.bullet_points == ("First bullet", "Second bullet")
    assert entry.value == 60.0
    assert entry.unit_raw == "Fl Oz" and entry.unit == "fl_oz"
    assert entry.pack_count == 6


def test_escaped_markup_and_entities_read_as_text() -> None:
    """Real amz25_dev rows: descriptions escaped twice ("&lt;B&gt;", "&amp;trade;") kept their tags, bullets kept
    "&amp;" ("DIP &amp; SCOOP: ...") and fed them to the text model."""
    text = (
        "Item Name: Dark Chocolate Walnuts\n"
        "Bullet Point 1: DIP &amp; SCOOP: super smooth\n"
        "Bullet Point 2: Vegan, Kosher, &amp; Dairy Free &#39;n tasty\n"
        "Product Description: &lt;B&gt;&lt;i&gt;Next Organics&lt;/i&gt;&lt;/b&gt;&lt;P&gt;&lt;br&gt;Coated"
        " Snapple&amp;trade; Mix &lt;/br&gt;<br>Cream &amp; Sugar\n"
        "Value: 1.0\nUnit: Count\n"
    )
    entry = parse_catalog(text)
    assert entry.description == "Next Organics Coated Snapple\u2122 Mix Cream & Sugar"
    assert entry.bullet_points == ("DIP & SCOOP: super smooth", "Vegan, Kosher, & Dairy Free 'n tasty")


def test_crlf_gives_the_same_entry_as_lf() -> None:
    assert parse_catalog(MULTILINE_HTML.replace("\n", "\r\n")) == parse_catalog(MULTILINE_HTML)
    entry = parse_catalog("Item Name: Cola\r\nValue: 12\r\nUnit: oz\r\n")
    assert entry.item_name == "Cola" and entry.value == 12.0 and entry.unit_raw == "oz"
    lone_cr = parse_catalog("Item Name: Cola\rBullet Point 1: sweet\rValue: 12\rUnit: oz\r")
    assert lone_cr == CatalogEntry("Cola", ("sweet",), None, 12.0, "oz", "ounce", None)


def test_unnumbered_and_numbered_bullets_keep_their_order() -> None:
    text = "Item Name: Salsa\nBullet Point: plain one\nBullet Point 2: numbered\nBullet Point: plain two\n"
    assert parse_catalog(text).bullet_points == ("plain one", "numbered", "plain two")


def test_labels_are_case_insensitive_and_continuations_join() -> None:
    text = "item name: Nut\nmix\nBULLET POINT 1: crunchy\n and salty\nvalue: 3\nUNIT: LB"
    entry = parse_catalog(text)
    assert entry.item_name == "Nut mix"
    assert entry.bullet_points == ("crunchy and salty",)
    assert entry.value == 3.0 and entry.unit == "pound"


def test_unlabelled_leading_text_becomes_the_item_name_only_when_no_label() -> None:
    assert parse_catalog("Plain title 6 Pack\nValue: 4\nUnit: oz").item_name == "Plain title 6 Pack"
    assert parse_catalog("Plain title 6 Pack\nValue: 4\nUnit: oz").pack_count == 6
    assert parse_catalog("stray\nItem Name: Real name\nValue: 4").item_name == "Real name"


def test_missing_value_and_unit() -> None:
    entry = parse_catalog("Item Name: Bitter Lemon\nBullet Point 1: fizzy")
    assert entry.value is None and entry.unit_raw is None and entry.unit == "none"
    assert entry.item_name == "Bitter Lemon"


@pytest.mark.parametrize(
    ("raw_value", "expected"),
    [("12", 12.0), ("12.0", 12.0), ("1,000.5", 1000.5), (" 0.04 ", 0.04), ("nan", None), ("abc", None),
     ("", None), ("inf", None), ("1,5", None), ("0", 0.0), ("-5", None), ("1e306", None), ("1e30", 1e30)],
)
def test_value_parsing(raw_value: str, expected: float | None) -> None:
    assert parse_catalog(f"Item Name: x\nValue: {raw_value}\nUnit: Ounce").value == expected


@pytest.mark.parametrize("text", [None, float("nan"), np.nan, pd.NA, "", "   \r\n  "])
def test_empty_inputs_give_the_empty_entry(text: object) -> None:
    entry = parse_catalog(text)  # type: ignore[arg-type]
    assert entry == CatalogEntry(None, (), None, None, None, "none", None)


def test_unit_none_text_is_kept_raw() -> None:
    entry = parse_catalog("Item Name: Pizza Crusts, 2-Count\nValue: nan\nUnit: None\n")
    assert entry.unit_raw == "None" and entry.unit == "none" and entry.value is None


def test_catalog_text_joins_sentences() -> None:
    text = catalog_text(parse_catalog(MULTILINE_HTML))
    assert text.startswith("Hot Sauce, 10 oz (Pack of 6). First bullet. Second bullet. Bold claim")
    assert text.endswith("last line's end.")
    assert "\n" not in text and ".." not in text
    assert catalog_text(None) == ""
    assert catalog_text("Item Name: Cola!\nValue: 1\nUnit: oz") == "Cola!"


# --------------------------------------------------------------------------------------------------
# Column features
# --------------------------------------------------------------------------------------------------


def test_column_conversions_and_index() -> None:
    texts = pd.Series(
        [
            "Item Name: Flour 2 lb\nValue: 2\nUnit: pound",
            "Item Name: Cola 1 L\nValue: 1.0\nUnit: Liter",
            "Item Name: Cereal\nValue: 500\nUnit: grams",
            "Item Name: Mystery\nValue: 5\nUnit: xyzzy",
            "Item Name: Nothing\nValue: 7\nUnit: None",
            None,
            "Item Name: Bars (Pack of 6)\nBullet Point 1: a\nBullet Point 2: b\nValue: 6\nUnit: Count",
        ],
        index=[70, 10, 30, 20, 60, 50, 40],
    )
    parsed = parse_catalog_column(texts)
    assert parsed.index.equals(texts.index)
    assert list(parsed.columns) == [
        "item_name", "bullet_text", "n_bullets", "description", "value", "unit_raw", "unit", "unit_family",
        "pack_count", "quantity_base", "text_length",
    ]
    assert parsed.loc[70, "quantity_base"] == pytest.approx(32.0)
    assert parsed.loc[70, "unit_family"] == "weight"
    assert parsed.loc[10, "quantity_base"] == pytest.approx(33.814, abs=1e-3)
    assert parsed.loc[10, "unit_family"] == "volume"
    assert parsed.loc[30, "quantity_base"] == pytest.approx(17.637, abs=1e-3)
    assert parsed.loc[20, "unit"] == "other" and np.isnan(parsed.loc[20, "quantity_base"])
    assert parsed.loc[60, "unit"] == "none" and np.isnan(parsed.loc[60, "quantity_base"])
    assert parsed.loc[60, "value"] == 7.0
    assert np.isnan(parsed.loc[50, "value"]) and parsed.loc[50, "text_length"] == 0
    assert parsed.loc[50, "item_name"] is None and parsed.loc[50, "n_bullets"] == 0
    assert parsed.loc[40, "bullet_text"] == "a | b" and parsed.loc[40, "n_bullets"] == 2
    assert parsed.loc[40, "pack_count"] == 6.0 and np.isnan(parsed.loc[70, "pack_count"])
    assert parsed["pack_count"].dtype == float
    assert parsed.loc[70, "text_length"] == len(texts[70])


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

_LABEL_FRAGMENTS = st.sampled_from(
    [
        "Item Name:", "Bullet Point:", "Bullet Point 3:", "Product Description:", "Value:", "Unit:",
        "<br>", "&amp;", "\r\n", "\n", "\r", "Value: 1,2,3", "Unit: Fl. Oz", "Value: 1e999",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(st.one_of(_LABEL_FRAGMENTS, st.text(max_size=20))).map("".join)))
def test_parse_catalog_never_raises(text: str) -> None:
    entry = parse_catalog(text)
    assert entry.unit in UNITS
    assert entry.value is None or math.isfinite(entry.value)
    assert isinstance(catalog_text(entry), str)


_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789&-,.()%'/:"
_WORD = st.text(alphabet=_NAME_ALPHABET, min_size=1, max_size=12)
_PHRASE = st.lists(_WORD, min_size=1, max_size=8).map(" ".join)
_CASE_CHANGES = st.sampled_from([str, str.upper, str.lower, str.title])


@st.composite
def _well_formed_catalog(draw: st.DrawFn) -> tuple[str, str, list[str], float, str]:
    """(text, item name, bullets, value, canonical unit) for a generated well-formed catalog."""
    name = draw(_PHRASE)
    bullets = draw(st.lists(_PHRASE, max_size=10))
    numbered = draw(st.booleans())
    number = draw(st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False))
    value_text = draw(st.sampled_from([repr(number), f"{number:.2f}", f"{number:,.2f}"]))
    alias = draw(st.sampled_from(sorted(UNIT_ALIASES)))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [f"Item Name: {name}"]
    lines += [
        f"Bullet Point {i + 1}: {bullet}" if numbered else f"Bullet Point: {bullet}"
        for i, bullet in enumerate(bullets)
    ]
    if draw(st.booleans()):
        lines += ["Product Description: <p>Some <b>text</b></p>", "more &amp; text"]
    lines += [f"Value: {value_text}", f"Unit: {draw(_CASE_CHANGES)(alias)}"]
    expected_value = float(re.sub(",", "", value_text))
    return newline.join(lines) + newline, name, bullets, expected_value, UNIT_ALIASES[alias]


@settings(max_examples=300, deadline=None)
@given(_well_formed_catalog())
def test_well_formed_catalog_round_trips(case: tuple[str, str, list[str], float, str]) -> None:
    text, name, bullets, value, unit = case
    entry = parse_catalog(text)
    assert entry.item_name == name
    assert len(entry.bullet_points) == len(bullets)
    assert list(entry.bullet_points) == bullets
    assert entry.value == value
    assert entry.unit == unit


def test_hostile_values_build_features_without_numpy_warnings() -> None:
    """'Value: -5' warned 'invalid value in log1p', 'Value: 1e306 Kilogram' 'overflow in cast' in 03's output."""
    import warnings

    from amzkit.text.features import FEATURE_GROUPS, build_features

    frame = pd.DataFrame({"sample_id": ["1", "2", "3"], "image_link": "", "catalog_content": [
        "Item Name: a\nValue: -5\nUnit: Ounce", "Item Name: b\nValue: 1e306\nUnit: Kilogram",
        "Item Name: c (Pack of 6)\nValue: 12\nUnit: Ounce"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, _ = build_features(frame, frame.head(0), "amazon2025", sorted(FEATURE_GROUPS))
    matrix = train.select_dtypes("number").to_numpy(dtype=np.float32)
    assert np.isnan(matrix[:2]).any() and not np.isinf(matrix).any()

