"""Stage 03: one cross-validated run of any registered learner, in the work folder's shared folds.

- Folds are made once per work folder (`03_train/folds.csv` + `folds.json`) and reused by every run and by
  04_ensemble: grouped by product (the default), stratified on the binned log target, or plain KFold.
- Every learner (ml.learners.LEARNERS) goes through the one CV loop (ml.cv): fit on the training rows of a
  fold only, scored on the fold's rows, which it never saw; its run folder holds OOF and test predictions
  (and each fold model's), metrics, importance when the learner has one, and a row of the runs log.
- A run resumes: each finished fold is kept in `<run>/progress/` with a fingerprint of the run, so a killed
  session starts again at its first unfinished fold and ends with the same result; a finished run called again
  with the same fingerprint (kept in its metrics.json) is kept as it is.
- Pseudo-labels (`pseudo_label_run`): the run also trains on that run's most confident test predictions and is
  cross-validated twice in the same folds, with and without them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

import amzkit
from amzkit.core.io import frame_sha256, id_hash, read_json, rows_sha256, write_csv, write_json
from amzkit.core.metric import smape
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import Schema, get_schema
from amzkit.core.workdir import check_name, stage_dir
from amzkit.images.features import IMAGE_FEATURES_DIR
from amzkit.ml.base import DEFAULT_SEED, Learner, RunInputs, fp16_overflow_words
from amzkit.ml.boosters import BOOSTERS, check_booster_params
from amzkit.ml.cv import cross_validate, devices_for_folds
from amzkit.ml.featureset import FeatureSet, check_feature_lists
from amzkit.ml.folds import FOLD_STRATEGIES, FOLDS_FILE, FOLDS_INFO_FILE, check_trainable, folds_around
from amzkit.ml.learners import (
    LEARNERS,
    check_learner_params,
    check_learner_settings,
    get_learner,
    learner_signature,
    library_number,
    make_learner,
)
from amzkit.ml.neighbour_prices import CACHE_FOLDER as NEIGHBOURS_DIR
from amzkit.ml.presets import PRESETS_DIR, tuned_on_folds
from amzkit.ml.pseudo import pseudo_labels
from amzkit.ml.runs import (
    PROGRESS_DIR,
    PSEUDO_BASELINE_DIR,
    USER_ERRORS,
    mark_rerun,
    save_run,
    unmark_rerun,
)
from amzkit.ml.transforms import TFIDF_DIM
from amzkit.ml.trees import (
    DEFAULT_FEATURES,
    MIN_GROUP_ROWS,
    check_lightgbm_params,
    lightgbm_names,
    merge_lightgbm_params,
)
from amzkit.stages.submit_sources import ENSEMBLE_SOURCE

# what 03 (and the features it builds) keeps in 03_train/ beside the run folders, and 05's name of 04's blend
RESERVED_RUN_NAMES = (FOLDS_FILE, FOLDS_INFO_FILE, PRESETS_DIR, IMAGE_FEATURES_DIR, NEIGHBOURS_DIR, ENSEMBLE_SOURCE)

PARAMETERS = Parameters(
    Param("run_name", "lgbm", "this run's folder under 03_train/ (letters, digits, _ - .); 04 blends runs by name",
          plain_name=True, reserved=RESERVED_RUN_NAMES,
          reserved_why="03_train keeps its own files and folders under the first five, and 05 takes 04_ensemble for "
                       "04's blend: a run folder of that name would share them"),
    Param("learner", "lightgbm", "lightgbm, xgboost, catboost, ridge_tfidf, knn, mlp, sparse_mlp or finetune",
          choices=tuple(LEARNERS)),
    Param("learner_params", {}, "the learner's own parameters as JSON, e.g. {\"embedding\": \"minilm\", \"k\": 20}"),
    Param("embeddings", ["fashion-siglip:pca:64", "minilm:pca:32", "minilm:knn:20"],
          "01_extract runs: 'run', 'run:pca:N', 'run:topk_corr:K' or 'run:knn:K' (fit inside the folds)"),
    Param("features", list(DEFAULT_FEATURES),
          "feature groups (see ml.featureset.all_feature_groups(); image_meta/colour read 01's image cache)"),
    Param("preset", "default", "LightGBM preset: default, huber, seed, or a saved one (tuned-<run_name>)"),
    Param("lgb_params", {}, "LightGBM parameters over the preset's, as JSON"),
    Param("n_folds", 5, "number of CV folds (shared by every run of the work folder)", low=2, high=50),
    Param("fold_strategy", "group", "group (copies of a product in one fold), stratified or kfold",
          choices=FOLD_STRATEGIES),
    Param("seed", DEFAULT_SEED, "seed of the folds, the models and the inner splits", low=0, high=2**32 - 1),
    Param("group_by", "", "a feature column (e.g. unit_family): one tree model per group with at least "
          f"{MIN_GROUP_ROWS} rows"),
    Param("tfidf_dim", TFIDF_DIM, "width of the in-fold TF-IDF + SVD feature group", low=1),
    Param("num_threads", 0, "threads of the learner; 0: the free cores (mlp, finetune on CPU: all it may use)", low=0),
    Param("tune_trials", 0, "Optuna trials over LightGBM parameters before the run, in all: a rerun adds only the "
          "missing (0: no tuning)", low=0),
    Param("tune_minutes", 30.0, "time budget of the tuning in minutes", low=0, low_open=True),
    Param("pseudo_label_run", "", "an earlier run whose confident test predictions join training (\"\": none)",
          plain_name=True),
    Param("pseudo_label_fraction", 0.5, "share of test rows taken as pseudo-labels, most confident first",
          low=0, low_open=True, high=1),
    Param("pseudo_label_weight", 0.5, "sample weight of a pseudo-labelled row (0..1]", low=0, low_open=True, high=1),
)
D = PARAMETERS.defaults

# Run parameters every learner whose constructor takes them receives from the notebook.
SHARED_LEARNER_PARAMS = ("features", "embeddings", "tfidf_dim", "group_by", "num_threads")


def build_learner(learner: str = D.learner, learner_params: dict | None = None, *, features=D.features,
                  embeddings=D.embeddings, tfidf_dim: int = D.tfidf_dim, group_by: str = D.group_by,
                  num_threads: int = D.num_threads, preset: str | dict = D.preset,
                  lgb_params: dict | None = None) -> Learner:
    """The learner `learner` with its own `learner_params` and the run parameters its constructor takes."""
    accepted = inspect.signature(get_learner(learner)).parameters
    return make_learner(learner, **_learner_arguments(
        learner, accepted, learner_params, features=features, embeddings=embeddings, tfidf_dim=tfidf_dim,
        group_by=group_by, num_threads=num_threads, preset=preset, lgb_params=lgb_params))


def check_learner(learner: str = D.learner, learner_params: dict | None = None, *, features=D.features,
                  embeddings=D.embeddings, tfidf_dim: int = D.tfidf_dim, group_by: str = D.group_by,
                  num_threads: int = D.num_threads, preset: str | dict = D.preset,
                  lgb_params: dict | None = None) -> list[str]:
    """What build_learner refuses of these settings by their names (a learner_params key the learner does not take,
    a run parameter it does not read, ...), and what the learner refuses of its feature groups, LightGBM of
    lgb_params and XGBoost / CatBoost of their params (boosters.check_booster_params) before any data is read, found
    without building the learner: its module is not imported (mlp's and finetune's import torch) and its packages
    need not be installed, as for kaggle build on a laptop. Returns what could not be checked here (a library's
    params where it is not installed), each said in a sentence."""
    signature = learner_signature(learner)
    params = _learner_arguments(learner, signature.parameters, learner_params, features=features,
                                embeddings=embeddings, tfidf_dim=tfidf_dim, group_by=group_by,
                                num_threads=num_threads, preset=preset, lgb_params=lgb_params)
    check_learner_params(learner, params, signature)
    if "features" in params:  # what the learner checks of its feature set when the run is prepared
        check_feature_lists(params["features"], params.get("embeddings", ()))
    if learner == "lightgbm":  # what LightGBMLearner checks of them when the run is prepared
        check_lightgbm_params(params["params"], "lgb_params")
    unchecked = [check_booster_params(BOOSTERS[learner], params.get("params"))] if learner in BOOSTERS else []
    check_learner_settings(learner, **params)  # its own settings, as prepare checks them first
    return [note for note in unchecked if note]


def name_lists(learner_params: dict | None) -> dict:
    """`learner_params` with its features or embeddings given as one name (as the run's own -p embeddings takes
    it) made a list of that name, not read letter by letter."""
    params = dict(learner_params or {})
    for key in ("features", "embeddings"):
        if isinstance(params.get(key), str):
            params[key] = [params[key]]
    return params


def _learner_arguments(learner: str, accepted, learner_params: dict | None, *, features, embeddings, tfidf_dim: int,
                       group_by: str, num_threads: int, preset: str | dict, lgb_params: dict | None) -> dict:
    """The arguments build_learner gives learner `learner` (whose constructor takes `accepted`): its
    `learner_params` with the run parameters it takes; a run setting it would not use is refused."""
    params = name_lists(learner_params)
    misplaced = sorted(k for k in params if k in PARAMETERS and k not in accepted)
    if misplaced:
        raise ValueError(f"learner_params names {misplaced}: {'they are' if len(misplaced) > 1 else 'it is'} a "
                         f"parameter of the run, not of learner {learner!r}: set it as such (-p {misplaced[0]} "
                         f"<value>, or {misplaced[0]}= in train_run) and remove it from learner_params")
    shared = {"features": list(features), "embeddings": list(embeddings), "tfidf_dim": tfidf_dim,
              "group_by": group_by, "num_threads": num_threads}
    for key in SHARED_LEARNER_PARAMS:
        if key in accepted and key not in params:
            params[key] = shared[key]
    _refuse_dropped_inputs(learner, accepted, params, shared)
    if group_by and "group_by" not in accepted:
        raise ValueError(f"group_by applies to the tree learners (lightgbm, xgboost, catboost), not {learner!r}")
    if learner == "lightgbm":
        own = params.get("params")
        if own is not None and not isinstance(own, dict):
            raise ValueError("learner 'lightgbm': learner_params' params must be a dict of LightGBM parameters, e.g. "
                             f"{{\"num_leaves\": 63}}, got {own!r}")
        params["params"] = own or {}  # null (YAML's `params:` left empty) is none, as LightGBMLearner takes it
        _refuse_lightgbm_settings_given_twice(params, preset, lgb_params or {})
        params.setdefault("preset", preset)
        params["params"] = merge_lightgbm_params(lgb_params or {}, params["params"])
    elif lgb_params or preset != D.preset:
        raise ValueError(f"preset and lgb_params apply to learner 'lightgbm', not {learner!r}: give {learner!r} its "
                         "parameters in learner_params")
    return params


def _refuse_lightgbm_settings_given_twice(learner_params: dict, preset: str | dict, lgb_params: dict) -> None:
    """The preset, or a LightGBM param (under any of its names), set both as a run parameter and in
    learner_params with two values is an error naming both, not one of them dropped (one value written twice,
    10 and YAML's text '1e1', is one value)."""
    if "preset" in learner_params and preset != D.preset and learner_params["preset"] != preset:
        raise ValueError(f"preset is given twice: -p preset {preset!r} and learner_params' preset "
                         f"{learner_params['preset']!r}; keep one of them")
    names = lightgbm_names()
    own = {names.get(key, key): (key, value) for key, value in (learner_params.get("params") or {}).items()}
    twice = [f"lgb_params {key!r}: {value!r} vs learner_params' params {own[main][0]!r}: {own[main][1]!r}"
             for key, value in lgb_params.items()
             if (main := names.get(key, key)) in own and library_number(own[main][1]) != library_number(value)]
    if twice:
        raise ValueError(f"LightGBM parameters given twice with two values ({'; '.join(twice)}); keep one of them")


def _refuse_dropped_inputs(learner: str, accepted, params: dict, shared: dict) -> None:
    """A model input set away from its default (features, embeddings, tfidf_dim) for a learner that takes none
    of it (ridge_tfidf reads the text alone, knn one run named in learner_params, finetune the text): an error,
    not a run that silently leaves it out and scores as if it added nothing."""
    dropped = [key for key in ("features", "embeddings", "tfidf_dim")
               if key not in accepted and key not in params and shared[key]
               and shared[key] != (list(getattr(D, key)) if isinstance(shared[key], list) else getattr(D, key))]
    if not dropped:
        return
    given = ", ".join(f"-p {key} {shared[key]!r}" for key in dropped)
    hint = ("; its one embedding run goes in learner_params, e.g. -p learner_params "
            "'{\"embedding\": \"minilm\", \"k\": 20}'" if learner == "knn" else "")
    empty = " or ".join(f"-p {key} '[]'" for key in dropped if key != "tfidf_dim")
    empty = f" (or {empty})" if empty else ""
    raise ValueError(f"learner {learner!r} takes no {' or '.join(dropped)}: {given} would not be used{hint}. "
                     f"Leave {'them' if len(dropped) > 1 else 'it'} at the default{empty} for this run, or use a "
                     "learner that reads them (lightgbm, xgboost, catboost, mlp)")


def train_run(
    data: dict[str, pd.DataFrame], schema: str | Schema, work_dir: str | Path, run_name: str = D.run_name,
    features=D.features, embeddings=D.embeddings, *, learner: str | Learner = D.learner,
    learner_params: dict | None = None, preset: str | dict = D.preset, lgb_params: dict | None = None,
    n_folds: int = D.n_folds, seed: int = D.seed, fold_strategy: str = D.fold_strategy,
    num_threads: int = D.num_threads, group_by: str = D.group_by, tfidf_dim: int = D.tfidf_dim,
    data_dir: str | Path | None = None, pseudo_label_run: str = D.pseudo_label_run,
    pseudo_label_fraction: float = D.pseudo_label_fraction, pseudo_label_weight: float = D.pseudo_label_weight,
    progress: bool = True, fold_devices: list[str] | None = None, rerun_marked: bool = False,
) -> dict:
    """Cross-validate one run and write its folder under 03_train/; returns its metrics.

    `learner` is a registry name (its parameters: `learner_params`, plus the run parameters its constructor
    takes) or a Learner object. Finished folds are kept, so calling again after an interruption resumes;
    a finished run called again with the same setup returns its metrics untouched.
    `fold_devices` (None: every usable GPU when there are several and the learner spreads its folds, see
    ml.cv.devices_for_folds) fits the folds side by side, one worker process per device; with the learner's
    device set (not 'auto'), they must be of its type (ml.cv.check_fold_devices). `rerun_marked`: the caller
    made the run's rerun mark (`mark_rerun` returned True: 03's notebook, before tuning), which a user error
    before the first fold then takes back, as it does the mark this call makes.
    """
    marked = [rerun_marked]  # whether this call (or its caller) made the run's rerun mark: see unmark_rerun
    try:
        schema_ = get_schema(schema)
        check_name(run_name, "run_name")
        checked = PARAMETERS.validate(
            run_name=run_name, n_folds=n_folds, seed=seed, fold_strategy=fold_strategy, num_threads=num_threads,
            tfidf_dim=tfidf_dim, pseudo_label_run=pseudo_label_run, pseudo_label_fraction=pseudo_label_fraction,
            pseudo_label_weight=pseudo_label_weight, features=features, embeddings=embeddings,
            **({"learner": learner} if isinstance(learner, str) else {}))
        features, embeddings = checked["features"], checked["embeddings"]  # "minilm" is ["minilm"], not list("minilm")
        check_trainable(data["train"][schema_.target].to_numpy(), n_folds, schema_.target)
        if pseudo_label_run == run_name:
            raise ValueError(f"pseudo_label_run {run_name!r} is this run: its pseudo-labels would come from its own "
                             "last predictions, which this run then replaces (each rerun drifting from the last). Name "
                             f"another run's, e.g. -p pseudo_label_run <your base run> -p run_name {run_name}_pseudo")
        if isinstance(learner, Learner):
            _refuse_settings_beside_an_object(learner_params=learner_params or {}, preset=preset,
                                              lgb_params=lgb_params or {}, features=list(features),
                                              embeddings=list(embeddings), tfidf_dim=tfidf_dim, group_by=group_by,
                                              num_threads=num_threads)
        clock = {"started": time.perf_counter(), "earlier": 0.0}  # earlier: seconds of folds a stopped session kept
        model = learner if isinstance(learner, Learner) else build_learner(
            learner, learner_params, features=features, embeddings=embeddings, tfidf_dim=tfidf_dim, group_by=group_by,
            num_threads=num_threads, preset=preset, lgb_params=lgb_params)
        train, test = data["train"], data["test"]
        inputs = RunInputs(data, schema_, Path(work_dir), Path(data_dir) if data_dir is not None else None, seed)
        run_dir = stage_dir(work_dir, "03_train") / run_name

        def prepare() -> Learner:  # a kill while the features are built (minutes for a big run) is named too
            marked[0] = mark_rerun(work_dir, run_name) or marked[0]
            return model.prepare(inputs)

        _, folds = folds_around(prepare, work_dir, train, schema_, n_folds, seed, fold_strategy)
        pseudo = None
        if pseudo_label_run:
            check_name(pseudo_label_run, "pseudo_label_run")
            rows = {"train": rows_sha256(train, schema_.id_column), "test": rows_sha256(test, schema_.id_column)}
            pseudo = pseudo_labels(work_dir, pseudo_label_run, folds, test[schema_.id_column].to_numpy(),
                                   train[schema_.id_column].to_numpy(), pseudo_label_fraction, pseudo_label_weight,
                                   rows)
    except USER_ERRORS:  # refused before any of the run's files changed: its old outputs stand as they were
        if marked[0]:
            unmark_rerun(work_dir, run_name)
        raise
    pseudo_info = {}
    fingerprint = _fingerprint(model, folds, pseudo)
    if (run_dir / "metrics.json").is_file() and not any(
            (run_dir / kept / "progress.json").is_file() for kept in (PROGRESS_DIR, PSEUDO_BASELINE_DIR)):
        if (finished := _finished_with(run_dir, fingerprint)) is not None:
            unmark_rerun(work_dir, run_name)  # nothing of it changes: no rerun to name as stopped
            print(f"{run_name}: this run name has finished before with this setup (settings, CSV cells, 01 runs, "
                  f"amzkit and library versions): kept as it is, CV SMAPE {finished['cv_smape']:.3f}, not trained "
                  f"again (it would give the same predictions); to train it again delete {run_dir} or pick another "
                  "run_name")
            return finished
        print(f"{run_name}: this run name has finished before with another setup: it is trained again from its first "
              "fold and replaced when done (a killed run resumes at its first unfinished fold; a finished one is kept "
              "only when nothing it depends on changed); another run_name keeps the old run")
    devices = devices_for_folds(model) if fold_devices is None else list(fold_devices)
    if pseudo is not None:  # the same folds without pseudo-labels, kept apart: a killed run resumes both passes
        without = _resumable_cv(model, folds, run_dir, None, progress, clock, kept=PSEUDO_BASELINE_DIR,
                                models_dir=None, devices=devices)
        pseudo_info = {"pseudo_label": {**pseudo.summary(), "cv_smape_without": smape(inputs.y, without["oof"])}}
    result = _resumable_cv(model, folds, run_dir, pseudo, progress, clock, devices=devices, fingerprint=fingerprint)
    if pseudo is not None:
        pseudo_info["pseudo_label"]["cv_smape_with"] = smape(inputs.y, result["oof"])
    (run_dir / "metrics.json").unlink(missing_ok=True)  # unfinished from here (save_run writes it last): a kill
    if result["importance"] is not None:                 # must not leave this importance beside the old run
        kind = result["importance"].name or "importance"  # what the learner measures (gain for LightGBM)
        importance = result["importance"].rename_axis("feature").rename(kind).reset_index()
        if groups := model.feature_groups():
            importance["group"] = importance["feature"].map(groups).fillna("")
        write_csv(importance.sort_values(kind, ascending=False), run_dir / "feature_importance.csv")
    else:
        (run_dir / "feature_importance.csv").unlink(missing_ok=True)
    info = {**model.describe(), "fold_strategy": fold_strategy, "group_by": group_by, **pseudo_info,
            "fingerprint": fingerprint,  # a rerun with the same one keeps this run (_finished_with)
            **({"fold_fits": result["fit_reports"]} if any(result["fit_reports"]) else {}),
            **({"cpu_threads": threads} if (threads := model.result_threads()) is not None else {}),
            "seconds": round(clock["earlier"] + time.perf_counter() - clock["started"], 2)}  # resumed: in all
    if isinstance(info.get("preset"), str) and (why := tuned_on_folds(
            work_dir, info["preset"], id_hash(folds), id_hash(train[schema_.id_column]))):
        info["cv_optimistic"] = why  # chosen on the rows it is scored on: 03 and 04 say so
    metrics = save_run(work_dir, run_name, schema_, train, test, folds, result["oof"], result["test"], info,
                       result["fold_constant_smape"], test_folds=result["test_folds"])
    for kept in (PROGRESS_DIR, PSEUDO_BASELINE_DIR):
        shutil.rmtree(run_dir / kept, ignore_errors=True)
    return metrics


def _refuse_settings_beside_an_object(**given) -> None:
    """A learner object trains with its own settings: learner settings given beside it (preset, lgb_params,
    features, ...) away from their defaults are an error naming them, not settings the run silently drops."""
    defaults = {"learner_params": {}, "lgb_params": {}, "features": list(D.features),
                "embeddings": list(D.embeddings)}
    ignored = sorted(key for key, value in given.items() if value != defaults.get(key, getattr(D, key, None)))
    if ignored:
        raise ValueError(f"{ignored} would not be used: a learner object trains with its own settings. Set them on "
                         "the object (e.g. LightGBMLearner(preset=..., params=...)), or pass the learner's name")


def fold_fits_summary(metrics: dict) -> str:
    """One line on what each fold's fit chose (metrics' `fold_fits`): the trees per model, or the steps early
    stopping kept and their holdout SMAPE; "" when the learner reports nothing."""
    fits = [fit for fit in metrics.get("fold_fits", []) if fit]
    trees = [count for fit in fits for count in fit.get("trees", [])]
    if trees:
        line = f"trees per fold model: {min(trees)} to {max(trees)} (mean {np.mean(trees):.0f}) over {len(fits)} folds"
        groups = [fit["group_models"] for fit in fits if "group_models" in fit]
        if groups:
            counted = f"{min(groups)}" if min(groups) == max(groups) else f"{min(groups)} to {max(groups)}"
            line += (f"; group_by {metrics.get('group_by')!r}: " + (
                f"{counted} group(s) per fold had the {MIN_GROUP_ROWS} training rows for a model of their own, the "
                "other rows used the pooled model" if max(groups) else
                f"no group had {MIN_GROUP_ROWS} training rows, so every row used the pooled model (as without it)"))
        return line
    chosen = [fit for fit in fits if fit.get("best_step") is not None]
    if not chosen:
        return ""
    nets = [fit.get("bag_fits", [fit]) for fit in chosen]  # a bagged mlp fold: every net's, "/" between them
    steps = ", ".join("/".join(str(net["best_step"]) for net in bag) for bag in nets)
    scores = ", ".join("/".join(f"{net['holdout_smape']:.2f}" for net in bag) for bag in nets)
    line = f"early stopping kept step {steps} of the folds (holdout SMAPE {scores})"
    untrained = sum(any(net["best_step"] == 0 for net in bag) for bag in nets)
    return line + fp16_overflow_words(fits) + (
        f"; WARNING: {untrained} of {len(chosen)} folds kept step 0, the model before any training step (about the "
        "constant's score): give it more epochs, or a lower lr" if untrained else "")


# a killed run resumed under other versions of these (a Kaggle image update between sessions) starts over
FOLD_LIBRARIES = ("numpy", "scikit-learn", "lightgbm", "xgboost", "catboost", "torch", "transformers")


def _fingerprint(model: Learner, folds: np.ndarray, pseudo) -> str:
    """What a run's finished folds depend on: a resumed run must match it exactly."""
    inputs = model.inputs_
    described = {**model.resume_key(), "folds": id_hash(folds), "seed": inputs.seed,
                 "pseudo": None if pseudo is None else {**pseudo.summary(), "labels": pseudo.digest()},
                 "inputs": inputs_digest(inputs),
                 "static_features": static_features_digest(model),
                 "amzkit": amzkit.__version__,  # a new build (Kaggle's wheel: +N) may compute folds differently
                 "libraries": library_versions()}  # so may another image's (Kaggle's "latest environment")
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def _finished_with(run_dir: Path, fingerprint: str) -> dict | None:
    """The finished run's metrics when it was made with `fingerprint` (what its folds depend on) and its files are
    all there; None otherwise (older runs recorded none: they are trained again)."""
    try:
        metrics = read_json(run_dir / "metrics.json")
    except (OSError, ValueError):
        return None
    made_with = metrics.get("fingerprint") if isinstance(metrics, dict) else None
    if made_with != fingerprint or not all((run_dir / name).is_file() for name in ("oof.csv", "test_pred.csv")):
        return None
    return metrics


def library_versions(names: tuple[str, ...] = FOLD_LIBRARIES) -> dict[str, str | None]:
    """The installed versions of `names` (by default the libraries a fold's model depends on; None: not
    installed)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def static_features_digest(model: Learner) -> str | None:
    """The digest of the learner's label-free feature columns (None: it has no FeatureSet): they cover what no
    manifest does, such as image groups read from local files in data_dir or from 01's image tables."""
    features = getattr(model, "features_", None)
    if not isinstance(features, FeatureSet):
        return None
    return hashlib.sha256(np.ascontiguousarray(features.static).tobytes()).hexdigest()


def inputs_digest(inputs: RunInputs) -> dict:
    """What a fold's fit reads besides the settings: every cell of the two CSVs (ids, target, text: so edited
    text under the same ids and prices is new data), and 01_extract's manifests (they change whenever 01 writes
    a run again; the image tables' may not when only the pictures changed: `static_features_digest` covers
    those)."""
    cells = {split: frame_sha256(frame) for split, frame in inputs.data.items()}
    extract = stage_dir(inputs.work_dir, "01_extract")
    made = {str(path.relative_to(extract)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(extract.glob("*/manifest.json"))} if extract.is_dir() else {}
    return {"csv": cells, "01_extract": made}


def _resumable_cv(model: Learner, folds: np.ndarray, run_dir: Path, pseudo, progress: bool, clock: dict,
                  kept: str = PROGRESS_DIR, models_dir: str | None = "models",
                  devices: list[str] | None = None, fingerprint: str | None = None) -> dict:
    """cross_validate, keeping each finished fold in run_dir/<kept>/ and starting after the last one kept; the
    fold models go to run_dir/<models_dir> (None: not saved); `devices`: one fold worker process each. `clock`
    ({'started': perf_counter at the run's start, 'earlier': 0.0}): each kept fold records the run's seconds so
    far, and a resumed run adds those of the session that kept them to 'earlier'. `fingerprint`: _fingerprint of
    these arguments when the caller has made it (made here otherwise)."""
    folder = run_dir / kept
    fingerprint = fingerprint or _fingerprint(model, folds, pseudo)  # the caller's, made for these arguments
    previous, start = None, 0
    marker = folder / "progress.json"
    if marker.is_file():
        try:
            saved = read_json(marker)
            if saved.get("fingerprint") == fingerprint:
                arrays = np.load(folder / "state.npz")
                importance = [pd.read_csv(folder / f"importance{i}.csv", index_col=0).iloc[:, 0]
                              for i in range(saved["importance_folds"])]
                start = int(saved["folds_done"])
                clock["earlier"] = max(clock["earlier"], float(saved.get("seconds", 0.0)))
                previous = {"oof": arrays["oof"], "test_folds": arrays["test_folds"],
                            "fold_smape": list(saved["fold_smape"]), "importance": importance,
                            "fit_reports": list(saved.get("fit_reports", [{}] * start))}
                print(f"{run_dir.name}: resuming after {start} finished folds (kept in {folder})")
                if saved.get("cpu_threads") is not None and (note := model.keep_threads(int(saved["cpu_threads"]))):
                    print(f"{run_dir.name}: {note}")
            else:
                print(f"{run_dir.name}: the {saved.get('folds_done', 0)} folds kept in {folder} were made with "
                      "another setup (settings, CSV cells, 01 runs, image files or amzkit build): starting over")
        except (OSError, ValueError, KeyError) as err:
            print(f"{run_dir.name}: the kept folds in {folder} are unreadable ({err}); starting over")
            previous, start = None, 0
    if previous is None:  # kept folds of another setup (or none): nothing of theirs may join this run
        shutil.rmtree(folder, ignore_errors=True)
        if models_dir is not None:  # nor its fold models (bags 3 -> 1 left fold0_bag2)
            shutil.rmtree(run_dir / models_dir, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)  # there from the first fold: 04, 05 name a run killed in it

    # the importance files progress.json counts; one after them is a killed session's fit of a fold made again
    recorded = [len(previous["importance"]) if previous is not None else 0]

    def keep(step: int, state: dict) -> None:
        with_arrays = folder / "state.npz"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".state.tmp.npz"
        np.savez(tmp, oof=state["oof"], test_folds=state["test_folds"])
        tmp.replace(with_arrays)
        for i in range(recorded[0], len(state["importance"])):  # written anew, never a killed fit's kept
            series = state["importance"][i]
            write_csv(series.rename(series.name or "importance").rename_axis("feature").reset_index(),
                      folder / f"importance{i}.csv")
        write_json(marker, {"fingerprint": fingerprint, "folds_done": step + 1, "fold_smape": state["fold_smape"],
                            "importance_folds": len(state["importance"]), "fit_reports": state["fit_reports"],
                            "seconds": clock["earlier"] + time.perf_counter() - clock["started"],
                            "cpu_threads": model.result_threads()})  # kept by a resumed session (keep_threads)
        recorded[0] = len(state["importance"])

    return cross_validate(model, folds, pseudo=pseudo, models_dir=models_dir and run_dir / models_dir,
                          progress=progress, start_fold=start, previous=previous, fold_done=keep, devices=devices or ())
