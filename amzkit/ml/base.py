"""The learner protocol every 03_train learner follows, and the inputs a run prepares it on.

A learner has scikit-learn's shape over the rows of one competition: the constructor only stores parameters;
`prepare(inputs)` builds what the learner reads once per run (a feature matrix, texts, an embedding); `fit(rows,
y, weight)` learns from those rows and returns self; `predict(rows)` gives prices on the original scale (>= the
floor). Rows index the stacked inputs: train rows first (0 .. n_train - 1), then test rows.

Honest by construction: the one CV loop (`ml.cv.cross_validate`) gives `fit` the training rows of a fold only,
never the rows that fold is scored on, so anything a learner chooses (early stopping, alpha, a threshold) is
chosen inside the training fold. Test rows may come with labels (pseudo-labels); what a learner learns without
labels from its inputs' columns (fold transforms) is fit on train rows only.
"""

from __future__ import annotations

import copy
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from amzkit.core.schema import SPLITS, Schema, row_text
from amzkit.embed.runs import load_embeddings
from amzkit.text.names import product_groups

MIN_PREDICTION = 1e-3  # every prediction is floored here: SMAPE needs positive prices


DEFAULT_SEED = 42  # of the folds, the models and the inner splits (03's seed)


@dataclass
class RunInputs:
    """One competition as a learner sees it: train rows stacked over test rows, with what every learner shares.

    `data_dir` (the CSVs' folder) is needed by the image feature groups, which read 01's image cache.
    """

    data: dict[str, pd.DataFrame]
    schema: Schema
    work_dir: Path
    data_dir: Path | None = None
    seed: int = DEFAULT_SEED
    row_groups: np.ndarray | None = None  # product group per row; None: normalised product names

    @property
    def n_train(self) -> int:
        return len(self.data["train"])

    @property
    def n_test(self) -> int:
        return len(self.data["test"])

    @property
    def test_rows(self) -> np.ndarray:
        return np.arange(self.n_train, self.n_train + self.n_test)

    @cached_property
    def y(self) -> np.ndarray:
        """The train target on the original scale."""
        return self.data["train"][self.schema.target].to_numpy(dtype=float)

    @cached_property
    def both(self) -> pd.DataFrame:
        """Train rows, then test rows, as one frame (the row numbers learners use)."""
        return pd.concat([self.data["train"], self.data["test"]], ignore_index=True)

    @cached_property
    def texts(self) -> list[str]:
        """The row text of every row (computed once, whichever learner or feature group reads it)."""
        return row_text(self.both, self.schema).tolist()

    @cached_property
    def groups(self) -> np.ndarray:
        """Product group per row (normalised product names unless given): copies of one product share inner folds,
        as they share outer ones."""
        if self.row_groups is not None:
            return np.asarray(self.row_groups)
        return product_groups(self.both, self.schema)

    def embedding(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(matrix, ok) of 01_extract run `name` over every row, refused unless it matches the CSVs row for row."""
        cache = self.__dict__.setdefault("_embeddings", {})
        if name not in cache:
            parts = [load_embeddings(self.work_dir, name, split, self.data[split][self.schema.id_column],
                                     frame=self.data[split], schema=self.schema,
                                     has_images=self.schema.image_column is not None) for split in SPLITS]
            cache[name] = (np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        return cache[name]


class Learner(ABC):
    """A 03_train learner (see the module docstring): params in the constructor, fitted state in `*_` attributes."""

    name: ClassVar[str] = ""
    threads_change_results: ClassVar[bool] = False  # True: result_threads is recorded and kept on resume

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters and their values (scikit-learn's get_params, without nesting)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params) -> Learner:
        """Change constructor parameters in place (a misspelt name is an error); returns self."""
        known = self.get_params()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"learner {self.name!r} has no parameters {unknown}; its parameters are {sorted(known)}")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def check_settings(self) -> None:  # noqa: B027 - optional: a learner with settings to refuse overrides it
        """Refuse settings the learner cannot train with, from the settings alone (no data): `prepare` calls it
        first, and kaggle build calls it on learners at hand without importing their modules."""

    def prepare(self, inputs: RunInputs) -> Learner:
        """Build what `fit` and `predict` read, once per run; returns self."""
        self.inputs_ = inputs
        return self

    @abstractmethod
    def fit(self, rows: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Learner:
        """Learn from `rows` (train rows of one fold, maybe labelled test rows) and their prices `y`."""

    @abstractmethod
    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Prices for `rows` on the original scale, each >= MIN_PREDICTION."""

    def feature_importance(self) -> pd.Series | None:
        """Importance per input column of the last fit (gain for trees); None when the learner has none."""
        return None

    def feature_groups(self) -> dict[str, str] | None:
        """The feature group (or embedding spec) of each column feature_importance names, once prepared; None
        for learners without named columns."""
        return None

    def fit_report(self) -> dict[str, Any]:
        """What the last fit chose, for the run's metrics (e.g. the trees or steps early stopping kept); {} when
        the learner chooses nothing."""
        return {}

    def save_fold(self, folder: Path, fold: int) -> None:  # noqa: B027 - optional: most learners keep nothing
        """Keep the model of fold `fold` in `folder` (learners with a file format do)."""

    def describe(self) -> dict[str, Any]:
        """What a run's metrics record about this learner."""
        return {"learner": self.name, "params": _jsonable(self.get_params())}

    def resume_key(self) -> dict[str, Any]:
        """What a resumed run's kept folds must have been computed with: `describe` less what changes no result."""
        return self.describe()

    def result_threads(self) -> int | None:
        """The CPU threads its fits use where the count changes their results (torch on CPU: its sums split by
        thread), set once in prepare; None where it does not (LightGBM runs `deterministic`, GPUs)."""
        return getattr(self, "threads_", None) if self.threads_change_results else None

    def keep_threads(self, threads: int) -> str | None:
        """Fit on `threads`, the count a resumed run's kept folds were fit with, unless `num_threads` names one:
        the resume key leaves the count out, so another machine keeps its folds. What to print, or None."""
        now = self.result_threads()
        if now is None or now == threads:
            return None
        if self.num_threads == 0:
            self.threads_ = threads
            return (f"its fits run on {threads} CPU threads as the kept folds did (this machine would pick {now}): "
                    "torch's CPU results change with the thread count")
        return (f"WARNING: the kept folds were fit on {threads} CPU threads, the rest on num_threads={now}: torch's "
                f"CPU results change with the thread count, so this run's numbers differ slightly from one on a "
                f"single count (num_threads 0 or {threads} fits on the kept folds' count)")

    def fresh(self) -> Learner:
        """A shallow copy without fitted state, sharing the prepared inputs (for a model per group)."""
        twin = copy.copy(self)
        for key in [k for k in vars(twin) if k.endswith("_") and k not in self.prepared_attributes()]:
            delattr(twin, key)
        return twin

    def prepared_attributes(self) -> set[str]:
        """Attributes `prepare` sets (kept by `fresh`)."""
        return {"inputs_"}

    def _check_prepared(self) -> None:
        if not hasattr(self, "inputs_"):
            raise RuntimeError(f"learner {self.name!r}: call prepare(inputs) before fit/predict")


def fp16_overflow_words(reports: list[dict]) -> str:
    """'; N fp16-overflow micro-batches skipped; M optimizer steps skipped (...)' over fit reports, or ''."""
    batches = sum(report.get("fp16_skipped_batches", 0) for report in reports)
    steps = sum(report.get("fp16_skipped_steps", 0) for report in reports)
    return (f"; {batches} fp16-overflow micro-batches skipped" if batches else "") + (
        f"; {steps} optimizer steps skipped by the fp16 GradScaler (gradients not finite)" if steps else "")


def floor_prediction(values: np.ndarray) -> np.ndarray:
    """Predictions as positive prices (NaN never passes: it is an error upstream)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise FloatingPointError(f"{int((~np.isfinite(values)).sum())} predictions are NaN or infinite")
    return np.maximum(values, MIN_PREDICTION)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Params as JSON-friendly values (arrays and objects become their type name)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, str | int | float | bool | type(None)):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str | int | float | bool) for v in value):
            out[key] = list(value)
        elif isinstance(value, dict):
            out[key] = _jsonable(value)
        else:
            out[key] = type(value).__name__
    return out


MAX_BAGS = 50  # models per fit at most (tree learners' and mlp's `bags`)


def check_bag_settings(bags, refit=True) -> None:
    """`bags` must be a whole number of models, at least one; `refit` true or false (a JSON "false" is text, and
    would count as true)."""
    if isinstance(bags, bool) or not isinstance(bags, (int, np.integer)) or not 1 <= bags <= MAX_BAGS:
        raise ValueError(f"bags must be a whole number from 1 to {MAX_BAGS} (models per fit), got {bags!r}")
    if not isinstance(refit, (bool, np.bool_)):
        raise ValueError(f"refit must be true or false (JSON, without quotes), got {refit!r}")
