"""Stage 03 tuning: Optuna searches LightGBM parameters on the shared folds and saves the best as a named preset.

- Same folds (`shared_folds`) and features (`assemble_features`, built once) as `train_run`, so
  `train_run(..., preset=name)` reproduces the study's best CV SMAPE.
- The first trial is the base preset itself: the saved preset is never worse than the base on these folds.
- TPE (seeded) + a median pruner fed the running mean fold SMAPE; `timeout_minutes` bounds the search.
- The study lives in 03_train/presets/<name>.study.db (SQLite): tuning the same name again continues it.
- Optuna is an optional extra: `pip install "amzkit[tune]"`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from amzkit.core.io import id_hash, save_figure, write_csv
from amzkit.core.metric import smape
from amzkit.core.schema import Schema, get_schema
from amzkit.ml.base import RunInputs
from amzkit.ml.cv import cross_validate
from amzkit.ml.folds import folds_around
from amzkit.ml.learners import library_number
from amzkit.ml.presets import PRESETS, check_preset, preset_path, resolve_preset, save_preset
from amzkit.ml.transforms import FoldTransform
from amzkit.ml.trees import LightGBMLearner, check_lightgbm_params, lightgbm_names, merge_lightgbm_params
from amzkit.stages.train import SHARED_LEARNER_PARAMS, D, inputs_digest, library_versions, static_features_digest

# LightGBM parameter -> (kind, low, high, log); a categorical entry holds its choices in `low`.
SEARCH_SPACE: dict[str, tuple] = {
    "num_leaves": ("int", 7, 255, True),
    "learning_rate": ("float", 0.01, 0.2, True),
    "min_data_in_leaf": ("int", 5, 200, True),
    "feature_fraction": ("float", 0.2, 1.0, False),
    "bagging_fraction": ("float", 0.5, 1.0, False),
    "lambda_l1": ("float", 1e-3, 10.0, True),
    "lambda_l2": ("float", 1e-3, 30.0, True),
    "objective": ("categorical", ("l1", "huber"), None, False),  # on the log1p target, as the base preset
}

# Other names LightGBM accepts for the searched parameters: a base preset's alias gives way to the tuned value.
LIGHTGBM_DEFAULTS = {"num_leaves": 31, "learning_rate": 0.1, "min_data_in_leaf": 20, "feature_fraction": 1.0,
                     "bagging_fraction": 1.0, "lambda_l1": 0.0, "lambda_l2": 0.0, "objective": "regression"}
HUBER_ALPHA = PRESETS["huber"]["params"]["alpha"]  # when huber is drawn and the base preset sets no alpha
PRUNER_STARTUP_TRIALS = 5
SAMPLER_STARTUP_TRIALS = 10


TUNED_LEARNER_SETTINGS = ("bags", "refit", "valid_fraction")  # the run's LightGBMLearner settings a study uses
SETUP_KEYS_ADDED = ("learner", "inputs", "static_features", "libraries")  # keys newer than some saved studies
# the libraries a trial's score depends on (the features' transforms, the model): a study resumed under other
# versions of them (a Kaggle image update between sessions) would rank trials scored by two setups
STUDY_LIBRARIES = ("numpy", "scikit-learn", "lightgbm")


def _import_optuna():
    try:
        import optuna  # optional dependency (the tune extra): imported when tuning runs
    except ImportError as error:
        raise ImportError('tuning needs Optuna: pip install "amzkit[tune]" (or pip install optuna)') from error
    return optuna


def tuning_paths(work_dir: str | Path, name: str) -> dict[str, Path]:
    """The files of a tuning named `name`: the preset, the Optuna study, the trials table and the plot."""
    preset = preset_path(work_dir, name)
    return {"preset": preset, "study": preset.parent / f"{name}.study.db",
            "trials": preset.parent / f"{name}.trials.csv", "plot": preset.parent / f"{name}.history.png"}


def _value_of(params: dict, key: str, default=None):
    """LightGBM parameter `key` as `params` set it under any of its names (LightGBM's alias table), else `default`."""
    names = lightgbm_names()
    return next((value for name, value in params.items() if names.get(name, name) == key), default)


def _base_value(params: dict, key: str):
    return _value_of(params, key, LIGHTGBM_DEFAULTS.get(key))


def _nearest_in_space(value, spec: tuple):
    """The point of the search space closest to `value` (the base trial's params, for the sampler)."""
    kind, low, high, _ = spec
    if kind == "categorical":
        return value if value in low else low[0]
    value = min(max(float(value), low), high)
    return int(round(value)) if kind == "int" else value


def check_search_space(space: dict[str, tuple]) -> None:
    """Each entry is (kind, low, high, log) that Optuna can draw from: ('int' | 'float', low <= high, log only with
    low > 0) or ('categorical', choices, None, False). Checked before the study file is made, like the names."""
    for key, spec in space.items():
        shape = "('int' or 'float', low, high, log) or ('categorical', [choices], None, False)"
        if not isinstance(spec, tuple | list) or len(spec) != 4:
            raise ValueError(f"search_space {key!r}: {spec!r} is not {shape}")
        kind, low, high, log = spec
        if kind == "categorical":
            if isinstance(low, str) or not isinstance(low, tuple | list) or not low:
                raise ValueError(f"search_space {key!r}: a categorical entry holds its choices in a list, got {low!r}")
            continue
        if kind not in ("int", "float"):
            raise ValueError(f"search_space {key!r}: kind {kind!r} is not 'int', 'float' or 'categorical'")
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
        if not numbers or not low <= high or (log and low <= 0):
            raise ValueError(f"search_space {key!r}: {spec!r} needs numbers low <= high"
                             + (" and low > 0 (log scale)" if log else "") + f"; write it as {shape}")


def _space_left(lgb_params: dict, search_space: dict[str, tuple] | None) -> dict[str, tuple]:
    """The search space (None: SEARCH_SPACE) less the params `lgb_params` fix under any of their names; refused when
    it names a parameter the search does not tune, or when nothing is left to tune."""
    fixed = {lightgbm_names().get(key, key) for key in lgb_params}
    space = {k: v for k, v in (SEARCH_SPACE if search_space is None else search_space).items() if k not in fixed}
    unknown = sorted(set(space) - set(LIGHTGBM_DEFAULTS))
    if unknown:  # checked before the study file is made, so that a corrected call is not "another setup"
        raise ValueError(f"search_space names {unknown}: the search tunes only {sorted(LIGHTGBM_DEFAULTS)} (by these "
                         "names; the number of trees comes from early stopping)")
    check_search_space(space)
    if not space:
        raise ValueError(f"lgb_params {sorted(lgb_params)} fix every parameter the search would tune; drop some "
                         "of them, or set tune_trials 0")
    return space


def _check_learner_settings(settings: dict) -> None:
    """The run's LightGBMLearner settings a study tunes with must be ones it can share with its run
    (TUNED_LEARNER_SETTINGS)."""
    unknown = sorted(set(settings) - set(TUNED_LEARNER_SETTINGS))
    if shared := [k for k in unknown if k in SHARED_LEARNER_PARAMS]:  # LightGBMLearner's, but the study's own too
        raise ValueError(f"learner_params sets {shared} while tune_trials tunes a preset: the study would tune on the "
                         f"run's {shared[0]} and the run train on another; set it as the run's parameter (-p "
                         f"{shared[0]} <value>) and leave it out of learner_params")
    if unknown:
        raise ValueError(f"learner_settings {unknown} are not LightGBMLearner settings a study can share with its "
                         f"run; these are {list(TUNED_LEARNER_SETTINGS)} (LightGBM's own params go in lgb_params)")


def check_tuning(learner: str, learner_params: dict, lgb_params: dict) -> tuple[dict, dict]:
    """03's refusals of a tune_trials run's settings, before any work (kaggle build makes them too): the learner
    must be lightgbm, learner_params may not set the preset the study tunes, its other keys must be settings the
    study shares with its run, and the fixed LightGBM params (lgb_params and learner_params' params) must be
    LightGBM's and leave the search something to tune. Returns (those fixed params, the learner settings)."""
    if learner != "lightgbm":
        raise ValueError(f"tune_trials tunes LightGBM presets: it applies to learner 'lightgbm', not {learner!r}")
    own = dict(learner_params)
    if "preset" in own:
        raise ValueError("learner_params sets 'preset' while tune_trials tunes one: give the base preset as "
                         "-p preset, and leave it out of learner_params")
    fixed = {**lgb_params, **(own.pop("params", None) or {})}  # as the run merges them: the study leaves them fixed
    check_lightgbm_params(fixed, "lgb_params")
    _space_left(fixed, None)
    _check_learner_settings(own)
    return fixed, own


def _suggest(trial, key: str, spec: tuple):
    kind, low, high, log = spec
    if kind == "int":
        return trial.suggest_int(key, low, high, log=log)
    if kind == "float":
        return trial.suggest_float(key, low, high, log=log)
    if kind == "categorical":
        return trial.suggest_categorical(key, list(low))
    raise ValueError(f"search space {key!r}: kind {kind!r} is not 'int', 'float' or 'categorical'")


def candidate_preset(base: dict, tuned: dict, fixed: Collection[str] = ()) -> dict:
    """The base preset with tuned LightGBM params (aliases of a tuned param dropped from the base); `fixed`
    (main names the run's lgb_params set) are never changed."""
    params = merge_lightgbm_params(base["params"], tuned)
    if params.get("objective") == "huber" and "alpha" not in fixed:
        params.setdefault("alpha", HUBER_ALPHA)
    if "bagging_fraction" in tuned and not _value_of(params, "bagging_freq") and "bagging_freq" not in fixed:
        params["bagging_freq"] = 1  # bagging_fraction does nothing without it (a base's subsample_freq is it)
    return {**base, "params": params}


class _CachedTransform(FoldTransform):
    """A fold transform fit once per fold for the whole study: every trial sees the same folds.

    Outputs are kept per (training rows, rows); the wrapped transform is refit only on a miss.
    """

    def __init__(self, inner: FoldTransform):
        self.inner, self.names = inner, inner.names
        self._outputs: dict[tuple[str, str], np.ndarray] = {}
        self._fit_key = self._inner_key = None

    @staticmethod
    def _key(*arrays: np.ndarray) -> str:
        digest = hashlib.sha1()
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def fit(self, rows, y):
        self._rows, self._y, self._fit_key = rows, y, self._key(rows, y)
        return self

    def transform(self, rows):
        key = (self._fit_key, self._key(rows))
        if key not in self._outputs:
            if self._inner_key != self._fit_key:
                self.inner.fit(self._rows, self._y)
                self._inner_key = self._fit_key
            self._outputs[key] = self.inner.transform(rows)
        return self._outputs[key]


def _setup_differences(saved: dict, wanted: dict) -> dict:
    """The setup keys whose saved and wanted values differ; keys a study saved before they existed
    (SETUP_KEYS_ADDED) are not held against it."""
    wanted = json.loads(json.dumps(wanted))
    return {k: (saved.get(k), v) for k, v in wanted.items()
            if _comparable(k, saved.get(k)) != _comparable(k, v) and (k in saved or k not in SETUP_KEYS_ADDED)}


def _comparable(key: str, value):
    """A setup value as compared: the base's LightGBM params with a number written as text ('10', '1e-3') as that
    number, as LightGBM reads it (a study saved before tune_preset took such text as the number recorded the text)."""
    if key == "base" and isinstance(value, dict) and isinstance(value.get("params"), dict):
        return {**value, "params": {name: library_number(item) for name, item in value["params"].items()}}
    return value


def _preset_values(preset: dict, space: dict) -> dict:
    """The searched params as a preset sets them (None where it leaves LightGBM's default)."""
    params = preset["params"]
    return {key: _value_of(params, key) for key in space}


def _trials_table(study, optuna, space: dict) -> pd.DataFrame:
    """One row per trial: state, CV SMAPE, folds run and their mean SMAPE, seconds, the params it ran."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        steps = trial.intermediate_values
        seconds = trial.duration.total_seconds() if trial.duration is not None else np.nan
        rows.append({"number": trial.number, "state": trial.state.name.lower(),
                     "smape": trial.value if trial.state == optuna.trial.TrialState.COMPLETE else np.nan,
                     "folds_run": len(steps), "fold_mean_smape": steps[max(steps)] if steps else np.nan,
                     "seconds": round(seconds, 2), "base": bool(trial.user_attrs.get("base", False)),
                     **(_preset_values(trial.user_attrs["preset"], space) if "preset" in trial.user_attrs
                        else trial.params)})
    return pd.DataFrame(rows)


def plot_tuning(work_dir: str | Path, name: str):
    """CV SMAPE per trial (pruned trials at their running fold mean), the best so far and the base; saved as PNG."""
    paths = tuning_paths(work_dir, name)
    table = pd.read_csv(paths["trials"])
    done, pruned = table[table["state"] == "complete"], table[table["state"] == "pruned"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(done["number"], done["smape"], s=18, label="trial (CV SMAPE)")
    if len(pruned):
        ax.scatter(pruned["number"], pruned["fold_mean_smape"], s=18, marker="x", color="grey",
                   label="pruned (mean of the folds run)")
    ax.step(done["number"], done["smape"].cummin(), where="post", color="C1", label="best so far")
    base = table.loc[table["base"] & (table["state"] == "complete"), "smape"]
    if len(base):
        ax.axhline(base.iloc[0], color="k", ls="--", lw=1, label=f"base preset {base.iloc[0]:.3f}")
    best = done["smape"].min() if len(done) else float("nan")
    drawn = pd.concat([done[["number", "smape"]],  # every point as plotted: pruned ones at their fold mean
                       pruned[["number", "fold_mean_smape"]].rename(columns={"fold_mean_smape": "smape"})]).dropna()
    if len(drawn) and np.isfinite(best):  # a failed trial near the constant would flatten every other one
        reference = base.iloc[0] if len(base) else float(drawn["smape"].median())
        top = reference + max(2.0 * (reference - best), 0.02 * best)
        above = drawn[drawn["smape"] > top]
        if len(above):
            ax.set_ylim(top=top)
            ax.scatter(above["number"], np.full(len(above), top), marker="^", color="C3", clip_on=False, zorder=3,
                       label=f"above the axis ({len(above)}: worse than {top:.1f})")
    ax.set(xlabel="trial", ylabel="CV SMAPE", title=f"{name}: best {best:.3f} in {len(table)} trials")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    save_figure(fig, paths["plot"])
    return fig


def tune_preset(
    data: dict[str, pd.DataFrame], schema: str | Schema, work_dir: str | Path, name: str, features: list[str],
    embeddings: list[str], n_folds: int = D.n_folds, seed: int = D.seed, fold_strategy: str = D.fold_strategy,
    base_preset: str | dict = D.preset, n_trials: int = 50, timeout_minutes: float | None = D.tune_minutes,
    num_threads: int = D.num_threads, tfidf_dim: int = D.tfidf_dim, search_space: dict[str, tuple] | None = None,
    data_dir: str | Path | None = None, lgb_params: dict | None = None, group_by: str = D.group_by,
    learner_settings: dict | None = None, progress: bool = True, total_trials: bool = False,
) -> dict:
    """Search LightGBM params (CV SMAPE on the shared folds) and save the best as preset `name`.

    `lgb_params` (the run's) are part of the base preset and stay fixed: the search leaves their keys out.
    `group_by` and `learner_settings` (LightGBMLearner's bags, refit, valid_fraction) are the run's, so that the
    study scores what the run will train.
    Runs up to `n_trials` more trials within `timeout_minutes` (None: no limit); the same `name` again
    continues the study, which must then have the same rows, folds, features, embeddings, base preset, learner
    settings, data (every CSV cell and 01 run: `inputs_digest`) and numpy / scikit-learn / LightGBM versions,
    unless none of its trials was scored. With
    `total_trials` (03's `tune_trials`) `n_trials` counts the study's finished trials in all: a study that has
    them, or whose last session with the same budget ran to its end (its timeout), runs none again, so a rerun
    of a stopped run resumes its folds.
    Returns best_smape, base_smape, n_trials, n_new (trials run by this call), n_pruned, seconds and the paths.
    """
    optuna = _import_optuna()
    if name in PRESETS:
        raise ValueError(f"preset name {name!r} is built in; choose another name for the tuned preset")
    paths = tuning_paths(work_dir, name)  # checks the name
    if base_preset == name:
        raise ValueError(f"base_preset {name!r} is the preset this tuning writes; tune under another name")
    base = check_preset(json.loads(json.dumps(base_preset)), "base_preset") if isinstance(base_preset, dict) \
        else resolve_preset(base_preset, work_dir)
    check_lightgbm_params(lgb_params or {}, "lgb_params")
    # a number written as text ('10', or 1e1 as YAML 1.1 keeps it) taken as the number, as the run takes it
    lgb_params = {key: library_number(value) for key, value in (lgb_params or {}).items()}
    fixed = {lightgbm_names().get(key, key) for key in lgb_params}
    base = {**base, "params": merge_lightgbm_params(base["params"], lgb_params)} if lgb_params else base
    space = _space_left(lgb_params or {}, search_space)
    started = time.perf_counter()
    schema_ = get_schema(schema)
    train = data["train"]
    y = train[schema_.target].to_numpy(dtype=float)
    inputs = RunInputs(data, schema_, Path(work_dir), Path(data_dir) if data_dir is not None else None, seed)
    settings = dict(learner_settings or {})
    _check_learner_settings(settings)
    learner = LightGBMLearner(preset=base, features=features, embeddings=embeddings, tfidf_dim=tfidf_dim,
                              group_by=group_by, num_threads=num_threads, **settings)
    learner, folds = folds_around(lambda: learner.prepare(inputs), work_dir, train, schema_, n_folds, seed,
                                  fold_strategy)
    learner.features_.transforms = [_CachedTransform(t) for t in learner.features_.transforms]
    setup = {"schema": schema_.name, "rows": len(train), "train_ids_sha256": id_hash(train[schema_.id_column]),
             "folds_sha256": id_hash(folds), "fold_strategy": fold_strategy, "seed": seed, "features": features,
             "embeddings": embeddings, "tfidf_dim": tfidf_dim,
             "base_preset": base_preset if isinstance(base_preset, str) else "(dict)", "base": base,
             "search_space": space, "learner": {"group_by": group_by, **settings}, "inputs": inputs_digest(inputs),
             "static_features": static_features_digest(learner),  # image files replaced under the same names
             "libraries": library_versions(STUDY_LIBRARIES)}

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    paths["study"].parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{paths['study'].resolve()}")
    try:
        probe = optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True)
        if probe.user_attrs.get("setup") is None:
            probe.set_user_attr("setup", json.loads(json.dumps(setup)))
        saved = probe.user_attrs["setup"]
        differs = _setup_differences(saved, setup)
        if not differs and (added := {k: v for k, v in setup.items() if k not in saved}):
            probe.set_user_attr("setup", json.loads(json.dumps({**saved, **added})))  # a study saved before a key
            # existed records it now: its later sessions are checked on it too
        trials = probe.get_trials(deepcopy=False)
        finished = sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
        if differs and not finished:
            probe.set_user_attr("setup", json.loads(json.dumps(setup)))  # nothing scored under the old setup (its
            differs = {}                                                 # trials failed): the corrected call takes it
        budget = {"n_trials": n_trials, "timeout_minutes": timeout_minutes}
        to_run = n_trials if not total_trials else (
            0 if probe.user_attrs.get("budget_spent") == budget else max(0, n_trials - finished))
        if "libraries" in differs and not to_run:  # no trial is scored now, so none under two versions: the
            del differs["libraries"]               # preset stands as tuned, under the versions the study records
            setup = {**setup, "libraries": saved["libraries"]}  # (kept: a larger budget is still refused)
        if differs:
            if "inputs" in differs:  # two digests say nothing to a user
                differs["inputs"] = "train.csv / test.csv cells, or 01_extract's runs, changed since the study began"
            if "static_features" in differs:
                differs["static_features"] = ("the feature columns changed since the study began (image files in "
                                              "data_dir or 01's image tables replaced)")
            if "libraries" in differs:
                was, now = differs["libraries"]
                differs["libraries"] = (", ".join(f"{lib} {(was or {}).get(lib)} -> {version}" for lib, version
                                                  in now.items() if (was or {}).get(lib) != version)
                                        + ": its trials were scored under the old versions, this session's would be "
                                        "under the new ones (a Kaggle image update between sessions?)")
            raise ValueError(f"{paths['study']} is a study of another setup ({sorted(differs)} differ: saved vs "
                             f"now {differs}); tune under another name, or delete that file to start over")
        for stale in (t for t in trials if t.state == optuna.trial.TrialState.RUNNING):
            storage.set_trial_state_values(stale._trial_id, optuna.trial.TrialState.FAIL)  # an interrupted run
        # A fresh seed per session: a resumed study does not redraw the first session's random trials.
        sampler = optuna.samplers.TPESampler(seed=seed + len(trials), n_startup_trials=SAMPLER_STARTUP_TRIALS)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=0)
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        base_queued = any(t.user_attrs.get("base") and t.state in (optuna.trial.TrialState.COMPLETE,
                                                                     optuna.trial.TrialState.WAITING) for t in trials)
        if not base_queued and to_run > 0:
            study.enqueue_trial({k: _nearest_in_space(_base_value(base["params"], k), spec)
                                 for k, spec in space.items()}, user_attrs={"base": True})

        def objective(trial) -> float:
            is_base = bool(trial.user_attrs.get("base"))
            tuned = {key: _suggest(trial, key, spec) for key, spec in space.items()}
            # The base trial runs the base preset verbatim; its params are the nearest point of the space.
            preset = base if is_base else candidate_preset(base, tuned, fixed)
            trial.set_user_attr("preset", preset)

            def on_fold(step: int, mean_smape: float) -> None:
                trial.report(mean_smape, step)
                if not is_base and trial.should_prune():
                    raise optuna.TrialPruned(f"mean SMAPE {mean_smape:.3f} after {step + 1} folds")

            result = cross_validate(learner.set_params(preset=preset), folds, on_fold=on_fold, progress=False)
            return smape(y, result["oof"])

        def report(study_, trial) -> None:
            if not progress:
                return
            seconds = trial.duration.total_seconds() if trial.duration is not None else 0.0
            if trial.state == optuna.trial.TrialState.COMPLETE:
                outcome = f"CV SMAPE {trial.value:.4f}" + (" (base preset)" if trial.user_attrs.get("base") else "")
            else:
                steps = trial.intermediate_values
                outcome = f"{trial.state.name.lower()} after {len(steps)} folds" + (
                    f" (mean {steps[max(steps)]:.4f})" if steps else "")
            best = f"best {study_.best_value:.4f}" if any(
                t.state == optuna.trial.TrialState.COMPLETE for t in study_.get_trials(deepcopy=False)) else ""
            print(f"trial {trial.number:3d}: {outcome:44s} {best}  {seconds:.1f} s", flush=True)

        timeout = timeout_minutes * 60 if timeout_minutes else None
        before = len(trials)
        if to_run > 0:
            study.optimize(objective, n_trials=to_run, timeout=timeout, callbacks=[report])
        if total_trials:  # this budget ran to its end (a stop inside optimize raises before here)
            study.set_user_attr("budget_spent", budget)
        summary = _save_tuning(study, optuna, work_dir, name, paths, setup, started)
        return {**summary, "n_new": summary["n_trials"] - before}
    finally:
        optuna.logging.set_verbosity(verbosity)
        storage.engine.dispose()


def _save_tuning(study, optuna, work_dir, name, paths, setup, started) -> dict:
    """Write the trials table, the history plot and the best preset; the summary `tune_preset` returns."""
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == states.COMPLETE]
    if not complete:
        raise RuntimeError(f"no trial of {paths['study']} finished; run more trials (n_trials > 0, "
                           "a larger timeout_minutes)")
    best = min(complete, key=lambda t: t.value)
    base = [t for t in complete if t.user_attrs.get("base")]
    write_csv(_trials_table(study, optuna, setup["search_space"]), paths["trials"])
    plt.close(plot_tuning(work_dir, name))
    summary = {
        "name": name, "best_smape": float(best.value), "base_smape": float(base[0].value) if base else None,
        "best_trial": best.number, "n_trials": len(trials), "n_complete": len(complete),
        "n_pruned": sum(t.state == states.PRUNED for t in trials),
        "n_failed": sum(t.state == states.FAIL for t in trials),
        "seconds": round(time.perf_counter() - started, 2),
    }
    best_params = _preset_values(best.user_attrs["preset"], setup["search_space"])
    info = {"tuned_by": f"optuna {optuna.__version__}", **{k: v for k, v in summary.items() if k != "name"},
            "best_params": best_params, **{k: v for k, v in setup.items() if k != "base"},
            "study": str(paths["study"]), "time": datetime.now(UTC).isoformat(timespec="seconds")}
    save_preset(work_dir, name, best.user_attrs["preset"], info)
    return {**summary, "best_params": best_params, "preset_path": paths["preset"], "study_path": paths["study"],
            "trials_path": paths["trials"], "plot_path": paths["plot"]}
