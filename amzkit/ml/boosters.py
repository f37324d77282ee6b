"""XGBoost's and CatBoost's parameters as the tree learners set them: defaults, the keys the run sets, aliases.

A user's `params` are checked against the library itself: CatBoost's against every keyword of its constructor,
XGBoost's by XGBoost's own parameter validation (a one-row booster configured with the run's settings: what it
says it would not use, and a value it refuses), or, for a stand-in estimator, its constructor and the booster-only
keys the table lists. A misspelt key is an error naming the closest valid ones, never a warning in a log; another
spelling of a default's key (`n_estimators` for CatBoost's `iterations`) replaces that default instead of clashing
with it; a key the run sets (seed, threads) is refused with the parameter that sets it, since the library would
let the alias win (every bag would train with one seed). `check_booster_params` is kaggle build's check: the same,
when the library is installed where the build runs, else a note that it could not be made.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from amzkit.ml.learners import importable, library_number


@dataclass(frozen=True)
class BoosterTable:
    """One library's defaults, the keys the run sets (-> what sets them), and other spellings -> the table's."""

    learner: str
    estimator: str  # "module:Class" of the library's regressor
    rounds_key: str  # the number of trees (set to early stopping's choice when a model is refit)
    defaults: dict
    managed: dict[str, str]
    aliases: dict[str, str]
    extra_keys: tuple[str, ...] = ()  # keys the library takes through **kwargs (booster parameters)
    stopping_keys: tuple[str, ...] = ()  # dropped when a model trains without early stopping
    # (estimator, settings) -> (the settings' keys the library says it would not use, every name it knows for
    # them); None where it cannot tell (a stand-in estimator). Without it the constructor and extra_keys decide.
    library_check: Callable[[type, dict], tuple[set[str], set[str]] | None] | None = None


_SEED = "the run's seed (-p seed; bags move it)"
_THREADS = "the learner's num_threads"

# XGBoost's warning naming the parameters it would not use ("Parameters: { "max_dpeth" } are not used.")
XGBOOST_NOT_USED = re.compile(r"Parameters: \{(.*?)\} are not used", re.S)


def xgboost_check(estimator: type, settings: dict) -> tuple[set[str], set[str]] | None:
    """(the keys of `settings` XGBoost would not use, the parameter names it knows for them): XGBoost's own
    validation, from a one-row booster configured with `settings` as XGBRegressor passes them and its config saved
    (no tree is grown); a value XGBoost refuses (max_depth -1, an unknown objective) is an error in its words.
    None when `estimator` is no XGBoost model (a stand-in)."""
    if not hasattr(estimator, "get_xgb_params"):
        return None
    xgb = importlib.import_module(estimator.__module__.partition(".")[0])
    booster = estimator(**{**settings, "n_jobs": 1}).get_xgb_params()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            rows = xgb.DMatrix(np.zeros((1, 1)), label=[0.0])  # held: the booster keeps only a weak reference
            config = json.loads(xgb.Booster(booster, [rows]).save_config())
        except xgb.core.XGBoostError as err:
            words = re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", str(err).strip().splitlines()[0])
            raise ValueError(f"learner 'xgboost': XGBoost refuses these params: {words}") from None
    unused = {name for w in said for found in XGBOOST_NOT_USED.finditer(str(w.message))
              for name in re.findall(r'"([^"]+)"', found.group(1))}
    return unused & set(settings), _config_names(config)


def _config_names(config) -> set[str]:
    """Every parameter name in an XGBoost config (the keys that hold a value, in any section)."""
    if isinstance(config, list):
        return {name for item in config for name in _config_names(item)}
    if not isinstance(config, dict):
        return set()
    return {key for key, value in config.items() if isinstance(value, str) and key != "name"} | {
        name for value in config.values() if isinstance(value, dict | list) for name in _config_names(value)}


XGBOOST = BoosterTable(
    "xgboost", "xgboost:XGBRegressor", "n_estimators",
    defaults={"n_estimators": 3000, "learning_rate": 0.05, "max_depth": 8, "min_child_weight": 5, "subsample": 0.8,
              "colsample_bytree": 0.7, "reg_lambda": 1.0, "objective": "reg:absoluteerror", "tree_method": "hist",
              "early_stopping_rounds": 100},
    managed={"random_state": _SEED, "n_jobs": _THREADS},
    aliases={"eta": "learning_rate", "lambda": "reg_lambda", "alpha": "reg_alpha", "min_split_loss": "gamma",
             "num_boost_round": "n_estimators", "seed": "random_state", "nthread": "n_jobs"},
    # XGBoost's booster parameters that its constructor takes through **kwargs (its "XGBoost Parameters" page)
    extra_keys=("disable_default_eval_metric", "updater", "refresh_leaf", "process_type", "max_cached_hist_node",
                "sketch_eps", "sample_type", "normalize_type", "rate_drop", "one_drop", "skip_drop", "feature_selector",
                "top_k", "huber_slope", "quantile_alpha", "tweedie_variance_power", "aft_loss_distribution",
                "aft_loss_distribution_scale", "seed_per_iteration", "lambdarank_pair_method",
                "lambdarank_num_pair_per_sample", "lambdarank_normalization", "lambdarank_unbiased",
                "lambdarank_bias_norm", "ndcg_exp_gain"),
    stopping_keys=("early_stopping_rounds",),
    library_check=xgboost_check,
)

CATBOOST = BoosterTable(
    "catboost", "catboost:CatBoostRegressor", "iterations",
    defaults={"iterations": 3000, "learning_rate": 0.05, "depth": 8, "loss_function": "MAE", "od_type": "Iter",
              "od_wait": 100},
    managed={"random_seed": _SEED, "thread_count": _THREADS, "verbose": "the kit (quiet)",
             "allow_writing_files": "the kit (no catboost_info folder)",
             "use_best_model": "the kit (early stopping keeps the holdout's best trees; the refit has no holdout)"},
    aliases={"n_estimators": "iterations", "num_boost_round": "iterations", "num_trees": "iterations",
             "max_depth": "depth", "eta": "learning_rate", "early_stopping_rounds": "od_wait",
             "objective": "loss_function", "random_state": "random_seed", "reg_lambda": "l2_leaf_reg",
             "n_jobs": "thread_count", "verbose_eval": "verbose", "silent": "verbose", "logging_level": "verbose",
             "max_bin": "border_count", "colsample_bylevel": "rsm", "min_child_samples": "min_data_in_leaf",
             "num_leaves": "max_leaves"},
    stopping_keys=("od_type", "od_wait"),
)


def constructor_keys(estimator: type) -> set[str]:
    """Every named keyword of `estimator`'s constructor and its bases' (XGBRegressor takes XGBModel's)."""
    keys = set()
    for cls in estimator.__mro__:
        if "__init__" in vars(cls) and cls is not object:
            keys |= {name for name, p in inspect.signature(cls.__init__).parameters.items()
                     if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return keys


BOOSTERS: dict[str, BoosterTable] = {table.learner: table for table in (XGBOOST, CATBOOST)}


def estimator_class(table: BoosterTable) -> type:
    """The library's regressor class (an optional dependency: imported when the learner is used)."""
    module, _, name = table.estimator.partition(":")
    return getattr(importlib.import_module(module), name)


def check_booster_params(table: BoosterTable, params: Mapping | None) -> str:
    """kaggle build's check of a tree learner's `params`, as booster_params makes it when the run prepares: against
    the library when it is installed here ("" then), else all but the names and values, and a note saying so."""
    module = table.estimator.partition(":")[0]
    installed = importable(module)
    if isinstance(params, Mapping):  # as the learner takes them (make_learner): "300" is 300
        params = {key: library_number(value) for key, value in params.items()}
    booster_params(table, params, estimator_class(table) if installed else None)
    if installed or not params:
        return ""
    return (f"{table.learner} is not installed here, so its params {sorted(params)} could not be checked against it "
            f"(a misspelt one stops the kernel on Kaggle once 01 and 02 have run): pip install {module} and build "
            "again to have them checked")


def booster_params(table: BoosterTable, params: Mapping | None, estimator: type | None) -> dict:
    """The user's `params` in the table's spelling, checked against `estimator` (None: names and values are not
    checked, for a build where the library is not installed); refused with what to do."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ValueError(f"learner {table.learner!r}: params must be a dict of {table.learner} parameters, e.g. "
                         f"{{\"max_depth\": 6}}, got {params!r}")
    keys = constructor_keys(estimator) - set(table.managed) if estimator is not None else None
    out: dict = {}
    given: dict[str, str] = {}  # the table's name -> the user's
    for key, value in params.items():
        name = table.aliases.get(key, key)
        if name in table.managed:
            raise ValueError(f"learner {table.learner!r}: params {key!r} is set by {table.managed[name]}; leave it "
                             "out of params")
        if keys is not None and name not in keys | set(table.extra_keys):
            name = key  # the alias's target is not this library version's: the user's spelling goes through
        if name in out:
            raise ValueError(f"learner {table.learner!r}: params give {name!r} twice (as {key!r} too); keep one")
        out[name], given[name] = value, key
    if estimator is not None:
        _check_names(table, out, given, estimator, keys)
    rounds = out.get(table.rounds_key)
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
        raise ValueError(f"learner {table.learner!r}: params {given[table.rounds_key]!r} (the number of trees) must "
                         f"be a whole number >= 1, got {rounds!r}")
    return out


def _check_names(table: BoosterTable, out: dict, given: dict[str, str], estimator: type, keys: set[str]) -> None:
    """Refuse a key of `out` the library does not take: by its own validation (table.library_check) where it can
    tell, else by `keys` (its constructor's) and the table's extra_keys."""
    verdict = table.library_check(estimator, {**table.defaults, **out}) if table.library_check else None
    unused, known = verdict if verdict is not None else (set(), set())
    accepted = (keys | known | set(table.extra_keys)) - set(table.managed)
    # a name XGBoost does not flag is one it uses, though no table lists it
    unknown = [name for name in out if name not in accepted and (verdict is None or name in unused)]
    for name in unknown:
        key = given[name]
        close = difflib.get_close_matches(key, sorted(accepted | set(table.aliases)), n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"learner {table.learner!r}: {key!r} is not a {table.learner} parameter; {hint}"
                         f"it takes {sorted(accepted)}")
    if idle := [given[name] for name in out if name in unused and name in accepted]:
        settings = {**table.defaults, **out}
        where = ", ".join(f"{k} {settings.get(k, default)}" for k, default in
                          (("booster", "gbtree"), ("objective", "?"), ("tree_method", "?")))
        raise ValueError(f"learner {table.learner!r}: {table.learner} would not use params {idle} with these "
                         f"settings ({where}): they belong to another booster, objective or tree method. Set the one "
                         "they belong to, or leave them out")
