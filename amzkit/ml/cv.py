"""The one cross-validation loop: any learner of the registry, the work folder's shared folds, honest scores.

For each fold the learner is fit on that fold's training rows only (plus, with pseudo-labels, the chosen test
rows labelled by the source run's model of the same fold) and predicts the fold's rows and the test rows. The
fold's rows and labels never reach `fit`: what a learner tunes (early stopping, alpha) it tunes inside the
training rows. Test predictions are the geometric mean of the fold models'.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from amzkit.core.metric import constant_fold_smape, smape
from amzkit.ml.base import Learner
from amzkit.ml.pseudo import PseudoLabels


def cross_validate(learner: Learner, folds: np.ndarray, *, pseudo: PseudoLabels | None = None,
                   models_dir: Path | None = None, on_fold: Callable[[int, float], None] | None = None,
                   progress: bool = True, start_fold: int = 0, fold_done: Callable[[int, dict], None] | None = None,
                   previous: dict | None = None) -> dict:
    """OOF predictions, per-fold SMAPE (and the constant median's), test predictions, mean importance, and per
    fold what the fit chose (`Learner.fit_report`).

    `learner` must be prepared (`learner.prepare(inputs)`). `on_fold(step, mean_smape_so_far)` is called after
    each fold (a tuner prunes by raising from it). `fold_done(step, state)` receives the state after each fold
    and `previous` + `start_fold` resume from such a state (a killed session resumes at its first unfinished
    fold with the same result).
    """
    inputs = learner.inputs_
    y, n_train = inputs.y, inputs.n_train
    if len(folds) != n_train:
        raise ValueError(f"folds has {len(folds)} entries for {n_train} train rows")
    test_rows = inputs.test_rows
    fold_ids = np.unique(folds)
    state = previous or {"oof": np.full(n_train, np.nan), "test_folds": np.zeros((len(fold_ids), len(test_rows))),
                         "fold_smape": [], "importance": [], "fit_reports": []}
    pseudo_rows = np.empty(0, dtype=np.int64) if pseudo is None else pseudo.rows
    steps = range(start_fold, len(fold_ids))
    for step in tqdm(steps, desc="folds", disable=not progress, initial=start_fold, total=len(fold_ids)):
        fold = fold_ids[step]
        train_rows, valid_rows = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        fit_rows, fit_y, weight = train_rows, y[train_rows], None
        if len(pseudo_rows):
            fit_rows = np.concatenate([train_rows, pseudo_rows])
            fit_y = np.concatenate([fit_y, pseudo.labels[int(fold)]])
            weight = np.concatenate([np.ones(len(train_rows)), np.full(len(pseudo_rows), pseudo.weight)])
        learner.fit(fit_rows, fit_y, weight)
        state["oof"][valid_rows] = learner.predict(valid_rows)
        state["test_folds"][step] = learner.predict(test_rows) if len(test_rows) else []
        state["fold_smape"].append(smape(y[valid_rows], state["oof"][valid_rows]))
        state["fit_reports"].append(learner.fit_report())
        importance = learner.feature_importance()
        if importance is not None:
            state["importance"].append(importance)
        if models_dir is not None:
            learner.save_fold(models_dir, int(fold))
        if fold_done is not None:
            fold_done(step, state)
        if on_fold is not None:
            on_fold(step, float(np.mean(state["fold_smape"])))
    test = np.exp(np.log(state["test_folds"]).mean(axis=0)) if len(test_rows) else np.empty(0)
    importance = pd.concat(state["importance"], axis=1).mean(axis=1) if state["importance"] else None
    return {"oof": state["oof"], "test": test, "test_folds": state["test_folds"], "fold_smape": state["fold_smape"],
            "fold_constant_smape": constant_fold_smape(y, folds), "importance": importance,
            "fit_reports": state["fit_reports"]}
