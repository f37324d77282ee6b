"""Vocabulary price encodings for 03_train: what a brand or a material costs, learnt inside the folds.

- Token extractors: `brand_tokens` (the item name's first word and first two words, lower-cased) and
  `material_tokens` (the features.MATERIALS named in the text).
- `VocabularyPriceTransform`: per token, the smoothed mean log1p(target) of the training-fold rows that carry
  it; a row gets the mean and max over its known tokens and the support of its best-supported token. The
  vocabulary (tokens in >= min_count training rows) and the means are learnt from training rows only;
  training rows read values from inner folds grouped by product, never their own label nor a copy's.
- `brand_price_transform`, `material_price_transform`: the `brand_price` and `material_price` fold groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from amzkit.features import brand_words, item_names, materials_in
from amzkit.schema import Schema, get_schema, row_text
from amzkit.train import FoldTransform, inner_folds, product_names


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


class VocabularyPriceTransform(FoldTransform):
    """Smoothed mean log1p(target) per token, fit on the training fold; columns <prefix>_price_mean,
    <prefix>_price_max (over the row's known tokens) and <prefix>_price_support (training rows behind the row's
    best-supported known token). NaN when the row has no known token.

    A token's value is (sum of its rows' log1p(target) + smoothing x fold mean) / (its rows + smoothing).
    Training rows get values learnt on the other inner folds (rows of one `groups` label share an inner fold),
    so a row never reads its own label nor a copy's; other rows use every training row.
    """

    def __init__(self, prefix: str, tokens: Sequence[Sequence[str]], min_count: int = 3, smoothing: float = 10.0,
                 seed: int = 0, groups: np.ndarray | None = None, inner_folds: int = 5):
        self.prefix, self.tokens, self.min_count, self.smoothing = prefix, tokens, min_count, smoothing
        self.seed, self.groups, self.inner_folds = seed, groups, inner_folds
        self.names = [f"{prefix}_price_mean", f"{prefix}_price_max", f"{prefix}_price_support"]

    def _pairs(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(row, token code) per distinct token of each row, and the number of distinct tokens; built once."""
        if not hasattr(self, "pairs_"):
            rows = np.repeat(np.arange(len(self.tokens)), [len(t) for t in self.tokens])
            flat = pd.Series([token for row in self.tokens for token in row], dtype=object)
            codes, uniques = pd.factorize(flat)
            pairs = np.unique(np.column_stack([rows, codes]), axis=0)
            self.pairs_ = (pairs[:, 0], pairs[:, 1], len(uniques))
        return self.pairs_

    def _table(self, rows: np.ndarray, log_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(smoothed value, support) per token code from `rows`; value NaN for tokens under min_count."""
        pair_row, pair_token, n_tokens = self._pairs()
        target = np.full(len(self.tokens), np.nan)
        target[rows] = log_y
        used = np.isfinite(target[pair_row])
        support = np.bincount(pair_token[used], minlength=n_tokens)
        total = np.bincount(pair_token[used], weights=target[pair_row[used]], minlength=n_tokens)
        prior = float(np.mean(log_y)) if len(log_y) else np.nan
        value = (total + self.smoothing * prior) / (support + self.smoothing)
        value[support < max(self.min_count, 1)] = np.nan
        return value, support

    def _encode(self, rows: np.ndarray, value: np.ndarray, support: np.ndarray) -> np.ndarray:
        pair_row, pair_token, _ = self._pairs()
        position = np.full(len(self.tokens), -1)
        position[rows] = np.arange(len(rows))
        hit = (position[pair_row] >= 0) & np.isfinite(value[pair_token])
        where, token = position[pair_row[hit]], pair_token[hit]
        n = np.bincount(where, minlength=len(rows))
        out = np.full((len(rows), 3), np.nan)
        total = np.bincount(where, weights=value[token], minlength=len(rows))
        np.divide(total, n, out=out[:, 0], where=n > 0)
        best = np.full(len(rows), -np.inf)
        np.maximum.at(best, where, value[token])
        most = np.zeros(len(rows))
        np.maximum.at(most, where, support[token])
        out[n > 0, 1], out[n > 0, 2] = best[n > 0], most[n > 0]
        return out.astype(np.float32)

    def fit(self, rows: np.ndarray, y: np.ndarray) -> VocabularyPriceTransform:
        rows = np.asarray(rows)
        if self.groups is not None and len(self.groups) != len(self.tokens):
            raise ValueError(f"{self.prefix}: groups has {len(self.groups)} labels for {len(self.tokens)} rows")
        log_y = np.log1p(np.asarray(y, dtype=float))
        self.value_, self.support_ = self._table(rows, log_y)
        self.train_values_ = np.full((len(self.tokens), 3), np.nan, dtype=np.float32)
        self.is_train_ = np.zeros(len(self.tokens), dtype=bool)
        self.is_train_[rows] = True
        inner = inner_folds(rows, self.inner_folds, self.seed, self.groups)
        for fold in range(self.inner_folds):
            held, kept = inner == fold, inner != fold
            if held.any():
                self.train_values_[rows[held]] = self._encode(rows[held], *self._table(rows[kept], log_y[kept]))
        return self

    def transform(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        out = self.train_values_[rows].copy()
        fresh = ~self.is_train_[rows]
        if fresh.any():
            out[fresh] = self._encode(rows[fresh], self.value_, self.support_)
        return out


def _groups_for(both: pd.DataFrame, schema: Schema, groups: np.ndarray | None) -> np.ndarray:
    return product_names(both, schema).to_numpy() if groups is None else np.asarray(groups)


def brand_price_transform(both: pd.DataFrame, schema: str | Schema, seed: int = 0,
                          groups: np.ndarray | None = None) -> VocabularyPriceTransform:
    """The `brand_price` fold group: brand_price_mean/max/support from `both` (train rows first, then test).

    `groups` (one label per row; default: normalised product names) keeps copies of a product in one inner fold.
    """
    schema = get_schema(schema)
    return VocabularyPriceTransform("brand", brand_tokens(both, schema), seed=seed,
                                    groups=_groups_for(both, schema, groups))


def material_price_transform(both: pd.DataFrame, schema: str | Schema, seed: int = 0,
                             groups: np.ndarray | None = None) -> VocabularyPriceTransform:
    """The `material_price` fold group: material_price_mean/max/support from `both` (train rows first, then test)."""
    schema = get_schema(schema)
    return VocabularyPriceTransform("material", material_tokens(both, schema), seed=seed,
                                    groups=_groups_for(both, schema, groups))
