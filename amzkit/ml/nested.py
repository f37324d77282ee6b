"""Nested cross-fitting of combiners, and choosing among them without looking at the fold that is scored.

A combiner has `fit(inputs, rows)` / `predict(inputs, rows)` over row numbers of `inputs` (whose `target`
holds the train rows' prices) and predicts prices. `cross_fit` gives each fold predictions from a copy fit on
the other folds only. `choose_inside` scores the whole procedure "pick the method with the best nested score":
for each fold, the method is picked by a nested CV of the other folds alone, so the fold it then predicts took
no part in the choice (picking on the scored folds flatters the winner a little).
"""

from __future__ import annotations

import copy

import numpy as np

from amzkit.core.metric import smape
from amzkit.ml.folds import inner_folds


def cross_fit(combiner, inputs, folds: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, list]:
    """Nested predictions: each fold of `rows` (every row by default) is predicted by a copy of `combiner` fit
    only on the other folds' rows among `rows`. Rows outside `rows` stay NaN; the fitted copies in fold order."""
    rows = np.arange(len(folds)) if rows is None else np.asarray(rows)
    nested = np.full(len(folds), np.nan)
    fitted = []
    for fold in np.unique(folds[rows]):
        inner, outer = rows[folds[rows] != fold], rows[folds[rows] == fold]
        model = copy.deepcopy(combiner).fit(inputs, inner)
        nested[outer] = model.predict(inputs, outer)
        fitted.append(model)
    return nested, fitted


def inner_score(combiner, inputs, folds: np.ndarray, rows: np.ndarray, seed: int = 0,
                groups: np.ndarray | None = None) -> float:
    """SMAPE of `combiner` on `rows` alone, nested over their folds; when they hold one fold (2-fold CV), over
    two seeded random halves of it: never in-sample, which would favour the method that overfits most. `groups`
    (a label per row, e.g. the product groups of 03's group folds) keeps each group in one half, as the outer
    folds do (when `rows` hold at least two groups)."""
    inner = folds.copy()
    if len(np.unique(folds[rows])) < 2:
        grouped = groups is not None and len(np.unique(np.asarray(groups)[rows])) >= 2
        inner[rows] = inner_folds(rows, 2, seed, groups if grouped else None)
    pred = cross_fit(combiner, inputs, inner, rows)[0][rows]
    return smape(inputs.target[rows], pred)


def choose_inside(combiners: dict, nested: dict[str, np.ndarray], inputs, folds: np.ndarray,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, list[str], list[dict[str, float]]]:
    """Honest predictions of "the method with the best nested score": fold k gets the `nested` predictions
    (from `cross_fit` over all folds) of the method whose nested score on the other folds alone is best.
    `groups`: see inner_score (2-fold CV). Returns the predictions, the method picked for each fold and each
    fold's inner scores (fold order)."""
    pred = np.full(len(folds), np.nan)
    picked, scores = [], []
    for fold in np.unique(folds):
        others = np.flatnonzero(folds != fold)
        inner = {name: inner_score(combiner, inputs, folds, others, groups=groups)
                 for name, combiner in combiners.items()}
        name = min(inner, key=inner.get)
        pred[folds == fold] = nested[name][folds == fold]
        picked.append(name)
        scores.append(inner)
    return pred, picked, scores
