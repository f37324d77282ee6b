"""Notebook parameters: each stage's Kaggle defaults as data, and a guard that refuses unknown names.

papermill only warns when `-p` names a parameter the notebook lacks (a typo then runs with the
default). Every notebook calls `check_parameters(globals(), stage)` right after its parameters cell.
"""

from __future__ import annotations

import difflib
import json
from types import ModuleType, SimpleNamespace
from typing import Any

# Shared by every stage. The literals are the Kaggle defaults: Kaggle runs the parameters cell as it is.
_COMMON: dict[str, Any] = {"schema": "amazon2025", "data_dir": "auto", "work_dir": "auto"}

PARAMETERS: dict[str, dict[str, Any]] = {
    "01_extract": {
        **_COMMON,
        "model": "fashion-siglip",
        "text_model": "minilm",
        "batch_size": 64,
        "device": "auto",
        "num_workers": -1,
        "shard_index": 0,
        "num_shards": 1,
        "merge_dirs": [],
    },
    "02_correlate": {
        **_COMMON,
        "runs": [],
        "top_k": 20,
        "n_permutations": 20,
        "n_folds": 5,
        "knn_k": 20,
        "knn_max_queries": 20000,
        "baseline_features": ["quantity", "text_stats", "keywords"],
        "baseline_runs": [],
        "seed": 0,
        "leak_report": True,
        "leak_text_threshold": 0.9,
        "leak_image_hash": True,
        "leak_hash_distance": 4,
        "leak_max_hash_matches": 3,
    },
    "03_train": {
        **_COMMON,
        "run_name": "lgbm",
        "learner": "lightgbm",
        "learner_params": {},
        "embeddings": ["fashion-siglip:pca:64", "minilm:pca:32", "minilm:knn:20"],
        "features": ["quantity", "text_stats", "keywords", "brand", "dimensions", "tfidf"],
        "preset": "default",
        "lgb_params": {},
        "n_folds": 5,
        "fold_strategy": "group",
        "seed": 42,
        "group_by": "",
        "tfidf_dim": 64,
        "num_threads": 0,
        "tune_trials": 0,
        "tune_minutes": 30.0,
        "pseudo_label_run": "",
        "pseudo_label_fraction": 0.5,
        "pseudo_label_weight": 0.5,
    },
    "04_ensemble": {
        **_COMMON,
        "runs": [],
        "method": "best",
        "meta": "ridge",
        "calibrate_by": "",
        "meta_features": [],
        "factor_min": 0.7,
        "factor_max": 1.3,
        "min_group_rows": 200,
    },
    "05_submit": {**_COMMON, "source": "04_ensemble", "file_name": "submission.csv", "solution_csv": "",
                  "lb_scores": {}},
}

_LITERAL_TYPES = (str, int, float, bool, list, dict, tuple, type(None))
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


def stage_parameters(stage: str) -> dict[str, Any]:
    """A copy of the defaults of `stage` ('01_extract' .. '05_submit')."""
    if stage not in PARAMETERS:
        raise ValueError(f"unknown stage {stage!r}; stages are {sorted(PARAMETERS)}")
    return json.loads(json.dumps(PARAMETERS[stage]))


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Bring a papermill value to the default's type (`-p runs '["a"]'` arrives as a string)."""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(default, list):
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError as err:
                    raise ValueError(f"parameter {name!r}: {value!r} is not a JSON list ({err})") from None
                if isinstance(parsed, list):
                    return parsed
            elif text:
                return [part.strip() for part in text.split(",") if part.strip()]
            else:
                return []
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            try:
                parsed = json.loads(value or "{}")
            except json.JSONDecodeError as err:
                raise ValueError(f"parameter {name!r}: {value!r} is not a JSON object ({err})") from None
            if isinstance(parsed, dict):
                return parsed
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    else:
        return value
    raise ValueError(
        f"parameter {name!r} must be a {type(default).__name__} like its default {default!r}, "
        f"got {type(value).__name__} {value!r}"
    )


def check_parameters(namespace: dict[str, Any], stage: str) -> SimpleNamespace:
    """Validate the notebook's parameters against the stage's table and return them.

    Unknown names (typos such as `-p modle x`) and missing ones are errors; values are coerced to the
    default's type and written back into `namespace`.
    """
    defaults = stage_parameters(stage)
    given = {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_")
        and name not in _IPYTHON_NAMES
        and not isinstance(value, ModuleType)
        and isinstance(value, _LITERAL_TYPES)
    }
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(defaults), n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown parameter {', '.join(hints)} for notebook {stage}; "
            f"its parameters are {sorted(defaults)}"
        )
    missing = sorted(set(defaults) - set(given))
    if missing:
        raise ValueError(f"notebook {stage} lacks parameters {missing}: restore them in its parameters cell")
    values = {name: _coerce(name, given[name], default) for name, default in defaults.items()}
    namespace.update(values)
    return SimpleNamespace(**values)
