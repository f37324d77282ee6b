"""Stage 04: combine 03_train runs - weighted blend, stacking, SMAPE calibration - scored the honest way.

Every method is a combiner (ml.combiners) with `fit(inputs, rows)` / `predict(inputs, rows)` over the stacked
train+test rows. Each is scored twice: in-sample (fit and scored on every OOF row) and nested (for each fold, fit on
the other folds' OOF rows, scored on it). Only the nested score is an honest estimate, so it alone picks
the method whose predictions go to `04_ensemble/test_pred.csv` (`method="best"`). Picking the lowest of four
nested scores flatters the winner a little, so with "best" `cv_smape` scores the picking too: each fold is
predicted by the method that won a nested CV of the other folds alone (ml.nested.choose_inside).

- blend: exp(sum_i w_i log pred_i), w >= 0, sum w = 1, chosen to minimise SMAPE.
- stack: a meta-model (ridge with alpha by GCV, or a small LightGBM) of log target on the runs' log
  predictions (+ optional raw columns, clipped to the range of the rows it is fit on).
- +calibration: a multiplicative factor (global, and per group when groups are given) chosen to
  minimise SMAPE of the combiner's predictions on its training rows.

It also writes how alike the runs are (`error_correlation.csv`: the correlation of their OOF log errors;
`alike_runs` in metrics.json): a pair near 1 adds little to a blend, so one of them can go.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.io import id_keys, show_ids, write_csv, write_json
from amzkit.core.metric import METRICS, smape
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import SCHEMAS
from amzkit.core.workdir import list_runs, stage_dir
from amzkit.ml.combiners import (
    FACTOR_RANGE,
    GRID_STEP,
    META_MODELS,
    METHODS,
    MIN_CALIBRATION_ROWS,
    EnsembleInputs,
    blend,
    make_combiners,
)
from amzkit.ml.diversity import alike_pairs, error_correlation
from amzkit.ml.folds import saved_fold_groups
from amzkit.ml.nested import choose_inside, cross_fit
from amzkit.ml.runs import load_run, run_predictions_sha256, unfinished_runs
from amzkit.stages.ensemble_inputs import check_columns_made_for, check_compatible

PARAMETERS = Parameters(
    Param("runs", [], "03_train runs to combine; []: every finished run of the work folder", plain_name=True),
    Param("method", "best", "best (lowest nested SMAPE), blend, stack, blend+calibration or stack+calibration",
          choices=("best", *METHODS)),
    Param("meta", "ridge", "the stacking meta-model: ridge or lightgbm", choices=tuple(META_MODELS)),
    Param("calibrate_by", "", "a feature or CSV column (e.g. unit_family): a calibration factor per group"),
    Param("meta_features", [], "feature or CSV columns the stacking meta-model sees beside the runs"),
    Param("factor_min", FACTOR_RANGE[0], "smallest calibration factor tried", low=0, low_open=True),
    Param("factor_max", FACTOR_RANGE[1], "largest calibration factor tried", low=0, low_open=True),
    Param("min_group_rows", MIN_CALIBRATION_ROWS, "rows a calibration group needs for its own factor", low=1),
    relations=(("factor_min", "<=", "factor_max"),),
)
D = PARAMETERS.defaults

BEST_INSIDE = "best (picked inside each fold)"  # the row and fold curve of method "best" as cv_smape scores it


# --- runs in, predictions and report out ----------------------------------------------------------------

def _align(values: pd.Series | pd.DataFrame | None, ids: np.ndarray, what: str, n_train: int,
           by_hand: str = "") -> np.ndarray | None:
    """`values` (indexed by id) in the order of `ids` (the runs' `n_train` train ids, then their test ids); every
    id must be present. `by_hand`: what to do when an argument the caller made itself lacks some (else `values`
    were read from data_dir's CSVs)."""
    if values is None:
        return None
    values = values.set_axis(pd.Index(id_keys(values.index), name="id"), axis=0)
    if not values.index.is_unique:
        raise ValueError(f"{what} has repeated ids in its index")
    keys = pd.Index(id_keys(ids))
    missing = ~keys.isin(values.index)
    if missing.any():
        lacks = [f"{int(missing[part].sum())} of the runs' {len(keys[part])} {split} ids (e.g. "
                 f"{show_ids(np.asarray(ids)[part][missing[part]], 3)})"
                 for split, part in (("train", slice(0, n_train)), ("test", slice(n_train, None)))
                 if missing[part].any()]
        if by_hand:
            raise ValueError(f"the {what} argument lacks {' and '.join(lacks)}: {by_hand}")
        raise ValueError(f"{what}, read from data_dir's train.csv and test.csv, lacks {' and '.join(lacks)}: the 03 "
                         "runs were made for other CSVs. Rerun 03 on these CSVs, or point data_dir at the CSVs the "
                         "runs were made for")
    picked = values.reindex(keys)
    if isinstance(picked, pd.Series):
        return picked.astype(str).to_numpy()
    numeric = {c: (picked[c] if pd.api.types.is_numeric_dtype(picked[c]) else
                   picked[c].astype("category").cat.codes.replace(-1, np.nan)) for c in picked.columns}
    return pd.DataFrame(numeric).to_numpy(dtype=np.float64)


def _category_columns(meta_features: pd.DataFrame | None) -> tuple[int, ...]:
    """The meta_features columns `_align` turns into category codes (text, categories): a ridge one-hots them."""
    if not isinstance(meta_features, pd.DataFrame):
        return ()
    return tuple(j for j, column in enumerate(meta_features.columns)
                 if not pd.api.types.is_numeric_dtype(meta_features[column]))


def _fold_scores(target: np.ndarray, pred: np.ndarray, folds: np.ndarray) -> list[float]:
    return [smape(target[folds == f], pred[folds == f]) for f in np.unique(folds)]


# What 04 writes (metrics.json last, as the mark that the others are finished: 05 reads only those).
OUTPUTS = ("metrics.json", "oof.csv", "test_pred.csv", "oof_methods.csv", "test_methods.csv", "table.csv",
           "weights.csv", "error_correlation.csv", "ensemble.png")


def unmark_finished(work_dir: str | Path) -> None:
    """Remove 04's outputs, metrics.json first: a 04 that fails then leaves none of the previous run's behind,
    neither for 05 (which would submit them as if this one had made them) nor for someone reading the folder."""
    out_dir = stage_dir(work_dir, "04_ensemble")
    for name in OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)


def ensemble(work_dir: str | Path, runs=D.runs, *, method: str = D.method, meta=D.meta,
             groups: pd.Series | None = None, meta_features: pd.DataFrame | None = None,
             weight_step: float = GRID_STEP, factor_range: tuple[float, float] = FACTOR_RANGE,
             min_group_rows: int = MIN_CALIBRATION_ROWS, product_groups: pd.Series | None = None,
             columns_rows_sha256: dict[str, str] | None = None) -> dict:
    """Blend, stack and calibrate the named runs (all finished 03_train runs when empty); write the one
    chosen by `method` ('best' = lowest nested SMAPE, or one of METHODS), its table, weights and metrics.

    `groups` (labels) and `meta_features` (columns) are indexed by id over train and test rows, as
    `ensemble_columns` returns them. `product_groups` (labels indexed by train id; by default the groups 03's group
    folds kept together, from 03_train/folds.csv): with 2-fold CV, the halves that pick the method inside each
    fold keep a group together, as the folds do (without groups the halves are drawn row by row).
    `columns_rows_sha256` (core.io.rows_sha256 of each CSV `groups` and `meta_features` were read from, by split):
    refused unless the runs were made from those rows.
    """
    unmark_finished(work_dir)
    runs = PARAMETERS.validate(method=method, runs=runs, factor_min=factor_range[0], factor_max=factor_range[1],
                               min_group_rows=min_group_rows, **({"meta": meta} if isinstance(meta, str) else {})
                               )["runs"]  # "lgbm" or "lgbm,ridge" as the notebook reads them, never letter by letter
    named = list(runs)
    repeated = sorted({name for name in named if named.count(name) > 1})
    if repeated:
        raise ValueError(f"runs names {', '.join(map(repr, repeated))} more than once: name each run once")
    runs = list(runs or list_runs(work_dir, "03_train"))
    stopped = {n: why for n, why in unfinished_runs(work_dir).items() if n in runs or not named}
    if stopped:
        print("03_train runs a stopped 03 left: " + "; ".join(f"{n}: {why}" for n, why in stopped.items())
              + " (rerun 03_train with the same parameters to finish them: it resumes)")
    if len(runs) < 1:
        raise FileNotFoundError(f"no 03_train runs in {work_dir}: run 03_train first")
    unused = [f"{name} ({who} only)" for name, given, who in (
        ("calibrate_by", groups is not None, "the +calibration methods use it"),
        ("meta_features", meta_features is not None, "the stack methods see them"))
        if given and method != "best" and (("calibration" not in method) if name == "calibrate_by"
                                           else not method.startswith("stack"))]
    if unused:  # the method asked for by name does not use them: its predictions are made without them
        print(f"note: method {method} ignores {' and '.join(unused)}")
    loaded = {name: load_run(work_dir, name) for name in runs}
    check_compatible(loaded)
    first = loaded[runs[0]]["oof"]
    target, folds = first["target"].to_numpy(dtype=float), first["fold"].to_numpy()
    ids, test_ids = first["id"].to_numpy(), loaded[runs[0]]["test"]["id"].to_numpy()
    oof_log = np.column_stack([np.log(loaded[n]["oof"]["pred"].to_numpy(dtype=float)) for n in runs])
    test_log = np.column_stack([np.log(loaded[n]["test"]["pred"].to_numpy(dtype=float)) for n in runs])
    all_ids = np.concatenate([ids, test_ids])
    inputs = EnsembleInputs(np.vstack([oof_log, test_log]), target,
                            _align(meta_features, all_ids, "meta_features", len(ids)),
                            _align(groups, all_ids, "groups (calibrate_by)", len(ids)),
                            categorical=_category_columns(meta_features))
    if columns_rows_sha256 and (groups is not None or meta_features is not None):
        check_columns_made_for(loaded, columns_rows_sha256)
    train_rows, test_rows = np.arange(len(ids)), np.arange(len(ids), len(all_ids))
    if product_groups is None:  # folds.csv's groups, when they are of these runs' rows
        saved = saved_fold_groups(work_dir)
        product_groups = saved if saved is not None and pd.Index(id_keys(ids)).isin(saved.index).all() else None
    fold_groups = None if product_groups is None else _align(
        product_groups, ids, "product_groups", len(ids), by_hand="give it a label for every train id of the 03 runs "
        "(indexed by id, as their oof.csv writes them), or leave product_groups out to use 03_train/folds.csv's groups")

    results = {}
    combiners = make_combiners(meta, weight_step, factor_range, min_group_rows)
    for name, combiner in combiners.items():
        nested, fitted = cross_fit(combiner, inputs, folds)
        full = copy.deepcopy(combiner).fit(inputs, train_rows)
        results[name] = {"nested": nested, "fitted": fitted, "full": full,
                         "in_sample": full.predict(inputs, train_rows), "test": full.predict(inputs, test_rows)}
    nested_scores = {m: smape(target, r["nested"]) for m, r in results.items()}
    chosen = min(nested_scores, key=nested_scores.get) if method == "best" else method
    scored = results[chosen]["nested"]  # what cv_smape scores: the chosen method, or the picking done inside
    if method == "best":
        scored, picked, inner = choose_inside(combiners, {m: r["nested"] for m, r in results.items()}, inputs, folds,
                                              fold_groups)

    per_run = {n: smape(target, np.exp(oof_log[:, i])) for i, n in enumerate(runs)}
    fold_scores = {n: _fold_scores(target, np.exp(oof_log[:, i]), folds) for i, n in enumerate(runs)}
    for m, r in results.items():
        fold_scores[f"{m} (nested)"] = _fold_scores(target, r["nested"], folds)
    cv_key = BEST_INSIDE if method == "best" else f"{chosen} (nested)"  # the fold curve cv_smape scores
    fold_scores[cv_key] = _fold_scores(target, scored, folds)
    cv = smape(target, scored)
    table = pd.DataFrame(
        [{"model": n, "kind": "run", "nested_smape": per_run[n], "fold_mean": float(np.mean(fold_scores[n])),
          "fold_std": float(np.std(fold_scores[n])), "in_sample_smape": per_run[n], "chosen": False} for n in runs]
        + [{"model": m, "kind": "ensemble", "nested_smape": nested_scores[m],
            "fold_mean": float(np.mean(fold_scores[f"{m} (nested)"])),
            "fold_std": float(np.std(fold_scores[f"{m} (nested)"])),
            "in_sample_smape": smape(target, r["in_sample"]), "chosen": m == chosen} for m, r in results.items()]
        + ([{"model": BEST_INSIDE, "kind": "ensemble", "nested_smape": cv,
             "fold_mean": float(np.mean(fold_scores[BEST_INSIDE])), "fold_std": float(np.std(fold_scores[BEST_INSIDE])),
             "in_sample_smape": np.nan, "chosen": False}] if method == "best" else []))

    blend_full, stack_full = results["blend"]["full"], results["stack"]["full"]
    weights = dict(zip(runs, blend_full.weights_.tolist(), strict=True))
    cal_full, stack_cal_full = results["blend+calibration"]["full"], results["stack+calibration"]["full"]
    out_dir = stage_dir(work_dir, "04_ensemble")
    (out_dir / "metrics.json").unlink(missing_ok=True)  # written last: a kill before it leaves no old metrics
    write_csv(pd.DataFrame({"id": ids, "fold": folds, "target": target, "pred": scored}), out_dir / "oof.csv")
    write_csv(pd.DataFrame({"id": test_ids, "pred": results[chosen]["test"]}), out_dir / "test_pred.csv")
    write_csv(pd.DataFrame({"id": ids, "fold": folds, "target": target,
                            **{m: r["nested"] for m, r in results.items()}}), out_dir / "oof_methods.csv")
    write_csv(pd.DataFrame({"id": test_ids, **{m: r["test"] for m, r in results.items()}}),
              out_dir / "test_methods.csv")
    write_csv(table, out_dir / "table.csv")
    weights_table = pd.DataFrame({"run": runs, "weight": blend_full.weights_,
                                  **{f"fold{f}": m.weights_ for f, m in zip(np.unique(folds),
                                                                            results["blend"]["fitted"],
                                                                            strict=True)}})
    write_csv(weights_table, out_dir / "weights.csv")
    corr = error_correlation(oof_log, target, runs)  # how alike the runs' errors are: which add little
    write_csv(corr.round(4).rename_axis("run").reset_index(), out_dir / "error_correlation.csv")
    best_single = min(per_run, key=per_run.get)
    metrics = {
        "runs": runs, "runs_requested": named,  # [] = all finished runs: 05 names those finished since
        "method": chosen, "method_requested": method,
        "meta": meta if isinstance(meta, str) else type(meta).__name__,
        "weights": weights, "nested_weights": [m.weights_.tolist() for m in results["blend"]["fitted"]],
        "run_smape": per_run, "best_single_run": best_single, "best_single_smape": per_run[best_single],
        "best_single_fold_std": float(np.std(fold_scores[best_single])),
        # test_pred.csv is that run's own predictions (one run, blended): no other source would submit anything else
        "test_is_best_single": bool(np.allclose(results[chosen]["test"], np.exp(test_log[:, runs.index(best_single)]),
                                                rtol=1e-9, atol=0.0)),
        "blend_smape_in_sample": smape(target, results["blend"]["in_sample"]),
        "blend_smape_nested": nested_scores["blend"],
        "blend_smape_equal_weights": smape(target, blend(oof_log, np.full(len(runs), 1 / len(runs)))),
        "stack_smape_in_sample": smape(target, results["stack"]["in_sample"]),
        "stack_smape_nested": nested_scores["stack"],
        "calibrated_smape_in_sample": smape(target, results["blend+calibration"]["in_sample"]),
        "calibrated_smape_nested": nested_scores["blend+calibration"],
        "method_smape_nested": nested_scores,
        "method_smape_in_sample": {m: smape(target, r["in_sample"]) for m, r in results.items()},
        "calibration_factor": cal_full.calibrator_.factor_,
        "calibration_group_factors": {str(k): v for k, v in cal_full.calibrator_.group_factors_.items()},
        "nested_calibration_factors": [m.calibrator_.factor_ for m in results["blend+calibration"]["fitted"]],
        "stack_calibration_factor": stack_cal_full.calibrator_.factor_,
        "fold_smape": fold_scores, "table": table.to_dict(orient="records"),
        "error_correlation": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in corr.to_numpy()],
        "alike_runs": alike_pairs(corr),
        "cv_smape": cv,
        "cv_fold_smape_std": float(np.std(fold_scores[cv_key])),
        "cv_scores": cv_key,
        "constant_median_smape": float(np.mean([loaded[n]["metrics"]["constant_median_smape"] for n in runs])),
        **{key: next((loaded[n]["metrics"][key] for n in runs if key in loaded[n]["metrics"]), None)
           for key in ("train_rows_sha256", "test_rows_sha256")},
        "run_predictions_sha256": {n: run_predictions_sha256(work_dir, n) for n in runs},
        # runs whose settings were chosen on these rows (a tuned preset): cv_smape is a little optimistic
        "optimistic_runs": {n: loaded[n]["metrics"]["cv_optimistic"] for n in runs
                            if loaded[n]["metrics"].get("cv_optimistic")},
    }
    schema_name = loaded[runs[0]]["metrics"].get("schema")
    if schema_name in SCHEMAS:  # the edition's own metrics of what cv_smape scores (2023: its score and MAPE)
        metrics["schema"] = schema_name
        metrics.update({f"cv_{name}": METRICS[name].fn(target, scored)
                        for name in SCHEMAS[schema_name].report_metrics if name != "smape"})
    if method == "best":
        metrics["method_picked_per_fold"] = picked
        metrics["method_inner_smape_per_fold"] = inner
    if hasattr(stack_full.meta_, "coefficients"):
        coef, intercept = stack_full.meta_.coefficients()
        metrics["stack_coef"] = dict(zip(runs, coef[:len(runs)].tolist(), strict=True))
        metrics["stack_intercept"] = intercept
    write_json(out_dir / "metrics.json", metrics)
    return metrics
