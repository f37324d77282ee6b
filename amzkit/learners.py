"""More learners for 03_train's folds: each writes a run like LightGBM's, so 04_ensemble can blend them.

A learner is a scikit-learn-style object (constructor stores params) with `fit(train_rows, y)` and
`predict(rows)` over the stacked train+test inputs it was built on; `learner_run` cross-validates it on the
shared folds and writes the run folder and runs-log row.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.schema import get_schema, row_text
from amzkit.train import save_run, shared_folds


class RidgeTfidf:
    """Ridge regression of log1p(target) on TF-IDF word 1-2 grams (+ char 3-5 grams), fit per training fold."""

    def __init__(self, texts: list[str], alpha: float = 1.0, max_features: int = 200_000, char_ngrams: bool = True):
        self.texts = texts
        self.alpha = alpha
        self.max_features = max_features
        self.char_ngrams = char_ngrams

    def _vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=self.max_features, sublinear_tf=True,
                                strip_accents="unicode", dtype=np.float32)
        if not self.char_ngrams:
            return words
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, max_features=self.max_features,
                                sublinear_tf=True, dtype=np.float32)
        return FeatureUnion([("words", words), ("chars", chars)])

    def fit(self, rows: np.ndarray, y: np.ndarray) -> RidgeTfidf:
        from sklearn.linear_model import Ridge

        self.vectorizer_ = self._vectorizer().fit([self.texts[i] for i in rows])
        matrix = self.vectorizer_.transform([self.texts[i] for i in rows])
        self.model_ = Ridge(alpha=self.alpha, solver="sag" if matrix.shape[0] > 20_000 else "auto",
                            random_state=0).fit(matrix, np.log1p(y))
        return self

    def predict(self, rows: np.ndarray) -> np.ndarray:
        matrix = self.vectorizer_.transform([self.texts[i] for i in rows])
        return np.maximum(np.expm1(self.model_.predict(matrix)), 1e-3)


def cross_validate_learner(learner, y: np.ndarray, folds: np.ndarray, n_test: int) -> dict:
    """OOF and test predictions (geometric mean over folds) of a row-indexed learner."""
    from tqdm.auto import tqdm

    n_train = len(y)
    test_rows = np.arange(n_train, n_train + n_test)
    oof = np.full(n_train, np.nan)
    test_log = np.zeros(n_test)
    fold_ids = np.unique(folds)
    for fold in tqdm(fold_ids, desc="folds"):
        train_rows, valid_rows = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        learner.fit(train_rows, y[train_rows])
        oof[valid_rows] = learner.predict(valid_rows)
        test_log += np.log(learner.predict(test_rows)) / len(fold_ids)
    return {"oof": oof, "test": np.exp(test_log)}


LEARNERS = {"ridge_tfidf": RidgeTfidf}


def learner_run(data: dict[str, pd.DataFrame], schema: str, work_dir: str | Path, run_name: str,
                learner: str = "ridge_tfidf", n_folds: int = 5, seed: int = 42, fold_strategy: str = "stratified",
                **params) -> dict:
    """Cross-validate a registered learner on the work folder's shared folds and write its run."""
    schema_ = get_schema(schema)
    if learner not in LEARNERS:
        raise ValueError(f"unknown learner {learner!r}; choose from {sorted(LEARNERS)}")
    started = time.perf_counter()
    train, test = data["train"], data["test"]
    y = train[schema_.target].to_numpy(dtype=float)
    folds = shared_folds(work_dir, train, schema_, n_folds, seed, fold_strategy)
    texts = pd.concat([row_text(train, schema_), row_text(test, schema_)]).tolist()
    result = cross_validate_learner(LEARNERS[learner](texts, **params), y, folds, len(test))
    info = {"learner": learner, "features": ["text"], "embeddings": [], "fold_strategy": fold_strategy,
            "params": params, "seconds": round(time.perf_counter() - started, 2)}
    return save_run(work_dir, run_name, schema_, train, test, folds, result["oof"], result["test"], info)
