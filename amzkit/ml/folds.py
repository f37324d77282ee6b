"""Folds that can be trusted, made once per work folder and shared by every run and by 04_ensemble.

Stratified on binned log target, plain KFold, or grouped by near-duplicate product (same normalised item
name) so copies of one product never sit on both sides. `inner_folds` splits a training fold again the same
way, for what is learnt inside it (target encodings, early stopping).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

from amzkit.core.io import id_hash, id_keys, ids_difference, read_json, write_csv, write_json
from amzkit.core.schema import Schema
from amzkit.core.workdir import stage_dir
from amzkit.text.names import product_groups

T = TypeVar("T")

FOLDS_FILE, FOLDS_INFO_FILE = "folds.csv", "folds.json"  # 03_train's fold of each train row, and its settings


FOLD_STRATEGIES = ("stratified", "kfold", "group")
MIN_ROWS_PER_FOLD = 2


def check_trainable(target: np.ndarray, n_folds: int, target_name: str = "target") -> None:
    """Refuse a train split with no signal to cross-validate: fewer than MIN_ROWS_PER_FOLD rows per fold, or
    one distinct target value (nothing to learn, and every fold scores the same constant)."""
    target = np.asarray(target, dtype=float)
    if len(target) < MIN_ROWS_PER_FOLD * n_folds:
        raise ValueError(f"the train split has {len(target)} rows; {n_folds} folds need at least "
                         f"{MIN_ROWS_PER_FOLD * n_folds} ({MIN_ROWS_PER_FOLD} per fold): use more train rows or "
                         "fewer folds (-p n_folds)")
    distinct = np.unique(target)
    if distinct.size < 2:
        raise ValueError(f"every train row has {target_name} {distinct[0]:g}: there is nothing to learn and every "
                         f"score would be the same; check that train.csv holds the real {target_name} values")


def make_folds(target: np.ndarray, n_folds: int, seed: int, strategy: str = "stratified",
               groups: np.ndarray | None = None) -> np.ndarray:
    """Fold number per row: stratified on log1p(target) bins, plain KFold, or grouped (stratified) by `groups`."""
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


def _other_rows_message(path: Path, how: str) -> str:
    fix = ("put train.csv's rows back in that order, or use" if "order" in how else "use")
    return (f"{path} was made for other train rows (train.csv now has {how}): {fix} a new work_dir for this "
            "train.csv (deleting folds.csv would leave the old rows' runs beside new ones, which 04 cannot blend)")


def folds_of_other_rows(work_dir: str | Path, train: pd.DataFrame, schema: Schema) -> str:
    """Why 03 would refuse `train` in this work folder: its folds.csv made for other train rows or another order of
    them, in words; '' when they match or there are no folds yet."""
    path = stage_dir(work_dir, "03_train") / FOLDS_FILE
    if not path.is_file():
        return ""
    how = ids_difference(pd.read_csv(path, dtype={"id": str})["id"], train[schema.id_column].to_numpy())
    return _other_rows_message(path, how) if how else ""


PARAMETER_NAMES = {"strategy": "fold_strategy"}  # folds.json's keys that 03's parameters name otherwise


def shared_folds(work_dir: str | Path, train: pd.DataFrame, schema: Schema, n_folds: int, seed: int,
                 strategy: str) -> np.ndarray:
    """The work folder's fold assignment: created on first use, then reused (and checked) by every run."""
    folder = stage_dir(work_dir, "03_train")
    path, info_path = folder / FOLDS_FILE, folder / FOLDS_INFO_FILE
    ids = train[schema.id_column].to_numpy()
    wanted = {"n_folds": n_folds, "seed": seed, "strategy": strategy}
    if path.is_file():
        saved = pd.read_csv(path, dtype={"id": str})
        if how := ids_difference(saved["id"], ids):
            raise ValueError(_other_rows_message(path, how))
        info = read_json(info_path) if info_path.is_file() else {"n_folds": int(saved["fold"].nunique())}
        differs = {k: (info.get(k), v) for k, v in wanted.items() if k in info and info[k] != v}
        if differs:
            made = {k: info[k] for k in wanted if k in info}  # the settings, not the file's digest
            asked = ", ".join(f"-p {PARAMETER_NAMES.get(k, k)} {saved_v!r}" for k, (saved_v, _) in differs.items())
            raise ValueError(
                f"{path} was made with {made}, this run asks for {wanted}: runs must share folds to be compared "
                f"and blended. Rerun with {asked}, or use another work_dir for a new experiment."
            )
        return saved["fold"].to_numpy()
    folds, groups = new_folds(train, schema, n_folds, seed, strategy)
    # what the folds were made with first: a kill between the two writes leaves no folds.csv without it
    write_json(info_path, {**wanted, "folds_sha256": id_hash(folds)})
    # the product group of each row beside its fold: what 04 keeps together when it splits one fold again
    kept_groups = {} if groups is None else {"group": np.unique(groups, return_inverse=True)[1].ravel()}
    write_csv(pd.DataFrame({"id": ids, "fold": folds, **kept_groups}), path)
    return folds


def new_folds(train: pd.DataFrame, schema: Schema, n_folds: int, seed: int,
              strategy: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(the folds `shared_folds` makes for these train rows and settings, the product groups group folds keep
    together, None for the other strategies); nothing is read or written."""
    check_trainable(train[schema.target].to_numpy(), n_folds, schema.target)
    groups = product_groups(train, schema) if strategy == "group" else None
    if groups is not None and len(np.unique(groups)) < n_folds:
        raise ValueError(f"the train rows hold {len(np.unique(groups))} distinct products (copies of one product "
                         f"share a fold) for {n_folds} folds: use fewer folds or fold_strategy 'kfold'")
    return make_folds(train[schema.target].to_numpy(), n_folds, seed, strategy, groups), groups


def folds_to_come(work_dir: str | Path, train: pd.DataFrame, schema: Schema, n_folds: int, seed: int,
                  strategy: str) -> tuple[np.ndarray, bool]:
    """(the folds 03 trains in with these settings, whether they are the work folder's folds.csv), writing nothing:
    the saved ones, checked as `shared_folds` checks them, once 03 made them; else the very folds it will make
    (`new_folds`), so a stage before 03 (02's probes) scores in 03's split without fixing 03's settings."""
    if (stage_dir(work_dir, "03_train") / FOLDS_FILE).is_file():
        return shared_folds(work_dir, train, schema, n_folds, seed, strategy), True
    return new_folds(train, schema, n_folds, seed, strategy)[0], False


def saved_fold_groups(work_dir: str | Path) -> pd.Series | None:
    """The product group of each train row that group folds kept together (03_train/folds.csv's `group` column),
    indexed by id; None without one (other fold strategies, or folds.csv written before the column existed)."""
    path = stage_dir(work_dir, "03_train") / FOLDS_FILE
    if not path.is_file():
        return None
    saved = pd.read_csv(path, dtype={"id": str})
    if "group" not in saved.columns:
        return None
    return pd.Series(saved["group"].to_numpy(), index=pd.Index(id_keys(saved["id"]), name="id"))


def inner_folds(rows: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Inner fold per training row (for a fold transform's own-label-free values); rows of one group (copies
    of one product) share a fold, as in the outer folds."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.permutation(np.arange(len(rows)) % n_folds)
    _, group_index = np.unique(np.asarray(groups)[rows], return_inverse=True)
    return rng.permutation(np.arange(group_index.max() + 1) % n_folds)[group_index.ravel()]


VALID_FRACTION = 0.1  # the share of a fold's training rows held out for early stopping (every learner's default)
MAX_VALID_FRACTION = 0.5  # an early-stopping holdout is one of round(1/f) >= 2 inner folds: at most half


def holdout_mask(rows: np.ndarray, n_train: int, valid_fraction: float, seed: int,
                 groups: np.ndarray | None) -> np.ndarray:
    """The early-stopping rows among `rows`: one of round(1 / valid_fraction) inner folds (at least 2) of the real
    (< n_train) rows, whole products at a time (seeded), so about 1/round(1/valid_fraction) of them (0.3 -> 1/3,
    0.4 -> 1/2); none when valid_fraction is 0 or there are fewer than 20 real rows."""
    watch = np.zeros(len(rows), dtype=bool)
    real = np.flatnonzero(np.asarray(rows) < n_train)
    if valid_fraction <= 0 or len(real) < 20:
        return watch
    inner = inner_folds(np.asarray(rows)[real], max(2, round(1 / valid_fraction)), seed, groups)
    watch[real[inner == 0]] = True
    return watch


def folds_around(prepare: Callable[[], T], work_dir: str | Path, train: pd.DataFrame, schema: Schema, n_folds: int,
                 seed: int, strategy: str) -> tuple[T, np.ndarray]:
    """(prepare(), the work folder's folds): folds already made are checked before `prepare` (a learner's slower
    preparation), new ones are made only after it succeeded, so a first run that fails (a missing embedding run)
    does not fix n_folds for the runs after it."""
    made = (stage_dir(work_dir, "03_train") / FOLDS_FILE).is_file()
    folds = shared_folds(work_dir, train, schema, n_folds, seed, strategy) if made else None
    prepared = prepare()
    return prepared, folds if folds is not None else shared_folds(work_dir, train, schema, n_folds, seed, strategy)
