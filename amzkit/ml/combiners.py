"""Combiners of runs' predictions for stage 04: blend weights, SMAPE calibration, stacking meta-models.

Every combiner has `fit(inputs, rows)` / `predict(inputs, rows)` over the stacked train+test rows of an
EnsembleInputs, so stage 04 can fit one on any subset of train rows (a nested fold) and predict any other.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from itertools import product

import lightgbm as lgb
import numpy as np
from scipy.optimize import minimize_scalar

from amzkit.core.metric import smape, smape_terms
from amzkit.ml.base import MIN_PREDICTION
from amzkit.ml.ridge import RIDGE_ALPHAS, GcvRidge

METHODS = ("blend", "stack", "blend+calibration", "stack+calibration")  # make_combiners' keys
GRID_STEP = 0.05  # blend weight grid
FACTOR_RANGE = (0.7, 1.3)  # calibration factors tried
FACTOR_STEP = 0.005
MIN_CALIBRATION_ROWS = 200  # rows a calibration group needs for its own factor
MIN_CATEGORY_ROWS = 30  # fit rows a meta-feature's category needs for an indicator of its own (linear meta-models)
MAX_CATEGORY_LEVELS = 50  # indicators per category column at most (its most frequent categories)
_CHUNK_CELLS = 4_000_000  # rows x candidates scored at once


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

def _factor_scores(pred: np.ndarray, target: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """SMAPE of `grid[j] * pred` for each factor, scored _CHUNK_CELLS rows x factors at a time (a wide
    factor_min..factor_max on many rows would otherwise ask for the whole rows x grid array at once)."""
    pred = np.asarray(pred, dtype=np.float64)[:, None]
    step = max(1, _CHUNK_CELLS // max(len(pred), 1))
    return np.concatenate([_smape_columns(target, pred * grid[None, start:start + step])
                           for start in range(0, len(grid), step)]) if len(grid) else np.empty(0)


def fit_factor(pred: np.ndarray, target: np.ndarray, factor_range: tuple[float, float] = FACTOR_RANGE,
               step: float = FACTOR_STEP) -> float:
    """The multiplier c in `factor_range` minimising SMAPE(target, c * pred): a grid, then a bounded 1-D refine."""
    low, high = factor_range
    grid = np.arange(low, high + step / 2, step)
    scores = _factor_scores(pred, target, grid)
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

    one_hot = True  # linear: a category column reaches it as indicators, not as codes (StackCombiner)

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

    one_hot = False  # trees split category codes as they are

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
    categorical: tuple[int, ...] = ()  # the columns of `extra` that hold category codes (NaN: none)

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
        meta-model would extrapolate a raw column (a test row's pack count 1000x any train row's) to any price.
        For a linear meta-model (`one_hot`) a category column is one indicator per category of `levels_` instead:
        its codes' order means nothing (brand 7 is not more than brand 3)."""
        x = inputs.log_preds[rows]
        if inputs.extra is None:
            return x
        with np.errstate(invalid="ignore"):  # NaN stays NaN (the meta-model fills it)
            extra = np.clip(inputs.extra[rows], *self.extra_range_)
        if not self.levels_:
            return np.hstack([x, extra])
        numeric = [j for j in range(extra.shape[1]) if j not in self.levels_]
        indicators = [(inputs.extra[rows, j][:, None] == levels[None, :]).astype(np.float64)
                      for j, levels in self.levels_.items()]
        return np.hstack([x, extra[:, numeric], *indicators])

    def _category_levels(self, inputs: EnsembleInputs, rows: np.ndarray) -> dict[int, np.ndarray]:
        """For a linear meta-model, each category column's codes that get an indicator: those of at least
        MIN_CATEGORY_ROWS fit rows, the MAX_CATEGORY_LEVELS most frequent (the others and NaN: no indicator)."""
        if inputs.extra is None or not getattr(self.meta, "one_hot", self.meta is None):  # None: a RidgeStack
            return {}
        levels = {}
        for j in inputs.categorical:
            codes, counts = np.unique(inputs.extra[rows, j][~np.isnan(inputs.extra[rows, j])], return_counts=True)
            order = np.argsort(-counts, kind="stable")[:MAX_CATEGORY_LEVELS]
            levels[j] = np.sort(codes[order][counts[order] >= MIN_CATEGORY_ROWS])
        return levels

    def _raw(self, inputs: EnsembleInputs, rows: np.ndarray) -> np.ndarray:
        return np.maximum(np.exp(self.meta_.predict(self._matrix(inputs, rows))), MIN_PREDICTION)

    def fit(self, inputs: EnsembleInputs, rows: np.ndarray) -> StackCombiner:
        y_log = np.log(np.maximum(inputs.target[rows], MIN_PREDICTION))
        if inputs.extra is not None:
            with warnings.catch_warnings():  # a column missing on every fit row has no range: left unclipped
                warnings.simplefilter("ignore", RuntimeWarning)
                low, high = np.nanmin(inputs.extra[rows], axis=0), np.nanmax(inputs.extra[rows], axis=0)
            self.extra_range_ = (np.nan_to_num(low, nan=-np.inf), np.nan_to_num(high, nan=np.inf))
        self.levels_ = self._category_levels(inputs, rows)
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
