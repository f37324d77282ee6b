"""Column statistics shared by the probes and the fold transforms."""

from __future__ import annotations

import numpy as np


def standardize_columns(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    centred = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    norms = np.sqrt(np.einsum("ij,ij->j", centred, centred, dtype=np.float64)).astype(np.float32)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def pearson_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of x with each column of y (or with y if 1-D), by one matrix product.

    Constant columns correlate 0. Returns shape (dims,) for 1-D y and (dims, y columns) otherwise.
    """
    xs = standardize_columns(x)
    ys = standardize_columns(np.asarray(y, dtype=np.float64).reshape(len(xs), -1))
    corr = (xs.T @ ys).astype(np.float64)
    return corr[:, 0] if np.ndim(y) == 1 else corr
