"""Stacked text predictions fit inside the folds: what TF-IDF ridges say about a row's price, as feature columns.

The `ridge_oof` fold group. A tree model reads 64 SVD directions of the text; a ridge on the full sparse
TF-IDF reads every word and character n-gram, and its prediction is a strong single column for the trees
(the stacking of the strong public 2025 solutions, inside the folds). Three views:

- `ridge_text_log_price`: the `ridge_tfidf` learner's model (words 1-2 + characters 3-5 of the row text).
- `ridge_name_log_price`: characters 2-5 of the item name alone (brand, product line, size and pack words).
- `ridge_unit_log_price`: the row text (plus its unit family as indicators) predicting the price per unit,
  log1p(price) - log1p(total quantity) (text.quantity.total_quantity_log), plus the row's own log1p total
  again; NaN for rows without a known total, which the ridge does not train on.

Honest by construction: the vectorizers and ridges are fit on the training fold's rows only; a training row
reads the prediction of ridges fit on the other inner folds (grouped by product, so never its own label nor
a copy's), every other row (the fold's validation rows, test rows) the ridge fit on all training rows. The
n-grams of every text (train and test rows: counts read no label) are counted once, on the first fold's fit
(ml.tfidf_counts); each fold keeps the terms and idf of its training rows, as its own TfidfVectorizer would
(`shared_counts=False` fits those instead, analysing the texts again in every fold).

A view's six ridges (five inner folds + the final one) are independent: they run in threads, as many as the free
cores (core.threads; the 'sag' solver works without Python's lock), with the values of one thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge

from amzkit.core.threads import resolve_threads
from amzkit.ml.base import RunInputs
from amzkit.ml.folds import inner_folds
from amzkit.ml.learners import RidgeTfidf
from amzkit.ml.tfidf_counts import SharedTfidf, tfidf_parts
from amzkit.ml.transforms import FoldTransform
from amzkit.text.features import parsed_rows
from amzkit.text.quantity import total_quantity_log

SAG_ROWS = 20_000  # above this many training rows the ridge uses the 'sag' solver (as the ridge_tfidf learner)


def name_vectorizer() -> TfidfVectorizer:
    """Character 2-5 grams of an item name (within words), sublinear TF."""
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, dtype=np.float32)


def text_vectorizer():
    """The ridge_tfidf learner's vectorizer: words 1-2 + characters 3-5 of the row text."""
    return RidgeTfidf()._vectorizer()


@dataclass(frozen=True)
class RidgeView:
    """One ridge of the group: a text per row (train rows, then test rows) and its vectorizer; optional dense
    `extra` columns per row beside the TF-IDF (e.g. the unit family as indicators), and an optional `offset`
    per row (the ridge learns log1p(target) - offset and adds it back; rows with NaN offset get NaN). Views
    with the same texts object and vectorizer share one fitted vectorizer."""

    texts: Sequence[str]
    vectorizer: Callable
    extra: np.ndarray | None = None
    offset: np.ndarray | None = None


@dataclass(frozen=True)
class _RowVectorizer:
    """A fitted vectorizer that vectorizes rows of `texts`."""

    vectorizer: object
    texts: Sequence[str]

    def transform(self, rows: np.ndarray):
        return self.vectorizer.transform([self.texts[i] for i in rows])


class RidgeOofTransform(FoldTransform):
    """Ridge predictions of log1p(target) from TF-IDF views of the text, fit on the training fold (see module)."""

    def __init__(self, views: dict[str, RidgeView], alpha: float = 1.0, seed: int = 0,
                 groups: np.ndarray | None = None, inner_folds: int = 5, num_threads: int = 0,
                 shared_counts: bool = True):
        self.views, self.alpha, self.seed, self.groups, self.inner_folds = views, alpha, seed, groups, inner_folds
        self.num_threads = num_threads  # threads for a view's ridges; 0: the free cores (core.threads)
        self.shared_counts = shared_counts  # TF-IDF from n-gram counts made once for every fold (ml.tfidf_counts)
        self.shared_: dict[tuple, SharedTfidf] = {}  # kept across fits: 03 fits one transform on every fold
        self.names = list(views)

    def _ridge(self, n_rows: int) -> Ridge:
        return Ridge(alpha=self.alpha, solver="sag" if n_rows > SAG_ROWS else "auto", random_state=0)

    @staticmethod
    def _key(view: RidgeView) -> tuple:
        return id(view.texts), view.vectorizer

    def _matrix(self, view: RidgeView, rows: np.ndarray, vectorized: dict):
        """The view's inputs for `rows`: its TF-IDF (vectorized once per distinct texts + vectorizer) + extra."""
        key = self._key(view)
        if key not in vectorized:
            vectorized[key] = self.vectorizers_[key].transform(rows)
        matrix = vectorized[key]
        return matrix if view.extra is None else sparse.hstack([matrix, sparse.csr_matrix(view.extra[rows])]).tocsr()

    def fit(self, rows: np.ndarray, y: np.ndarray) -> RidgeOofTransform:
        rows = np.asarray(rows)
        n_total = len(next(iter(self.views.values())).texts)
        if self.groups is not None and len(self.groups) != n_total:
            raise ValueError(f"ridge_oof: groups has {len(self.groups)} labels for {n_total} rows")
        log_y = np.log1p(np.asarray(y, dtype=float))
        self.train_values_ = np.full((n_total, len(self.views)), np.nan, dtype=np.float32)
        self.is_train_ = np.zeros(n_total, dtype=bool)
        self.is_train_[rows] = True
        self.vectorizers_ = {}
        vectorized: dict = {}  # the training rows' TF-IDF, from fitting the vectorizer (not a second pass)
        for view in self.views.values():
            key = self._key(view)
            if key not in self.vectorizers_:
                fit = self._fit_vectorizer(view, rows)
                self.vectorizers_[key] = None if fit is None else fit[0]
                if fit is not None:  # None: no term left after min_df (a handful of rows, empty names): NaN column
                    vectorized[key] = fit[1]
                    vectorized[key].sort_indices()  # as transform's: the ridges sum in the same order
        threads = resolve_threads(self.num_threads)
        with ThreadPoolExecutor(threads) as pool:  # one thread: the fits one after another
            self.models_ = [self._fit_view(view, rows, log_y, column, vectorized, pool)
                            for column, view in enumerate(self.views.values())]
        return self

    def _fit_vectorizer(self, view: RidgeView, rows: np.ndarray) -> tuple | None:
        """The view's vectorizer fit on `rows` (an object whose transform(rows) vectorizes rows) and those rows'
        TF-IDF; None where its fit fails. With shared_counts, from the texts' n-grams counted on the first fit."""
        vectorizer = view.vectorizer()
        if self.shared_counts and tfidf_parts(vectorizer) is not None:
            key = self._key(view)
            if key not in self.shared_:
                self.shared_[key] = SharedTfidf(vectorizer, view.texts)
            return self.shared_[key].fit_transform(rows)
        try:
            matrix = vectorizer.fit_transform([view.texts[i] for i in rows])
        except ValueError:
            return None
        return _RowVectorizer(vectorizer, view.texts), matrix

    def _fit_view(self, view: RidgeView, rows: np.ndarray, log_y: np.ndarray, column: int, vectorized: dict,
                  pool) -> Ridge | None:
        """The ridge on all the view's training rows (None: no usable rows), after writing the inner-fold values;
        the inner ridges and the final one are fit in `pool`'s threads."""
        offset = self._offset(view)
        usable = np.isfinite(offset[rows])
        if self.vectorizers_[self._key(view)] is None or usable.sum() < 2:
            return None
        matrix = self._matrix(view, rows, vectorized)
        if not usable.all():
            matrix = matrix[usable]
        rows, target = rows[usable], log_y[usable] - offset[rows[usable]]
        inner = inner_folds(rows, self.inner_folds, self.seed, self.groups)

        def inner_fit(fold: int) -> None:
            held, kept = inner == fold, inner != fold
            if held.any() and kept.any():
                model = self._ridge(int(kept.sum())).fit(matrix[kept], target[kept])
                self.train_values_[rows[held], column] = model.predict(matrix[held]) + offset[rows[held]]

        final = pool.submit(lambda: self._ridge(len(rows)).fit(matrix, target))  # the longest: started first
        for job in [pool.submit(inner_fit, fold) for fold in range(self.inner_folds)]:
            job.result()
        return final.result()

    @staticmethod
    def _offset(view: RidgeView) -> np.ndarray:
        return np.zeros(len(view.texts)) if view.offset is None else np.asarray(view.offset, dtype=float)

    def transform(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        out = self.train_values_[rows].copy()
        fresh = ~self.is_train_[rows]
        if fresh.any():
            vectorized: dict = {}
            for column, (view, model) in enumerate(zip(self.views.values(), self.models_, strict=True)):
                if model is not None:
                    matrix = self._matrix(view, rows[fresh], vectorized)
                    out[fresh, column] = model.predict(matrix) + self._offset(view)[rows[fresh]]
        return out


def ridge_oof_transform(inputs: RunInputs) -> RidgeOofTransform:
    """The `ridge_oof` fold group of a run: the row-text, item-name and price-per-unit ridges (module docstring)."""
    parsed = parsed_rows(inputs.both, inputs.schema)
    family = parsed["unit_family"] if "unit_family" in parsed else pd.Series("", index=parsed.index)
    indicators = pd.get_dummies(family.astype(str)).to_numpy(dtype=np.float32)
    views = {"ridge_text_log_price": RidgeView(inputs.texts, text_vectorizer),
             "ridge_name_log_price": RidgeView(parsed["item_name"].fillna("").astype(str).tolist(), name_vectorizer),
             "ridge_unit_log_price": RidgeView(inputs.texts, text_vectorizer, indicators,
                                               total_quantity_log(parsed))}
    return RidgeOofTransform(views, seed=inputs.seed, groups=inputs.groups)
