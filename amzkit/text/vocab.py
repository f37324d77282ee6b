"""Vocabulary tokens per row: brand candidates and named materials (their in-fold prices: ml.encodings)."""

from __future__ import annotations

import pandas as pd

from amzkit.core.schema import Schema, get_schema, row_text
from amzkit.text.features import brand_words, item_names, materials_in


def brand_tokens(frame: pd.DataFrame, schema: str | Schema) -> list[list[str]]:
    """Brand candidates per row: the item name's first word and first two words (stop words skipped), lower-cased."""
    tokens = []
    for name in item_names(frame, get_schema(schema)):
        words = brand_words(name, 2)
        tokens.append([" ".join(words[:n]) for n in range(1, len(words) + 1)])
    return tokens


def material_tokens(frame: pd.DataFrame, schema: str | Schema) -> list[list[str]]:
    """The materials (features.MATERIALS keys) named anywhere in each row's text."""
    return [materials_in(text) for text in row_text(frame, get_schema(schema))]
