"""Tests for amzkit.schema: the schema table, load_split's refusals (columns, ids, target) and real rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amzkit.core.schema import SCHEMAS, get_schema, load_split, row_text

DEV_2023 = "amz23_dev.csv"
SAMPLE_2025 = "amz25_sample_test.csv"


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def real_file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        pytest.skip(f"real-data test skipped: {path} is absent")
    return path


# --------------------------------------------------------------------------------------------------
# The schema table
# --------------------------------------------------------------------------------------------------


def test_schema_columns() -> None:
    s25, s23 = SCHEMAS["amazon2025"], SCHEMAS["amazon2023"]
    assert s25.train_columns == ("sample_id", "catalog_content", "image_link", "price")
    assert s25.test_columns == ("sample_id", "catalog_content", "image_link")
    assert s25.submission_columns == ("sample_id", "price")
    assert s23.train_columns == (
        "PRODUCT_ID", "TITLE", "BULLET_POINTS", "DESCRIPTION", "PRODUCT_TYPE_ID", "PRODUCT_LENGTH")
    assert s23.submission_columns == ("PRODUCT_ID", "PRODUCT_LENGTH")
    assert get_schema("amazon2023") is s23 and get_schema(s25) is s25


def test_unknown_schema_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="amazon2030") as err:
        get_schema("amazon2030")
    assert "amazon2023" in str(err.value) and "amazon2025" in str(err.value)


# --------------------------------------------------------------------------------------------------
# Columns that do not fit
# --------------------------------------------------------------------------------------------------


def test_missing_and_extra_columns_both_named(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_id,catalog_content,image_link,cost\n1,a,u,2.5\n")
    with pytest.raises(ValueError) as err:
        load_split(path, "amazon2025", "train")
    msg = str(err.value)
    assert "missing columns ['price']" in msg
    assert "unexpected columns ['cost']" in msg
    assert "amazon2025" in msg
    assert "Expected exactly ['sample_id', 'catalog_content', 'image_link', 'price']" in msg


def test_renamed_target_gets_no_test_file_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_id,catalog_content,image_link,cost\n1,a,u,2.5\n")
    with pytest.raises(ValueError) as err:
        load_split(path, "amazon2025", "train")
    assert "is this the test file?" not in str(err.value)


def test_test_csv_with_target_hints_train_file(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_id,catalog_content,image_link,price\n1,a,u,2.5\n")
    with pytest.raises(ValueError, match=re.escape("unexpected columns ['price'] (the test CSV must not have the "
                                                   "target: drop column 'price' from it, or check that it is not "
                                                   "the train file)")):
        load_split(path, "amazon2025", "test")


def test_train_csv_without_target_hints_test_file(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_id,catalog_content,image_link\n1,a,u\n")
    with pytest.raises(ValueError, match=re.escape("missing columns ['price'] (is this the test file?)")):
        load_split(path, "amazon2025", "train")


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_text_only_csv_without_the_image_column_says_to_add_an_empty_one(tmp_path: Path, split: str) -> None:
    path = write(tmp_path, "sample_id,catalog_content" + (",price\n1,a,2.5\n" if split == "train" else "\n1,a\n"))
    with pytest.raises(ValueError, match=re.escape("missing columns ['image_link'] (a file without pictures). "
                                                   "Expected exactly")) as err:
        load_split(path, "amazon2025", split)
    assert "add an empty 'image_link' column" in str(err.value) and '-p model ""' in str(err.value)
    assert "pick the right file" not in str(err.value)


def test_bad_split_and_absent_file(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_id,catalog_content,image_link\n1,a,u\n")
    with pytest.raises(ValueError, match="split must be"):
        load_split(path, "amazon2025", "valid")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_split(tmp_path / "nope.csv", "amazon2025", "test")


# --------------------------------------------------------------------------------------------------
# Ids and target
# --------------------------------------------------------------------------------------------------


def test_duplicate_ids_named(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_id,catalog_content,image_link\n4,a,u\n51234,b,u\n51234,c,u\n")
    with pytest.raises(ValueError, match="duplicate sample_id") as err:
        load_split(path, "amazon2025", "test")
    assert "51234" in str(err.value) and "4," not in str(err.value)


@pytest.mark.parametrize("bad_id", ["1.5", "abc", ""])
def test_non_integer_ids_named(tmp_path: Path, bad_id: str) -> None:
    path = write(tmp_path, f"sample_id,catalog_content,image_link\n1,a,u\n2,b,u\n{bad_id},c,u\n")
    with pytest.raises(ValueError, match="sample_id must hold integer ids") as err:
        load_split(path, "amazon2025", "test")
    msg = str(err.value)
    assert "data rows [3]" in msg and "hold [" in msg, msg  # row 3 after the header, its value named


@pytest.mark.parametrize("bad_target", ["-3", "", "NaN", "nan", "NA", "abc", "inf"])
def test_bad_target_rejected_naming_the_id(tmp_path: Path, bad_target: str) -> None:
    header = "sample_id,catalog_content,image_link,price\n"
    path = write(tmp_path, f"{header}10,a,u,1.5\n987654,b,u,{bad_target}\n")
    with pytest.raises(ValueError, match="target price must be a finite number >= 0") as err:
        load_split(path, "amazon2025", "train")
    assert "987654" in str(err.value) and "10," not in str(err.value)
    assert "1 of 2 rows are not" in str(err.value)
    assert ("currency" in str(err.value)) == (bad_target == "abc")  # how to write a number: for text only


def test_prices_written_with_a_currency_sign_or_decimal_comma_are_shown_with_the_fix(tmp_path: Path) -> None:
    header = "sample_id,catalog_content,image_link,price\n"
    path = write(tmp_path, f'{header}10,a,u,$7.74\n11,b,u,"7,74"\n12,c,u,3.5\n')
    with pytest.raises(ValueError, match="2 of 3 rows are not") as err:
        load_split(path, "amazon2025", "train")
    assert "ids [10, 11] hold ['$7.74', '7,74']" in str(err.value) and "no currency sign" in str(err.value)


def test_small_train_file_loads_typed(tmp_path: Path) -> None:
    path = write(tmp_path, 'sample_id,catalog_content,image_link,price\n3,"two\nlines",,0\n1,NA,u,12\n')
    with pytest.warns(UserWarning, match=r"1 of 2 rows have price 0 \(ids \[3\]\)"):
        df = load_split(path, "amazon2025", "train")
    assert df["sample_id"].tolist() == ["3", "1"]  # ids as written: text, never converted
    assert df["price"].dtype == np.float64 and df["price"].tolist() == [0.0, 12.0]
    assert df["catalog_content"].tolist() == ["two\nlines", "NA"]  # literal text "NA" is text, not missing
    assert df["image_link"].tolist() == ["", "u"]


def test_ids_are_kept_exactly_as_written_even_beyond_int64(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_id,catalog_content,image_link\n99999999999999999999,a,u\n 12 ,b,u\n-3,c,u\n")
    df = load_split(path, "amazon2025", "test")
    assert df["sample_id"].tolist() == ["99999999999999999999", "12", "-3"]  # never wrapped to -2**63


def test_the_same_integer_written_twice_is_a_duplicate(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_id,catalog_content,image_link\n7,a,u\n007,b,u\n")
    with pytest.raises(ValueError, match=r"duplicate sample_id values \[7, 007\]"):
        load_split(path, "amazon2025", "test")


def test_id_messages_print_plain_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_id,catalog_content,image_link\n5,a,u\n5,b,u\n")
    with pytest.raises(ValueError) as err:
        load_split(path, "amazon2025", "test")
    assert "values [5]" in str(err.value)


def test_bad_id_line_number_counts_multiline_fields(tmp_path: Path) -> None:
    # the row with id 'abc' starts on line 5 of the file: the message names its value, not a line guess
    path = write(tmp_path, 'sample_id,catalog_content,image_link\n1,"Item Name: x\nValue: 2\nUnit: Count",u\n'
                           "abc,b,u\n")
    with pytest.raises(ValueError) as err:
        load_split(path, "amazon2025", "test")
    assert re.search(r"\b5\b", str(err.value).split("rows", 1)[1]) or "'abc'" in str(err.value)


# --------------------------------------------------------------------------------------------------
# Real rows
# --------------------------------------------------------------------------------------------------


def test_real_2023_dev_loads_as_train(shared_data: Path) -> None:
    path = real_file(shared_data, DEV_2023)
    df = load_split(path, "amazon2023", "train")
    raw = pd.read_csv(path)
    assert len(df) == 1716 == len(raw)
    assert list(df.columns) == list(SCHEMAS["amazon2023"].train_columns)
    assert df["PRODUCT_ID"].map(type).eq(str).all() and df["PRODUCT_ID"].is_unique
    assert (df["PRODUCT_ID"].to_numpy() == raw["PRODUCT_ID"].astype(str).to_numpy()).all()  # file order kept
    assert df["PRODUCT_LENGTH"].dtype == np.float64 and (df["PRODUCT_LENGTH"] >= 0).all()
    for col in ("TITLE", "BULLET_POINTS", "DESCRIPTION"):
        assert df[col].notna().all()
        assert (df[col] == "").sum() == raw[col].isna().sum()  # missing text -> ""
    assert (df["DESCRIPTION"] == "").sum() > 0
    text = row_text(df, "amazon2023")
    first = df.iloc[0]
    assert text.iloc[0] == f"{first['TITLE']} \n {first['BULLET_POINTS']} \n {first['DESCRIPTION']}"
    assert text.notna().all() and len(text) == 1716


def test_real_2025_sample_loads_as_test(shared_data: Path) -> None:
    path = real_file(shared_data, SAMPLE_2025)
    assert b"\r\n" in path.read_bytes()[:4096]  # the real file is CRLF
    df = load_split(path, "amazon2025", "test")
    assert len(df) == 100 and list(df.columns) == ["sample_id", "catalog_content", "image_link"]
    assert df["sample_id"].map(type).eq(str).all() and df["sample_id"].is_unique
    content = df["catalog_content"]
    assert content.str.contains("Value:").all()
    assert content.str.contains("\n").all()  # multi-line fields kept whole, not split into rows
    assert content.str.startswith("Item Name:").all()
    assert df["image_link"].str.startswith("http").all()
    assert row_text(df, "amazon2025").equals(content)


def test_real_2025_sample_refused_as_2023(shared_data: Path) -> None:
    path = real_file(shared_data, SAMPLE_2025)
    with pytest.raises(ValueError) as err:
        load_split(path, "amazon2023", "test")
    msg = str(err.value)
    assert "missing columns ['PRODUCT_ID', 'TITLE', 'BULLET_POINTS', 'DESCRIPTION', 'PRODUCT_TYPE_ID']" in msg
    assert "unexpected columns ['sample_id', 'catalog_content', 'image_link']" in msg
    assert "these are the columns of schema 'amazon2025': pass -p schema amazon2025" in msg


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_2023_file_read_with_the_default_schema_names_the_schema_it_fits(tmp_path: Path, split: str) -> None:
    header = "PRODUCT_ID,TITLE,BULLET_POINTS,DESCRIPTION,PRODUCT_TYPE_ID" + (",PRODUCT_LENGTH" if split == "train"
                                                                              else "")
    path = write(tmp_path, header + "\n1,a,b,c,5" + (",2.5\n" if split == "train" else "\n"))
    with pytest.raises(ValueError, match="these are the columns of schema 'amazon2023': pass -p schema amazon2023 "
                                         "in every notebook"):
        load_split(path, "amazon2025", split)


def test_every_schemas_text_layout_has_its_parser_and_model_text_format():
    """The editions are data: a schema names its text layout, and the text tables hold a row for each."""
    from amzkit.core.schema import SCHEMAS
    from amzkit.text.features import TEXT_LAYOUTS
    from amzkit.text.format import MODEL_TEXT_FORMATS

    for schema in SCHEMAS.values():
        assert schema.text_layout in TEXT_LAYOUTS and schema.text_layout in MODEL_TEXT_FORMATS
