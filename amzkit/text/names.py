"""Product names: the normalised item name that copies of one product listed twice share."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from amzkit.core.schema import Schema, row_text
from amzkit.text.features import item_names


def normalized_name(text: str) -> str:
    """Lower-case words and numbers only: copies of one product listed twice share it."""
    return " ".join(re.findall(r"[a-z0-9]+", str(text).lower().replace("&", " and ")))


def product_names(train: pd.DataFrame, schema: Schema) -> pd.Series:
    """The item name per row (2025: parsed from catalog_content; 2023: TITLE), normalised."""
    return item_names(train, schema).map(normalized_name)


def product_groups(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """A group per row for folds and holdouts: its product name; a row without a name is grouped by its whole
    text instead (rows without names are not copies of one product: as one group they filled a fold of their own;
    copies of one unnamed listing still share one), and a row without any text is a group of its own."""
    names = product_names(frame, schema).to_numpy(dtype=object)
    unnamed = np.flatnonzero(names == "")
    if len(unnamed):
        texts = row_text(frame.iloc[unnamed], schema).map(normalized_name).to_numpy()
        names[unnamed] = [f"\x00text {text}" if text else f"\x00unnamed row {row}"
                          for row, text in zip(unnamed, texts, strict=True)]
    return names
