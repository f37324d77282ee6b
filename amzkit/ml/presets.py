"""LightGBM presets: built-in parameter sets, and saved ones (Optuna's best) in the work folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

from amzkit.core.io import read_json, write_json
from amzkit.core.workdir import stage_dir

# The roadmap's LightGBM parameters, verbatim (its first training script); `seed` trains them on the raw target.
ROADMAP_PARAMS = {
    "objective": "regression", "metric": "mape", "boosting_type": "gbdt", "num_leaves": 63,
    "learning_rate": 0.05, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 5,
    "verbose": -1, "n_jobs": -1,
}


PRESETS: dict[str, dict] = {
    # What the strong public solutions share: log1p target, an L1-type loss, early stopping, regularisation.
    "default": {"target": "log1p", "n_estimators": 4000, "early_stopping_rounds": 150, "params": {
        "objective": "l1", "learning_rate": 0.03, "num_leaves": 31, "min_data_in_leaf": 20,
        "feature_fraction": 0.5, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1}},
    "huber": {"target": "log1p", "n_estimators": 4000, "early_stopping_rounds": 150, "params": {
        "objective": "huber", "alpha": 1.0, "learning_rate": 0.03, "num_leaves": 31, "min_data_in_leaf": 20,
        "feature_fraction": 0.5, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1}},
    "seed": {"target": "raw", "n_estimators": 3000, "early_stopping_rounds": 100, "params": dict(ROADMAP_PARAMS)},
}


PRESET_KEYS = ("target", "n_estimators", "early_stopping_rounds", "params")


PRESETS_DIR = "presets"  # saved presets (e.g. Optuna's best) live in work_dir/03_train/presets/<name>.json


def preset_path(work_dir: str | Path, name: str) -> Path:
    """Where a saved preset named `name` lives in the work folder."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"preset name {name!r}: use letters, digits, '_', '-' and '.'")
    return stage_dir(work_dir, "03_train") / PRESETS_DIR / f"{name}.json"


def check_preset(preset: dict, name: str = "preset") -> dict:
    """A preset dict with exactly PRESET_KEYS, a known target transform, whole round counts and a params dict."""
    missing, extra = set(PRESET_KEYS) - set(preset), set(preset) - set(PRESET_KEYS)
    if missing or extra:
        raise ValueError(f"{name}: a preset has keys {list(PRESET_KEYS)}; missing {sorted(missing)}, "
                         f"unknown {sorted(extra)}")
    if preset["target"] not in ("log1p", "raw"):
        raise ValueError(f"{name}: target must be 'log1p' or 'raw', not {preset['target']!r}")
    for key in ("n_estimators", "early_stopping_rounds"):  # a JSON edit's 4000.0 is 4000; "4000" or 0 is refused
        value = preset[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer() or value < 1:
            raise ValueError(f"{name}: {key} must be a whole number of rounds >= 1, not {value!r}")
        preset[key] = int(value)
    if not isinstance(preset["params"], dict):
        raise ValueError(f"{name}: params must be a dict of LightGBM parameters, not {preset['params']!r}")
    return preset


def save_preset(work_dir: str | Path, name: str, preset: dict, info: dict | None = None) -> Path:
    """Save a preset (built-in names are refused) so 03_train can use it with `preset=name`."""
    if name in PRESETS:
        raise ValueError(f"preset name {name!r} is built in; choose another name")
    return write_json(preset_path(work_dir, name), {**check_preset(dict(preset), name), "info": info or {}})


def saved_presets(work_dir: str | Path) -> list[str]:
    """Names of the presets saved in the work folder."""
    folder = stage_dir(work_dir, "03_train") / PRESETS_DIR
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def resolve_preset(name: str, work_dir: str | Path | None = None) -> dict:
    """A built-in preset, or one saved in `work_dir` (03_train/presets/<name>.json: PRESET_KEYS and "info")."""
    if name in PRESETS:
        return json.loads(json.dumps(PRESETS[name]))
    if work_dir is not None and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) \
            and preset_path(work_dir, name).is_file():
        path = preset_path(work_dir, name)
        saved = read_json(path)  # save_preset's "info" beside the preset; any other key is an error, not dropped
        return check_preset({k: v for k, v in saved.items() if k != "info"}, f"preset {name!r} ({path})")
    known = sorted(PRESETS) + (saved_presets(work_dir) if work_dir is not None else [])
    raise ValueError(f"unknown preset {name!r}; choose from {known}"
                     + ("" if work_dir is None else f" (saved presets live in {preset_path(work_dir, 'x').parent})"))


def tuned_on_folds(work_dir: str | Path, name: str, folds_sha256: str, train_ids_sha256: str) -> str:
    """Why a run with preset `name` has an optimistic CV: the preset is a saved Optuna best chosen on these train
    rows' labels (its info's train_ids_sha256 is theirs), whether in these very folds or in other folds of the
    same rows (another seed or n_folds: the rows it is scored on still chose it); '' else. The fold numbers alone
    (folds_sha256) say nothing: kfold's are the same for other rows of as many."""
    if name in PRESETS or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        return ""
    path = preset_path(work_dir, name)
    info = read_json(path).get("info", {}) if path.is_file() else {}
    if not isinstance(info, dict) or info.get("train_ids_sha256") != train_ids_sha256:
        return ""
    trials = info.get("n_trials")
    where = "these folds" if info.get("folds_sha256") == folds_sha256 else \
        "these train rows (in other folds of them)"
    return (f"preset {name!r} was tuned on {where} ({info.get('tuned_by', 'a search')}"
            + (f", {trials} trials" if trials else "") + "): its CV, and a blend's that uses it, are a little "
            "optimistic, since these rows' labels chose it; tuned on other rows, it would not be")
