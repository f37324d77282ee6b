"""Target encodings learnt inside the folds: what a brand or material costs, and the nearest twin's price.

- `VocabularyPriceTransform`: per token, the smoothed mean log1p(target) of the training-fold rows that carry
  it; a row gets the mean and max over its known tokens and the support of its best-supported token. The
  vocabulary (tokens in >= min_count training rows) and the means are learnt from training rows only;
  training rows read values from inner folds grouped by product, never their own label nor a copy's.
- `brand_price_transform`, `material_price_transform`: the `brand_price` and `material_price` fold groups.
- `TwinPriceTransform`: the nearest training twin's log1p price (TF-IDF cosine); a training row never reads
  its own label (nor, with `groups`, that of a copy of the same product).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from amzkit.core.schema import Schema, get_schema
from amzkit.ml.folds import inner_folds
from amzkit.ml.transforms import FoldTransform
from amzkit.text.names import product_groups
from amzkit.text.similarity import nearest_text, tfidf_rows
from amzkit.text.vocab import brand_tokens, material_tokens


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
    return product_groups(both, schema) if groups is None else np.asarray(groups)


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


# TF-IDF cosine from which a row's nearest train text is its twin: twin_price here, and 02's leak report
TWIN_THRESHOLD = 0.9


class TwinPriceTransform(FoldTransform):
    """log1p price of the nearest training twin by TF-IDF cosine (NaN below `threshold`), and that cosine.

    The TF-IDF is fit on the training fold. Training rows search the other training rows only: never
    themselves and, with `groups` (e.g. normalised product names), never a row of their own group. Other
    rows search all training rows.
    """

    def __init__(self, texts: list[str], threshold: float = TWIN_THRESHOLD, groups: np.ndarray | None = None):
        self.texts, self.threshold = texts, threshold
        self.groups = None if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
        if self.groups is not None and len(self.groups) != len(texts):
            raise ValueError(f"groups has {len(self.groups)} labels for {len(texts)} texts")
        self.names = ["twin_log_price", "twin_similarity"]

    def _features(self, index: np.ndarray, similarity: np.ndarray) -> np.ndarray:
        out = np.full((len(index), 2), np.nan, dtype=np.float32)
        out[:, 1] = similarity
        twin = (index >= 0) & (np.nan_to_num(similarity, nan=-1.0) >= self.threshold)
        out[twin, 0] = self.log_[index[twin]]
        return out

    def fit(self, rows: np.ndarray, y: np.ndarray) -> TwinPriceTransform:
        rows = np.asarray(rows)
        self.log_ = np.log1p(np.asarray(y, dtype=float))
        self.vectorizer_, self.reference_ = tfidf_rows([self.texts[i] for i in rows])
        if self.vectorizer_ is None:
            self.train_values_ = {r: np.full(2, np.nan, dtype=np.float32) for r in rows.tolist()}
            return self
        keys = rows if self.groups is None else self.groups[rows]
        index, similarity = nearest_text(self.reference_, self.reference_, keys, keys)
        self.train_values_ = dict(zip(rows.tolist(), self._features(index, similarity), strict=True))
        return self

    def transform(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        out = np.full((len(rows), 2), np.nan, dtype=np.float32)
        known = np.array([r in self.train_values_ for r in rows.tolist()], dtype=bool)
        if known.any():
            out[known] = np.stack([self.train_values_[r] for r in rows[known].tolist()])
        if (~known).any() and self.vectorizer_ is not None:
            queries = self.vectorizer_.transform([self.texts[i] for i in rows[~known]])
            out[~known] = self._features(*nearest_text(queries, self.reference_))
        return out
