"""What 04_ensemble checks and reads besides the runs' predictions: that the runs can be blended at all (the
same train rows, prices, folds and test rows), and the columns for calibration groups or meta-features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from amzkit.core.io import id_hash, id_keys, ids_difference, same_ids, show_ids
from amzkit.core.schema import get_schema
from amzkit.text.features import FEATURE_GROUPS, build_features


def check_compatible(runs: dict[str, dict]) -> None:
    """Refuse runs that do not share train ids, targets and folds (their OOF rows would not line up, or be scored
    against other prices). Read from the oof.csv files that are blended, not from what metrics.json says of them."""
    names = list(runs)
    for name in names:
        check_predictions(name, runs[name])
    ref_oof = runs[names[0]]["oof"]
    ref_ids, ref_folds = id_hash(ref_oof["id"]), id_hash(ref_oof["fold"])
    for name in names[1:]:
        oof = runs[name]["oof"]
        if id_hash(oof["id"]) != ref_ids:
            how = ids_difference(ref_oof["id"], oof["id"]) or "other rows"
            raise ValueError(f"runs {names[0]!r} and {name!r} were trained on different rows ({name!r} has {how}): "
                             "cannot blend; rerun the older runs on the current train.csv, or leave them out (-p runs)")
        if id_hash(oof["fold"]) != ref_folds:
            raise ValueError(
                f"runs {names[0]!r} and {name!r} used different folds; blending them would score on rows "
                "each model trained on. Retrain them in one work folder (they then share 03_train/folds.csv)."
            )
        if not same_ids(runs[name]["test"]["id"], runs[names[0]]["test"]["id"]):
            how = ids_difference(runs[names[0]]["test"]["id"], runs[name]["test"]["id"])
            raise ValueError(f"runs {names[0]!r} and {name!r} were made for different test rows ({name!r} has {how}): "
                             "test.csv changed between them (e.g. sample_test.csv, then the full test.csv), and 04 "
                             "would blend predictions of other rows. Rerun the older runs on the current test.csv, or "
                             "leave them out (-p runs)")
        target = runs[name]["oof"]["target"].to_numpy(float)
        ref_target = runs[names[0]]["oof"]["target"].to_numpy(float)
        if not np.array_equal(target, ref_target):
            changed = np.flatnonzero(target != ref_target)
            raise ValueError(
                f"runs {names[0]!r} and {name!r} were trained on different targets for the same rows ({len(changed)} "
                f"rows differ, e.g. id {runs[name]['oof']['id'].iloc[changed[0]]}: {ref_target[changed[0]]:g} vs "
                f"{target[changed[0]]:g}): train.csv's prices changed between them, and 04 would score every run "
                "against one run's prices. Rerun the older runs on the current train.csv, or leave them out (-p runs)")
    for split in ("train", "test"):
        made_for = {}  # the rows' digest -> a run made from them (runs saved before the digest existed have none)
        for name in names:
            made_for.setdefault(runs[name]["metrics"].get(f"{split}_rows_sha256"), name)
        made_for.pop(None, None)
        if len(made_for) > 1:
            first, second = list(made_for.values())[:2]
            raise ValueError(f"runs {first!r} and {second!r} were made from different {split} rows with the same ids: "
                             f"{split}.csv's text or links changed between them. Rerun the older runs on the current "
                             f"{split}.csv, or leave them out (-p runs)")


def check_columns_made_for(runs: dict[str, dict], rows_sha256: dict[str, str]) -> None:
    """Refuse calibrate_by / meta_features columns read from CSVs whose rows (`rows_sha256`: core.io.rows_sha256 per
    split) are not those the runs were made from: under the same ids, edited text or prices would group or feed the
    runs' rows by values their models never saw. Runs saved before the digest existed are not checked."""
    for split, digest in rows_sha256.items():
        made = {run["metrics"].get(f"{split}_rows_sha256") for run in runs.values()} - {None}
        if made and digest not in made:
            raise ValueError(f"calibrate_by / meta_features columns were read from a {split}.csv whose rows differ "
                             "from those the 03 runs were made from (the same ids; its text, prices or links "
                             "changed since 03): rerun 03 on the current CSVs, or point data_dir at the CSVs the "
                             "runs were made for")


def check_predictions(name: str, run: dict) -> None:
    """Refuse a run with a prediction 04 cannot blend in log space: missing, infinite, zero or negative (every
    learner floors its predictions above 0; a run's files edited or made by other code may not be)."""
    for split, file_name in (("oof", "oof.csv"), ("test", "test_pred.csv")):
        frame = run[split]
        pred = pd.to_numeric(frame["pred"], errors="coerce").to_numpy(dtype=float)
        bad = ~(np.isfinite(pred) & (pred > 0))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            value = frame["pred"].iloc[first]  # numpy scalars as Python's: numpy 2 writes np.float64(0.0) for 0.0
            shown = repr(value.item() if isinstance(value, np.generic) else value)
            raise ValueError(f"run {name!r}: {int(bad.sum())} of {len(pred)} predictions in its {file_name} are not "
                             f"positive numbers (first: id {frame['id'].iloc[first]}, {shown}): "
                             "04 blends log prices. Rerun that run in 03, or leave it out (-p runs)")


def ensemble_columns(data: dict[str, pd.DataFrame], schema: str, columns: list[str]) -> pd.DataFrame:
    """Columns for calibration groups or meta-features, indexed by id (train rows then test rows).

    A name is an engineered feature column (e.g. 'unit_family', 'pack_count', 'brand') or a raw CSV column; never
    the target, which the test rows lack and the scored rows would read.
    """
    schema_ = get_schema(schema)
    train, test = data["train"], data["test"]
    x_train, x_test = build_features(train, test, schema_, list(FEATURE_GROUPS))
    engineered = pd.concat([x_train, x_test], ignore_index=True)
    raw = pd.concat([train.drop(columns=[schema_.target]), test], ignore_index=True)
    out = {}
    for name in columns:
        if name == schema_.target:
            raise ValueError(f"{name!r} is the target: as a meta-feature or calibration group every scored row "
                             "would read its own answer (and the test rows have none); pick a feature or CSV column")
        if name == schema_.id_column:
            raise ValueError(f"{name!r} is the row id: ids order the rows, not the products, and ids that happen to "
                             "follow the train prices give a CV the test rows never see; pick a feature or CSV column")
        if name in engineered.columns:
            out[name] = engineered[name]
        elif name in raw.columns:
            out[name] = raw[name]
        else:
            raise ValueError(f"no column {name!r}; feature columns are {sorted(engineered.columns)}, "
                             f"CSV columns {sorted(c for c in train.columns if c != schema_.target)}")
    ids = pd.Index(id_keys(pd.concat([train[schema_.id_column], test[schema_.id_column]], ignore_index=True)),
                   name="id")
    if not ids.is_unique:
        raise ValueError(f"ids repeat between train and test (e.g. {show_ids(ids[ids.duplicated()])}): columns "
                         "cannot be matched to runs by id; renumber the test rows so that no id is in both CSVs")
    return pd.DataFrame(out).set_index(ids)
