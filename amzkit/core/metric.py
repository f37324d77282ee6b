"""The one implementation of every competition metric, on original-scale values."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


def _pair(actual, predicted) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64).ravel()
    f = np.asarray(predicted, dtype=np.float64).ravel()
    if a.shape != f.shape:
        raise ValueError(f"actual has {a.size} values but predicted has {f.size}")
    if a.size == 0:
        raise ValueError("metric of zero rows is undefined")
    if not (np.isfinite(a).all() and np.isfinite(f).all()):
        raise ValueError("metric inputs must be finite (found NaN or inf)")
    return a, f


def smape_terms(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The one SMAPE formula, element by element (arrays broadcast; no checks): 200 |F - A| / (|A| + |F|), 0
    where A = F = 0."""
    # Halve before adding so that values near the float64 limit cannot overflow.
    denom = np.abs(a) / 2.0 + np.abs(f) / 2.0
    out = np.zeros(np.broadcast_shapes(np.shape(a), np.shape(f)))
    np.divide(np.abs(f / 2.0 - a / 2.0), denom, out=out, where=denom != 0)  # NaN stays NaN, never 0
    return 200.0 * out


def smape_per_row(actual, predicted) -> np.ndarray:
    """|F - A| / ((|A| + |F|) / 2) per row, in percent; a row with A = F = 0 counts 0."""
    return smape_terms(*_pair(actual, predicted))


def smape(actual, predicted) -> float:
    """SMAPE in percent (0..200, lower is better), as the 2025 organisers define it."""
    return float(smape_per_row(actual, predicted).mean())


def mape(actual, predicted) -> float:
    """Mean absolute percentage error as a fraction, as sklearn computes it (eps-guarded)."""
    a, f = _pair(actual, predicted)
    return float(np.mean(np.abs(f - a) / np.maximum(np.abs(a), np.finfo(np.float64).eps)))


def score_2023(actual, predicted) -> float:
    """The 2023 edition's score: max(0, 100 * (1 - MAPE)), higher is better."""
    return max(0.0, 100.0 * (1.0 - mape(actual, predicted)))


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool
    unit: str
    label: str  # how printed lines name it


METRICS: dict[str, Metric] = {
    "smape": Metric("smape", smape, higher_is_better=False, unit="%", label="SMAPE"),
    "score2023": Metric("score2023", score_2023, higher_is_better=True, unit="points",
                        label="2023 score max(0, 100(1-MAPE))"),
    "mape": Metric("mape", mape, higher_is_better=False, unit="fraction", label="MAPE"),
}


def other_scores(values: Mapping[str, float], names: Sequence[str], prefix: str, scope: str) -> str:
    """'; CV MAPE 1.790 (lower is better); ...' for each metric in `names` but SMAPE that `values` holds as
    `prefix + name` ('' when none): the lines that print SMAPE add the edition's own metrics with it."""
    parts = [f"{scope} {METRICS[name].label} {values[prefix + name]:.3f} "
             f"({'higher' if METRICS[name].higher_is_better else 'lower'} is better)"
             for name in names if name != "smape" and values.get(prefix + name) is not None]
    return "".join(f"; {part}" for part in parts)


CONSTANT_MARGIN = 0.99  # a CV SMAPE above this share of the constant median's is no real signal


def constant_level_warning(cv_smape: float, constant_smape: float, what: str) -> str:
    """A warning line when `what`'s CV SMAPE is not clearly below the constant median's (its predictions carry
    next to no signal: too few training rows, or features that say nothing of the target); "" otherwise."""
    if not cv_smape >= CONSTANT_MARGIN * constant_smape:
        return ""
    return (f"WARNING: {what} scores CV SMAPE {cv_smape:.3f}, no better than predicting the median for every row "
            f"({constant_smape:.3f}): its predictions carry next to no signal. Too few training rows for the learner "
            "(a tree model, for one, needs about 2 x min_data_in_leaf rows a fold to make a single split) or "
            "features that say nothing of the target: add rows or features before submitting it")


def constant_baseline(train_target, n_rows: int | None = None) -> np.ndarray:
    """The constant-median prediction every model must beat."""
    target = np.asarray(train_target, dtype=np.float64)
    return np.full(n_rows if n_rows is not None else target.size, float(np.median(target)))


def constant_oof(target, folds) -> np.ndarray:
    """Out-of-fold constant baseline: each fold predicted by the median target of the other folds."""
    target, folds = np.asarray(target, dtype=np.float64), np.asarray(folds)
    pred = np.empty(len(target))
    for fold in np.unique(folds):
        pred[folds == fold] = np.median(target[folds != fold])
    return pred


def constant_fold_smape(target, folds) -> list[float]:
    """SMAPE of the out-of-fold constant median, per fold (fold ids in sorted order)."""
    target, folds = np.asarray(target, dtype=np.float64), np.asarray(folds)
    pred = constant_oof(target, folds)
    return [smape(target[folds == f], pred[folds == f]) for f in np.unique(folds)]


def smape_by_target_bin(actual, predicted, n_bins: int = 10) -> pd.DataFrame:
    """Rows split into `n_bins` equal-count bins of the actual value (ties kept together): per bin its range,
    rows, median actual and prediction, SMAPE and share of the total SMAPE: where a model's errors lie
    (predictions pulled towards the median show as a high SMAPE in the end bins)."""
    a, f = _pair(actual, predicted)
    per_row = smape_terms(a, f)
    bins = ((pd.Series(a).rank(method="min").to_numpy() - 1) * n_bins // len(a)).astype(int)  # ties: one bin
    table = pd.DataFrame({"bin": bins, "actual": a, "pred": f, "smape": per_row}).groupby("bin").agg(
        low=("actual", "min"), high=("actual", "max"), rows=("actual", "size"), median_actual=("actual", "median"),
        median_pred=("pred", "median"), smape=("smape", "mean"), total=("smape", "sum"))
    table["share_of_error"] = table.pop("total") / per_row.sum() if per_row.sum() > 0 else 0.0
    return table.reset_index(drop=True)
