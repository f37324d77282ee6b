"""Competition schemas as data, and a CSV loader that refuses files that do not fit them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Schema:
    """One competition edition: its columns, target, metric and submission format."""

    name: str
    id_column: str
    target: str
    text_columns: tuple[str, ...]
    image_column: str | None
    category_columns: tuple[str, ...]
    metric: str  # key of amzkit.metric.METRICS used to rank models
    report_metrics: tuple[str, ...]  # every metric printed for this edition

    @property
    def test_columns(self) -> tuple[str, ...]:
        cols = (self.id_column, *self.text_columns, *self.category_columns)
        return cols + ((self.image_column,) if self.image_column else ())

    @property
    def train_columns(self) -> tuple[str, ...]:
        return (*self.test_columns, self.target)

    @property
    def submission_columns(self) -> tuple[str, str]:
        return (self.id_column, self.target)


SCHEMAS: dict[str, Schema] = {
    "amazon2025": Schema(
        name="amazon2025",
        id_column="sample_id",
        target="price",
        text_columns=("catalog_content",),
        image_column="image_link",
        category_columns=(),
        metric="smape",
        report_metrics=("smape",),
    ),
    "amazon2023": Schema(
        name="amazon2023",
        id_column="PRODUCT_ID",
        target="PRODUCT_LENGTH",
        text_columns=("TITLE", "BULLET_POINTS", "DESCRIPTION"),
        image_column=None,
        category_columns=("PRODUCT_TYPE_ID",),
        metric="smape",
        report_metrics=("smape", "score2023"),
    ),
}


def get_schema(name: str | Schema) -> Schema:
    """The schema called `name`; an unknown name is an error that lists the known ones."""
    if isinstance(name, Schema):
        return name
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ValueError(f"unknown schema {name!r}; choose one of {sorted(SCHEMAS)}") from None


def check_columns(columns: list[str], schema: Schema, split: str, source: str) -> None:
    """Raise when `columns` differ from what `schema` expects for `split` ('train' or 'test')."""
    expected = schema.train_columns if split == "train" else schema.test_columns
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if extra:
            parts.append(f"unexpected columns {extra}")
        hint = ""
        if split == "test" and extra == [schema.target] and not missing:
            hint = " (is this the train file?)"
        elif split == "train" and missing == [schema.target] and not extra:
            hint = " (is this the test file?)"
        raise ValueError(
            f"{source} does not fit schema {schema.name!r} ({split}): {'; '.join(parts)}{hint}. "
            f"Expected exactly {list(expected)}; pick the right file or -p schema "
            f"({' / '.join(SCHEMAS)})."
        )


def _first(values, n: int = 5) -> list:
    """The first few values as plain Python objects, for error messages."""
    return np.asarray(values)[:n].tolist()


def load_split(path: str | Path, schema: str | Schema, split: str) -> pd.DataFrame:
    """Read a train or test CSV, checking columns, ids and (for train) the target.

    Text columns come back as str with missing text as "", ids as int64, rows in file order.
    """
    schema = get_schema(schema)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{split} CSV not found: {path}")
    header = pd.read_csv(path, nrows=0)
    check_columns(list(header.columns), schema, split, str(path))
    text_like = [*schema.text_columns, *((schema.image_column,) if schema.image_column else ())]
    df = pd.read_csv(path, dtype={c: str for c in text_like}, keep_default_na=False, na_values={
        schema.id_column: [""], schema.target: ["", "NaN", "nan"],
        **{c: [""] for c in schema.category_columns}})
    if df.empty:
        raise ValueError(f"{path} has no rows")
    ids = pd.to_numeric(df[schema.id_column], errors="coerce")
    bad = np.flatnonzero(ids.isna().to_numpy() | (ids.to_numpy() % 1 != 0))
    if bad.size:
        raise ValueError(f"{path}: column {schema.id_column} must hold integer ids; data rows {_first(bad + 1)} "
                         f"(1 = first row after the header) hold {_first(df[schema.id_column].to_numpy()[bad])}")
    df[schema.id_column] = ids.astype("int64")
    dup = df[schema.id_column][df[schema.id_column].duplicated()].unique()
    if dup.size:
        raise ValueError(f"{path}: duplicate {schema.id_column} values {_first(dup)}; ids must be unique")
    if split == "train":
        target = pd.to_numeric(df[schema.target], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(target.to_numpy(dtype=float)) | (target.to_numpy() < 0))
        if bad.size:
            raise ValueError(
                f"{path}: target {schema.target} must be a finite number >= 0; ids "
                f"{_first(df[schema.id_column].to_numpy()[bad])} are not (drop or fix those rows)"
            )
        df[schema.target] = target.astype("float64")
    return df.reset_index(drop=True)


def load_data(data_dir: str | Path, schema: str | Schema) -> dict[str, pd.DataFrame]:
    """Both splits of a competition folder (train.csv, test.csv), checked against the schema."""
    data_dir = Path(data_dir)
    return {split: load_split(data_dir / f"{split}.csv", schema, split) for split in SPLITS}


def row_text(df: pd.DataFrame, schema: str | Schema) -> pd.Series:
    """One text per row: the schema's text columns joined, for text models and TF-IDF."""
    schema = get_schema(schema)
    cols = [df[c].fillna("").astype(str) for c in schema.text_columns]
    text = cols[0]
    for col in cols[1:]:
        text = text.str.cat(col, sep=" \n ")
    return text
