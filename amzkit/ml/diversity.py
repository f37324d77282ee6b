"""How alike 03's runs are: the correlation of their out-of-fold errors, and the pairs that are nearly the same.

Two runs whose log errors move together (correlation near 1) add little to a blend; a run with weaker
correlations to the rest is what an ensemble gains from, even when its own SMAPE is worse. The errors are
log(pred) - log(target): the blend's own space.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from amzkit.ml.base import MIN_PREDICTION


def log_errors(log_preds: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per run (column), log(pred) - log(target) on every OOF row; targets are floored as predictions are."""
    log_preds = np.asarray(log_preds, dtype=float)
    target = np.maximum(np.asarray(target, dtype=float), MIN_PREDICTION)
    if log_preds.ndim != 2 or len(log_preds) != len(target):
        raise ValueError(f"log_preds must be (rows, runs) with {len(target)} rows, got shape {log_preds.shape}")
    return log_preds - np.log(target)[:, None]


def error_correlation(log_preds: np.ndarray, target: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Pearson correlation of the runs' OOF log errors, a runs x runs table (1 on the diagonal; NaN for a
    run whose errors do not vary)."""
    errors = log_errors(log_preds, target)
    if errors.shape[1] != len(names):
        raise ValueError(f"{errors.shape[1]} prediction columns but {len(names)} run names")
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(errors, rowvar=False) if errors.shape[1] > 1 else np.ones((1, 1))
    return pd.DataFrame(np.atleast_2d(corr), index=list(names), columns=list(names))


ALIKE_CORRELATION = 0.95  # pairs of runs at or above this error correlation are reported as alike


def alike_pairs(corr: pd.DataFrame, threshold: float = ALIKE_CORRELATION) -> list[dict]:
    """Each pair of runs whose error correlation is >= `threshold`, most alike first."""
    names = list(corr.index)
    pairs = [{"runs": [a, b], "error_correlation": float(corr.iloc[i, j])}
             for i, a in enumerate(names) for j, b in enumerate(names[i + 1:], start=i + 1)
             if np.isfinite(corr.iloc[i, j]) and corr.iloc[i, j] >= threshold]
    return sorted(pairs, key=lambda pair: -pair["error_correlation"])
