"""Competition schemas as data, and a CSV loader that refuses files that do not fit them."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.io import id_keys, read_csv, show_ids

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
    leaderboard_metric: str  # what the competition's leaderboard shows (amzkit lb records it)
    text_layout: str  # how its text columns read as fields (item name, ...): a key of text.features.TEXT_LAYOUTS
    zero_predictions: bool = False  # the metric scores a prediction of 0 (2023's MAPE divides by the actual only)

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
        leaderboard_metric="smape",
        text_layout="catalog",
    ),
    "amazon2023": Schema(
        name="amazon2023",
        id_column="PRODUCT_ID",
        target="PRODUCT_LENGTH",
        text_columns=("TITLE", "BULLET_POINTS", "DESCRIPTION"),
        image_column=None,
        category_columns=("PRODUCT_TYPE_ID",),
        metric="smape",
        report_metrics=("smape", "score2023", "mape"),
        leaderboard_metric="score2023",
        text_layout="title_bullets_description",
        zero_predictions=True,
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
    repeated = sorted({match.group(1) for column in extra if (match := re.fullmatch(r"(.+)\.\d+", column))
                       and match.group(1) in columns})  # pandas reads a second 'price' as 'price.1'
    if repeated:
        raise ValueError(f"{source}: column {', '.join(map(repr, repeated))} appears more than once in the header: "
                         "keep one of each (two columns of one name cannot both be the one the kit reads)")
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if extra:
            parts.append(f"unexpected columns {extra}")
        hint, fix = "", ""
        if split == "test" and extra == [schema.target] and not missing:
            hint = (f" (the test CSV must not have the target: drop column {schema.target!r} from it, or check that "
                    "it is not the train file)")
        elif split == "train" and missing == [schema.target] and not extra:
            hint = " (is this the test file?)"
        elif missing == [schema.image_column] and not extra:  # a text-only file: the schema still has the column
            hint = " (a file without pictures)"
            fix = (f"add an empty {schema.image_column!r} column, e.g. df.assign({schema.image_column}='')"
                   ".to_csv(path, index=False), and run 01 text only with -p model \"\".")
        fix = fix or column_fix(columns, expected, missing)
        fits = [other.name for other in SCHEMAS.values() if other.name != schema.name and set(columns) == set(
            other.train_columns if split == "train" else other.test_columns)]
        if not fix and fits:  # the file is right, the schema is not (the default is amazon2025)
            fix = (f"these are the columns of schema {fits[0]!r}: pass -p schema {fits[0]} in every notebook "
                   f"(--schema {fits[0]} for `python -m amzkit validate`).")
        if not fix:
            fix = (f"pick the right file or the schema ({' / '.join(SCHEMAS)}: -p schema in a notebook, --schema "
                   "for `python -m amzkit validate`).")
        raise ValueError(
            f"{source} does not fit schema {schema.name!r} ({split}): {'; '.join(parts)}{hint}. "
            f"Expected exactly {list(expected)}; {fix}"
        )


SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}  # separators a spreadsheet may save with, as messages name them
PANDAS_INDEX = "Unnamed: 0"  # the name pandas gives the unnamed first column that to_csv(index=True) writes


def column_fix(columns: list[str], expected: tuple[str, ...], missing: list[str]) -> str:
    """How to fix two column mistakes that have a known cause (another separator, a saved pandas index), or ""."""
    if len(missing) == len(expected):
        for sep, name in SEPARATORS.items():
            names = {part.strip() for column in columns for part in str(column).split(sep)}
            if any(sep in str(column) for column in columns) and names & set(expected):
                return (f"the file seems to use {name} as separator, and the kit reads comma-separated CSV "
                        "(Kaggle's format): re-save it with commas (e.g. pd.read_csv(path, "
                        f"sep={sep!r}).to_csv(path, index=False)).")
    if columns and columns[0] in (PANDAS_INDEX, ""):  # as pandas reads it, and as the file's header has it
        return (f"the unnamed first column ({PANDAS_INDEX!r} to pandas) looks like a saved pandas index: save it with "
                "df.to_csv(path, index=False), or drop that column (pd.read_csv(path, index_col=0).to_csv(path, "
                "index=False) does both).")
    written = {str(column).strip().lower(): str(column) for column in columns}  # 'sample_id, price', 'Price'
    if missing and all(name.lower() in written for name in missing):
        pairs = ", ".join(f"{written[name.lower()]!r} as {name!r}" for name in missing)
        spaced = any(written[name.lower()] != written[name.lower()].strip() for name in missing)
        return (f"the header's names differ from the schema's only in spaces or letter case: rename {pairs} in the "
                "header line" + (" (no space after the commas)." if spaced else "."))
    return ""


def _first(values, n: int = 5) -> list:
    """The first few values as plain Python objects, for error messages."""
    return np.asarray(values)[:n].tolist()


ID_TEXT = re.compile(r"[+-]?[0-9]+")  # an integer id as written; kept as text, never rounded or wrapped
ZERO_TARGET_SHARE = 0.0  # warn when more than this share of train rows have target 0 (SMAPE 200 on each)
HUGE_TARGET_RATIO = 1000.0  # warn about targets above this many times the median
FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # a number as pandas writes floats
AFFIXED_ID = re.compile(r"[^\W\d]+[_-]?[0-9]+|[0-9]+[_-]?[^\W\d]+")  # 'S217392', 'id_42', '42a': letters + digits


def _id_fix(bad: list[str], schema: Schema) -> str:
    """What to do about ids that are not integers, by what they look like: floats, a prefix or suffix, empty."""
    col, fixes = schema.id_column, []
    floats = [v for v in bad if _integer_float(v)]
    if floats:
        fixes.append(f"Ids such as {floats[0]!r} look like integers written as floats (e.g. by pandas after a NaN "
                     f"made the column float): write them as integers (e.g. df[{col!r}].astype('Int64') before "
                     "to_csv)")
    affixed = [v for v in bad if AFFIXED_ID.fullmatch(v)]
    if affixed:
        fixes.append(f"Ids such as {affixed[0]!r} carry letters around the number, but schema {schema.name!r} "
                     f"expects the competition's integer ids: strip the prefix or suffix (e.g. "
                     f"df[{col!r}].str.extract(r'([0-9]+)')[0]) or use the competition's original file")
    if "" in bad:
        fixes.append("A row without an id: fill in its id or drop the row")
    if len(floats) + len(affixed) + bad.count("") < len(bad):
        fixes.append(f"Schema {schema.name!r} expects an integer id in every row, as in the competition's files: "
                     f"fix those rows, or check that {col!r} is the id column of this file")
    return ". ".join(fixes) + "."


def _integer_float(text: str) -> bool:
    """True for an integer written as a float: '217392.0', '2.17392e+05'."""
    return bool(FLOAT_TEXT.fullmatch(text)) and not ID_TEXT.fullmatch(text) and float(text).is_integer()


def _category_text(value: str) -> str:
    """A category cell as text: stripped, an integer written as a float ('123.0') as its digits."""
    text = value.strip()
    return str(int(float(text))) if _integer_float(text) else text


def load_split(path: str | Path, schema: str | Schema, split: str) -> pd.DataFrame:
    """Read a train or test CSV, checking columns, ids, text and (for train) the target.

    Text columns come back as str with missing text as "" and line ends as "\\n" (CRLF and lone CR converted, so
    a file saved on Windows gives the same features), category columns as text (missing: NaN; '123.0' as '123',
    so train's and test's categories match whatever pandas made of either file), ids as the text written in the
    file (integer ids of any size, whitespace stripped: never converted, so a submission carries them exactly),
    rows in file order, columns in the schema's order.
    """
    schema = get_schema(schema)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    path = Path(path)
    what = f"{split} CSV"
    header = read_csv(path, what, nrows=0)
    check_columns(list(header.columns), schema, split, str(path))
    text_like = [*schema.text_columns, *((schema.image_column,) if schema.image_column else ())]
    # category columns as text too: one empty cell made pandas read a whole column as floats ('123.0'), which
    # then matched no category of the other file ('123')
    as_text = [*text_like, *schema.category_columns]
    df = read_csv(path, what, dtype={**{c: str for c in as_text}, schema.id_column: str, schema.target: str},
                  keep_default_na=False, na_values={schema.target: ["", "NaN", "nan"],
                                                    **{c: [""] for c in schema.category_columns}})
    if not isinstance(df.index, pd.RangeIndex):
        raise ValueError(f"{path}: the rows have more fields than the header (a trailing comma on each row?): "
                         "remove the extra commas or add the missing column names")
    if df.empty:
        raise ValueError(f"{path} has a header but no rows: point to the file with the {split} rows")
    ids = df[schema.id_column].fillna("").astype(str).str.strip()
    _refuse_merged_rows(df, ids, as_text, path)
    bad = np.flatnonzero(~ids.str.fullmatch(ID_TEXT.pattern).to_numpy())
    if bad.size:
        raise ValueError(f"{path}: column {schema.id_column} must hold integer ids; data rows {_first(bad + 1)} "
                         f"(1 = first row after the header) hold {_first(ids.to_numpy()[bad])}. "
                         + _id_fix(ids.to_numpy()[bad].tolist(), schema))
    df[schema.id_column] = ids.to_numpy(dtype=object)
    keys = pd.Series(id_keys(ids), index=df.index)
    dup = ids[keys.duplicated(keep=False)].unique()
    if dup.size:
        raise ValueError(f"{path}: duplicate {schema.id_column} values {show_ids(dup)}; ids must be unique")
    for column in text_like:
        df[column] = df[column].fillna("")
    for column in schema.category_columns:  # '123', ' 123' and '123.0' (a file re-saved by pandas) are one category
        df[column] = df[column].map(_category_text, na_action="ignore")
    for column in schema.text_columns:  # CRLF and lone CR as LF: a Windows-saved file gives the same text features
        df[column] = df[column].str.replace("\r\n", "\n", regex=False).str.replace("\r", "\n", regex=False)
    empty = (row_text(df, schema).str.strip() == "").to_numpy()
    if empty.all():
        raise ValueError(f"{path}: the text columns {list(schema.text_columns)} are empty in every row; the text "
                         f"features and text models need them: check the file (is it the {split} file of "
                         f"schema {schema.name!r}?)")
    if empty.any():
        _warn_about_empty_text(df, schema, path, split, empty)
    if split == "train":
        target = pd.to_numeric(df[schema.target], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(target.to_numpy(dtype=float)) | (target.to_numpy() < 0))
        if bad.size:
            written = df[schema.target].to_numpy(dtype=object)[bad]
            as_text = any(isinstance(v, str) and re.search(r"[^\d.eE+-]", v.strip()) and v.strip().lower() not in
                          ("nan", "na", "inf", "-inf", "") for v in written)  # '$7.74', '7,74', '7.74 USD'
            raise ValueError(
                f"{path}: target {schema.target} must be a finite number >= 0; {bad.size} of {len(df)} rows are not: "
                f"ids {show_ids(df[schema.id_column].to_numpy()[bad])} hold {show_ids([repr(v) for v in written])} "
                "(drop or fix those rows" + ("; write plain numbers such as 7.74: no currency sign, no thousands "
                                             "separator, '.' before the decimals)" if as_text else ")")
            )
        df[schema.target] = target.astype("float64")
        _warn_about_target(df, schema, path)
    # columns in the schema's order whatever the file's: a re-saved CSV with its columns moved is the same data
    # (the row digests that 05 checks hash the columns in frame order)
    expected = schema.train_columns if split == "train" else schema.test_columns
    return df[list(expected)].reset_index(drop=True)


# a line inside a cell that opens like a row: an integer and a comma, then neither a digit ('1,000') nor a space
# ('12, 24 or 36'), as prose would have it. A literal '\n' first lets re skip to each line end (10x faster than a
# character class: about 0.07 s per 100 MB of text)
ROW_START = re.compile(r"\n([+-]?[0-9]+),(?![0-9\s])")


def _row_starts(cell: str) -> list[str]:
    """The ids of the lines inside `cell` that open like a row of the CSV (CRLF and lone CR line ends too)."""
    return ROW_START.findall(cell.replace("\r", "\n") if "\r" in cell else cell)


def _refuse_merged_rows(df: pd.DataFrame, ids: pd.Series, columns: list[str], path: Path) -> None:
    """Refuse a file where a stray quote merged rows: a quote opening a field and closed only in a later row makes
    pandas read one text spanning those rows, without an error. Such a cell holds lines that start like a row (an
    integer id and a comma) whose id no row of the file has; real multi-line text is left alone."""
    known = None
    for column in columns:
        for row, cell in enumerate(df[column].fillna("").astype(str)):
            starts = _row_starts(cell) if "\n" in cell or "\r" in cell else []
            if not starts:
                continue
            if known is None:  # only for a file with such lines
                known = set(id_keys(ids[ids.str.fullmatch(ID_TEXT.pattern)]))
            lost = [start for start in starts if id_keys([start])[0] not in known]
            if lost:
                raise ValueError(
                    f"{path}: the {column} cell of data row {row + 1} (1 = first row after the header; id "
                    f"{ids.iat[row]!r}) holds lines that start like rows of the file, with ids {show_ids(lost)} that "
                    "no row has: a quote (\") opens this field and only a later row closes it (a stray quote at its "
                    "start, or its closing quote missing), so pandas read those rows as one text and they would be "
                    "lost. Fix that row's quotes: a field that starts with a quote ends with one, and a quote inside "
                    "quoted text is written twice (\"\")")


def _warn_about_empty_text(df: pd.DataFrame, schema: Schema, path: Path, split: str, empty: np.ndarray) -> None:
    """Warn (not refuse) about rows whose text is empty: only the other columns speak for them."""
    others = [c for c in schema.test_columns if c != schema.id_column and c not in schema.text_columns]
    blank = df.loc[empty, others].fillna("").astype(str).apply(lambda column: column.str.strip().eq(""))
    bare = int(blank.all(axis=1).sum()) if others else int(empty.sum())  # nothing at all to go on
    todo = ("fill in their text, or drop those rows" if split == "train" else
            "fill in their text if the source has it (test rows cannot be dropped: the submission needs every id)")
    nothing = (f"; {bare} of them have nothing in {others} either: they get about the median" if bare and others
               else "; they get about the median" if bare else "")
    warnings.warn(f"{path}: {int(empty.sum())} of {len(df)} {split} rows have no text in {list(schema.text_columns)} "
                  f"(ids {show_ids(df[schema.id_column].to_numpy()[empty])}): they are predicted from nothing but "
                  f"the other columns {others}, so the text features and text models see nothing of them{nothing}; "
                  f"{todo}", UserWarning, stacklevel=3)


def _warn_about_target(df: pd.DataFrame, schema: Schema, path: Path) -> None:
    """Warn (not refuse) about targets that SMAPE cannot score sensibly: zeros and values far above the median."""
    target, ids = df[schema.target].to_numpy(), df[schema.id_column].to_numpy()
    zero = target == 0
    if zero.mean() > ZERO_TARGET_SHARE:
        warnings.warn(f"{path}: {int(zero.sum())} of {len(target)} rows have {schema.target} 0 "
                      f"(ids {show_ids(ids[zero])}): SMAPE scores each of them 200 whatever is predicted; drop "
                      "them unless the test set has such rows too", UserWarning, stacklevel=3)
    median = float(np.median(target))
    huge = target > HUGE_TARGET_RATIO * median if median > 0 else np.zeros(len(target), dtype=bool)
    if huge.any():
        values = ", ".join(f"{v:g}" for v in target[huge][:5])
        warnings.warn(f"{path}: {int(huge.sum())} rows have {schema.target} above {HUGE_TARGET_RATIO:g} x the median "
                      f"{median:g} (ids {show_ids(ids[huge])}, values [{values}]): check their units or decimal "
                      "separators", UserWarning, stacklevel=3)


def load_data(data_dir: str | Path, schema: str | Schema) -> dict[str, pd.DataFrame]:
    """Both splits of a competition folder (train.csv, test.csv), checked against the schema; an id in both
    splits is refused (runs, blends and submissions align rows by id)."""
    data_dir = Path(data_dir)
    data = {split: load_split(data_dir / f"{split}.csv", schema, split) for split in SPLITS}
    id_column = get_schema(schema).id_column
    shared = np.intersect1d(id_keys(data["train"][id_column]).astype(str), id_keys(data["test"][id_column]).astype(str))
    if shared.size:
        raise ValueError(f"{data_dir}: {shared.size} {id_column} values are in both train.csv and test.csv (first "
                         f"{show_ids(shared)}); ids must identify one row across both files: renumber the test rows")
    return data


def row_text(df: pd.DataFrame, schema: str | Schema) -> pd.Series:
    """One text per row: the schema's text columns joined, for text models and TF-IDF."""
    schema = get_schema(schema)
    cols = [df[c].fillna("").astype(str) for c in schema.text_columns]
    text = cols[0]
    for col in cols[1:]:
        text = text.str.cat(col, sep=" \n ")
    return text
