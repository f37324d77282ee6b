"""More learners for 03_train's folds: each writes a run like LightGBM's, so 04_ensemble can blend them.

A learner is a scikit-learn-style object (constructor stores params) with `fit(train_rows, y)` and
`predict(rows)` over the stacked train+test inputs it was built on, and a classmethod
`from_data(data, schema, work_dir, seed, **params)` that builds those inputs. `learner_run` cross-validates
it on the work folder's shared folds and writes the run folder and runs-log row.

| name          | inputs                                   | needs              |
|---------------|------------------------------------------|--------------------|
| `ridge_tfidf` | row text: TF-IDF words 1-2 + chars 3-5   |                    |
| `knn`         | an 01_extract embedding run (cosine)     |                    |
| `xgboost`     | the FeatureSet LightGBM uses             | `pip install xgboost` |
| `catboost`    | the FeatureSet LightGBM uses             | `pip install catboost` |
"""

from __future__ import annotations

import importlib.util
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.correlate import KNN_BLOCK_ROWS, _unit_rows
from amzkit.schema import Schema, get_schema, row_text
from amzkit.train import MIN_PREDICTION, FeatureSet, assemble_features, save_run, shared_folds

DEFAULT_FEATURES = ("quantity", "text_stats", "keywords", "brand", "tfidf")


class RidgeTfidf:
    """Ridge regression of log1p(target) on TF-IDF word 1-2 grams (+ char 3-5 grams), fit per training fold."""

    def __init__(self, texts: list[str], alpha: float = 1.0, max_features: int = 200_000, char_ngrams: bool = True):
        self.texts = texts
        self.alpha = alpha
        self.max_features = max_features
        self.char_ngrams = char_ngrams

    @classmethod
    def from_data(cls, data: dict[str, pd.DataFrame], schema: Schema, work_dir: str | Path, seed: int = 0,
                  **params) -> tuple[RidgeTfidf, dict]:
        texts = pd.concat([row_text(data["train"], schema), row_text(data["test"], schema)]).tolist()
        return cls(texts, **params), {"features": ["text"], "embeddings": []}

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
        return np.maximum(np.expm1(self.model_.predict(matrix)), MIN_PREDICTION)


class KnnEmbedding:
    """Cosine kNN regression on an embedding: the mean log1p target of the k nearest training rows.

    Columns are standardised on the training rows (as 02_correlate's probe does). Rows without an
    embedding (NaN, or ok False) neither serve as neighbours nor get one: they take the training median.
    """

    def __init__(self, matrix: np.ndarray, k: int = 20, ok: np.ndarray | None = None,
                 block_rows: int = KNN_BLOCK_ROWS):
        self.matrix = matrix
        self.k = k
        self.ok = ok
        self.block_rows = block_rows

    @classmethod
    def from_data(cls, data: dict[str, pd.DataFrame], schema: Schema, work_dir: str | Path, seed: int = 0,
                  embedding: str = "", k: int = 20) -> tuple[KnnEmbedding, dict]:
        from amzkit.extract import load_embeddings

        if not embedding:
            raise ValueError("the knn learner needs embedding='<01_extract run>' (e.g. 'minilm' or 'tfidf-svd')")
        parts = [load_embeddings(work_dir, embedding, split, data[split][schema.id_column])
                 for split in ("train", "test")]
        matrix, ok = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return cls(matrix, k=k, ok=ok), {"features": [], "embeddings": [embedding], "k": k}

    def _usable(self, rows: np.ndarray) -> np.ndarray:
        usable = np.isfinite(self.matrix[rows]).all(axis=1)
        return usable if self.ok is None else usable & np.asarray(self.ok[rows], dtype=bool)

    def fit(self, rows: np.ndarray, y: np.ndarray) -> KnnEmbedding:
        y_log = np.log1p(np.asarray(y, dtype=np.float64))
        self.fallback_ = float(np.median(y_log))
        usable = self._usable(rows)
        if not usable.any():
            raise ValueError("the knn learner found no training row with an embedding")
        x = self.matrix[rows[usable]]
        self.mean_ = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        scale = x.std(axis=0, dtype=np.float64).astype(np.float32)
        scale[scale == 0] = 1.0
        self.scale_ = scale
        self.reference_ = _unit_rows((x - self.mean_) / self.scale_)
        self.y_log_ = y_log[usable]
        return self

    def predict(self, rows: np.ndarray) -> np.ndarray:
        out = np.full(len(rows), self.fallback_)
        query = np.flatnonzero(self._usable(rows))
        k = min(self.k, len(self.y_log_))
        for start in range(0, len(query), self.block_rows):
            block = query[start:start + self.block_rows]
            similarity = _unit_rows((self.matrix[rows[block]] - self.mean_) / self.scale_) @ self.reference_.T
            nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            out[block] = self.y_log_[nearest].mean(axis=1)
        return np.maximum(np.expm1(out), MIN_PREDICTION)


class _TreesOnFeatures(ABC):
    """A gradient-boosted tree learner on a FeatureSet, on log1p(target).

    Per-fold transforms (TF-IDF+SVD, top-K, PCA) are fit on the training rows; early stopping watches
    `valid_fraction` of the training rows, never the fold being predicted.
    """

    def __init__(self, features: FeatureSet, params: dict | None = None, seed: int = 42, valid_fraction: float = 0.1,
                 num_threads: int = 0):
        self.features = features
        self.params = params
        self.seed = seed
        self.valid_fraction = valid_fraction
        self.num_threads = num_threads

    @classmethod
    def from_data(cls, data: dict[str, pd.DataFrame], schema: Schema, work_dir: str | Path, seed: int = 42,
                  features: list[str] | tuple[str, ...] = DEFAULT_FEATURES, embeddings: list[str] | None = None,
                  tfidf_dim: int = 64, **params) -> tuple[_TreesOnFeatures, dict]:
        features, embeddings = list(features), list(embeddings or [])
        feature_set = assemble_features(data, schema, work_dir, features, embeddings, tfidf_dim, seed)
        learner = cls(feature_set, seed=seed, **params)
        return learner, {"features": features, "embeddings": embeddings, "n_features": len(feature_set.names)}

    def fit(self, rows: np.ndarray, y: np.ndarray) -> _TreesOnFeatures:
        for transform in self.features.transforms:
            transform.fit(rows, y)
        watch = np.random.default_rng(self.seed).random(len(rows)) < self.valid_fraction
        x, y_log = self.features.matrix(rows), np.log1p(np.asarray(y, dtype=np.float64))
        self.model_ = self._fit(x[~watch], y_log[~watch], x[watch], y_log[watch])
        return self

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.maximum(np.expm1(self.model_.predict(self.features.matrix(rows))), MIN_PREDICTION)

    @abstractmethod
    def _fit(self, x, y, x_valid, y_valid):
        """The library's own model, trained on (x, y) with early stopping on (x_valid, y_valid)."""


class XGBoostFeatures(_TreesOnFeatures):
    """XGBoost (hist, absolute error on log1p target, early stopping) on the FeatureSet LightGBM uses."""

    def _fit(self, x, y, x_valid, y_valid):
        import xgboost as xgb

        params = {"n_estimators": 3000, "learning_rate": 0.05, "max_depth": 8, "min_child_weight": 5,
                  "subsample": 0.8, "colsample_bytree": 0.7, "reg_lambda": 1.0, "objective": "reg:absoluteerror",
                  "tree_method": "hist", "early_stopping_rounds": 100, **(self.params or {}),
                  "random_state": self.seed, "n_jobs": self.num_threads or -1}
        return xgb.XGBRegressor(**params).fit(x, y, eval_set=[(x_valid, y_valid)], verbose=False)


class CatBoostFeatures(_TreesOnFeatures):
    """CatBoost (MAE on log1p target, early stopping) on the FeatureSet LightGBM uses."""

    def _fit(self, x, y, x_valid, y_valid):
        from catboost import CatBoostRegressor

        params = {"iterations": 3000, "learning_rate": 0.05, "depth": 8, "loss_function": "MAE",
                  "od_type": "Iter", "od_wait": 100, **(self.params or {}), "random_seed": self.seed,
                  "thread_count": self.num_threads or -1, "verbose": False, "allow_writing_files": False}
        return CatBoostRegressor(**params).fit(x, y, eval_set=(x_valid, y_valid), use_best_model=True)


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


def _importable(module: str) -> bool:
    """Whether `module` can be imported, without importing it (slow for xgboost/catboost)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


# name -> (pip package, learner): registered in LEARNERS only when the package imports.
OPTIONAL_LEARNERS: dict[str, tuple[str, type]] = {"xgboost": ("xgboost", XGBoostFeatures),
                                                  "catboost": ("catboost", CatBoostFeatures)}
LEARNERS: dict[str, type] = {"ridge_tfidf": RidgeTfidf, "knn": KnnEmbedding}
LEARNERS.update({name: cls for name, (module, cls) in OPTIONAL_LEARNERS.items() if _importable(module)})


def get_learner(name: str) -> type:
    """The learner class registered as `name`; a clear message for an optional one whose package is absent."""
    if name in LEARNERS:
        return LEARNERS[name]
    if name in OPTIONAL_LEARNERS:
        module, cls = OPTIONAL_LEARNERS[name]
        if not _importable(module):
            raise ImportError(f"learner {name!r} needs the {module} package, which is not installed: "
                              f"pip install {module}")
        return cls
    raise ValueError(f"unknown learner {name!r}; choose from {sorted(LEARNERS)} "
                     f"(optional, when installed: {sorted(set(OPTIONAL_LEARNERS) - set(LEARNERS))})")


def learner_run(data: dict[str, pd.DataFrame], schema: str, work_dir: str | Path, run_name: str,
                learner: str = "ridge_tfidf", n_folds: int = 5, seed: int = 42, fold_strategy: str = "stratified",
                **params) -> dict:
    """Cross-validate a registered learner on the work folder's shared folds and write its run.

    `params` go to the learner: ridge_tfidf(alpha, max_features, char_ngrams), knn(embedding, k),
    xgboost/catboost(features, embeddings, tfidf_dim, params, valid_fraction, num_threads).
    """
    schema_ = get_schema(schema)
    cls = get_learner(learner)
    started = time.perf_counter()
    train, test = data["train"], data["test"]
    y = train[schema_.target].to_numpy(dtype=float)
    folds = shared_folds(work_dir, train, schema_, n_folds, seed, fold_strategy)
    model, described = cls.from_data(data, schema_, work_dir, seed, **params)
    result = cross_validate_learner(model, y, folds, len(test))
    info = {"learner": learner, **described, "fold_strategy": fold_strategy, "params": params,
            "seconds": round(time.perf_counter() - started, 2)}
    return save_run(work_dir, run_name, schema_, train, test, folds, result["oof"], result["test"], info)
