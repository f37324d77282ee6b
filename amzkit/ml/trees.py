"""Gradient-boosted trees on a run's feature set: LightGBM (from a preset), XGBoost and CatBoost.

All three share `TreeLearner`: the feature set (engineered groups, image groups, embeddings, fold transforms)
is assembled once per run; each fit refits the fold transforms on its real training rows, holds out
`valid_fraction` of them (grouped by product, as the outer folds) to choose the number of trees by early
stopping, and then (`refit`, the default) trains again on every training row with that number of trees.
The rows a fold is scored on are never seen. With `bags` > 1 each fit trains that many models, seeds seed,
seed + 1, ... (each early-stopped on the same holdout, then refit), and predicts the mean of their raw
(log1p) predictions: seed bagging, a steadier model for `bags` times the fit time. With `group_by` (a
feature column, e.g. `unit_family`) a model per group with at least MIN_GROUP_ROWS training rows predicts
that group's rows; the rest take the global model's.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from amzkit.core.threads import check_num_threads, resolve_threads
from amzkit.ml.base import DEFAULT_SEED, Learner, RunInputs, check_bag_settings, floor_prediction
from amzkit.ml.boosters import CATBOOST, XGBOOST, BoosterTable, booster_params, estimator_class
from amzkit.ml.featureset import FeatureSet, assemble_features
from amzkit.ml.folds import MAX_VALID_FRACTION, VALID_FRACTION, holdout_mask
from amzkit.ml.presets import check_preset, resolve_preset
from amzkit.ml.transforms import TFIDF_DIM

MIN_GROUP_ROWS = 200
# The feature groups a run uses unless told (03's `features` parameter; the last two: -2.5 SMAPE on real 2025 rows)
DEFAULT_FEATURES = ("quantity", "text_stats", "keywords", "brand", "dimensions", "tfidf", "pack_totals", "ridge_oof")
# LightGBM's own seeds (and aliases): set explicitly they override `seed`, so each bag shifts them by its offset
LIGHTGBM_SEEDS = ("data_random_seed", "data_seed", "bagging_seed", "bagging_fraction_seed", "feature_fraction_seed",
                  "extra_seed", "drop_seed", "objective_seed")
# LightGBM parameters amzkit sets itself (under any alias), and what a user sets instead
LIGHTGBM_RESERVED = {
    "num_iterations": "set a dict preset's n_estimators instead (early stopping in the training fold picks the rounds)",
    "early_stopping_round": "set a dict preset's early_stopping_rounds instead",
    "seed": "set the run's seed parameter instead",
    "num_threads": "set the run's num_threads parameter instead",
    "deterministic": "leave it out: amzkit sets it, so that a resumed run matches its kept folds",
    "force_col_wise": "leave it out: amzkit sets it, so that a resumed run matches its kept folds",
    "force_row_wise": "leave it out: amzkit sets force_col_wise",
}
LIGHTGBM_DOCS = "https://lightgbm.readthedocs.io/en/stable/Parameters.html"


@functools.cache
def lightgbm_names() -> dict[str, str]:
    """Every LightGBM parameter name and alias -> its main name, from the installed LightGBM ({} if it cannot tell).
    Read once per process; callers must not change it."""
    try:
        table = lgb.basic._ConfigAliases._get_all_param_aliases()  # LightGBM's own alias table (LGBM_DumpParamAliases)
    except Exception:  # noqa: BLE001 - a LightGBM without it: names are then not checked
        return {}
    return {alias: name for name, aliases in table.items() for alias in (name, *aliases)}


def check_lightgbm_params(params: dict, where: str) -> None:
    """A misspelt LightGBM parameter, or one amzkit sets itself, is an error naming it and what to do."""
    names = lightgbm_names()
    unknown = [key for key in params if names and key not in names]
    if unknown:
        hints = {key: difflib.get_close_matches(key, list(names), n=2) for key in unknown}
        raise ValueError(f"{where}: LightGBM has no parameter {', '.join(f'{k!r}' for k in unknown)} ("
                         + "; ".join(f"{k!r}: did you mean {' or '.join(v)}?" if v else f"{k!r}: no close name"
                                     for k, v in hints.items()) + f"); its parameters: {LIGHTGBM_DOCS}")
    main_names = {key: names.get(key, key) for key in params}
    reserved = {key: LIGHTGBM_RESERVED[name] for key, name in main_names.items() if name in LIGHTGBM_RESERVED}
    if reserved:
        raise ValueError(f"{where}: amzkit sets {sorted(reserved)} itself: "
                         + "; ".join(f"{key!r}: {what}" for key, what in reserved.items()))


def merge_lightgbm_params(base: dict, override: dict) -> dict:
    """`base` updated by `override`, where an override under an alias replaces the base's key under any name
    (LightGBM would let the main name win over an alias)."""
    names = lightgbm_names()
    overridden = {names.get(key, key) for key in override}
    return {**{k: v for k, v in base.items() if names.get(k, k) not in overridden}, **override}


class TreeLearner(Learner):
    """A gradient-boosted tree learner on a FeatureSet, on log1p(target) unless its preset says raw."""

    model_suffix: str  # of the fold model files its library's save_model writes
    importance_kind = "gain"  # what _importance measures: the importance table's column and the plot's axis

    def __init__(self, features: Sequence[str] = DEFAULT_FEATURES, embeddings: Sequence[str] = (),
                 tfidf_dim: int = TFIDF_DIM, group_by: str = "", valid_fraction: float = VALID_FRACTION,
                 refit: bool = True, num_threads: int = 0, params: dict | None = None, bags: int = 1):
        self.features = features
        self.embeddings = embeddings
        self.tfidf_dim = tfidf_dim
        self.group_by = group_by
        self.valid_fraction = valid_fraction
        self.refit = refit
        self.num_threads = num_threads
        self.params = params
        self.bags = bags

    # --- what subclasses provide

    @abstractmethod
    def _train(self, x, y, weight, x_valid, y_valid, rounds: int | None, seed: int):
        """The library's model on (x, y) with random `seed`: early stopping on (x_valid, y_valid) when given, else
        `rounds` trees."""

    @abstractmethod
    def _best_rounds(self, model) -> int:
        """Trees the early stopping kept."""

    @abstractmethod
    def _predict(self, model, x) -> np.ndarray:
        """Raw predictions of `model` (on the training target's scale)."""

    @abstractmethod
    def _importance(self, model) -> np.ndarray:
        """Importance per column of `model`."""

    def target_transform(self) -> str:
        return "log1p"

    # --- the protocol

    def prepare(self, inputs: RunInputs) -> TreeLearner:
        self.check_settings()
        return self.prepare_with(inputs, assemble_features(inputs, self.features, self.embeddings, self.tfidf_dim))

    def check_settings(self) -> None:
        """The learner's own settings, refused before any feature is built (the free cores are measured once, in
        prepare_with)."""
        check_num_threads(self.num_threads)
        if isinstance(self.valid_fraction, bool) or not isinstance(self.valid_fraction, int | float) \
                or not 0 <= self.valid_fraction <= MAX_VALID_FRACTION:
            raise ValueError(f"valid_fraction must be in [0, {MAX_VALID_FRACTION}] (0: no holdout; the holdout is "
                             f"1/round(1/valid_fraction) of the training rows: 0.1 -> 1/10, 0.3 -> 1/3, 0.4 -> 1/2), "
                             f"got {self.valid_fraction!r}")
        check_bag_settings(self.bags, self.refit)

    def prepare_with(self, inputs: RunInputs, features: FeatureSet) -> TreeLearner:
        """`prepare` with a feature set built elsewhere (a benchmark's synthetic matrix, a tuner's cached one)."""
        self.check_settings()
        self.features_ = features
        self.inputs_ = inputs
        self.threads_ = resolve_threads(self.num_threads)
        self.group_of_ = None
        if self.group_by:
            names = features.static_names
            if self.group_by not in names:
                raise ValueError(f"group_by {self.group_by!r} is not a feature column; pick one of {names}")
            column = features.static[:, names.index(self.group_by)]
            self.group_of_ = np.where(np.isnan(column), -1, column)
        self._after_prepare()
        return self

    def _after_prepare(self) -> None:
        """What a subclass derives once the inputs are known."""

    def prepared_attributes(self) -> set[str]:
        return {"inputs_", "threads_", "features_", "group_of_"}

    def fit(self, rows, y, weight=None) -> TreeLearner:
        self._check_prepared()
        rows, y = np.asarray(rows), np.asarray(y, dtype=float)
        real = rows < self.inputs_.n_train
        for transform in self.features_.transforms:  # learnt from labelled train rows only
            transform.fit(rows[real], y[real])
        x = self.features_.matrix(rows)
        self.model_ = self._fit_rows(rows, x, y, weight)
        self.group_models_ = {}
        if self.group_of_ is not None:
            for group in np.unique(self.group_of_[rows]):
                inside = self.group_of_[rows] == group
                if (inside & real).sum() >= MIN_GROUP_ROWS:
                    self.group_models_[group] = self._fit_rows(rows[inside], x[inside], y[inside],
                                                               None if weight is None else weight[inside])
        return self

    def _fit_rows(self, rows, x, y, weight) -> list:
        """`bags` models (seeds seed, seed + 1, ...): each early-stopped on a held-out share of the real training
        rows (the same rows for every bag), then (refit) trained on all rows with the trees it chose."""
        target = self._target(y)
        watch = self._watch_rows(rows)
        models = []
        for seed in range(self.inputs_.seed, self.inputs_.seed + self.bags):
            if not watch.any():
                models.append(self._train(x, target, weight, None, None, None, seed))
                continue
            keep = ~watch
            model = self._train(x[keep], target[keep], None if weight is None else weight[keep], x[watch],
                                target[watch], None, seed)
            if self.refit:
                model = self._train(x, target, weight, None, None, self._best_rounds(model), seed)
            models.append(model)
        return models

    def _predict_bag(self, models: list, x) -> np.ndarray:
        """The mean raw prediction of a bag of models."""
        return np.mean([self._predict(model, x) for model in models], axis=0)

    def _watch_rows(self, rows: np.ndarray) -> np.ndarray:
        """The early-stopping rows: `valid_fraction` of the real rows, whole products at a time (seeded)."""
        return holdout_mask(rows, self.inputs_.n_train, self.valid_fraction, self.inputs_.seed, self.inputs_.groups)

    def _target(self, y: np.ndarray) -> np.ndarray:
        return np.log1p(y) if self.target_transform() == "log1p" else y

    def _to_price(self, raw: np.ndarray) -> np.ndarray:
        return floor_prediction(np.expm1(raw) if self.target_transform() == "log1p" else raw)

    def predict(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        x = self.features_.matrix(rows)
        raw = self._predict_bag(self.model_, x)
        for group, models in self.group_models_.items():
            inside = self.group_of_[rows] == group
            if inside.any():
                raw[inside] = self._predict_bag(models, x[inside])
        return self._to_price(raw)

    def fit_report(self) -> dict:
        """The trees of each bag's model (early stopping's choice when a holdout was used; with refit, the trees
        the refit on all training rows grew), and the per-group models' count."""
        if not hasattr(self, "model_"):
            return {}
        report = {"trees": [self._best_rounds(model) for model in self.model_]}
        if self.group_of_ is not None:  # with group_by: how many groups had the rows for a model of their own
            report["group_models"] = len(self.group_models_)
        return report

    def _importance_kind(self, model) -> str:
        return self.importance_kind

    def feature_importance(self) -> pd.Series:
        """Importance per column, the mean over the fit's models, named after what it measures."""
        importance = np.mean([self._importance(model) for model in self.model_], axis=0)
        return pd.Series(importance, index=self.features_.names, dtype=float,
                         name=self._importance_kind(self.model_[0]))

    def feature_groups(self) -> dict[str, str]:
        return dict(zip(self.features_.names, self.features_.groups, strict=True))

    def save_fold(self, folder: Path, fold: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for bag, model in enumerate(self.model_):  # fold<k>, then fold<k>_bag<b> for further seeds
            path = folder / f"fold{fold}{'' if bag == 0 else f'_bag{bag}'}{self.model_suffix}"
            partial = path.with_name(f".{path.name}")  # its suffix kept: XGBoost picks the file format by it
            try:
                model.save_model(str(partial))
                os.replace(partial, path)  # a kill mid-write leaves the hidden partial file, never a cut model
            finally:
                partial.unlink(missing_ok=True)

    def describe(self) -> dict:
        return {**super().describe(), "features": list(self.features), "embeddings": list(self.embeddings),
                "bags": self.bags, "n_features": len(self.features_.names) if hasattr(self, "features_") else None}


class LightGBMLearner(TreeLearner):
    """LightGBM from a preset (a built-in name, a saved preset's name, or a preset dict) plus `params` overrides."""

    name = "lightgbm"
    model_suffix = ".txt"

    def __init__(self, preset: str | dict = "default", features: Sequence[str] = DEFAULT_FEATURES,
                 embeddings: Sequence[str] = (), tfidf_dim: int = TFIDF_DIM, group_by: str = "",
                 valid_fraction: float = VALID_FRACTION, refit: bool = True, num_threads: int = 0,
                 params: dict | None = None, bags: int = 1):
        super().__init__(features, embeddings, tfidf_dim, group_by, valid_fraction, refit, num_threads, params, bags)
        self.preset = preset

    def config(self) -> dict:
        """The resolved preset with `params` and the seed/threads/determinism settings applied."""
        work_dir = self.inputs_.work_dir if hasattr(self, "inputs_") else None
        preset = check_preset(dict(self.preset)) if isinstance(self.preset, dict) \
            else resolve_preset(self.preset, work_dir)
        names = lightgbm_names()  # a preset's thread count (the roadmap's n_jobs: -1) gives way to the run's
        own = {k: v for k, v in preset["params"].items() if names.get(k, k) != "num_threads"}
        check_lightgbm_params(own, f"preset {self.preset if isinstance(self.preset, str) else '(dict)'}'s params")
        check_lightgbm_params(self.params or {}, "lgb_params")
        seed = self.inputs_.seed if hasattr(self, "inputs_") else DEFAULT_SEED
        params = {**merge_lightgbm_params(own, self.params or {}), "seed": seed, "deterministic": True,
                  "force_col_wise": True}
        params["num_threads"] = getattr(self, "threads_", None) or resolve_threads(self.num_threads)
        return {**preset, "params": params}

    def _after_prepare(self) -> None:
        self.config_ = self.config()

    def prepared_attributes(self) -> set[str]:
        return super().prepared_attributes() | {"config_"}

    def set_params(self, **params) -> LightGBMLearner:
        super().set_params(**params)
        if hasattr(self, "inputs_"):
            self.config_ = self.config()
        return self

    def target_transform(self) -> str:
        return (self.config_ if hasattr(self, "config_") else self.config())["target"]

    def _train(self, x, y, weight, x_valid, y_valid, rounds, seed):
        config = self.config_
        shift = seed - self.inputs_.seed  # the bag: a user's explicit sub-seeds move with it, as `seed` does
        params = {**config["params"], "seed": seed}
        params.update({key: int(params[key]) + shift for key in LIGHTGBM_SEEDS if key in params})
        names = self.features_.names
        kwargs = {"feature_name": names, "categorical_feature": self.features_.categorical or "auto"}
        train_set = lgb.Dataset(x, y, weight=weight, **kwargs)
        try:
            if x_valid is None:
                return lgb.train(params, train_set, num_boost_round=rounds or config["n_estimators"])
            valid_set = lgb.Dataset(x_valid, y_valid, reference=train_set, **kwargs)
            return lgb.train(params, train_set, num_boost_round=config["n_estimators"], valid_sets=[valid_set],
                             callbacks=[lgb.early_stopping(config["early_stopping_rounds"], verbose=False)])
        except lgb.basic.LightGBMError as err:
            if "Check failed" not in str(err):  # a parameter's range check ("(learning_rate) > (0.0)") is named
                raise
            raise ValueError(f"LightGBM refused to train: {str(err).strip()}. A value out of range is usually one "
                             f"you set: -p lgb_params {json.dumps(self.params or {}, default=str)} (preset "
                             f"{self.preset if isinstance(self.preset, str) else '(dict)'!r})") from err

    def _best_rounds(self, model) -> int:
        return max(1, model.best_iteration or model.current_iteration())

    def _predict(self, model, x):
        return model.predict(x, num_iteration=model.best_iteration or None)

    def _importance(self, model):
        return model.feature_importance("gain")

    def describe(self) -> dict:
        """The LightGBM params as trained, the preset's rounds and target, and the learner's other settings."""
        preset = self.preset if isinstance(self.preset, str) else "(dict)"
        settings = {k: v for k, v in super().describe()["params"].items() if k not in ("preset", "params")}
        rounds = {k: v for k, v in self.config_.items() if k not in ("params", "info")}
        return {**super().describe(), "preset": preset, "params": self.config_["params"], "settings": settings,
                "preset_config": rounds}

    def resume_key(self) -> dict:
        """Without the thread count: with `deterministic` LightGBM gives the same model on any number of threads."""
        described = self.describe()
        return {**described, "params": {k: v for k, v in described["params"].items() if k != "num_threads"},
                "settings": {k: v for k, v in described["settings"].items() if k != "num_threads"}}


class _BoosterLearner(TreeLearner):
    """XGBoost / CatBoost: the library's estimator from its table's defaults and the user's checked `params`."""

    table: BoosterTable

    def _estimator(self) -> type:
        """The library's regressor class (an optional dependency: imported when the learner is used)."""
        return estimator_class(self.table)

    def _after_prepare(self) -> None:
        self.params_ = booster_params(self.table, self.params, self._estimator())

    def prepared_attributes(self) -> set[str]:
        return super().prepared_attributes() | {"params_"}

    def set_params(self, **params) -> _BoosterLearner:
        super().set_params(**params)
        if hasattr(self, "inputs_"):  # prepared: the params trained from now on, checked
            self.params_ = booster_params(self.table, self.params, self._estimator())
        return self

    def _settings(self, seed: int, rounds: int | None, stopping: bool) -> dict:
        params = {**self.table.defaults, **self.params_}
        if not stopping:
            for key in self.table.stopping_keys:
                params.pop(key, None)
            if rounds:
                params[self.table.rounds_key] = rounds
        return {**params, **self._managed(seed)}

    @abstractmethod
    def _managed(self, seed: int) -> dict:
        """The keys the run sets (seed, threads, quiet): never the user's."""

    def describe(self) -> dict:
        """The library's parameters as trained (the table's defaults with the user's params), seed and threads."""
        described = super().describe()
        if not hasattr(self, "params_"):
            return described
        settings = {k: v for k, v in described["params"].items() if k != "params"}
        return {**described, "params": {**self.table.defaults, **self.params_}, "settings": settings}


class XGBoostLearner(_BoosterLearner):
    """XGBoost (hist, absolute error on log1p target, early stopping) on the run's feature set."""

    name = "xgboost"
    table = XGBOOST
    model_suffix = ".json"

    def _managed(self, seed: int) -> dict:
        return {"random_state": seed, "n_jobs": self.threads_}

    def _train(self, x, y, weight, x_valid, y_valid, rounds, seed):
        model = self._estimator()(**self._settings(seed, rounds, stopping=x_valid is not None))
        if x_valid is None:
            return model.fit(x, y, sample_weight=weight, verbose=False)
        return model.fit(x, y, sample_weight=weight, eval_set=[(x_valid, y_valid)], verbose=False)

    def _best_rounds(self, model) -> int:
        best = getattr(model, "best_iteration", None)
        return int(best) + 1 if best is not None else int(model.n_estimators)

    def _predict(self, model, x):
        return model.predict(x)

    def _importance(self, model):
        return np.asarray(model.feature_importances_, dtype=float)

    def _importance_kind(self, model) -> str:
        return getattr(model, "importance_type", None) or "gain"  # its param (default gain for trees), normalised


class CatBoostLearner(_BoosterLearner):
    """CatBoost (MAE on log1p target, early stopping) on the run's feature set."""

    name = "catboost"
    table = CATBOOST
    model_suffix = ".cbm"
    importance_kind = "prediction_values_change"  # CatBoost's default importance, not a split gain

    def _managed(self, seed: int) -> dict:
        return {"random_seed": seed, "thread_count": self.threads_, "verbose": False, "allow_writing_files": False}

    def _train(self, x, y, weight, x_valid, y_valid, rounds, seed):
        model = self._estimator()(**self._settings(seed, rounds, stopping=x_valid is not None))
        if x_valid is None:
            return model.fit(x, y, sample_weight=weight)
        return model.fit(x, y, sample_weight=weight, eval_set=(x_valid, y_valid), use_best_model=True)

    def _best_rounds(self, model) -> int:
        return int(model.get_best_iteration() or model.tree_count_ - 1) + 1

    def _predict(self, model, x):
        return model.predict(x, thread_count=self.threads_)  # its default is every core

    def _importance(self, model):
        return np.asarray(model.get_feature_importance(), dtype=float)
