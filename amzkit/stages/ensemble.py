"""Stage 04: combine 03_train runs - weighted blend, stacking, SMAPE calibration - scored the honest way.

Every method is a combiner with `fit(inputs, rows)` / `predict(inputs, rows)` over the stacked train+test
rows. Each is scored twice: in-sample (fit and scored on every OOF row) and nested (for each fold, fit on
the other folds' OOF rows, scored on it). Only the nested score is an honest estimate, so it alone picks
the method whose predictions go to `04_ensemble/test_pred.csv` (`method="best"`). Picking the lowest of four
nested scores flatters the winner a little, so with "best" `cv_smape` scores the picking too: each fold is
predicted by the method that won a nested CV of the other folds alone (ml.nested.choose_inside).

- blend: exp(sum_i w_i log pred_i), w >= 0, sum w = 1, chosen to minimise SMAPE.
- stack: a meta-model (ridge with alpha by GCV, or a small LightGBM) of log target on the runs' log
  predictions (+ optional raw columns, clipped to the range of the rows it is fit on).
- +calibration: a multiplicative factor (global, and per group when groups are given) chosen to
  minimise SMAPE of the combiner's predictions on its training rows.

It also writes how alike the runs are (`error_correlation.csv`: the correlation of their OOF log errors;
`alike_runs` in metrics.json): a pair near 1 adds little to a blend, so one of them can go.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from amzkit.core.io import id_keys, show_ids, write_csv, write_json
from amzkit.core.metric import METRICS, smape, smape_terms
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import SCHEMAS
from amzkit.core.workdir import list_runs, stage_dir
from amzkit.ml.base import MIN_PREDICTION
from amzkit.ml.diversity import alike_pairs, error_correlation
from amzkit.ml.folds import saved_fold_groups
from amzkit.ml.nested import choose_inside, cross_fit
from amzkit.ml.ridge import RIDGE_ALPHAS, GcvRidge
from amzkit.ml.runs import load_run, run_predictions_sha256, unfinished_runs
from amzkit.stages.ensemble_inputs import check_compatible

METHODS = ("blend", "stack", "blend+calibration", "stack+calibration")
PARAMETERS = Parameters(
    Param("runs", [], "03_train runs to combine; []: every finished run of the work folder", plain_name=True),
    Param("method", "best", "best (lowest nested SMAPE), blend, stack, blend+calibration or stack+calibration",
          choices=("best", *METHODS)),
    Param("meta", "ridge", "the stacking meta-model: ridge or lightgbm", choices=("ridge", "lightgbm")),  # META_MODELS
    Param("calibrate_by", "", "a feature or CSV column (e.g. unit_family): a calibration factor per group"),
    Param("meta_features", [], "feature or CSV columns the stacking meta-model sees beside the runs"),
    Param("factor_min", 0.7, "smallest calibration factor tried", low=0, low_open=True),
    Param("factor_max", 1.3, "largest calibration factor tried", low=0, low_open=True),
    Param("min_group_rows", 200, "rows a calibration group needs for its own factor", low=1),
    relations=(("factor_min", "<=", "factor_max"),),
)
D = PARAMETERS.defaults

GRID_STEP = 0.05
FACTOR_RANGE = (D.factor_min, D.factor_max)
FACTOR_STEP = 0.005
MIN_CALIBRATION_ROWS = D.min_group_rows
_CHUNK_CELLS = 4_000_000  # rows x candidates scored at once
BEST_INSIDE = "best (picked inside each fold)"  # the row and fold curve of method "best" as cv_smape scores it


# --- blend weights --------------------------------------------------------------------------------------

def blend(log_preds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted geometric mean: exp(log_preds @ weights)."""
    return np.exp(log_preds @ weights)


def _smape_columns(target: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """SMAPE (percent) of each column of `preds` (n, m) against `target`, as amzkit.metric.smape computes it."""
    a = np.asarray(target, dtype=np.float64)[:, None]
    out = np.empty(preds.shape[1])
    step = max(1, _CHUNK_CELLS // max(len(a), 1))
    for start in range(0, preds.shape[1], step):
        out[start:start + step] = smape_terms(a, preds[:, start:start + step]).mean(axis=0)
    return out


def _blend_scores(log_preds: np.ndarray, target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """SMAPE of each candidate weight vector's blend. For positive targets SMAPE is 2|tanh(d/2)| of the log
    ratio d, which spares the exp and the divisions."""
    step = max(1, _CHUNK_CELLS // max(len(target), 1))
    chunks = [candidates[i:i + step] for i in range(0, len(candidates), step)]
    if (target > 0).all():
        log_target = np.log(target)[:, None]
        return np.concatenate([200.0 * np.abs(np.tanh((log_preds @ c.T - log_target) / 2)).mean(axis=0)
                               for c in chunks])
    return np.concatenate([_smape_columns(target, np.exp(log_preds @ c.T)) for c in chunks])


def _simplex_grid(k: int, step: float) -> np.ndarray:
    ticks = np.round(np.arange(0, 1 + step / 2, step), 10)
    points = [w for w in product(ticks, repeat=k - 1) if sum(w) <= 1 + 1e-9]
    return np.array([[*w, 1 - sum(w)] for w in points])


def fit_weights(log_preds: np.ndarray, target: np.ndarray, step: float = GRID_STEP) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise SMAPE (grid search, refined by pairwise transfers)."""
    k = log_preds.shape[1]
    if k == 1:
        return np.ones(1)
    if k <= 4:
        candidates = _simplex_grid(k, step)
    else:
        candidates = np.vstack([np.eye(k), np.full((1, k), 1 / k)])
    scores = _blend_scores(log_preds, target, candidates)
    best = candidates[int(np.argmin(scores))].copy()
    best_score = float(scores.min())
    pairs = [(i, j) for i, j in product(range(k), repeat=2) if i != j]
    for delta in (step / 2, step / 5):
        while True:
            trials = []
            for i, j in pairs:
                if best[j] >= delta:
                    trial = best.copy()
                    trial[i] += delta
                    trial[j] -= delta
                    trials.append(trial)
            if not trials:
                break
            trials = np.array(trials)
            trial_scores = _blend_scores(log_preds, target, trials)
            if not trial_scores.min() < best_score - 1e-12:  # no better trial (a NaN score is none either)
                break
            best, best_score = trials[int(np.argmin(trial_scores))], float(trial_scores.min())
    return best


# --- calibration ----------------------------------------------------------------------------------------

def fit_factor(pred: np.ndarray, target: np.ndarray, factor_range: tuple[float, float] = FACTOR_RANGE,
               step: float = FACTOR_STEP) -> float:
    """The multiplier c in `factor_range` minimising SMAPE(target, c * pred): a grid, then a bounded 1-D refine."""
    low, high = factor_range
    grid = np.arange(low, high + step / 2, step)
    scores = _smape_columns(target, np.asarray(pred, dtype=np.float64)[:, None] * grid[None, :])
    best = float(grid[int(np.argmin(scores))])
    refined = minimize_scalar(lambda c: smape(target, pred * c), method="bounded",
                              bounds=(max(low, best - step), min(high, best + step)), options={"xatol": 1e-5})
    return float(refined.x) if refined.fun < scores.min() else best


class Calibrator:
    """Multiplicative SMAPE calibration: one global factor, and one per group with >= min_group_rows rows."""

    def __init__(self, factor_range: tuple[float, float] = FACTOR_RANGE, step: float = FACTOR_STEP,
                 min_group_rows: int = MIN_CALIBRATION_ROWS):
        self.factor_range = factor_range
        self.step = step
        self.min_group_rows = min_group_rows

    def fit(self, pred: np.ndarray, target: np.ndarray, groups: np.ndarray | None = None) -> Calibrator:
        self.factor_ = fit_factor(pred, target, self.factor_range, self.step)
        self.group_factors_ = {}
        if groups is not None:
            labels, counts = np.unique(groups, return_counts=True)
            for label in labels[counts >= self.min_group_rows]:
                rows = groups == label
                self.group_factors_[label] = fit_factor(pred[rows], target[rows], self.factor_range, self.step)
        return self

    def predict(self, pred: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        factors = np.full(len(pred), self.factor_)
        if groups is not None:
            for label, factor in self.group_factors_.items():
                factors[groups == label] = factor
        return pred * factors


# --- meta-models for stacking ---------------------------------------------------------------------------

class RidgeStack:
    """Ridge (alpha by GCV, standardised columns) of log target on log predictions; NaNs take fit medians."""

    def __init__(self, alphas: tuple[float, ...] = RIDGE_ALPHAS):
        self.alphas = alphas

    def _filled(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(np.isnan(x), self.fill_, x)

    def fit(self, x: np.ndarray, y_log: np.ndarray) -> RidgeStack:
        x = np.asarray(x, dtype=np.float64)
        seen = ~np.isnan(x).all(axis=0)  # a value missing later (a test row, a scored fold) takes the fit median
        self.fill_ = np.zeros(x.shape[1])
        self.fill_[seen] = np.nanmedian(x[:, seen], axis=0)
        self.model_ = GcvRidge(self.alphas).fit(self._filled(x), y_log)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict(self._filled(x)).astype(np.float64)

    def coefficients(self) -> tuple[np.ndarray, float]:
        """Coefficients and intercept on the unstandardised inputs."""
        coef = self.model_.coef_.astype(np.float64) / self.model_.scale_
        return coef, float(self.model_.intercept_ - coef @ self.model_.mean_)


class LightGBMStack:
    """A small LightGBM (L1 loss on log target, fixed rounds) on log predictions and a few raw columns."""

    def __init__(self, n_estimators: int = 300, learning_rate: float = 0.03, num_leaves: int = 7,
                 min_data_in_leaf: int = 40, seed: int = 0, num_threads: int = 1):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.seed = seed
        self.num_threads = num_threads

    def fit(self, x: np.ndarray, y_log: np.ndarray) -> LightGBMStack:
        params = {"objective": "l1", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                  "min_data_in_leaf": self.min_data_in_leaf, "feature_fraction": 1.0, "bagging_fraction": 0.8,
                  "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1, "seed": self.seed, "deterministic": True,
                  "force_col_wise": True, "num_threads": self.num_threads}
        self.booster_ = lgb.train(params, lgb.Dataset(np.asarray(x, dtype=np.float32), y_log),
                                  num_boost_round=self.n_estimators)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.booster_.predict(np.asarray(x, dtype=np.float32))


META_MODELS = {"ridge": RidgeStack, "lightgbm": LightGBMStack}


# --- combiners over stacked train+test rows ---------------------------------------------------------------

@dataclass
class EnsembleInputs:
    """The runs' log predictions for train rows then test rows, the train target, optional extras."""

    log_preds: np.ndarray  # (n_train + n_test, k)
    target: np.ndarray  # (n_train,)
    extra: np.ndarray | None = None  # (n_train + n_test, p) raw columns for the meta-model
    groups: np.ndarray | None = None  # (n_train + n_test,) calibration group labels

    def group_rows(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.groups is None else self.groups[rows]


class BlendCombiner:
    """Weighted geometric mean of the runs, optionally calibrated."""

    def __init__(self, step: float = GRID_STEP, calibrator: Calibrator | None = None):
        self.step = step
        self.calibrator = calibrator

    def fit(self, inputs: EnsembleInputs, rows: np.ndarray) -> BlendCombiner:
        self.weights_ = fit_weights(inputs.log_preds[rows], inputs.target[rows], self.step)
        if self.calibrator is not None:
            raw = blend(inputs.log_preds[rows], self.weights_)
            self.calibrator_ = copy.deepcopy(self.calibrator).fit(raw, inputs.target[rows], inputs.group_rows(rows))
        return self

    def predict(self, inputs: EnsembleInputs, rows: np.ndarray) -> np.ndarray:
        pred = blend(inputs.log_preds[rows], self.weights_)
        if self.calibrator is not None:
            pred = self.calibrator_.predict(pred, inputs.group_rows(rows))
        return pred


class StackCombiner:
    """A meta-model of log target on the runs' log predictions (+ extra columns), optionally calibrated."""

    def __init__(self, meta=None, calibrator: Calibrator | None = None):
        self.meta = meta
        self.calibrator = calibrator

    def _matrix(self, inputs: EnsembleInputs, rows: np.ndarray) -> np.ndarray:
        """The runs' log predictions and the extra columns, these clipped to the fit rows' range: a linear
        meta-model would extrapolate a raw column (a test row's pack count 1000x any train row's) to any price."""
        x = inputs.log_preds[rows]
        if inputs.extra is None:
            return x
        with np.errstate(invalid="ignore"):  # NaN stays NaN (the meta-model fills it)
            return np.hstack([x, np.clip(inputs.extra[rows], *self.extra_range_)])

    def _raw(self, inputs: EnsembleInputs, rows: np.ndarray) -> np.ndarray:
        return np.maximum(np.exp(self.meta_.predict(self._matrix(inputs, rows))), MIN_PREDICTION)

    def fit(self, inputs: EnsembleInputs, rows: np.ndarray) -> StackCombiner:
        y_log = np.log(np.maximum(inputs.target[rows], MIN_PREDICTION))
        if inputs.extra is not None:
            with warnings.catch_warnings():  # a column missing on every fit row has no range: left unclipped
                warnings.simplefilter("ignore", RuntimeWarning)
                low, high = np.nanmin(inputs.extra[rows], axis=0), np.nanmax(inputs.extra[rows], axis=0)
            self.extra_range_ = (np.nan_to_num(low, nan=-np.inf), np.nan_to_num(high, nan=np.inf))
        self.meta_ = copy.deepcopy(self.meta if self.meta is not None else RidgeStack())
        self.meta_.fit(self._matrix(inputs, rows), y_log)
        if self.calibrator is not None:
            self.calibrator_ = copy.deepcopy(self.calibrator).fit(self._raw(inputs, rows), inputs.target[rows],
                                                                  inputs.group_rows(rows))
        return self

    def predict(self, inputs: EnsembleInputs, rows: np.ndarray) -> np.ndarray:
        pred = self._raw(inputs, rows)
        if self.calibrator is not None:
            pred = self.calibrator_.predict(pred, inputs.group_rows(rows))
        return pred


def make_combiners(meta="ridge", weight_step: float = GRID_STEP, factor_range: tuple[float, float] = FACTOR_RANGE,
                   min_group_rows: int = MIN_CALIBRATION_ROWS) -> dict:
    """The four methods of METHODS; `meta` is a META_MODELS name or an object with fit(x, y_log)/predict(x)."""
    if isinstance(meta, str):
        if meta not in META_MODELS:
            raise ValueError(f"unknown meta-model {meta!r}; choose from {sorted(META_MODELS)}")
        meta = META_MODELS[meta]()
    calibrator = Calibrator(factor_range, FACTOR_STEP, min_group_rows)
    return {"blend": BlendCombiner(weight_step), "stack": StackCombiner(meta),
            "blend+calibration": BlendCombiner(weight_step, calibrator),
            "stack+calibration": StackCombiner(meta, calibrator)}


# --- runs in, predictions and report out ----------------------------------------------------------------

def _align(values: pd.Series | pd.DataFrame | None, ids: np.ndarray, what: str, n_train: int,
           by_hand: str = "") -> np.ndarray | None:
    """`values` (indexed by id) in the order of `ids` (the runs' `n_train` train ids, then their test ids); every
    id must be present. `by_hand`: what to do when an argument the caller made itself lacks some (else `values`
    were read from data_dir's CSVs)."""
    if values is None:
        return None
    values = values.set_axis(pd.Index(id_keys(values.index), name="id"), axis=0)
    if not values.index.is_unique:
        raise ValueError(f"{what} has repeated ids in its index")
    keys = pd.Index(id_keys(ids))
    missing = ~keys.isin(values.index)
    if missing.any():
        lacks = [f"{int(missing[part].sum())} of the runs' {len(keys[part])} {split} ids (e.g. "
                 f"{show_ids(np.asarray(ids)[part][missing[part]], 3)})"
                 for split, part in (("train", slice(0, n_train)), ("test", slice(n_train, None)))
                 if missing[part].any()]
        if by_hand:
            raise ValueError(f"the {what} argument lacks {' and '.join(lacks)}: {by_hand}")
        raise ValueError(f"{what}, read from data_dir's train.csv and test.csv, lacks {' and '.join(lacks)}: the 03 "
                         "runs were made for other CSVs. Rerun 03 on these CSVs, or point data_dir at the CSVs the "
                         "runs were made for")
    picked = values.reindex(keys)
    if isinstance(picked, pd.Series):
        return picked.astype(str).to_numpy()
    numeric = {c: (picked[c] if pd.api.types.is_numeric_dtype(picked[c]) else
                   picked[c].astype("category").cat.codes.replace(-1, np.nan)) for c in picked.columns}
    return pd.DataFrame(numeric).to_numpy(dtype=np.float64)


def _fold_scores(target: np.ndarray, pred: np.ndarray, folds: np.ndarray) -> list[float]:
    return [smape(target[folds == f], pred[folds == f]) for f in np.unique(folds)]


# What 04 writes (metrics.json last, as the mark that the others are finished: 05 reads only those).
OUTPUTS = ("metrics.json", "oof.csv", "test_pred.csv", "oof_methods.csv", "test_methods.csv", "table.csv",
           "weights.csv", "error_correlation.csv", "ensemble.png")


def unmark_finished(work_dir: str | Path) -> None:
    """Remove 04's outputs, metrics.json first: a 04 that fails then leaves none of the previous run's behind,
    neither for 05 (which would submit them as if this one had made them) nor for someone reading the folder."""
    out_dir = stage_dir(work_dir, "04_ensemble")
    for name in OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)


def ensemble(work_dir: str | Path, runs=D.runs, *, method: str = D.method, meta=D.meta,
             groups: pd.Series | None = None, meta_features: pd.DataFrame | None = None,
             weight_step: float = GRID_STEP, factor_range: tuple[float, float] = FACTOR_RANGE,
             min_group_rows: int = MIN_CALIBRATION_ROWS, product_groups: pd.Series | None = None) -> dict:
    """Blend, stack and calibrate the named runs (all finished 03_train runs when empty); write the one
    chosen by `method` ('best' = lowest nested SMAPE, or one of METHODS), its table, weights and metrics.

    `groups` (labels) and `meta_features` (columns) are indexed by id over train and test rows, as
    `ensemble_columns` returns them. `product_groups` (labels indexed by train id; by default the groups 03's group
    folds kept together, from 03_train/folds.csv): with 2-fold CV, the halves that pick the method inside each
    fold keep a group together, as the folds do (without groups the halves are drawn row by row).
    """
    unmark_finished(work_dir)
    runs = PARAMETERS.validate(method=method, runs=runs, factor_min=factor_range[0], factor_max=factor_range[1],
                               min_group_rows=min_group_rows, **({"meta": meta} if isinstance(meta, str) else {})
                               )["runs"]  # "lgbm" or "lgbm,ridge" as the notebook reads them, never letter by letter
    named = list(runs)
    repeated = sorted({name for name in named if named.count(name) > 1})
    if repeated:
        raise ValueError(f"runs names {', '.join(map(repr, repeated))} more than once: name each run once")
    runs = list(runs or list_runs(work_dir, "03_train"))
    stopped = {n: why for n, why in unfinished_runs(work_dir).items() if n in runs or not named}
    if stopped:
        print("03_train runs a stopped 03 left: " + "; ".join(f"{n}: {why}" for n, why in stopped.items())
              + " (rerun 03_train with the same parameters to finish them: it resumes)")
    if len(runs) < 1:
        raise FileNotFoundError(f"no 03_train runs in {work_dir}: run 03_train first")
    loaded = {name: load_run(work_dir, name) for name in runs}
    check_compatible(loaded)
    first = loaded[runs[0]]["oof"]
    target, folds = first["target"].to_numpy(dtype=float), first["fold"].to_numpy()
    ids, test_ids = first["id"].to_numpy(), loaded[runs[0]]["test"]["id"].to_numpy()
    oof_log = np.column_stack([np.log(loaded[n]["oof"]["pred"].to_numpy(dtype=float)) for n in runs])
    test_log = np.column_stack([np.log(loaded[n]["test"]["pred"].to_numpy(dtype=float)) for n in runs])
    all_ids = np.concatenate([ids, test_ids])
    inputs = EnsembleInputs(np.vstack([oof_log, test_log]), target,
                            _align(meta_features, all_ids, "meta_features", len(ids)),
                            _align(groups, all_ids, "groups (calibrate_by)", len(ids)))
    train_rows, test_rows = np.arange(len(ids)), np.arange(len(ids), len(all_ids))
    if product_groups is None:  # folds.csv's groups, when they are of these runs' rows
        saved = saved_fold_groups(work_dir)
        product_groups = saved if saved is not None and pd.Index(id_keys(ids)).isin(saved.index).all() else None
    fold_groups = None if product_groups is None else _align(
        product_groups, ids, "product_groups", len(ids), by_hand="give it a label for every train id of the 03 runs "
        "(indexed by id, as their oof.csv writes them), or leave product_groups out to use 03_train/folds.csv's groups")

    results = {}
    combiners = make_combiners(meta, weight_step, factor_range, min_group_rows)
    for name, combiner in combiners.items():
        nested, fitted = cross_fit(combiner, inputs, folds)
        full = copy.deepcopy(combiner).fit(inputs, train_rows)
        results[name] = {"nested": nested, "fitted": fitted, "full": full,
                         "in_sample": full.predict(inputs, train_rows), "test": full.predict(inputs, test_rows)}
    nested_scores = {m: smape(target, r["nested"]) for m, r in results.items()}
    chosen = min(nested_scores, key=nested_scores.get) if method == "best" else method
    scored = results[chosen]["nested"]  # what cv_smape scores: the chosen method, or the picking done inside
    if method == "best":
        scored, picked, inner = choose_inside(combiners, {m: r["nested"] for m, r in results.items()}, inputs, folds,
                                              fold_groups)

    per_run = {n: smape(target, np.exp(oof_log[:, i])) for i, n in enumerate(runs)}
    fold_scores = {n: _fold_scores(target, np.exp(oof_log[:, i]), folds) for i, n in enumerate(runs)}
    for m, r in results.items():
        fold_scores[f"{m} (nested)"] = _fold_scores(target, r["nested"], folds)
    cv_key = BEST_INSIDE if method == "best" else f"{chosen} (nested)"  # the fold curve cv_smape scores
    fold_scores[cv_key] = _fold_scores(target, scored, folds)
    cv = smape(target, scored)
    table = pd.DataFrame(
        [{"model": n, "kind": "run", "nested_smape": per_run[n], "fold_mean": float(np.mean(fold_scores[n])),
          "fold_std": float(np.std(fold_scores[n])), "in_sample_smape": per_run[n], "chosen": False} for n in runs]
        + [{"model": m, "kind": "ensemble", "nested_smape": nested_scores[m],
            "fold_mean": float(np.mean(fold_scores[f"{m} (nested)"])),
            "fold_std": float(np.std(fold_scores[f"{m} (nested)"])),
            "in_sample_smape": smape(target, r["in_sample"]), "chosen": m == chosen} for m, r in results.items()]
        + ([{"model": BEST_INSIDE, "kind": "ensemble", "nested_smape": cv,
             "fold_mean": float(np.mean(fold_scores[BEST_INSIDE])), "fold_std": float(np.std(fold_scores[BEST_INSIDE])),
             "in_sample_smape": np.nan, "chosen": False}] if method == "best" else []))

    blend_full, stack_full = results["blend"]["full"], results["stack"]["full"]
    weights = dict(zip(runs, blend_full.weights_.tolist(), strict=True))
    cal_full, stack_cal_full = results["blend+calibration"]["full"], results["stack+calibration"]["full"]
    out_dir = stage_dir(work_dir, "04_ensemble")
    (out_dir / "metrics.json").unlink(missing_ok=True)  # written last: a kill before it leaves no old metrics
    write_csv(pd.DataFrame({"id": ids, "fold": folds, "target": target, "pred": scored}), out_dir / "oof.csv")
    write_csv(pd.DataFrame({"id": test_ids, "pred": results[chosen]["test"]}), out_dir / "test_pred.csv")
    write_csv(pd.DataFrame({"id": ids, "fold": folds, "target": target,
                            **{m: r["nested"] for m, r in results.items()}}), out_dir / "oof_methods.csv")
    write_csv(pd.DataFrame({"id": test_ids, **{m: r["test"] for m, r in results.items()}}),
              out_dir / "test_methods.csv")
    write_csv(table, out_dir / "table.csv")
    weights_table = pd.DataFrame({"run": runs, "weight": blend_full.weights_,
                                  **{f"fold{f}": m.weights_ for f, m in zip(np.unique(folds),
                                                                            results["blend"]["fitted"],
                                                                            strict=True)}})
    write_csv(weights_table, out_dir / "weights.csv")
    corr = error_correlation(oof_log, target, runs)  # how alike the runs' errors are: which add little
    write_csv(corr.round(4).rename_axis("run").reset_index(), out_dir / "error_correlation.csv")
    best_single = min(per_run, key=per_run.get)
    metrics = {
        "runs": runs, "method": chosen, "method_requested": method,
        "meta": meta if isinstance(meta, str) else type(meta).__name__,
        "weights": weights, "nested_weights": [m.weights_.tolist() for m in results["blend"]["fitted"]],
        "run_smape": per_run, "best_single_run": best_single, "best_single_smape": per_run[best_single],
        "best_single_fold_std": float(np.std(fold_scores[best_single])),
        # test_pred.csv is that run's own predictions (one run, blended): no other source would submit anything else
        "test_is_best_single": bool(np.allclose(results[chosen]["test"], np.exp(test_log[:, runs.index(best_single)]),
                                                rtol=1e-9, atol=0.0)),
        "blend_smape_in_sample": smape(target, results["blend"]["in_sample"]),
        "blend_smape_nested": nested_scores["blend"],
        "blend_smape_equal_weights": smape(target, blend(oof_log, np.full(len(runs), 1 / len(runs)))),
        "stack_smape_in_sample": smape(target, results["stack"]["in_sample"]),
        "stack_smape_nested": nested_scores["stack"],
        "calibrated_smape_in_sample": smape(target, results["blend+calibration"]["in_sample"]),
        "calibrated_smape_nested": nested_scores["blend+calibration"],
        "method_smape_nested": nested_scores,
        "method_smape_in_sample": {m: smape(target, r["in_sample"]) for m, r in results.items()},
        "calibration_factor": cal_full.calibrator_.factor_,
        "calibration_group_factors": {str(k): v for k, v in cal_full.calibrator_.group_factors_.items()},
        "nested_calibration_factors": [m.calibrator_.factor_ for m in results["blend+calibration"]["fitted"]],
        "stack_calibration_factor": stack_cal_full.calibrator_.factor_,
        "fold_smape": fold_scores, "table": table.to_dict(orient="records"),
        "error_correlation": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in corr.to_numpy()],
        "alike_runs": alike_pairs(corr),
        "cv_smape": cv,
        "cv_fold_smape_std": float(np.std(fold_scores[cv_key])),
        "cv_scores": cv_key,
        "constant_median_smape": float(np.mean([loaded[n]["metrics"]["constant_median_smape"] for n in runs])),
        **{key: next((loaded[n]["metrics"][key] for n in runs if key in loaded[n]["metrics"]), None)
           for key in ("train_rows_sha256", "test_rows_sha256")},
        "run_predictions_sha256": {n: run_predictions_sha256(work_dir, n) for n in runs},
        # runs whose settings were chosen on these rows (a tuned preset): cv_smape is a little optimistic
        "optimistic_runs": {n: loaded[n]["metrics"]["cv_optimistic"] for n in runs
                            if loaded[n]["metrics"].get("cv_optimistic")},
    }
    schema_name = loaded[runs[0]]["metrics"].get("schema")
    if schema_name in SCHEMAS:  # the edition's own metrics of what cv_smape scores (2023: its score and MAPE)
        metrics["schema"] = schema_name
        metrics.update({f"cv_{name}": METRICS[name].fn(target, scored)
                        for name in SCHEMAS[schema_name].report_metrics if name != "smape"})
    if method == "best":
        metrics["method_picked_per_fold"] = picked
        metrics["method_inner_smape_per_fold"] = inner
    if hasattr(stack_full.meta_, "coefficients"):
        coef, intercept = stack_full.meta_.coefficients()
        metrics["stack_coef"] = dict(zip(runs, coef[:len(runs)].tolist(), strict=True))
        metrics["stack_intercept"] = intercept
    write_json(out_dir / "metrics.json", metrics)
    return metrics
