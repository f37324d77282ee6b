"""Stage 03: cross-validation that can be trusted, LightGBM on text features and embeddings.

- Folds are made once per work folder (`03_train/folds.csv` + `folds.json`) and reused by every run and
  by 04_ensemble: stratified on binned log target, plain KFold, or grouped by near-duplicate product
  (same normalised item name) so copies of one product never sit on both sides.
- Nothing is fit outside the training fold: TF-IDF+SVD, PCA and top-K correlated dimension selection
  are fit per fold (`FoldTransform`s); label-free engineered features are computed once.
- The CV SMAPE is computed on out-of-fold predictions, on the original scale, with amzkit.metric.
"""

from __future__ import annotations

import csv
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.extract import load_embeddings
from amzkit.features import FEATURE_GROUPS, build_features
from amzkit.io import atomic_path, id_hash, read_json, save_figure, stage_dir, write_csv, write_json
from amzkit.metric import METRICS, smape
from amzkit.schema import Schema, get_schema, row_text

FOLDS_FILE = "folds.csv"
FOLD_STRATEGIES = ("stratified", "kfold", "group")
MIN_PREDICTION = 1e-3
MIN_GROUP_ROWS = 200

# The roadmap's LightGBM parameters, verbatim (Phase 2.2); the `seed` preset trains them on the raw target.
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
    """A preset dict with exactly PRESET_KEYS and a known target transform."""
    missing, extra = set(PRESET_KEYS) - set(preset), set(preset) - set(PRESET_KEYS)
    if missing or extra:
        raise ValueError(f"{name}: a preset has keys {list(PRESET_KEYS)}; missing {sorted(missing)}, "
                         f"unknown {sorted(extra)}")
    if preset["target"] not in ("log1p", "raw"):
        raise ValueError(f"{name}: target must be 'log1p' or 'raw', not {preset['target']!r}")
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
    """A built-in preset, or one saved in `work_dir` (03_train/presets/<name>.json)."""
    if name in PRESETS:
        return json.loads(json.dumps(PRESETS[name]))
    if work_dir is not None and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) \
            and preset_path(work_dir, name).is_file():
        saved = read_json(preset_path(work_dir, name))
        return check_preset({k: saved.get(k) for k in PRESET_KEYS if k in saved}, name)
    known = sorted(PRESETS) + (saved_presets(work_dir) if work_dir is not None else [])
    raise ValueError(f"unknown preset {name!r}; choose from {known}"
                     + ("" if work_dir is None else f" (saved presets live in {preset_path(work_dir, 'x').parent})"))


# --- folds ---------------------------------------------------------------------------------------------

def normalized_name(text: str) -> str:
    """Lower-case words and numbers only: copies of one product listed twice share it."""
    return " ".join(re.findall(r"[a-z0-9]+", str(text).lower().replace("&", " and ")))


def product_names(train: pd.DataFrame, schema: Schema) -> pd.Series:
    """The item name per row (2025: parsed from catalog_content; 2023: TITLE), normalised."""
    if schema.name == "amazon2025":
        from amzkit.catalog import parse_catalog_column

        names = parse_catalog_column(train["catalog_content"])["item_name"].fillna("")
    else:
        names = train["TITLE"].fillna("")
    return names.map(normalized_name)


def make_folds(target: np.ndarray, n_folds: int, seed: int, strategy: str = "stratified",
               groups: np.ndarray | None = None) -> np.ndarray:
    """Fold number per row: stratified on log1p(target) bins, plain KFold, or grouped (stratified) by `groups`."""
    from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

    if strategy not in FOLD_STRATEGIES:
        raise ValueError(f"unknown fold strategy {strategy!r}; choose from {FOLD_STRATEGIES}")
    y = np.log1p(np.asarray(target, dtype=float))
    n_bins = max(2, min(10, len(y) // (n_folds * 2)))
    bins = pd.qcut(y, q=n_bins, labels=False, duplicates="drop")
    folds = np.empty(len(y), dtype=np.int64)
    if strategy == "kfold":
        splits = KFold(n_folds, shuffle=True, random_state=seed).split(y)
    elif strategy == "stratified":
        splits = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(y, bins)
    else:
        if groups is None:
            raise ValueError("the 'group' fold strategy needs groups (normalised product names)")
        splits = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(y, bins, groups)
    for fold, (_, valid) in enumerate(splits):
        folds[valid] = fold
    return folds


def shared_folds(work_dir: str | Path, train: pd.DataFrame, schema: Schema, n_folds: int, seed: int,
                 strategy: str = "stratified") -> np.ndarray:
    """The work folder's fold assignment: created on first use, then reused (and checked) by every run."""
    folder = stage_dir(work_dir, "03_train")
    path, info_path = folder / FOLDS_FILE, folder / "folds.json"
    ids = train[schema.id_column].to_numpy()
    wanted = {"n_folds": n_folds, "seed": seed, "strategy": strategy}
    if path.is_file():
        saved = pd.read_csv(path)
        if len(saved) != len(ids) or not np.array_equal(saved["id"].to_numpy(), ids):
            raise ValueError(f"{path} was made for other train rows; delete it to make new folds")
        info = read_json(info_path) if info_path.is_file() else {"n_folds": int(saved["fold"].nunique())}
        differs = {k: (info.get(k), v) for k, v in wanted.items() if k in info and info[k] != v}
        if differs:
            raise ValueError(
                f"{path} was made with {info}, this run asks for {wanted}: runs must share folds to be compared "
                "and blended. Use the same n_folds/seed/fold_strategy, or another work_dir for a new experiment."
            )
        return saved["fold"].to_numpy()
    groups = product_names(train, schema).to_numpy() if strategy == "group" else None
    folds = make_folds(train[schema.target].to_numpy(), n_folds, seed, strategy, groups)
    write_csv(pd.DataFrame({"id": ids, "fold": folds}), path)
    write_json(info_path, {**wanted, "folds_sha256": id_hash(folds)})
    return folds


# --- features fit inside the folds -------------------------------------------------------------------------

class FoldTransform(ABC):
    """Features learnt from training-fold rows only. Rows index the stacked (train + test) inputs."""

    names: list[str]

    def fit(self, rows: np.ndarray, y: np.ndarray) -> FoldTransform:
        return self

    @abstractmethod
    def transform(self, rows: np.ndarray) -> np.ndarray:
        """Feature columns for `rows` (after `fit` on the training fold)."""


class TfidfSvdTransform(FoldTransform):
    """TF-IDF (1-2 grams) + TruncatedSVD of the text, fit on the training fold."""

    def __init__(self, texts: list[str], dim: int = 64, seed: int = 0):
        self.texts, self.dim, self.seed = texts, dim, seed
        self.names = [f"tfidf_{i}" for i in range(dim)]

    def fit(self, rows, y):
        from amzkit.models import TfidfSvdEmbedder

        self.embedder_ = TfidfSvdEmbedder(dim=self.dim, seed=self.seed).fit([self.texts[i] for i in rows])
        return self

    def transform(self, rows):
        out, _ = self.embedder_.transform([self.texts[i] for i in rows])
        padded = np.full((len(rows), self.dim), np.nan, dtype=np.float32)
        padded[:, :out.shape[1]] = out
        return padded


class TopKCorrTransform(FoldTransform):
    """The K embedding dimensions most correlated (|Pearson|) with log1p(target) on the training fold."""

    def __init__(self, name: str, matrix: np.ndarray, k: int):
        self.matrix, self.k = matrix, min(k, matrix.shape[1])
        self.names = [f"{name}_top{i}" for i in range(self.k)]

    def fit(self, rows, y):
        from amzkit.correlate import pearson_columns

        good = np.isfinite(self.matrix[rows]).all(axis=1)
        corr = pearson_columns(self.matrix[rows][good], np.log1p(y[good]))
        self.dims_ = np.argsort(-np.abs(corr))[: self.k]
        return self

    def transform(self, rows):
        return self.matrix[rows][:, self.dims_]


class PcaTransform(FoldTransform):
    """PCA of an embedding fit on the training fold; rows without an embedding stay NaN."""

    def __init__(self, name: str, matrix: np.ndarray, n: int, seed: int = 0):
        self.matrix, self.n, self.seed = matrix, min(n, matrix.shape[1]), seed
        self.names = [f"{name}_pc{i}" for i in range(self.n)]

    def fit(self, rows, y):
        from sklearn.decomposition import PCA

        block = self.matrix[rows]
        self.pca_ = PCA(self.n, random_state=self.seed).fit(block[np.isfinite(block).all(axis=1)])
        return self

    def transform(self, rows):
        block = self.matrix[rows]
        good = np.isfinite(block).all(axis=1)
        out = np.full((len(rows), self.n), np.nan, dtype=np.float32)
        if good.any():
            out[good] = self.pca_.transform(block[good])
        return out


def inner_folds(rows: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Inner fold per training row (for a fold transform's own-label-free values); rows of one group (copies
    of one product) share a fold, as in the outer folds."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.permutation(np.arange(len(rows)) % n_folds)
    _, group_index = np.unique(np.asarray(groups)[rows], return_inverse=True)
    return rng.permutation(np.arange(group_index.max() + 1) % n_folds)[group_index.ravel()]


class KnnTargetTransform(FoldTransform):
    """Neighbour-price features: mean/median log1p(target) of the k most similar training-fold rows (cosine).

    Training rows get the value from inner folds (never their own label; with `groups`, never a copy of the
    same product either, matching grouped outer folds), other rows search all training rows; a row without
    an embedding gets NaN.
    """

    INNER_FOLDS = 5
    BLOCK = 1024

    def __init__(self, name: str, matrix: np.ndarray, k: int, seed: int = 0, groups: np.ndarray | None = None):
        self.matrix, self.k, self.seed, self.groups = matrix, k, seed, groups
        self.names = [f"{name}_knn{k}_mean", f"{name}_knn{k}_median", f"{name}_knn{k}_top_sim"]


    def _unit(self, rows: np.ndarray) -> np.ndarray:
        block = (self.matrix[rows] - self.mean_) / self.scale_
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        return np.divide(block, norms, out=np.zeros_like(block), where=norms > 0).astype(np.float32)

    def _query(self, queries: np.ndarray, reference: np.ndarray, ref_log: np.ndarray) -> np.ndarray:
        out = np.full((len(queries), 3), np.nan, dtype=np.float32)
        k = min(self.k, len(ref_log))
        for start in range(0, len(queries), self.BLOCK):
            sims = queries[start:start + self.BLOCK] @ reference.T
            nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            values = ref_log[nearest]
            out[start:start + self.BLOCK] = np.column_stack(
                [values.mean(axis=1), np.median(values, axis=1), np.take_along_axis(sims, nearest, 1).max(axis=1)])
        return out

    def fit(self, rows, y):
        good = np.isfinite(self.matrix[rows]).all(axis=1)
        rows, y = rows[good], y[good]
        self.mean_ = self.matrix[rows].mean(axis=0, dtype=np.float64).astype(np.float32)
        self.scale_ = self.matrix[rows].std(axis=0, dtype=np.float64).astype(np.float32)
        self.scale_[self.scale_ == 0] = 1.0
        self.reference_, self.log_ = self._unit(rows), np.log1p(y)
        inner = inner_folds(rows, self.INNER_FOLDS, self.seed, self.groups)
        own = np.empty((len(rows), 3), dtype=np.float32)
        for fold in range(self.INNER_FOLDS):
            held, kept = inner == fold, inner != fold
            own[held] = self._query(self.reference_[held], self.reference_[kept], self.log_[kept])
        self.train_values_ = dict(zip(rows.tolist(), own, strict=True))
        return self

    def transform(self, rows):
        out = np.full((len(rows), 3), np.nan, dtype=np.float32)
        known = np.array([r in self.train_values_ for r in rows.tolist()], dtype=bool)
        if known.any():
            out[known] = np.stack([self.train_values_[r] for r in rows[known].tolist()])
        fresh = ~known & np.isfinite(self.matrix[rows]).all(axis=1)
        if fresh.any():
            out[fresh] = self._query(self._unit(rows[fresh]), self.reference_, self.log_)
        return out


SELECTIONS = {"topk_corr": TopKCorrTransform, "pca": PcaTransform, "knn": KnnTargetTransform}


@dataclass
class FoldGroupInputs:
    """What a fold-fitted feature group is built from: train+test rows stacked (train first) and options."""

    both: pd.DataFrame
    schema: Schema
    seed: int = 0
    tfidf_dim: int = 64

    @cached_property
    def groups(self) -> np.ndarray:
        """Normalised product name per row: copies of one product share inner folds as they share outer ones."""
        return product_names(self.both, self.schema).to_numpy()

    @cached_property
    def texts(self) -> list[str]:
        """The row text (computed once, whichever groups read it)."""
        return row_text(self.both, self.schema).tolist()


def _tfidf_group(inputs: FoldGroupInputs) -> FoldTransform:
    return TfidfSvdTransform(inputs.texts, inputs.tfidf_dim, inputs.seed)


def _twin_price_group(inputs: FoldGroupInputs) -> FoldTransform:
    from amzkit.leaks import TwinPriceTransform  # leaks imports train

    return TwinPriceTransform(inputs.texts, threshold=0.9, groups=inputs.groups)


def _brand_price_group(inputs: FoldGroupInputs) -> FoldTransform:
    from amzkit.vocab import brand_price_transform  # vocab imports train

    return brand_price_transform(inputs.both, inputs.schema, inputs.seed, inputs.groups)


def _material_price_group(inputs: FoldGroupInputs) -> FoldTransform:
    from amzkit.vocab import material_price_transform

    return material_price_transform(inputs.both, inputs.schema, inputs.seed, inputs.groups)


# Feature groups fit inside the folds (label-free groups: features.py; image groups: imagefeatures.py).
FOLD_FEATURE_GROUPS: dict[str, Callable[[FoldGroupInputs], FoldTransform]] = {
    "tfidf": _tfidf_group,
    "twin_price": _twin_price_group,
    "brand_price": _brand_price_group,
    "material_price": _material_price_group,
}
IMAGE_FEATURE_GROUP_NAMES = ("image_meta", "colour")  # read 01's image cache: need data_dir and work_dir


def all_feature_groups() -> list[str]:
    """Every feature group 03_train accepts."""
    return sorted([*FEATURE_GROUPS, *FOLD_FEATURE_GROUPS, *IMAGE_FEATURE_GROUP_NAMES])


def parse_embedding_spec(spec: str) -> tuple[str, str, int]:
    """'run' -> (run, 'all', 0); 'run:topk_corr:50', 'run:pca:32', 'run:knn:20' -> (run, strategy, size)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return parts[0], "all", 0
    if len(parts) == 3 and parts[1] in SELECTIONS and parts[2].isdigit() and int(parts[2]) > 0:
        return parts[0], parts[1], int(parts[2])
    raise ValueError(f"embedding {spec!r}: write 'run', 'run:topk_corr:K', 'run:pca:N' or 'run:knn:K' "
                     "(K, N positive integers)")


@dataclass
class FeatureSet:
    """Label-free columns for train+test rows, plus the transforms each fold fits on its training rows."""

    static: np.ndarray  # (n_train + n_test, p) float32
    static_names: list[str]
    categorical: list[int]
    transforms: list[FoldTransform] = field(default_factory=list)
    n_train: int = 0

    @property
    def names(self) -> list[str]:
        return self.static_names + [n for t in self.transforms for n in t.names]

    def matrix(self, rows: np.ndarray) -> np.ndarray:
        blocks = [self.static[rows]] + [t.transform(rows) for t in self.transforms]
        return np.hstack(blocks).astype(np.float32, copy=False)


def assemble_features(data: dict[str, pd.DataFrame], schema: Schema, work_dir: str | Path, features: list[str],
                      embeddings: list[str], tfidf_dim: int = 64, seed: int = 0,
                      data_dir: str | Path | None = None) -> FeatureSet:
    """Engineered groups + image groups + embedding runs (checked against the CSV ids) + per-fold transforms."""
    unknown = [g for g in features if g not in all_feature_groups()]
    if unknown:
        raise ValueError(f"unknown feature groups {unknown}; choose from {all_feature_groups()}")
    text_groups = [g for g in features if g in FEATURE_GROUPS]
    x_train, x_test = build_features(data["train"], data["test"], schema, text_groups)
    frame = pd.concat([x_train, x_test], ignore_index=True)
    image_groups = [g for g in features if g in IMAGE_FEATURE_GROUP_NAMES]
    if image_groups:
        from amzkit.imagefeatures import build_image_features

        if data_dir is None:
            raise ValueError(f"feature groups {image_groups} read 01's image cache: pass data_dir (the CSVs' folder)")
        i_train, i_test = build_image_features(data, schema, Path(data_dir), Path(work_dir), image_groups)
        frame = pd.concat([frame, pd.concat([i_train, i_test], ignore_index=True)], axis=1)
        for column in frame.columns:
            if frame[column].dtype == object:
                frame[column] = frame[column].astype("category")
    categorical = [i for i, c in enumerate(frame.columns) if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    for i in categorical:
        column = frame.columns[i]
        frame[column] = frame[column].cat.codes.astype(np.float32).replace(-1, np.nan)
    blocks, names = [frame.to_numpy(dtype=np.float32)], list(frame.columns)
    inputs = FoldGroupInputs(pd.concat([data["train"], data["test"]], ignore_index=True), schema, seed, tfidf_dim)
    transforms = [FOLD_FEATURE_GROUPS[g](inputs) for g in features if g in FOLD_FEATURE_GROUPS]
    for spec in embeddings:
        name, strategy, size = parse_embedding_spec(spec)
        matrix = np.vstack([load_embeddings(work_dir, name, split, data[split][schema.id_column])[0]
                            for split in ("train", "test")])
        if strategy == "all":
            blocks.append(matrix)
            names += [f"{name}_{i}" for i in range(matrix.shape[1])]
        elif strategy == "knn":
            transforms.append(KnnTargetTransform(name, matrix, size, seed, inputs.groups))
        else:
            transforms.append(SELECTIONS[strategy](name, matrix, size))
    static = np.hstack(blocks) if len(blocks) > 1 else blocks[0]
    if static.shape[1] == 0 and not transforms:
        raise ValueError("no features: give at least one feature group or embedding run")
    return FeatureSet(static, names, categorical, transforms, n_train=len(data["train"]))


# --- the model ---------------------------------------------------------------------------------------------

@dataclass
class LightGBMRegressor:
    """LightGBM from a preset (a built-in name, or a preset dict such as a saved Optuna result); early stopping
    on the fold's validation rows. Stores params only."""

    preset: str | dict = "default"
    params: dict = field(default_factory=dict)
    num_threads: int = 0
    seed: int = 42

    def config(self) -> dict:
        preset = check_preset(self.preset) if isinstance(self.preset, dict) else resolve_preset(self.preset)
        params = {**preset["params"], **self.params, "seed": self.seed, "deterministic": True,
                  "force_col_wise": True}
        if self.num_threads:
            params.pop("n_jobs", None)
            params["num_threads"] = self.num_threads
        return {**preset, "params": params}

    def _target(self, y: np.ndarray) -> np.ndarray:
        return np.log1p(y) if self.config()["target"] == "log1p" else y

    def fit(self, x_train, y_train, x_valid, y_valid, feature_names=None, categorical=None,
            weight: np.ndarray | None = None) -> LightGBMRegressor:
        import lightgbm as lgb

        config = self.config()
        kwargs = {"feature_name": feature_names or "auto", "categorical_feature": categorical or "auto"}
        train_set = lgb.Dataset(x_train, self._target(y_train), weight=weight, **kwargs)
        valid_set = lgb.Dataset(x_valid, self._target(y_valid), reference=train_set, **kwargs)
        self.booster_ = lgb.train(
            config["params"], train_set, num_boost_round=config["n_estimators"], valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(config["early_stopping_rounds"], verbose=False)],
        )
        return self

    def predict(self, x) -> np.ndarray:
        raw = self.booster_.predict(x, num_iteration=self.booster_.best_iteration)
        return np.maximum(np.expm1(raw) if self.config()["target"] == "log1p" else raw, MIN_PREDICTION)


# --- pseudo-labels ------------------------------------------------------------------------------------------

TEST_FOLD_PRED_FILE = "test_fold_pred.csv"  # a run's test predictions by each fold's model (for pseudo-labels)


@dataclass
class PseudoLabels:
    """Confident test rows added to each fold's training rows with a weight.

    Honest by construction: fold f's pseudo labels are the source run's fold-f model predictions, and that
    model never saw fold f's validation rows (runs share folds); pseudo rows never enter a validation fold.
    """

    rows: np.ndarray  # indices of the chosen test rows in the stacked train+test inputs
    labels: dict[int, np.ndarray]  # fold id -> label per chosen row
    weight: float
    source: str
    spread: np.ndarray  # std of the source's fold models' log predictions per chosen row

    def summary(self) -> dict:
        return {"source": self.source, "rows": int(len(self.rows)), "weight": self.weight,
                "max_log_spread": float(self.spread.max()) if len(self.spread) else None}


def pseudo_labels(work_dir: str | Path, source: str, folds: np.ndarray, test_ids: np.ndarray, n_train: int,
                  fraction: float = 0.5, weight: float = 0.5) -> PseudoLabels:
    """The `fraction` of test rows on which the source run's fold models agree most (smallest spread of log
    predictions), labelled per fold by that fold's model."""
    if not 0 < fraction <= 1:
        raise ValueError(f"pseudo_label_fraction must be in (0, 1], got {fraction}")
    if not 0 < weight <= 1:
        raise ValueError(f"pseudo_label_weight must be in (0, 1], got {weight}")
    run_dir = stage_dir(work_dir, "03_train") / source
    path = run_dir / TEST_FOLD_PRED_FILE
    if not path.is_file():
        raise ValueError(f"pseudo-label source {source!r}: {path} is missing; pseudo-label from a LightGBM run of "
                         "03_train in this work folder (it saves each fold model's test predictions)")
    if read_json(run_dir / "metrics.json").get("folds_sha256") != id_hash(folds):
        raise ValueError(f"pseudo-label source {source!r} was trained on other folds: its fold models would have "
                         "seen this run's validation rows. Retrain it in this work folder's shared folds")
    table = pd.read_csv(path)
    if len(table) != len(test_ids) or not np.array_equal(table["id"].astype(str).to_numpy(),
                                                          np.asarray(test_ids).astype(str)):
        raise ValueError(f"{path} was made for other test rows; retrain {source!r} on this data")
    fold_ids = np.unique(folds)
    columns = [f"fold{f}" for f in fold_ids]
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing} of this run's folds")
    log_pred = np.log(table[columns].to_numpy(dtype=float))
    spread = log_pred.std(axis=1)
    chosen = np.sort(np.argsort(spread, kind="stable")[: max(1, int(round(fraction * len(spread))))])
    labels = {int(f): np.exp(log_pred[chosen, i]) for i, f in enumerate(fold_ids)}
    return PseudoLabels(n_train + chosen, labels, weight, source, spread[chosen])


def cross_validate(model: LightGBMRegressor, features: FeatureSet, y: np.ndarray, folds: np.ndarray,
                   group_of: np.ndarray | None = None, models_dir: Path | None = None,
                   on_fold: Callable[[int, float], None] | None = None, progress: bool = True,
                   pseudo: PseudoLabels | None = None) -> dict:
    """OOF predictions, per-fold SMAPE, test predictions (geometric mean over folds), gain importance.

    With `group_of` (one label per train+test row) a model per group with >= MIN_GROUP_ROWS training rows is
    trained in the same folds; its rows take its predictions, the rest the global model's.
    `on_fold(step, mean_smape_so_far)` is called after each fold (a tuner prunes by raising from it).
    With `pseudo`, each fold also trains on the chosen test rows (weighted, labelled by the source's model of
    that fold); fold transforms are fit on real training rows only and validation rows are real rows only.
    """
    from tqdm.auto import tqdm

    n_train = features.n_train
    test_rows = np.arange(n_train, len(features.static))
    oof = np.full(n_train, np.nan)
    test_log = np.zeros(len(test_rows))
    fold_scores, baseline_scores = [], []
    importance = np.zeros(len(features.names))
    fold_ids = np.unique(folds)
    test_folds = np.zeros((len(fold_ids), len(test_rows)))
    pseudo_rows = np.empty(0, dtype=np.int64) if pseudo is None else pseudo.rows
    for step, fold in enumerate(tqdm(fold_ids, desc="folds", disable=not progress)):
        train_rows, valid_rows = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        for transform in features.transforms:
            transform.fit(train_rows, y[train_rows])
        x_train, x_valid, x_test = (features.matrix(r) for r in (train_rows, valid_rows, test_rows))
        y_train, weight = y[train_rows], None
        if len(pseudo_rows):
            x_train = np.vstack([x_train, x_test[pseudo_rows - n_train]])
            y_train = np.concatenate([y_train, pseudo.labels[int(fold)]])
            weight = np.concatenate([np.ones(len(train_rows)), np.full(len(pseudo_rows), pseudo.weight)])
        fitted = model.fit(x_train, y_train, x_valid, y[valid_rows], features.names, features.categorical,
                           weight=weight)
        valid_pred, test_pred = fitted.predict(x_valid), fitted.predict(x_test)
        importance += fitted.booster_.feature_importance("gain")
        if models_dir is not None:
            models_dir.mkdir(parents=True, exist_ok=True)
            fitted.booster_.save_model(str(models_dir / f"fold{fold}.txt"))
        if group_of is not None:
            for group in np.unique(group_of[train_rows]):
                in_train = train_rows[group_of[train_rows] == group]
                in_valid = valid_rows[group_of[valid_rows] == group]
                if len(in_train) < MIN_GROUP_ROWS or len(in_valid) == 0:
                    continue
                in_pseudo = group_of[pseudo_rows] == group
                sub_x = np.vstack([features.matrix(in_train), x_test[pseudo_rows[in_pseudo] - n_train]])
                sub_y = np.concatenate([y[in_train], pseudo.labels[int(fold)][in_pseudo] if len(pseudo_rows) else []])
                sub_w = np.concatenate([np.ones(len(in_train)), np.full(int(in_pseudo.sum()), pseudo.weight)]) \
                    if len(pseudo_rows) else None
                sub = replace(model).fit(sub_x, sub_y, features.matrix(in_valid), y[in_valid], features.names,
                                         features.categorical, weight=sub_w)
                valid_pred[group_of[valid_rows] == group] = sub.predict(features.matrix(in_valid))
                in_test = group_of[test_rows] == group
                if in_test.any():
                    test_pred[in_test] = sub.predict(features.matrix(test_rows[in_test]))
        oof[valid_rows] = valid_pred
        test_log += np.log(test_pred) / len(fold_ids)
        test_folds[step] = test_pred
        fold_scores.append(smape(y[valid_rows], valid_pred))
        baseline_scores.append(smape(y[valid_rows], np.full(len(valid_rows), np.median(y[train_rows]))))
        if on_fold is not None:
            on_fold(step, float(np.mean(fold_scores)))
    return {"oof": oof, "test": np.exp(test_log), "test_folds": test_folds, "fold_smape": fold_scores,
            "fold_constant_smape": baseline_scores, "importance": importance / len(fold_ids)}


# --- a run: train, and the files every learner writes ---------------------------------------------------

def save_run(work_dir: str | Path, run_name: str, schema: Schema, train: pd.DataFrame, test: pd.DataFrame,
             folds: np.ndarray, oof: np.ndarray, test_pred: np.ndarray, info: dict,
             fold_constant_smape: list[float] | None = None) -> dict:
    """Write a run's OOF and test predictions and metrics, append the runs log; any learner can call it."""
    y = train[schema.target].to_numpy(dtype=float)
    ids = train[schema.id_column].to_numpy()
    if np.isnan(oof).any():
        raise ValueError(f"run {run_name}: {int(np.isnan(oof).sum())} train rows have no out-of-fold prediction")
    run_dir = stage_dir(work_dir, "03_train") / run_name
    write_csv(pd.DataFrame({"id": ids, "fold": folds, "target": y, "pred": oof}), run_dir / "oof.csv")
    write_csv(pd.DataFrame({"id": test[schema.id_column].to_numpy(), "pred": test_pred}), run_dir / "test_pred.csv")
    fold_ids = np.unique(folds)
    fold_scores = [smape(y[folds == f], oof[folds == f]) for f in fold_ids]
    if fold_constant_smape is None:
        fold_constant_smape = [smape(y[folds == f], np.full((folds == f).sum(), np.median(y[folds != f])))
                               for f in fold_ids]
    metrics = {
        "run": run_name, "schema": schema.name, "rows": len(y), **info, "n_folds": len(fold_ids),
        "folds_sha256": id_hash(folds), "train_ids_sha256": id_hash(ids),
        "cv_smape": smape(y, oof), "fold_smape": fold_scores, "fold_smape_mean": float(np.mean(fold_scores)),
        "fold_smape_std": float(np.std(fold_scores)),
        "constant_median_smape": float(np.mean(fold_constant_smape)),
    }
    for name in schema.report_metrics:
        metrics[f"cv_{name}"] = METRICS[name].fn(y, oof)
    write_json(run_dir / "metrics.json", metrics)
    append_runs_log(work_dir, metrics)
    return metrics


def train_run(
    data: dict[str, pd.DataFrame], schema: str, work_dir: str | Path, run_name: str, features: list[str],
    embeddings: list[str], n_folds: int = 5, seed: int = 42, fold_strategy: str = "stratified",
    preset: str = "default", lgb_params: dict | None = None, num_threads: int = 0, group_by: str = "",
    tfidf_dim: int = 64, data_dir: str | Path | None = None, pseudo_label_run: str = "",
    pseudo_label_fraction: float = 0.5, pseudo_label_weight: float = 0.5,
) -> dict:
    """Cross-validate one LightGBM run and write its folder, models, metrics and a row of the runs log.

    With `pseudo_label_run` the run also trains on that run's most confident test predictions, and is
    cross-validated twice in the same folds, with and without them (`pseudo_label.cv_smape_without`).
    """
    schema_ = get_schema(schema)
    started = time.perf_counter()
    train, test = data["train"], data["test"]
    y = train[schema_.target].to_numpy(dtype=float)
    folds = shared_folds(work_dir, train, schema_, n_folds, seed, fold_strategy)
    feature_set = assemble_features(data, schema_, work_dir, features, embeddings, tfidf_dim, seed, data_dir)
    pseudo = None
    if pseudo_label_run:
        pseudo = pseudo_labels(work_dir, pseudo_label_run, folds, test[schema_.id_column].to_numpy(), len(train),
                               pseudo_label_fraction, pseudo_label_weight)
    group_of = None
    if group_by:
        if group_by not in feature_set.static_names:
            raise ValueError(f"group_by {group_by!r} is not a feature column; pick one of {feature_set.static_names}")
        group_of = feature_set.static[:, feature_set.static_names.index(group_by)]
        group_of = np.where(np.isnan(group_of), -1, group_of)
    model = LightGBMRegressor(preset=resolve_preset(preset, work_dir), params=lgb_params or {},
                              num_threads=num_threads, seed=seed)
    run_dir = stage_dir(work_dir, "03_train") / run_name
    pseudo_info = {}
    if pseudo is not None:
        without = cross_validate(model, feature_set, y, folds, group_of)
        pseudo_info = {"pseudo_label": {**pseudo.summary(), "cv_smape_without": smape(y, without["oof"])}}
    result = cross_validate(model, feature_set, y, folds, group_of, models_dir=run_dir / "models", pseudo=pseudo)
    if pseudo is not None:
        pseudo_info["pseudo_label"]["cv_smape_with"] = smape(y, result["oof"])
    write_csv(pd.DataFrame({"id": test[schema_.id_column].to_numpy(),
                            **{f"fold{f}": result["test_folds"][i] for i, f in enumerate(np.unique(folds))}}),
              run_dir / TEST_FOLD_PRED_FILE)
    importance = pd.DataFrame({"feature": feature_set.names, "gain": result["importance"]}).sort_values(
        "gain", ascending=False)
    write_csv(importance, run_dir / "feature_importance.csv")
    info = {"learner": "lightgbm", "preset": preset, "features": features, "embeddings": embeddings,
            "fold_strategy": fold_strategy, "group_by": group_by, "n_features": len(feature_set.names),
            "params": model.config()["params"], **pseudo_info,
            "seconds": round(time.perf_counter() - started, 2)}
    return save_run(work_dir, run_name, schema_, train, test, folds, result["oof"], result["test"], info,
                    result["fold_constant_smape"])


RUNS_LOG_COLUMNS = ("time", "run", "learner", "schema", "features", "embeddings", "n_features", "cv_smape",
                    "fold_smape_std", "constant_median_smape", "seconds", "params")


def append_runs_log(work_dir: str | Path, metrics: dict) -> Path:
    """Append one row per run to work_dir/runs.csv (the experiment leaderboard)."""
    path = Path(work_dir) / "runs.csv"
    row = {**metrics, "time": datetime.now(UTC).isoformat(timespec="seconds")}
    row = {k: json.dumps(row.get(k)) if isinstance(row.get(k), (list, dict)) else row.get(k) for k in RUNS_LOG_COLUMNS}
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            fh.write(existing)
            writer = csv.DictWriter(fh, fieldnames=RUNS_LOG_COLUMNS)
            if not existing:
                writer.writeheader()
            writer.writerow(row)
    return path


def runs_leaderboard(work_dir: str | Path) -> pd.DataFrame:
    """The runs log, best CV SMAPE first."""
    path = Path(work_dir) / "runs.csv"
    if not path.is_file():
        return pd.DataFrame(columns=RUNS_LOG_COLUMNS)
    return pd.read_csv(path).sort_values("cv_smape").reset_index(drop=True)


def load_run(work_dir: str | Path, name: str) -> dict:
    """A finished 03_train run: its metrics, OOF frame and test predictions."""
    run_dir = stage_dir(work_dir, "03_train") / name
    return {"metrics": read_json(run_dir / "metrics.json"), "oof": pd.read_csv(run_dir / "oof.csv"),
            "test": pd.read_csv(run_dir / "test_pred.csv")}


def plot_importance(work_dir: str | Path, name: str, top: int = 30):
    """Bar chart of the top features by gain; saved as PNG in the run folder."""
    import matplotlib.pyplot as plt

    run_dir = stage_dir(work_dir, "03_train") / name
    if not (run_dir / "feature_importance.csv").is_file():
        print(f"{name}: this learner reports no feature importance")
        return None
    table = pd.read_csv(run_dir / "feature_importance.csv").head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.25 * len(table))))
    ax.barh(table["feature"], table["gain"])
    ax.set(xlabel="gain (mean over folds)", title=f"{name}: top {len(table)} features")
    save_figure(fig, run_dir / "feature_importance.png")
    return fig


def plot_oof(work_dir: str | Path, name: str):
    """Predicted vs actual (log axes) on out-of-fold rows; saved as PNG in the run folder."""
    import matplotlib.pyplot as plt

    run_dir = stage_dir(work_dir, "03_train") / name
    oof = pd.read_csv(run_dir / "oof.csv")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(oof["target"], oof["pred"], s=6, alpha=0.4)
    low, high = oof[["target", "pred"]].min().min(), oof[["target", "pred"]].max().max()
    ax.plot([max(low, 1e-3), high], [max(low, 1e-3), high], "k--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="actual", ylabel="out-of-fold prediction",
           title=f"{name}: CV SMAPE {smape(oof['target'], oof['pred']):.2f}")
    save_figure(fig, run_dir / "oof_scatter.png")
    return fig
