"""A 03_train run on disk: OOF and test predictions, metrics, the runs log; read back by 04 and 05."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.io import (
    atomic_path,
    files_sha256,
    id_hash,
    read_json,
    rows_sha256,
    show_ids,
    write_csv,
    write_json,
)
from amzkit.core.metric import METRICS, constant_fold_smape, smape
from amzkit.core.schema import Schema
from amzkit.core.workdir import check_name, missing_run, stage_dir

TEST_FOLD_PRED_FILE = "test_fold_pred.csv"  # a run's test predictions by each fold's model (pseudo-labels)


def save_run(work_dir: str | Path, run_name: str, schema: Schema, train: pd.DataFrame, test: pd.DataFrame,
             folds: np.ndarray, oof: np.ndarray, test_pred: np.ndarray, info: dict,
             fold_constant_smape: list[float] | None = None, test_folds: np.ndarray | None = None) -> dict:
    """Write a run's OOF and test predictions (and each fold model's, `test_folds`), its metrics and its row of
    the runs log; any learner's run goes through here."""
    y = train[schema.target].to_numpy(dtype=float)
    ids = train[schema.id_column].to_numpy()
    if np.isnan(oof).any():
        raise ValueError(f"run {run_name}: {int(np.isnan(oof).sum())} train rows have no out-of-fold prediction")
    for what, values, rows in (("out-of-fold", oof, "train row"), ("test", test_pred, "test row")):
        bad = np.flatnonzero(~(np.isfinite(values) & (np.asarray(values, dtype=float) > 0)))
        if bad.size:  # every learner floors its predictions above 0 (ml.base.floor_prediction); a custom one may not
            more = " ..." if bad.size > 5 else ""
            raise ValueError(f"run {run_name}: {bad.size} {what} predictions are not positive prices (NaN, infinite, "
                             f"zero or negative), at {rows}s {show_ids(bad + 1)}{more} (1 = first row): a learner "
                             "must return prices above 0 (amzkit.ml.base.floor_prediction does that); not saved")
    run_dir = stage_dir(work_dir, "03_train") / run_name
    # metrics.json marks a finished run (04, 05 and `lb` read only those): gone while the files it describes are
    # replaced, so a kill in between leaves an unfinished run, never new OOF beside old test predictions
    (run_dir / "metrics.json").unlink(missing_ok=True)
    write_runs_log_row(work_dir, run_name, None)  # nor its old row in the runs table, nor plots of the old run
    for plot in RUN_PLOTS:
        (run_dir / plot).unlink(missing_ok=True)
    write_csv(pd.DataFrame({"id": ids, "fold": folds, "target": y, "pred": oof}), run_dir / "oof.csv")
    write_csv(pd.DataFrame({"id": test[schema.id_column].to_numpy(), "pred": test_pred}), run_dir / "test_pred.csv")
    fold_ids = np.unique(folds)
    if test_folds is not None:
        write_csv(pd.DataFrame({"id": test[schema.id_column].to_numpy(),
                                **{f"fold{f}": test_folds[i] for i, f in enumerate(fold_ids)}}),
                  run_dir / TEST_FOLD_PRED_FILE)
    fold_scores = [smape(y[folds == f], oof[folds == f]) for f in fold_ids]
    if fold_constant_smape is None:
        fold_constant_smape = constant_fold_smape(y, folds)
    metrics = {
        "run": run_name, "schema": schema.name, "rows": len(y), **info, "n_folds": len(fold_ids),
        "folds_sha256": id_hash(folds), "train_ids_sha256": id_hash(ids),
        "train_rows_sha256": rows_sha256(train, schema.id_column),  # what 05 checks against the CSVs it loads
        "test_rows_sha256": rows_sha256(test, schema.id_column),
        "cv_smape": smape(y, oof), "fold_smape": fold_scores, "fold_smape_mean": float(np.mean(fold_scores)),
        "fold_smape_std": float(np.std(fold_scores)),
        "constant_median_smape": float(np.mean(fold_constant_smape)),
    }
    for name in schema.report_metrics:
        metrics[f"cv_{name}"] = METRICS[name].fn(y, oof)
    write_json(run_dir / "metrics.json", metrics)
    write_runs_log_row(work_dir, run_name, metrics)
    return metrics


RUNS_LOG_COLUMNS = ("time", "run", "learner", "schema", "features", "embeddings", "n_features", "cv_smape",
                    "fold_smape_std", "constant_median_smape", "seconds", "params")


OOF_PLOT, IMPORTANCE_PLOT = "oof_scatter.png", "feature_importance.png"  # what 03's plot cells draw in a run folder
RUN_PLOTS = (OOF_PLOT, IMPORTANCE_PLOT)


def write_runs_log_row(work_dir: str | Path, run_name: str, metrics: dict | None) -> Path:
    """Record a run in work_dir/runs.csv (the experiment leaderboard): one row per run name, the latest wins;
    `metrics` None removes the run's row (a run being replaced is in the table only once it has finished)."""
    path = Path(work_dir) / "runs.csv"
    if metrics is None and not path.is_file():
        return path
    kept = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            kept = [r for r in csv.DictReader(fh) if r.get("run") != str(run_name)]
    if metrics is not None:
        row = {**metrics, "run": run_name, "time": datetime.now(UTC).isoformat(timespec="seconds")}
        kept.append({k: json.dumps(row.get(k)) if isinstance(row.get(k), list | dict) else row.get(k)
                     for k in RUNS_LOG_COLUMNS})
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=RUNS_LOG_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
    return path


def runs_leaderboard(work_dir: str | Path) -> pd.DataFrame:
    """The runs log, best CV SMAPE first, with each run's paired difference to the best (`vs_best`, `vs_best_se`)."""
    path = Path(work_dir) / "runs.csv"
    if not path.is_file():
        return pd.DataFrame(columns=[*RUNS_LOG_COLUMNS, "vs_best", "vs_best_se"])
    # run names as written: "01" or "1e3" read as numbers would be 1 and 1000.0, and find no metrics.json
    table = pd.read_csv(path, dtype={"run": str}, keep_default_na=False,
                        na_values={c: ["", "nan", "NaN"] for c in RUNS_LOG_COLUMNS if c != "run"})
    table = table.sort_values("cv_smape").reset_index(drop=True)
    return pd.concat([table, paired_to_best(work_dir, table["run"].astype(str).tolist())], axis=1)


def paired_to_best(work_dir: str | Path, runs: list[str]) -> pd.DataFrame:
    """Per run, the mean over the shared folds of (its fold SMAPE - the first run's) and that mean's standard
    error: the runs share folds, so the difference fold by fold says whether a gap is more than noise (a gap
    of a few standard errors is; a fold spread as large as the gap does not make it noise). NaN for a run
    without per-fold scores."""
    folds = {}
    for name in runs:
        path = stage_dir(work_dir, "03_train") / name / "metrics.json"
        try:
            folds[name] = np.asarray(read_json(path)["fold_smape"], dtype=float) if path.is_file() else None
        except (ValueError, KeyError, TypeError):  # a metrics.json of another form: no per-fold scores
            folds[name] = None
    best = folds.get(runs[0]) if runs else None
    rows = []
    for name in runs:
        mine = folds[name]
        if best is None or mine is None or mine.shape != best.shape or len(mine) < 2:
            rows.append((np.nan, np.nan))
            continue
        gaps = mine - best
        rows.append((float(gaps.mean()), float(gaps.std(ddof=1) / np.sqrt(len(gaps)))))
    return pd.DataFrame(rows, columns=["vs_best", "vs_best_se"])


PROGRESS_DIR = "progress"  # a run's kept folds while it trains (03_train resumes from them)
PSEUDO_BASELINE_DIR = "progress_without_pseudo"  # a pseudo-label run's kept folds of its pass without them


def unfinished_runs(work_dir: str | Path) -> dict[str, str]:
    """03_train runs a stopped or killed 03 left behind: {name: what 04/05 see of it}."""
    folder = stage_dir(work_dir, "03_train")
    found = {}
    for run_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        kept = (run_dir / PROGRESS_DIR).is_dir() or (run_dir / PSEUDO_BASELINE_DIR).is_dir()
        if (run_dir / "metrics.json").is_file():
            if kept:
                found[run_dir.name] = "a rerun was stopped: its last finished outputs are used"
        elif kept or (run_dir / "oof.csv").is_file():
            found[run_dir.name] = "never finished: left out"
    return found


def run_predictions_sha256(work_dir: str | Path, name: str) -> str:
    """sha256 of a 03_train run's oof.csv and test_pred.csv: has the run been trained again since?"""
    run_dir = stage_dir(work_dir, "03_train") / check_name(name, "run")
    return files_sha256([run_dir / "oof.csv", run_dir / "test_pred.csv"])


def load_run(work_dir: str | Path, name: str) -> dict:
    """A finished 03_train run: its metrics, OOF frame and test predictions."""
    run_dir = stage_dir(work_dir, "03_train") / name
    check_name(name, "run")
    if not run_dir.is_dir():
        raise FileNotFoundError(missing_run(work_dir, "03_train", name) + ": name runs of 03_train in -p runs")
    if not (run_dir / "metrics.json").is_file():
        raise FileNotFoundError(f"run {name!r} has not finished: {run_dir} has no metrics.json (03_train was "
                                "stopped, or killed while saving): rerun 03_train with the same parameters (it "
                                "resumes from its kept folds), or leave the run out")
    return {"metrics": read_json(run_dir / "metrics.json"), "oof": pd.read_csv(run_dir / "oof.csv", dtype={"id": str}),
            "test": pd.read_csv(run_dir / "test_pred.csv", dtype={"id": str})}


# What 03 raises for what was asked (a misspelt 01 run or column, a refused parameter, a missing package), not a
# stop: such an error before a rerun's first fold takes back the rerun mark it made (unmark_rerun).
USER_ERRORS = (ValueError, FileNotFoundError, ImportError)


def mark_rerun(work_dir: str | Path, run_name: str) -> bool:
    """Mark a finished run that is being trained again as such (its kept-folds folder, which 04 and 05 look for),
    before the slow work ahead of its first fold (tuning, features): a kill there leaves the old run, which 04 and
    05 then use saying so, as after a kill in a fold. A new name is not marked: nothing of it exists to be used.
    True when this call made the mark (none was there)."""
    run_dir = stage_dir(work_dir, "03_train") / check_name(run_name, "run_name")
    if (run_dir / "metrics.json").is_file() and not (run_dir / PROGRESS_DIR).is_dir():
        (run_dir / PROGRESS_DIR).mkdir(exist_ok=True)
        return True
    return False


@contextmanager
def marked_rerun(work_dir: str | Path, run_name: str) -> Iterator[bool]:
    """`mark_rerun` before a block (03's tuning); yields whether it made the mark, which a USER_ERRORS error in the
    block takes back (a study refused: none of the run's files changed). Pass it to train_run as `rerun_marked`."""
    made = mark_rerun(work_dir, run_name)
    try:
        yield made
    except USER_ERRORS:
        if made:
            unmark_rerun(work_dir, run_name)
        raise


def unmark_rerun(work_dir: str | Path, run_name: str) -> None:
    """Take back the mark `mark_rerun` made when the rerun was refused (USER_ERRORS) before its first fold, so
    before any of its files changed: 04 and 05 would say "a rerun was stopped" of a run nothing replaces. Only an
    empty mark goes (a kept fold in it is a stopped rerun's)."""
    try:
        (stage_dir(work_dir, "03_train") / check_name(run_name, "run_name") / PROGRESS_DIR).rmdir()
    except OSError:  # gone, or holding kept folds
        pass
