"""Pseudo-labels: confident test rows of an earlier run, labelled per fold by that fold's model."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.io import id_hash, read_json, same_ids
from amzkit.core.workdir import check_name, stage_dir
from amzkit.ml.runs import TEST_FOLD_PRED_FILE


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

    def digest(self) -> str:
        """sha256 of the chosen rows and every fold's labels: a source trained again to other predictions of the
        same rows (its summary unchanged) has another."""
        digest = hashlib.sha256(np.ascontiguousarray(self.rows, dtype=np.int64).tobytes())
        for fold in sorted(self.labels):
            digest.update(f"fold{fold}".encode())
            digest.update(np.ascontiguousarray(self.labels[fold], dtype=np.float64).tobytes())
        return digest.hexdigest()


def pseudo_labels(work_dir: str | Path, source: str, folds: np.ndarray, test_ids: np.ndarray, train_ids: np.ndarray,
                  fraction: float, weight: float, rows_sha256: dict[str, str] | None = None) -> PseudoLabels:
    """The `fraction` of test rows on which the source run's fold models agree most (smallest spread of log
    predictions), labelled per fold by that fold's model; `weight` is their sample weight (03's
    pseudo_label_fraction and pseudo_label_weight, whose declaration holds the defaults and the ranges).
    `train_ids` (this run's, in row order) must be the source's: the fold numbers alone are the same for other
    rows of as many (kfold's), whose fold-f model saw rows this run scores in fold f."""
    run_dir = stage_dir(work_dir, "03_train") / check_name(source, "pseudo_label_run")
    path = run_dir / TEST_FOLD_PRED_FILE
    if not path.is_file():
        raise ValueError(f"pseudo-label source {source!r}: {path} is missing; pseudo-label from a run of 03_train "
                         "in this work folder (every run saves each fold model's test predictions)")
    if not (run_dir / "metrics.json").is_file():
        raise ValueError(f"pseudo-label source {source!r} has not finished: {run_dir / 'metrics.json'} is missing (a "
                         f"run stopped while saving); rerun 03 for {source!r}, then this run")
    metrics = read_json(run_dir / "metrics.json")
    if metrics.get("folds_sha256") != id_hash(folds):
        raise ValueError(f"pseudo-label source {source!r} was trained on other folds: its fold models would have "
                         "seen this run's validation rows. Retrain it in this work folder's shared folds")
    if metrics.get("train_ids_sha256") != id_hash(train_ids):
        raise ValueError(f"pseudo-label source {source!r} was trained on other train rows (or another row order) "
                         "than this run's: its fold models would have seen rows this run validates on (its folds "
                         f"are numbered alike, not made of the same rows). Retrain {source!r} on this train.csv, "
                         "then this run")
    for split, digest in (rows_sha256 or {}).items():
        if metrics.get(f"{split}_rows_sha256") not in (None, digest):  # None: a source saved before the record
            raise ValueError(f"pseudo-label source {source!r} was made from other {split} rows with the same ids "
                             f"({split}.csv's prices, text or links changed since): its fold models would label "
                             f"this run's rows as the old {split}.csv had them. Retrain {source!r} on these CSVs, "
                             "then this run")
    table = pd.read_csv(path, dtype={"id": str})
    if not same_ids(table["id"], test_ids):
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
    return PseudoLabels(len(train_ids) + chosen, labels, weight, source, spread[chosen])
