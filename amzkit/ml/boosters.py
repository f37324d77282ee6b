"""XGBoost's and CatBoost's parameters as the tree learners set them: defaults, the keys the run sets, aliases.

A user's `params` are checked against the library's own constructor (every keyword of the estimator and its
bases, plus the booster-only keys a table lists): a misspelt key is an error naming the valid ones, never a
warning in a log; another spelling of a default's key (`n_estimators` for CatBoost's `iterations`) replaces
that default instead of clashing with it; a key the run sets (seed, threads) is refused with the parameter that
sets it, since the library would let the alias win (every bag would train with one seed).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class BoosterTable:
    """One library's defaults, the keys the run sets (-> what sets them), and other spellings -> the table's."""

    learner: str
    rounds_key: str  # the number of trees (set to early stopping's choice when a model is refit)
    defaults: dict
    managed: dict[str, str]
    aliases: dict[str, str]
    extra_keys: tuple[str, ...] = ()  # keys the library takes through **kwargs (booster parameters)
    stopping_keys: tuple[str, ...] = ()  # dropped when a model trains without early stopping


_SEED = "the run's seed (-p seed; bags move it)"
_THREADS = "the learner's num_threads"

XGBOOST = BoosterTable(
    "xgboost", "n_estimators",
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
)

CATBOOST = BoosterTable(
    "catboost", "iterations",
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


def booster_params(table: BoosterTable, params: Mapping | None, estimator: type) -> dict:
    """The user's `params` in the table's spelling, checked against `estimator`; refused with what to do."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ValueError(f"learner {table.learner!r}: params must be a dict of {table.learner} parameters, e.g. "
                         f"{{\"max_depth\": 6}}, got {params!r}")
    accepted = (constructor_keys(estimator) | set(table.extra_keys)) - set(table.managed)
    out: dict = {}
    for key, value in params.items():
        name = table.aliases.get(key, key)
        if name in table.managed:
            raise ValueError(f"learner {table.learner!r}: params {key!r} is set by {table.managed[name]}; leave it "
                             "out of params")
        if name not in accepted and key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted | set(table.aliases)), n=3)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise ValueError(f"learner {table.learner!r}: {key!r} is not a {table.learner} parameter; {hint}"
                             f"it takes {sorted(accepted)}")
        name = name if name in accepted else key
        if name in out:
            raise ValueError(f"learner {table.learner!r}: params give {name!r} twice (as {key!r} too); keep one")
        out[name] = value
    return out
