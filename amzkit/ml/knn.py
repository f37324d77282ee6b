"""The one k-nearest-neighbour search: cosine on standardised columns, nearest values for a one-column input.

Used by 02's kNN probe, the `knn` learner and the in-fold neighbour-price features (`run:knn:K`). Columns are
standardised with the reference rows' mean and standard deviation (a constant column keeps scale 1). A
one-column input (an aesthetic score, say) has no direction, so its neighbours are the nearest values and its
similarity is minus the standardised distance. Search goes in blocks of rows, never an n x n matrix.
"""

from __future__ import annotations

import numpy as np

KNN_BLOCK_ROWS = 512


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class NeighbourSpace:
    """Standardisation learnt from reference rows; `rows` maps any rows into the space `nearest` searches."""

    def __init__(self, block_rows: int = KNN_BLOCK_ROWS):
        self.block_rows = block_rows

    def fit(self, x: np.ndarray) -> NeighbourSpace:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"kNN needs a non-empty 2-D reference, got shape {x.shape}")
        self.mean_ = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        scale = x.std(axis=0, dtype=np.float64).astype(np.float32)
        scale[scale == 0] = 1.0
        self.scale_ = scale
        self.scalar_ = x.shape[1] == 1
        return self

    def rows(self, x: np.ndarray) -> np.ndarray:
        """Rows in search space: standardised, then unit length (cosine) unless the input has one column."""
        z = (np.asarray(x, dtype=np.float32) - self.mean_) / self.scale_
        return z.astype(np.float32) if self.scalar_ else unit_rows(z)

    def nearest(self, queries: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(index into reference, similarity) of the k nearest reference rows of each query row (both already
        in search space); k is capped at the reference size. Neighbours come in no particular order."""
        if len(reference) == 0:
            raise ValueError("kNN search with no reference rows")
        k = max(1, min(int(k), len(reference)))
        index = np.empty((len(queries), k), dtype=np.int64)
        similarity = np.empty((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), self.block_rows):
            block = queries[start:start + self.block_rows]
            if self.scalar_:
                sims = -np.abs(block - reference.T)
            else:
                sims = block @ reference.T
            nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            index[start:start + len(block)] = nearest
            similarity[start:start + len(block)] = np.take_along_axis(sims, nearest, 1)
        return index, similarity


def knn_mean(space: NeighbourSpace, queries: np.ndarray, reference: np.ndarray, values: np.ndarray,
             k: int) -> np.ndarray:
    """Mean of `values` (one per reference row) over each query's k nearest reference rows."""
    index, _ = space.nearest(queries, reference, k)
    return np.asarray(values)[index].mean(axis=1)
