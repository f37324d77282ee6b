"""Tests for amzkit.text.features.length_mentions: "N in 1", "2 in Blue" and shoe-size "M" are not lengths."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from amzkit.core.schema import get_schema
from amzkit.text.features import dimension_features, length_mentions, parsed_rows

CM = 1 / 2.54  # inches per centimetre

# --------------------------------------------------------------------------------------------------
# Phrases that are not lengths
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "3 in 1 USB Charging Cable",
        "2-in-1 Laptop",
        "3-in-1 Charger",  # a hyphen before "in" makes no length of it either
        "Model X-100-M",
        "5 in 1 Fuel Additive",
        "3in1 Milk Tea Powder",
        "SIQIWO 3 in1 Charging Cable",
        "1 in 6 children in America",
        "iPhone 12 Pro 6.1 in 2020",  # a number after "in" wins, even after a decimal
        "Pack of 2 in Blue",
        "4 in a box",
        "launched in 1969 in Japan",
        "#1 IN GINGER",
        "Size 10 M US",
        "Shoe 8 M",
        "Sneaker, Grey, 8.5 M US",  # a spaced decimal "M" is a shoe size too
        "38 EU (8 W / 7 M)",
        "Age 5 M+ toy",
        "Romper (Multi 0-3M)",
        "3M Tape-On Installation",
        "100M Americans",
        "SM-J700M",
    ],
)
def test_words_and_sizes_are_not_lengths(text: str) -> None:
    assert length_mentions(text) == []


# --------------------------------------------------------------------------------------------------
# Real length mentions, in inches
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "inches"),
    [
        ("12 inch", [12.0]),
        ('5"', [5.0]),
        ("30 x 20 cm", [30 * CM, 20 * CM]),
        ("12 x 8 x 4 in", [12.0, 8.0, 4.0]),
        ("12 x 8 x 4 in Blue", [12.0, 8.0, 4.0]),  # inside "a x b" "in" is always inches
        ("6 in", [6.0]),
        ("6 in.", [6.0]),
        ("6 in, black", [6.0]),
        ("(6 in)", [6.0]),
        ("6 in long", [6.0]),
        ("Stem 20 in\nBullet Point 2", [20.0]),
        ("4 in x 4 in Blue", [4.0, 4.0]),
        ("Waist 71cm / 28in 76cm", [71 * CM, 28.0, 76 * CM]),  # a number with its own unit may follow "in"
        ("3in Learning Materials", [3.0]),  # glued "3in" is inches
        ("Length: 30 in Chest Measurement: 42 in Product", [30.0, 42.0]),
        ("1.2m", [120 * CM]),
        ("2 m cable", [200 * CM]),
        ("10 meters", [1000 * CM]),
        ("1.5M", [150 * CM]),  # a capital "M" glued to a decimal is metres
        ("1 M x 12 M", [100 * CM, 1200 * CM]),
        ("1.8 x 1.8M", [180 * CM, 180 * CM]),
        ("3 ft", [36.0]),
        ("5 yards", [180.0]),
        ("100mm", [10 * CM]),
        ('70-7/8" long', [70.875]),  # a mixed fraction: it read 8.0
        ("70 7/8 inch", [70.875]),
        ("1/2 inch", [0.5]),
        ('24 x 36-1/2"', [24.0, 36.5]),
        ("10-12 inch", [12.0]),  # a range: its last number, as before
        ("Width 30&quot; and 12&quot;", [30.0, 12.0]),  # the 2023 descriptions' HTML-escaped inch marks
        ("50cm/20in", [50 * CM, 20.0]),  # a number after "/" that is no fraction's denominator
        ("Approx.24.5x3cm", [24.5 * CM, 3 * CM]),
        (".75 inches", [0.75]),
        ("12-Inch Skillet", [12.0]),  # a hyphen before the unit
        ("3-1/2-Inch", [3.5]),
        ("6-ft cable", [72.0]),
        ("1/0 inch long, 5 inch", [5.0]),  # no value from a /0
    ],
)
def test_real_lengths_still_parse(text: str, inches: list[float]) -> None:
    assert length_mentions(text) == pytest.approx(inches)


def test_thirty_by_twenty_cm_in_inches() -> None:
    assert length_mentions("30 x 20 cm") == pytest.approx([11.811, 7.874], abs=1e-3)


def test_dimension_features_ignore_the_false_lengths() -> None:
    frame = pd.DataFrame({
        "TITLE": ["3 in 1 USB Charging Cable", "Pack of 2 in Blue", "Pump, Black, 8 M US", "Towel 30 x 56 in"],
        "BULLET_POINTS": ["", "", "", ""],
        "DESCRIPTION": ["", "", "", ""],
        "PRODUCT_TYPE_ID": [1, 1, 1, 1],
    })
    schema = get_schema("amazon2023")
    out = dimension_features(frame, parsed_rows(frame, schema), schema)
    assert out["dim_count"].tolist() == [0, 0, 0, 2]
    assert out["dim_max"].iloc[:3].isna().all()
    assert np.expm1(out["dim_max"].iloc[3]) == pytest.approx(56.0)


def test_an_absurd_number_is_no_length() -> None:
    """1e307 metres overflowed to inf inches (dim_max, dim_first were inf); like a Value above MAX_VALUE, a number
    above it (a long product code before "mm") is no length, and the text's other lengths still read."""
    huge = "1" + "0" * 307
    assert length_mentions(f"{huge} meters, 5 inch, {'9' * 400} in.") == pytest.approx([5.0])
    frame = pd.DataFrame({"TITLE": [f"Rod {huge} m"], "BULLET_POINTS": [""], "DESCRIPTION": [""],
                          "PRODUCT_TYPE_ID": [1]})
    schema = get_schema("amazon2023")
    out = dimension_features(frame, parsed_rows(frame, schema), schema)
    assert out["dim_count"].tolist() == [0]
    assert out[["dim_max", "dim_min", "dim_first", "dim_name_max"]].isna().all(axis=None)


# --------------------------------------------------------------------------------------------------
# Real rows: removing an "N in 1" or shoe-size phrase must not change the lengths read
# --------------------------------------------------------------------------------------------------

N_IN_1 = re.compile(r"\b\d{1,2}[ -]?in[ -]?1\b", re.IGNORECASE)
SHOE_SIZE = re.compile(r"\b\d{1,2}(?:\.5)? M US\b")


def _texts(shared_data, name: str, columns: list[str]) -> pd.Series:
    path = shared_data / name
    if not path.is_file():
        pytest.skip(f"real-data test skipped: {path} is absent")
    frame = pd.read_csv(path)
    return frame[columns].fillna("").astype(str).agg(" \n ".join, axis=1)


@pytest.mark.parametrize(
    ("name", "columns", "phrase", "at_least"),
    [
        ("amz23_dev.csv", ["TITLE", "BULLET_POINTS", "DESCRIPTION"], N_IN_1, 10),
        ("amz25_dev.csv", ["catalog_content"], N_IN_1, 3),
        ("amz23_dev.csv", ["TITLE", "BULLET_POINTS", "DESCRIPTION"], SHOE_SIZE, 10),
    ],
    ids=["2023-n-in-1", "2025-n-in-1", "2023-shoe-size"],
)
def test_real_rows_get_no_length_from_the_phrase(shared_data, name, columns, phrase, at_least) -> None:
    texts = _texts(shared_data, name, columns)
    with_phrase = texts[texts.str.contains(phrase)]
    assert len(with_phrase) >= at_least, f"expected >= {at_least} rows of {name} with {phrase.pattern!r}"
    wrong = {i: phrase.findall(text) for i, text in with_phrase.items()
             if length_mentions(text) != length_mentions(phrase.sub(" combo ", text))}
    assert not wrong, f"rows of {name} that read a length from {phrase.pattern!r}: {wrong}"
