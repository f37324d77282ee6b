"""Stage 03: K-fold LightGBM on log1p(target) over engineered features and embedding runs.

Folds are made once per work folder (`03_train/folds.csv`) and reused by every run, so 04_ensemble
can compare and blend runs row for row. The CV score is computed on out-of-fold predictions,
on the original scale, with amzkit.metric.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.extract import load_embeddings
from amzkit.features import build_features
from amzkit.io import atomic_path, id_hash, read_json, save_figure, stage_dir, write_csv, write_json
from amzkit.metric import METRICS, smape
from amzkit.schema import Schema, get_schema

FOLDS_FILE = "folds.csv"
MIN_PREDICTION = 1e-3


def make_folds(target: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number per row, stratified on deciles of log1p(target)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.log1p(np.asarray(target, dtype=float))
    n_bins = max(2, min(10, len(y) // (n_folds * 2)))
    bins = pd.qcut(y, q=n_bins, labels=False, duplicates="drop")
    folds = np.empty(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, valid) in enumerate(splitter.split(np.zeros(len(y)), bins)):
        folds[valid] = fold
    return folds


def shared_folds(work_dir: str | Path, ids, target, n_folds: int, seed: int) -> np.ndarray:
    """The work folder's fold assignment: created on first use, then reused (and checked) by every run."""
    path = stage_dir(work_dir, "03_train") / FOLDS_FILE
    ids = np.asarray(ids)
    if path.is_file():
        saved = pd.read_csv(path)
        if len(saved) != len(ids) or not np.array_equal(saved["id"].to_numpy(), ids):
            raise ValueError(f"{path} was made for other train rows; delete it to make new folds")
        if saved["fold"].nunique() != n_folds:
            raise ValueError(
                f"{path} has {saved['fold'].nunique()} folds but n_folds={n_folds}: runs must share folds to "
                "be blended; use the same n_folds or delete the file to start a new experiment"
            )
        return saved["fold"].to_numpy()
    folds = make_folds(target, n_folds, seed)
    write_csv(pd.DataFrame({"id": ids, "fold": folds}), path)
    return folds


@dataclass
class LightGBMRegressor:
    """LightGBM on log1p(target) with early stopping; parameters stored as given (scikit-learn style)."""

    objective: str = "l1"
    learning_rate: float = 0.05
    n_estimators: int = 2000
    early_stopping_rounds: int = 100
    num_threads: int = 0
    seed: int = 42
    extra: dict = field(default_factory=dict)

    def params(self) -> dict:
        return {"objective": self.objective, "learning_rate": self.learning_rate, "num_leaves": 31,
                "min_data_in_leaf": 20, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
                "lambda_l2": 1.0, "seed": self.seed, "num_threads": self.num_threads, "verbose": -1,
                "deterministic": True, "force_col_wise": True, **self.extra}

    def fit(self, x_train, y_train, x_valid, y_valid) -> LightGBMRegressor:
        import lightgbm as lgb

        train_set = lgb.Dataset(x_train, np.log1p(y_train))
        valid_set = lgb.Dataset(x_valid, np.log1p(y_valid), reference=train_set)
        self.booster_ = lgb.train(
            self.params(), train_set, num_boost_round=self.n_estimators, valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        return self

    def predict(self, x) -> np.ndarray:
        log_pred = self.booster_.predict(x, num_iteration=self.booster_.best_iteration)
        return np.maximum(np.expm1(log_pred), MIN_PREDICTION)


def assemble_features(
    data: dict[str, pd.DataFrame], schema: Schema, work_dir: str | Path, features: list[str], embeddings: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Engineered feature groups plus the named embedding runs (checked against the CSV ids)."""
    x_train, x_test = build_features(data["train"], data["test"], schema, features)
    for name in embeddings:
        blocks = {}
        for split in ("train", "test"):
            emb, _ = load_embeddings(work_dir, name, split, data[split][schema.id_column])
            blocks[split] = pd.DataFrame(emb, columns=[f"{name}_{i}" for i in range(emb.shape[1])])
        x_train = pd.concat([x_train, blocks["train"]], axis=1)
        x_test = pd.concat([x_test, blocks["test"]], axis=1)
    if x_train.shape[1] == 0:
        raise ValueError("no features: give at least one feature group or embedding run")
    return x_train, x_test


def cross_validate(model: LightGBMRegressor, x: pd.DataFrame, y: np.ndarray, folds: np.ndarray,
                   x_test: pd.DataFrame) -> dict:
    """Out-of-fold predictions, per-fold SMAPE, test predictions (geometric mean over folds), importance."""
    from tqdm.auto import tqdm

    oof = np.full(len(y), np.nan)
    test_log = np.zeros(len(x_test))
    fold_scores, baseline_scores, importance = [], [], np.zeros(x.shape[1])
    fold_ids = np.unique(folds)
    for fold in tqdm(fold_ids, desc="folds"):
        train_idx, valid_idx = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        fitted = model.fit(x.iloc[train_idx], y[train_idx], x.iloc[valid_idx], y[valid_idx])
        oof[valid_idx] = fitted.predict(x.iloc[valid_idx])
        test_log += np.log(fitted.predict(x_test)) / len(fold_ids)
        fold_scores.append(smape(y[valid_idx], oof[valid_idx]))
        baseline_scores.append(smape(y[valid_idx], np.full(len(valid_idx), np.median(y[train_idx]))))
        importance += fitted.booster_.feature_importance("gain")
    return {"oof": oof, "test": np.exp(test_log), "fold_smape": fold_scores,
            "fold_constant_smape": baseline_scores, "importance": importance / len(fold_ids)}


def train_run(
    data: dict[str, pd.DataFrame], schema: str, work_dir: str | Path, run_name: str, features: list[str],
    embeddings: list[str], n_folds: int = 5, seed: int = 42, **model_params,
) -> dict:
    """Cross-validate one LightGBM run and write its folder, metrics and a row of the runs log."""
    schema_ = get_schema(schema)
    started = time.perf_counter()
    train, test = data["train"], data["test"]
    y = train[schema_.target].to_numpy(dtype=float)
    folds = shared_folds(work_dir, train[schema_.id_column], y, n_folds, seed)
    x_train, x_test = assemble_features(data, schema_, work_dir, features, embeddings)
    model = LightGBMRegressor(seed=seed, **model_params)
    result = cross_validate(model, x_train, y, folds, x_test)
    run_dir = stage_dir(work_dir, "03_train") / run_name
    ids = train[schema_.id_column].to_numpy()
    write_csv(pd.DataFrame({"id": ids, "fold": folds, "target": y, "pred": result["oof"]}), run_dir / "oof.csv")
    write_csv(pd.DataFrame({"id": test[schema_.id_column].to_numpy(), "pred": result["test"]}),
              run_dir / "test_pred.csv")
    importance = pd.DataFrame({"feature": x_train.columns, "gain": result["importance"]}).sort_values(
        "gain", ascending=False)
    write_csv(importance, run_dir / "feature_importance.csv")
    metrics = {
        "run": run_name, "schema": schema_.name, "rows": len(y), "n_features": x_train.shape[1],
        "features": features, "embeddings": embeddings, "params": model.params(), "n_folds": n_folds,
        "folds_sha256": id_hash(folds), "train_ids_sha256": id_hash(ids),
        "cv_smape": smape(y, result["oof"]),
        "fold_smape": result["fold_smape"], "fold_smape_mean": float(np.mean(result["fold_smape"])),
        "fold_smape_std": float(np.std(result["fold_smape"])),
        "constant_median_smape": float(np.mean(result["fold_constant_smape"])),
        "seconds": round(time.perf_counter() - started, 2),
    }
    for name in schema_.report_metrics:
        metrics[f"cv_{name}"] = METRICS[name].fn(y, result["oof"])
    write_json(run_dir / "metrics.json", metrics)
    append_runs_log(work_dir, metrics)
    return metrics


RUNS_LOG_COLUMNS = ("time", "run", "schema", "features", "embeddings", "n_features", "cv_smape",
                    "fold_smape_std", "constant_median_smape", "seconds", "params")


def append_runs_log(work_dir: str | Path, metrics: dict) -> Path:
    """Append one row per run to work_dir/runs.csv (the experiment leaderboard)."""
    path = Path(work_dir) / "runs.csv"
    row = {**metrics, "time": datetime.now(UTC).isoformat(timespec="seconds")}
    row = {k: json.dumps(row[k]) if isinstance(row[k], (list, dict)) else row[k] for k in RUNS_LOG_COLUMNS}
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
    ax.plot([low, high], [low, high], "k--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="actual", ylabel="out-of-fold prediction",
           title=f"{name}: CV SMAPE {smape(oof['target'], oof['pred']):.2f}")
    save_figure(fig, run_dir / "oof_scatter.png")
    return fig
