"""Features learnt from training-fold rows only (`FoldTransform`s): TF-IDF+SVD, top-K correlated
dimensions, PCA, neighbour prices. Rows index the stacked (train + test) inputs."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from sklearn.decomposition import PCA

from amzkit.embed.simple import TfidfSvdEmbedder
from amzkit.ml.folds import inner_folds
from amzkit.ml.knn import NeighbourSpace
from amzkit.ml.stats import pearson_columns


class FoldTransform(ABC):
    """Features learnt from training-fold rows only. Rows index the stacked (train + test) inputs."""

    names: list[str]

    def fit(self, rows: np.ndarray, y: np.ndarray) -> FoldTransform:
        return self

    @abstractmethod
    def transform(self, rows: np.ndarray) -> np.ndarray:
        """Feature columns for `rows` (after `fit` on the training fold)."""


def embedded_rows(name: str, matrix: np.ndarray, rows: np.ndarray, needed: int, view: str = "",
                  smaller: str = "") -> np.ndarray:
    """Mask of the training rows that have embedding `name`; an error saying what to do when fewer than `needed`:
    the fold itself too small for `view` (e.g. 'run:pca:64'; `smaller`: the view that fits), or the run missing
    (almost) all of its rows."""
    good = np.isfinite(matrix[rows]).all(axis=1)
    if good.sum() < needed and len(rows) < needed:  # not the run's fault: the view asks for more rows than a fold has
        raise ValueError(
            f"embedding view {view or name!r} needs {needed} training rows to fit on, and this fold has {len(rows)}: "
            + (f"pass a smaller size (e.g. {smaller!r}), or " if smaller else "")
            + "use more train rows or fewer folds")
    if good.sum() < needed:
        raise ValueError(
            f"embedding run {name!r}: {good.sum()} of this fold's {len(rows)} training rows have it, {needed} needed "
            f"to fit on: 01 fetched or embedded (almost) none of its inputs (each row's status is in "
            f"01_extract/{name}/train_fetch.csv). Leave it out of -p embeddings, or rerun 01 once its inputs "
            "can be read")
    return good


TFIDF_DIM = 64  # width of the in-fold TF-IDF + SVD group (03's tfidf_dim)


class TfidfSvdTransform(FoldTransform):
    """TF-IDF (1-2 grams) + TruncatedSVD of the text, fit on the training fold."""

    def __init__(self, texts: list[str], dim: int = TFIDF_DIM, seed: int = 0):
        self.texts, self.dim, self.seed = texts, dim, seed
        self.names = [f"tfidf_{i}" for i in range(dim)]

    def fit(self, rows, y):
        self.embedder_ = TfidfSvdEmbedder(dim=self.dim, seed=self.seed).fit([self.texts[i] for i in rows])
        return self

    def transform(self, rows):
        out, _ = self.embedder_.transform([self.texts[i] for i in rows])
        padded = np.full((len(rows), self.dim), np.nan, dtype=np.float32)
        padded[:, :out.shape[1]] = out
        return padded


class TopKCorrTransform(FoldTransform):
    """The K embedding dimensions most correlated (|Pearson|) with log1p(target) on the training fold."""

    def __init__(self, name: str, matrix: np.ndarray, k: int):
        self.name, self.matrix, self.k = name, matrix, min(k, matrix.shape[1])
        self.names = [f"{name}_top{i}" for i in range(self.k)]

    def fit(self, rows, y):
        good = embedded_rows(self.name, self.matrix, rows, needed=2, view=f"{self.name}:topk_corr:{self.k}")
        corr = pearson_columns(self.matrix[rows][good], np.log1p(y[good]))
        self.dims_ = np.argsort(-np.abs(corr))[: self.k]
        return self

    def transform(self, rows):
        return self.matrix[rows][:, self.dims_]


class PcaTransform(FoldTransform):
    """PCA of an embedding fit on the training fold; rows without an embedding stay NaN."""

    def __init__(self, name: str, matrix: np.ndarray, n: int, seed: int = 0):
        self.name, self.matrix, self.n, self.seed = name, matrix, min(n, matrix.shape[1]), seed
        self.names = [f"{name}_pc{i}" for i in range(self.n)]

    def fit(self, rows, y):
        good = embedded_rows(self.name, self.matrix, rows, needed=self.n, view=f"{self.name}:pca:{self.n}",
                             smaller=f"{self.name}:pca:{max(1, min(self.n, len(rows)) // 2)}")
        self.pca_ = PCA(self.n, random_state=self.seed).fit(self.matrix[rows][good])
        return self

    def transform(self, rows):
        block = self.matrix[rows]
        good = np.isfinite(block).all(axis=1)
        out = np.full((len(rows), self.n), np.nan, dtype=np.float32)
        if good.any():
            out[good] = self.pca_.transform(block[good])
        return out


class KnnTargetTransform(FoldTransform):
    """Neighbour-price features: mean/median log1p(target) of the k nearest training-fold rows (ml.knn: cosine,
    or nearest values for a one-column run), and the top similarity.

    Training rows get the value from inner folds (never their own label; with `groups`, never a copy of the
    same product either, matching grouped outer folds), other rows search all training rows; a row without
    an embedding gets NaN.
    """

    INNER_FOLDS = 5

    def __init__(self, name: str, matrix: np.ndarray, k: int, seed: int = 0, groups: np.ndarray | None = None):
        self.name, self.matrix, self.k, self.seed, self.groups = name, matrix, k, seed, groups
        self.names = [f"{name}_knn{k}_mean", f"{name}_knn{k}_median", f"{name}_knn{k}_top_sim"]

    def _query(self, queries: np.ndarray, reference: np.ndarray, ref_log: np.ndarray) -> np.ndarray:
        index, similarity = self.space_.nearest(queries, reference, self.k)
        values = ref_log[index]
        return np.column_stack([values.mean(axis=1), np.median(values, axis=1),
                                similarity.max(axis=1)]).astype(np.float32)

    def fit(self, rows, y):
        good = embedded_rows(self.name, self.matrix, rows, needed=self.INNER_FOLDS,
                             view=f"{self.name}:knn:{self.k}")
        rows, y = rows[good], y[good]
        self.space_ = NeighbourSpace().fit(self.matrix[rows])
        self.reference_, self.log_ = self.space_.rows(self.matrix[rows]), np.log1p(y)
        inner = inner_folds(rows, self.INNER_FOLDS, self.seed, self.groups)
        searched = min(int((inner != fold).sum()) for fold in range(self.INNER_FOLDS))
        if self.k >= searched:
            raise ValueError(f"embedding view '{self.name}:knn:{self.k}': k is not below the {searched} embedded "
                             "training rows an inner fold searches, so every row would get the mean of them all (a "
                             f"constant column, the constant's score). Pass a K well below it, e.g. "
                             f"'{self.name}:knn:{min(20, max(1, searched // 5))}'")
        own = np.empty((len(rows), 3), dtype=np.float32)
        for fold in range(self.INNER_FOLDS):
            held, kept = inner == fold, inner != fold
            if held.any():
                own[held] = self._query(self.reference_[held], self.reference_[kept], self.log_[kept])
        self.train_values_ = dict(zip(rows.tolist(), own, strict=True))
        return self

    def transform(self, rows):
        out = np.full((len(rows), 3), np.nan, dtype=np.float32)
        known = np.array([r in self.train_values_ for r in rows.tolist()], dtype=bool)
        if known.any():
            out[known] = np.stack([self.train_values_[r] for r in rows[known].tolist()])
        fresh = ~known & np.isfinite(self.matrix[rows]).all(axis=1)
        if fresh.any():
            out[fresh] = self._query(self.space_.rows(self.matrix[rows[fresh]]), self.reference_, self.log_)
        return out


SELECTIONS = {"topk_corr": TopKCorrTransform, "pca": PcaTransform, "knn": KnnTargetTransform}
